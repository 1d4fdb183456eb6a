/**
 * The stage-2 hardware walker: IPA → PA or a fault value (Arm ARM D8.3–D8.5; ASL `AArch64.S2Translate`,
 * `AArch64.S2Walk`, `S2CheckPermissions`, `S2ApplyOutputPerms`; reference arm-s2.md §4, §5, §7.2). Hot path: no
 * allocation, no BigInt, no closures; results go into a preallocated {@link WalkResult}.
 *
 * Order of checks (arm-s2.md §1.8, §4.3, §4.4):
 *   config (T0SZ, SL) → IPA range → table base vs OAS → per level: SEA on the read, invalid/reserved, table
 *   address vs OAS → at the leaf: OA vs OAS → AF (unless HA) → permission → hardware AF/dirty update.
 *
 * Choices (arm-s2.md §11, §12): the contiguous hint and nT never fault and the OA comes from the entry itself
 * (#9, QEMU); no AF or dirty update on a faulting access (#12, QEMU); fetch from stage-2 Device memory is a
 * Permission fault (#6, ASL); AT never sets the dirty state but does set AF with HA (#7, ASL — QEMU 7.2 also sets
 * dirty on AT S12E1W). Alignment faults need the access size and are the caller's (vCPU's) business.
 */

import { TWO_32 } from '../arch/bits.js';
import { OA_47_32_HI, S2AP_R_LO, S2AP_W_LO, S2_AF_LO, S2_DBM_HI } from '../arch/desc.js';
import {
  s2DescAddr,
  s2DescCont,
  s2DescDbm,
  s2DescMemAttr,
  s2DescS2ap,
  s2DescSh,
  s2DescSw,
  s2DescXn,
  s2MemAttrIsDevice,
  OaFormat,
} from '../arch/desc-codec.js';
import { assertNever } from '../arch/assert.js';
import { FaultType } from '../arch/fault.js';
import { pageWordIndex, type PhysMem } from '../mem/phys-mem.js';
import type { S2Config } from './s2-config.js';
import type { WalkResult } from './walk-result.js';
import type { WalkTrace } from './walk-trace.js';

/** The kind of access being translated (ASL `AccessType`, reduced to what stage 2 distinguishes). */
export const AccessKind = { READ: 0, WRITE: 1, EXEC: 2 } as const;
/** An access kind. */
export type AccessKind = (typeof AccessKind)[keyof typeof AccessKind];

/**
 * Walk flags (a bit set).
 * - `EL0`: the stage-1 access is from EL0 (selects the EL0 half of XN[1:0] with FEAT_XNX).
 * - `AT`: an address-translation instruction (AT S12E*). Permissions are checked for READ/WRITE as usual; AF is
 *   set with HA (the ASL does not exclude AT from AF updates, arm-s2.md §7.2), but the dirty state is never
 *   updated (ASL `S2Translate` excludes AccessType_AT; arm-s2.md §11 #7).
 * - `NO_UPDATE`: a probe: same outcome as a real access but no memory side effect at all.
 * - `S1PTW`: the access is a stage-1 table walk (reported as S1PTW; with HCR_EL2.PTW a walk to stage-2 Device
 *   memory is a Permission fault, arm-s2.md §4.8).
 */
export const WalkFlag = { EL0: 1, AT: 2, NO_UPDATE: 4, S1PTW: 8 } as const;
/** One walk flag. */
export type WalkFlag = (typeof WalkFlag)[keyof typeof WalkFlag];

/**
 * Fills `out` for a walk that faulted before reaching a leaf (configuration, IPA range, SEA on a descriptor read,
 * invalid entry, table address): the constructor state plus S1PTW, the last descriptor read (PA −1 and zeroes when
 * none) and the fault; {@link s2Walk} sets the IPA. Off the hot path.
 */
function failNoLeaf(
  out: WalkResult,
  type: FaultType,
  level: number,
  flags: number,
  descPa: number,
  lo: number,
  hi: number,
): FaultType {
  out.reset();
  out.s1ptw = (flags & WalkFlag.S1PTW) !== 0;
  out.descPa = descPa;
  out.descLo = lo;
  out.descHi = hi;
  out.fault = type;
  out.level = level;
  return type;
}

