/**
 * The hypervisor's per-page metadata, `hyp_vmemmap`: one `struct hyp_page` per page of RAM, indexed by pfn, as
 * typed arrays (DESIGN.md §3: no per-page objects). 2022-series layout (pkvm.md §1.5, V1 row):
 *
 *   field      type  meaning
 *   refcount   u16   page-allocator refcount; pins by `hyp_pin_shared_mem`; table-page refcount of EL2 tables
 *   order      u8    buddy order of a free or allocated block head, HYP_NO_ORDER otherwise
 *   flags      u8    HOST_PAGE_NEED_POISONING | HOST_PAGE_PENDING_RECLAIM (guarded by the host lock)
 *
 * The free lists of the hyp page allocator are threaded through the kernel's free pages themselves; the model keeps
 * those links in two more typed arrays here so that no EL2 state lives in guest-visible memory.
 *
 * Mirrors `struct hyp_page` and `hyp_phys_to_page()` (arch/arm64/kvm/hyp/include/nvhe/memory.h, 2022 series), plus
 * the UP-6.14+ `host_share_guest_count` for the upstream profile.
 */

import { assert } from '../arch/assert.js';

/** `HYP_NO_ORDER` for the u8 order field. */
export const HYP_NO_ORDER = 0xff;

/** `hyp_page.flags` bits (V1 24/89, 26/89). */
export const HypPageFlag = {
  /** `HOST_PAGE_NEED_POISONING` = BIT(0): zero the page before the host gets it back. */
  NEED_POISONING: 0x1,
  /** `HOST_PAGE_PENDING_RECLAIM` = BIT(1): a torn-down guest released the page; the host may reclaim it. */
  PENDING_RECLAIM: 0x2,
} as const;
/** One `hyp_page.flags` bit. */
export type HypPageFlag = (typeof HypPageFlag)[keyof typeof HypPageFlag];

/** Largest refcount a u16 holds. */
export const HYP_PAGE_REFCOUNT_MAX = 0xffff;

/** The `hyp_vmemmap` over a pfn range covering all RAM. */
export class HypVmemmap {
  /** First pfn covered. */
  readonly basePfn: number;
  /** Number of pfns covered. */
  readonly nrPages: number;
  /** `hyp_page.refcount`, by `pfn - basePfn`. */
  readonly refcount: Uint16Array;
  /** `hyp_page.order`, by `pfn - basePfn`. */
  readonly order: Uint8Array;
  /** `hyp_page.flags`, by `pfn - basePfn`. */
  readonly flags: Uint8Array;
  /** Free-list link (next index or -1), used by the hyp pools. */
  readonly next: Int32Array;
  /** Free-list link (previous index or -1), used by the hyp pools. */
  readonly prev: Int32Array;
  /** 1 while the page heads a block on some pool's free list. */
  readonly onFreeList: Uint8Array;
  /**
   * `hyp_page.host_share_guest_count` (UP-6.14+, used by the `upstream-6.16` profile): how many non-protected
   * guests the host currently shares the page with.
   */
  readonly shareGuestCount: Uint32Array;

  /**
   * @param basePfn first pfn (the lowest RAM pfn).
   * @param nrPages pfns covered (through the highest RAM pfn).
   */
  constructor(basePfn: number, nrPages: number) {
    assert(Number.isSafeInteger(basePfn) && basePfn >= 0, 'vmemmap base');
    assert(Number.isSafeInteger(nrPages) && nrPages > 0 && nrPages < 2 ** 31, 'vmemmap size');
    this.basePfn = basePfn;
    this.nrPages = nrPages;
    this.refcount = new Uint16Array(nrPages);
    this.order = new Uint8Array(nrPages).fill(HYP_NO_ORDER);
    this.flags = new Uint8Array(nrPages);
    this.next = new Int32Array(nrPages).fill(-1);
    this.prev = new Int32Array(nrPages).fill(-1);
    this.onFreeList = new Uint8Array(nrPages);
    this.shareGuestCount = new Uint32Array(nrPages);
  }

  /** True when `pfn` has a `struct hyp_page`. */
  has(pfn: number): boolean {
    return pfn >= this.basePfn && pfn < this.basePfn + this.nrPages;
  }

  /** The array index of `pfn` (`hyp_phys_to_page`); `pfn` must be covered (an emulator invariant). */
  idx(pfn: number): number {
    if (!this.has(pfn)) assert(false, `pfn 0x${pfn.toString(16)} outside hyp_vmemmap`);
    return pfn - this.basePfn;
  }

  /** `hyp_page_count()`: the refcount of `pfn`. */
  pageCount(pfn: number): number {
    return this.refcount[this.idx(pfn)]!; // JUSTIFY: idx checked.
  }
}
