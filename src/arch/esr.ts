/**
 * ESR_EL2, the Exception Syndrome Register for exceptions taken to EL2 (Arm ARM D19.2 "ESR_EL2"; reference
 * arm-s2.md §6.2–§6.4, §6.7). Linux names the same fields in arch/arm64/include/asm/esr.h (`ESR_ELx_*`).
 *
 *   63     56 55        32 31   26 25  24                                                        0
 *  [  RES0  ][   ISS2     ][  EC  ][IL][                          ISS                              ]
 *
 *  Data abort ISS (EC 0x24 / 0x25):
 *   24  23:22 21  20:16 15  14  13   12:11 10  9  8  7     6   5:0
 *  [ISV][SAS][SSE][SRT][SF][AR][VNCR][SET][FnV][EA][CM][S1PTW][WnR][DFSC]
 *
 *  Instruction abort ISS (EC 0x20 / 0x21): [12:11] SET, [10] FnV, [9] EA, [7] S1PTW, [5:0] IFSC; the rest RES0.
 *  HVC / SMC ISS (EC 0x16 / 0x17): [15:0] imm16.
 *
 * Everything in our scope lives in bits[31:0] (ISS2 is zero: no ST64BV, no FEAT_S1POE/GCS/MTE syndromes), so
 * encoders produce the low half and the high half is 0. Values are unsigned 32-bit numbers (`>>> 0`).
 */

/** Exception classes (ESR_ELx.EC, bits[31:26]) that s2emu raises or decodes (Arm ARM D19.2, table "EC"). */
export const EsrEc = {
  /** Unknown reason. */
  UNKNOWN: 0x00,
  /** HVC executed in AArch64 state. */
  HVC64: 0x16,
  /** SMC executed in AArch64 state, trapped to EL2 by HCR_EL2.TSC. */
  SMC64: 0x17,
  /** Instruction Abort from a lower Exception level. */
  IABT_LOW: 0x20,
  /** Instruction Abort taken without a change in Exception level. */
  IABT_CUR: 0x21,
  /** Data Abort from a lower Exception level. */
  DABT_LOW: 0x24,
  /** Data Abort taken without a change in Exception level (also AT faults at EL2 and FEAT_NV2 VNCR faults). */
  DABT_CUR: 0x25,
} as const;
/** An exception class s2emu knows. */
export type EsrEc = (typeof EsrEc)[keyof typeof EsrEc];

/** bits[31:26]: EC. */
export const ESR_EC_SHIFT = 26;
/** EC field width. */
export const ESR_EC_MASK = 0x3f;
/** bit[25]: IL, 1 = 32-bit instruction (RES1 for instruction aborts and data aborts with ISV=0). */
export const ESR_IL_LO = 1 << 25;
/** bits[24:0]: ISS. */
export const ESR_ISS_MASK = 0x01ff_ffff;

/** bit[24]: ISV, the instruction syndrome in ISS[23:14] is valid. */
export const ESR_ISV_LO = 1 << 24;
/** bits[23:22]: SAS, access size log2 (00 byte … 11 doubleword). */
export const ESR_SAS_SHIFT = 22;
/** bit[21]: SSE, the load sign-extends. */
export const ESR_SSE_LO = 1 << 21;
/** bits[20:16]: SRT, the transfer register number (31 = XZR). */
export const ESR_SRT_SHIFT = 16;
/** bit[15]: SF, the transfer register is 64 bits wide (Xt). */
export const ESR_SF_LO = 1 << 15;
/** bit[14]: AR, acquire/release semantics. */
export const ESR_AR_LO = 1 << 14;
/** bit[13]: VNCR, the fault came from a FEAT_NV2 VNCR_EL2-redirected access. */
export const ESR_VNCR_LO = 1 << 13;
/** bits[12:11]: SET, synchronous error type of an external abort (FEAT_RAS). */
export const ESR_SET_SHIFT = 11;
/** bit[10]: FnV, FAR is not valid. */
export const ESR_FNV_LO = 1 << 10;
/** bit[9]: EA, external abort type (IMPLEMENTATION DEFINED classification). */
export const ESR_EA_LO = 1 << 9;
/** bit[8]: CM, the fault came from a cache-maintenance or address-translation instruction. */
export const ESR_CM_LO = 1 << 8;
/** bit[7]: S1PTW, stage-2 fault on an access made for a stage-1 translation table walk. */
export const ESR_S1PTW_LO = 1 << 7;
/** bit[6]: WnR, 1 = the abort was caused by a write (always 1 for CM). */
export const ESR_WNR_LO = 1 << 6;
/** bits[5:0]: DFSC / IFSC, the fault status code (fault.ts). */
export const ESR_FSC_MASK = 0x3f;
/** bits[15:0]: imm16 of HVC / SMC. */
export const ESR_IMM16_MASK = 0xffff;
/**
 * Bits of a data-abort ISS that describe the instruction (ISV, SAS, SSE, SRT, SF, AR): RES0 unless ISV=1.
 * (bits[24:14])
 */