/**
 * Writes every field of `out` for a leaf at `level` (descriptor `lo`/`hi` at `descPa`, leaf size 2^`sh`): fault
 * NONE, PA `pa`, the decoded attributes, no hardware update (all but the IPA, which {@link s2Walk} sets). The caller overrides what differs (a leaf fault, a
 * hardware update). Every field is written, so the success path needs no `reset()`.
 */
function fillLeaf(
  out: WalkResult,
  cfg: S2Config,
  flags: number,
  level: number,
  sh: number,
  descPa: number,
  lo: number,
  hi: number,
  pa: number,
): void {
  out.fault = FaultType.NONE;
  out.level = 0;
  out.s1ptw = (flags & WalkFlag.S1PTW) !== 0;
  out.pa = pa;
  out.leafLevel = level;
  out.leafShift = sh;
  out.descPa = descPa;
  out.descLo = lo;
  out.descHi = hi;
  out.memAttr = s2DescMemAttr(lo);
  out.s2ap = s2DescS2ap(lo);
  out.sh = cfg.ds ? cfg.sh0 : s2DescSh(lo);
  out.xn = s2DescXn(hi);
  out.af = (lo & S2_AF_LO) !== 0;
  out.dbm = s2DescDbm(hi);
  out.sw = s2DescSw(hi);
  out.cont = s2DescCont(hi);
  out.hwUpdated = false;
}

/** A leaf-level fault: `out` keeps the leaf's attributes (as {@link fillLeaf} wrote them), PA 0, and the fault. */
function failLeaf(out: WalkResult, type: FaultType, level: number): FaultType {
  out.pa = 0;
  out.fault = type;
  out.level = level;
  return type;
}

/**
 * Whether a stage-2 leaf denies this access (a Permission fault). Usable on a TLB hit: pass the cached leaf's
 * halves as they are in memory; it does not look at AF (a TLB caches only leaves a walk succeeded on).
 *
 * Mirrors ASL `AArch64.S2CheckPermissions` / `S2DirectBasePermissions` (non-PIE, non-overlay):
 * READ needs S2AP[0]; WRITE needs S2AP[1], which DBM makes effectively 1 when HD is in effect; EXEC is denied from
 * stage-2 Device memory, then by XN[1:0] (with FEAT_XNX: 01 denies EL1, 11 denies EL0, 10 denies both; without it
 * only XN[1] counts). With the S1PTW flag and HCR_EL2.PTW, a walk to stage-2 Device memory is denied, and a
 * stage-1 walk's WRITE (a hardware AF/dirty update of a stage-1 descriptor) needs S2AP[0] as well as S2AP[1].
 *
 * @remarks A permitted WRITE may still need a walk to set the dirty state: see {@link s2NeedsHwUpdate}.
 */
export function s2PermFault(
  cfg: S2Config,
  descLo: number,
  descHi: number,
  access: AccessKind,
  flags: number,
): boolean {
  switch (access) {
    case AccessKind.READ:
      if ((flags & WalkFlag.S1PTW) !== 0 && cfg.ptw && s2MemAttrIsDevice(s2DescMemAttr(descLo), cfg.fwb)) {
        return true;
      }
      return (descLo & S2AP_R_LO) === 0;
    case AccessKind.WRITE:
      if ((flags & WalkFlag.S1PTW) !== 0) {
        // A stage-1 hardware descriptor update needs read permission as well (ASL TTW branch: R, then W).
        if (cfg.ptw && s2MemAttrIsDevice(s2DescMemAttr(descLo), cfg.fwb)) return true;
        if ((descLo & S2AP_R_LO) === 0) return true;
      }
      return (descLo & S2AP_W_LO) === 0 && !(cfg.hd && (descHi & S2_DBM_HI) !== 0);
    case AccessKind.EXEC: {
      if (s2MemAttrIsDevice(s2DescMemAttr(descLo), cfg.fwb)) return true;
      const xn = s2DescXn(descHi);
      if (!cfg.xnx) return (xn & 2) !== 0;
      // XN[1:0]: 00 all, 01 EL0 only, 10 none, 11 EL1 only.
      if ((flags & WalkFlag.EL0) !== 0) return xn === 2 || xn === 3;
      return xn === 1 || xn === 2;
    }
    default:
      return assertNever(access, 'access kind');
  }
}

