/**
 * The break-before-make and TLB-maintenance checker (Arm ARM D8.16.1 "Using break-before-make when updating
 * translation table entries", D8.17 TLB maintenance; reference arm-s2.md §8.1–§8.3). It observes every
 * descriptor store made through `PhysMem.writeDesc` and every TLBI, DSB and ISB the {@link Tlb} executes, and
 * records a {@link BbmViolation} when software replaces a translation in a way the architecture does not allow.
 *
 * What it checks (arm-s2.md §8.2, §8.3):
 *
 *   write              condition                                                          violation
 *   valid → valid      output address, memory type/cacheability/shareability, size           no-break
 *                      (table ↔ block, level), contiguous/nT, or next-level table changes
 *   invalid → valid    a break of this descriptor is not yet covered by the complete          make-before-invalidate
 *                      sequence below, and old → new needs BBM
 *   (quiescent point)  a break was never covered (`checkQuiescent()`, e.g. after a hypercall)  missing-tlbi
 *   TLB hit            the cached leaf's descriptor changed since the fill (now invalid, or    stale-hit
 *                      a BBM-relevant change)
 *   TLB hit            only the permissions changed, and memory now denies the access        stale-permission
 *
 * Changes to S2AP, XN, AF, DBM, the software bits [58:55], PBHA and bit 63 need no BBM (KVM changes them in place,
 * `stage2_update_leaf_attrs`); an OA change is always treated as needing BBM (the Arm exception for two read-only
 * mappings of identical memory is not modelled, so this is stricter than Arm).
 *
 * The covering sequence for a broken descriptor of VMID v mapping [ipa, ipa + size) at level L:
 *   1. the invalid write is made visible by a DSB before the TLBI is issued (KVM: `DSB ISHST`);
 *   2. `TLBI IPAS2E1IS` (or `IPAS2LE1IS` for a leaf) of v at an address in the range, with no TTL hint or hint L,
 *      completed by a DSB; then `TLBI VMALLE1IS` of v issued after that DSB and completed by another DSB — the
 *      stage-2 invalidation must complete first, or another PE may rebuild a combined entry from the old stage-2
 *      entry (nvhe/tlb.c `__kvm_tlb_flush_vmid_ipa`);
 *   or 2'. `TLBI VMALLS12E1IS` of v, or `TLBI ALLE1IS`, completed by a DSB.
 * A table descriptor with valid leaves below it at the time of the break needs 2' (KVM: `__kvm_tlb_flush_vmid`, or
 * a range TLBI, which the model does not have); an empty table is covered by 2 with the non-leaf form.
 *
 * To know which VMID and IPA a descriptor translates, the checker indexes the tables reachable from the roots
 * (VTTBR_EL2 values) it was told about ({@link BbmChecker.addRoot}; `S2Mmu` registers each configuration it loads).
 * A descriptor no root reaches cannot be in any TLB, so its writes carry no obligation. The index is built by
 * scanning the roots when a root is registered, and then follows tables linked through `writeDesc` (scanning the
 * linked subtree); tables linked with plain `write64` after that are not seen until the next root registration,
 * so their descriptors are not checked (a false negative, never a false report).
 */

import { S2AP_R_LO, S2AP_W_LO, S2_AF_LO, S2_DBM_HI, S2_PBHA_HI, S2_SW_HI, S2_XN0_HI, S2_XN_HI } from '../arch/desc.js';
import { assertNever } from '../arch/assert.js';
import { u64ToHex } from '../arch/bits.js';
import { s2DescAddr, type OaFormat } from '../arch/desc-codec.js';
import type { DescWriteObserver, PhysMem, U64 } from '../mem/phys-mem.js';
import type { S2Config } from './s2-config.js';
import { s2PermFault, type AccessKind } from './s2-walk.js';
import { TlbiOp, type Tlb, type TlbListener } from './tlb.js';
import type { WalkResult } from './walk-result.js';

/** The kinds of violation the checker reports. */
export const BbmViolationKind = {
  /** A valid descriptor was replaced by a different valid one in a way that needs break-before-make. */
  NO_BREAK: 'no-break',
  /** A broken descriptor was made valid again before the TLB maintenance for the old entry completed. */
  MAKE_BEFORE_INVALIDATE: 'make-before-invalidate',
  /** At a quiescent point, a descriptor broken (or unmapped) earlier was never invalidated from the TLBs. */
  MISSING_TLBI: 'missing-tlbi',
  /** The TLB served a translation whose descriptor has since been invalidated or changed in a BBM-relevant way. */
  STALE_HIT: 'stale-hit',
  /** The TLB allowed an access that the descriptor in memory now denies (permissions restricted without TLBI). */
  STALE_PERMISSION: 'stale-permission',
} as const;
/** A kind of violation. */
export type BbmViolationKind = (typeof BbmViolationKind)[keyof typeof BbmViolationKind];

