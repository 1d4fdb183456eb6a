// BbmChecker.onTlbHit (and S2Mmu.translatePa's inlined form of its first test) ignore a cached leaf whose
// descriptor changed only in the software bits, PBHA or bit 63 since the fill, and still report every other change,
// through both translate and translatePa.
import t from 'tap';
import { s2Page } from '../../src/arch/desc-codec.js';
import { S2AP_W_LO } from '../../src/arch/desc.js';
import { ARMV8_4_PA48_FEATURES } from '../../src/arch/features.js';
import { FaultType } from '../../src/arch/fault.js';
import { hcr } from '../../src/arch/hcr.js';
import { vtcr } from '../../src/arch/vtcr.js';
import { vttbr } from '../../src/arch/vttbr.js';
import { PhysMem } from '../../src/mem/phys-mem.js';
import { BbmChecker, BbmViolationKind } from '../../src/mmu/bbm-check.js';
import { S2Mmu } from '../../src/mmu/s2-mmu.js';
import { AccessKind } from '../../src/mmu/s2-walk.js';
import { Tlb } from '../../src/mmu/tlb.js';
import { WalkResult } from '../../src/mmu/walk-result.js';
import { S2Tree } from './helpers/s2-tree.js';

const RAM = 0x4000_0000;
const ROOT = 0x4800_0000;
const IPA = 0x20_3000;

for (const form of ['translate', 'translatePa'] as const) {
  t.test(`hits through ${form}`, async (t) => {
    const mem = new PhysMem();
    mem.addRegion(RAM, 0x1000_0000);
    const tlb = new Tlb();
    const checker = new BbmChecker(mem, tlb);
    const mmu = new S2Mmu(mem, ARMV8_4_PA48_FEATURES, { tlb, checker });
    const tree = new S2Tree(mem, { granule: '4k', ias: 39, startLevel: 1, base: ROOT }, 0x4810_0000);
    const d = s2Page({ oa: 0x4a00_0000 });
    const pa = tree.set(IPA, 3, d);
    mmu.setRegs(vtcr({ t0sz: 25, sl0: 1, tg0: '4k', ps: 2 }), vttbr({ baddr: ROOT, vmid: 5 }), hcr({ vm: true, rw: true }));
    const out = new WalkResult();
    const go = (access: AccessKind): FaultType => (form === 'translate' ? mmu.translate(IPA + 8, access, 0, out) : mmu.translatePa(IPA + 8, access, 0, out));
    t.equal(go(AccessKind.WRITE), FaultType.NONE, 'fill');
    const walks = mmu.walks;
    // Software bits [58:55], PBHA [62:59], bit 63: no report, still a hit.
    for (const hiBits of [0xf << 23, 0xf << 27, 0x8000_0000, (0xf << 23) | 0x8000_0000]) {
      mem.write64(pa, d.lo, (d.hi | hiBits) >>> 0);
      t.equal(go(AccessKind.WRITE), FaultType.NONE);
    }
    t.equal(mmu.walks, walks, 'every access was a TLB hit');
    t.equal(checker.violations.length, 0, 'quiet bits changed: nothing reported');
    // Write permission removed in place (no TLBI): the write still hits the stale entry and is reported.
    mem.write64(pa, (d.lo & ~S2AP_W_LO) >>> 0, (d.hi | (0xf << 23)) >>> 0);
    t.equal(go(AccessKind.WRITE), FaultType.NONE);
    t.same(checker.violations.map((v) => v.kind), [BbmViolationKind.STALE_PERMISSION]);
    // Output address changed in place: a stale hit.
    mem.write64(pa, (d.lo + 0x1000) >>> 0, d.hi);
    t.equal(go(AccessKind.READ), FaultType.NONE);
    t.same(checker.violations.map((v) => v.kind), [BbmViolationKind.STALE_PERMISSION, BbmViolationKind.STALE_HIT]);
    // Invalidated in place: a stale hit too.
    mem.write64(pa, 0, 0);
    t.equal(go(AccessKind.READ), FaultType.NONE);
    t.equal(checker.violations.length, 3);
    t.equal(checker.violations[2]!.kind, BbmViolationKind.STALE_HIT);
  });
}
