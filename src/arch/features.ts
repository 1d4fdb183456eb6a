/**
 * CPU features that gate stage-2 translation, decoded from ID_AA64MMFR0/1/2_EL1 (Arm ARM D19 ID registers;
 * reference arm-s2.md §10). Field positions follow arch/arm64/tools/sysreg; the stage-2 granule predicates follow
 * QEMU's `isar_feature_aa64_tgran*_2` (target/arm/cpu-features.h), including TGranX_2 = 0b0000 meaning "as stage 1".
 *
 *   ID_AA64MMFR0_EL1  [3:0] PARange  [23:20] TGran16  [27:24] TGran64  [31:28] TGran4
 *                     [35:32] TGran16_2  [39:36] TGran64_2  [43:40] TGran4_2
 *   ID_AA64MMFR1_EL1  [3:0] HAFDBS  [7:4] VMIDBits  [31:28] XNX
 *   ID_AA64MMFR2_EL1  [3:0] CnP  [19:16] VARange  [31:28] ST  [43:40] FWB  [51:48] TTL  [55:52] BBM
 */

import { field, setField } from './bits.js';

/** The stage-2 relevant feature set of a PE. Plain data; decode once, share everywhere. */
export interface CpuFeatures {
  /** PAMax in bits (32, 36, 40, 42, 44, 48 or 52), decoded from PARange. */
  readonly paBits: number;
  /** Raw ID_AA64MMFR0_EL1.PARange (0..6); a reserved value decodes as 6 when ≥ 6. */
  readonly paRange: number;
  /** 4 KB granule implemented at stage 2 (TGran4_2 ≥ 2, or 0 and TGran4 implemented). */
  readonly s2Gran4k: boolean;
  /** 16 KB granule implemented at stage 2. */
  readonly s2Gran16k: boolean;
  /** 64 KB granule implemented at stage 2. */
  readonly s2Gran64k: boolean;
  /** FEAT_LPA2 at stage 2 for 4 KB (TGran4_2 = 3, or 0 and TGran4 = 1): VTCR_EL2.DS is honoured. */
  readonly s2Lpa2Gran4k: boolean;
  /** FEAT_LPA2 at stage 2 for 16 KB (TGran16_2 = 3, or 0 and TGran16 = 2). */
  readonly s2Lpa2Gran16k: boolean;
  /** ID_AA64MMFR1_EL1.HAFDBS: 0 none, 1 AF, 2 AF + dirty, 3 + table AF, 4 + HDBSS. */
  readonly hafdbs: number;
  /** FEAT_XNX: stage-2 XN[1:0] distinguishes EL0 from EL1 fetches. */
  readonly xnx: boolean;
  /** FEAT_VMID16: VTCR_EL2.VS selects 16-bit VMIDs. */
  readonly vmid16: boolean;
  /** FEAT_TTST: max T0SZ 48 (47 for 64 KB) and 4 KB SL0 = 0b11 (start level 3). */
  readonly ttst: boolean;
  /** FEAT_S2FWB: HCR_EL2.FWB is honoured. */
  readonly fwb: boolean;
  /** ID_AA64MMFR2_EL1.BBM level (0, 1 or 2). */
  readonly bbm: number;
  /** FEAT_TTL: TLBI level hints. */
  readonly ttl: boolean;
  /** FEAT_LVA: 52-bit VAs with 64 KB (VARange = 1). Stage 2 does not use it (the ASL uses PAMax). */
  readonly lva: boolean;
  /** FEAT_TTCNP: VTTBR_EL2.CnP. */
  readonly cnp: boolean;
}

/** PARange / VTCR_EL2.PS encodings → address bits (ASL `PhysicalAddressSize`; reserved 7 taken as 52). */
const PA_BITS = [32, 36, 40, 42, 44, 48, 52, 52] as const;