/** One recorded violation. `vmid`/`ipa`/`level` are −1 when unknown. */
export interface BbmViolation {
  /** What went wrong. */
  readonly kind: BbmViolationKind;
  /** PA of the descriptor. */
  readonly pa: number;
  /** Bits[31:0] of the descriptor before the change (for a stale hit: the value the TLB entry was filled from). */
  readonly oldLo: number;
  /** Bits[63:32] of the descriptor before the change. */
  readonly oldHi: number;
  /** Bits[31:0] of the descriptor after the change (for a stale hit: its value in memory now). */
  readonly newLo: number;
  /** Bits[63:32] of the descriptor after the change. */
  readonly newHi: number;
  /** VMID of the table the descriptor belongs to. */
  readonly vmid: number;
  /** First IPA the descriptor translates (for a stale hit: the IPA accessed). */
  readonly ipa: number;
  /** Lookup level of the descriptor. */
  readonly level: number;
  /** One line for humans: kind, descriptor PA, VMID, IPA, level, old → new value and the missing step. */
  readonly message: string;
}

/** Progress of a broken descriptor through the covering sequence. */
const Stage = {
  /** Invalid written; no DSB yet, so a TLBI issued now may overtake the write. */
  WRITTEN: 0,
  /** The invalid write is visible; waiting for the stage-2 invalidation. */
  VISIBLE: 1,
  /** The stage-2 invalidation completed; waiting for VMALLE1IS issued after it. */
  S2_DONE: 2,
} as const;
type Stage = (typeof Stage)[keyof typeof Stage];

/** A broken descriptor. Mutable so that breaking a descriptor that is still pending reuses its record in place. */
interface BrokenRecord {
  pa: number;
  oldLo: number;
  oldHi: number;
  vmid: number;
  ipa: number;
  size: number;
  level: number;
  isTable: boolean;
  /** A table with valid leaves below it: only a VMID-wide invalidation covers it. */
  needsVmidWide: boolean;
  stage: Stage;
  /** False once the record was removed from the pending set (it leaves the ordered list at the next compaction). */
  live: boolean;
}

/** Initial capacity of the pending-TLBI arrays (they double when a DSB-less run of TLBIs is longer). */
const PEND_INITIAL = 16;

interface RootInfo {
  readonly vmid: number;
  readonly base: number;
  readonly startLevel: number;
  /** Entries of the (possibly concatenated) start table. */
  readonly startEntries: number;
  readonly gShift: number;
  readonly stride: number;
  readonly oaFormat: OaFormat;
}

interface TableInfo {
  readonly root: RootInfo;
  readonly level: number;
  readonly base: number;
  readonly entries: number;
  /** First IPA the table translates. */
  readonly ipaBase: number;
  /** PA of the table descriptor pointing here, or −1 for a root. */
  readonly parentPa: number;
  /** The table holding {@link TableInfo.parentPa} when this one was indexed (null for a root). */
  readonly parent: TableInfo | null;
  /** Set once the index no longer maps every page of this table to it (replaced, or the index was cleared). */
  dead: boolean;
}

/** Where a descriptor sits: filled by {@link BbmChecker.locate}. */
export interface DescLocation {
  /** VMID of the root the descriptor was found under. */
  vmid: number;
  /** First IPA the descriptor translates. */
  ipa: number;
  /** Bytes it translates. */
  size: number;
  /** Its lookup level. */
  level: number;
}

const FRAME = 4096;
/** Slots of the checker's frame-lookup cache (a power of two). */
const FC_SIZE = 4096;
/** Leaf bits whose change needs no BBM: S2AP, AF. */
const LEAF_FREE_LO = (S2AP_R_LO | S2AP_W_LO | S2_AF_LO) >>> 0;
/** Leaf bits whose change needs no BBM: DBM, XN[1:0], SW, PBHA, bit 63 (ignored). */
const LEAF_FREE_HI = (S2_DBM_HI | S2_XN0_HI | S2_XN_HI | S2_SW_HI | S2_PBHA_HI | 0x8000_0000) >>> 0;
/**
 * Descriptor bits[63:32] a TLB-hit check ignores: the software bits [58:55], PBHA [62:59] and bit 63 need no BBM and
 * take no part in permission checks, so a leaf that changed only there since the fill yields no violation on a hit
 * ({@link BbmChecker.onTlbHit} returns at once; `S2Mmu.translatePa` tests the same before calling it). KVM changes
 * the software bits of a live host leaf in place (pKVM's page-state annotations).
 */
