/**
 * VTCR_EL2, the stage-2 translation control register (Arm ARM D19.2 VTCR_EL2; reference arm-s2.md §1.1), as field
 * accessors on its two 32-bit halves plus a builder for tests and fixtures. Effective-value rules (granule
 * fallback, DS/SL2/HA/HD gating, PS clamping) live in `mmu/s2-config.ts`; this file is the encoding only.
 *
 *   31   30  29  28:25  22  21  19  18:16  15:14  13:12  11:10  9:8    7:6  5:0      (lo)
 *   RES1 NSA NSW HWU    HD  HA  VS  PS     TG0    SH0    ORGN0  IRGN0  SL0  T0SZ
 *   33   32                                                                          (hi)
 *   SL2  DS
 */

import { assert } from './assert.js';
import { field } from './bits.js';
import { Granule } from './granule.js';

/** bits[5:0]: T0SZ. */
export const VTCR_T0SZ_SHIFT = 0;
/** bits[7:6]: SL0. */
export const VTCR_SL0_SHIFT = 6;
/** bits[9:8]: IRGN0. */
export const VTCR_IRGN0_SHIFT = 8;
/** bits[11:10]: ORGN0. */
export const VTCR_ORGN0_SHIFT = 10;
/** bits[13:12]: SH0. */
export const VTCR_SH0_SHIFT = 12;
/** bits[15:14]: TG0. */
export const VTCR_TG0_SHIFT = 14;
/** bits[18:16]: PS. */
export const VTCR_PS_SHIFT = 16;
/** bit[19]: VS (16-bit VMID). */
export const VTCR_VS_LO = 1 << 19;
/** bit[21]: HA (hardware Access flag update). */
export const VTCR_HA_LO = 1 << 21;
/** bit[22]: HD (hardware dirty-state update). */
export const VTCR_HD_LO = 1 << 22;
/** bits[28:25]: HWU59..HWU62. */
export const VTCR_HWU_SHIFT = 25;
/** bit[29]: NSW (Secure EL2 only). */
export const VTCR_NSW_LO = 1 << 29;
/** bit[30]: NSA (Secure EL2 only). */
export const VTCR_NSA_LO = 1 << 30;
/** bit[31]: RES1. */
export const VTCR_RES1_LO = 0x8000_0000; // 1 << 31, unsigned
/** bit[32]: DS (FEAT_LPA2). */
export const VTCR_DS_HI = 1 << (32 - 32);
/** bit[33]: SL2 (FEAT_LPA2, 4K start level −1). */
export const VTCR_SL2_HI = 1 << (33 - 32);

/** TG0 encodings (bits[15:14]). 0b11 is reserved. */
export const VtcrTg0 = { G4K: 0b00, G64K: 0b01, G16K: 0b10, RESERVED: 0b11 } as const;
/** A TG0 encoding. */
export type VtcrTg0 = (typeof VtcrTg0)[keyof typeof VtcrTg0];

/** T0SZ (bits[5:0]). */
export function vtcrT0sz(lo: number): number {
  return lo & 0x3f;
}
/** SL0 (bits[7:6]). */
export function vtcrSl0(lo: number): number {
  return (lo >>> VTCR_SL0_SHIFT) & 3;
}
/** IRGN0 (bits[9:8]). */
export function vtcrIrgn0(lo: number): number {
  return (lo >>> VTCR_IRGN0_SHIFT) & 3;
}
/** ORGN0 (bits[11:10]). */
export function vtcrOrgn0(lo: number): number {
  return (lo >>> VTCR_ORGN0_SHIFT) & 3;
}
/** SH0 (bits[13:12]). */
export function vtcrSh0(lo: number): number {
  return (lo >>> VTCR_SH0_SHIFT) & 3;
}
/** TG0 raw encoding (bits[15:14]). */
export function vtcrTg0(lo: number): VtcrTg0 {
  return ((lo >>> VTCR_TG0_SHIFT) & 3) as VtcrTg0;
}
/** PS (bits[18:16]). */
export function vtcrPs(lo: number): number {
  return (lo >>> VTCR_PS_SHIFT) & 7;
}
/** VS (bit[19]). */
export function vtcrVs(lo: number): boolean {
  return (lo & VTCR_VS_LO) !== 0;
}
/** HA (bit[21]). */
export function vtcrHa(lo: number): boolean {
  return (lo & VTCR_HA_LO) !== 0;
}
/** HD (bit[22]). */
export function vtcrHd(lo: number): boolean {
  return (lo & VTCR_HD_LO) !== 0;
}
/** HWU59..62 (bits[28:25]) as a 4-bit value, bit 0 = HWU59. */
export function vtcrHwu(lo: number): number {
  return (lo >>> VTCR_HWU_SHIFT) & 0xf;
}
/** DS (bit[32]). */
export function vtcrDs(hi: number): boolean {
  return (hi & VTCR_DS_HI) !== 0;
}
/** SL2 (bit[33]). */
export function vtcrSl2(hi: number): boolean {
  return (hi & VTCR_SL2_HI) !== 0;
}

