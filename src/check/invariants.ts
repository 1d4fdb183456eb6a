/**
 * Ghost-state invariants: the abstract page states recomputed from the concrete tables in physical memory (host
 * stage-2, hyp stage-1, every guest stage-2, `hyp_vmemmap` flags and refcounts) and checked against the consistent
 * combinations of pkvm.md §1.6.
 *
 * The check walks the tables itself, with its own descriptor decoding over `arch/` (not the EL2 page-table library
 * it is checking), so a bug in `pgtable/` cannot hide from it. Only "interesting" pages are materialised: those with
 * a non-default host stage-2 entry (state bits or an owner annotation), every hyp stage-1 leaf and every guest leaf.
 * A host page not among them is OWNED by the host and by nobody else, which is consistent by construction.
 *
 * Checked (each failure is one message):
 * - every page has exactly one owner (OWNED or SHARED_OWNED in exactly one component), except pages a torn-down
 *   guest released (`PENDING_RECLAIM`), which only the host still sees (its annotation, SHARED_OWNED or
 *   SHARED_BORROWED view) until it reclaims them;
 * - SHARED_OWNED ⇔ a borrower: each SHARED_OWNED page has exactly one SHARED_BORROWED view elsewhere and each
 *   SHARED_BORROWED view has its SHARED_OWNED owner;
 * - host owner annotations agree with the owner (HYP → hyp OWNED, GUEST → a guest OWNED or pending reclaim);
 * - no guest maps a hyp-owned page, and no page is mapped by two guests;
 * - every guest leaf is backed by a page the host has pinned;
 * - every table page's `hyp_page.refcount` is 1 + its counted (non-zero) entries (pkvm.md §7.6), and any other
 *   referenced page is hyp-owned (an allocation) or shared host → hyp (a `hyp_pin_shared_mem` pin, pkvm.md §2.2);
 * - memcache pages are hyp-owned;
 * - no hypervisor warnings and no break-before-make violations.
 */

import { PAGE_SIZE } from '../arch/addr.js';
import { DESC_TYPE_LO, DESC_VALID_LO, OA_47_32_HI, SW0_HI, SW1_HI } from '../arch/desc.js';
import type { PhysMem } from '../mem/phys-mem.js';
import { HypPageFlag, type HypVmemmap } from '../el2/vmemmap.js';
import { PageState, pageStateName, PkvmId } from '../el2/page-state.js';

/** A page table to walk: the fields of `struct kvm_pgtable` the walk needs (4 KiB granule). */
export interface TableRef {
  /** Input-address bits. */
  readonly iaBits: number;
  /** Start level of the walk. */
  readonly startLevel: number;
  /** PA of the first (possibly concatenated) root page, or -1 for no table. */
  readonly pgd: number;
}

/** One guest stage-2 as the invariants see it. */
export interface GuestView {
  /** The VM's name (scenario name, or its handle in hex). */
  readonly name: string;
  /** Its stage-2 table. */
  readonly pgt: TableRef;
}

/** Everything the invariants read, supplied by the composition root (`src/system.ts`). */
export interface InvariantView {
  /** Physical memory holding every table. */
  readonly mem: PhysMem;
  /** The host stage-2 (identity map, owner annotations). */
  readonly hostS2: TableRef;
  /** The hypervisor's stage-1; leaves map hyp VAs to PAs. */
  readonly hypS1: TableRef;
  /** Every live guest stage-2. */
  readonly guests: readonly GuestView[];
  /** `hyp_vmemmap`: refcounts of table pages, reclaim flags. */
  readonly vmemmap: HypVmemmap;
  /** PAs of every page currently held in a hyp vCPU memcache. */
  memcachePages(): readonly number[];
  /** True when the host kernel holds a long-term pin on the page at `pa`. */
  isPinned(pa: number): boolean;
  /** Hypervisor warnings recorded so far (`WARN_ON`s). */
  warnings(): readonly string[];
  /** Break-before-make / TLB-maintenance violations the checker recorded so far. */
  bbmViolations(): readonly string[];
}