export const BBM_HIT_QUIET_HI = (S2_SW_HI | S2_PBHA_HI | 0x8000_0000) >>> 0;
/** Table bits that select the next level: type and NLTA (incl. the 52-bit forms: bits[15:12], [9:8], [49:48]). */
const TABLE_ADDR_LO = 0xffff_f303;
const TABLE_ADDR_HI = 0x0003_ffff;

/**
 * Why replacing `old` by `new` at `level` needs break-before-make (arm-s2.md §8.2), or null when it does not.
 * Both values must be valid descriptors.
 */
export function bbmReason(oldLo: number, oldHi: number, newLo: number, newHi: number, level: number): string | null {
  const oldTable = level < 3 && (oldLo & 3) === 3;
  const newTable = level < 3 && (newLo & 3) === 3;
  if (oldTable !== newTable) return oldTable ? 'table replaced by a block (size change)' : 'block replaced by a table (size change)';
  const dLo = (oldLo ^ newLo) >>> 0;
  const dHi = (oldHi ^ newHi) >>> 0;
  if (oldTable) {
    return (dLo & TABLE_ADDR_LO) !== 0 || (dHi & TABLE_ADDR_HI) !== 0 ? 'next-level table address changed' : null;
  }
  const rLo = (dLo & ~LEAF_FREE_LO) >>> 0;
  const rHi = (dHi & ~LEAF_FREE_HI) >>> 0;
  if (rLo === 0 && rHi === 0) return null;
  if ((rLo & 0xffff_f000) !== 0 || (rHi & 0x0003_ffff) !== 0 || (rLo & 0x300) !== 0) {
    return 'output address or shareability changed';
  }
  if ((rLo & 0x3c) !== 0 || (rLo & 0x800) !== 0) return 'memory attributes changed';
  return 'descriptor type, contiguous or nT bit changed';
}

/**
 * The break-before-make / TLB-maintenance checker. Attach it to the memory (as its descriptor-write observer) and
 * to each TLB (as listener); `S2Mmu` reports TLB hits to it.
 */
export class BbmChecker implements DescWriteObserver, TlbListener {
  /** Every violation found, in order. */
  readonly violations: BbmViolation[] = [];
  /** DSBs seen (for tests and traces). */
  dsbCount = 0;
  /** ISBs seen. */
  isbCount = 0;
  /**
   * Counts changes of the registered root list (a root added or removed). While it keeps its value, an
   * {@link BbmChecker.addRoot} of a configuration already registered is a no-op, so a caller that saw the value
   * after registering one may skip registering it again (`S2Mmu` on a world switch).
   */
  rootsEpoch = 0;

  private readonly mem: PhysMem;
  /** The pending breaks by descriptor PA. */
  private readonly broken = new Map<number, BrokenRecord>();
  /**
   * The same records in the order they were first broken (the order violations are reported in), plus removed ones
   * (`live` false) until the next compaction in {@link BbmChecker.onDsb} or {@link BbmChecker.checkQuiescent}.
   */
  private readonly order: BrokenRecord[] = [];
  /** TLBIs issued since the last DSB: `pendN` entries of preallocated arrays (no allocation per TLBI). */
  private pendN = 0;
  private pendOp = new Int32Array(PEND_INITIAL);
  private pendVmid = new Int32Array(PEND_INITIAL);
  private pendIpa = new Float64Array(PEND_INITIAL);
  private pendTtl = new Int32Array(PEND_INITIAL);
  private roots: RootInfo[] = [];
  private readonly frames = new Map<number, TableInfo>();
  /**
   * A direct-mapped cache in front of {@link BbmChecker.frames} (slot = PFN[11:0]): `fcTag` holds the PFN whose
   * lookup result `fcInfo` holds (`undefined`: not indexed), NaN when empty. Every store to `frames` updates it and
   * clearing `frames` empties it, so it always agrees with the map.
   */
  private readonly fcTag = new Float64Array(FC_SIZE).fill(NaN);
  private readonly fcInfo: (TableInfo | undefined)[] = new Array<TableInfo | undefined>(FC_SIZE).fill(undefined);
  private indexDirty = true;
  private readonly staleSeen = new Set<string>();
  private readonly scratch: U64 = { lo: 0, hi: 0 };
  private readonly loc: DescLocation = { vmid: -1, ipa: -1, size: 0, level: -1 };

