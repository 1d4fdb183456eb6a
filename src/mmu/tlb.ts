/**
 * A VMID-tagged TLB for stage-2 translations (Arm ARM D8.16 "Translation Lookaside Buffers", D8.17 TLB
 * maintenance; reference arm-s2.md §8.1), in the style of v86's `tlb_data` (STYLE.md §5, §10.6): a
 * struct of typed arrays, a hash index keyed by (VMID, IPA >> leafShift, leafShift), and a dense valid list so that
 * VMID-wide and global invalidations touch only live entries.
 *
 * Each entry caches one successful walk's leaf: the block or page base, its level and size, the decoded leaf
 * attributes, and the descriptor's PA plus the value it was filled from (so the BBM checker can detect a
 * translation served from a descriptor that has since changed).
 *
 * Stage-1 versus combined entries. s2emu models stage 2 only; a guest access translates IPA → PA with stage 1
 * treated as the identity. On a real PE such an access allocates a *combined* stage 1+2 entry, and the
 * architecture says `TLBI IPAS2E1*` need only remove *stage-2-only* entries (walk results kept for IPA → PA), while
 * combined entries go away only with `TLBI VMALLE1*`, `VMALLS12E1*` or `ALLE1*` (arm-s2.md §8.1; L-TLB
 * `__kvm_tlb_flush_vmid_ipa` explains why KVM issues both). Every entry here therefore carries two copies:
 *
 *   copy       filled by    removed by                                   used by lookup
 *   S2 (IPA)   every fill   IPAS2E1*, IPAS2LE1*, VMALLS12E1*, ALLE1*      yes (and re-creates the C copy)
 *   C (comb.)  every fill   VMALLE1*, VMALLS12E1*, ALLE1*                 yes
 *
 * An entry lives while either copy does. So IPAS2E1IS alone leaves the combined copy (stale translations remain
 * visible), VMALLE1IS alone leaves the stage-2 copy (from which the next lookup rebuilds a combined one), and only
 * KVM's sequence (IPAS2E1IS, DSB, VMALLE1IS, DSB) or a VMID-wide stage 1+2 invalidation clears a translation. The
 * invalidations here take effect at once (an early completion is always architecturally allowed); ordering and
 * completion by DSB are checked by the listener (`BbmChecker`). The TTL level hint is ignored (over-invalidation is
 * legal; arm-s2.md §8.1), and non-IS variants map to the IS ones (one shared model of every PE's TLB).
 */

import { assert, assertNever } from '../arch/assert.js';
import { FaultType } from '../arch/fault.js';
import type { WalkResult } from './walk-result.js';

/** The TLB maintenance operations, as reported to a {@link TlbListener}. Non-IS forms report their IS form. */
export const TlbiOp = {
  /** `TLBI IPAS2E1IS`: stage-2 entries for one IPA, any level, one VMID. */
  IPAS2E1IS: 0,
  /** `TLBI IPAS2LE1IS`: as IPAS2E1IS, last-level (leaf) entries only. */
  IPAS2LE1IS: 1,
  /** `TLBI VMALLS12E1IS`: all stage-1 and stage-2 entries of one VMID. */
  VMALLS12E1IS: 2,
  /** `TLBI VMALLE1IS` (at EL2): all stage-1 and combined stage 1+2 entries of one VMID. */
  VMALLE1IS: 3,
  /** `TLBI ALLE1IS`: every EL1&0 entry of every VMID. */
  ALLE1IS: 4,
} as const;
/** A TLB maintenance operation. */
export type TlbiOp = (typeof TlbiOp)[keyof typeof TlbiOp];

/** The printable name of a {@link TlbiOp}. */
export function tlbiOpName(op: TlbiOp): string {
  switch (op) {
    case TlbiOp.IPAS2E1IS:
      return 'IPAS2E1IS';
    case TlbiOp.IPAS2LE1IS:
      return 'IPAS2LE1IS';
    case TlbiOp.VMALLS12E1IS:
      return 'VMALLS12E1IS';
    case TlbiOp.VMALLE1IS:
      return 'VMALLE1IS';
    case TlbiOp.ALLE1IS:
      return 'ALLE1IS';
    default:
      return assertNever(op, 'TlbiOp');
  }
}

/**
 * Receives every maintenance operation and barrier the TLB executes (the BBM checker). `ipa` is −1 and `ttl` is −1
 * for operations that take no address; `ttl` is the level hint (0…3) or −1 for none.
 */
export interface TlbListener {
  /** A TLBI was issued (it completes at the next {@link TlbListener.onDsb}). */
  onTlbi(op: TlbiOp, vmid: number, ipa: number, ttl: number): void;
  /** `DSB ISH`: every earlier TLBI and descriptor write is complete. */
  onDsb(): void;
  /** `ISB`: the current context sees the completed changes. */
  onIsb(): void;
}

/** Construction options of a {@link Tlb}. */
export interface TlbOptions {
  /** Maximum number of entries: 0 turns the TLB off, `Infinity` (the default) never evicts. */
  readonly capacity?: number;
}

