/**
 * The ghost-state invariants of `check/invariants.ts` (pkvm.md §1.6), checked incrementally so the fuzzer can check
 * them after every step at tens of thousands of steps per second. The full check recomputes every interesting page
 * from every table (milliseconds); this one re-checks only what a step can have changed:
 *
 * - it sits in the descriptor-write path (`PhysMem.observer`, chained in front of the break-before-make checker) and
 *   keeps an index of every table page of the host stage-2, the hyp stage-1 and each guest stage-2 (table page →
 *   table, level, first input address), plus a reverse map from each physical page to the hyp and guest leaves
 *   that map it;
 * - each descriptor write marks dirty the table page written (its refcount is re-checked), the entry (its
 *   per-entry rules: no state on host blocks, no non-zero invalid hyp/guest entries, no guest blocks) and the
 *   physical pages the old and new entries map or annotate (their ghost state is recomputed and checked with the
 *   rules of the full check);
 * - a VM that appears is scanned whole, a VM that disappears dirties every page it mapped;
 * - memcache pages, hypervisor warnings and break-before-make violations are checked on every call (they change
 *   without descriptor writes).
 *
 * What it does not see: state that changes with no descriptor write at all, i.e. a host unpin of a page a guest
 * still maps (the pin is host bookkeeping) — the runner also runs the full check periodically and at the end.
 * `test/check/fuzz-incremental.test.ts` runs random steps, with and without planted bugs, and checks after every
 * step that this check reports a violation exactly when the full one does.
 */

import { PAGE_SIZE } from '../../arch/addr.js';
import { DESC_TYPE_LO, DESC_VALID_LO, OA_47_32_HI, SW0_HI, SW1_HI } from '../../arch/desc.js';
import { PageState, pageStateName, PkvmId } from '../../el2/page-state.js';
import { HypPageFlag } from '../../el2/vmemmap.js';
import type { DescWriteObserver, U64 } from '../../mem/phys-mem.js';
import type { Machine } from '../../system.js';
import { hostViewOf, pendingReclaimHostViewOk, type TableRef } from '../invariants.js';

const TreeKind = { HOST: 0, HYP: 1, GUEST: 2 } as const;
type TreeKind = (typeof TreeKind)[keyof typeof TreeKind];

/** One page table being followed. */
interface Tree {
  readonly kind: TreeKind;
  /** Name in messages (`host stage-2`, `hyp stage-1`, `guest <vm> stage-2`). */
  readonly what: string;
  /** VM name for guest messages. */
  readonly name: string;
  readonly pgt: TableRef;
  /** Table pages registered for this tree. */
  readonly tables: Set<number>;
  /** Physical pages this tree's leaves were seen mapping. */
  readonly mapped: Set<number>;
  alive: boolean;
}

/** Where a table page sits. */
interface TableInfo {
  readonly tree: Tree;
  readonly level: number;
  /** First input address translated by the page. */
  readonly ia: number;
  /** Entries in this page (512, or fewer for a small root). */
  readonly entries: number;
  /** Non-zero entries in the page, kept up to date by every observed write. */
  counted: number;
}

/** A leaf mapping a physical page: the entry's address and the input address of the entry's first byte. */
interface MapRef {
  readonly tree: Tree;
  readonly ptep: number;
  readonly ia: number;
}

/** The hyp or guest view of a page as recomputed. */
interface GuestGhost {
  readonly name: string;
  readonly state: PageState;
  readonly ipa: number;
}

const hex = (x: number): string => '0x' + x.toString(16);

function levelShift(level: number): number {
  return 12 + 9 * (3 - level);
}

function descOa(lo: number, hi: number): number {
  return (hi & OA_47_32_HI) * 2 ** 32 + ((lo & 0xffff_f000) >>> 0);
}

function swState(hi: number): PageState {
  const s = ((hi & SW0_HI) !== 0 ? 1 : 0) | ((hi & SW1_HI) !== 0 ? 2 : 0);
  return s === 3 ? PageState.NOPAGE : (s as PageState);
}