  /**
   * Creates a checker and attaches it: `mem.observer = this` and, for each TLB given, `tlb.listener = this`.
   */
  constructor(mem: PhysMem, ...tlbs: Tlb[]) {
    this.mem = mem;
    mem.observer = this;
    for (const t of tlbs) t.listener = this;
  }

  /**
   * Registers a stage-2 root (the table VTTBR_EL2 points at) so descriptors below it can be located. Idempotent and
   * cheap for a known root; a newly registered root takes precedence when two roots claim the same table page.
   * Ignores disabled or faulting configurations (no walk can use them).
   */
  addRoot(cfg: S2Config): void {
    if (!cfg.enabled || cfg.fault !== 0) return;
    const roots = this.roots;
    // The common case (a world switch back to a known VM) must not allocate: a plain scan of a short list.
    for (let k = 0; k < roots.length; k++) if (sameRoot(roots[k]!, cfg)) return; // JUSTIFY: k < length.
    const root: RootInfo = {
      vmid: cfg.vmid,
      base: cfg.baseAddr,
      startLevel: cfg.startLevel,
      startEntries: cfg.levelEntries[cfg.startLevel + 1]!, // JUSTIFY: start level −1..3 → slot 0..4.
      gShift: cfg.gShift,
      stride: cfg.stride,
      oaFormat: cfg.oaFormat,
    };
    this.roots = [root, ...roots.filter((r) => !(r.vmid === cfg.vmid && r.base === cfg.baseAddr))];
    this.rootsEpoch++;
    this.indexDirty = true;
    this.clearFrames(); // the new root takes precedence on pages it shares with older ones
  }

  /** Forgets a root (its VM was torn down and its table pages may be reused). */
  removeRoot(vmid: number, base: number): void {
    this.roots = this.roots.filter((r) => !(r.vmid === vmid && r.base === base));
    this.rootsEpoch++;
    this.indexDirty = true;
    this.clearFrames();
  }

  /** Number of broken descriptors whose TLB maintenance has not completed yet. */
  get pendingBreaks(): number {
    return this.broken.size;
  }

  /**
   * Finds the VMID, IPA range and level of the descriptor at `pa` in the registered roots' tables. Returns false
   * when no registered root reaches it.
   */
  locate(pa: number, out: DescLocation): boolean {
    let info = this.tableOf(pa);
    if (info === null && this.indexDirty) {
      this.rebuild();
      info = this.tableOf(pa);
    }
    if (info === null) return false;
    const shift = levelShiftOf(info.root, info.level);
    out.vmid = info.root.vmid;
    const size = pow2(shift);
    out.ipa = info.ipaBase + ((pa - info.base) / 8) * size;
    out.size = size;
    out.level = info.level;
    return true;
  }

  // --- DescWriteObserver ------------------------------------------------------------------------------------