/**
 * Entry layout: one entry is 8 float64 slots (64 bytes, one cache line) in a single `Float64Array`, so a hit touches
 * the bucket word and one line. Doubles hold every field exactly (integers below 2^53).
 *
 *   slot  field
 *   0     tag = IPA >> shift (IPA / 2^shift, floored)
 *   1     key = vmid * 64 + shift (−1 when free)
 *   2     PA of the block/page base
 *   3     PA of the leaf descriptor
 *   4, 5  the descriptor's halves as filled
 *   6     packed: MemAttr[3:0] | S2AP<<4 | SH<<6 | XN<<8 | SW<<10 | AF<<14 | DBM<<15 | Cont<<16 | (level+1)<<17 |
 *         copies<<20 | permission mask<<22 (6 bits, see {@link Tlb.lookupPerm})
 *   7     permission signature * 64 + shift (log2 of the entry's size)
 * The hash chain lives in its own Int32Array, so that chain indices stay int32 in optimised code.
 */
const STRIDE = 8;
const F_TAG = 0;
const F_KEY = 1;
const F_PABASE = 2;
const F_DESCPA = 3;
const F_LO = 4;
const F_HI = 5;
const F_ATTR = 6;
const F_SHIFT = 7;

const A_AF = 1 << 14;
const A_DBM = 1 << 15;
const A_CONT = 1 << 16;
const A_LEVEL_SHIFT = 17;
const A_COPIES_SHIFT = 20;
/** Entry copy flags (see the file header). */
const COPY_S2 = 1;
const COPY_C = 2;
const A_COPY_S2 = COPY_S2 << A_COPIES_SHIFT;
const A_COPY_C = COPY_C << A_COPIES_SHIFT;
const A_COPIES = (COPY_S2 | COPY_C) << A_COPIES_SHIFT;
const A_PERM_SHIFT = 22;
/** Largest permission signature (it shares slot 7 with the shift and must keep it below 2^31). */
export const TLB_MAX_PERM_SIG = 2 ** 24 - 1;

const MAX_SHIFT = 64;
const INITIAL_UNBOUNDED = 1024;
/** 2^-shift for every shift, so that `Math.floor(ipa * INV_POW2[s])` is IPA >> s without int32 truncation. */
const INV_POW2 = new Float64Array(MAX_SHIFT);
const POW2 = new Float64Array(MAX_SHIFT);
for (let s = 0; s < MAX_SHIFT; s++) {
  POW2[s] = 2 ** s;
  INV_POW2[s] = 2 ** -s;
}

function nextPow2(n: number): number {
  let p = 16;
  while (p < n) p *= 2;
  return p;
}

/**
 * The stage-2 TLB shared by the modelled PEs (or one per PE: construct several). Implements the maintenance
 * interface the page-table library injects (`TlbMaintenance` in `pgtable/tlb-ops.ts`): `ipas2e1is`,
 * `ipas2le1is`, `vmalls12e1is`, `vmalle1is`, `dsb`, `isb`.
 *
 * @remarks A hit never re-walks. Invalidation never removes less than Arm requires (see the file header for
 * the stage-2-only/combined model). Lookup probes each leaf size currently present, smallest first.
 */
export class Tlb {
  /** Maximum live entries (0 = off, `Infinity` = unbounded). */
  readonly capacity: number;
  /** Receives TLBIs and barriers (the BBM checker), or null. */
  listener: TlbListener | null = null;
  /** Successful lookups since construction. */
  hits = 0;
  /** Failed lookups since construction. */
  misses = 0;
  /** Entries evicted to make room (bounded capacity only). */
  evictions = 0;

  private slots = 0;
  private ent: Float64Array = new Float64Array(0);
  private eNext: Int32Array = new Int32Array(0);
  private eLivePos: Int32Array = new Int32Array(0);
  private live: Int32Array = new Int32Array(0);
  private liveCount = 0;
  private freeList: Int32Array = new Int32Array(0);
  private freeCount = 0;
  private buckets: Int32Array = new Int32Array(0);
  private hashShift = 32;
  private evictCursor = 0;
  /**
   * Per-VMID doubly linked lists of the entries holding a combined copy (`cHead[vmid]`, `cNext`, `cPrev`; −1 ends),
   * so that VMALLE1IS touches only the entries it changes: Linux issues one per broken leaf, and after the first
   * the VMID usually has none left.
   */
  private cHead: Int32Array = new Int32Array(256).fill(-1);
  private cNext: Int32Array = new Int32Array(0);
  private cPrev: Int32Array = new Int32Array(0);
  private readonly shiftCount = new Int32Array(MAX_SHIFT);
  private readonly shifts = new Int32Array(MAX_SHIFT);
  private nShifts = 0;