function isTableDesc(lo: number, level: number): boolean {
  return level < 3 && (lo & DESC_VALID_LO) !== 0 && (lo & DESC_TYPE_LO) !== 0;
}

function isOwner(s: PageState): boolean {
  return s === PageState.OWNED || s === PageState.SHARED_OWNED;
}

/** The incremental checker of one machine. Attach once; call {@link IncrementalInvariants.check} after each step. */
export class IncrementalInvariants implements DescWriteObserver {
  private readonly m: Machine;
  private readonly next: DescWriteObserver | null;
  private readonly index = new Map<number, TableInfo>();
  private readonly rmap = new Map<number, MapRef[]>();
  private readonly dirtyPages = new Set<number>();
  private readonly dirtyTables = new Set<number>();
  private readonly dirtyEntries: number[] = [];
  private readonly guests: (Tree | null)[] = [];
  private readonly guestPgd: number[] = [];
  private readonly host: Tree;
  private readonly hyp: Tree;
  private warnSeen: number;
  private bbmSeen: number;
  private readonly cell: U64 = { lo: 0, hi: 0 };
  /** Pfns in the hyp vCPU memcaches, as of the last refresh. */
  private readonly memcache = new Set<number>();
  /** Receives every descriptor transition of a followed table (coverage), or null. */
  transitions: { transition(oldLo: number, oldHi: number, newLo: number, newHi: number, level: number): void } | null = null;
  /** Pages whose state was rechecked by the last {@link check} (for the poison oracle and statistics). */
  readonly lastChecked: number[] = [];

  /** Attaches to `m`: becomes `m.mem.observer`, forwarding every write to the previous observer first. */
  constructor(m: Machine) {
    this.m = m;
    this.next = m.mem.observer;
    m.mem.observer = this;
    const hyp = m.hyp;
    this.host = this.newTree(TreeKind.HOST, 'host stage-2', 'host', hyp.hostPgt);
    this.hyp = this.newTree(TreeKind.HYP, 'hyp stage-1', 'hyp', hyp.hypPgt);
    this.scanRoot(this.host);
    this.scanRoot(this.hyp);
    this.warnSeen = hyp.warnings.length;
    this.bbmSeen = m.checker.violations.length;
    this.syncGuests();
    // Whatever was dirtied by the initial scans is checked by the first call.
  }

  private newTree(kind: TreeKind, what: string, name: string, pgt: TableRef): Tree {
    return { kind, what, name, pgt, tables: new Set(), mapped: new Set(), alive: true };
  }

  // ---- Index maintenance ----------------------------------------------------------------------------------------

  private scanRoot(t: Tree): void {
    const p = t.pgt;
    if (p.pgd < 0) return;
    const shift = levelShift(p.startLevel);
    const entries = 2 ** Math.max(0, p.iaBits - shift);
    const pages = Math.max(1, Math.ceil(entries / 512));
    for (let i = 0; i < pages; i++) {
      this.scanTable(t, p.pgd + i * PAGE_SIZE, p.startLevel, i * 512 * 2 ** shift, Math.min(512, entries));
    }
  }

  private scanTable(t: Tree, pa: number, level: number, ia: number, entries: number): void {
    const pfn = pa / PAGE_SIZE;
    const info: TableInfo = { tree: t, level, ia, entries, counted: 0 };
    this.index.set(pfn, info);
    t.tables.add(pfn);
    this.dirtyTables.add(pfn);
    const e = this.cell;
    const mem = this.m.mem;
    const span = 2 ** levelShift(level);
    for (let i = 0; i < entries; i++) {
      mem.read64(pa + i * 8, e);
      const lo = e.lo;
      const hi = e.hi;
      if (lo === 0 && hi === 0) continue;
      info.counted++;
      if (isTableDesc(lo, level)) this.scanTable(t, descOa(lo, hi), level + 1, ia + i * span, 512);
      else this.leafChanged(t, pa + i * 8, level, ia + i * span, lo, hi, true);
    }
  }

