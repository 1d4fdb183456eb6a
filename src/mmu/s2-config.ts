/**
 * Stage-2 walk parameters decoded once from VTCR_EL2, VTTBR_EL2, HCR_EL2 and the ID registers (ASL
 * `AArch64.GetS2TTWParams`, `S2MinTxSZ`, `S2StartLevel`, `S2InvalidSL`, `S2InconsistentSL`, `S2TTBaseAddress`,
 * `PhysicalAddressSize`; reference arm-s2.md §1–§2, §10). The walker reads only this object, so the per-walk cost
 * of the configuration checks is a field test.
 *
 * Choices where the architecture leaves freedom (arm-s2.md §11, §12):
 * - unimplemented or reserved TG0 → the smallest implemented stage-2 granule (QEMU `sanitize_gran_size`, #15);
 * - T0SZ below the minimum or above the maximum → Translation fault, level 0 (never clamped; ASL with FEAT_LPA,
 *   QEMU always, #1 #16); the minimum follows the ASL (64 − PAMax, capped), not QEMU;
 * - start-level validity is checked against PAMax, as the ASL does (QEMU 7.2 checks PS, oracle README #3);
 * - 64K OA[51:48] in descriptor bits[15:12] is used only when PAMax = 52 (FEAT_LPA); otherwise those bits are
 *   RES0 and ignored (ASL: IMPDEF).
 */

import { alignDown } from '../arch/bits.js';
import { OaFormat, oaFormatOf } from '../arch/desc-codec.js';
import { paBitsOf, type CpuFeatures } from '../arch/features.js';
import { FaultType } from '../arch/fault.js';
import { Granule, blockAllowed, granuleShift, granuleStride } from '../arch/granule.js';
import { hcrFwb, hcrPtw, hcrRw, hcrS2Enabled } from '../arch/hcr.js';
import {
  VtcrTg0,
  vtcrDs,
  vtcrHa,
  vtcrHd,
  vtcrPs,
  vtcrSh0,
  vtcrSl0,
  vtcrSl2,
  vtcrT0sz,
  vtcrTg0,
  vtcrVs,
} from '../arch/vtcr.js';
import { vttbrBaddr, vttbrVmid } from '../arch/vttbr.js';

/** Number of level slots in the per-level tables: levels −1..3 at index level + 1. */
const LEVEL_SLOTS = 5;

/**
 * 2^k for k = 0…128: every exponent the decode uses (sizes up to 2^68 for a level −1 entry of a 64K granule, IAS up
 * to 64). A table read instead of `2 **`, which V8 compiles to a pow() call.
 */
const POW2 = new Float64Array(129);
for (let k = 0; k < POW2.length; k++) POW2[k] = 2 ** k;

