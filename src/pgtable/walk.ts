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
 * Hot path (STYLE §10.6): no allocation per walk or per visited entry. The context-and-cursor object is pooled by
 * nesting depth; sizes come from a power-of-two table and indices from 32-bit halves (V8 compiles `2 ** n` and `%`
 * on doubles to calls into `pow()` and `fmod()`). The recursion keeps per-entry state in locals and restores the
 * shared context before a `TABLE_POST` callback. A one-page walk without `TABLE_POST` (every map, owner change and
 * state check of a single page) follows a single path and runs as a loop; `get_leaf` descends directly.
 */

import { granuleShift } from '../arch/granule.js';
import { Err, type Ret } from '../arch/errno.js';
import type { PhysMem, U64 } from '../mem/phys-mem.js';
import type { PgtMmOps } from './mm-ops.js';
import { alignDownPow2, kvmPteTable, kvmPteToPhys, modPow2, POW2 } from './pte.js';
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

/**
 * One walk's state: the visitor context (`struct kvm_pgtable_visit_ctx`) and the cursor (`struct
 * kvm_pgtable_walk_data`: `cursor` moves, `cursorEnd` is fixed), with the granule shift `g` and bits per level `s`
 * decoded once per walk. Instances are pooled by nesting depth (a visitor may start another walk), so a walk
 * allocates nothing.
 */
class WalkState implements VisitCtx<unknown> {
  arg: unknown = null;
  ptep = 0;
  oldLo = 0;
  oldHi = 0;
  start = 0;
  addr = 0;
  end = 0;
  level = 0;
  flags = 0;
  mmOps: PgtMmOps = NO_MM_OPS;
  mem: PhysMem = NO_MEM;
  granule: Granule = '4k';
  cursor = 0;
  cursorEnd = 0;
  g = 12;
  s = 9;
}

/** Placeholder references held by idle pooled states (never called: set before each walk). */
const NO_MM_OPS = null as unknown as PgtMmOps;
const NO_MEM = null as unknown as PhysMem;

/** Walk states by nesting depth; `walkDepth` is the number in use. */
const walkPool: WalkState[] = [];
let walkDepth = 0;

/** Takes the walk state for the current nesting depth and fills its fixed fields. */
function acquireWalk(pgt: KvmPgtable, arg: unknown, flags: number, start: number, end: number, level: number, g: number): WalkState {
  let st = walkPool[walkDepth];
  if (st === undefined) {
    st = new WalkState();
    walkPool.push(st);
  }
  walkDepth++;
  st.arg = arg;
  st.ptep = 0;
  st.oldLo = 0;
  st.oldHi = 0;
  st.start = start;
  st.addr = start;
  st.end = end;
  st.level = level;
  st.flags = flags;
  st.mmOps = pgt.mmOps;
  st.mem = pgt.mem;
  st.granule = pgt.granule;
  st.cursor = start;
  st.cursorEnd = end;
  st.g = g;
  st.s = g - 3;
  return st;
}

/** Returns the walk state taken by {@link acquireWalk} (drops the argument so the pool retains nothing). */
function releaseWalk(st: WalkState): void {
  st.arg = null;
  walkDepth--;
}

/** Whether the one-page fast paths of the library are taken (see {@link setPgtableFastPaths}). */
let fastPaths = true;

/**
 * Enables or disables the library's fast paths that short-cut a general walk (the 4 KiB `get_leaf` descent, the
 * `TABLE_PRE`-free one-page map walk), returning the previous setting. They are equivalent to the general paths by
 * construction; differential tests run the same operations both ways and compare every read, write and result.
 */
export function setPgtableFastPaths(on: boolean): boolean {
  const prev = fastPaths;
  fastPaths = on;
  return prev;
}

/** True when the fast paths are enabled ({@link setPgtableFastPaths}). */
export function pgtableFastPaths(): boolean {
  return fastPaths;
}

/** Scratch for descriptor reads; values are copied to locals at once, so nested walks may reuse it. */
const scratch: U64 = { lo: 0, hi: 0 };