  /** Checks one descriptor store (called by `PhysMem.writeDesc` before the store). */
  onDescWrite(pa: number, oldLo: number, oldHi: number, newLo: number, newHi: number): void {
    const oldValid = (oldLo & 1) !== 0;
    const newValid = (newLo & 1) !== 0;
    if (!oldValid && !newValid) return;
    const loc = this.loc;
    if (oldValid && !newValid) {
      if (!this.locate(pa, loc)) return;
      const isTable = loc.level < 3 && (oldLo & 3) === 3;
      const info = isTable ? this.tableOf(pa) : null;
      const needsVmidWide =
        isTable && info !== null && this.hasValidLeaf(info.root, s2DescAddr(oldLo, oldHi, info.root.gShift, info.root.oaFormat), loc.level + 1, 0);
      const prev = this.broken.get(pa);
      if (prev !== undefined) {
        // Broken again while still pending (restored by a plain store): the record keeps its place in the order.
        prev.oldLo = oldLo;
        prev.oldHi = oldHi;
        prev.vmid = loc.vmid;
        prev.ipa = loc.ipa;
        prev.size = loc.size;
        prev.level = loc.level;
        prev.isTable = isTable;
        prev.needsVmidWide = needsVmidWide;
        prev.stage = Stage.WRITTEN;
        return;
      }
      const rec: BrokenRecord = {
        pa, oldLo, oldHi, vmid: loc.vmid, ipa: loc.ipa, size: loc.size, level: loc.level, isTable, needsVmidWide,
        stage: Stage.WRITTEN, live: true,
      };
      this.broken.set(pa, rec);
      this.order.push(rec);
      return;
    }
    if (!oldValid) {
      const rec = this.broken.size === 0 ? undefined : this.broken.get(pa);
      if (rec !== undefined) {
        this.broken.delete(pa);
        rec.live = false;
        const reason = bbmReason(rec.oldLo, rec.oldHi, newLo, newHi, rec.level);
        if (reason !== null) {
          this.report(BbmViolationKind.MAKE_BEFORE_INVALIDATE, pa, rec.oldLo, rec.oldHi, newLo, newHi, rec.vmid, rec.ipa, rec.level,
            `${reason}, but ${missingStep(rec)} before the new descriptor was written`);
        }
      }
      this.noteTableLink(pa, newLo, newHi);
      return;
    }
    // valid → valid
    if (!this.locate(pa, loc)) return;
    const reason = bbmReason(oldLo, oldHi, newLo, newHi, loc.level);
    if (reason !== null) {
      this.report(BbmViolationKind.NO_BREAK, pa, oldLo, oldHi, newLo, newHi, loc.vmid, loc.ipa, loc.level,
        `${reason} without break-before-make (valid → valid)`);
    }
    this.noteTableLink(pa, newLo, newHi);
  }

  // --- TlbListener ------------------------------------------------------------------------------------------

  /** Records an issued TLBI; it takes effect for the checker at the next DSB. */
  onTlbi(op: TlbiOp, vmid: number, ipa: number, ttl: number): void {
    const k = this.pendN;
    if (k === this.pendOp.length) this.growPending();
    this.pendOp[k] = op;
    this.pendVmid[k] = vmid;
    this.pendIpa[k] = ipa;
    this.pendTtl[k] = ttl;
    this.pendN = k + 1;
  }

  /** Completes the TLBIs issued since the last DSB and advances each broken descriptor's sequence. */
  onDsb(): void {
    this.dsbCount++;
    const n = this.pendN;
    this.pendN = 0;
    if (this.broken.size === 0) {
      if (this.order.length !== 0) this.order.length = 0; // only removed records can be left
      return;
    }
    const order = this.order;
    const total = order.length;
    let w = 0;
    for (let r = 0; r < total; r++) {
      const rec = order[r]!; // JUSTIFY: r < length.
      if (!rec.live) continue;
      order[w++] = rec; // kept unless completed below (stable compaction: the report order stays)
      if (rec.stage === Stage.WRITTEN) {
        // TLBIs issued with it may have been performed before the invalid entry was visible: they do not count.
        rec.stage = Stage.VISIBLE;
        continue;
      }
      if (n === 0) continue;
      let vmidWide = false;
      let stage1 = false;
      let ipaHit = false;
      for (let k = 0; k < n; k++) {
        const op = this.pendOp[k] as TlbiOp; // JUSTIFY: k < pendN; onTlbi stores TlbiOp values only.
        const vmid = this.pendVmid[k]!; // JUSTIFY: as above.
        switch (op) {
          case TlbiOp.ALLE1IS:
            vmidWide = true;
            break;
          case TlbiOp.VMALLS12E1IS:
            if (vmid === rec.vmid) vmidWide = true;
            break;
          case TlbiOp.VMALLE1IS:
            if (vmid === rec.vmid) stage1 = true;
            break;
          case TlbiOp.IPAS2E1IS:
          case TlbiOp.IPAS2LE1IS:
            if (vmid === rec.vmid && this.ipaCovers(rec, op, this.pendIpa[k]!, this.pendTtl[k]!)) ipaHit = true;
            break;
          default:
            assertNever(op, 'TlbiOp');
        }
      }
      if (vmidWide || (rec.stage === Stage.S2_DONE && stage1)) {
        this.broken.delete(rec.pa);
        rec.live = false;
        w--;
        continue;
      }
      if (rec.stage === Stage.VISIBLE && ipaHit) rec.stage = Stage.S2_DONE;
    }
    if (w !== total) order.length = w;
  }

  /** Counts an ISB (the checker's rules need none: it only makes the change visible to the executing PE). */
  onIsb(): void {
    this.isbCount++;
  }

  // --- TLB hits and quiescent points ------------------------------------------------------------------------