  /**
   * Creates an empty TLB.
   * @param opts `capacity`: 0 (off: every lookup misses and fills are dropped), a positive integer, or
   *   `Infinity` (default).
   */
  constructor(opts: TlbOptions = {}) {
    const cap = opts.capacity ?? Infinity;
    assert(cap === Infinity || (Number.isSafeInteger(cap) && cap >= 0), `Tlb capacity ${cap} invalid`);
    this.capacity = cap;
    this.allocate(cap === Infinity ? INITIAL_UNBOUNDED : cap);
  }

  /** Number of live entries. */
  get size(): number {
    return this.liveCount;
  }

  /** False when the TLB was built with capacity 0. */
  get enabled(): boolean {
    return this.capacity !== 0;
  }

  /**
   * Looks up a translation of `ipa` for `vmid`. On a hit, fills `out` as the walk that created the entry did
   * (PA = block base + offset of `ipa`, leaf level, size, descriptor PA and filled value, attributes) and returns
   * true; `out` is untouched on a miss. Permission is not checked here (the caller checks the cached leaf).
   */
  lookup(vmid: number, ipa: number, out: WalkResult): boolean {
    return this.lookupPerm(vmid, ipa, 0, 0, out) !== 0;
  }

  /**
   * {@link Tlb.lookup} with a precomputed permission answer: returns 0 on a miss (`out` untouched), 1 on a hit whose
   * cached permission mask has `permBit` set and was computed under signature `permSig` (the access is permitted as
   * is), and 2 on a hit that the caller must check in full. `out` is filled on a hit either way. `S2Mmu` computes the
   * mask at fill time with the walker's own permission functions, so both paths decide alike.
   */
  lookupPerm(vmid: number, ipa: number, permBit: number, permSig: number, out: WalkResult): number {
    // One function, not lookupIndex + fillOut: this is the only call on S2Mmu.translate's hit path, and V8's
    // inlining budget is spent by then.
    const n = this.nShifts;
    const ent = this.ent;
    const buckets = this.buckets;
    const next = this.eNext;
    const hashShift = this.hashShift;
    const vmidHash = Math.imul(vmid + 1, 0x165667b1);
    for (let k = 0; k < n; k++) {
      const shift = this.shifts[k]!; // JUSTIFY: k < nShifts.
      const tag = Math.floor(ipa * INV_POW2[shift]!); // JUSTIFY: shift < 64.
      const key = vmid * 64 + shift;
      // Same function as hash(), by hand. JUSTIFY: `tag >>> 0` is ToUint32, exact modulo 2^32.
      let i = buckets[Math.imul((tag >>> 0) ^ vmidHash ^ Math.imul(shift, 0x27d4eb2f), 0x9e3779b1) >>> hashShift]!;
      while (i >= 0) {
        const o = i * STRIDE;
        if (ent[o + F_TAG] === tag && ent[o + F_KEY] === key) {
          this.hits++;
          let attr = ent[o + F_ATTR]! | 0;
          if ((attr & A_COPIES) !== A_COPIES) {
            // A stage-2-only copy alone still translates, and allocates the combined copy again.
            if ((attr & A_COPY_C) === 0) this.cLink(i, vmid);
            attr |= A_COPIES;
            ent[o + F_ATTR] = attr;
          }
          const sigShift = ent[o + F_SHIFT]! | 0;
          out.fault = FaultType.NONE;
          out.level = 0;
          out.s1ptw = false;
          out.ipa = ipa;
          out.pa = ent[o + F_PABASE]! + (ipa - tag * POW2[shift]!);
          out.leafLevel = ((attr >>> A_LEVEL_SHIFT) & 7) - 1;
          out.leafShift = shift;
          out.descPa = ent[o + F_DESCPA]!;
          out.descLo = ent[o + F_LO]!;
          out.descHi = ent[o + F_HI]!;
          out.memAttr = attr & 0xf;
          out.s2ap = (attr >>> 4) & 3;
          out.sh = (attr >>> 6) & 3;
          out.xn = (attr >>> 8) & 3;
          out.af = (attr & A_AF) !== 0;
          out.dbm = (attr & A_DBM) !== 0;
          out.sw = (attr >>> 10) & 0xf;
          out.cont = (attr & A_CONT) !== 0;
          out.hwUpdated = false;
          return ((attr >>> A_PERM_SHIFT) & permBit) !== 0 && sigShift >>> 6 === permSig ? 1 : 2;
        }
        i = next[i]!;
      }
    }
    this.misses++;
    return 0;
  }

