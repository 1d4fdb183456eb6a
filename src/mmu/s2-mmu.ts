/**
 * One PE's stage-2 MMU: the registers that configure stage 2 (VTCR_EL2, VTTBR_EL2, HCR_EL2), the walker, a TLB
 * (shared between PEs or private, as the composition root chooses) and, optionally, the break-before-make
 * checker (Arm ARM D8.2–D8.5, D8.16; reference arm-s2.md §4, §7.2, §8).
 *
 * `translate` is the hot path of every guest access: a TLB lookup, then the permission check on the cached leaf
 * (`s2PermFault`), and the walk only on a miss or when the access needs a hardware update (AF = 0 with HA, or a
 * write to a DBM writable-clean leaf with HD: the walker must write the descriptor, so a cached leaf cannot serve
 * it). A successful walk fills the TLB. Nothing is allocated per call.
 *
 * To keep the hit path short, each fill also stores a 6-bit mask: for READ, WRITE and EXEC, from EL1 and from EL0,
 * whether `s2PermFault` and `s2NeedsHwUpdate` both say "go ahead" for the cached leaf. A hit for a plain or EL0
 * access reads its bit, and the full functions run only when the bit is clear, when other flags are set, or when
 * the configuration (VTCR_EL2, HCR_EL2, features: the permission signature) differs from the fill's. The mask is
 * computed by those same functions, so it cannot disagree with them.
 *
 * A Permission fault may come from a cached leaf: a real TLB may keep an entry after software relaxed its
 * permissions without TLBI, and the access then faults on the old permissions (the kernel copes by re-faulting).
 * The model behaves the same way, so a missing TLBI after `relax_perms` shows up as a repeated fault with the TLB
 * on and not with it off.
 */

import { S2AP_R_LO, S2AP_W_LO, S2_AF_LO, S2_DBM_HI, S2_MEMATTR_LO, S2_XN0_HI, S2_XN_HI } from '../arch/desc.js';
import { FaultType } from '../arch/fault.js';
import type { CpuFeatures } from '../arch/features.js';
import type { PhysMem } from '../mem/phys-mem.js';
import { BBM_HIT_QUIET_HI, type BbmChecker } from './bbm-check.js';
import { S2Config, decodeS2Config } from './s2-config.js';
import { AccessKind, WalkFlag, s2NeedsHwUpdate, s2PermFault, s2Walk } from './s2-walk.js';
import { TLB_MAX_PERM_SIG, Tlb } from './tlb.js';
import type { WalkResult } from './walk-result.js';
import type { WalkTrace } from './walk-trace.js';

/**
 * Permission signatures: one small number per distinct (VTCR_EL2, HCR_EL2, features) combination, so that a
 * permission mask cached in a TLB entry is used only under the configuration it was computed for (VTTBR_EL2 does not
 * affect permissions). Shared by every S2Mmu, because the TLB may be.
 */
const permSigs = new Map<string, number>();
const MAX_PERM_SIGS = Math.min(4096, TLB_MAX_PERM_SIG);
const featureIds = new WeakMap<CpuFeatures, number>();
let nextFeatureId = 0;

function permSigOf(vtcrLo: number, vtcrHi: number, hcrLo: number, hcrHi: number, features: CpuFeatures): number {
  let fid = featureIds.get(features);
  if (fid === undefined) {
    fid = nextFeatureId++;
    featureIds.set(features, fid);
  }
  const key = `${vtcrLo}:${vtcrHi}:${hcrLo}:${hcrHi}:${fid}`;
  const sig = permSigs.get(key);
  if (sig !== undefined) return sig;
  // Signature 0 means "no mask" to the TLB. Numbers are never reused (a TLB entry may still carry one), so past
  // MAX_PERM_SIGS configurations (a fuzzer's random VTCRs) new ones simply get no fast path, and the map stays small.
  if (permSigs.size >= MAX_PERM_SIGS) return 0;
  permSigs.set(key, permSigs.size + 1);
  return permSigs.size;
}

/** Descriptor bits[31:0] that `s2PermFault`/`s2NeedsHwUpdate` read for flags 0 or EL0: MemAttr, S2AP, AF. */
const PERM_BITS_LO = S2_MEMATTR_LO | S2AP_R_LO | S2AP_W_LO | S2_AF_LO;
/** Descriptor bits[63:32] they read: DBM, XN[1:0]. */
const PERM_BITS_HI = S2_DBM_HI | S2_XN0_HI | S2_XN_HI;

