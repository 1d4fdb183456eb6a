/**
 * The host's idea of a pKVM guest's stage-2 geometry (4 KiB granule): number of levels, the pgd size it allocates
 * and donates, and the memcache minimum per fault. pKVM guests use the host's IPA limit, so these agree with what
 * EL2 computes from its own VTCR (V1 33/89; pkvm.md §5.2, §9.19).
 */

import { PAGE_SHIFT, PAGE_SIZE } from '../arch/addr.js';
import { assert } from '../arch/assert.js';

/**
 * `kvm_stage2_levels()`: `ARM64_HW_PGTABLE_LEVELS(ipa_bits - 4)` = (ipa_bits − 8) / 9 with 4 KiB pages
 * (arch/arm64/include/asm/stage2_pgtable.h).
 * @param ipaBits 32…48.
 */
export function kvmStage2Levels(ipaBits: number): number {
  // The message is built only on failure (this runs on every guest fault, via kvmMmuCacheMinPages).
  if (!(Number.isInteger(ipaBits) && ipaBits >= 32 && ipaBits <= 48)) assert(false, `IPA size ${ipaBits} out of range`);
  return Math.floor((ipaBits - 8) / (PAGE_SHIFT - 3));
}

/**
 * `kvm_mmu_cache_min_pages()`: stage-2 levels − 1, the table pages one new leaf may need below the pgd
 * (arch/arm64/include/asm/kvm_mmu.h).
 */
export function kvmMmuCacheMinPages(ipaBits: number): number {
  return kvmStage2Levels(ipaBits) - 1;
}

/**
 * `kvm_pgtable_stage2_pgd_size()` (arch/arm64/kvm/hyp/pgtable.c): the bytes of the (possibly concatenated) first
 * table, at least one page: 2^(ipa_bits − shift(start level) − 9) pages.
 */
export function stage2PgdSize(ipaBits: number): number {
  const levels = kvmStage2Levels(ipaBits);
  const startLevel = 4 - levels;
  const shift = PAGE_SHIFT + (PAGE_SHIFT - 3) * (3 - startLevel);
  const pages = ipaBits - shift - (PAGE_SHIFT - 3) > 0 ? 2 ** (ipaBits - shift - (PAGE_SHIFT - 3)) : 1;
  return pages * PAGE_SIZE;
}