/** Decoded stage-2 walk parameters. Preallocate one and refill it with {@link decodeS2Config}. */
export class S2Config {
  /** Stage 2 is enabled (HCR_EL2.VM or DC); when false the walk returns PA = IPA. */
  enabled = false;
  /**
   * First configuration fault in ASL order, or NONE: TRANSLATION (T0SZ out of range, SL invalid or inconsistent)
   * or ADDRESS_SIZE (table base beyond OAS). The walker checks the IPA range between the two, as the ASL does.
   */
  fault: FaultType = FaultType.NONE;
  /** Level of {@link fault}: always 0. */
  faultLevel = 0;
  /** Effective granule. */
  granule: Granule = Granule.G4K;
  /** log2 granule size (12/14/16). */
  gShift = 12;
  /** Bits per level (9/11/13). */
  stride = 9;
  /** Effective DS (FEAT_LPA2, 4K/16K). */
  ds = false;
  /** Effective SL2 (= SL2 AND DS, 4K only). */
  sl2 = false;
  /** Effective HA. */
  ha = false;
  /** Effective HD (needs HA). */
  hd = false;
  /** Effective HCR_EL2.FWB. */
  fwb = false;
  /** HCR_EL2.PTW. */
  ptw = false;
  /** FEAT_XNX: XN[1:0] distinguishes EL0/EL1 fetches. */
  xnx = false;
  /** EL1 is AArch64 (HCR_EL2.RW). */
  el1Aarch64 = true;
  /** PAMax of the PE. */
  paBits = 48;
  /** The PE implements 52-bit PAs (FEAT_LPA). */
  pa52 = false;
  /** Raw VTCR_EL2.PS. */
  ps = 0;
  /** T0SZ as programmed. */
  t0sz = 0;
  /** Input address size, 64 − T0SZ. */
  ias = 0;
  /** 2^ias. */
  iasSize = 0;
  /** Effective output address size in bits (ASL `PhysicalAddressSize`: PS clamped to PAMax, 48 without LPA). */
  oas = 0;
  /** 2^oas. */
  oasSize = 0;
  /** VTCR_EL2.SH0 (the output shareability when DS=1). */
  sh0 = 0;
  /** Start level (−1..3). */
  startLevel = 0;
  /** Number of concatenated tables at the start level (1..16). */
  concatTables = 1;
  /** log2 bytes of the (possibly concatenated) initial table. */
  tsize = 0;
  /** 52-bit table base form in VTTBR (bits[5:2] = BADDR[51:48]). */
  addr52 = false;
  /** Initial table base, aligned down to 2^tsize. */
  baseAddr = 0;
  /** The OA/NLTA format of descriptors. */
  oaFormat: OaFormat = OaFormat.OA48;
  /** VMID (8 or 16 bits per VTCR_EL2.VS and FEAT_VMID16). */
  vmid = 0;
  /** 16-bit VMIDs in effect. */
  vmid16 = false;
  /** Bytes one entry maps per level, at index level + 1 (ASL `TranslationSize`). */
  readonly levelSize = new Float64Array(LEVEL_SLOTS);
  /** log2 of {@link levelSize}. */
  readonly levelShift = new Int8Array(LEVEL_SLOTS);
  /** Entries of a table per level (the start level may be larger: concatenation), at index level + 1. */
  readonly levelEntries = new Float64Array(LEVEL_SLOTS);
  /** Entries − 1 per level (an index mask), at index level + 1. */
  readonly levelIndexMask = new Uint32Array(LEVEL_SLOTS);
  /** 1 when a block descriptor is allowed at that level, at index level + 1 (ASL `BlockDescSupported`). */
  readonly blockOk = new Uint8Array(LEVEL_SLOTS);
}

/**
 * The smallest stage-2 granule the PE implements, the fallback for an unimplemented or reserved TG0 (QEMU
 * `sanitize_gran_size`).
 */
function sanitizeGranule(tg0: number, feat: CpuFeatures): Granule {
  if (tg0 === VtcrTg0.G4K && feat.s2Gran4k) return Granule.G4K;
  if (tg0 === VtcrTg0.G16K && feat.s2Gran16k) return Granule.G16K;
  if (tg0 === VtcrTg0.G64K && feat.s2Gran64k) return Granule.G64K;
  if (feat.s2Gran4k) return Granule.G4K;
  if (feat.s2Gran16k) return Granule.G16K;
  return Granule.G64K;
}

/** Start level from SL0/SL2 (ASL `S2StartLevel`, arm-s2.md §1.5). */
function startLevelOf(g: Granule, sl0: number, sl2: boolean): number {
  if (g === Granule.G4K) {
    if (sl2) return -1;
    return sl0 === 0 ? 2 : sl0 === 1 ? 1 : sl0 === 2 ? 0 : 3;
  }
  return 3 - sl0;
}

