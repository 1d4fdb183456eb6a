/**
 * The depth-first page-table walker of the library, `kvm_pgtable_walk()` and `kvm_pgtable_get_leaf()`
 * (arch/arm64/kvm/hyp/pgtable.c, Linux v6.10; semantics documented in arch/arm64/include/asm/kvm_pgtable.h):
 *
 * - `LEAF` visits every non-table entry, invalid ones included; `TABLE_PRE` a table entry before its children,
 *   `TABLE_POST` after them.
 * - The entry is re-read after a `TABLE_PRE` or `LEAF` callback, so a visitor may install a table (the walk then
 *   descends into it) or replace a table by a leaf (the walk then skips the leaf's span).
 * - A non-zero visitor return stops the walk and is returned, except -EAGAIN, which is ignored unless the walker
 *   has `HANDLE_FAULT` (6.x behaviour; V1 / v5.18 returned every non-zero value, pkvm.md §7.3).
 * - A shared walk (`SHARED`) is refused with -EPERM, as in the nVHE hypervisor (`kvm_pgtable_walk_begin()`).
 *
 * Hot path (STYLE §10.6): one context object and one cursor object per walk, descriptors read into locals, no
 * allocation per visited entry. The recursion keeps per-entry state in locals and restores the shared context
 * before a `TABLE_POST` callback.
 */

import { granuleShift } from '../arch/granule.js';
import { Err, type Ret } from '../arch/errno.js';
import type { PhysMem, U64 } from '../mem/phys-mem.js';
import type { PgtMmOps } from './mm-ops.js';
import { alignDownPow2, kvmPteTable, kvmPteToPhys, pgtPageSize, ptrsPerPte } from './pte.js';
import { KVM_PGTABLE_LAST_LEVEL, WalkFlags, type KvmPgtable, type LeafOut, type WalkVisit } from './types.js';
import type { Granule } from '../arch/granule.js';

/**
 * `struct kvm_pgtable_visit_ctx`: one per walk, updated before each callback and valid only during it.
 * `addr` is the walk cursor when the entry was reached (not necessarily aligned to the entry's span).
 */
export interface VisitCtx<T> {
  /** The walker's argument. */
  readonly arg: T;
  /** PA of the visited descriptor. */
  ptep: number;
  /** Bits[31:0] of the descriptor as read before the callback. */
  oldLo: number;
  /** Bits[63:32] of the descriptor as read before the callback. */
  oldHi: number;
  /** Start of the walked range (page aligned). */
  readonly start: number;
  /** Address being visited. */
  addr: number;
  /** End of the walked range (page aligned, exclusive). */
  readonly end: number;
  /** Level of the visited entry. */
  level: number;
  /** The walker's flags. */
  readonly flags: number;
  /** The table's memory-management callbacks. */
  readonly mmOps: PgtMmOps;
  /** Memory holding the tables. */
  readonly mem: PhysMem;
  /** Translation granule of the table. */
  readonly granule: Granule;
}

/** A visitor: returns 0 to continue, or a negated errno (-E2BIG is the library's internal "not a leaf here"). */
export type VisitorFn<T> = (ctx: VisitCtx<T>, visit: WalkVisit) => number;

/** `struct kvm_pgtable_walker`: callback, argument and the visit/behaviour flags ({@link WalkFlags}). */
export interface Walker<T> {
  /** The visitor. */
  readonly cb: VisitorFn<T>;
  /** Passed to the visitor as `ctx.arg`. */
  readonly arg: T;
  /** A set of {@link WalkFlags}. */
  readonly flags: number;
}

/** Walk cursor (`struct kvm_pgtable_walk_data`): `addr` moves, `start`/`end` are fixed. */
interface WalkData {
  addr: number;
  end: number;
}

/** Scratch for descriptor reads; values are copied to locals at once, so nested walks may reuse it. */
const scratch: U64 = { lo: 0, hi: 0 };

/** `kvm_pgtable_walk_continue()`: -EAGAIN is ignored unless the walk handles a fault. */
function walkContinue(flags: number, r: number): boolean {
  if (r === Err.EAGAIN) return (flags & WalkFlags.HANDLE_FAULT) === 0;
  return r === 0;
}