export const ESR_INSN_SYNDROME_MASK = 0x01ff_c000;

/** SAS values: log2 of the access size in bytes. */
export const Sas = { BYTE: 0, HALFWORD: 1, WORD: 2, DOUBLEWORD: 3 } as const;
/** A SAS value. */
export type Sas = (typeof Sas)[keyof typeof Sas];

/** EC (bits[31:26]) of a syndrome's low half. */
export function esrEc(lo: number): number {
  return (lo >>> ESR_EC_SHIFT) & ESR_EC_MASK;
}
/** IL (bit[25]). */
export function esrIl(lo: number): boolean {
  return (lo & ESR_IL_LO) !== 0;
}
/** ISS (bits[24:0]). */
export function esrIss(lo: number): number {
  return lo & ESR_ISS_MASK;
}
/** ISV (bit[24]). */
export function esrIsv(lo: number): boolean {
  return (lo & ESR_ISV_LO) !== 0;
}
/** SAS (bits[23:22]). */
export function esrSas(lo: number): Sas {
  return ((lo >>> ESR_SAS_SHIFT) & 3) as Sas;
}
/** SSE (bit[21]). */
export function esrSse(lo: number): boolean {
  return (lo & ESR_SSE_LO) !== 0;
}
/** SRT (bits[20:16]). */
export function esrSrt(lo: number): number {
  return (lo >>> ESR_SRT_SHIFT) & 0x1f;
}
/** SF (bit[15]). */
export function esrSf(lo: number): boolean {
  return (lo & ESR_SF_LO) !== 0;
}
/** AR (bit[14]). */
export function esrAr(lo: number): boolean {
  return (lo & ESR_AR_LO) !== 0;
}
/** VNCR (bit[13]). */
export function esrVncr(lo: number): boolean {
  return (lo & ESR_VNCR_LO) !== 0;
}
/** SET (bits[12:11]). */
export function esrSet(lo: number): number {
  return (lo >>> ESR_SET_SHIFT) & 3;
}
/** FnV (bit[10]). */
export function esrFnV(lo: number): boolean {
  return (lo & ESR_FNV_LO) !== 0;
}
/** EA (bit[9]). */
export function esrEa(lo: number): boolean {
  return (lo & ESR_EA_LO) !== 0;
}
/** CM (bit[8]). */
export function esrCm(lo: number): boolean {
  return (lo & ESR_CM_LO) !== 0;
}
/** S1PTW (bit[7]). */
export function esrS1ptw(lo: number): boolean {
  return (lo & ESR_S1PTW_LO) !== 0;
}
/** WnR (bit[6]). */
export function esrWnR(lo: number): boolean {
  return (lo & ESR_WNR_LO) !== 0;
}
/** DFSC / IFSC (bits[5:0]). */
export function esrFsc(lo: number): number {
  return lo & ESR_FSC_MASK;
}
/** imm16 of an HVC / SMC syndrome (bits[15:0]). */
export function esrImm16(lo: number): number {
  return lo & ESR_IMM16_MASK;
}
/** True for the abort classes (EC 0x20, 0x21, 0x24, 0x25). */
export function esrIsAbort(lo: number): boolean {
  const ec = esrEc(lo);
  return ec === EsrEc.IABT_LOW || ec === EsrEc.IABT_CUR || ec === EsrEc.DABT_LOW || ec === EsrEc.DABT_CUR;
}
/** True for the data-abort classes (EC 0x24, 0x25). */
export function esrIsDataAbort(lo: number): boolean {
  const ec = esrEc(lo);
  return ec === EsrEc.DABT_LOW || ec === EsrEc.DABT_CUR;
}