  /** Forgets a table page unlinked from `t` and everything below it, dirtying what its leaves mapped. */
  private unlinkTable(t: Tree, pa: number, level: number, ia: number): void {
    const pfn = pa / PAGE_SIZE;
    const info = this.index.get(pfn);
    if (info === undefined || info.tree !== t) return;
    this.index.delete(pfn);
    t.tables.delete(pfn);
    this.dirtyTables.delete(pfn);
    const e = this.cell;
    const mem = this.m.mem;
    const span = 2 ** levelShift(level);
    for (let i = 0; i < 512; i++) {
      mem.read64(pa + i * 8, e);
      const lo = e.lo;
      const hi = e.hi;
      if (lo === 0 && hi === 0) continue;
      if (isTableDesc(lo, level)) this.unlinkTable(t, descOa(lo, hi), level + 1, ia + i * span);
      else this.leafChanged(t, pa + i * 8, level, ia + i * span, lo, hi, false);
    }
  }

  /** A non-zero leaf entry appeared (`added`) or went away at `ptep`: dirty what it maps or annotates. */
  private leafChanged(t: Tree, ptep: number, level: number, ia: number, lo: number, hi: number, added: boolean): void {
    const size = 2 ** levelShift(level);
    const valid = (lo & DESC_VALID_LO) !== 0;
    if (level < 3 || !valid) this.dirtyEntries.push(ptep);
    if (t.kind === TreeKind.HOST) {
      // Host pages with a valid OWNED entry are the default; blocks carry no state (checked per entry).
      if (valid && swState(hi) === PageState.OWNED) return;
      const n = Math.min(size, 2 ** 21) / PAGE_SIZE;
      for (let i = 0; i < n; i++) this.dirtyPages.add(ia / PAGE_SIZE + i);
      return;
    }
    if (!valid) return;
    const oaPfn = descOa(lo, hi) / PAGE_SIZE;
    const n = size / PAGE_SIZE;
    for (let i = 0; i < n; i++) {
      const pfn = oaPfn + i;
      this.dirtyPages.add(pfn);
      if (!added) continue;
      t.mapped.add(pfn);
      let refs = this.rmap.get(pfn);
      if (refs === undefined) {
        refs = [];
        this.rmap.set(pfn, refs);
      }
      let dup = false;
      for (let j = 0; j < refs.length && !dup; j++) dup = refs[j]!.ptep === ptep && refs[j]!.tree === t; // JUSTIFY: j < length.
      if (!dup) refs.push({ tree: t, ptep, ia });
    }
  }

  /** {@link DescWriteObserver}: forwards the write, then updates the index and the dirty sets. */
  onDescWrite(pa: number, oldLo: number, oldHi: number, newLo: number, newHi: number): void {
    if (this.next !== null) this.next.onDescWrite(pa, oldLo, oldHi, newLo, newHi);
    const tablePfn = Math.floor(pa / PAGE_SIZE);
    const info = this.index.get(tablePfn);
    if (info === undefined) return;
    this.dirtyTables.add(tablePfn);
    info.counted += (newLo !== 0 || newHi !== 0 ? 1 : 0) - (oldLo !== 0 || oldHi !== 0 ? 1 : 0);
    const t = info.tree;
    const level = info.level;
    if (this.transitions !== null) this.transitions.transition(oldLo, oldHi, newLo, newHi, level);
    const ia = info.ia + ((pa % PAGE_SIZE) / 8) * 2 ** levelShift(level);
    if (oldLo !== 0 || oldHi !== 0) {
      if (isTableDesc(oldLo, level)) {
        if (!(isTableDesc(newLo, level) && descOa(newLo, newHi) === descOa(oldLo, oldHi))) this.unlinkTable(t, descOa(oldLo, oldHi), level + 1, ia);
      } else this.leafChanged(t, pa, level, ia, oldLo, oldHi, false);
    }
    if (newLo !== 0 || newHi !== 0) {
      if (isTableDesc(newLo, level)) {
        const child = descOa(newLo, newHi);
        const ci = this.index.get(child / PAGE_SIZE);
        if (!(ci !== undefined && ci.tree === t && ci.level === level + 1)) this.scanTable(t, child, level + 1, ia, 512);
      } else this.leafChanged(t, pa, level, ia, newLo, newHi, true);
    }
  }

