/**
 * HPFAR_EL2, the Hypervisor IPA Fault Address Register (Arm ARM D19.2 "HPFAR_EL2"; reference arm-s2.md §6.6).
 *
 *   63  62      48 47                      4 3    0
 *  [NS][  RES0    ][    FIPA = IPA[55:12]    ][RES0]
 *
 * With FEAT_LPA, bits[43:4] hold IPA[51:12]; without it only [39:4] (IPA[47:12]). s2emu, like QEMU, always writes
 * the faulting IPA for every stage-2 abort (a legal value where the architecture says UNKNOWN, arm-s2.md §11 #10).
 * Linux reads it with `FIELD_GET(HPFAR_EL2_FIPA, hpfar) << 12` (arch/arm64/include/asm/kvm_emulate.h,
 * `kvm_vcpu_get_fault_ipa()`).
 */

import { TWO_32 } from './bits.js';

/** bit[63]: NS, the faulting IPA was Non-secure (FEAT_SEL2 only; 0 for aborts taken to Non-secure EL2). */
export const HPFAR_NS_HI = 0x8000_0000; // bit[63]
/** bits[47:4]: FIPA. Shift of the field within the register. */
export const HPFAR_FIPA_SHIFT = 4;
/** Bits of HPFAR_EL2[31:0] that FIPA occupies (bits[31:4]). */
export const HPFAR_FIPA_LO = 0xffff_fff0;
/** Bits of HPFAR_EL2[63:32] that FIPA occupies (bits[47:32]). */
export const HPFAR_FIPA_HI = 0x0000_ffff;

/**
 * Bits[31:0] of HPFAR_EL2 for a fault at `ipa` (IPA[55:12] << 4). `ipa` is below 2^53.
 * Mirrors QEMU's `env->cp15.hpfar_el2 = extract64(fi->s2addr, 12, 47) << 4` (target/arm/tlb_helper.c).
 */
export function hpfarLoFromIpa(ipa: number): number {
  // IPA[12 + 27 : 12] lands in bits[31:4]; divide instead of shifting (ipa may exceed 2^32).
  return ((Math.floor(ipa / 4096) % 0x1000_0000) * 16) >>> 0;
}

/** Bits[63:32] of HPFAR_EL2 for a fault at `ipa` (IPA[55:40] in bits[47:32]). */
export function hpfarHiFromIpa(ipa: number): number {
  return Math.floor(ipa / 2 ** 40) & HPFAR_FIPA_HI;
}

/** The IPA (page-aligned, bits[55:12]) that an HPFAR_EL2 value names. Mirrors `kvm_vcpu_get_fault_ipa()`. */
export function hpfarToIpa(lo: number, hi: number): number {
  return ((hi & HPFAR_FIPA_HI) * TWO_32 + ((lo & HPFAR_FIPA_LO) >>> 0)) * 256;
}

/**
 * Whether the architecture defines HPFAR_EL2 for a stage-2 abort with this fault status code (Arm ARM R_FKLWR):
 * translation, access-flag and address-size faults, and permission faults on a stage-1 walk (S1PTW). For the
 * others (permission without S1PTW, SEA, alignment) the value is UNKNOWN and KVM recomputes the IPA with AT.
 * Mirrors `__hpfar_valid()` (arch/arm64/kvm/hyp/include/hyp/fault.h).
 */
export function hpfarValid(fsc: number, s1ptw: boolean): boolean {
  const f = fsc & 0x3f;
  const kind = f >>> 2;
  if (f === 0x29 || f === 0x2b) return true; // address size / translation, level −1
  if (kind === 0 || kind === 1 || kind === 2) return true; // address size, translation, access flag
  if (kind === 3) return s1ptw; // permission
  return false;
}
