/**
 * The host kernel's physical page allocator and `struct page` array (`mem_map`) over the RAM the host owns (host
 * RAM minus the hypervisor's carve-out). Per-page metadata lives in typed arrays indexed by page number, never in
 * objects (DESIGN.md §3): flags (allocated, swap-backed, hardware-poisoned, mapped by a VMA) and the pin count that
 * `pin_user_pages()` raises (mm/gup.c, FOLL_PIN). Allocation is a LIFO free list seeded in ascending address order,
 * so runs are deterministic.
 */

import { PAGE_SIZE } from '../arch/addr.js';
import { assert } from '../arch/assert.js';

/** `struct page` flag: the page is allocated (not on the free list). */
export const PG_ALLOCATED = 0x01;
/** `PG_swapbacked`: anonymous or shmem memory (not page cache); mm/page-flags. */
export const PG_SWAPBACKED = 0x02;
/** `PG_hwpoison`: memory_failure() marked the page; GUP with FOLL_HWPOISON reports -EHWPOISON. */
export const PG_HWPOISON = 0x04;
/** The page is mapped by a VMA of the VMM (its mapcount is non-zero). */
export const PG_MAPPED = 0x08;
/** The page was dirtied by `unpin_user_pages_dirty_lock(…, true)`. */
export const PG_DIRTY = 0x10;

/** A physical RAM range, in bytes, page aligned. */
export interface PaRange {
  readonly base: number;
  readonly size: number;
}

/** The host's page allocator and per-page state. */
export class HostPages {
  private readonly basePfn: Float64Array;
  private readonly startIdx: Float64Array;
  private readonly nrRanges: number;
  /** Number of pages managed. */
  readonly nrPages: number;
  /** Flags per page (`PG_*`), by page index. */
  readonly flags: Uint8Array;
  /** Pin count per page (`page_maybe_dma_pinned()` is `pinCount > 0`), by page index. */
  readonly pinCount: Uint32Array;
  /** LIFO of free page indices; may hold stale entries of pages claimed out of order (skipped on pop). */
  private readonly freeStack: Uint32Array;
  private readonly onStack: Uint8Array;
  private stackTop: number;
  private nrFree: number;

  /**
   * @param ranges RAM the host owns, page aligned and non-overlapping. Throws InvariantError otherwise: the
   *   composition root validates user layouts before building the host.
   */
  constructor(ranges: readonly PaRange[]) {
    const sorted = [...ranges].sort((a, b) => a.base - b.base);
    this.nrRanges = sorted.length;
    this.basePfn = new Float64Array(sorted.length);
    this.startIdx = new Float64Array(sorted.length + 1);
    let n = 0;
    let prevEnd = -1;
    for (let i = 0; i < sorted.length; i++) {
      const r = sorted[i]!; // JUSTIFY: i < length.
      assert(r.base % PAGE_SIZE === 0 && r.size % PAGE_SIZE === 0 && r.size > 0, 'host RAM range not page aligned');
      assert(r.base >= prevEnd, 'host RAM ranges overlap');
      prevEnd = r.base + r.size;
      this.basePfn[i] = r.base / PAGE_SIZE;
      this.startIdx[i] = n;
      n += r.size / PAGE_SIZE;
    }
    this.startIdx[sorted.length] = n;
    this.nrPages = n;
    this.flags = new Uint8Array(n);
    this.pinCount = new Uint32Array(n);
    this.freeStack = new Uint32Array(n);
    this.onStack = new Uint8Array(n).fill(1);
    // Lowest index on top: allocations come out in ascending address order.
    for (let i = 0; i < n; i++) this.freeStack[i] = n - 1 - i;
    this.stackTop = n;
    this.nrFree = n;
  }

  /** Number of free pages. */
  get freePages(): number {
    return this.nrFree;
  }

  /** The page index of `pa`, or -1 when `pa` is not host RAM. */
  indexOf(pa: number): number {
    const pfn = Math.floor(pa / PAGE_SIZE);
    for (let i = 0; i < this.nrRanges; i++) {
      const off = pfn - this.basePfn[i]!; // JUSTIFY: i < nrRanges.
      if (off >= 0 && off < this.startIdx[i + 1]! - this.startIdx[i]!) return this.startIdx[i]! + off;
    }
    return -1;
  }