  /**
   * Verifies a translation served from the TLB for an access that the cached leaf permitted: the descriptor it was
   * filled from (`hit.descPa`, `hit.descLo/Hi`) must still say the same thing. Called by `S2Mmu` on every hit when a
   * checker is attached. Reports each stale descriptor value once.
   */
  onTlbHit(cfg: S2Config, hit: WalkResult, access: AccessKind, flags: number): void {
    const mem = this.mem;
    let lo: number;
    let hi: number;
    // The descriptor's halves from the memory's flat window when it holds them (the word accessor's own first test,
    // inlined: no call, so no boxed PA argument per hit), else through read64.
    const off = hit.descPa - mem.winBase;
    if (off >= 0 && off < mem.winBytes) {
      const w = off >>> 2; // JUSTIFY: 0 ≤ off < winBytes ≤ 2^32.
      lo = mem.win[w]!; // JUSTIFY: w + 1 < window words for an 8-byte aligned descriptor PA.
      hi = mem.win[w + 1]!;
    } else {
      if (!mem.read64(hit.descPa, this.scratch)) return;
      lo = this.scratch.lo;
      hi = this.scratch.hi;
    }
    // Unchanged, or changed only in bits that need no BBM and do not affect permissions: nothing to report (the full
    // path below finds no BBM reason and the same permission answer as at the fill, which permitted this access).
    if (lo === hit.descLo && ((hi ^ hit.descHi) & ~BBM_HIT_QUIET_HI) === 0) return;
    let kind: BbmViolationKind | null = null;
    let why = '';
    if ((lo & 1) === 0) {
      kind = BbmViolationKind.STALE_HIT;
      why = 'the descriptor is now invalid (unmapped or broken) but the TLB still translates it';
    } else {
      const reason = bbmReason(hit.descLo, hit.descHi, lo, hi, hit.leafLevel);
      if (reason !== null) {
        kind = BbmViolationKind.STALE_HIT;
        why = `the TLB entry is stale: ${reason}`;
      } else if (s2PermFault(cfg, lo, hi, access, flags)) {
        kind = BbmViolationKind.STALE_PERMISSION;
        why = 'permissions were restricted without TLB invalidation; the TLB still allowed the access';
      }
    }
    if (kind === null) return;
    const key = `${kind}:${hit.descPa}:${hit.descLo}:${hit.descHi}:${lo}:${hi}`;
    if (this.staleSeen.has(key)) return;
    this.staleSeen.add(key);
    this.report(kind, hit.descPa, hit.descLo, hit.descHi, lo, hi, cfg.vmid, hit.ipa, hit.leafLevel, why);
  }

  /**
   * Declares a quiescent point (for example the end of a hypercall): every descriptor broken or unmapped so far must
   * have completed its TLB maintenance. Reports one `missing-tlbi` violation per outstanding break and forgets them.
   * @returns the number of violations added.
   */
  checkQuiescent(): number {
    let n = 0;
    const order = this.order;
    if (this.broken.size === 0) {
      if (order.length !== 0) order.length = 0;
      return 0;
    }
    for (let k = 0; k < order.length; k++) {
      const rec = order[k]!; // JUSTIFY: k < length.
      if (!rec.live) continue;
      rec.live = false;
      this.report(BbmViolationKind.MISSING_TLBI, rec.pa, rec.oldLo, rec.oldHi, rec.oldLo & ~1, rec.oldHi, rec.vmid, rec.ipa, rec.level,
        `descriptor invalidated but ${missingStep(rec)}`);
      n++;
    }
    this.broken.clear();
    this.order.length = 0;
    return n;
  }

  /** Drops the recorded violations (and the stale-hit de-duplication). */
  clear(): void {
    this.violations.length = 0;
    this.staleSeen.clear();
  }

  // --- internals --------------------------------------------------------------------------------------------

  private growPending(): void {
    const n = this.pendOp.length * 2;
    const op = new Int32Array(n);
    const vmid = new Int32Array(n);
    const ipa = new Float64Array(n);
    const ttl = new Int32Array(n);
    op.set(this.pendOp);
    vmid.set(this.pendVmid);
    ipa.set(this.pendIpa);
    ttl.set(this.pendTtl);
    this.pendOp = op;
    this.pendVmid = vmid;
    this.pendIpa = ipa;
    this.pendTtl = ttl;
  }