  /**
   * The short form of {@link Tlb.lookupPerm} for callers that need only the output address: on a hit whose cached
   * permission mask has `permBit` set under signature `permSig`, sets only the fault record (`out.fault` = NONE,
   * `out.level` = 0, `out.s1ptw` = false, as {@link Tlb.lookupPerm} does) and `out.ipa`, `out.pa`, counts the hit
   * and returns 1. Returns 0 on a miss (counted; `out` untouched) and 2 on a hit that needs the
   * full check (not counted and nothing changed: the caller then calls {@link Tlb.lookupPerm}, which counts it).
   */
  lookupPa(vmid: number, ipa: number, permBit: number, permSig: number, out: WalkResult): number {
    const n = this.nShifts;
    const ent = this.ent;
    const buckets = this.buckets;
    const next = this.eNext;
    const hashShift = this.hashShift;
    const vmidHash = Math.imul(vmid + 1, 0x165667b1);
    for (let k = 0; k < n; k++) {
      const shift = this.shifts[k]!; // JUSTIFY: k < nShifts.
      const tag = Math.floor(ipa * INV_POW2[shift]!); // JUSTIFY: shift < 64.
      const key = vmid * 64 + shift;
      // Same function as hash(), by hand. JUSTIFY: `tag >>> 0` is ToUint32, exact modulo 2^32.
      let i = buckets[Math.imul((tag >>> 0) ^ vmidHash ^ Math.imul(shift, 0x27d4eb2f), 0x9e3779b1) >>> hashShift]!;
      while (i >= 0) {
        const o = i * STRIDE;
        if (ent[o + F_TAG] === tag && ent[o + F_KEY] === key) {
          const attr = ent[o + F_ATTR]! | 0;
          // Both copies present (nothing to re-create), the access class known to be permitted, same signature.
          if ((attr & A_COPIES) !== A_COPIES || ((attr >>> A_PERM_SHIFT) & permBit) === 0 || (ent[o + F_SHIFT]! | 0) >>> 6 !== permSig) {
            return 2;
          }
          this.hits++;
          out.fault = FaultType.NONE;
          out.level = 0;
          out.s1ptw = false;
          out.ipa = ipa;
          out.pa = ent[o + F_PABASE]! + (ipa - tag * POW2[shift]!);
          return 1;
        }
        i = next[i]!;
      }
    }
    this.misses++;
    return 0;
  }

  /**
   * {@link Tlb.lookupPa} that also writes what a TLB-hit check needs (`leafLevel`, `descPa`, `descLo`, `descHi`: the
   * fields `BbmChecker.onTlbHit` reads). A separate function so that `lookupPa` stays small enough to inline.
   */
  lookupPaDesc(vmid: number, ipa: number, permBit: number, permSig: number, out: WalkResult): number {
    const n = this.nShifts;
    const ent = this.ent;
    const buckets = this.buckets;
    const next = this.eNext;
    const hashShift = this.hashShift;
    const vmidHash = Math.imul(vmid + 1, 0x165667b1);
    for (let k = 0; k < n; k++) {
      const shift = this.shifts[k]!; // JUSTIFY: k < nShifts.
      const tag = Math.floor(ipa * INV_POW2[shift]!); // JUSTIFY: shift < 64.
      const key = vmid * 64 + shift;
      // Same function as hash(), by hand. JUSTIFY: `tag >>> 0` is ToUint32, exact modulo 2^32.
      let i = buckets[Math.imul((tag >>> 0) ^ vmidHash ^ Math.imul(shift, 0x27d4eb2f), 0x9e3779b1) >>> hashShift]!;
      while (i >= 0) {
        const o = i * STRIDE;
        if (ent[o + F_TAG] === tag && ent[o + F_KEY] === key) {
          const attr = ent[o + F_ATTR]! | 0;
          // Both copies present (nothing to re-create), the access class known to be permitted, same signature.
          if ((attr & A_COPIES) !== A_COPIES || ((attr >>> A_PERM_SHIFT) & permBit) === 0 || (ent[o + F_SHIFT]! | 0) >>> 6 !== permSig) {
            return 2;
          }
          this.hits++;
          out.fault = FaultType.NONE;
          out.level = 0;
          out.s1ptw = false;
          out.ipa = ipa;
          out.pa = ent[o + F_PABASE]! + (ipa - tag * POW2[shift]!);
          out.leafLevel = ((attr >>> A_LEVEL_SHIFT) & 7) - 1;
          out.descPa = ent[o + F_DESCPA]!;
          out.descLo = ent[o + F_LO]!;
          out.descHi = ent[o + F_HI]!;
          return 1;
        }
        i = next[i]!;
      }
    }
    this.misses++;
    return 0;
  }

