/**
 * KVM's list of pages pinned for a pKVM guest (`kvm->arch.pkvm.pinned_pages`, V1 33/89 `struct kvm_pinned_page`),
 * in typed arrays: the PA of each pinned page and the guest frame it was mapped at (the A14-6.1 record also keeps
 * the IPA). Records are appended on a successful map and dropped all at once at teardown, so no per-page object
 * exists and the cost is 16 bytes per page (32 while the arrays double).
 *
 * The kernel allocates each record with `kmalloc(sizeof(*ppage), GFP_KERNEL_ACCOUNT)` before pinning, and that
 * allocation can fail. The model keeps that failure reachable: records live in kmalloc-32 slab pages
 * ({@link PINNED_PER_SLAB} per 4 KiB page, V1's record being a page pointer and a list head, 24 bytes) taken from
 * the host page allocator, so -ENOMEM comes back when the host is out of pages.
 */

import { assert } from '../arch/assert.js';
import { Err, type Ret } from '../arch/errno.js';
import type { HostPages } from './host-pages.js';

/** Records per slab page: `struct kvm_pinned_page` (24 bytes) is served from kmalloc-32, 128 objects per page. */
export const PINNED_PER_SLAB = 128;

/** The pinned-page list of one VM. */
export class PinnedPages {
  private pa = new Float64Array(64);
  private gfn = new Float64Array(64);
  private n = 0;
  private reserved = 0;
  /** PAs of the slab pages holding the records. */
  private readonly slabs: number[] = [];
  private readonly pages: HostPages;

  /** @param pages the host allocator slab pages come from. */
  constructor(pages: HostPages) {
    this.pages = pages;
  }

  /** Number of pinned pages recorded. */
  get count(): number {
    return this.n;
  }

  /** Number of slab pages in use. */
  get slabPages(): number {
    return this.slabs.length;
  }

  /** PA of record `i`. */
  paAt(i: number): number {
    return this.pa[i]!; // JUSTIFY: caller passes i < count.
  }

  /** Guest frame number of record `i`. */
  gfnAt(i: number): number {
    return this.gfn[i]!; // JUSTIFY: caller passes i < count.
  }

  /**
   * `kmalloc()` of one record: reserves a slot, taking a new slab page when the current ones are full.
   * @returns 0, or -ENOMEM when no page is free for a new slab.
   */
  alloc(): Ret {
    if (this.n + this.reserved >= this.slabs.length * PINNED_PER_SLAB) {
      const slab = this.pages.allocPage();
      if (slab < 0) return Err.ENOMEM;
      this.slabs.push(slab);
    }
    this.reserved++;
    return 0;
  }

  /** `kfree()` of a record that was never added: gives the slot back (the slab page stays, as a partial slab). */
  free(): void {
    assert(this.reserved > 0, 'PinnedPages.free without alloc');
    this.reserved--;
  }

  /**
   * Fills a reserved record and adds it to the list (`list_add(&ppage->link, &kvm->arch.pkvm.pinned_pages)`).
   * @param pa the pinned page.
   * @param gfn the guest frame it is mapped at.
   */
  add(pa: number, gfn: number): void {
    assert(this.reserved > 0, 'PinnedPages.add without alloc');
    this.reserved--;
    if (this.n === this.pa.length) {
      const pa2 = new Float64Array(this.n * 2);
      pa2.set(this.pa);
      this.pa = pa2;
      const g2 = new Float64Array(this.n * 2);
      g2.set(this.gfn);
      this.gfn = g2;
    }
    this.pa[this.n] = pa;
    this.gfn[this.n] = gfn;
    this.n++;
  }

  /** Index of the record for `gfn`, or -1 (inspection; linear). */
  indexOfGfn(gfn: number): number {
    for (let i = 0; i < this.n; i++) if (this.gfn[i] === gfn) return i;
    return -1;
  }

  /**
   * Removes record `i`, moving the last record into its slot (the slot goes back to its slab, as `kfree()` of an
   * upstream `pkvm_mapping` after an unshare does).
   * @param i index below {@link count}.
   */
  removeAt(i: number): void {
    assert(i >= 0 && i < this.n, 'PinnedPages.removeAt out of range');
    this.n--;
    this.pa[i] = this.pa[this.n]!; // JUSTIFY: n < length.
    this.gfn[i] = this.gfn[this.n]!; // JUSTIFY: as above.
  }

  /** The PAs of all records, as a view valid until the next change (teardown walks it). */
  pasView(): Float64Array {
    return this.pa.subarray(0, this.n);
  }

  /** Empties the list and returns its slab pages to the host allocator (`kfree` of every record). */
  clear(): void {
    assert(this.reserved === 0, 'PinnedPages.clear with a record in flight');
    this.n = 0;
    for (const s of this.slabs) this.pages.freePage(s);
    this.slabs.length = 0;
    this.pa = new Float64Array(64);
    this.gfn = new Float64Array(64);
  }
}