/**
 * Address bits for a PARange or VTCR_EL2.PS encoding (0..7): 32, 36, 40, 42, 44, 48, 52. The encoding 0b111
 * (56 bits with FEAT_D128, out of scope) is treated as 52.
 */
export function paBitsOf(enc: number): number {
  return PA_BITS[enc & 7]!; // JUSTIFY: index in 0..7.
}

/** The PARange encoding of a PA size in bits, or -1 when no encoding exists. */
export function paRangeOf(bits: number): number {
  for (let i = 0; i < 7; i++) if (PA_BITS[i] === bits) return i;
  return -1;
}

/**
 * Decodes the stage-2 relevant fields of ID_AA64MMFR0/1/2_EL1, each given as halves.
 *
 * @remarks TGranX_2 = 0b0000 defers to the stage-1 field (QEMU `isar_feature_aa64_tgran4_2` etc.). TGran4 and
 * TGran64 are signed fields where 0b1111 means "not implemented".
 */
export function decodeCpuFeatures(
  mmfr0Lo: number,
  mmfr0Hi: number,
  mmfr1Lo: number,
  mmfr1Hi: number,
  mmfr2Lo: number,
  mmfr2Hi: number,
): CpuFeatures {
  void mmfr1Hi; // ID_AA64MMFR1_EL1[63:32] holds no field stage 2 depends on (ETS, HCX, AFP, … are out of scope).
  const paRange = Math.min(field(mmfr0Lo, 3, 0), 6);
  const tgran16 = field(mmfr0Lo, 23, 20);
  const tgran64 = field(mmfr0Lo, 27, 24);
  const tgran4 = field(mmfr0Lo, 31, 28);
  const tgran16_2 = field(mmfr0Hi, 35 - 32, 32 - 32);
  const tgran64_2 = field(mmfr0Hi, 39 - 32, 36 - 32);
  const tgran4_2 = field(mmfr0Hi, 43 - 32, 40 - 32);
  // Stage-1 presence: TGran4/TGran64 are signed (0xf = NI, ≥ 0 implemented), TGran16 unsigned (≥ 1).
  const s1Has4k = tgran4 !== 0xf && tgran4 < 8;
  const s1Has16k = tgran16 >= 1;
  const s1Has64k = tgran64 !== 0xf && tgran64 < 8;
  return {
    paBits: paBitsOf(paRange),
    paRange,
    s2Gran4k: tgran4_2 >= 2 || (tgran4_2 === 0 && s1Has4k),
    s2Gran16k: tgran16_2 >= 2 || (tgran16_2 === 0 && s1Has16k),
    s2Gran64k: tgran64_2 >= 2 || (tgran64_2 === 0 && s1Has64k),
    s2Lpa2Gran4k: tgran4_2 >= 3 || (tgran4_2 === 0 && tgran4 === 1),
    s2Lpa2Gran16k: tgran16_2 >= 3 || (tgran16_2 === 0 && tgran16 === 2),
    hafdbs: field(mmfr1Lo, 3, 0),
    vmid16: field(mmfr1Lo, 7, 4) === 2,
    xnx: field(mmfr1Lo, 31, 28) !== 0,
    cnp: field(mmfr2Lo, 3, 0) !== 0,
    lva: field(mmfr2Lo, 19, 16) !== 0,
    ttst: field(mmfr2Lo, 31, 28) !== 0,
    fwb: field(mmfr2Hi, 43 - 32, 40 - 32) !== 0,
    ttl: field(mmfr2Hi, 51 - 32, 48 - 32) !== 0,
    bbm: field(mmfr2Hi, 55 - 32, 52 - 32),
  };
}

/** Register values as halves, the inverse direction of {@link decodeCpuFeatures}. */
export interface IdMmfrRegs {
  readonly mmfr0Lo: number;
  readonly mmfr0Hi: number;
  readonly mmfr1Lo: number;
  readonly mmfr1Hi: number;
  readonly mmfr2Lo: number;
  readonly mmfr2Hi: number;
}

