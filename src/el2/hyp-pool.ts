/**
 * The hypervisor's page allocator: a buddy allocator over a pfn range whose metadata is the `hyp_vmemmap`
 * (orders and refcounts) and whose free lists are doubly linked through the vmemmap's link arrays.
 *
 * Semantics mirrored from arch/arm64/kvm/hyp/nvhe/page_alloc.c (2022 series): pages are zeroed when they are freed
 * into the pool, so every allocation returns zeroed memory with the head's refcount set to 1; a page freed into a
 * pool it does not belong to (an "external" page, e.g. a memcache page released by a guest page table) is inserted
 * at its order without coalescing; lists are FIFO (`list_add_tail`, allocation from the head).
 */

import { assert } from '../arch/assert.js';
import { PAGE_SIZE } from '../arch/addr.js';
import type { PhysMem } from '../mem/phys-mem.js';
import { HYP_NO_ORDER, type HypVmemmap } from './vmemmap.js';

/** `MAX_ORDER` of the kernel's buddy allocator (orders 0…10). */
export const MAX_ORDER = 11;

/** `get_order(size)` for a byte size: the smallest order whose block holds `size` bytes. */
export function getOrder(size: number): number {
  let order = 0;
  while (PAGE_SIZE * 2 ** order < size) order++;
  return order;
}

/** A buddy pool over [startPfn, startPfn + nrPages). Mirrors `struct hyp_pool`. */
export class HypPool {
  /** First pfn of the pool's own range (`range_start`). */
  readonly startPfn: number;
  /** One past the last pfn of the range (`range_end`). */
  readonly endPfn: number;
  /** Orders below this exist in the pool (`max_order`). */
  readonly maxOrder: number;
  private readonly vm: HypVmemmap;
  private readonly mem: PhysMem;
  private readonly head: Int32Array;
  private readonly tail: Int32Array;
  private free = 0;

  /**
   * Creates the pool and attaches all but the first `reservedPages` pages to the free lists.
   * Mirrors `hyp_pool_init()` (arch/arm64/kvm/hyp/nvhe/page_alloc.c).
   */
  constructor(vmemmap: HypVmemmap, mem: PhysMem, startPfn: number, nrPages: number, reservedPages: number) {
    assert(nrPages > 0 && reservedPages >= 0 && reservedPages <= nrPages, 'hyp_pool_init range');
    assert(vmemmap.has(startPfn) && vmemmap.has(startPfn + nrPages - 1), 'hyp pool outside hyp_vmemmap');
    this.vm = vmemmap;
    this.mem = mem;
    this.startPfn = startPfn;
    this.endPfn = startPfn + nrPages;
    this.maxOrder = Math.min(MAX_ORDER, getOrder((nrPages + 1) * PAGE_SIZE));
    this.head = new Int32Array(MAX_ORDER).fill(-1);
    this.tail = new Int32Array(MAX_ORDER).fill(-1);
    for (let i = 0; i < nrPages; i++) {
      const x = vmemmap.idx(startPfn + i);
      vmemmap.order[x] = 0;
      vmemmap.refcount[x] = 1;
    }
    for (let i = reservedPages; i < nrPages; i++) this.putPage(startPfn + i);
  }

  /** Pages currently on the free lists. */
  get freePages(): number {
    return this.free;
  }

  /** True when `pfn` lies in the pool's own range. */
  owns(pfn: number): boolean {
    return pfn >= this.startPfn && pfn < this.endPfn;
  }

  /**
   * Allocates a zeroed block of 2^order pages; the head's refcount is 1.
   * Mirrors `hyp_alloc_pages()` (arch/arm64/kvm/hyp/nvhe/page_alloc.c).
   * @returns the head pfn, or -1 when no block is large enough (the kernel's NULL).
   */
  allocPages(order: number): number {
    let i = order;
    while (i < this.maxOrder && this.head[i] === -1) i++;
    if (i >= this.maxOrder) return -1;
    const vm = this.vm;
    const x = this.head[i]!; // JUSTIFY: i < maxOrder ≤ MAX_ORDER.
    this.removeFromList(x);
    // __hyp_extract_page: split until the block has the requested order, freeing the upper halves.
    while (vm.order[x]! > order) {
      const o = vm.order[x]! - 1; // JUSTIFY: x is a covered index.
      vm.order[x] = o;
      const buddy = x + 2 ** o;
      vm.order[buddy] = o;
      this.addToList(buddy, o);
    }
    vm.refcount[x] = 1;
    return vm.basePfn + x;
  }

