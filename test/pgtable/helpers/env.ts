/**
 * Test environment for the page-table library: RAM, a bounded page pool, a recording TLB (a real implementation of
 * `TlbMaintenance` that logs every operation) and a stage-2 table built from a VTCR, plus prot/descriptor builders.
 */

import type { Granule } from '../../../src/arch/granule.js';
import { PhysMem } from '../../../src/mem/phys-mem.js';
import { KvmPgtableProt, KvmPgtableProtHi, type ForcePteCb, type KvmPgtable } from '../../../src/pgtable/types.js';
import type { TlbMaintenance } from '../../../src/pgtable/tlb-ops.js';
import { PageStackMemcache, PgtPagePool } from '../../../src/pgtable/test-pool.js';
import { kvmPgtableStage2Init, kvmVtcrFor, newKvmPgtable, warningList } from '../../../src/pgtable/stage2.js';

/** One recorded maintenance operation. */
export type TlbOp =
  | { op: 'ipas2e1is' | 'ipas2le1is'; vmid: number; ipa: number; level: number }
  | { op: 'vmalls12e1is' | 'vmalle1is'; vmid: number }
  | { op: 'dsb' | 'isb' };

/** A TLB that records what it is asked to do. */
export class RecordingTlb implements TlbMaintenance {
  readonly ops: TlbOp[] = [];
  ipas2e1is(vmid: number, ipa: number, level: number): void {
    this.ops.push({ op: 'ipas2e1is', vmid, ipa, level });
  }
  ipas2le1is(vmid: number, ipa: number, level: number): void {
    this.ops.push({ op: 'ipas2le1is', vmid, ipa, level });
  }
  vmalls12e1is(vmid: number): void {
    this.ops.push({ op: 'vmalls12e1is', vmid });
  }
  vmalle1is(vmid: number): void {
    this.ops.push({ op: 'vmalle1is', vmid });
  }
  dsb(): void {
    this.ops.push({ op: 'dsb' });
  }
  isb(): void {
    this.ops.push({ op: 'isb' });
  }
  /** Compact text form: `ipas2e1is(1,0x80000000,3)`, `dsb`, … */
  text(): string[] {
    return this.ops.map((o) => {
      switch (o.op) {
        case 'ipas2e1is':
        case 'ipas2le1is':
          return `${o.op}(${o.vmid},0x${o.ipa.toString(16)},${o.level})`;
        case 'vmalls12e1is':
        case 'vmalle1is':
          return `${o.op}(${o.vmid})`;
        default:
          return o.op;
      }
    });
  }
  clear(): void {
    this.ops.length = 0;
  }
}

/** Every `writeDesc` store, in order. */
export interface DescWrite {
  pa: number;
  oldLo: number;
  oldHi: number;
  newLo: number;
  newHi: number;
  /** Index into the TLB log at the time of the write. */
  tlbAt: number;
}

export interface EnvOpts {
  granule?: Granule;
  iaBits?: number;
  poolPages?: number;
  hasFwb?: boolean;
  flags?: number;
  forcePteCb?: ForcePteCb | null;
  vmid?: number;
}

export interface Env {
  mem: PhysMem;
  pool: PgtPagePool;
  tlb: RecordingTlb;
  pgt: KvmPgtable;
  warnings: string[];
  writes: DescWrite[];
  /** A memcache that means "allocate from the pool". */
  mc: object;
  /** Pool pages in use right after init (the pgd). */
  basePages: number;
}

/** RAM at [1 GiB, 3 GiB): guest memory below 0x7000_0000, the table pool from 0x7000_0000. */
export const RAM_BASE = 0x4000_0000;
export const POOL_BASE = 0x8000_0000;

export function makeEnv(o: EnvOpts = {}): Env {
  const granule = o.granule ?? '4k';
  const pageSize = granule === '4k' ? 4096 : granule === '16k' ? 16384 : 65536;
  const mem = new PhysMem();
  mem.addRegion(RAM_BASE, 0x8000_0000);
  const pool = new PgtPagePool(mem, POOL_BASE, o.poolPages ?? 512, pageSize);
  const tlb = new RecordingTlb();
  const warnings: string[] = [];
  const writes: DescWrite[] = [];
  mem.observer = {
    onDescWrite(pa, oldLo, oldHi, newLo, newHi) {
      writes.push({ pa, oldLo, oldHi, newLo, newHi, tlbAt: tlb.ops.length });
    },
  };
  const pgt = newKvmPgtable(mem, pool, warningList(warnings));
  const ret = kvmPgtableStage2Init(
    pgt,
    { vmid: o.vmid ?? 1, tlb, hasFwb: o.hasFwb ?? false },
    kvmVtcrFor(granule, o.iaBits ?? 40),
    o.flags ?? 0,
    o.forcePteCb ?? null,
  );
  if (ret !== 0) throw new Error(`init failed ${ret}`);
  tlb.clear();
  return { mem, pool, tlb, pgt, warnings, writes, mc: pool, basePages: pool.usedPages };
}

/** Prot builder: `prot('RW')`, `prot('RWX', { sw0: true })`, `prot('RW', { device: true })`. */
export function prot(
  perms: string,
  o: { device?: boolean; nc?: boolean; sw0?: boolean; sw1?: boolean; sw2?: boolean; sw3?: boolean } = {},
): { lo: number; hi: number } {
  let lo = 0;
  if (perms.includes('R')) lo |= KvmPgtableProt.R;
  if (perms.includes('W')) lo |= KvmPgtableProt.W;
  if (perms.includes('X')) lo |= KvmPgtableProt.X;
  if (o.device === true) lo |= KvmPgtableProt.DEVICE;
  if (o.nc === true) lo |= KvmPgtableProt.NORMAL_NC;
  let hi = 0;
  if (o.sw0 === true) hi |= KvmPgtableProtHi.SW0;
  if (o.sw1 === true) hi |= KvmPgtableProtHi.SW1;
  if (o.sw2 === true) hi |= KvmPgtableProtHi.SW2;
  if (o.sw3 === true) hi |= KvmPgtableProtHi.SW3;
  return { lo, hi };
}

export { PageStackMemcache };