/** Decoded configurations an {@link S2Mmu} keeps (the host's and a few VMs' register values). */
const CFG_CACHE = 8;

/** The permission-mask bit for an access kind and flags, or 0 when the flags need the full check. */
function permBitOf(access: AccessKind, flags: number): number {
  // Only plain accesses and EL0 accesses have precomputed answers (S1PTW, AT and NO_UPDATE take the full path).
  return (flags & ~WalkFlag.EL0) === 0 ? 1 << (access * 2 + (flags & WalkFlag.EL0)) : 0;
}

/** Construction options of an {@link S2Mmu}. */
export interface S2MmuOptions {
  /** The TLB to use (share one between PEs to model broadcast maintenance); default: a private unbounded TLB. */
  readonly tlb?: Tlb;
  /** The BBM checker to report TLB hits to and to register loaded roots with; default none. */
  readonly checker?: BbmChecker | null;
  /** Receives the descriptor reads of every walk (not of TLB hits); default none. */
  readonly trace?: WalkTrace | null;
}

/** The stage-2 MMU of one PE. */
export class S2Mmu {
  /** Physical memory holding the tables and the data. */
  readonly mem: PhysMem;
  /** The PE's ID-register features (PAMax, granules, HAFDBS, XNX, VMID16, …). */
  readonly features: CpuFeatures;
  /**
   * The configuration decoded from the current registers. A register write may replace the object (it comes from a
   * small cache of decoded configurations), so read `cfg` again after a write rather than keeping it.
   */
  get cfg(): S2Config {
    return this.cur;
  }
  /** The TLB this PE allocates into. */
  readonly tlb: Tlb;
  /** The BBM checker, or null. */
  checker: BbmChecker | null;
  /** Walk trace, or null. */
  trace: WalkTrace | null;
  /** VTCR_EL2 bits[31:0]. */
  vtcrLo = 0;
  /** VTCR_EL2 bits[63:32]. */
  vtcrHi = 0;
  /** VTTBR_EL2 bits[31:0]. */
  vttbrLo = 0;
  /** VTTBR_EL2 bits[63:32]. */
  vttbrHi = 0;
  /** HCR_EL2 bits[31:0]. */
  hcrLo = 0;
  /** HCR_EL2 bits[63:32]. */
  hcrHi = 0;
  /** Walks performed (TLB misses, hardware-update re-walks, AT). */
  walks = 0;
  /** Translations served by the TLB (including Permission faults raised from a cached leaf). */
  tlbHits = 0;
  /** Permission signature of the current configuration (see `permSigOf`); 0 = no cached masks. */
  private permSig = 0;
  /** The current configuration: one of {@link S2Mmu.cache}. */
  private cur: S2Config;
  /**
   * Decoded configurations keyed by the six register halves (a world switch alternates between the host's and a few
   * VMs' values; a hit costs six compares instead of a decode and a signature lookup). Slot k's key is at
   * `keys[6k…6k+5]` (VTCR lo/hi, VTTBR lo/hi, HCR lo/hi), its signature at `sigs[k]`; replacement is round-robin.
   */
  private readonly cache: S2Config[] = [];
  private readonly keys = new Float64Array(CFG_CACHE * 6).fill(-1);
  private readonly sigs = new Int32Array(CFG_CACHE);
  private cacheNext = 0;
  /** Slot of the current configuration, and of the one current before it. */
  private curSlot = 0;
  private prevSlot = 0;
  /**
   * Per cache slot, the checker's {@link BbmChecker.rootsEpoch} right after `addRoot` of that slot's configuration
   * (−1: not registered since the slot was decoded), and the checker it was registered with.
   */
  private readonly slotEpoch = new Float64Array(CFG_CACHE).fill(-1);
  private epochChecker: BbmChecker | null = null;
  /**
   * One-entry memo of {@link S2Mmu.permMask}: the signature and the permission-relevant descriptor bits it was
   * computed for (−1: empty), and the mask.
   */
  private pmSig = -1;
  private pmLo = 0;
  private pmHi = 0;
  private pmMask = 0;

