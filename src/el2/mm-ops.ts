/**
 * The page-table memory callbacks EL2 gives the page-table library (`struct kvm_pgtable_mm_ops` instances):
 * one over a hyp pool (the hyp's stage-1 and the host stage-2, each with its own statically reserved pool) and one
 * for a guest stage-2 (the VM's pool first, then the memcache the map call passes).
 *
 * Mirrors `pkvm_pgtable_mm_ops` / `host_s2_zalloc_page()` … (arch/arm64/kvm/hyp/nvhe/setup.c, mem_protect.c) and
 * `guest_s2_zalloc_page()` / `guest_s2_put_page()` / `guest_s2_free_pages_exact()`
 * (arch/arm64/kvm/hyp/nvhe/mem_protect.c, 2022 series).
 */

import { PAGE_SIZE } from '../arch/addr.js';
import type { PhysMem } from '../mem/phys-mem.js';
import type { Memcache, PgtMmOps } from '../pgtable/mm-ops.js';
import { getOrder, type HypPool } from './hyp-pool.js';
import { HypMemcache, popHypMemcache } from './memcache.js';
import { HYP_NO_ORDER, type HypVmemmap } from './vmemmap.js';

function pfnOf(pa: number): number {
  return Math.floor(pa / PAGE_SIZE);
}

/** mm_ops over one hyp pool; the memcache argument is ignored (the pool is the only source). */
export class PoolMmOps implements PgtMmOps {
  /** The pool pages come from and return to. */
  readonly pool: HypPool;
  private readonly vm: HypVmemmap;

  /** @param pool the backing pool. @param vmemmap the refcounts. */
  constructor(pool: HypPool, vmemmap: HypVmemmap) {
    this.pool = pool;
    this.vm = vmemmap;
  }

  /** `host_s2_zalloc_page()` / `hyp_zalloc_hyp_page()`: one zeroed page, refcount 1, or -1. */
  zallocPage(_mc: Memcache): number {
    const pfn = this.pool.allocPages(0);
    return pfn < 0 ? -1 : pfn * PAGE_SIZE;
  }

  /** `host_s2_zalloc_pages_exact()`: an aligned zeroed run, split into order-0 pages, or -1. */
  zallocPagesExact(size: number): number {
    const pfn = this.pool.allocPages(getOrder(size));
    if (pfn < 0) return -1;
    this.pool.splitPage(pfn);
    return pfn * PAGE_SIZE;
  }

  /** Returns each page of a run to the pool. */
  freePagesExact(pa: number, size: number): void {
    const n = 2 ** getOrder(size);
    for (let i = 0; i < n; i++) this.pool.putPage(pfnOf(pa) + i);
  }

  /** `hyp_get_page()`. */
  getPage(pa: number): void {
    this.pool.getPage(pfnOf(pa));
  }

  /** `hyp_put_page()`. */
  putPage(pa: number): void {
    this.pool.putPage(pfnOf(pa));
  }

  /** `hyp_page_count()`. */
  pageCount(pa: number): number {
    return this.vm.pageCount(pfnOf(pa));
  }
}

/**
 * mm_ops of one guest stage-2. Table pages come from the VM's pool (over the donated pgd pages, and pages freed by
 * this table) and otherwise from the memcache passed to the map call (the loaded vCPU's hyp memcache); pages whose
 * refcount drops to zero go to the VM's pool, not back to the memcache.
 */
export class GuestMmOps implements PgtMmOps {
  /** The VM's pool. */
  readonly pool: HypPool;
  private readonly vm: HypVmemmap;
  private readonly mem: PhysMem;

  /** @param pool the VM's pool. @param vmemmap refcounts. @param mem physical memory (to zero memcache pages). */
  constructor(pool: HypPool, vmemmap: HypVmemmap, mem: PhysMem) {
    this.pool = pool;
    this.vm = vmemmap;
    this.mem = mem;
  }

  /**
   * Mirrors `guest_s2_zalloc_page()`: the VM pool first; else pop the memcache, zero the page and reset its
   * `hyp_page` (refcount 1, order 0, no flags).
   */
  zallocPage(mc: Memcache): number {
    const pfn = this.pool.allocPages(0);
    if (pfn >= 0) return pfn * PAGE_SIZE;
    if (!(mc instanceof HypMemcache)) return -1;
    const pa = popHypMemcache(this.mem, mc);
    if (pa < 0) return -1;
    this.mem.zero(pa, PAGE_SIZE);
    const x = this.vm.idx(pfnOf(pa));
    this.vm.refcount[x] = 1;
    this.vm.order[x] = 0;
    this.vm.flags[x] = 0;
    return pa;
  }

  /** Mirrors `guest_s2_zalloc_pages_exact()`: the pgd, from the VM pool, split into order-0 pages. */
  zallocPagesExact(size: number): number {
    const pfn = this.pool.allocPages(getOrder(size));
    if (pfn < 0) return -1;
    this.pool.splitPage(pfn);
    return pfn * PAGE_SIZE;
  }

  /** Mirrors `guest_s2_free_pages_exact()`: puts every page of the run. */
  freePagesExact(pa: number, size: number): void {
    const n = 2 ** getOrder(size);
    for (let i = 0; i < n; i++) this.pool.putPage(pfnOf(pa) + i);
  }

  /** Mirrors `guest_s2_get_page()`. */
  getPage(pa: number): void {
    this.pool.getPage(pfnOf(pa));
  }

  /**
   * Mirrors `guest_s2_put_page()`: drop a reference; a page reaching zero is freed into the VM pool (pages from a
   * memcache are "external" to the pool and are inserted without coalescing).
   */
  putPage(pa: number): void {
    const x = this.vm.idx(pfnOf(pa));
    if (this.vm.order[x] === HYP_NO_ORDER) this.vm.order[x] = 0;
    this.pool.putPage(pfnOf(pa));
  }

  /** Mirrors `hyp_page_count()`. */
  pageCount(pa: number): number {
    return this.vm.pageCount(pfnOf(pa));
  }
}