  /** Follows VMs created and torn down since the last call. */
  private syncGuests(): void {
    const table = this.m.hyp.vmTable;
    let names: Map<number, string> | null = null;
    for (let i = 0; i < table.length; i++) {
      const vm = table[i] ?? null;
      const known = this.guests[i] ?? null;
      const pgd = vm === null ? -1 : vm.pgt.pgd;
      if (known !== null && (vm === null || this.guestPgd[i] !== pgd)) this.dropTree(known);
      if (vm !== null && (known === null || this.guestPgd[i] !== pgd)) {
        if (names === null) {
          names = new Map();
          for (const n of this.m.vmNames()) names.set(this.m.vmHandle(n), n);
        }
        const name = names.get(vm.handle) ?? hex(vm.handle);
        const t = this.newTree(TreeKind.GUEST, `guest ${name} stage-2`, name, vm.pgt);
        this.guests[i] = t;
        this.guestPgd[i] = pgd;
        this.scanRoot(t);
      } else if (vm === null) {
        this.guests[i] = null;
        this.guestPgd[i] = -1;
      }
    }
  }

  private dropTree(t: Tree): void {
    t.alive = false;
    for (const pfn of t.tables) {
      const info = this.index.get(pfn);
      if (info !== undefined && info.tree === t) this.index.delete(pfn);
      this.dirtyTables.delete(pfn);
    }
    for (const pfn of t.mapped) this.dirtyPages.add(pfn);
  }

  // ---- Checking -------------------------------------------------------------------------------------------------

  /**
   * Checks everything dirtied since the previous call and appends one message per violation to `out` (the same
   * wording as the full check). Pass `vmsMayHaveChanged = false` only when no VM can have been created or torn down
   * since the previous call (no `vm_create`, `vm_destroy` or raw hypercall), and `memcachesMayHaveChanged = false`
   * only when no hypercall can have run (host accesses and host memory events: the hyp memcaches change only inside
   * EL2 hypercalls). @returns the number of messages appended.
   */
  check(out: string[], vmsMayHaveChanged = true, memcachesMayHaveChanged = true): number {
    const before = out.length;
    const m = this.m;
    const hyp = m.hyp;
    if (vmsMayHaveChanged) this.syncGuests();
    m.checker.checkQuiescent();
    const warns = hyp.warnings;
    for (; this.warnSeen < warns.length; this.warnSeen++) out.push(`hypervisor warning: ${warns[this.warnSeen]}`);
    const bbm = m.checker.violations;
    for (; this.bbmSeen < bbm.length; this.bbmSeen++) out.push(`break-before-make: ${bbm[this.bbmSeen]!.kind}: ${bbm[this.bbmSeen]!.message}`); // JUSTIFY: index < length.

    for (let i = 0; i < this.dirtyEntries.length; i++) this.checkEntry(this.dirtyEntries[i]!, out); // JUSTIFY: i < length.
    this.dirtyEntries.length = 0;

    const vmm = hyp.vmemmap;
    for (const pfn of this.dirtyTables) {
      const info = this.index.get(pfn);
      if (info === undefined) continue;
      const counted = info.counted;
      if (!vmm.has(pfn)) out.push(`${info.tree.what}: table page ${hex(pfn * PAGE_SIZE)} is outside hyp_vmemmap`);
      else {
        const rc = vmm.refcount[pfn - vmm.basePfn]!; // JUSTIFY: has() checked.
        if (rc !== counted + 1) out.push(`${info.tree.what}: table page ${hex(pfn * PAGE_SIZE)} has refcount ${rc}, expected 1 + ${counted} counted entries`);
      }
    }
    this.dirtyTables.clear();

    const mc = this.memcache;
    if (memcachesMayHaveChanged) {
      mc.clear();
      for (const pa of hyp.memcachePages()) {
        const pfn = Math.floor(pa / PAGE_SIZE);
        mc.add(pfn);
        this.dirtyPages.add(pfn);
      }
    }
    this.lastChecked.length = 0;
    for (const pfn of this.dirtyPages) {
      this.lastChecked.push(pfn);
      this.checkPage(pfn, mc.has(pfn), out);
    }
    this.dirtyPages.clear();
    return out.length - before;
  }