  /**
   * Creates an MMU with all registers zero (HCR_EL2.VM = 0: stage 2 off).
   * @param mem physical memory
   * @param features the PE's features (see `arch/features.ts`)
   */
  constructor(mem: PhysMem, features: CpuFeatures, opts: S2MmuOptions = {}) {
    this.mem = mem;
    this.features = features;
    this.tlb = opts.tlb ?? new Tlb();
    this.checker = opts.checker ?? null;
    this.trace = opts.trace ?? null;
    for (let k = 0; k < CFG_CACHE; k++) this.cache.push(new S2Config());
    this.cur = this.cache[0]!; // JUSTIFY: CFG_CACHE > 0.
    this.decode();
  }

  /** The current VMID (from VTTBR_EL2, 8 or 16 bits per VTCR_EL2.VS). */
  get vmid(): number {
    return this.cur.vmid;
  }

  /** Writes VTCR_EL2. */
  setVtcr(lo: number, hi: number): void {
    this.vtcrLo = lo >>> 0;
    this.vtcrHi = hi >>> 0;
    this.decode();
  }

  /** Writes VTTBR_EL2 (table base and VMID). */
  setVttbr(lo: number, hi: number): void {
    this.vttbrLo = lo >>> 0;
    this.vttbrHi = hi >>> 0;
    this.decode();
  }

  /** Writes HCR_EL2 (VM, PTW, FWB, RW, …). */
  setHcr(lo: number, hi: number): void {
    this.hcrLo = lo >>> 0;
    this.hcrHi = hi >>> 0;
    this.decode();
  }

  /** Writes VTCR_EL2, VTTBR_EL2 and HCR_EL2 together (one decode), as a world switch does. */
  setRegs(vtcr: { lo: number; hi: number }, vttbr: { lo: number; hi: number }, hcr: { lo: number; hi: number }): void {
    this.vtcrLo = vtcr.lo >>> 0;
    this.vtcrHi = vtcr.hi >>> 0;
    this.vttbrLo = vttbr.lo >>> 0;
    this.vttbrHi = vttbr.hi >>> 0;
    this.hcrLo = hcr.lo >>> 0;
    this.hcrHi = hcr.hi >>> 0;
    this.decode();
  }

  /**
   * Translates `ipa` for an access (ASL `AArch64.S2Translate` through the TLB). Fills `out` and returns the fault
   * kind, `FaultType.NONE` on success.
   *
   * 1. TLB lookup for the current VMID. On a hit, unless the access needs a hardware update
   *    ({@link s2NeedsHwUpdate}), the cached leaf decides: a Permission fault at the leaf's level, or the cached PA.
   *    With a checker attached, the hit is verified against the descriptor in memory.
   * 2. Otherwise the walk (`s2Walk`); a successful walk fills the TLB, except for `WalkFlag.NO_UPDATE` probes
   *    (no side effect at all) and with stage 2 disabled (PA = IPA, nothing to cache).
   *
   * @param flags a bit set of `WalkFlag` (EL0, S1PTW, NO_UPDATE; AT belongs to {@link S2Mmu.at}).
   */
  translate(ipa: number, access: AccessKind, flags: number, out: WalkResult): FaultType {
    const cfg = this.cur;
    if (cfg.enabled && cfg.fault === FaultType.NONE) {
      const hit = this.tlb.lookupPerm(cfg.vmid, ipa, permBitOf(access, flags), this.permSig, out);
      if (hit === 1) {
        // The mask computed at fill time already says: permitted, no hardware update needed (flags are 0 or EL0).
        this.tlbHits++;
        const checker = this.checker;
        if (checker !== null) checker.onTlbHit(cfg, out, access, flags);
        return FaultType.NONE;
      }
      if (hit === 2 && !s2NeedsHwUpdate(cfg, out.descLo, out.descHi, access, flags)) {
        this.tlbHits++;
        out.s1ptw = (flags & WalkFlag.S1PTW) !== 0;
        if (s2PermFault(cfg, out.descLo, out.descHi, access, flags)) {
          out.fault = FaultType.PERMISSION;
          out.level = out.leafLevel;
          return FaultType.PERMISSION;
        }
        const checker = this.checker;
        if (checker !== null) checker.onTlbHit(cfg, out, access, flags);
        return FaultType.NONE;
      }
    }
    return this.walkAndFill(ipa, access, flags, out);
  }

