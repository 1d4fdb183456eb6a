/**
 * Pinning user pages (mm/gup.c, Documentation/core-api/pin_user_pages.rst) and the page-migration paths a pin
 * blocks (mm/migrate.c, mm/compaction.c, mm/ksm.c, NUMA balancing in mm/mprotect.c `change_prot_numa()`).
 *
 * `pin_user_pages()` with FOLL_PIN raises a page's pin count (`page_maybe_dma_pinned()`); FOLL_LONGTERM says the
 * pin lasts indefinitely (pKVM keeps it until VM teardown); FOLL_WRITE faults the page in writable, breaking
 * copy-on-write (so pKVM never pins a KSM or zero page); FOLL_HWPOISON turns a hardware-poisoned page into
 * -EHWPOISON instead of -EFAULT. Migration of a pinned page fails (its reference count never matches the expected
 * one), which is why pKVM can ignore MMU notifiers (pkvm.md §6.4). Attempts and failures are counted in
 * {@link GupStats}.
 */

import { PAGE_SIZE } from '../arch/addr.js';
import { assert } from '../arch/assert.js';
import { Err } from '../arch/errno.js';
import { PG_DIRTY, PG_HWPOISON, PG_MAPPED } from './host-pages.js';
import type { HostRam } from './host-ram.js';
import { MmuNotifierEvent } from './mmu-notifier.js';
import { PTE_HWPOISON, PTE_KSM_WP, type Mm } from './vmm-mem.js';

/** `FOLL_WRITE` (include/linux/mm.h, v5.18): check the PTE is writable, break COW. */
export const FOLL_WRITE = 0x01;
/** `FOLL_HWPOISON`: return -EHWPOISON on a poisoned page. */
export const FOLL_HWPOISON = 0x100;
/** `FOLL_LONGTERM`: the pin may be held indefinitely. */
export const FOLL_LONGTERM = 0x10000;
/** `FOLL_PIN`: set internally by `pin_user_pages*()`; the page's pin count is raised. */
export const FOLL_PIN = 0x40000;

/** Why the core mm tries to move or merge a page. */
export const MigrateReason = {
  /** Automatic NUMA balancing (`MR_NUMA_MISPLACED`). */
  NUMA_BALANCE: 'numa_balance',
  /** Memory compaction (`MR_COMPACTION`). */
  COMPACTION: 'compaction',
  /** KSM merging an identical page (`try_to_merge_one_page()`). */
  KSM: 'ksm',
} as const;
/** Why the core mm tries to move or merge a page. */
export type MigrateReason = (typeof MigrateReason)[keyof typeof MigrateReason];

/** Counters of pinning and of migration attempts. */
export class GupStats {
  /** Pages pinned (`pin_user_pages()` successes, per page). */
  pins = 0;
  /** Pages unpinned. */
  unpins = 0;
  /** Pages faulted in by GUP. */
  faultIns = 0;
  /** Copy-on-write breaks done for FOLL_WRITE on a KSM page. */
  cowBreaks = 0;
  /** Migration or merge attempts, by reason. */
  readonly attempts: Record<MigrateReason, number> = { numa_balance: 0, compaction: 0, ksm: 0 };
  /** Attempts that failed because the page is pinned, by reason. */
  readonly failedPinned: Record<MigrateReason, number> = { numa_balance: 0, compaction: 0, ksm: 0 };
  /** Attempts that moved (or merged) the page, by reason. */
  readonly succeeded: Record<MigrateReason, number> = { numa_balance: 0, compaction: 0, ksm: 0 };
}

