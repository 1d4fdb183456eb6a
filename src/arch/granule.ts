/**
 * Translation granule geometry for VMSAv8-64 stage 2 (Arm ARM D8.2; reference arm-s2.md §3.1).
 *
 *   granule  G   stride S  levels        leaf sizes
 *   4K       12  9         -1(DS),0..3   L0 512G (DS), L1 1G, L2 2M, L3 4K
 *   16K      14  11        0..3          L1 64G (DS), L2 32M, L3 16K
 *   64K      16  13        1..3          L1 4T (LPA), L2 512M, L3 64K
 */

/** The three granules, named by size. */
export const Granule = { G4K: '4k', G16K: '16k', G64K: '64k' } as const;
/** A translation granule. */
export type Granule = (typeof Granule)[keyof typeof Granule];

/** A lookup level. Level −1 exists only for 4K with FEAT_LPA2 (DS=1). */
export type Level = -1 | 0 | 1 | 2 | 3;

/** log2 of the granule size in bytes (G). */
export function granuleShift(g: Granule): 12 | 14 | 16 {
  return g === '4k' ? 12 : g === '16k' ? 14 : 16;
}

/** Bits resolved per level, G − 3 (S): 9, 11 or 13. */
export function granuleStride(g: Granule): 9 | 11 | 13 {
  return g === '4k' ? 9 : g === '16k' ? 11 : 13;
}

/** log2 of the bytes one entry at `level` maps: G + (3 − level)·S (ASL `TranslationSize`). */
export function levelShift(g: Granule, level: number): number {
  return granuleShift(g) + (3 - level) * granuleStride(g);
}

/** Bytes one entry at `level` maps (a block at levels < 3, a page at 3). */
export function levelSize(g: Granule, level: number): number {
  return 2 ** levelShift(g, level);
}

/** Entries in a full (non-start, non-concatenated) table: 2^S. */
export function entriesPerTable(g: Granule): number {
  return 2 ** granuleStride(g);
}

/** Index of `addr` in a table at `level` (within one table of 2^S entries; start-level tables may be larger). */
export function levelIndex(g: Granule, level: number, addr: number): number {
  return Math.floor(addr / 2 ** levelShift(g, level)) % entriesPerTable(g);
}

/**
 * Whether a block descriptor is architecturally allowed at `level` (ASL `BlockDescSupported`, arm-s2.md §3.1):
 * 4K → L1, L2, and L0 with DS; 16K → L2, and L1 with DS; 64K → L2, and L1 when the PE has 52-bit PAs (FEAT_LPA).
 */
export function blockAllowed(g: Granule, level: number, ds: boolean, pa52: boolean): boolean {
  switch (g) {
    case '4k':
      return level === 1 || level === 2 || (level === 0 && ds);
    case '16k':
      return level === 2 || (level === 1 && ds);
    case '64k':
      return level === 2 || (level === 1 && pa52);
  }
}

/** The lowest level that exists for a granule (ignoring DS): 0 for 4K and 16K, 1 for 64K. */
export function minLevel(g: Granule, ds: boolean): number {
  return g === '4k' ? (ds ? -1 : 0) : g === '16k' ? 0 : 1;
}