/**
 * Index of the entry covering an address in a table whose entries span 2^`sh` bytes, from the address halves:
 * `(addr >> sh) & mask` on 32-bit words (`floor(addr / 2^sh) mod entries` without float division or `fmod()`).
 * Callers pass `lo = addr >>> 0` and `hi = floor(addr / 2^32)` of an integer address below 2^53.
 */
function tableIndex(lo: number, hi: number, sh: number, mask: number): number {
  // JUSTIFY: lo and hi are u32 halves (hi < 2^21); bits above `mask` shifted out or into the sign are masked off.
  if (sh >= 53) return 0; // the address is below 2^53
  return sh >= 32 ? (hi >>> (sh - 32)) & mask : ((lo >>> sh) | (hi << (32 - sh))) & mask;
}

/** 2^53: addresses below it are exact integers, so their halves give the table indices. */
const EXACT_LIMIT = 2 ** 53;

/** 2^n: the table for integers 0..64, `**` otherwise (an out-of-range `ia_bits` keeps its old meaning). */
function pow2(n: number): number {
  const v = POW2[n];
  return v !== undefined ? v : 2 ** n;
}

/** `kvm_pgtable_walk_continue()`: -EAGAIN is ignored unless the walk handles a fault. */
function walkContinue(flags: number, r: number): boolean {
  if (r === Err.EAGAIN) return (flags & WalkFlags.HANDLE_FAULT) === 0;
  return r === 0;
}

/** `__kvm_pgtable_visit()`. */
function visit<T>(walker: Walker<T>, st: WalkState, ptep: number, level: number): number {
  // JUSTIFY: the state was filled from this walker's argument; visitors only see the VisitCtx<T> view.
  const ctx = st as unknown as VisitCtx<T>;
  const flags = walker.flags;
  const mem = ctx.mem;
  mem.read64(ptep, scratch);
  const addr = st.cursor;
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
    const size = POW2[st.g + (3 - level) * st.s]!; // JUSTIFY: levels -1..3 give shifts 12..68.
    st.cursor = alignDownPow2(st.cursor, size) + size;
    return 0;
  }

  ret = walkTable(walker, st, kvmPteToPhys(oldLo, oldHi, ctx.granule), level + 1);
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
function walkTable<T>(walker: Walker<T>, st: WalkState, tablePa: number, level: number): number {
  if (level < -1 || level > KVM_PGTABLE_LAST_LEVEL) return Err.EINVAL;
  const entries = POW2[st.s]!; // JUSTIFY: 9, 11 or 13.
  const span = POW2[st.g + (3 - level) * st.s]!; // JUSTIFY: levels -1..3 give shifts 12..68.
  let ret = 0;
  for (let idx = modPow2(Math.floor(st.cursor / span), entries); idx < entries; ++idx) {
    if (st.cursor >= st.cursorEnd) break;
    ret = visit(walker, st, tablePa + idx * 8, level);
    if (ret !== 0) break;
  }
  return ret;
}

/**
 * `__kvm_pgtable_walk()` for a range of one page without `TABLE_POST`: the recursion of {@link walkTable} and
 * {@link visit} then follows a single path (every entry on it covers the whole range, and the first leaf moves the
 * cursor past the end), so it runs as a loop. Same reads, callbacks, context values and returns as the recursion.
 */