  /** The physical address of page index `idx`. */
  paOf(idx: number): number {
    let i = this.nrRanges - 1;
    while (i > 0 && this.startIdx[i]! > idx) i--; // JUSTIFY: 0 ≤ i < nrRanges.
    return (this.basePfn[i]! + (idx - this.startIdx[i]!)) * PAGE_SIZE; // JUSTIFY: as above.
  }

  /**
   * `alloc_page(GFP_KERNEL)`: takes a free page.
   * @returns the page's PA, or -1 when no page is free (the caller returns -ENOMEM).
   */
  allocPage(): number {
    // Skip pages claimed out of order by claimPage or poisoned while free (stale stack entries).
    while (this.stackTop > 0) {
      const idx = this.freeStack[--this.stackTop]!; // JUSTIFY: stackTop > 0 before the decrement.
      this.onStack[idx] = 0;
      if ((this.flags[idx]! & (PG_ALLOCATED | PG_HWPOISON)) === 0) {
        this.flags[idx] = PG_ALLOCATED;
        this.pinCount[idx] = 0;
        this.nrFree--;
        return this.paOf(idx);
      }
    }
    return -1;
  }

  /**
   * Takes the specific page at `pa` (a VMM mapping with a fixed backing, or a test layout).
   * @returns false when `pa` is not host RAM or the page is already allocated.
   */
  claimPage(pa: number): boolean {
    const idx = this.indexOf(pa);
    if (idx < 0 || (this.flags[idx]! & PG_ALLOCATED) !== 0) return false; // JUSTIFY: idx in range.
    if ((this.flags[idx]! & PG_HWPOISON) !== 0) return false; // JUSTIFY: idx in range.
    this.flags[idx] = PG_ALLOCATED;
    this.pinCount[idx] = 0;
    this.nrFree--; // its stack entry goes stale and is skipped by allocPage
    return true;
  }

  /**
   * `__free_page()`: returns an allocated page to the free list. Freeing a page that is not allocated, or that is
   * still pinned or mapped, is an emulator bug.
   */
  freePage(pa: number): void {
    const idx = this.indexOf(pa);
    if (idx < 0) assert(false, `freePage: ${pa.toString(16)} is not host RAM`);
    const f = this.flags[idx]!; // JUSTIFY: idx in range.
    if ((f & PG_ALLOCATED) === 0) assert(false, `freePage: ${pa.toString(16)} is not allocated`);
    if (!(this.pinCount[idx] === 0 && (f & PG_MAPPED) === 0)) assert(false, `freePage: ${pa.toString(16)} still in use`);
    this.flags[idx] = f & PG_HWPOISON; // a poisoned page keeps its mark (it is never reused, see allocPage)
    if ((f & PG_HWPOISON) !== 0) return;
    this.nrFree++;
    if (this.onStack[idx] === 0) {
      this.onStack[idx] = 1;
      this.freeStack[this.stackTop++] = idx;
    }
  }

  /** True when page `pa` is allocated. */
  isAllocated(pa: number): boolean {
    const idx = this.indexOf(pa);
    return idx >= 0 && (this.flags[idx]! & PG_ALLOCATED) !== 0; // JUSTIFY: idx in range.
  }

  /**
   * `memory_failure()`: marks the page hardware-poisoned. An allocated page keeps its owner until released; a free
   * page is taken off the allocator for good.
   * @returns false when `pa` is not host RAM.
   */
  markHwPoison(pa: number): boolean {
    const idx = this.indexOf(pa);
    if (idx < 0) return false;
    const f = this.flags[idx]!; // JUSTIFY: idx in range.
    if ((f & (PG_ALLOCATED | PG_HWPOISON)) === 0) this.nrFree--; // its stack entry goes stale
    this.flags[idx] = f | PG_HWPOISON;
    return true;
  }
}
