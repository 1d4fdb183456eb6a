/**
 * PTE helpers shared by the stage-2 and hyp stage-1 code of the library: validity, table test, output-address
 * packing and granule geometry, mirroring the inline helpers of arch/arm64/include/asm/kvm_pgtable.h and the
 * static ones at the top of arch/arm64/kvm/hyp/pgtable.c (Linux v6.10, no LPA2).
 *
 *   kvm_pte_t (no LPA2)   63..48 | 47..G  OA/next-level address | 15..12 OA[51:48] (64K only) | 1 type | 0 valid
 */

import { granuleShift, levelShift, type Granule } from '../arch/granule.js';
import { DESC_TYPE_LO, DESC_VALID_LO } from '../arch/desc.js';
import { KVM_PGTABLE_LAST_LEVEL } from './types.js';

/** `kvm_pte_valid()`: bit[0]. */
export function kvmPteValid(lo: number): boolean {
  return (lo & DESC_VALID_LO) !== 0;
}

/** `kvm_pte_table()`: a valid entry with bit[1] set above the last level. */
export function kvmPteTable(lo: number, level: number): boolean {
  return level !== KVM_PGTABLE_LAST_LEVEL && (lo & (DESC_VALID_LO | DESC_TYPE_LO)) === (DESC_VALID_LO | DESC_TYPE_LO);
}

/** Mask of bits[31:G] of the low half: OA bits held in the low word for granule shift `g`. */
function addrMaskLo(g: number): number {
  return (0xffff_ffff << g) >>> 0;
}

/**
 * `kvm_pte_to_phys()`: OA[47:G] from the PTE, plus OA[51:48] from bits[15:12] with the 64K granule.
 * Exact: the result is below 2^52.
 */
export function kvmPteToPhys(lo: number, hi: number, granule: Granule): number {
  const g = granuleShift(granule);
  let pa = (hi & 0xffff) * 0x1_0000_0000 + ((lo & addrMaskLo(g)) >>> 0);
  if (g === 16) pa += ((lo >>> 12) & 0xf) * 2 ** 48;
  return pa;
}

/** Low half of `kvm_phys_to_pte(pa)`. */
export function kvmPhysToPteLo(pa: number, granule: Granule): number {
  const g = granuleShift(granule);
  let lo = (pa >>> 0) & addrMaskLo(g);
  if (g === 16) lo |= (Math.floor(pa / 2 ** 48) & 0xf) << 12;
  return lo >>> 0;
}

/** High half of `kvm_phys_to_pte(pa)`: OA[47:32]. */
export function kvmPhysToPteHi(pa: number): number {
  return Math.floor(pa / 0x1_0000_0000) & 0xffff;
}

/** `kvm_granule_shift(level)` = ARM64_HW_PGTABLE_LEVEL_SHIFT(level). */
export function kvmGranuleShift(granule: Granule, level: number): number {
  return levelShift(granule, level);
}

/**
 * `POW2[n]` = 2^n for n in 0..127 (every level shift of every granule, level −1 included, and every `ia_bits`). The
 * walk loops index it instead of computing `2 ** n`, which V8 compiles to a call into its `pow()` (tens of ns per
 * use; a walk used it on every visited entry).
 */
export const POW2: Float64Array = (() => {
  const t = new Float64Array(128);
  let v = 1;
  for (let i = 0; i < 128; i++) {
    t[i] = v;
    v *= 2;
  }
  return t;
})();

/** `kvm_granule_size(level)`. */
export function kvmGranuleSize(granule: Granule, level: number): number {
  return POW2[levelShift(granule, level)]!; // JUSTIFY: level shifts of levels -1..3 lie in 12..68.
}

/** `PAGE_SIZE` of a table: the granule size. */
export function pgtPageSize(granule: Granule): number {
  return POW2[granuleShift(granule)]!; // JUSTIFY: 12, 14 or 16.
}

/** `PTRS_PER_PTE`: entries in one table page. */
export function ptrsPerPte(granule: Granule): number {
  return POW2[granuleShift(granule) - 3]!; // JUSTIFY: 9, 11 or 13.
}

/**
 * `kvm_level_supports_block_mapping()`: level ≥ `KVM_PGTABLE_MIN_BLOCK_LEVEL` (1 with 4K, 2 with 16K/64K; KVM
 * never uses the 52-bit-only L0/L1 blocks).
 */
export function kvmLevelSupportsBlockMapping(granule: Granule, level: number): boolean {
  return level >= (granule === '4k' ? 1 : 2);
}

/**
 * `ALIGN_DOWN(x, size)` for a power-of-two `size` (no int32 truncation): `x − (x mod size)`, the remainder taking
 * the sign of `x` as C's does. For x ≥ 0 it is computed as floor-and-multiply, exact because division by a power
 * of two is exact in binary floating point; `%` on doubles compiles to a call into `fmod()`.
 */
export function alignDownPow2(x: number, size: number): number {
  return x >= 0 ? Math.floor(x / size) * size : x - (x % size);
}

/**
 * `x mod size` for a power-of-two `size`, the remainder taking the sign of `x` as C's `%` does; for x ≥ 0 computed
 * without `%` on doubles (a call into `fmod()` in V8).
 */
export function modPow2(x: number, size: number): number {
  return x >= 0 ? x - Math.floor(x / size) * size : x % size;
}