  /**
   * Caches the leaf of a successful walk of `ipa` for `vmid`, replacing any entry with the same VMID, size and
   * base. A no-op when the TLB is off. Throws {@link InvariantError} if `res` is a fault (API misuse).
   * @param perm optional precomputed permission mask for {@link Tlb.lookupPerm} (bit k set: the access class k is
   *   known to be permitted without a hardware update); 0 = nothing known.
   * @param permSig the signature of the configuration `perm` was computed under.
   */
  fill(vmid: number, ipa: number, res: WalkResult, perm = 0, permSig = 0): void {
    if (this.capacity === 0) return;
    assert(perm >= 0 && perm <= 0x3f && permSig >= 0 && permSig <= TLB_MAX_PERM_SIG, 'Tlb.fill: permission mask/signature');
    assert(res.fault === FaultType.NONE, 'Tlb.fill of a faulting walk');
    // The message is built only on failure: this runs on every fill.
    if (!(res.leafShift >= 12 && res.leafShift < MAX_SHIFT)) assert(false, `Tlb.fill: leafShift ${res.leafShift}`);
    const shift = res.leafShift;
    const tag = Math.floor(ipa * INV_POW2[shift]!); // JUSTIFY: shift < 64.
    let i = this.find(vmid, tag, shift);
    if (i < 0) {
      if (this.freeCount === 0) {
        if (this.capacity === Infinity) this.grow();
        else this.evict();
      }
      i = this.freeList[--this.freeCount]!; // JUSTIFY: freeCount > 0 after grow/evict.
      this.link(i, vmid, tag, shift);
    }
    const ent = this.ent;
    const o = i * STRIDE;
    if ((ent[o + F_ATTR]! & A_COPY_C) === 0) this.cLink(i, vmid); // a new entry, or a stage-2-only one refilled
    ent[o + F_PABASE] = res.pa - (ipa - tag * POW2[shift]!); // JUSTIFY: shift < 64.
    ent[o + F_DESCPA] = res.descPa;
    ent[o + F_LO] = res.descLo >>> 0;
    ent[o + F_HI] = res.descHi >>> 0;
    ent[o + F_ATTR] =
      (res.memAttr & 0xf) |
      ((res.s2ap & 3) << 4) |
      ((res.sh & 3) << 6) |
      ((res.xn & 3) << 8) |
      ((res.sw & 0xf) << 10) |
      (res.af ? A_AF : 0) |
      (res.dbm ? A_DBM : 0) |
      (res.cont ? A_CONT : 0) |
      ((res.leafLevel + 1) << A_LEVEL_SHIFT) |
      A_COPIES |
      (perm << A_PERM_SHIFT);
    ent[o + F_SHIFT] = permSig * 64 + shift;
  }
  /**
   * `TLBI IPAS2E1IS` (and IPAS2E1, IPAS2E1OS): removes the stage-2-only copy of every entry of `vmid` that
   * translates `ipa`, at any level. Combined copies stay (see the file header).
   * @param ttlLevel the TTL level hint (0…3), ignored by the model; undefined or −1 for none.
   */
  ipas2e1is(vmid: number, ipa: number, ttlLevel?: number): void {
    this.invalidateIpa(vmid, ipa);
    this.report(TlbiOp.IPAS2E1IS, vmid, ipa, ttlLevel);
  }

  /** `TLBI IPAS2E1` (non-shareable): the same model as {@link Tlb.ipas2e1is}. */
  ipas2e1(vmid: number, ipa: number, ttlLevel?: number): void {
    this.ipas2e1is(vmid, ipa, ttlLevel);
  }

  /**
   * `TLBI IPAS2LE1IS`: as {@link Tlb.ipas2e1is} for last-level entries only. Every entry here is a leaf, so the
   * entries removed are the same; the difference (walk-cache entries of table descriptors stay) matters to the
   * BBM checker, which does not accept this form for a table descriptor.
   */
  ipas2le1is(vmid: number, ipa: number, ttlLevel?: number): void {
    this.invalidateIpa(vmid, ipa);
    this.report(TlbiOp.IPAS2LE1IS, vmid, ipa, ttlLevel);
  }

  /** `TLBI IPAS2LE1` (non-shareable): the same model as {@link Tlb.ipas2le1is}. */
  ipas2le1(vmid: number, ipa: number, ttlLevel?: number): void {
    this.ipas2le1is(vmid, ipa, ttlLevel);
  }

  /** `TLBI VMALLS12E1IS`: removes every entry of `vmid`. Mirrors the TLBI in `__kvm_tlb_flush_vmid()` (nvhe/tlb.c). */
  vmalls12e1is(vmid: number): void {
    this.removeWhere(vmid, A_COPIES);
    this.report(TlbiOp.VMALLS12E1IS, vmid, -1, undefined);
  }

  /** `TLBI VMALLS12E1` (non-shareable): the same model as {@link Tlb.vmalls12e1is}. */
  vmalls12e1(vmid: number): void {
    this.vmalls12e1is(vmid);
  }

  /**
   * `TLBI VMALLE1IS` executed at EL2 for the VMID in VTTBR_EL2: removes the combined stage 1+2 copy of every entry
   * of `vmid` (our entries model guest accesses with stage 1 as the identity). Stage-2-only copies stay, so a
   * VMALLE1IS that is not preceded by IPAS2E1IS leaves translations that the next lookup revives.
   */
  vmalle1is(vmid: number): void {
    this.dropCombined(vmid);
    this.report(TlbiOp.VMALLE1IS, vmid, -1, undefined);
  }

  /** `TLBI VMALLE1` (non-shareable): the same model as {@link Tlb.vmalle1is}. */
  vmalle1(vmid: number): void {
    this.vmalle1is(vmid);
  }

  /** `TLBI ALLE1IS`: removes every entry of every VMID. Mirrors the TLBI in `__kvm_flush_vm_context()`. */
  alle1is(): void {
    this.removeWhere(-1, A_COPIES);
    this.report(TlbiOp.ALLE1IS, -1, -1, undefined);
  }

