/**
 * SPSR_EL2 as written on exception entry from AArch64 (Arm ARM C5.2 "SPSR_EL2"; reference arm-s2.md §6.8), reduced
 * to what stage-2 abort and HVC delivery need: the mode M[4:0], the DAIF masks and the condition flags.
 *
 *   31:28  25  24  23  22  21  20  13   12   11:10  9 8 7 6  4   3:0
 *  [NZCV ][TCO][DIT][UAO][PAN][SS][IL][ALLINT][SSBS][BTYPE][D A I F][M4][M[3:0]]
 */

/** bits[3:0] of M for AArch64 modes: EL << 2 | SPSel. */
export const SpsrMode = { EL0t: 0b0000, EL1t: 0b0100, EL1h: 0b0101, EL2t: 0b1000, EL2h: 0b1001 } as const;
/** An AArch64 mode. */
export type SpsrMode = (typeof SpsrMode)[keyof typeof SpsrMode];

/** bits[3:0]: M[3:0]. */
export const SPSR_M_MASK = 0xf;
/** bit[4]: M[4], 1 = the source was AArch32. */
export const SPSR_M4_LO = 1 << 4;
/** bit[6]: F, FIQ masked. */
export const SPSR_F_LO = 1 << 6;
/** bit[7]: I, IRQ masked. */
export const SPSR_I_LO = 1 << 7;
/** bit[8]: A, SError masked. */
export const SPSR_A_LO = 1 << 8;
/** bit[9]: D, debug exceptions masked. */
export const SPSR_D_LO = 1 << 9;
/** bits[9:6]: DAIF. */
export const SPSR_DAIF_LO = 0xf << 6;
/** bit[20]: IL, illegal execution state. */
export const SPSR_IL_LO = 1 << 20;
/** bit[21]: SS, software step. */
export const SPSR_SS_LO = 1 << 21;
/** bit[22]: PAN. */
export const SPSR_PAN_LO = 1 << 22;
/** bits[31:28]: NZCV. */
export const SPSR_NZCV_SHIFT = 28;

/** The Exception level a mode runs at (M[3:2]). */
export function spsrEl(lo: number): number {
  return (lo >>> 2) & 3;
}
/** M[3:0]. */
export function spsrMode(lo: number): number {
  return lo & SPSR_M_MASK;
}
/** True when the saved state was AArch32 (M[4]). */
export function spsrIsAarch32(lo: number): boolean {
  return (lo & SPSR_M4_LO) !== 0;
}

/**
 * An AArch64 SPSR value (low half; bits[63:32] are RES0 in our scope) from a mode, the DAIF masks (bits[3:0] = D, A,
 * I, F) and NZCV (bits[3:0] = N, Z, C, V).
 */
export function spsrEncode(mode: SpsrMode, daif: number, nzcv: number): number {
  return ((mode & SPSR_M_MASK) | ((daif & 0xf) << 6) | ((nzcv & 0xf) << SPSR_NZCV_SHIFT)) >>> 0;
}

/** The name of an AArch64 mode (`EL1h`), or `M=0bxxxxx` for an AArch32 or unknown one. */
export function spsrModeName(lo: number): string {
  if (!spsrIsAarch32(lo)) for (const [k, v] of Object.entries(SpsrMode)) if (v === spsrMode(lo)) return k;
  return `M=0b${(lo & 0x1f).toString(2).padStart(5, '0')}`;
}