  /** Per-entry rules, on the entry's current value (transient markers written and replaced within a step pass). */
  private checkEntry(ptep: number, out: string[]): void {
    const info = this.index.get(Math.floor(ptep / PAGE_SIZE));
    if (info === undefined) return;
    const e = this.cell;
    this.m.mem.read64(ptep, e);
    const lo = e.lo;
    const hi = e.hi;
    if (lo === 0 && hi === 0) return;
    const level = info.level;
    if (isTableDesc(lo, level)) return;
    const ia = info.ia + ((ptep % PAGE_SIZE) / 8) * 2 ** levelShift(level);
    const valid = (lo & DESC_VALID_LO) !== 0;
    const t = info.tree;
    if (t.kind === TreeKind.HOST) {
      if (level !== 3 && !(valid && swState(hi) === PageState.OWNED)) {
        out.push(`host stage-2: ${valid ? 'state bits' : 'owner annotation'} on a level-${level} block at ${hex(ia)}`);
      }
    } else if (!valid) {
      out.push(t.kind === TreeKind.HYP ? `hyp stage-1: non-zero invalid entry at VA ${hex(ia)}` : `guest ${t.name}: non-zero invalid entry at IPA ${hex(ia)}`);
    } else if (t.kind === TreeKind.GUEST && level !== 3) {
      out.push(`guest ${t.name}: level-${level} block at IPA ${hex(ia)} (pKVM guests use pages only)`);
    }
  }

  private checkPage(pfn: number, isMemcache: boolean, out: string[]): void {
    const m = this.m;
    const hyp = m.hyp;
    const pa = pfn * PAGE_SIZE;
    const h = hostViewOf(m.mem, hyp.hostPgt, pa);
    let hypState: PageState = PageState.NOPAGE;
    let hypMaps = 0;
    const guests: GuestGhost[] = [];
    const refs = this.rmap.get(pfn);
    if (refs !== undefined) {
      const e = this.cell;
      for (let j = 0; j < refs.length; j++) {
        const r = refs[j]!; // JUSTIFY: j < length.
        const info = this.index.get(Math.floor(r.ptep / PAGE_SIZE));
        m.mem.read64(r.ptep, e);
        const size = info === undefined ? 0 : 2 ** levelShift(info.level);
        const oa = descOa(e.lo, e.hi);
        const live =
          r.tree.alive && info !== undefined && info.tree === r.tree && (e.lo & DESC_VALID_LO) !== 0 && !isTableDesc(e.lo, info.level) && oa <= pa && pa < oa + size;
        if (!live) {
          refs.splice(j--, 1);
          continue;
        }
        const st = swState(e.hi);
        if (r.tree.kind === TreeKind.HYP) {
          if (++hypMaps > 1) out.push(`hyp stage-1: PA ${hex(pa)} mapped twice`);
          hypState = st;
        } else {
          guests.push({ name: r.tree.name, state: st, ipa: r.ia + (pa - oa) });
          if (!this.isPinned(oa)) out.push(`guest ${r.tree.name}: IPA ${hex(r.ia)} maps PA ${hex(oa)}, which the host has not pinned`);
        }
      }
      if (refs.length === 0) this.rmap.delete(pfn);
    }
    checkGhost(pa, h.state, h.owner, hypState, guests, hyp.pageFlags(pa), isMemcache, out);
  }