/** Low half of a syndrome from EC, IL and ISS (ESR_ELx bits[31:0]). */
export function esrEncode(ec: number, il: boolean, iss: number): number {
  return (((ec & ESR_EC_MASK) << ESR_EC_SHIFT) | (il ? ESR_IL_LO : 0) | (iss & ESR_ISS_MASK)) >>> 0;
}

/**
 * The instruction-syndrome part of a data-abort ISS (bits[24:14] with ISV=1) for a load or store of a single
 * general-purpose register, computed once per decoded instruction and OR-ed into every abort it causes
 * (arm-s2.md §6.3). Mirrors the `ISS` a translator precomputes in QEMU (`disas_set_insn_syndrome`, target/arm).
 *
 * @param sas access size log2 (0 byte … 3 doubleword)
 * @param sse the load sign-extends (LDRSB/LDRSH/LDRSW)
 * @param srt transfer register number 0–31 (31 = XZR/WZR)
 * @param sf the register is 64 bits wide (Xt)
 * @param ar load-acquire / store-release
 * @returns bits[24:14] of the ISS with ISV set
 */
export function esrInsnSyndrome(sas: Sas, sse: boolean, srt: number, sf: boolean, ar: boolean): number {
  return (
    (ESR_ISV_LO |
      ((sas & 3) << ESR_SAS_SHIFT) |
      (sse ? ESR_SSE_LO : 0) |
      ((srt & 0x1f) << ESR_SRT_SHIFT) |
      (sf ? ESR_SF_LO : 0) |
      (ar ? ESR_AR_LO : 0)) >>>
    0
  );
}

/**
 * Low half of a data-abort syndrome (EC 0x24 from a lower EL, 0x25 from the same EL).
 *
 * @param ec {@link EsrEc.DABT_LOW} or {@link EsrEc.DABT_CUR}
 * @param insnSyndrome bits[24:14] from {@link esrInsnSyndrome}, or 0 for ISV=0
 * @param cm cache maintenance / AT instruction (WnR is then forced to 1, Arm ARM "WnR")
 * @param s1ptw stage-2 fault on a stage-1 walk
 * @param wnr the access was a write
 * @param fsc DFSC
 * @returns ESR_EL2 bits[31:0]; IL is 1 (A64 instructions are 32-bit; IL is RES1 when ISV=0)
 */
export function esrDataAbort(
  ec: number,
  insnSyndrome: number,
  cm: boolean,
  s1ptw: boolean,
  wnr: boolean,
  fsc: number,
): number {
  return (
    (((ec & ESR_EC_MASK) << ESR_EC_SHIFT) |
      ESR_IL_LO |
      (insnSyndrome & ESR_INSN_SYNDROME_MASK) |
      (cm ? ESR_CM_LO : 0) |
      (s1ptw ? ESR_S1PTW_LO : 0) |
      (wnr || cm ? ESR_WNR_LO : 0) |
      (fsc & ESR_FSC_MASK)) >>>
    0
  );
}

/**
 * Low half of an instruction-abort syndrome (EC 0x20 / 0x21): IL=1, S1PTW, IFSC (arm-s2.md §6.4).
 * Mirrors QEMU `syn_insn_abort()` (target/arm/syndrome.h).
 */