  /**
   * {@link S2Mmu.translate} for callers that use only the output address of a successful translation (a guest's
   * load or store, a host access): the same outcome, counters, TLB and checker effects, and the same `out` on any
   * fault; on a successful TLB hit that the cached permission mask allows, only the fault record (`fault`, `level`,
   * `s1ptw`) and `ipa`, `pa` are written, plus, with a checker attached, the fields its hit check reads (`leafLevel`,
   * `descPa`, `descLo`, `descHi`); the other leaf fields keep older values.
   * Callers that read only `pa` after success (and the fault record after a fault) can switch from `translate`.
   */
  translatePa(ipa: number, access: AccessKind, flags: number, out: WalkResult): FaultType {
    const cfg = this.cur;
    if (cfg.enabled && cfg.fault === FaultType.NONE) {
      const permBit = permBitOf(access, flags);
      if (permBit !== 0) {
        const checker = this.checker;
        const hit = checker === null
          ? this.tlb.lookupPa(cfg.vmid, ipa, permBit, this.permSig, out)
          : this.tlb.lookupPaDesc(cfg.vmid, ipa, permBit, this.permSig, out);
        if (hit === 1) {
          this.tlbHits++;
          if (checker !== null) {
            // BbmChecker.onTlbHit's first test, inlined: it returns at once when the descriptor in memory still
            // holds the value the entry was filled from, up to the bits it ignores (BBM_HIT_QUIET_HI). Only that
            // case is short-cut (read from the memory's flat window, as onTlbHit reads it); every other one calls it.
            const mem = this.mem;
            const off = out.descPa - mem.winBase;
            const w = off >>> 2; // JUSTIFY: used only when 0 ≤ off < winBytes ≤ 2^32.
            if (!(off >= 0 && off < mem.winBytes && mem.win[w] === out.descLo && ((mem.win[w + 1]! ^ out.descHi) & ~BBM_HIT_QUIET_HI) === 0)) {
              checker.onTlbHit(cfg, out, access, flags);
            }
          }
          return FaultType.NONE;
        }
        if (hit === 0) return this.walkAndFill(ipa, access, flags, out); // the miss is counted, as translate would
      }
    }
    return this.translate(ipa, access, flags, out);
  }

  private walkAndFill(ipa: number, access: AccessKind, flags: number, out: WalkResult): FaultType {
    const cfg = this.cur;
    this.walks++;
    const fault = s2Walk(this.mem, cfg, ipa, access, flags, out, this.trace);
    if (fault === FaultType.NONE && cfg.enabled && (flags & WalkFlag.NO_UPDATE) === 0 && this.tlb.enabled) {
      // Signature 0 (the signatures ran out) is shared by configurations that may decide differently: no mask.
      const sig = this.permSig;
      this.tlb.fill(cfg.vmid, ipa, out, sig === 0 ? 0 : this.permMask(out.descLo, out.descHi), sig);
    }
    return fault;
  }

  /**
   * Which plain/EL0 access classes the leaf permits with no hardware update, by the walker's own rules.
   *
   * Memoised for one (signature, relevant bits) pair: with flags 0 or EL0, `s2PermFault` and `s2NeedsHwUpdate` read
   * only the configuration's permission fields (fixed by the signature: VTCR_EL2, HCR_EL2 and the features, never
   * signature 0 here) and the descriptor's MemAttr, S2AP, AF, DBM and XN bits ({@link PERM_BITS_LO},
   * {@link PERM_BITS_HI}); a leaf that agrees on those gets the same mask. The differential test in
   * test/mmu/s2-mmu-perm-memo.test.ts compares it with the unmemoised computation.
   */
  private permMask(lo: number, hi: number): number {
    const mLo = lo & PERM_BITS_LO;
    const mHi = hi & PERM_BITS_HI;
    if (this.pmSig === this.permSig && this.pmLo === mLo && this.pmHi === mHi) return this.pmMask;
    const mask = this.permMaskOf(lo, hi);
    this.pmSig = this.permSig;
    this.pmLo = mLo;
    this.pmHi = mHi;
    this.pmMask = mask;
    return mask;
  }