  private isPinned(pa: number): boolean {
    const pages = this.m.host.pages;
    const i = pages.indexOf(pa);
    return i >= 0 && pages.pinCount[i]! > 0; // JUSTIFY: i checked.
  }
}

/**
 * The per-page rules of `check/invariants.ts` (pkvm.md §1.6) on one recomputed page: one owner (or pending reclaim),
 * SHARED_OWNED ⇔ SHARED_BORROWED, host annotations agreeing with the owner, no hyp-owned page in a guest, one guest
 * at most, memcache pages hyp-owned.
 */
function checkGhost(
  pa: number,
  host: PageState,
  hostOwner: number,
  hyp: PageState,
  guests: readonly GuestGhost[],
  flags: number,
  isMemcache: boolean,
  out: string[],
): void {
  const where = `page ${hex(pa)}`;
  const desc = (): string =>
    `host ${pageStateName(host)}${hostOwner >= 0 ? ` (owner ${hostOwner})` : ''}, hyp ${pageStateName(hyp)}` +
    guests.map((x) => `, guest ${x.name} ${pageStateName(x.state)}`).join('');
  let owners = (isOwner(host) ? 1 : 0) + (isOwner(hyp) ? 1 : 0);
  let sharedOwned = (host === PageState.SHARED_OWNED ? 1 : 0) + (hyp === PageState.SHARED_OWNED ? 1 : 0);
  let borrowed = (host === PageState.SHARED_BORROWED ? 1 : 0) + (hyp === PageState.SHARED_BORROWED ? 1 : 0);
  for (const x of guests) {
    if (isOwner(x.state)) owners++;
    if (x.state === PageState.SHARED_OWNED) sharedOwned++;
    if (x.state === PageState.SHARED_BORROWED) borrowed++;
  }
  if (guests.length > 1) out.push(`${where}: mapped by ${guests.length} guests (${desc()})`);
  if ((flags & HypPageFlag.PENDING_RECLAIM) !== 0) {
    if (guests.length > 0 || hyp !== PageState.NOPAGE) out.push(`${where}: pending reclaim but still mapped (${desc()})`);
    if (!pendingReclaimHostViewOk(host, hostOwner, flags)) {
      out.push(`${where}: pending reclaim with an unexpected host view (${desc()})`);
    }
    return;
  }
  if ((flags & HypPageFlag.NEED_POISONING) !== 0) out.push(`${where}: NEED_POISONING without PENDING_RECLAIM`);
  if (owners !== 1) out.push(`${where}: ${owners} owners (${desc()})`);
  if (sharedOwned !== borrowed || sharedOwned > 1) out.push(`${where}: ${sharedOwned} SHARED_OWNED view(s) but ${borrowed} SHARED_BORROWED (${desc()})`);
  if (host === PageState.NOPAGE) {
    if (hostOwner === PkvmId.HYP && hyp !== PageState.OWNED) out.push(`${where}: host annotation says hyp owns it (${desc()})`);
    if (hostOwner === PkvmId.GUEST && !guests.some((x) => isOwner(x.state))) out.push(`${where}: host annotation says a guest owns it (${desc()})`);
    if (hostOwner !== PkvmId.HYP && hostOwner !== PkvmId.GUEST) out.push(`${where}: unknown host owner id ${hostOwner}`);
  }
  if (hyp === PageState.OWNED && guests.length > 0) out.push(`${where}: hyp-owned page mapped by a guest (${desc()})`);
  for (const x of guests) {
    if (x.state === PageState.OWNED && !(host === PageState.NOPAGE && hostOwner === PkvmId.GUEST)) {
      out.push(`${where}: guest ${x.name} owns it but the host is not annotated GUEST (${desc()})`);
    }
  }
  if (isMemcache && !(hyp === PageState.OWNED && host === PageState.NOPAGE && hostOwner === PkvmId.HYP)) {
    out.push(`${where}: memcache page not hyp-owned (${desc()})`);
  }
}
