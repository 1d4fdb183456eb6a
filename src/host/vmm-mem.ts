/**
 * The VMM process's address space (`struct mm_struct`) and KVM's memslots (include/linux/kvm_host.h
 * `struct kvm_memory_slot`).
 *
 * A VMA maps a page-aligned HVA range with anonymous, shmem (memfd) or file (page cache) backing. Its pages are
 * populated lazily from the host page allocator on first touch (as a page fault would), or come from a fixed PA
 * range given at mmap time (a reproducible layout). Per-page state is kept in typed arrays inside the VMA: the
 * backing PA (-1 when not populated, 8 bytes) and a PTE-state byte (hwpoison entry, KSM write-protected), so the
 * cost per guest page stays a few bytes (no per-page objects). `munmap` removes the VMA: an unpinned page is freed,
 * a pinned one stays allocated (and mapped into the guest by EL2) until its last pin goes (pkvm.md §6.4).
 */

import { PAGE_SIZE } from '../arch/addr.js';
import { Err, type Ret } from '../arch/errno.js';
import { HostPages, PG_MAPPED, PG_SWAPBACKED } from './host-pages.js';
import { MemlockAccount } from './memlock.js';
import { MmuNotifierEvent, type MmuNotifier } from './mmu-notifier.js';

/** The backing of a VMA. */
export const VmaKind = {
  /** Private anonymous memory (swap-backed). */
  ANON: 'anon',
  /** memfd / shmem (swap-backed). */
  SHMEM: 'shmem',
  /** A regular file: page-cache pages, not swap-backed (pKVM refuses them with -EIO). */
  FILE: 'file',
} as const;
/** The backing of a VMA. */
export type VmaKind = (typeof VmaKind)[keyof typeof VmaKind];

/** PTE state: a hwpoison swap entry replaced the mapping (memory_failure() on a populated page, or injected). */
export const PTE_HWPOISON = 0x01;
/** PTE state: KSM merged the page and write-protected it; a write (FOLL_WRITE) breaks COW. */
export const PTE_KSM_WP = 0x02;

/** One VMA (`struct vm_area_struct`) with its per-page state. */
export class Vma {
  /** First HVA. */
  readonly start: number;
  /** HVA past the end. */
  readonly end: number;
  /** Backing kind. */
  readonly kind: VmaKind;
  /** VM_WRITE. */
  readonly writable: boolean;
  /** PA of the page backing each HVA page, -1 when not populated. */
  readonly pagePa: Float64Array;
  /** `PTE_*` state per HVA page. */
  readonly pte: Uint8Array;

  /**
   * @param start first HVA, page aligned.
   * @param end HVA past the end, page aligned.
   * @param kind backing.
   * @param writable VM_WRITE.
   * @param pagePa per-page backing PAs (taken over).
   * @param pte per-page PTE state (taken over).
   */
  constructor(start: number, end: number, kind: VmaKind, writable: boolean, pagePa: Float64Array, pte: Uint8Array) {
    this.start = start;
    this.end = end;
    this.kind = kind;
    this.writable = writable;
    this.pagePa = pagePa;
    this.pte = pte;
  }

  /** Number of pages. */
  get nrPages(): number {
    return (this.end - this.start) / PAGE_SIZE;
  }
}

/** Options of {@link Mm.mmap}. */
export interface MmapOptions {
  /** PROT_WRITE (default true). */
  writable?: boolean;
  /** Back the range with the host pages at [backingPa, backingPa + size) instead of populating on demand. */
  backingPa?: number;
}

/** The VMM's `mm_struct`: VMAs, locked-memory accounting and MMU-notifier subscribers. */
export class Mm {
  /** The host page allocator the VMAs draw from. */
  readonly pages: HostPages;
  /** `mm->locked_vm` and RLIMIT_MEMLOCK. */
  readonly memlock = new MemlockAccount();
  /** VMAs sorted by start. */
  readonly vmas: Vma[] = [];
  /** Registered notifiers (`mmu_notifier_register()`). */
  readonly notifiers: MmuNotifier[] = [];
  private lastVma: Vma | null = null;

  /** @param pages the host page allocator. */
  constructor(pages: HostPages) {
    this.pages = pages;
  }