  /** {@link S2Mmu.permMask} without the memo. */
  private permMaskOf(lo: number, hi: number): number {
    const cfg = this.cur;
    let mask = 0;
    for (let access = 0; access <= 2; access++) {
      for (let el0 = 0; el0 <= 1; el0++) {
        const a = access as AccessKind;
        if (!s2PermFault(cfg, lo, hi, a, el0) && !s2NeedsHwUpdate(cfg, lo, hi, a, el0)) mask |= 1 << (access * 2 + el0);
      }
    }
    return mask;
  }

  /**
   * The stage-2 part of `AT S12E1R` (`write` false) / `AT S12E1W` (true): a walk with AT semantics
   * (`WalkFlag.AT`: read or write permission, never execute; AF set with HA; the dirty state never set).
   *
   * The TLB is neither consulted nor filled. Arm allows an AT to use or allocate TLB entries but does not require
   * it; walking the tables makes AT report what the tables say now, which is what EL2 uses it for (pKVM's
   * `__translate_far_to_hpfar`), and QEMU's AT does the same (it never uses its TLB). For PAR_EL1 encoding see
   * `mmu/at.ts`.
   */
  at(ipa: number, write: boolean, out: WalkResult): FaultType {
    this.walks++;
    return s2Walk(this.mem, this.cur, ipa, write ? AccessKind.WRITE : AccessKind.READ, WalkFlag.AT, out, this.trace);
  }

  /** Makes the configuration of the current register values current: from the cache, or decoded into a slot. */
  private decode(): void {
    const keys = this.keys;
    const vtcrLo = this.vtcrLo;
    const vtcrHi = this.vtcrHi;
    const vttbrLo = this.vttbrLo;
    const vttbrHi = this.vttbrHi;
    const hcrLo = this.hcrLo;
    const hcrHi = this.hcrHi;
    let slot = -1;
    // A world switch returns to the configuration current before this one: try its slot first (keys are unique, so
    // a match there is the slot the scan would find).
    const p = this.prevSlot * 6;
    if (keys[p] === vtcrLo && keys[p + 1] === vtcrHi && keys[p + 2] === vttbrLo && keys[p + 3] === vttbrHi &&
      keys[p + 4] === hcrLo && keys[p + 5] === hcrHi) {
      slot = this.prevSlot;
    } else {
      for (let k = 0, o = 0; k < CFG_CACHE; k++, o += 6) {
        if (keys[o] === vtcrLo && keys[o + 1] === vtcrHi && keys[o + 2] === vttbrLo && keys[o + 3] === vttbrHi &&
          keys[o + 4] === hcrLo && keys[o + 5] === hcrHi) {
          slot = k;
          break;
        }
      }
    }
    if (slot < 0) {
      slot = this.cacheNext;
      this.slotEpoch[slot] = -1; // a new configuration in this slot: not registered yet
      this.cacheNext = (slot + 1) % CFG_CACHE;
      const cfg = this.cache[slot]!; // JUSTIFY: slot < CFG_CACHE.
      decodeS2Config(vtcrLo, vtcrHi, vttbrLo, vttbrHi, hcrLo, hcrHi, this.features, cfg);
      const o = slot * 6;
      keys[o] = vtcrLo;
      keys[o + 1] = vtcrHi;
      keys[o + 2] = vttbrLo;
      keys[o + 3] = vttbrHi;
      keys[o + 4] = hcrLo;
      keys[o + 5] = hcrHi;
      this.sigs[slot] = permSigOf(vtcrLo, vtcrHi, hcrLo, hcrHi, this.features);
    }
    if (slot !== this.curSlot) {
      this.prevSlot = this.curSlot;
      this.curSlot = slot;
    }
    const cfg = this.cache[slot]!; // JUSTIFY: slot < CFG_CACHE.
    this.cur = cfg;
    this.permSig = this.sigs[slot]!; // JUSTIFY: as above.
    const checker = this.checker;
    if (checker === null) return;
    // addRoot(cfg) is a no-op when the checker's roots are unchanged since this slot's configuration was registered
    // with the same checker (rootsEpoch counts every change of its root list): skip it then (a world switch back to
    // a known VM). Any other case calls it.
    if (checker !== this.epochChecker) {
      this.epochChecker = checker;
      this.slotEpoch.fill(-1);
    }
    if (this.slotEpoch[slot] === checker.rootsEpoch) return;
    checker.addRoot(cfg);
    this.slotEpoch[slot] = checker.rootsEpoch;
  }
}