/** `__kvm_pgtable_visit()`. */
function visit<T>(walker: Walker<T>, ctx: VisitCtx<T>, data: WalkData, ptep: number, level: number): number {
  const flags = walker.flags;
  const mem = ctx.mem;
  mem.read64(ptep, scratch);
  const addr = data.addr;
  ctx.ptep = ptep;
  ctx.oldLo = scratch.lo;
  ctx.oldHi = scratch.hi;
  ctx.addr = addr;
  ctx.level = level;
  let ret = 0;
  let reload = false;
  let table = kvmPteTable(ctx.oldLo, level);

  if (table && (flags & WalkFlags.TABLE_PRE) !== 0) {
    ret = walker.cb(ctx, WalkFlags.TABLE_PRE);
    reload = true;
  }
  if (!table && (flags & WalkFlags.LEAF) !== 0) {
    ret = walker.cb(ctx, WalkFlags.LEAF);
    reload = true;
  }

  // Re-read after the callback: the visitor may have installed or replaced a table.
  let oldLo = ctx.oldLo;
  let oldHi = ctx.oldHi;
  if (reload) {
    mem.read64(ptep, scratch);
    oldLo = scratch.lo;
    oldHi = scratch.hi;
    table = kvmPteTable(oldLo, level);
  }

  if (!walkContinue(flags, ret)) return ret;

  if (!table) {
    const size = 2 ** (granuleShift(ctx.granule) + (3 - level) * (granuleShift(ctx.granule) - 3));
    data.addr = alignDownPow2(data.addr, size) + size;
    return 0;
  }

  ret = walkTable(walker, ctx, data, kvmPteToPhys(oldLo, oldHi, ctx.granule), level + 1);
  if (!walkContinue(flags, ret)) return ret;

  if ((flags & WalkFlags.TABLE_POST) !== 0) {
    // The shared context was overwritten by the children: restore this entry's view.
    ctx.ptep = ptep;
    ctx.oldLo = oldLo;
    ctx.oldHi = oldHi;
    ctx.addr = addr;
    ctx.level = level;
    ret = walker.cb(ctx, WalkFlags.TABLE_POST);
  }
  return walkContinue(flags, ret) ? 0 : ret;
}

/** `__kvm_pgtable_walk()`: the entries of one table page from the cursor's index on. */
function walkTable<T>(walker: Walker<T>, ctx: VisitCtx<T>, data: WalkData, tablePa: number, level: number): number {
  if (level < -1 || level > KVM_PGTABLE_LAST_LEVEL) return Err.EINVAL;
  const g = granuleShift(ctx.granule);
  const entries = ptrsPerPte(ctx.granule);
  const span = 2 ** (g + (3 - level) * (g - 3));
  let ret = 0;
  for (let idx = Math.floor(data.addr / span) % entries; idx < entries; ++idx) {
    if (data.addr >= data.end) break;
    ret = visit(walker, ctx, data, tablePa + idx * 8, level);
    if (ret !== 0) break;
  }
  return ret;
}

/** `kvm_pgd_page_idx()`: which page of a concatenated pgd covers `addr`. */
export function kvmPgdPageIdx(pgt: KvmPgtable, addr: number): number {
  const shift = granuleShift(pgt.granule) + (3 - (pgt.startLevel - 1)) * (granuleShift(pgt.granule) - 3);
  const masked = addr % 2 ** pgt.iaBits;
  return shift >= 53 ? 0 : Math.floor(masked / 2 ** shift);
}

/**
 * `kvm_pgd_pages()`: number of concatenated pages of the start-level table.
 * @remarks Mirrors `kvm_pgd_pages()` (arch/arm64/kvm/hyp/pgtable.c).
 */
export function kvmPgdPages(granule: Granule, iaBits: number, startLevel: number): number {
  const shift = granuleShift(granule) + (3 - (startLevel - 1)) * (granuleShift(granule) - 3);
  return iaBits > shift ? 2 ** (iaBits - shift) : 1;
}

/**
 * Walks the entries covering [addr, addr + size) (rounded out to pages) depth-first, calling `walker.cb` as its
 * flags request.
 *
 * @param pgt the table.
 * @param addr start input address; the offset within a page is ignored.
 * @param size bytes; the end is rounded up to a page.
 * @param walker callback, argument and flags.
 * @returns 0; -ERANGE when the range exceeds 2^ia_bits; -EINVAL when there is no pgd; -EPERM for a `SHARED`
 *   walk (nVHE); otherwise the first visitor return that stops the walk.
 * @remarks Mirrors `kvm_pgtable_walk()` (arch/arm64/kvm/hyp/pgtable.c).
 */