export function esrInsnAbort(ec: number, s1ptw: boolean, fsc: number): number {
  return (((ec & ESR_EC_MASK) << ESR_EC_SHIFT) | ESR_IL_LO | (s1ptw ? ESR_S1PTW_LO : 0) | (fsc & ESR_FSC_MASK)) >>> 0;
}

/** Low half of the syndrome of `HVC #imm16` from AArch64 (EC 0x16, IL=1). Mirrors QEMU `syn_aa64_hvc()`. */
export function esrHvc64(imm16: number): number {
  return esrEncode(EsrEc.HVC64, true, imm16 & ESR_IMM16_MASK);
}

/** Low half of the syndrome of a trapped `SMC #imm16` from AArch64 (EC 0x17, IL=1). Mirrors QEMU `syn_aa64_smc()`. */
export function esrSmc64(imm16: number): number {
  return esrEncode(EsrEc.SMC64, true, imm16 & ESR_IMM16_MASK);
}

/** Every field of a syndrome, decoded for printing and tests (edges only: allocates). */
export interface DecodedEsr {
  readonly ec: number;
  readonly ecName: string;
  readonly il: boolean;
  readonly iss: number;
  readonly iss2: number;
  /** Data-abort fields (present for EC 0x24/0x25). */
  readonly dabt?: {
    readonly isv: boolean;
    readonly sas: Sas;
    readonly sse: boolean;
    readonly srt: number;
    readonly sf: boolean;
    readonly ar: boolean;
    readonly vncr: boolean;
    readonly set: number;
    readonly fnv: boolean;
    readonly ea: boolean;
    readonly cm: boolean;
    readonly s1ptw: boolean;
    readonly wnr: boolean;
    readonly dfsc: number;
  };
  /** Instruction-abort fields (present for EC 0x20/0x21). */
  readonly iabt?: { readonly set: number; readonly fnv: boolean; readonly ea: boolean; readonly s1ptw: boolean; readonly ifsc: number };
  /** imm16 (present for EC 0x16/0x17). */
  readonly imm16?: number;
}

/** The name of an exception class (`DABT_LOW`), or `EC_0xNN` for one s2emu does not know. */
export function esrEcName(ec: number): string {
  for (const [k, v] of Object.entries(EsrEc)) if (v === ec) return k;
  return `EC_0x${ec.toString(16).padStart(2, '0')}`;
}

/** Decodes a syndrome (both halves) into its fields. Edges only (allocates). */
export function decodeEsr(lo: number, hi: number): DecodedEsr {
  const ec = esrEc(lo);
  const base = { ec, ecName: esrEcName(ec), il: esrIl(lo), iss: esrIss(lo), iss2: (hi >>> 0) & 0x00ff_ffff };
  if (ec === EsrEc.DABT_LOW || ec === EsrEc.DABT_CUR) {
    return {
      ...base,
      dabt: {
        isv: esrIsv(lo),
        sas: esrSas(lo),
        sse: esrSse(lo),
        srt: esrSrt(lo),
        sf: esrSf(lo),
        ar: esrAr(lo),
        vncr: esrVncr(lo),
        set: esrSet(lo),
        fnv: esrFnV(lo),
        ea: esrEa(lo),
        cm: esrCm(lo),
        s1ptw: esrS1ptw(lo),
        wnr: esrWnR(lo),
        dfsc: esrFsc(lo),
      },
    };
  }
  if (ec === EsrEc.IABT_LOW || ec === EsrEc.IABT_CUR) {
    return { ...base, iabt: { set: esrSet(lo), fnv: esrFnV(lo), ea: esrEa(lo), s1ptw: esrS1ptw(lo), ifsc: esrFsc(lo) } };
  }
  if (ec === EsrEc.HVC64 || ec === EsrEc.SMC64) return { ...base, imm16: esrImm16(lo) };
  return base;
}