  /** `TLBI ALLE1` (non-shareable): the same model as {@link Tlb.alle1is}. */
  alle1(): void {
    this.alle1is();
  }

  /** `DSB ISH`: completes earlier maintenance (the model's invalidations are already done; the listener orders). */
  dsb(): void {
    const l = this.listener;
    if (l !== null) l.onDsb();
  }

  /** `ISB`: context synchronisation (reported to the listener). */
  isb(): void {
    const l = this.listener;
    if (l !== null) l.onIsb();
  }

  /** Index of the live entry of (vmid, size, base) translating `ipa` with leaf size 2^shift, or −1. For tests and tools. */
  probe(vmid: number, ipa: number, shift: number): number {
    return this.find(vmid, Math.floor(ipa * INV_POW2[shift]!), shift); // JUSTIFY: caller passes a leaf shift < 64.
  }

  /** Which copies entry `i` holds: bit 0 = stage-2-only, bit 1 = combined (0 when `i` is −1). For tests. */
  copiesOf(i: number): number {
    return i < 0 ? 0 : (this.ent[i * STRIDE + F_ATTR]! >>> A_COPIES_SHIFT) & 3; // JUSTIFY: i from probe().
  }

  /** Number of live entries tagged `vmid`. */
  countVmid(vmid: number): number {
    let n = 0;
    for (let k = 0; k < this.liveCount; k++) if (this.vmidOf(this.live[k]!) === vmid) n++; // JUSTIFY: k < liveCount.
    return n;
  }

  /**
   * Re-checks every structural invariant (v86 `CHECK_TLB_INVARIANTS`): the valid list, the free list and the hash
   * chains describe the same set exactly once, keys are unique, per-size counts match, live entries hold a
   * copy, and every PA base is aligned to its entry's size. Throws {@link InvariantError} on the first breach.
   */
  checkInvariants(): void {
    const ent = this.ent;
    assert(this.liveCount + this.freeCount === this.slots, 'TLB: live + free != slots');
    const seen = new Uint8Array(this.slots);
    for (let k = 0; k < this.liveCount; k++) {
      const i = this.live[k]!; // JUSTIFY: k < liveCount.
      const o = i * STRIDE;
      assert(this.eLivePos[i] === k, `TLB: livePos of ${i}`);
      assert(ent[o + F_KEY]! >= 0, `TLB: live entry ${i} has no VMID`);
      assert((ent[o + F_ATTR]! & A_COPIES) !== 0, `TLB: live entry ${i} holds no copy`);
      assert(seen[i] === 0, `TLB: entry ${i} listed twice`);
      seen[i] = 1;
      assert(ent[o + F_PABASE]! % POW2[this.shiftOf(i)]! === 0, `TLB: entry ${i} PA base not aligned to its size`);
    }
    for (let k = 0; k < this.freeCount; k++) {
      const i = this.freeList[k]!;
      assert(seen[i] === 0, `TLB: free entry ${i} is also live or free twice`);
      assert(ent[i * STRIDE + F_KEY] === -1, `TLB: free entry ${i} keeps a key`);
      seen[i] = 2;
    }
    let chained = 0;
    for (let b = 0; b < this.buckets.length; b++) {
      for (let i = this.buckets[b]!; i >= 0; i = this.eNext[i]!) {
        const o = i * STRIDE;
        assert(seen[i] === 1, `TLB: bucket ${b} chains non-live entry ${i}`);
        assert(this.hash(this.vmidOf(i), ent[o + F_TAG]!, this.shiftOf(i)) === b, `TLB: entry ${i} in wrong bucket`);
        for (let j = this.eNext[i]!; j >= 0; j = this.eNext[j]!) {
          const same = ent[j * STRIDE + F_KEY] === ent[o + F_KEY] && ent[j * STRIDE + F_TAG] === ent[o + F_TAG];
          assert(!same, `TLB: duplicate key in entries ${i} and ${j}`);
        }
        chained++;
        assert(chained <= this.liveCount, 'TLB: hash chain cycle');
      }
    }
    assert(chained === this.liveCount, 'TLB: hash chains do not hold every live entry');
    const counts = new Int32Array(MAX_SHIFT);
    for (let k = 0; k < this.liveCount; k++) counts[this.shiftOf(this.live[k]!)]!++;
    let inUse = 0;
    for (let s = 0; s < MAX_SHIFT; s++) {
      assert(counts[s] === this.shiftCount[s], `TLB: count of size 2^${s}`);
      if (counts[s]! > 0) inUse++;
    }
    assert(inUse === this.nShifts, 'TLB: list of sizes in use');
    for (let k = 1; k < this.nShifts; k++) assert(this.shifts[k - 1]! < this.shifts[k]!, 'TLB: sizes not sorted');
    assert(this.capacity === Infinity || this.liveCount <= this.capacity, 'TLB: over capacity');
    // The combined lists hold exactly the live entries with a combined copy, each under its own VMID, linked both ways.
    let combined = 0;
    for (let k = 0; k < this.liveCount; k++) if ((ent[this.live[k]! * STRIDE + F_ATTR]! & A_COPY_C) !== 0) combined++;
    let listed = 0;
    for (let v = 0; v < this.cHead.length; v++) {
      let prev = -1;
      for (let i = this.cHead[v]!; i >= 0; i = this.cNext[i]!) {
        assert(seen[i] === 1, `TLB: combined list of VMID ${v} holds non-live entry ${i}`);
        assert(this.vmidOf(i) === v, `TLB: entry ${i} on the combined list of VMID ${v}`);
        assert((ent[i * STRIDE + F_ATTR]! & A_COPY_C) !== 0, `TLB: entry ${i} listed without a combined copy`);
        assert(this.cPrev[i] === prev, `TLB: combined list back link of ${i}`);
        prev = i;
        listed++;
        assert(listed <= combined, 'TLB: combined lists longer than the combined entries (cycle or duplicate)');
      }
    }
    assert(listed === combined, 'TLB: combined lists miss an entry');
  }