function walkOnePage<T>(
  walker: Walker<T>,
  st: WalkState,
  tablePa: number,
  level: number,
  skipTablePre: boolean,
): number {
  // JUSTIFY: the state was filled from this walker's argument; visitors only see the VisitCtx<T> view.
  const ctx = st as unknown as VisitCtx<T>;
  const flags = walker.flags;
  const mem = st.mem;
  const entries = POW2[st.s]!; // JUSTIFY: 9, 11 or 13.
  const addr = st.cursor;
  // JUSTIFY: ToUint32 of an address below 2^53 (checked by the caller) is its bits[31:0].
  const addrLo = addr >>> 0;
  const addrHi = Math.floor(addr / 0x1_0000_0000);
  let pa = tablePa;
  let lvl = level;
  for (;;) {
    if (lvl < -1 || lvl > KVM_PGTABLE_LAST_LEVEL) return Err.EINVAL;
    const sh = st.g + (3 - lvl) * st.s;
    const span = POW2[sh]!; // JUSTIFY: levels -1..3 give shifts 12..68.
    const ptep = pa + tableIndex(addrLo, addrHi, sh, entries - 1) * 8;
    mem.read64(ptep, scratch);
    ctx.ptep = ptep;
    ctx.oldLo = scratch.lo;
    ctx.oldHi = scratch.hi;
    ctx.addr = addr;
    ctx.level = lvl;
    let ret = 0;
    let reload = false;
    let table = kvmPteTable(ctx.oldLo, lvl);
    if (table && (flags & WalkFlags.TABLE_PRE) !== 0 && !skipTablePre) {
      ret = walker.cb(ctx, WalkFlags.TABLE_PRE);
      reload = true;
    }
    if (!table && (flags & WalkFlags.LEAF) !== 0) {
      ret = walker.cb(ctx, WalkFlags.LEAF);
      reload = true;
    }
    let oldLo = ctx.oldLo;
    let oldHi = ctx.oldHi;
    if (reload) {
      mem.read64(ptep, scratch);
      oldLo = scratch.lo;
      oldHi = scratch.hi;
      table = kvmPteTable(oldLo, lvl);
    }
    // A stopping return propagates unchanged through every enclosing level of the recursion.
    if (!walkContinue(flags, ret)) return ret;
    if (!table) {
      st.cursor = alignDownPow2(st.cursor, span) + span;
      return 0;
    }
    pa = kvmPteToPhys(oldLo, oldHi, ctx.granule);
    lvl++;
  }
}

/** `kvm_pgd_page_idx()`: which page of a concatenated pgd covers `addr`. */
export function kvmPgdPageIdx(pgt: KvmPgtable, addr: number): number {
  const shift = granuleShift(pgt.granule) + (3 - (pgt.startLevel - 1)) * (granuleShift(pgt.granule) - 3);
  const masked = modPow2(addr, pow2(pgt.iaBits));
  return shift >= 53 ? 0 : Math.floor(masked / pow2(shift));
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
  return walkRange(pgt, addr, size, walker, false);
}

/**
 * {@link kvmPgtableWalk} for a walker whose `TABLE_PRE` callback returns 0 and changes nothing on every table entry
 * it meets in a walk of a single page (the stage-2 map walker: a block cannot replace a table for a range smaller
 * than the table entry's span). For a one-page range the `TABLE_PRE` calls are skipped, along with the re-reads
 * that follow them (the entry cannot have changed); every other read, callback, context value and return is that
 * of {@link kvmPgtableWalk}, and any other range is walked by it unchanged.
 *
 * @returns as {@link kvmPgtableWalk}.
 * @remarks A short-cut of `kvm_pgtable_walk()` (arch/arm64/kvm/hyp/pgtable.c); the caller vouches for its visitor.
 */
export function kvmPgtableWalkNoTablePre<T>(
  pgt: KvmPgtable,
  addr: number,
  size: number,
  walker: Walker<T>,
): number {
  return walkRange(pgt, addr, size, walker, fastPaths);
}