export function kvmPgtableWalk<T>(pgt: KvmPgtable, addr: number, size: number, walker: Walker<T>): number {
  // kvm_pgtable_walk_begin(), nVHE flavour: no RCU at EL2, so shared walks are refused.
  if ((walker.flags & WalkFlags.SHARED) !== 0) return Err.EPERM;
  const page = pgtPageSize(pgt.granule);
  const start = alignDownPow2(addr, page);
  const endRaw = start + size;
  const end = endRaw % page === 0 ? endRaw : alignDownPow2(endRaw, page) + page;
  const limit = 2 ** pgt.iaBits;
  if (start > limit || end > limit) return Err.ERANGE;
  if (pgt.pgd < 0) return Err.EINVAL;

  const ctx: VisitCtx<T> = {
    arg: walker.arg,
    ptep: 0,
    oldLo: 0,
    oldHi: 0,
    start,
    addr: start,
    end,
    level: pgt.startLevel,
    flags: walker.flags,
    mmOps: pgt.mmOps,
    mem: pgt.mem,
    granule: pgt.granule,
  };
  const data: WalkData = { addr: start, end };
  let ret = 0;
  for (let idx = kvmPgdPageIdx(pgt, start); data.addr < data.end; ++idx) {
    ret = walkTable(walker, ctx, data, pgt.pgd + idx * page, pgt.startLevel);
    if (ret !== 0) break;
  }
  return ret;
}

/**
 * Walks an unlinked table (one not reachable from a pgd) at `level`, covering [0, span of a level−1 entry),
 * as `kvm_pgtable_stage2_free_unlinked()` and `kvm_pgtable_stage2_create_unlinked()` do.
 * @returns as {@link kvmPgtableWalk}.
 * @remarks Mirrors the direct `__kvm_pgtable_walk()` calls in arch/arm64/kvm/hyp/pgtable.c.
 */
export function kvmPgtableWalkUnlinked<T>(
  pgt: KvmPgtable,
  tablePa: number,
  level: number,
  walker: Walker<T>,
): number {
  const g = granuleShift(pgt.granule);
  const end = 2 ** (g + (3 - (level - 1)) * (g - 3));
  const ctx: VisitCtx<T> = {
    arg: walker.arg,
    ptep: 0,
    oldLo: 0,
    oldHi: 0,
    start: 0,
    addr: 0,
    end,
    level,
    flags: walker.flags,
    mmOps: pgt.mmOps,
    mem: pgt.mem,
    granule: pgt.granule,
  };
  const data: WalkData = { addr: 0, end };
  return walkTable(walker, ctx, data, tablePa, level);
}

/** `struct leaf_walk_data`. */
interface LeafWalkData {
  lo: number;
  hi: number;
  level: number;
}

/** `leaf_walker()`: records the last leaf visited. */
function leafWalker(ctx: VisitCtx<LeafWalkData>): number {
  const d = ctx.arg;
  d.lo = ctx.oldLo;
  d.hi = ctx.oldHi;
  d.level = ctx.level;
  return 0;
}

const leafData: LeafWalkData = { lo: 0, hi: 0, level: 0 };
const leafWalkerObj: Walker<LeafWalkData> = { cb: leafWalker, arg: leafData, flags: WalkFlags.LEAF };

/**
 * Finds the leaf entry (valid or not) covering `addr` and the level it sits at: an empty level-1 entry reports
 * level 1, a 2 MiB block level 2, and so on.
 *
 * @param pgt the table.
 * @param addr input address.
 * @param out receives the PTE halves and level on success (untouched on failure).
 * @returns 0; -ERANGE past ia_bits; -EINVAL without a pgd.
 * @remarks Mirrors `kvm_pgtable_get_leaf()` (arch/arm64/kvm/hyp/pgtable.c).
 */
export function kvmPgtableGetLeaf(pgt: KvmPgtable, addr: number, out: LeafOut): Ret {
  const page = pgtPageSize(pgt.granule);
  leafData.lo = 0;
  leafData.hi = 0;
  leafData.level = 0;
  // JUSTIFY: the leaf visitor returns 0, so only the walk's own errors remain.
  const ret = kvmPgtableWalk(pgt, alignDownPow2(addr, page), page, leafWalkerObj) as Ret;
  if (ret === 0) {
    out.lo = leafData.lo;
    out.hi = leafData.hi;
    out.level = leafData.level;
  }
  return ret;
}

/** Short name of {@link kvmPgtableGetLeaf} used by EL2 code. Mirrors `kvm_pgtable_get_leaf()`. */
export const getLeaf = kvmPgtableGetLeaf;
