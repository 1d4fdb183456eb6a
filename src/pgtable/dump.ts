/**
 * The Linux-format stage-2 dump: the text of the `stage2_page_tables` debugfs file, produced by
 * `kvm_ptdump_guest_show()` (arch/arm64/kvm/ptdump.c) through the arm64 `note_page()` printer
 * (arch/arm64/mm/ptdump.c). Reference: linux-ptdump.md.
 *
 * A LEAF walk over [0, 2^ia_bits) reports every leaf entry, invalid ones included, with its level. Consecutive
 * entries with the same level and the same masked attributes form a run; a run is printed when the next one
 * starts:
 *
 *   0x%016lx-0x%016lx   %9lu%c %s[ attr]…        (size in the largest unit K/M/G/T/P/E that divides it;
 *                                                 level name "%u"; attributes only when the masked prot ≠ 0)
 *
 * Attribute columns (`stage2_pte_bits[]`): valid ` `/`F`, `R`/` `, `W`/` `, XN[54:53] as `px ux ` / `PXNux ` /
 * `PXNUXN` / `px UXN`, `AF`/`  `, `BLK`/`   ` (bits[1:0] = 01).
 *
 * Kernel behaviour kept on purpose (quirk): the walk never calls `note_page()` past the last entry, so the final
 * run is never printed; and a start level of 3 makes the file fail to open (here: an empty string).
 */

import { u64ToHex } from '../arch/bits.js';
import type { Granule } from '../arch/granule.js';
import type { PhysMem } from '../mem/phys-mem.js';
import type { PgtMmOps } from './mm-ops.js';
import { KVM_PGTABLE_LAST_LEVEL, WalkFlags, type KvmPgtable } from './types.js';
import { kvmPgtableWalk, type VisitCtx, type Walker } from './walk.js';

/** One `struct ptdump_prot_bits` row: mask/value on both halves, and the strings for match / no match. */
interface ProtBits {
  readonly maskLo: number;
  readonly maskHi: number;
  readonly valLo: number;
  readonly valHi: number;
  readonly set: string;
  readonly clear: string | null;
}

const XN_HI = 0x60_0000; // bits[54:53] on the high half

/** `stage2_pte_bits[]` (arch/arm64/kvm/ptdump.c). */
const STAGE2_PTE_BITS: readonly ProtBits[] = [
  { maskLo: 0x1, maskHi: 0, valLo: 0x1, valHi: 0, set: ' ', clear: 'F' }, // PTE_VALID
  { maskLo: 0x40, maskHi: 0, valLo: 0x40, valHi: 0, set: 'R', clear: ' ' }, // S2AP_R, bit 6
  { maskLo: 0x80, maskHi: 0, valLo: 0x80, valHi: 0, set: 'W', clear: ' ' }, // S2AP_W, bit 7
  { maskLo: 0, maskHi: XN_HI, valLo: 0, valHi: 0, set: 'px ux ', clear: null }, // XN 0b00
  { maskLo: 0, maskHi: XN_HI, valLo: 0, valHi: 0x20_0000, set: 'PXNux ', clear: null }, // XN 0b01
  { maskLo: 0, maskHi: XN_HI, valLo: 0, valHi: 0x40_0000, set: 'PXNUXN', clear: null }, // XN 0b10
  { maskLo: 0, maskHi: XN_HI, valLo: 0, valHi: 0x60_0000, set: 'px UXN', clear: null }, // XN 0b11
  { maskLo: 0x400, maskHi: 0, valLo: 0x400, valHi: 0, set: 'AF', clear: '  ' }, // AF, bit 10
  { maskLo: 0x3, maskHi: 0, valLo: 0x1, valHi: 0, set: 'BLK', clear: '   ' }, // PMD_TYPE_MASK / PMD_TYPE_SECT
];

/** `level[i].mask`: the OR of every row's mask (`kvm_ptdump_build_levels()`). */
const MASK_LO = STAGE2_PTE_BITS.reduce((m, b) => m | b.maskLo, 0);
const MASK_HI = STAGE2_PTE_BITS.reduce((m, b) => m | b.maskHi, 0);

/** `struct ptdump_pg_state` for one dump. */
interface PgState {
  out: string[];
  /** -1 before the first entry. */
  level: number;
  protLo: number;
  protHi: number;
  start: number;
  /** `marker[1].start_address` = 2^ia_bits. */
  readonly markerEnd: number;
}

const UNITS = 'KMGTPE';