  private ipaCovers(rec: BrokenRecord, op: TlbiOp, ipa: number, ttl: number): boolean {
    if (rec.needsVmidWide) return false;
    if (rec.isTable && op === TlbiOp.IPAS2LE1IS) return false; // last-level form leaves walk-cache entries
    if (ttl >= 0 && ttl <= 3 && ttl !== rec.level) return false; // a wrong hint may invalidate nothing
    return ipa >= rec.ipa && ipa < rec.ipa + rec.size;
  }

  private report(kind: BbmViolationKind, pa: number, oldLo: number, oldHi: number, newLo: number, newHi: number,
    vmid: number, ipa: number, level: number, why: string): void {
    const message = `${kind} at descriptor PA 0x${pa.toString(16)} (VMID ${vmid}, IPA 0x${ipa.toString(16)}, level ${level}): ` +
      `${u64ToHex(oldLo, oldHi, true)} → ${u64ToHex(newLo, newHi, true)}: ${why}`;
    this.violations.push({ kind, pa, oldLo: oldLo >>> 0, oldHi: oldHi >>> 0, newLo: newLo >>> 0, newHi: newHi >>> 0, vmid, ipa, level, message });
  }

  /** `frames.get(pfn)` through the direct-mapped cache (see {@link BbmChecker.fcTag}). */
  private frameOf(pfn: number): TableInfo | undefined {
    const slot = (pfn >>> 0) & (FC_SIZE - 1); // JUSTIFY: `pfn >>> 0` is ToUint32 (exact modulo 2^32): the slot bits.
    if (this.fcTag[slot] === pfn) return this.fcInfo[slot];
    const info = this.frames.get(pfn);
    this.fcTag[slot] = pfn;
    this.fcInfo[slot] = info;
    return info;
  }

  /** Records `frames.set(pfn, t)` in the cache. */
  private cacheFrame(pfn: number, t: TableInfo): void {
    const slot = (pfn >>> 0) & (FC_SIZE - 1); // JUSTIFY: as in frameOf.
    this.fcTag[slot] = pfn;
    this.fcInfo[slot] = t;
  }

  /** The table containing `pa`, if the index knows it and its chain to a root is still linked. */
  private tableOf(pa: number): TableInfo | null {
    const info = this.frameOf(Math.floor(pa / FRAME));
    if (info === undefined || pa < info.base || pa >= info.base + info.entries * 8) return null;
    return this.stillLinked(info, 6) ? info : null;
  }

  /**
   * Whether the chain of table descriptors from `info` up to a registered root is still linked in memory, following
   * at most `depth` tables (a loop up the chain).
   */
  private stillLinked(info: TableInfo, depth: number): boolean {
    const s = this.scratch;
    let t = info;
    for (let d = depth; d > 0; d--) {
      if (t.parentPa < 0) {
        const roots = this.roots;
        for (let k = 0; k < roots.length; k++) if (roots[k] === t.root) return true;
        return false;
      }
      if (!this.mem.read64(t.parentPa, s) || (s.lo & 3) !== 3) return false;
      if (s2DescAddr(s.lo, s.hi, t.root.gShift, t.root.oaFormat) !== t.base) return false;
      // A live parent pointer is what the index maps the parent's page to (any change marks it dead): skip the lookup.
      let parent = t.parent;
      if (parent === null || parent.dead) parent = this.frameOf(Math.floor(t.parentPa / FRAME)) ?? null;
      if (parent === null || parent.level !== t.level - 1) return false;
      t = parent;
    }
    return false;
  }

  /** After a descriptor at `pa` became a valid table, index the table it points to (incremental linking). */
  private noteTableLink(pa: number, lo: number, hi: number): void {
    if ((lo & 3) !== 3) return;
    // A link inside a table no root reaches (EL2's own stage-1 tables, a table being built) changes nothing yet: it
    // is indexed when that table itself is linked (the subtree scan below). A descriptor in a level-3 table (a page
    // descriptor has the same low bits as a table descriptor) links nothing either: return before the chain check
    // of tableOf, which cannot change that answer (tableOf returns that table or null).
    const known = this.frameOf(Math.floor(pa / FRAME));
    if (known === undefined || known.level >= 3) return;
    const parent = this.tableOf(pa);
    if (parent === null || parent.level >= 3) return;
    const root = parent.root;
    const idx = (pa - parent.base) / 8;
    const child = s2DescAddr(lo, hi, root.gShift, root.oaFormat);
    this.scan({
      root, level: parent.level + 1, base: child, entries: pow2(root.stride),
      ipaBase: parent.ipaBase + idx * pow2(levelShiftOf(root, parent.level)), parentPa: pa, parent, dead: false,
    });
  }

