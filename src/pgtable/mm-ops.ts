/**
 * Memory-management callbacks of the page-table library: a mirror of `struct kvm_pgtable_mm_ops`
 * (arch/arm64/include/asm/kvm_pgtable.h). Table pages are named by PA (EL2's `phys_to_virt` is a fixed offset, so
 * the identity serves); their refcounts belong to the allocator (EL2 keeps them in `hyp_vmemmap[pfn].refcount`).
 *
 * The memcache is opaque to the library, as the kernel's `void *mc`: it is passed through to {@link
 * PgtMmOps.zallocPage}, and a null memcache makes the stage-2 map walker fail with -ENOMEM before allocating.
 */

/** The opaque memcache argument (`void *arg` of `zalloc_page`); null is the kernel's NULL. */
export type Memcache = object | null;

/**
 * `struct kvm_pgtable_mm_ops`.
 *
 * @remarks Mirrors `struct kvm_pgtable_mm_ops` (arch/arm64/include/asm/kvm_pgtable.h). Page addresses passed to
 * `getPage`/`putPage`/`pageCount` may point anywhere inside the page (the kernel passes a PTE pointer and
 * `hyp_virt_to_page()` rounds down).
 */
export interface PgtMmOps {
  /**
   * `zalloc_page(arg)`: one zeroed page with refcount 1, taken from `mc` (or from the allocator's pool when the
   * implementation ignores `mc`).
   * @returns its PA, or -1 when empty (the caller returns -ENOMEM).
   */
  zallocPage(mc: Memcache): number;
  /**
   * `zalloc_pages_exact(size)`: physically contiguous zeroed pages, naturally aligned to the power of two
   * covering `size` (what the buddy allocator gives, and what a concatenated stage-2 pgd needs), each with
   * refcount 1.
   * @returns the PA of the first page, or -1 when no such run is free.
   */
  zallocPagesExact(size: number): number;
  /** `free_pages_exact(addr, size)`: returns pages obtained from `zallocPagesExact`. */
  freePagesExact(pa: number, size: number): void;
  /** `get_page(addr)`: increments the refcount of the page holding `pa`. */
  getPage(pa: number): void;
  /** `put_page(addr)`: decrements the refcount; at zero the page goes back to its pool. */
  putPage(pa: number): void;
  /** `page_count(addr)`: the refcount of the page holding `pa`. */
  pageCount(pa: number): number;
  /** `dcache_clean_inval_poc(addr, size)`, or absent (the kernel's NULL hook). Reported for checking only. */
  dcacheCleanInvalPoc?(pa: number, size: number): void;
  /** `icache_inval_pou(addr, size)`, or absent. Reported for checking only. */
  icacheInvalPou?(pa: number, size: number): void;
}