/**
 * Pins `nrPages` user pages starting at `hva` and stores their PAs in `out[0…]`.
 *
 * Mirrors `pin_user_pages()` / `__get_user_pages()` (mm/gup.c): pages are faulted in when empty; the walk stops at
 * the first page that cannot be pinned and the count so far is returned, or the error when it is the first page.
 * @param mm the VMM's address space.
 * @param ram host RAM access (for the copy of a copy-on-write break).
 * @param cpu CPU doing the copy.
 * @param hva first user address, page aligned.
 * @param nrPages number of pages.
 * @param gupFlags FOLL_* flags (FOLL_PIN is implied).
 * @param out receives one PA per pinned page.
 * @param stats counters.
 * @returns number of pages pinned (≥ 1), or: -EFAULT when `hva` is not mapped, or FOLL_WRITE on a read-only VMA,
 *   or a poisoned page without FOLL_HWPOISON; -EHWPOISON for a poisoned page with FOLL_HWPOISON; -ENOMEM when a
 *   page cannot be faulted in.
 */
export function pinUserPages(
  mm: Mm,
  ram: HostRam,
  cpu: number,
  hva: number,
  nrPages: number,
  gupFlags: number,
  out: Float64Array,
  stats: GupStats,
): number {
  const pages = mm.pages;
  for (let n = 0; n < nrPages; n++) {
    const addr = hva + n * PAGE_SIZE;
    const vma = mm.findVma(addr);
    let err = 0;
    if (vma === null || ((gupFlags & FOLL_WRITE) !== 0 && !vma.writable)) {
      err = Err.EFAULT;
    } else {
      const i = (addr - vma.start) / PAGE_SIZE;
      let pa = vma.pagePa[i]!; // JUSTIFY: i < nrPages of the VMA.
      const poisoned = (vma.pte[i]! & PTE_HWPOISON) !== 0 || (pa >= 0 && (pages.flags[pages.indexOf(pa)]! & PG_HWPOISON) !== 0); // JUSTIFY: as above.
      if (poisoned) {
        err = (gupFlags & FOLL_HWPOISON) !== 0 ? Err.EHWPOISON : Err.EFAULT;
      } else {
        if (pa < 0) {
          pa = mm.faultIn(vma, i);
          if (pa >= 0) stats.faultIns++;
        } else if ((gupFlags & FOLL_WRITE) !== 0 && (vma.pte[i]! & PTE_KSM_WP) !== 0) {
          pa = breakCow(mm, ram, cpu, vma.pagePa, vma.pte, i, stats); // JUSTIFY: i as above.
        }
        if (pa < 0) err = pa;
        else {
          pages.pinCount[pages.indexOf(pa)]++;
          stats.pins++;
          out[n] = pa;
        }
      }
    }
    if (err !== 0) return n > 0 ? n : err;
  }
  return nrPages;
}

/** `wp_page_copy()` for a FOLL_WRITE fault on a KSM-merged page: a private copy replaces it. */
function breakCow(
  mm: Mm,
  ram: HostRam,
  cpu: number,
  pagePa: Float64Array,
  pte: Uint8Array,
  i: number,
  stats: GupStats,
): number {
  const old = pagePa[i]!; // JUSTIFY: caller checked i.
  const pa = mm.pages.allocPage();
  if (pa < 0) return Err.ENOMEM;
  if (!ram.copyPage(cpu, pa, old)) {
    mm.pages.freePage(pa);
    return Err.EFAULT;
  }
  mm.pages.flags[mm.pages.indexOf(pa)] = mm.pages.flags[mm.pages.indexOf(old)]! | PG_MAPPED; // JUSTIFY: host RAM.
  pagePa[i] = pa;
  pte[i] = pte[i]! & ~PTE_KSM_WP; // JUSTIFY: as above.
  mm.releaseMapping(old);
  stats.cowBreaks++;
  return pa;
}

/**
 * Drops one pin from each of `nrPages` pages.
 *
 * Mirrors `unpin_user_pages()` / `unpin_user_pages_dirty_lock()` (mm/gup.c): with `makeDirty` the page is marked
 * dirty first; a page that is neither pinned nor mapped any more (its VMA was unmapped) is freed.
 * @param mm the VMM's address space (its allocator).
 * @param pas PAs of the pages, as `pinUserPages` returned them.
 * @param nrPages number of entries of `pas` to unpin.
 * @param makeDirty mark the pages dirty (`unpin_user_pages_dirty_lock(…, true)`).
 * @param stats counters.
 * @remarks Unpinning a page that is not pinned is an emulator bug (only KVM's own bookkeeping calls this).
 */