/** The abstract state of one page, as recomputed. */
export interface PageGhost {
  /** Host view (from the host stage-2). */
  host: PageState;
  /** Host owner annotation of an invalid host PTE (`PkvmId`), or −1 when the PTE is valid or zero. */
  hostOwner: number;
  /** Hyp view (from the hyp stage-1). */
  hyp: PageState;
  /** Each guest that maps the page, with its view. */
  guests: { name: string; state: PageState; ipa: number }[];
}

const NOT_FOUND = -2;

/** Reads the 64-bit entry at `pa` into `out`. */
function readEntry(mem: PhysMem, pa: number, out: { lo: number; hi: number }): void {
  mem.read64(pa, out);
}

/** Output address bits[47:12] of a table or page descriptor. */
function descOa(lo: number, hi: number): number {
  return (hi & OA_47_32_HI) * 2 ** 32 + ((lo & 0xffff_f000) >>> 0);
}

function levelShift(level: number): number {
  return 12 + 9 * (3 - level);
}

/** Entries in the root: 2^(iaBits − shift(start)), possibly several concatenated pages. */
function rootEntries(t: TableRef): number {
  return 2 ** Math.max(0, t.iaBits - levelShift(t.startLevel));
}

/** Visits every non-zero leaf entry of `t`; also reports each table page's counted-entry total. */
export function walkTable(
  mem: PhysMem,
  t: TableRef,
  onLeaf: (ia: number, level: number, lo: number, hi: number) => void,
  onTablePage?: (pa: number, counted: number) => void,
): void {
  if (t.pgd < 0) return;
  const e = { lo: 0, hi: 0 };
  const visit = (tablePa: number, level: number, base: number, n: number): void => {
    const shift = levelShift(level);
    let counted = 0;
    let pageCounted = 0;
    for (let i = 0; i < n; i++) {
      readEntry(mem, tablePa + i * 8, e);
      const lo = e.lo;
      const hi = e.hi;
      if (lo !== 0 || hi !== 0) {
        counted++;
        pageCounted++;
        const ia = base + i * 2 ** shift;
        if ((lo & DESC_VALID_LO) !== 0 && (lo & DESC_TYPE_LO) !== 0 && level < 3) visit(descOa(lo, hi), level + 1, ia, 512);
        else onLeaf(ia, level, lo, hi);
      }
      // Concatenated roots: report per 4 KiB page.
      if (onTablePage !== undefined && (i + 1) % 512 === 0) {
        onTablePage(tablePa + (i - 511) * 8, pageCounted);
        pageCounted = 0;
      }
    }
    if (onTablePage !== undefined && n % 512 !== 0) onTablePage(tablePa, counted);
  };
  visit(t.pgd, t.startLevel, 0, rootEntries(t));
}

/**
 * The host stage-2 entry covering `pa`: its state and owner annotation. Mirrors the host decode rule of pkvm.md
 * §1.4 (valid → SW bits; invalid non-zero → NOPAGE; zero → OWNED).
 */
export function hostViewOf(mem: PhysMem, t: TableRef, pa: number): { state: PageState; owner: number } {
  if (t.pgd < 0) return { state: PageState.OWNED, owner: -1 };
  const e = { lo: 0, hi: 0 };
  let tablePa = t.pgd;
  for (let level = t.startLevel; level <= 3; level++) {
    const shift = levelShift(level);
    const span = level === t.startLevel ? rootEntries(t) : 512;
    const idx = Math.floor(pa / 2 ** shift) % span;
    readEntry(mem, tablePa + idx * 8, e);
    if (e.lo === 0 && e.hi === 0) return { state: PageState.OWNED, owner: -1 };
    if ((e.lo & DESC_VALID_LO) === 0) return { state: PageState.NOPAGE, owner: (e.lo >>> 2) & 0xff };
    if ((e.lo & DESC_TYPE_LO) !== 0 && level < 3) {
      tablePa = descOa(e.lo, e.hi);
      continue;
    }
    return { state: swState(e.hi), owner: -1 };
  }
  return { state: PageState.OWNED, owner: -1 };
}