  private addTable(t: TableInfo): void {
    const first = Math.floor(t.base / FRAME);
    const last = Math.floor((t.base + t.entries * 8 - 1) / FRAME);
    for (let f = first; f <= last; f++) {
      const prev = this.frameOf(f);
      if (prev !== undefined && prev !== t) prev.dead = true;
      this.frames.set(f, t);
      this.cacheFrame(f, t);
    }
  }

  /** Empties the index, marking every table in it dead (their children then look their parents up again). */
  private clearFrames(): void {
    for (const info of this.frames.values()) info.dead = true;
    this.frames.clear();
    this.fcTag.fill(NaN);
  }

  /** Re-indexes every table reachable from the registered roots (most recent root first wins a shared page). */
  private rebuild(): void {
    this.clearFrames();
    this.indexDirty = false;
    for (let r = this.roots.length - 1; r >= 0; r--) {
      const root = this.roots[r]!; // JUSTIFY: r < length.
      this.scan({ root, level: root.startLevel, base: root.base, entries: root.startEntries, ipaBase: 0, parentPa: -1, parent: null, dead: false });
    }
  }

  private scan(t: TableInfo): void {
    this.addTable(t);
    if (t.level >= 3) return;
    const s = this.scratch;
    const root = t.root;
    const shift = levelShiftOf(root, t.level);
    for (let i = 0; i < t.entries; i++) {
      const pa = t.base + i * 8;
      if (!this.mem.read64(pa, s) || (s.lo & 3) !== 3) continue;
      const child = s2DescAddr(s.lo, s.hi, root.gShift, root.oaFormat);
      const known = this.frameOf(Math.floor(child / FRAME));
      if (known !== undefined && known.root === root) continue; // a loop or an alias within this root
      this.scan({ root, level: t.level + 1, base: child, entries: pow2(root.stride), ipaBase: t.ipaBase + i * pow2(shift), parentPa: pa, parent: t, dead: false });
    }
  }

  /** Whether the table at `base` (level `level`) or any table below it holds a valid leaf. */
  private hasValidLeaf(root: RootInfo, base: number, level: number, depth: number): boolean {
    if (level > 3 || depth > 4) return false;
    const s = this.scratch;
    const n = pow2(root.stride);
    for (let i = 0; i < n; i++) {
      if (!this.mem.read64(base + i * 8, s) || (s.lo & 1) === 0) continue;
      if (level < 3 && (s.lo & 3) === 3) {
        const child = s2DescAddr(s.lo, s.hi, root.gShift, root.oaFormat);
        if (this.hasValidLeaf(root, child, level + 1, depth + 1)) return true;
        continue;
      }
      return true;
    }
    return false;
  }
}

function sameRoot(r: RootInfo, cfg: S2Config): boolean {
  return r.vmid === cfg.vmid && r.base === cfg.baseAddr && r.startLevel === cfg.startLevel && r.gShift === cfg.gShift &&
    r.startEntries === cfg.levelEntries[cfg.startLevel + 1] && r.oaFormat === cfg.oaFormat;
}

/** 2^k for k = 0…127 (every table size and level shift the index uses: at most 2^68), read instead of pow(). */
const POW2 = new Float64Array(128);
for (let k = 0; k < POW2.length; k++) POW2[k] = 2 ** k;

/** 2^k: from the table for 0 ≤ k < 128, else computed. */
function pow2(k: number): number {
  return k >= 0 && k < 128 ? POW2[k]! : 2 ** k; // JUSTIFY: bounds checked.
}

function levelShiftOf(root: RootInfo, level: number): number {
  return root.gShift + (3 - level) * root.stride;
}

function missingStep(rec: BrokenRecord): string {
  switch (rec.stage) {
    case Stage.WRITTEN:
      return 'no DSB made the invalid entry visible before TLB maintenance';
    case Stage.VISIBLE:
      return rec.needsVmidWide
        ? 'the table still had valid leaves and no completed VMALLS12E1IS/ALLE1IS covered its range'
        : 'no completed TLBI IPAS2E1IS (matching VMID, IPA and level hint) or VMALLS12E1IS covered it';
    case Stage.S2_DONE:
      return 'the stage-2 TLBI completed but no TLBI VMALLE1IS issued after it completed (combined entries remain)';
    default:
      return assertNever(rec.stage, 'BBM stage');
  }
}