/** The granule a TG0 encoding names, or null for the reserved 0b11 (ASL `S2DecodeTG0`). */
export function tg0Granule(tg0: number): Granule | null {
  switch (tg0 & 3) {
    case VtcrTg0.G4K:
      return Granule.G4K;
    case VtcrTg0.G64K:
      return Granule.G64K;
    case VtcrTg0.G16K:
      return Granule.G16K;
    default:
      return null;
  }
}

/** The TG0 encoding of a granule. */
export function granuleTg0(g: Granule): VtcrTg0 {
  switch (g) {
    case Granule.G4K:
      return VtcrTg0.G4K;
    case Granule.G16K:
      return VtcrTg0.G16K;
    case Granule.G64K:
      return VtcrTg0.G64K;
  }
}

/** Fields for the {@link vtcr} builder. Omitted fields are 0 (RES1 bit 31 is set unless `res1: false`). */
export interface VtcrFields {
  t0sz: number;
  sl0?: number;
  irgn0?: number;
  orgn0?: number;
  sh0?: number;
  tg0?: Granule | 'reserved';
  ps?: number;
  vs?: boolean;
  ha?: boolean;
  hd?: boolean;
  hwu?: number;
  nsw?: boolean;
  nsa?: boolean;
  res1?: boolean;
  ds?: boolean;
  sl2?: boolean;
}

/**
 * Builds a VTCR_EL2 value from named fields (tests, fixtures, CLI). Throws {@link InvariantError} on a field that
 * does not fit its width (API misuse).
 */
export function vtcr(f: VtcrFields): { lo: number; hi: number } {
  const fits = (v: number, bits: number): number => {
    assert(Number.isInteger(v) && v >= 0 && v < 2 ** bits, `VTCR field value ${v} does not fit ${bits} bits`);
    return v;
  };
  const tg0 = f.tg0 === undefined ? 0 : f.tg0 === 'reserved' ? VtcrTg0.RESERVED : granuleTg0(f.tg0);
  let lo = fits(f.t0sz, 6);
  lo |= fits(f.sl0 ?? 0, 2) << VTCR_SL0_SHIFT;
  lo |= fits(f.irgn0 ?? 0, 2) << VTCR_IRGN0_SHIFT;
  lo |= fits(f.orgn0 ?? 0, 2) << VTCR_ORGN0_SHIFT;
  lo |= fits(f.sh0 ?? 0, 2) << VTCR_SH0_SHIFT;
  lo |= tg0 << VTCR_TG0_SHIFT;
  lo |= fits(f.ps ?? 0, 3) << VTCR_PS_SHIFT;
  if (f.vs === true) lo |= VTCR_VS_LO;
  if (f.ha === true) lo |= VTCR_HA_LO;
  if (f.hd === true) lo |= VTCR_HD_LO;
  lo |= fits(f.hwu ?? 0, 4) << VTCR_HWU_SHIFT;
  if (f.nsw === true) lo |= VTCR_NSW_LO;
  if (f.nsa === true) lo |= VTCR_NSA_LO;
  if (f.res1 !== false) lo |= VTCR_RES1_LO;
  let hi = 0;
  if (f.ds === true) hi |= VTCR_DS_HI;
  if (f.sl2 === true) hi |= VTCR_SL2_HI;
  return { lo: lo >>> 0, hi: hi >>> 0 };
}

/** Decodes every VTCR_EL2 field this emulator models (the inverse of {@link vtcr}, for printing and tests). */
export function decodeVtcr(lo: number, hi: number): Required<VtcrFields> {
  const g = tg0Granule(vtcrTg0(lo));
  return {
    t0sz: vtcrT0sz(lo),
    sl0: vtcrSl0(lo),
    irgn0: vtcrIrgn0(lo),
    orgn0: vtcrOrgn0(lo),
    sh0: vtcrSh0(lo),
    tg0: g === null ? 'reserved' : g,
    ps: vtcrPs(lo),
    vs: vtcrVs(lo),
    ha: vtcrHa(lo),
    hd: vtcrHd(lo),
    hwu: vtcrHwu(lo),
    nsw: (lo & VTCR_NSW_LO) !== 0,
    nsa: (lo & VTCR_NSA_LO) !== 0,
    res1: field(lo, 31, 31) === 1,
    ds: vtcrDs(hi),
    sl2: vtcrSl2(hi),
  };
}