/** SL0/SL2 reserved or not supported by the PE (ASL `S2InvalidSL`, arm-s2.md §1.5). */
function slInvalid(g: Granule, sl0: number, sl2: boolean, ds: boolean, feat: CpuFeatures): boolean {
  const pa = feat.paBits;
  switch (g) {
    case Granule.G4K:
      if (sl2) return sl0 !== 0 || pa < 52;
      if (sl0 === 2) return pa < 44;
      if (sl0 === 3) return !feat.ttst;
      return false;
    case Granule.G16K:
      if (sl0 === 3) return !ds || pa < 52;
      if (sl0 === 2) return pa < 42;
      return false;
    case Granule.G64K:
      if (sl0 === 3) return true;
      if (sl0 === 2) return pa < 44;
      return false;
  }
}

/**
 * Decodes the stage-2 configuration into `out` (no allocation).
 *
 * Mirrors the ASL `AArch64.S2Translate` preamble: effective granule, DS/SL2/HA/HD/FWB, T0SZ limits
 * (`S2MinTxSZ`: 64 − min(PAMax, 52 or 48), min(·, 24) for an AArch32 EL1; max 39, or 48/47 with FEAT_TTST),
 * start level and its validity and consistency with IAS, concatenation, the aligned table base (`S2TTBaseAddress`,
 * at least 64-byte aligned in the 52-bit form), OAS (`PS` clamped to PAMax), the VMID. Configuration faults are
 * recorded in `out.fault` (level 0), never thrown.
 */