/** `dump_prot()`. */
function dumpProt(st: PgState): string {
  let s = '';
  for (const b of STAGE2_PTE_BITS) {
    const match = (st.protLo & b.maskLo) === b.valLo && ((st.protHi & b.maskHi) >>> 0) === b.valHi;
    const str = match ? b.set : b.clear;
    if (str !== null) s += ' ' + str;
  }
  return s;
}

/** Prints the run [st.start, addr). */
function printRun(st: PgState, addr: number): void {
  let line = `${u64ToHex(st.start % 2 ** 32, Math.floor(st.start / 2 ** 32))}-${u64ToHex(addr % 2 ** 32, Math.floor(addr / 2 ** 32))}   `;
  let delta = Math.floor((addr - st.start) / 1024);
  let unit = 0;
  while (delta % 1024 === 0 && unit + 1 < UNITS.length) {
    delta = delta / 1024;
    unit++;
  }
  line += `${String(delta).padStart(9, ' ')}${UNITS[unit]} ${st.level}`;
  if (st.protLo !== 0 || st.protHi !== 0) line += dumpProt(st);
  st.out.push(line + '\n');
}

/** `note_page()` (arch/arm64/mm/ptdump.c) as the stage-2 dumper calls it. */
function notePage(st: PgState, addr: number, level: number, lo: number, hi: number): void {
  const protLo = (lo & MASK_LO) >>> 0;
  const protHi = (hi & MASK_HI) >>> 0;
  if (st.level === -1) {
    st.level = level;
    st.protLo = protLo;
    st.protHi = protHi;
    st.start = addr;
    st.out.push('---[ Guest IPA ]---\n');
  } else if (protLo !== st.protLo || protHi !== st.protHi || level !== st.level || addr >= st.markerEnd) {
    printRun(st, addr);
    st.start = addr;
    st.protLo = protLo;
    st.protHi = protHi;
    st.level = level;
  }
}

/** `kvm_ptdump_visitor()`. */
function ptdumpVisitor(ctx: VisitCtx<PgState>): number {
  notePage(ctx.arg, ctx.addr, ctx.level, ctx.oldLo, ctx.oldHi);
  return 0;
}

/**
 * The `stage2_page_tables` text of a stage-2 table.
 * @returns the dump; an empty string when the start level is 3 (the kernel refuses to open the file) or when the
 *   walk fails (no pgd).
 * @remarks Mirrors `kvm_ptdump_guest_show()` (arch/arm64/kvm/ptdump.c) with `note_page()`
 *   (arch/arm64/mm/ptdump.c).
 */
export function dumpStage2(pgt: KvmPgtable): string {
  if (pgt.startLevel >= KVM_PGTABLE_LAST_LEVEL) return '';
  const st: PgState = { out: [], level: -1, protLo: 0, protHi: 0, start: 0, markerEnd: 2 ** pgt.iaBits };
  const walker: Walker<PgState> = { cb: ptdumpVisitor, arg: st, flags: WalkFlags.LEAF };
  const ret = kvmPgtableWalk(pgt, 0, 2 ** pgt.iaBits, walker);
  if (ret !== 0) return '';
  return st.out.join('');
}

/** Geometry of a raw stage-2 table in memory. */
export interface RawStage2Geometry {
  /** Translation granule (VTCR_EL2.TG0). */
  readonly granule: Granule;
  /** Input address bits (64 − VTCR_EL2.T0SZ). */
  readonly iaBits: number;
  /** Start level (from VTCR_EL2.SL0). */
  readonly startLevel: number;
}

const NO_MM_OPS: PgtMmOps = {
  zallocPage: () => -1,
  zallocPagesExact: () => -1,
  freePagesExact: () => undefined,
  getPage: () => undefined,
  putPage: () => undefined,
  pageCount: () => 0,
};

/**
 * The `stage2_page_tables` text of a table given only by memory, pgd PA and geometry (e.g. a VTTBR/VTCR pair
 * read from a snapshot). The walk only reads.
 * @remarks As {@link dumpStage2}.
 */
export function dumpStage2Raw(mem: PhysMem, pgd: number, geo: RawStage2Geometry): string {
  const pgt: KvmPgtable = {
    iaBits: geo.iaBits,
    startLevel: geo.startLevel,
    pgd,
    granule: geo.granule,
    mmOps: NO_MM_OPS,
    mem,
    mmu: null,
    flags: 0,
    forcePteCb: null,
    hypTlb: null,
    warn: () => undefined,
  };
  return dumpStage2(pgt);
}