  // --- internals -------------------------------------------------------------------------------------------

  private vmidOf(i: number): number {
    return Math.floor(this.ent[i * STRIDE + F_KEY]! / 64);
  }

  private shiftOf(i: number): number {
    return (this.ent[i * STRIDE + F_SHIFT]! | 0) & 63;
  }

  private hash(vmid: number, tag: number, shift: number): number {
    // JUSTIFY: `tag >>> 0` is ToUint32 (exact modulo 2^32); the high tag bits only lengthen a chain.
    const h = Math.imul((tag >>> 0) ^ Math.imul(vmid + 1, 0x165667b1) ^ Math.imul(shift, 0x27d4eb2f), 0x9e3779b1);
    return h >>> this.hashShift;
  }

  private find(vmid: number, tag: number, shift: number): number {
    if (this.slots === 0) return -1;
    const ent = this.ent;
    const key = vmid * 64 + shift;
    let i = this.buckets[this.hash(vmid, tag, shift)]!;
    while (i >= 0) {
      const o = i * STRIDE;
      if (ent[o + F_TAG] === tag && ent[o + F_KEY] === key) return i;
      i = this.eNext[i]!;
    }
    return -1;
  }

  /** Clears copy bits `copies` (attr-positioned) of entry `i`; frees it when none is left. Returns true if freed. */
  private dropCopies(i: number, copies: number): boolean {
    const o = i * STRIDE + F_ATTR;
    const old = this.ent[o]! | 0;
    const attr = old & ~copies;
    if ((attr & A_COPIES) === 0) {
      this.unlink(i); // takes it off its combined list too
      return true;
    }
    if ((old & copies & A_COPY_C) !== 0) this.cUnlink(i);
    this.ent[o] = attr;
    return false;
  }

  /**
   * VMALLE1IS of `vmid`: clears the combined copy of every entry on the VMID's combined list (the entries holding
   * one), freeing those left with no copy. The same entries change as a scan of every live entry would change.
   */
  private dropCombined(vmid: number): void {
    if (vmid < 0 || vmid >= this.cHead.length) return;
    const ent = this.ent;
    let i = this.cHead[vmid]!;
    this.cHead[vmid] = -1;
    while (i >= 0) {
      const nx = this.cNext[i]!;
      this.cNext[i] = -1;
      this.cPrev[i] = -1;
      const o = i * STRIDE + F_ATTR;
      const attr = (ent[o]! | 0) & ~A_COPY_C;
      ent[o] = attr; // before unlink(), so that it does not look for the entry on the (already emptied) list
      if ((attr & A_COPIES) === 0) this.unlink(i);
      i = nx;
    }
  }

  /** Puts entry `i` (of `vmid`) at the head of the VMID's combined list. */
  private cLink(i: number, vmid: number): void {
    if (vmid >= this.cHead.length) {
      let n = this.cHead.length * 2;
      while (n <= vmid) n *= 2;
      const heads = new Int32Array(n).fill(-1);
      heads.set(this.cHead);
      this.cHead = heads;
    }
    const h = this.cHead[vmid]!;
    this.cNext[i] = h;
    this.cPrev[i] = -1;
    if (h >= 0) this.cPrev[h] = i;
    this.cHead[vmid] = i;
  }

  /** Takes entry `i` off its VMID's combined list. */
  private cUnlink(i: number): void {
    const p = this.cPrev[i]!;
    const nx = this.cNext[i]!;
    if (p >= 0) this.cNext[p] = nx;
    else this.cHead[this.vmidOf(i)] = nx;
    if (nx >= 0) this.cPrev[nx] = p;
    this.cNext[i] = -1;
    this.cPrev[i] = -1;
  }

  private invalidateIpa(vmid: number, ipa: number): void {
    for (let k = 0; k < this.nShifts; k++) {
      const shift = this.shifts[k]!;
      const i = this.find(vmid, Math.floor(ipa * INV_POW2[shift]!), shift);
      if (i >= 0 && this.dropCopies(i, A_COPY_S2)) k--; // the list of sizes may have shrunk under us
    }
  }