  /**
   * `mmap(start, size, PROT_READ|PROT_WRITE, MAP_FIXED_NOREPLACE | …)`.
   * @returns 0; -EINVAL for an unaligned or empty range or an unaligned backing; -EEXIST when the range overlaps a
   *   VMA; -ENOMEM when a fixed backing page is not free host RAM (nothing is mapped then).
   */
  mmap(start: number, size: number, kind: VmaKind, opts: MmapOptions = {}): Ret {
    if (!Number.isSafeInteger(start) || !Number.isSafeInteger(size) || start < 0 || size <= 0) return Err.EINVAL;
    if (start % PAGE_SIZE !== 0 || size % PAGE_SIZE !== 0) return Err.EINVAL;
    const end = start + size;
    for (const v of this.vmas) if (start < v.end && end > v.start) return Err.EEXIST;
    const n = size / PAGE_SIZE;
    const pagePa = new Float64Array(n).fill(-1);
    const backing = opts.backingPa;
    if (backing !== undefined) {
      if (!Number.isSafeInteger(backing) || backing < 0 || backing % PAGE_SIZE !== 0) return Err.EINVAL;
      for (let i = 0; i < n; i++) {
        const pa = backing + i * PAGE_SIZE;
        if (!this.pages.claimPage(pa)) {
          for (let j = 0; j < i; j++) this.pages.freePage(backing + j * PAGE_SIZE);
          return Err.ENOMEM;
        }
        this.markMapped(pa, kind);
        pagePa[i] = pa;
      }
    }
    const vma = new Vma(start, end, kind, opts.writable ?? true, pagePa, new Uint8Array(n));
    this.vmas.push(vma);
    this.vmas.sort((a, b) => a.start - b.start);
    return 0;
  }

  /**
   * `munmap(start, size)`: removes the mappings of [start, start + size), splitting VMAs at the edges. The
   * notifiers hear `UNMAP` first (pKVM ignores it). Unpinned pages go back to the allocator; pinned pages stay
   * allocated until unpinned.
   * @returns 0; -EINVAL for an unaligned or empty range.
   */
  munmap(start: number, size: number): Ret {
    if (!Number.isSafeInteger(start) || !Number.isSafeInteger(size) || start < 0 || size <= 0) return Err.EINVAL;
    if (start % PAGE_SIZE !== 0 || size % PAGE_SIZE !== 0) return Err.EINVAL;
    const end = start + size;
    for (const n of this.notifiers) n.invalidateRangeStart(start, end, MmuNotifierEvent.UNMAP);
    const kept: Vma[] = [];
    for (const v of this.vmas) {
      if (end <= v.start || start >= v.end) {
        kept.push(v);
        continue;
      }
      const lo = Math.max(start, v.start);
      const hi = Math.min(end, v.end);
      const i0 = (lo - v.start) / PAGE_SIZE;
      const i1 = (hi - v.start) / PAGE_SIZE;
      for (let i = i0; i < i1; i++) {
        const pa = v.pagePa[i]!; // JUSTIFY: i < nrPages.
        if (pa >= 0) this.releaseMapping(pa);
      }
      if (v.start < lo) kept.push(this.slice(v, 0, i0));
      if (hi < v.end) kept.push(this.slice(v, i1, v.nrPages));
    }
    this.vmas.length = 0;
    for (const v of kept) this.vmas.push(v);
    this.lastVma = null;
    return 0;
  }

  /** The VMA containing `hva`, or null (`vma_lookup()`). */
  findVma(hva: number): Vma | null {
    const l = this.lastVma;
    if (l !== null && hva >= l.start && hva < l.end) return l;
    const vs = this.vmas;
    for (let i = 0; i < vs.length; i++) {
      const v = vs[i]!; // JUSTIFY: i < length.
      if (hva >= v.start && hva < v.end) {
        this.lastVma = v;
        return v;
      }
    }
    return null;
  }

  /**
   * `handle_mm_fault()` for one page of `vma`: populates it from the host allocator when empty.
   * @returns the backing PA, or -ENOMEM when no page is free.
   */
  faultIn(vma: Vma, idx: number): number {
    const cur = vma.pagePa[idx]!; // JUSTIFY: caller passes idx < nrPages.
    if (cur >= 0) return cur;
    const pa = this.pages.allocPage();
    if (pa < 0) return Err.ENOMEM;
    this.markMapped(pa, vma.kind);
    vma.pagePa[idx] = pa;
    return pa;
  }

  /**
   * `memory_failure()` on the page backing `hva`: a populated page is marked PG_hwpoison and its PTE becomes a
   * hwpoison entry; an unpopulated one gets the hwpoison entry only (as if its page had been poisoned and
   * dropped). GUP then reports -EHWPOISON.
   * @returns 0; -EFAULT when no VMA maps `hva`.
   */
  poison(hva: number): Ret {
    const v = this.findVma(hva);
    if (v === null) return Err.EFAULT;
    const i = Math.floor((hva - v.start) / PAGE_SIZE);
    const pa = v.pagePa[i]!; // JUSTIFY: i < nrPages.
    if (pa >= 0) this.pages.markHwPoison(pa);
    v.pte[i] = v.pte[i]! | PTE_HWPOISON; // JUSTIFY: as above.
    return 0;
  }

