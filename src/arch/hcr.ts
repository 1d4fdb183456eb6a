/**
 * HCR_EL2 bits that affect stage 2 (Arm ARM D19.2 HCR_EL2; reference arm-s2.md §10.5; bit names as in
 * arch/arm64/include/asm/kvm_arm.h), as masks on the two 32-bit halves, accessors and a builder for tests.
 */

/** bit[0]: VM, stage 2 enabled. */
export const HCR_VM_LO = 1 << 0;
/** bit[2]: PTW, stage-1 walks to stage-2 Device memory fault. */
export const HCR_PTW_LO = 1 << 2;
/** bit[12]: DC, default cacheability (makes VM behave as 1). */
export const HCR_DC_LO = 1 << 12;
/** bit[19]: TSC, trap SMC. */
export const HCR_TSC_LO = 1 << 19;
/** bit[27]: TGE. */
export const HCR_TGE_LO = 1 << 27;
/** bit[29]: HCD, HVC disable. */
export const HCR_HCD_LO = 1 << 29;
/** bit[31]: RW, EL1 is AArch64. */
export const HCR_RW_LO = 0x8000_0000; // 1 << 31, unsigned
/** bit[32]: CD, stage-2 data accesses non-cacheable. */
export const HCR_CD_HI = 1 << (32 - 32);
/** bit[33]: ID, stage-2 instruction accesses non-cacheable. */
export const HCR_ID_HI = 1 << (33 - 32);
/** bit[34]: E2H. */
export const HCR_E2H_HI = 1 << (34 - 32);
/** bit[46]: FWB (FEAT_S2FWB), stage-2 forced write-back attribute encoding. */
export const HCR_FWB_HI = 1 << (46 - 32);

/** Stage 2 is enabled: HCR_EL2.VM or HCR_EL2.DC (ASL `GetS2TTWParams`, QEMU `regime_translation_disabled`). */
export function hcrS2Enabled(lo: number): boolean {
  return (lo & (HCR_VM_LO | HCR_DC_LO)) !== 0;
}
/** HCR_EL2.PTW. */
export function hcrPtw(lo: number): boolean {
  return (lo & HCR_PTW_LO) !== 0;
}
/** HCR_EL2.RW: EL1 is AArch64. */
export function hcrRw(lo: number): boolean {
  return (lo & HCR_RW_LO) !== 0;
}
/** HCR_EL2.FWB. */
export function hcrFwb(hi: number): boolean {
  return (hi & HCR_FWB_HI) !== 0;
}

/** Fields for the {@link hcr} builder; omitted flags are 0. */
export interface HcrFields {
  vm?: boolean;
  ptw?: boolean;
  dc?: boolean;
  tsc?: boolean;
  tge?: boolean;
  hcd?: boolean;
  rw?: boolean;
  cd?: boolean;
  id?: boolean;
  e2h?: boolean;
  fwb?: boolean;
}

/** Builds an HCR_EL2 value from named flags (tests, composition root). */
export function hcr(f: HcrFields): { lo: number; hi: number } {
  let lo = 0;
  let hi = 0;
  if (f.vm === true) lo |= HCR_VM_LO;
  if (f.ptw === true) lo |= HCR_PTW_LO;
  if (f.dc === true) lo |= HCR_DC_LO;
  if (f.tsc === true) lo |= HCR_TSC_LO;
  if (f.tge === true) lo |= HCR_TGE_LO;
  if (f.hcd === true) lo |= HCR_HCD_LO;
  if (f.rw === true) lo |= HCR_RW_LO;
  if (f.cd === true) hi |= HCR_CD_HI;
  if (f.id === true) hi |= HCR_ID_HI;
  if (f.e2h === true) hi |= HCR_E2H_HI;
  if (f.fwb === true) hi |= HCR_FWB_HI;
  return { lo: lo >>> 0, hi: hi >>> 0 };
}