  /** Clears `copies` from every live entry of `vmid` (−1 = every VMID), freeing entries left with none. */
  private removeWhere(vmid: number, copies: number): void {
    let k = 0;
    while (k < this.liveCount) {
      const i = this.live[k]!;
      // dropCopies may swap the last live entry into position k: examine k again then.
      if ((vmid < 0 || this.vmidOf(i) === vmid) && this.dropCopies(i, copies)) continue;
      k++;
    }
  }

  private report(op: TlbiOp, vmid: number, ipa: number, ttl: number | undefined): void {
    const l = this.listener;
    if (l !== null) l.onTlbi(op, vmid, ipa, ttl === undefined ? -1 : ttl);
  }

  private link(i: number, vmid: number, tag: number, shift: number): void {
    const o = i * STRIDE;
    const ent = this.ent;
    ent[o + F_TAG] = tag;
    ent[o + F_KEY] = vmid * 64 + shift;
    ent[o + F_SHIFT] = shift;
    const b = this.hash(vmid, tag, shift);
    this.eNext[i] = this.buckets[b]!;
    this.buckets[b] = i;
    this.eLivePos[i] = this.liveCount;
    this.live[this.liveCount++] = i;
    if (this.shiftCount[shift]!++ === 0) this.addShift(shift);
  }

  private unlink(i: number): void {
    const ent = this.ent;
    const o = i * STRIDE;
    const shift = this.shiftOf(i);
    if ((ent[o + F_ATTR]! & A_COPY_C) !== 0) this.cUnlink(i);
    const b = this.hash(this.vmidOf(i), ent[o + F_TAG]!, shift);
    let p = this.buckets[b]!;
    if (p === i) this.buckets[b] = this.eNext[i]!;
    else {
      while (this.eNext[p] !== i) p = this.eNext[p]!;
      this.eNext[p] = this.eNext[i]!;
    }
    const pos = this.eLivePos[i]!;
    const last = this.live[--this.liveCount]!;
    this.live[pos] = last;
    this.eLivePos[last] = pos;
    this.eLivePos[i] = -1;
    ent[o + F_KEY] = -1;
    ent[o + F_ATTR] = 0;
    this.eNext[i] = -1;
    this.freeList[this.freeCount++] = i;
    if (--this.shiftCount[shift]! === 0) this.removeShift(shift);
  }

  private addShift(shift: number): void {
    let k = this.nShifts++;
    while (k > 0 && this.shifts[k - 1]! > shift) {
      this.shifts[k] = this.shifts[k - 1]!;
      k--;
    }
    this.shifts[k] = shift;
  }

  private removeShift(shift: number): void {
    let k = 0;
    while (this.shifts[k] !== shift) k++;
    for (; k < this.nShifts - 1; k++) this.shifts[k] = this.shifts[k + 1]!;
    this.nShifts--;
  }

  private evict(): void {
    const victim = this.live[this.evictCursor % this.liveCount]!;
    this.evictCursor = (this.evictCursor + 1) >>> 0;
    this.unlink(victim);
    this.evictions++;
  }

  /** Allocates empty storage for `n` entries. */
  private allocate(n: number): void {
    this.slots = n;
    this.ent = new Float64Array(n * STRIDE);
    for (let i = 0; i < n; i++) this.ent[i * STRIDE + F_KEY] = -1;
    this.eNext = new Int32Array(n).fill(-1);
    this.eLivePos = new Int32Array(n).fill(-1);
    this.cNext = new Int32Array(n).fill(-1);
    this.cPrev = new Int32Array(n).fill(-1);
    this.cHead.fill(-1);
    this.live = new Int32Array(n);
    this.liveCount = 0;
    this.freeList = new Int32Array(n);
    for (let k = 0; k < n; k++) this.freeList[k] = n - 1 - k;
    this.freeCount = n;
    const nb = n === 0 ? 1 : nextPow2(2 * n);
    this.buckets = new Int32Array(nb).fill(-1);
    this.hashShift = 32 - Math.log2(nb);
    this.shiftCount.fill(0);
    this.nShifts = 0;
  }

  /** Doubles the storage of an unbounded TLB, keeping every entry (rehashed). */
  private grow(): void {
    const oldEnt = this.ent;
    const oldLive = this.live.slice(0, this.liveCount);
    this.allocate(this.slots * 2);
    for (let k = 0; k < oldLive.length; k++) {
      const oj = oldLive[k]! * STRIDE;
      const i = this.freeList[--this.freeCount]!;
      const key = oldEnt[oj + F_KEY]!;
      this.link(i, Math.floor(key / 64), oldEnt[oj + F_TAG]!, key % 64);
      const o = i * STRIDE;
      for (let f = F_PABASE; f <= F_SHIFT; f++) this.ent[o + f] = oldEnt[oj + f]!; // tag and key set by link()
      if ((this.ent[o + F_ATTR]! & A_COPY_C) !== 0) this.cLink(i, Math.floor(key / 64));
    }
  }
}
