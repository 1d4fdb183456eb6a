/**
 * A simple page allocator implementing {@link PgtMmOps} over one RAM range: per-page refcounts in a typed array
 * indexed by page number (as EL2's `hyp_vmemmap[pfn].refcount`), first-fit allocation of naturally aligned runs
 * (what the buddy allocator `hyp_alloc_pages()` in arch/arm64/kvm/hyp/nvhe/page_alloc.c guarantees), pages zeroed
 * on allocation. Tests use it to bound the pool (N pages → -ENOMEM); EL2 may reuse or replace it.
 *
 * The memcache argument is honoured when it is a {@link PageStackMemcache} (pages are popped from it, as
 * `guest_s2_zalloc_page()` pops the vCPU's hyp memcache; fill it with {@link PgtPagePool.topup} so that its pages
 * have refcounts here); any other memcache means "the pool itself" (as the host stage-2 passes `&host_s2_pool`).
 */

import { assert } from '../arch/assert.js';
import type { PhysMem } from '../mem/phys-mem.js';
import type { Memcache, PgtMmOps } from './mm-ops.js';

/** A memcache of free pages the caller topped up (`struct kvm_hyp_memcache` reduced to a stack of PAs). */
export class PageStackMemcache {
  /** PAs of free, page-aligned pages; popped from the end. */
  readonly pages: number[] = [];
  /** Pages currently held. */
  get nrPages(): number {
    return this.pages.length;
  }
}

/** Typed-array-backed page pool over [base, base + nrPages · pageSize) of `mem`. */
export class PgtPagePool implements PgtMmOps {
  /** First PA of the pool. */
  readonly base: number;
  /** Bytes per page (the table granule). */
  readonly pageSize: number;
  /** Pages in the pool. */
  readonly nrPages: number;
  /** Refcount per page (0 = free). */
  readonly refcount: Uint32Array;
  /** Cache-maintenance calls seen, for tests: [kind, pa, size]. */
  readonly cmos: Array<['dc' | 'ic', number, number]> = [];
  private readonly mem: PhysMem;
  private cursor = 0;
  private used = 0;

  /**
   * @param mem memory the pages live in (must be RAM).
   * @param base page-aligned first PA.
   * @param nrPages pool size in pages.
   * @param pageSize bytes per page (4096, 16384 or 65536).
   */
  constructor(mem: PhysMem, base: number, nrPages: number, pageSize = 4096) {
    assert(base % pageSize === 0, 'pool base not page aligned');
    this.mem = mem;
    this.base = base;
    this.pageSize = pageSize;
    this.nrPages = nrPages;
    this.refcount = new Uint32Array(nrPages);
  }

  /** Pages currently allocated. */
  get usedPages(): number {
    return this.used;
  }

  /** Whether `pa` lies inside the pool. */
  contains(pa: number): boolean {
    return pa >= this.base && pa < this.base + this.nrPages * this.pageSize;
  }

  private index(pa: number): number {
    assert(this.contains(pa), `page ${pa.toString(16)} is not in the pool`);
    return Math.floor((pa - this.base) / this.pageSize);
  }

  /** Takes `n` pages (n a power of two) aligned to n pages; -1 when no such run is free. */
  private allocRun(n: number): number {
    const total = this.nrPages;
    for (let k = 0; k < total; k++) {
      let i = (this.cursor + k) % total;
      i -= i % n;
      if (i + n > total) continue;
      let free = true;
      for (let j = 0; j < n; j++) {
        if (this.refcount[i + j] !== 0) {
          free = false;
          break;
        }
      }
      if (!free) continue;
      for (let j = 0; j < n; j++) this.refcount[i + j] = 1;
      this.used += n;
      this.cursor = (i + n) % total;
      const pa = this.base + i * this.pageSize;
      this.mem.zero(pa, n * this.pageSize);
      return pa;
    }
    return -1;
  }

  /** `zalloc_page(mc)`: pops a {@link PageStackMemcache}, else takes a pool page; zeroed, refcount 1; -1 when empty. */
  zallocPage(mc: Memcache): number {
    if (mc instanceof PageStackMemcache) {
      const pa = mc.pages.pop();
      if (pa === undefined) return -1;
      this.mem.zero(pa, this.pageSize);
      if (this.contains(pa)) {
        const i = this.index(pa);
        if (this.refcount[i] === 0) this.used++;
        this.refcount[i] = 1;
      }
      return pa;
    }
    return this.allocRun(1);
  }

  /** Allocates a naturally aligned run covering `size` bytes. */
  zallocPagesExact(size: number): number {
    let n = 1;
    while (n * this.pageSize < size) n *= 2;
    return this.allocRun(n);
  }

  /** Frees pages from {@link PgtPagePool.zallocPagesExact}. */
  freePagesExact(pa: number, size: number): void {
    const n = Math.ceil(size / this.pageSize);
    for (let j = 0; j < n; j++) this.putPage(pa + j * this.pageSize);
  }

  /** Increments the refcount of the page holding `pa`. */
  getPage(pa: number): void {
    const i = this.index(pa);
    assert(this.refcount[i] !== 0, 'get_page on a free page');
    this.refcount[i]!++; // JUSTIFY: index() bounds-checked i.
  }

  /** Decrements the refcount; at zero the page is free again. */
  putPage(pa: number): void {
    const i = this.index(pa);
    assert(this.refcount[i] !== 0, 'put_page on a free page');
    this.refcount[i]!--; // JUSTIFY: index() bounds-checked i.
    if (this.refcount[i] === 0) this.used--;
  }

  /** Refcount of the page holding `pa`. */
  pageCount(pa: number): number {
    return this.refcount[this.index(pa)]!; // JUSTIFY: index() bounds-checked.
  }

  /** Records a D-cache clean+invalidate to PoC. */
  dcacheCleanInvalPoc(pa: number, size: number): void {
    this.cmos.push(['dc', pa, size]);
  }

  /** Records an I-cache invalidate to PoU. */
  icacheInvalPou(pa: number, size: number): void {
    this.cmos.push(['ic', pa, size]);
  }

  /**
   * Moves `n` pool pages into a memcache (the host's top-up). Their refcount stays 1 while cached.
   * @returns the number of pages moved (fewer when the pool runs out).
   */
  topup(mc: PageStackMemcache, n: number): number {
    let k = 0;
    for (; k < n; k++) {
      const pa = this.allocRun(1);
      if (pa < 0) break;
      mc.pages.push(pa);
    }
    return k;
  }
}
