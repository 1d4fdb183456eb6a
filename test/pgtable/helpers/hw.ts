/**
 * A stage-2 table wired to the hardware model: the MMU's TLB as the injected `TlbMaintenance`, the MMU's
 * break-before-make checker observing every descriptor write and TLBI, and the S2Config the hardware walker uses
 * for the same VTCR/VTTBR. Tests only: pgtable/ itself never imports mmu/.
 */
import { ARMV8_4_PA48_FEATURES } from '../../../src/arch/features.js';
import type { Granule } from '../../../src/arch/granule.js';
import { HCR_RW_LO, HCR_VM_LO } from '../../../src/arch/hcr.js';
import { vttbr } from '../../../src/arch/vttbr.js';
import { PhysMem } from '../../../src/mem/phys-mem.js';
import { BbmChecker } from '../../../src/mmu/bbm-check.js';
import { makeS2Config, type S2Config } from '../../../src/mmu/s2-config.js';
import { Tlb } from '../../../src/mmu/tlb.js';
import { kvmPgtableStage2Init, kvmVtcrFor, newKvmPgtable, warningList } from '../../../src/pgtable/stage2.js';
import { PgtPagePool } from '../../../src/pgtable/test-pool.js';
import type { KvmPgtable } from '../../../src/pgtable/types.js';

export interface HwWorld {
  mem: PhysMem;
  pool: PgtPagePool;
  pgt: KvmPgtable;
  tlb: Tlb;
  checker: BbmChecker;
  warnings: string[];
  basePages: number;
  cfg: S2Config;
}

export function hwWorld(forcePte: boolean, vmid = 5, granule: Granule = '4k', iaBits = 40): HwWorld {
  const mem = new PhysMem();
  mem.addRegion(0x4000_0000, 0x8000_0000);
  const pageSize = granule === '4k' ? 0x1000 : granule === '16k' ? 0x4000 : 0x1_0000;
  const pool = new PgtPagePool(mem, 0xa000_0000, 4096, pageSize);
  const tlb = new Tlb();
  const checker = new BbmChecker(mem, tlb);
  const warnings: string[] = [];
  const pgt = newKvmPgtable(mem, pool, warningList(warnings));
  const vtcrLo = (kvmVtcrFor(granule, iaBits) | (2 << 16)) >>> 0; // PS = 40 bits
  const r = kvmPgtableStage2Init(pgt, { vmid, tlb, hasFwb: false }, vtcrLo, 0, forcePte ? () => true : null);
  if (r !== 0) throw new Error('init');
  const cfg = makeS2Config(
    { lo: vtcrLo, hi: 0 },
    vttbr({ baddr: pgt.pgd, vmid }),
    { lo: (HCR_VM_LO | HCR_RW_LO) >>> 0, hi: 0 },
    ARMV8_4_PA48_FEATURES,
  );
  checker.addRoot(cfg);
  return { mem, pool, pgt, tlb, checker, warnings, basePages: pool.usedPages, cfg };
}