export function unpinUserPages(mm: Mm, pas: Float64Array, nrPages: number, makeDirty: boolean, stats: GupStats): void {
  const pages = mm.pages;
  for (let n = 0; n < nrPages; n++) {
    const pa = pas[n]!; // JUSTIFY: n < nrPages ≤ length.
    const idx = pages.indexOf(pa);
    if (!(idx >= 0 && pages.pinCount[idx]! > 0)) assert(false, `unpin of unpinned page 0x${pa.toString(16)}`);
    if (makeDirty) pages.flags[idx] = pages.flags[idx]! | PG_DIRTY; // JUSTIFY: idx checked.
    pages.pinCount[idx]--;
    stats.unpins++;
    if (pages.pinCount[idx] === 0 && (pages.flags[idx]! & PG_MAPPED) === 0) pages.freePage(pa); // JUSTIFY: as above.
  }
}

/**
 * The core mm tries to move (NUMA balancing, compaction) or merge (KSM) the page backing `hva`.
 *
 * Mirrors the common shape of `migrate_pages()` (mm/migrate.c) and `try_to_merge_one_page()` (mm/ksm.c): the MMU
 * notifiers hear the invalidation first, whatever happens next (Alexandru Elisei's point in the V1 33/89 review);
 * then a page with an elevated (pinned) reference count cannot be moved and the attempt fails. An unpinned page is
 * copied to a fresh page (NUMA, compaction) or write-protected as a KSM page.
 * @param mm the VMM's address space.
 * @param ram host RAM access for the copy.
 * @param cpu CPU doing the copy.
 * @param hva a user address.
 * @param reason which mm path tries.
 * @param stats counters.
 * @returns 0 when the page moved or was merged; -EBUSY when it is pinned; -EFAULT when `hva` has no populated
 *   page; -ENOMEM when no destination page is free.
 */
export function migratePage(mm: Mm, ram: HostRam, cpu: number, hva: number, reason: MigrateReason, stats: GupStats): number {
  const vma = mm.findVma(hva);
  if (vma === null) return Err.EFAULT;
  const i = Math.floor((hva - vma.start) / PAGE_SIZE);
  const old = vma.pagePa[i]!; // JUSTIFY: i < nrPages.
  if (old < 0) return Err.EFAULT;
  stats.attempts[reason]++;
  const start = vma.start + i * PAGE_SIZE;
  const event =
    reason === MigrateReason.KSM
      ? MmuNotifierEvent.KSM
      : reason === MigrateReason.NUMA_BALANCE
        ? MmuNotifierEvent.NUMA_BALANCE
        : MmuNotifierEvent.COMPACTION;
  for (const n of mm.notifiers) n.invalidateRangeStart(start, start + PAGE_SIZE, event);
  const pages = mm.pages;
  if (pages.pinCount[pages.indexOf(old)]! > 0) {
    stats.failedPinned[reason]++;
    return Err.EBUSY;
  }
  if (reason === MigrateReason.KSM) {
    vma.pte[i] = vma.pte[i]! | PTE_KSM_WP; // JUSTIFY: i < nrPages.
    stats.succeeded[reason]++;
    return 0;
  }
  const pa = pages.allocPage();
  if (pa < 0) return Err.ENOMEM;
  if (!ram.copyPage(cpu, pa, old)) {
    pages.freePage(pa);
    return Err.EFAULT;
  }
  pages.flags[pages.indexOf(pa)] = pages.flags[pages.indexOf(old)]! | PG_MAPPED; // JUSTIFY: host RAM.
  vma.pagePa[i] = pa;
  mm.releaseMapping(old);
  stats.succeeded[reason]++;
  return 0;
}
