/**
 * PAR_EL1, the Physical Address Register written by AT instructions, 64-bit (long-descriptor) format (Arm ARM D19.2
 * "PAR_EL1"; reference arm-s2.md §7.1).
 *
 *  success (F=0):
 *   63     56 55  52 51        12 11  10   9   8:7   6:1   0
 *  [  ATTR   ][RES0 ][ PA[51:12]  ][1 ][IMP][NS][ SH ][RES0][0]
 *
 *  failure (F=1):
 *   63                          12 11  10   9   8    7   6:1  0
 *  [            RES0              ][1 ][ 0 ][S][PTW][0 ][FST][1]
 *
 * Bit 11 is RES1 in the 64-bit format; QEMU always sets it ("LPAE bit always set", target/arm/helper.c
 * `do_ats_write()`), and so do we.
 */

/** bit[0]: F, the translation failed. */
export const PAR_F_LO = 1 << 0;
/** bits[6:1]: FST (F=1), the fault status code. */
export const PAR_FST_SHIFT = 1;
/** bits[8:7]: SH (F=0), the resulting shareability. */
export const PAR_SH_SHIFT = 7;
/** bit[8]: PTW (F=1), stage-2 fault on a stage-1 walk. */
export const PAR_PTW_LO = 1 << 8;
/** bit[9]: NS (F=0), the output address is Non-secure; S (F=1), the fault was at stage 2. */
export const PAR_NS_LO = 1 << 9;
/** bit[9] (F=1): S, the fault was at stage 2. */
export const PAR_S_LO = 1 << 9;
/** bit[11]: RES1 in the 64-bit format. */
export const PAR_RES1_LO = 1 << 11;
/** bits[31:12] of the PA (F=0). */
export const PAR_PA_LO = 0xffff_f000;
/** bits[51:32] of the PA, in bits[19:0] of the high half (F=0). */
export const PAR_PA_HI = 0x000f_ffff;
/** bits[63:56]: ATTR (F=0), MAIR-format attributes, in bits[31:24] of the high half. */
export const PAR_ATTR_SHIFT_HI = 56 - 32;

/** Shareability values of PAR_EL1.SH (and descriptor SH). */
export const Shareability = { NSH: 0b00, OSH: 0b10, ISH: 0b11 } as const;
/** A shareability value. */
export type Shareability = (typeof Shareability)[keyof typeof Shareability];

/** Low half of a successful PAR_EL1: PA[31:12], RES1, NS, SH. */
export function parSuccessLo(pa: number, sh: number, ns: boolean): number {
  return ((pa % 0x1_0000_0000 & PAR_PA_LO) | PAR_RES1_LO | (ns ? PAR_NS_LO : 0) | ((sh & 3) << PAR_SH_SHIFT)) >>> 0;
}

/** High half of a successful PAR_EL1: PA[51:32] and ATTR. */
export function parSuccessHi(pa: number, attr: number): number {
  return ((Math.floor(pa / 0x1_0000_0000) & PAR_PA_HI) | ((attr & 0xff) << PAR_ATTR_SHIFT_HI)) >>> 0;
}

/** Low half of a failed PAR_EL1: F=1, FST, PTW, S, RES1. The high half is 0. */
export function parFaultLo(fst: number, ptw: boolean, s: boolean): number {
  return (PAR_F_LO | ((fst & 0x3f) << PAR_FST_SHIFT) | (ptw ? PAR_PTW_LO : 0) | (s ? PAR_S_LO : 0) | PAR_RES1_LO) >>> 0;
}

/** F (bit[0]): the AT failed. */
export function parF(lo: number): boolean {
  return (lo & PAR_F_LO) !== 0;
}
/** FST (bits[6:1], F=1). */
export function parFst(lo: number): number {
  return (lo >>> PAR_FST_SHIFT) & 0x3f;
}
/** PTW (bit[8], F=1). */
export function parPtw(lo: number): boolean {
  return (lo & PAR_PTW_LO) !== 0;
}
/** S (bit[9], F=1). */
export function parS(lo: number): boolean {
  return (lo & PAR_S_LO) !== 0;
}
/** NS (bit[9], F=0). */
export function parNs(lo: number): boolean {
  return (lo & PAR_NS_LO) !== 0;
}
/** SH (bits[8:7], F=0). */
export function parSh(lo: number): number {
  return (lo >>> PAR_SH_SHIFT) & 3;
}
/** ATTR (bits[63:56], F=0). */
export function parAttr(hi: number): number {
  return (hi >>> PAR_ATTR_SHIFT_HI) & 0xff;
}
/** PA[51:12] (F=0) as a page-aligned number. */
export function parPa(lo: number, hi: number): number {
  return (hi & PAR_PA_HI) * 0x1_0000_0000 + ((lo & PAR_PA_LO) >>> 0);
}

/** Every field of a PAR_EL1 value (edges only: allocates). */
export type DecodedPar =
  | { readonly f: false; readonly pa: number; readonly sh: number; readonly ns: boolean; readonly attr: number }
  | { readonly f: true; readonly fst: number; readonly ptw: boolean; readonly s: boolean };

/** Decodes PAR_EL1 into its success or failure fields. */
export function decodePar(lo: number, hi: number): DecodedPar {
  if (parF(lo)) return { f: true, fst: parFst(lo), ptw: parPtw(lo), s: parS(lo) };
  return { f: false, pa: parPa(lo, hi), sh: parSh(lo), ns: parNs(lo), attr: parAttr(hi) };
}