function swState(hi: number): PageState {
  const s = (((hi & SW0_HI) !== 0 ? 1 : 0) | ((hi & SW1_HI) !== 0 ? 2 : 0)) as 0 | 1 | 2 | 3;
  return s === 3 ? PageState.NOPAGE : s;
}

/** Result of {@link checkInvariants}. */
export interface InvariantReport {
  /** One message per violated invariant instance; empty when all hold. */
  readonly violations: readonly string[];
  /** Pages examined (interesting pages). */
  readonly pages: number;
}

const hex = (x: number): string => '0x' + x.toString(16);

/** Recomputes the ghost state and checks it (see the module comment). Never throws on any table contents. */
export function checkInvariants(v: InvariantView, maxViolations = 50): InvariantReport {
  const out: string[] = [];
  const push = (m: string): void => {
    if (out.length < maxViolations) out.push(m);
  };
  const pages = new Map<number, PageGhost>();
  const ghost = (pfn: number): PageGhost => {
    let g = pages.get(pfn);
    if (g === undefined) {
      g = { host: PageState.OWNED, hostOwner: NOT_FOUND, hyp: PageState.NOPAGE, guests: [] };
      pages.set(pfn, g);
    }
    return g;
  };
  const vm = v.vmemmap;
  const tablePfns = new Set<number>();
  const checkRefcount = (what: string) => (pa: number, counted: number): void => {
    const pfn = Math.floor(pa / PAGE_SIZE);
    tablePfns.add(pfn);
    if (!vm.has(pfn)) {
      push(`${what}: table page ${hex(pa)} is outside hyp_vmemmap`);
      return;
    }
    const rc = vm.refcount[pfn - vm.basePfn] as number;
    if (rc !== counted + 1) push(`${what}: table page ${hex(pa)} has refcount ${rc}, expected 1 + ${counted} counted entries`);
  };

  // Host stage-2: non-default entries only (blocks carry no state by the force-PTE rule).
  walkTable(
    v.mem,
    v.hostS2,
    (ia, level, lo, hi) => {
      const size = 2 ** levelShift(level);
      const valid = (lo & DESC_VALID_LO) !== 0;
      if (valid && swState(hi) === PageState.OWNED) return;
      if (level !== 3) push(`host stage-2: ${valid ? 'state bits' : 'owner annotation'} on a level-${level} block at ${hex(ia)}`);
      for (let pa = ia; pa < ia + Math.min(size, 2 ** 21); pa += PAGE_SIZE) {
        const g = ghost(pa / PAGE_SIZE);
        g.host = valid ? swState(hi) : PageState.NOPAGE;
        g.hostOwner = valid ? -1 : (lo >>> 2) & 0xff;
      }
    },
    checkRefcount('host stage-2'),
  );

  // Hyp stage-1: every leaf.
  walkTable(
    v.mem,
    v.hypS1,
    (va, level, lo, hi) => {
      if ((lo & DESC_VALID_LO) === 0) {
        push(`hyp stage-1: non-zero invalid entry at VA ${hex(va)}`);
        return;
      }
      const size = 2 ** levelShift(level);
      const oa = descOa(lo, hi);
      for (let off = 0; off < size; off += PAGE_SIZE) {
        const g = ghost((oa + off) / PAGE_SIZE);
        if (g.hyp !== PageState.NOPAGE) push(`hyp stage-1: PA ${hex(oa + off)} mapped twice`);
        g.hyp = swState(hi);
      }
    },
    checkRefcount('hyp stage-1'),
  );

  // Guests.
  for (const gv of v.guests) {
    walkTable(
      v.mem,
      gv.pgt,
      (ipa, level, lo, hi) => {
        if ((lo & DESC_VALID_LO) === 0) {
          push(`guest ${gv.name}: non-zero invalid entry at IPA ${hex(ipa)}`);
          return;
        }
        if (level !== 3) push(`guest ${gv.name}: level-${level} block at IPA ${hex(ipa)} (pKVM guests use pages only)`);
        const oa = descOa(lo, hi);
        ghost(oa / PAGE_SIZE).guests.push({ name: gv.name, state: swState(hi), ipa });
        if (!v.isPinned(oa)) push(`guest ${gv.name}: IPA ${hex(ipa)} maps PA ${hex(oa)}, which the host has not pinned`);
      },
      checkRefcount(`guest ${gv.name} stage-2`),
    );
  }

  // Pages with reclaim flags, and referenced pages that are not table pages (pool allocations, pins of shared
  // pages): interesting whatever their tables say.
  const flags = vm.flags;
  const rc = vm.refcount;
  const referenced = new Set<number>();
  for (let i = 0; i < flags.length; i++) {
    if (flags[i] !== 0) ghost(vm.basePfn + i);
    if (rc[i] !== 0 && !tablePfns.has(vm.basePfn + i)) {
      referenced.add(vm.basePfn + i);
      ghost(vm.basePfn + i);
    }
  }

  // Memcache pages: make them interesting so their ownership is checked.
  const mcPages = new Set<number>();
  for (const pa of v.memcachePages()) {
    const pfn = Math.floor(pa / PAGE_SIZE);
    mcPages.add(pfn);
    ghost(pfn);
  }

  for (const [pfn, g] of pages) {
    const pa = pfn * PAGE_SIZE;
    if (g.hostOwner === NOT_FOUND) {
      const h = hostViewOf(v.mem, v.hostS2, pa);
      g.host = h.state;
      g.hostOwner = h.owner;
    }
    checkPage(pa, g, vm, mcPages.has(pfn), push);
    // A reference outside the tables is a hyp allocation or a pin (hyp_pin_shared_mem) of a page shared with EL2.
    if (referenced.has(pfn) && g.hyp !== PageState.OWNED && !(g.host === PageState.SHARED_OWNED && g.hyp === PageState.SHARED_BORROWED)) {
      push(`page ${hex(pa)}: hyp_page refcount ${rc[pfn - vm.basePfn]} on a page neither hyp-owned nor shared with EL2 (host ${pageStateName(g.host)}, hyp ${pageStateName(g.hyp)})`);
    }
  }

  for (const w of v.warnings()) push(`hypervisor warning: ${w}`);
  for (const b of v.bbmViolations()) push(`break-before-make: ${b}`);
  return { violations: out, pages: pages.size };
}