export function decodeS2Config(
  vtcrLo: number,
  vtcrHi: number,
  vttbrLo: number,
  vttbrHi: number,
  hcrLo: number,
  hcrHi: number,
  feat: CpuFeatures,
  out: S2Config,
): void {
  out.enabled = hcrS2Enabled(hcrLo);
  out.fault = FaultType.NONE;
  out.faultLevel = 0;
  const g = sanitizeGranule(vtcrTg0(vtcrLo), feat);
  const G = granuleShift(g);
  const S = granuleStride(g);
  out.granule = g;
  out.gShift = G;
  out.stride = S;
  const ds =
    vtcrDs(vtcrHi) &&
    ((g === Granule.G4K && feat.s2Lpa2Gran4k) || (g === Granule.G16K && feat.s2Lpa2Gran16k));
  out.ds = ds;
  out.sl2 = g === Granule.G4K && ds && vtcrSl2(vtcrHi);
  out.ha = feat.hafdbs >= 1 && vtcrHa(vtcrLo);
  out.hd = out.ha && feat.hafdbs >= 2 && vtcrHd(vtcrLo);
  out.fwb = feat.fwb && hcrFwb(hcrHi);
  out.ptw = hcrPtw(hcrLo);
  out.xnx = feat.xnx;
  out.el1Aarch64 = hcrRw(hcrLo);
  out.paBits = feat.paBits;
  out.pa52 = feat.paBits >= 52;
  out.sh0 = vtcrSh0(vtcrLo);
  out.vmid16 = feat.vmid16 && vtcrVs(vtcrLo);
  out.vmid = vttbrVmid(vttbrHi, out.vmid16);

  // OAS (ASL PhysicalAddressSize): PS clamped to PAMax, and to 48 unless FEAT_LPA with 64K or FEAT_LPA2. With 4K/16K
  // and DS=0 no descriptor or VTTBR can hold an address bit above 47, so a 52-bit OAS there changes no outcome.
  const ps = vtcrPs(vtcrLo);
  out.ps = ps;
  const lpa2 = feat.s2Lpa2Gran4k || feat.s2Lpa2Gran16k;
  const psMax = feat.paBits >= 52 && (g === Granule.G64K || lpa2) ? 52 : 48;
  out.oas = Math.min(paBitsOf(ps), feat.paBits, psMax);
  out.oasSize = POW2[out.oas]!; // JUSTIFY: oas ≤ 52.
  out.oaFormat = oaFormatOf(g, ds, out.pa52);

  // T0SZ limits (ASL S2MinTxSZ / MaxTxSZ).
  const t0sz = vtcrT0sz(vtcrLo);
  out.t0sz = t0sz;
  let minT0sz = 64 - Math.min(feat.paBits, g === Granule.G64K || ds ? 52 : 48);
  if (!out.el1Aarch64) minT0sz = Math.min(minT0sz, 24);
  const maxT0sz = feat.ttst ? (g === Granule.G64K ? 47 : 48) : 39;
  const ias = 64 - t0sz;
  out.ias = ias;
  out.iasSize = POW2[ias]!; // JUSTIFY: T0SZ is 6 bits, so 1 ≤ ias ≤ 64.

  const sl0 = vtcrSl0(vtcrLo);
  const start = startLevelOf(g, sl0, out.sl2);
  out.startLevel = start;
  const levels = 3 - start;
  const startShift = levels * S + G;
  for (let l = -1; l <= 3; l++) {
    const sh = G + (3 - l) * S;
    out.levelShift[l + 1] = sh;
    out.levelSize[l + 1] = POW2[sh]!; // JUSTIFY: sh ≤ 16 + 4 * 13 = 68.
    out.levelEntries[l + 1] = POW2[S]!; // JUSTIFY: S ≤ 13.
    out.blockOk[l + 1] = l >= 0 && blockAllowed(g, l, ds, out.pa52) ? 1 : 0;
  }
  // The start level indexes IAS − startShift bits (≤ S + 4 in a consistent configuration; capped for the rest).
  const startBits = Math.min(Math.max(ias - startShift, 0), 31);
  out.levelEntries[start + 1] = POW2[startBits]!; // JUSTIFY: 0 ≤ startBits ≤ 31.
  for (let i = 0; i < LEVEL_SLOTS; i++) out.levelIndexMask[i] = out.levelEntries[i]! - 1; // JUSTIFY: i < 5.
  out.concatTables = startBits > S ? POW2[startBits - S]! : 1; // JUSTIFY: 0 < startBits − S ≤ 31.

  // Table base (ASL S2TTBaseAddress).
  out.addr52 = ds || (g === Granule.G64K && ps === 6 && out.pa52);
  let tsize = ias - startShift + 3;
  if (out.addr52) tsize = Math.max(tsize, 6);
  out.tsize = tsize;
  out.baseAddr = alignDown(vttbrBaddr(vttbrLo, vttbrHi, out.addr52), Math.max(tsize, 0));

  // Configuration faults in ASL order: T0SZ, SL invalid, SL inconsistent (all Translation L0), then — after the
  // per-walk IPA range check — the base address (Address size L0).
  const minIas = levels * S + G + 1;
  const maxIas = minIas + S - 1 + 4;
  if (t0sz < minT0sz || t0sz > maxT0sz) {
    out.fault = FaultType.TRANSLATION;
  } else if (slInvalid(g, sl0, out.sl2, ds, feat) || ias < minIas || ias > maxIas) {
    out.fault = FaultType.TRANSLATION;
  } else if (out.baseAddr >= out.oasSize) {
    out.fault = FaultType.ADDRESS_SIZE;
  }
}

/** A fresh {@link S2Config} decoded from register halves (convenience for tests and the composition root). */
export function makeS2Config(
  vtcr: { lo: number; hi: number },
  vttbr: { lo: number; hi: number },
  hcr: { lo: number; hi: number },
  feat: CpuFeatures,
): S2Config {
  const c = new S2Config();
  decodeS2Config(vtcr.lo, vtcr.hi, vttbr.lo, vttbr.hi, hcr.lo, hcr.hi, feat, c);
  return c;
}

/** The initial-table entry address for an IPA, as the walk computes it (ASL `S2SLTTEntryAddress`). */
export function s2StartEntryAddr(cfg: S2Config, ipa: number): number {
  return cfg.baseAddr + Math.floor(ipa / cfg.levelSize[cfg.startLevel + 1]!) * 8; // JUSTIFY: slot in 0..4.
}