/**
 * Encodes a feature set back into ID_AA64MMFR0/1/2_EL1 values (for printing and for round-trip tests). Stage-2
 * granules are encoded in the explicit TGranX_2 form (never 0b0000), and the stage-1 fields mirror them.
 */
export function encodeCpuFeatures(f: CpuFeatures): IdMmfrRegs {
  let m0lo = setField(0, 3, 0, f.paRange);
  m0lo = setField(m0lo, 23, 20, f.s2Gran16k ? (f.s2Lpa2Gran16k ? 2 : 1) : 0);
  m0lo = setField(m0lo, 27, 24, f.s2Gran64k ? 0 : 0xf);
  m0lo = setField(m0lo, 31, 28, f.s2Gran4k ? (f.s2Lpa2Gran4k ? 1 : 0) : 0xf);
  let m0hi = setField(0, 35 - 32, 32 - 32, f.s2Gran16k ? (f.s2Lpa2Gran16k ? 3 : 2) : 1);
  m0hi = setField(m0hi, 39 - 32, 36 - 32, f.s2Gran64k ? 2 : 1);
  m0hi = setField(m0hi, 43 - 32, 40 - 32, f.s2Gran4k ? (f.s2Lpa2Gran4k ? 3 : 2) : 1);
  let m1lo = setField(0, 3, 0, f.hafdbs);
  m1lo = setField(m1lo, 7, 4, f.vmid16 ? 2 : 0);
  m1lo = setField(m1lo, 31, 28, f.xnx ? 1 : 0);
  let m2lo = setField(0, 3, 0, f.cnp ? 1 : 0);
  m2lo = setField(m2lo, 19, 16, f.lva ? 1 : 0);
  m2lo = setField(m2lo, 31, 28, f.ttst ? 1 : 0);
  let m2hi = setField(0, 43 - 32, 40 - 32, f.fwb ? 1 : 0);
  m2hi = setField(m2hi, 51 - 32, 48 - 32, f.ttl ? 1 : 0);
  m2hi = setField(m2hi, 55 - 32, 52 - 32, f.bbm);
  return { mmfr0Lo: m0lo, mmfr0Hi: m0hi, mmfr1Lo: m1lo, mmfr1Hi: 0, mmfr2Lo: m2lo, mmfr2Hi: m2hi };
}

/**
 * QEMU 7.2 `-cpu max`, as recorded by the oracle (oracle/FORMAT.md): ID_AA64MMFR0_EL1 = 0x323_1020_1126,
 * ID_AA64MMFR1_EL1 = 0x110_1021_1122, ID_AA64MMFR2_EL1 = 0x1021_0110_1001_1011. PAMax 52, all granules with
 * stage-2 LPA2, HAFDBS 2, XNX, VMID16, TTST, FWB, BBM 2, TTL.
 */
export const QEMU_MAX_FEATURES: CpuFeatures = decodeCpuFeatures(
  0x1020_1126,
  0x323,
  0x1021_1122,
  0x110,
  0x1001_1011,
  0x1021_0110,
);

/**
 * An Armv8.0-like PE with a 40-bit PA, all granules, no LPA2/HAFDBS/XNX/TTST/FWB and 8-bit VMIDs (for the
 * "feature absent" sides of tests).
 */
export const ARMV8_0_PA40_FEATURES: CpuFeatures = decodeCpuFeatures(0x0000_0002, 0x0000_0222, 0, 0, 0, 0);

/**
 * A PE like the ones pKVM targets (Armv8.4-ish): 48-bit PA, 4K/16K/64K without LPA2, HAFDBS 2, VMID16, XNX, TTST,
 * FWB, BBM 2.
 */
export const ARMV8_4_PA48_FEATURES: CpuFeatures = decodeCpuFeatures(
  0x0010_0005,
  0x0000_0222,
  0x1000_0022,
  0,
  0x1000_0001,
  0x0021_0100,
);