/** `kvm_pgtable_walk()`, optionally skipping no-op `TABLE_PRE` visits of a one-page walk. */
function walkRange<T>(
  pgt: KvmPgtable,
  addr: number,
  size: number,
  walker: Walker<T>,
  skipTablePre: boolean,
): number {
  // kvm_pgtable_walk_begin(), nVHE flavour: no RCU at EL2, so shared walks are refused.
  if ((walker.flags & WalkFlags.SHARED) !== 0) return Err.EPERM;
  const g = granuleShift(pgt.granule);
  const page = POW2[g]!; // JUSTIFY: 12, 14 or 16.
  const start = alignDownPow2(addr, page);
  const endRaw = start + size;
  const end = modPow2(endRaw, page) === 0 ? endRaw : alignDownPow2(endRaw, page) + page;
  const limit = pow2(pgt.iaBits);
  if (start > limit || end > limit) return Err.ERANGE;
  if (pgt.pgd < 0) return Err.EINVAL;

  const st = acquireWalk(pgt, walker.arg, walker.flags, start, end, pgt.startLevel, g);
  let ret = 0;
  try {
    if (start >= 0 && start < EXACT_LIMIT && end - start === page && (walker.flags & WalkFlags.TABLE_POST) === 0) {
      ret = walkOnePage(walker, st, pgt.pgd + kvmPgdPageIdx(pgt, start) * page, pgt.startLevel, skipTablePre);
    } else {
      for (let idx = kvmPgdPageIdx(pgt, start); st.cursor < st.cursorEnd; ++idx) {
        ret = walkTable(walker, st, pgt.pgd + idx * page, pgt.startLevel);
        if (ret !== 0) break;
      }
    }
  } finally {
    releaseWalk(st);
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
  const st = acquireWalk(pgt, walker.arg, walker.flags, 0, end, level, g);
  try {
    return walkTable(walker, st, tablePa, level);
  } finally {
    releaseWalk(st);
  }
}

/**
 * Finds the leaf entry (valid or not) covering `addr` and the level it sits at: an empty level-1 entry reports
 * level 1, a 2 MiB block level 2, and so on.
 *
 * The kernel runs a one-page `kvm_pgtable_walk()` with a LEAF visitor that records the entry; that walk visits
 * exactly the entries on the path to the leaf covering the page, so this descends that path directly (same reads,
 * same result, same errors) instead of going through the generic walker. With a 4 KiB granule (pKVM's) the descent
 * has constant geometry and reads the memory's flat window directly ({@link setPgtableFastPaths} turns that off).
 *
 * @param pgt the table.
 * @param addr input address.
 * @param out receives the PTE halves and level on success (untouched on failure).
 * @returns 0; -ERANGE past ia_bits; -EINVAL without a pgd.
 * @remarks Mirrors `kvm_pgtable_get_leaf()` (arch/arm64/kvm/hyp/pgtable.c).
 */
export function kvmPgtableGetLeaf(pgt: KvmPgtable, addr: number, out: LeafOut): Ret {
  if (pgt.granule === '4k' && addr >= 0 && addr < EXACT_LIMIT && fastPaths) return getLeaf4k(pgt, addr, out);
  const g = granuleShift(pgt.granule);
  const page = POW2[g]!; // JUSTIFY: 12, 14 or 16.
  const start = alignDownPow2(addr, page);
  const limit = pow2(pgt.iaBits);
  // [start, start + page): the range checks of kvm_pgtable_walk() for it (a negative address, which only a
  // caller's bug produces, keeps the generic walk's rounding).
  if (!(start >= 0 && start < EXACT_LIMIT)) return getLeafByWalk(pgt, start, page, out);
  if (start > limit || start + page > limit) return Err.ERANGE;
  if (pgt.pgd < 0) return Err.EINVAL;
  const s = g - 3;
  const entries = POW2[s]!; // JUSTIFY: 9, 11 or 13.
  const mem = pgt.mem;
  // JUSTIFY: ToUint32 of an address below 2^53 (checked above) is its bits[31:0].
  const addrLo = start >>> 0;
  const addrHi = Math.floor(start / 0x1_0000_0000);
  let level = pgt.startLevel;
  let tablePa = pgt.pgd + kvmPgdPageIdx(pgt, start) * page;
  for (;;) {
    if (level < -1 || level > KVM_PGTABLE_LAST_LEVEL) return Err.EINVAL;
    const ptep = tablePa + tableIndex(addrLo, addrHi, g + (3 - level) * s, entries - 1) * 8;
    mem.read64(ptep, scratch);
    const lo = scratch.lo;
    const hi = scratch.hi;
    if (!kvmPteTable(lo, level)) {
      out.lo = lo;
      out.hi = hi;
      out.level = level;
      return 0;
    }
    tablePa = kvmPteToPhys(lo, hi, pgt.granule);
    level++;
  }
}

/**
 * {@link kvmPgtableGetLeaf} for a 4 KiB-granule table and an address in [0, 2^53): the same checks, reads and
 * result, with the geometry as constants and every index taken from the address halves in 32-bit arithmetic.
 */
function getLeaf4k(pgt: KvmPgtable, addr: number, out: LeafOut): Ret {
  // JUSTIFY: addr is in [0, 2^53): ToUint32 gives bits[31:0] of floor(addr), and hi = bits[52:32].
  const hi = Math.floor(addr / 0x1_0000_0000);
  const lo = (addr >>> 0) & PAGE_MASK_4K;
  const start = hi * 0x1_0000_0000 + (lo >>> 0); // ALIGN_DOWN(addr, PAGE_SIZE), exact
  const limit = pow2(pgt.iaBits);
  if (start > limit || start + 0x1000 > limit) return Err.ERANGE;
  if (pgt.pgd < 0) return Err.EINVAL;
  const level = pgt.startLevel;
  if (level < -1 || level > KVM_PGTABLE_LAST_LEVEL) return Err.EINVAL;
  descend4k(pgt, lo, hi, out);
  return 0;
}

/**
 * Descends a 4 KiB-granule table from its pgd along the path of the page at `lo`/`hi` (bits[31:12] and [52:32] of
 * an address below 2^ia_bits; the table has a pgd and a start level in -1..3), reading one entry per level as
 * `kvm_pgtable_walk()` does, until a non-table entry; writes that entry's halves and level to `out`.
 * @returns the entry's PA.
 */
function descend4k(pgt: KvmPgtable, lo: number, hi: number, out: LeafOut): number {
  let level = pgt.startLevel;
  // kvm_pgd_page_idx(): the address is below 2^ia_bits, so the masking is a no-op and the quotient is below the
  // pgd page count (at most 16).
  const pgdShift = 12 + (4 - level) * 9;
  const pgdIdx = pgdShift >= 53 ? 0 : tableIndex(lo, hi, pgdShift, 0x7fff_ffff);
  const pgd = pgt.pgd + pgdIdx * 0x1000;
  // Table addresses as halves, as the hardware walker keeps them (s2-walk.ts): tHi = PA[51:32], tLo = PA[31:0] as
  // an int32. A table is page aligned, so tLo + index × 8 never carries into tHi.
  let tHi = Math.floor(pgd / 0x1_0000_0000);
  let tLo = pgd | 0; // JUSTIFY: pgd < 2^53; `| 0` is PA[31:0] as an int32.
  const mem = pgt.mem;
  // The memory's flat window (PhysMem.winHi): a descriptor in it is read with int32 arithmetic only; anything else
  // goes through read64 (which may move the window).
  let win = mem.win;
  let winHi = mem.winHi;
  let winLo = mem.winLo;
  let winLen = mem.winLen;
  let winOff = mem.winOff;
  for (;;) {
    // The entry's index: address bits [20:12], [29:21], [38:30], [47:39] or [52:48] for levels 3, 2, 1, 0, -1.
    const idx =
      level === 3
        ? (lo >>> 12) & 511
        : level === 2
          ? (lo >>> 21) & 511
          : level === 1
            ? ((lo >>> 30) | (hi << 2)) & 511
            : level === 0
              ? (hi >>> 7) & 511
              : (hi >>> 16) & 511;
    const dLo = tLo + (idx << 3); // int32: no carry out of the table (see above)
    const rel = (dLo - winLo) >>> 0;
    let dlo: number;
    let dhi: number;
    if (tHi === winHi && rel < winLen) {
      const w = (rel >>> 2) + winOff;
      dlo = win[w]!; // JUSTIFY: w + 1 < win.length for an 8-byte aligned descriptor in the window.
      dhi = win[w + 1]!;
    } else {
      mem.read64(tHi * 0x1_0000_0000 + (dLo >>> 0), scratch);
      dlo = scratch.lo;
      dhi = scratch.hi;
      win = mem.win;
      winHi = mem.winHi;
      winLo = mem.winLo;
      winLen = mem.winLen;
      winOff = mem.winOff;
    }
    if (level === KVM_PGTABLE_LAST_LEVEL || (dlo & 3) !== 3) {
      out.lo = dlo;
      out.hi = dhi;
      out.level = level;
      return tHi * 0x1_0000_0000 + (dLo >>> 0);
    }
    // kvm_pte_to_phys(), 4K: OA[47:12].
    tHi = dhi & 0xffff;
    tLo = dlo & PAGE_MASK_4K;
    level++;
  }
}

/**
 * Where a one-page `kvm_pgtable_walk()` of a 4 KiB-granule table reaches its last-level entry with every entry above
 * it a table: for the stage-2 map and set_owner fast paths, which then make the walk's one LEAF visit themselves.
 *
 * @param pgt the table.
 * @param addr the address (the walk's start is its page).
 * @param size the walk's size.
 * @param flags the walk's flags.
 * @param out receives the last-level entry's halves and level 3.
 * @returns the entry's PA, or -1 (having changed nothing) when the walk would not be that: a range other than one
 *   page, an address outside [0, 2^53), a SHARED or TABLE_POST walk, the walk's range and pgd errors, or a
 *   non-table entry above the last level.
 * @remarks A short-cut of the path `kvm_pgtable_walk()` (arch/arm64/kvm/hyp/pgtable.c) takes to the leaf: the
 *   same reads, in the same order, without the TABLE_PRE visits (the callers' visitors do nothing there).
 */
export function kvmPgtableFindPage4k(
  pgt: KvmPgtable,
  addr: number,
  size: number,
  flags: number,
  out: LeafOut,
): number {
  if ((flags & (WalkFlags.SHARED | WalkFlags.TABLE_POST)) !== 0) return -1;
  // The range rounds out to exactly one page when 0 < size <= PAGE_SIZE.
  if (!(addr >= 0 && addr < EXACT_LIMIT && size > 0 && size <= 0x1000)) return -1;
  // JUSTIFY: addr is in [0, 2^53): ToUint32 gives bits[31:0] of floor(addr), and hi = bits[52:32].
  const hi = Math.floor(addr / 0x1_0000_0000);
  const lo = (addr >>> 0) & PAGE_MASK_4K;
  const start = hi * 0x1_0000_0000 + (lo >>> 0); // ALIGN_DOWN(addr, PAGE_SIZE), exact
  const level = pgt.startLevel;
  if (start + 0x1000 > pow2(pgt.iaBits) || pgt.pgd < 0 || level < -1 || level > KVM_PGTABLE_LAST_LEVEL) return -1;
  const ptep = descend4k(pgt, lo, hi, out);
  return out.level === KVM_PGTABLE_LAST_LEVEL ? ptep : -1;
}

/**
 * `kvm_pgtable_walk_continue()` for a walk's final visitor return: the value the walk returns (0 for a return that
 * does not stop it).
 */
export function kvmPgtableWalkResult(flags: number, ret: number): number {
  return walkContinue(flags, ret) ? 0 : ret;
}

/** Bits[31:12] of a low half. */
const PAGE_MASK_4K = 0xffff_f000 | 0;

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

/** `kvm_pgtable_get_leaf()` through the generic walk, for addresses the direct descent does not take. */
function getLeafByWalk(pgt: KvmPgtable, start: number, page: number, out: LeafOut): Ret {
  leafData.lo = 0;
  leafData.hi = 0;
  leafData.level = 0;
  // JUSTIFY: the leaf visitor returns 0, so only the walk's own errors remain.
  const ret = kvmPgtableWalk(pgt, start, page, leafWalkerObj) as Ret;
  if (ret === 0) {
    out.lo = leafData.lo;
    out.hi = leafData.hi;
    out.level = leafData.level;
  }
  return ret;
}

/** Short name of {@link kvmPgtableGetLeaf} used by EL2 code. Mirrors `kvm_pgtable_get_leaf()`. */
export const getLeaf = kvmPgtableGetLeaf;