/**
 * Whether a permitted access to this leaf makes the hardware write the descriptor: AF = 0 with HA, or a WRITE (not
 * AT) to a DBM=1, S2AP[1]=0 leaf with HD (arm-s2.md §4.7). A TLB hit path re-walks when this is true.
 */
export function s2NeedsHwUpdate(
  cfg: S2Config,
  descLo: number,
  descHi: number,
  access: AccessKind,
  flags: number,
): boolean {
  if (cfg.ha && (descLo & S2_AF_LO) === 0) return true;
  return (
    access === AccessKind.WRITE &&
    (flags & WalkFlag.AT) === 0 &&
    cfg.hd &&
    (descHi & S2_DBM_HI) !== 0 &&
    (descLo & S2AP_W_LO) === 0
  );
}

/**
 * Translates `ipa` through stage 2: fills `out` and returns the fault kind (`FaultType.NONE` on success).
 *
 * Implements ASL `AArch64.S2Translate` + `AArch64.S2Walk` (arm-s2.md §4): level-0 configuration faults from `cfg`,
 * the IPA range check (bits [55:IAS] → Translation L0), the base-address check (Address size L0), then per level a
 * Synchronous External abort when the descriptor read hits non-RAM (`FaultType.SEA_WALK`), Translation for invalid
 * entries and for blocks where none is allowed (incl. `0b01` at level 3), Address size for a next-level table at or
 * above OAS (reported at the table descriptor's level); at the leaf: Address size for an OA at or above OAS, Access
 * flag (AF = 0 without HA), Permission ({@link s2PermFault}); on success, the hardware AF and dirty-state updates,
 * written back with `mem.write64` (a hardware update, not the descriptor-write API) unless `NO_UPDATE`.
 *
 * @param ipa a non-negative integer below 2^53 (an IPA at or above 2^IAS faults).
 * @param flags a bit set of {@link WalkFlag}.
 * @param trace when non-null, receives every descriptor read.
 */
export function s2Walk(
  mem: PhysMem,
  cfg: S2Config,
  ipa: number,
  access: AccessKind,
  flags: number,
  out: WalkResult,
  trace: WalkTrace | null,
): FaultType {
  if (!cfg.enabled || cfg.fault !== FaultType.NONE || !(ipa >= 0 && ipa < cfg.iasSize)) {
    s2WalkNoTables(cfg, ipa, flags, out, trace);
  } else {
    // 0 ≤ ipa < 2^52: pass it as two small integers (lo32 reinterpreted as int32, and bits[51:32]) so that the
    // call, which V8 does not inline, boxes no heap number. JUSTIFY: `>>> 0` is lo32, `| 0` reinterprets it.
    s2WalkTables(mem, cfg, (ipa >>> 0) | 0, Math.floor(ipa / TWO_32), access, flags, out, trace);
  }
  out.ipa = ipa;
  return out.fault;
}

/**
 * The walk outcomes that read no descriptor (ASL `AArch64.S2Translate` preamble): stage 2 disabled (PA = IPA), a
 * configuration fault, or an IPA outside [0, 2^IAS), all at level 0. Everything but `out.ipa`.
 */