/**
 * Whether the host view of a page flagged `HOST_PAGE_PENDING_RECLAIM` is one a guest teardown can leave. Teardown
 * changes no host annotation (pkvm.md §4.6 step 3), so the host keeps the view it had while the guest lived
 * (§1.6): the GUEST annotation of a donated page (guest OWNED; the only case teardown also sets NEED_POISONING),
 * SHARED_OWNED of a page the host shared with an np-guest (guest SHARED_BORROWED), or SHARED_BORROWED of a page a
 * protected guest shared back with MEM_SHARE (guest SHARED_OWNED). `__pkvm_host_reclaim_page()` then sets owner
 * HOST from any of the three (§2.5). Mirrors the cases of `reclaim_walker()` (arch/arm64/kvm/hyp/nvhe/mem_protect.c,
 * V1 26/89). NEED_POISONING on a shared page would mean the host is handed back contents it could already read and
 * the guest never owned alone, which no teardown produces.
 * @param flags the page's `hyp_page.flags` (`HypPageFlag` bits).
 */
export function pendingReclaimHostViewOk(host: PageState, hostOwner: number, flags: number): boolean {
  if (host === PageState.NOPAGE) return hostOwner === PkvmId.GUEST;
  if (host === PageState.SHARED_OWNED || host === PageState.SHARED_BORROWED) return (flags & HypPageFlag.NEED_POISONING) === 0;
  return false;
}