  /** `hyp_get_page()`: takes a reference on `pfn`. */
  getPage(pfn: number): void {
    const x = this.vm.idx(pfn);
    assert(this.vm.refcount[x]! < 0xffff, 'hyp_page refcount overflow');
    this.vm.refcount[x]!++;
  }

  /**
   * `hyp_put_page()`: drops a reference on `pfn`; at zero the block (of the page's order) is zeroed and attached
   * to the free lists, coalescing with free buddies inside the pool's range.
   */
  putPage(pfn: number): void {
    const vm = this.vm;
    const x = vm.idx(pfn);
    if (!(vm.refcount[x]! > 0)) assert(false, `hyp_put_page on free pfn 0x${pfn.toString(16)}`);
    vm.refcount[x]!--;
    if (vm.refcount[x] === 0) this.attach(pfn);
  }

  /**
   * Turns an allocated block of order > 0 into independent order-0 pages, each with refcount 1, so they can be
   * freed one by one. Mirrors `hyp_split_page()` (arch/arm64/kvm/hyp/nvhe/page_alloc.c).
   */
  splitPage(pfn: number): void {
    const vm = this.vm;
    const x = vm.idx(pfn);
    const order = vm.order[x]!; // JUSTIFY: covered index.
    vm.order[x] = 0;
    for (let i = 1; i < 2 ** order; i++) {
      vm.order[x + i] = 0;
      vm.refcount[x + i] = 1;
    }
  }

  /** The order of the smallest block holding `nrPages` pages (`get_order(nr_pages << PAGE_SHIFT)`). */
  static orderFor(nrPages: number): number {
    return getOrder(nrPages * PAGE_SIZE);
  }

  private attach(pfn: number): void {
    const vm = this.vm;
    let x = vm.idx(pfn);
    let order = vm.order[x]!; // JUSTIFY: covered index.
    if (order === HYP_NO_ORDER) order = 0;
    this.mem.zero(pfn * PAGE_SIZE, PAGE_SIZE * 2 ** order);
    if (this.owns(pfn)) {
      // Only block heads carry an order; the merged head may change, so mark this page first.
      vm.order[x] = HYP_NO_ORDER;
      const lo = this.startPfn - vm.basePfn;
      const hi = this.endPfn - vm.basePfn;
      for (; order + 1 < this.maxOrder; order++) {
        const size = 2 ** order;
        const rel = x + vm.basePfn; // pfn of the current head
        const buddy = (Math.floor(rel / size) % 2 === 0 ? rel + size : rel - size) - vm.basePfn;
        if (buddy < lo || buddy >= hi) break;
        if (vm.onFreeList[buddy] !== 1 || vm.order[buddy] !== order || vm.refcount[buddy] !== 0) break;
        this.removeFromList(buddy);
        vm.order[buddy] = HYP_NO_ORDER;
        if (buddy < x) x = buddy;
      }
    }
    vm.order[x] = order;
    this.addToList(x, order);
  }

  private addToList(x: number, order: number): void {
    const vm = this.vm;
    vm.onFreeList[x] = 1;
    vm.next[x] = -1;
    vm.prev[x] = this.tail[order]!; // JUSTIFY: order < MAX_ORDER.
    if (this.tail[order] === -1) this.head[order] = x;
    else vm.next[this.tail[order]!] = x;
    this.tail[order] = x;
    this.free += 2 ** order;
  }

  private removeFromList(x: number): void {
    const vm = this.vm;
    const order = vm.order[x]!; // JUSTIFY: covered index; heads on a list always carry their order.
    const p = vm.prev[x]!;
    const n = vm.next[x]!;
    if (p === -1) this.head[order] = n;
    else vm.next[p] = n;
    if (n === -1) this.tail[order] = p;
    else vm.prev[n] = p;
    vm.next[x] = -1;
    vm.prev[x] = -1;
    vm.onFreeList[x] = 0;
    this.free -= 2 ** order;
  }
}