function s2WalkNoTables(cfg: S2Config, ipa: number, flags: number, out: WalkResult, trace: WalkTrace | null): void {
  if (trace !== null) trace.reset();
  if (!cfg.enabled) {
    out.reset();
    out.s1ptw = (flags & WalkFlag.S1PTW) !== 0;
    out.pa = ipa;
    return;
  }
  // ASL order: T0SZ/SL faults (Translation), then the IPA range (Translation), then the base (Address size).
  const inRange = ipa >= 0 && ipa < cfg.iasSize;
  const type = cfg.fault === FaultType.ADDRESS_SIZE && inRange ? FaultType.ADDRESS_SIZE : FaultType.TRANSLATION;
  failNoLeaf(out, type, 0, flags, -1, 0, 0);
}

/**
 * The table walk proper ({@link s2Walk} with a valid configuration and an IPA in range), from the IPA's halves:
 * `ipaLoS` = IPA[31:0] as an int32, `ipaHi` = IPA[51:32]. Fills everything in `out` but `out.ipa`.
 *
 * Table addresses travel as halves too (`tHi` = PA[51:32], `tLo` = PA[31:0] as an int32): a descriptor in the
 * memory's flat window is then read with int32 arithmetic only (see `PhysMem.winHi`), and the next table's address
 * comes from the descriptor with two masks. No carry crosses the halves: a table is aligned to its own size, so
 * `tLo + index × 8` stays inside it.
 */