function isOwner(s: PageState): boolean {
  return s === PageState.OWNED || s === PageState.SHARED_OWNED;
}

function checkPage(pa: number, g: PageGhost, vm: HypVmemmap, isMemcache: boolean, push: (m: string) => void): void {
  const pfn = pa / PAGE_SIZE;
  const flags = vm.has(pfn) ? (vm.flags[pfn - vm.basePfn] as number) : 0;
  const pending = (flags & HypPageFlag.PENDING_RECLAIM) !== 0;
  const where = `page ${hex(pa)}`;
  const desc = (): string =>
    `host ${pageStateName(g.host)}${g.hostOwner >= 0 ? ` (owner ${g.hostOwner})` : ''}, hyp ${pageStateName(g.hyp)}` +
    g.guests.map((x) => `, guest ${x.name} ${pageStateName(x.state)}`).join('');

  let owners = (isOwner(g.host) ? 1 : 0) + (isOwner(g.hyp) ? 1 : 0);
  let sharedOwned = (g.host === PageState.SHARED_OWNED ? 1 : 0) + (g.hyp === PageState.SHARED_OWNED ? 1 : 0);
  let borrowed = (g.host === PageState.SHARED_BORROWED ? 1 : 0) + (g.hyp === PageState.SHARED_BORROWED ? 1 : 0);
  for (const x of g.guests) {
    if (isOwner(x.state)) owners++;
    if (x.state === PageState.SHARED_OWNED) sharedOwned++;
    if (x.state === PageState.SHARED_BORROWED) borrowed++;
  }
  if (g.guests.length > 1) push(`${where}: mapped by ${g.guests.length} guests (${desc()})`);
  if (pending) {
    // Released by a torn-down guest: until reclaim the host keeps its view of the page — the GUEST annotation of a
    // donated page, SHARED_OWNED of a page it shared, SHARED_BORROWED of a page a protected guest shared back — and
    // no one else sees it.
    if (g.guests.length > 0 || g.hyp !== PageState.NOPAGE) push(`${where}: pending reclaim but still mapped (${desc()})`);
    if (!pendingReclaimHostViewOk(g.host, g.hostOwner, flags)) {
      push(`${where}: pending reclaim with an unexpected host view (${desc()})`);
    }
    return;
  }
  if ((flags & HypPageFlag.NEED_POISONING) !== 0) push(`${where}: NEED_POISONING without PENDING_RECLAIM`);
  if (owners !== 1) push(`${where}: ${owners} owners (${desc()})`);
  if (sharedOwned !== borrowed || sharedOwned > 1) push(`${where}: ${sharedOwned} SHARED_OWNED view(s) but ${borrowed} SHARED_BORROWED (${desc()})`);
  if (g.host === PageState.NOPAGE) {
    if (g.hostOwner === PkvmId.HYP && g.hyp !== PageState.OWNED) push(`${where}: host annotation says hyp owns it (${desc()})`);
    if (g.hostOwner === PkvmId.GUEST && !g.guests.some((x) => isOwner(x.state))) push(`${where}: host annotation says a guest owns it (${desc()})`);
    if (g.hostOwner !== PkvmId.HYP && g.hostOwner !== PkvmId.GUEST) push(`${where}: unknown host owner id ${g.hostOwner}`);
  }
  if (g.hyp === PageState.OWNED && g.guests.length > 0) push(`${where}: hyp-owned page mapped by a guest (${desc()})`);
  for (const x of g.guests) {
    if (x.state === PageState.OWNED && !(g.host === PageState.NOPAGE && g.hostOwner === PkvmId.GUEST)) {
      push(`${where}: guest ${x.name} owns it but the host is not annotated GUEST (${desc()})`);
    }
  }
  if (isMemcache && !(g.hyp === PageState.OWNED && g.host === PageState.NOPAGE && g.hostOwner === PkvmId.HYP)) {
    push(`${where}: memcache page not hyp-owned (${desc()})`);
  }
}