  /** The PA backing `hva`, or -1 when unmapped or not populated (inspection). */
  paOf(hva: number): number {
    const v = this.findVma(hva);
    if (v === null) return -1;
    return v.pagePa[Math.floor((hva - v.start) / PAGE_SIZE)]!; // JUSTIFY: index < nrPages.
  }

  /** Marks a freshly mapped page's `struct page`. */
  private markMapped(pa: number, kind: VmaKind): void {
    const idx = this.pages.indexOf(pa);
    const swap = kind === VmaKind.FILE ? 0 : PG_SWAPBACKED;
    this.pages.flags[idx] = (this.pages.flags[idx]! & ~PG_SWAPBACKED) | PG_MAPPED | swap; // JUSTIFY: pa is host RAM.
  }

  /**
   * Drops a VMA's mapping of the page at `pa`: the page is freed unless a pin still holds it.
   * @internal also used by migration and COW when a VMA page is replaced.
   */
  releaseMapping(pa: number): void {
    const idx = this.pages.indexOf(pa);
    const f = this.pages.flags;
    f[idx] = f[idx]! & ~PG_MAPPED; // JUSTIFY: pa is host RAM (it backs a VMA page).
    if (this.pages.pinCount[idx] === 0) this.pages.freePage(pa);
  }

  /** A new VMA over pages [i0, i1) of `v`. */
  private slice(v: Vma, i0: number, i1: number): Vma {
    return new Vma(
      v.start + i0 * PAGE_SIZE,
      v.start + i1 * PAGE_SIZE,
      v.kind,
      v.writable,
      v.pagePa.slice(i0, i1),
      v.pte.slice(i0, i1),
    );
  }
}

/** `KVM_MEM_READONLY`: the memslot is read-only for the guest. */
export const KVM_MEM_READONLY = 0x2;

/** KVM's memslots: guest IPA ranges backed by VMM HVAs (`struct kvm_memory_slot`). */
export class Memslots {
  /** Slot id per entry. */
  private readonly ids: number[] = [];
  private readonly baseGfn: number[] = [];
  private readonly npages: number[] = [];
  private readonly userspaceAddr: number[] = [];
  private readonly slotFlags: number[] = [];

  /**
   * `KVM_SET_USER_MEMORY_REGION`: creates or replaces slot `id`. Size 0 deletes it.
   * @returns 0; -EINVAL for unaligned values; -EEXIST when the IPA range overlaps another slot.
   */
  set(id: number, guestPhysAddr: number, size: number, hva: number, flags = 0): Ret {
    for (const x of [guestPhysAddr, size, hva]) {
      if (!Number.isSafeInteger(x) || x < 0 || x % PAGE_SIZE !== 0) return Err.EINVAL;
    }
    const at = this.ids.indexOf(id);
    if (size === 0) {
      if (at >= 0) this.remove(at);
      return 0;
    }
    const g0 = guestPhysAddr / PAGE_SIZE;
    const n = size / PAGE_SIZE;
    for (let i = 0; i < this.ids.length; i++) {
      if (i === at) continue;
      if (g0 < this.baseGfn[i]! + this.npages[i]! && g0 + n > this.baseGfn[i]!) return Err.EEXIST; // JUSTIFY: i < length.
    }
    if (at >= 0) this.remove(at);
    this.ids.push(id);
    this.baseGfn.push(g0);
    this.npages.push(n);
    this.userspaceAddr.push(hva);
    this.slotFlags.push(flags);
    return 0;
  }

  /** The index of the slot holding `gfn`, or -1 (`gfn_to_memslot()`). */
  find(gfn: number): number {
    for (let i = 0; i < this.ids.length; i++) {
      const b = this.baseGfn[i]!; // JUSTIFY: i < length.
      if (gfn >= b && gfn < b + this.npages[i]!) return i; // JUSTIFY: as above.
    }
    return -1;
  }

  /** `__gfn_to_hva_memslot()` for the slot at index `slot`. */
  hvaOf(slot: number, gfn: number): number {
    return this.userspaceAddr[slot]! + (gfn - this.baseGfn[slot]!) * PAGE_SIZE; // JUSTIFY: slot from find().
  }

  /** True when the slot at index `slot` is read-only for the guest. */
  isReadonly(slot: number): boolean {
    return (this.slotFlags[slot]! & KVM_MEM_READONLY) !== 0; // JUSTIFY: slot from find().
  }

  /** Number of slots. */
  get count(): number {
    return this.ids.length;
  }

  private remove(at: number): void {
    this.ids.splice(at, 1);
    this.baseGfn.splice(at, 1);
    this.npages.splice(at, 1);
    this.userspaceAddr.splice(at, 1);
    this.slotFlags.splice(at, 1);
  }
}