function s2WalkTables(
  mem: PhysMem,
  cfg: S2Config,
  ipaLoS: number,
  ipaHi: number,
  access: AccessKind,
  flags: number,
  out: WalkResult,
  trace: WalkTrace | null,
): FaultType {
  if (trace !== null) trace.reset();
  const fmt: OaFormat = cfg.oaFormat;
  const oa48 = fmt === OaFormat.OA48;
  const oasSize = cfg.oasSize;
  // OAS ≥ 32 (PARange starts at 32 bits): an address is below 2^OAS iff its PA[51:32] is below this.
  const oasHi = (oasSize / TWO_32) | 0; // JUSTIFY: 1 ≤ 2^(OAS − 32) ≤ 2^20, an int32.
  const gShift = cfg.gShift;
  const gMaskLo = -1 << gShift; // JUSTIFY: gShift ≤ 16: the int32 mask of PA[31:G].
  const levelShift = cfg.levelShift;
  const levelIndexMask = cfg.levelIndexMask;
  const ipaLo = ipaLoS >>> 0;
  // The memory's flat window (PhysMem), as halves.
  let win = mem.win;
  let winHi = mem.winHi;
  let winLo = mem.winLo;
  let winLen = mem.winLen;
  let winOff = mem.winOff;
  let level = cfg.startLevel;
  const base = cfg.baseAddr;
  let tHi = Math.floor(base / TWO_32);
  let tLo = base | 0; // JUSTIFY: base < 2^52; `| 0` is PA[31:0] as an int32.
  for (;;) {
    const slot = level + 1;
    const sh = levelShift[slot]!; // JUSTIFY: slot in 0..4 (levels −1..3).
    const indexMask = levelIndexMask[slot]!; // JUSTIFY: as above.
    // IPA[sh + n − 1 : sh] with n ≤ 17 index bits; sh is 12..48.
    const index = sh >= 32 ? (ipaHi >>> (sh - 32)) & indexMask : ((ipaLo >>> sh) | (ipaHi << (32 - sh))) & indexMask;
    const dLo = tLo + (index << 3); // int32: no carry out of the table (see above)
    // The descriptor read (ASL FetchDescriptor).
    let lo: number;
    let hi: number;
    let rel = (dLo - winLo) >>> 0;
    if (tHi === winHi && rel < winLen) {
      const w = (rel >>> 2) + winOff;
      lo = win[w]!; // JUSTIFY: w + 1 < win.length for an 8-byte aligned descriptor in the window.
      hi = win[w + 1]!;
    } else {
      const descPa = tHi * TWO_32 + (dLo >>> 0);
      if (mem.selectWindow(descPa)) {
        // Another flat region or 4 GiB block of one: the window from now on.
        win = mem.win;
        winHi = mem.winHi;
        winLo = mem.winLo;
        winLen = mem.winLen;
        winOff = mem.winOff;
        rel = (dLo - winLo) >>> 0;
        const w = (rel >>> 2) + winOff;
        lo = win[w]!; // JUSTIFY: as above.
        hi = win[w + 1]!;
      } else {
        // Sparse RAM through the read cache; null = not RAM.
        const page = mem.pageForRead(descPa);
        if (page === null) return failNoLeaf(out, FaultType.SEA_WALK, level, flags, descPa, 0, 0);
        const w = pageWordIndex(descPa);
        lo = page[w]!; // JUSTIFY: w ≤ 1022 for an 8-byte aligned descPa.
        hi = page[w + 1]!;
      }
    }
    if (trace !== null) trace.push(level, tHi * TWO_32 + (dLo >>> 0), lo, hi);
    if ((lo & 1) === 0) return failNoLeaf(out, FaultType.TRANSLATION, level, flags, tHi * TWO_32 + (dLo >>> 0), lo, hi);
    if ((lo & 2) !== 0 && level < 3) {
      // NLTA: with the 48-bit format, OA[47:32] = desc[47:32] and OA[31:G] = desc[31:G] (G ≤ 16).
      let nHi: number;
      let nLo: number;
      if (oa48) {
        nHi = hi & OA_47_32_HI;
        nLo = lo & gMaskLo;
      } else {
        const nlta = s2DescAddr(lo, hi, gShift, fmt);
        nHi = Math.floor(nlta / TWO_32);
        nLo = nlta | 0; // JUSTIFY: nlta < 2^52; PA[31:0] as an int32.
      }
      if (nHi >= oasHi) return failNoLeaf(out, FaultType.ADDRESS_SIZE, level, flags, tHi * TWO_32 + (dLo >>> 0), lo, hi);
      tHi = nHi;
      tLo = nLo;
      level++;
      continue;
    }
    const descPa = tHi * TWO_32 + (dLo >>> 0);
    if ((lo & 2) === 0 && cfg.blockOk[slot] === 0) {
      return failNoLeaf(out, FaultType.TRANSLATION, level, flags, descPa, lo, hi);
    }

    // Leaf (block or page). IPA[sh − 1 : 0] is the offset within it.
    const offset = sh >= 32 ? (ipaHi & ((1 << (sh - 32)) - 1)) * TWO_32 + ipaLo : (ipaLo & ((1 << sh) - 1)) >>> 0;
    const pa =
      oa48 && sh < 32
        ? (hi & OA_47_32_HI) * TWO_32 + ((((lo >>> sh) << sh) >>> 0) + offset)
        : s2DescAddr(lo, hi, sh, fmt) + offset;
    fillLeaf(out, cfg, flags, level, sh, descPa, lo, hi, pa);
    if (pa >= oasSize) return failLeaf(out, FaultType.ADDRESS_SIZE, level);
    if ((lo & S2_AF_LO) === 0 && !cfg.ha) return failLeaf(out, FaultType.ACCESS_FLAG, level);
    // A plain read needs S2AP[0] only (the first case of s2PermFault, whose other condition needs S1PTW).
    const denied =
      access === AccessKind.READ && (flags & WalkFlag.S1PTW) === 0 ? (lo & S2AP_R_LO) === 0 : s2PermFault(cfg, lo, hi, access, flags);
    if (denied) return failLeaf(out, FaultType.PERMISSION, level);

    // Hardware updates (FEAT_HAFDBS), only for an access that does not fault.
    if (cfg.ha || cfg.hd) {
      let newLo = cfg.ha ? lo | S2_AF_LO : lo;
      if (access === AccessKind.WRITE && (flags & WalkFlag.AT) === 0 && cfg.hd && (hi & S2_DBM_HI) !== 0) {
        newLo |= S2AP_W_LO;
      }
      newLo >>>= 0;
      if (newLo !== lo && (flags & WalkFlag.NO_UPDATE) === 0) {
        mem.write64(descPa, newLo, hi);
        out.descLo = newLo;
        out.s2ap = s2DescS2ap(newLo);
        out.af = true;
        out.hwUpdated = true;
      }
    }
    return FaultType.NONE;
  }
}
