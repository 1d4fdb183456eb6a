/**
 * VTTBR_EL2, the stage-2 translation table base register (Arm ARM D19.2 VTTBR_EL2; reference arm-s2.md §2), as
 * accessors on its two 32-bit halves plus a builder. Alignment of BADDR to the initial-table size is a walk
 * parameter and lives in `mmu/s2-config.ts`.
 *
 *   63:56       55:48      47:6 (or 47:1)   5:2                      1    0
 *   VMID[15:8]  VMID[7:0]  BADDR[47:6]      BADDR[51:48] (52-bit)    ..   CnP
 *                                           or BADDR[5:2]
 */

import { assert } from './assert.js';
import { TWO_32 } from './bits.js';

/** bit[0]: CnP (FEAT_TTCNP). Ignored for translation. */
export const VTTBR_CNP_LO = 1 << 0;
/** BADDR bits[31:1] in the low half (48-bit form). */
export const VTTBR_BADDR_LO = 0xffff_fffe;
/** BADDR bits[31:6] in the low half (52-bit form). */
export const VTTBR_BADDR52_LO = 0xffff_ffc0;
/** bits[5:2]: BADDR[51:48] in the 52-bit form. */
export const VTTBR_BADDR_51_48_SHIFT = 2;
/** BADDR bits[47:32] in the high half. */
export const VTTBR_BADDR_HI = 0xffff;
/** bits[55:48]: VMID[7:0]; bits[63:56]: VMID[15:8]. Shift within the high half. */
export const VTTBR_VMID_SHIFT_HI = 48 - 32;

/**
 * The table base address VTTBR_EL2 names, before alignment to the initial-table size. With `addr52` (DS=1, or 64K
 * with PS=0b110 and FEAT_LPA; ASL `S2TTBaseAddress`) bits[5:2] are BADDR[51:48] and bits[47:6] are A[47:6];
 * otherwise bits[47:1] are A[47:1]. CnP (bit 0) never contributes.
 */
export function vttbrBaddr(lo: number, hi: number, addr52: boolean): number {
  if (addr52) {
    const top = (hi & VTTBR_BADDR_HI) + ((lo >>> VTTBR_BADDR_51_48_SHIFT) & 0xf) * 0x1_0000;
    return top * TWO_32 + ((lo & VTTBR_BADDR52_LO) >>> 0);
  }
  return (hi & VTTBR_BADDR_HI) * TWO_32 + ((lo & VTTBR_BADDR_LO) >>> 0);
}

/** The VMID: bits[63:48] with 16-bit VMIDs (FEAT_VMID16 and VTCR_EL2.VS=1), else bits[55:48]. */
export function vttbrVmid(hi: number, vmid16: boolean): number {
  const v = hi >>> VTTBR_VMID_SHIFT_HI;
  return vmid16 ? v : v & 0xff;
}

/** CnP (bit 0). */
export function vttbrCnp(lo: number): boolean {
  return (lo & VTTBR_CNP_LO) !== 0;
}

/** Fields for the {@link vttbr} builder. */
export interface VttbrFields {
  /** Table base address; with `addr52` up to 52 bits and 64-byte aligned, else below 2^48 and 2-byte aligned. */
  baddr: number;
  vmid?: number;
  cnp?: boolean;
  /** Use the 52-bit BADDR form (bits[5:2] = BADDR[51:48]). */
  addr52?: boolean;
}

/** Builds a VTTBR_EL2 value. Throws {@link InvariantError} when a field does not fit its encoding (API misuse). */
export function vttbr(f: VttbrFields): { lo: number; hi: number } {
  const b = f.baddr;
  const vmid = f.vmid ?? 0;
  assert(Number.isInteger(vmid) && vmid >= 0 && vmid < 0x1_0000, `VMID ${vmid} does not fit 16 bits`);
  assert(Number.isSafeInteger(b) && b >= 0, `BADDR ${b} is not an address`);
  const bhi = Math.floor(b / TWO_32);
  let lo: number;
  let hi: number;
  if (f.addr52 === true) {
    assert(b < 2 ** 52 && b % 64 === 0, `52-bit BADDR ${b} must be below 2^52 and 64-byte aligned`);
    lo = (b >>> 0) | ((bhi >>> 16) << VTTBR_BADDR_51_48_SHIFT);
    hi = bhi & 0xffff;
  } else {
    assert(b < 2 ** 48 && b % 2 === 0, `BADDR ${b} must be below 2^48 and 2-byte aligned`);
    lo = b >>> 0;
    hi = bhi;
  }
  if (f.cnp === true) lo |= VTTBR_CNP_LO;
  hi |= vmid << VTTBR_VMID_SHIFT_HI;
  return { lo: lo >>> 0, hi: hi >>> 0 };
}
