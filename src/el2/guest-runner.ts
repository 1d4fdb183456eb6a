/**
 * The interface through which `__kvm_vcpu_run` runs a guest vCPU. The guest layer (`src/guest/`) implements it
 * structurally, without importing `el2/` (DESIGN.md §2), and `src/system.ts` wires the implementation into the
 * `Hyp`. EL2 configures the CPU's stage-2 MMU for the guest (VTTBR with the guest's pgd and VMID, the guest VTCR,
 * HCR_EL2.VM) before calling `run`, and restores the host's afterwards.
 *
 * Mirrors the role of `__kvm_vcpu_run()` / `__guest_enter` (arch/arm64/kvm/hyp/nvhe/switch.c): run until the guest
 * traps to EL2.
 */

import type { RegFile } from '../arch/regs.js';
import type { El2ExceptionState } from '../mmu/abort.js';
import type { S2Mmu } from '../mmu/s2-mmu.js';

export { GuestExit } from '../arch/smccc.js';

/** Runs guest vCPUs on behalf of EL2. */
export interface GuestRunner {
  /**
   * Runs vCPU `vcpuIdx` of VM `vmHandle` through `mmu` until it traps.
   * @returns a `GuestExit` value: COMPLETED (nothing left to run), S2_ABORT (`exc` filled by `mmu/abort.ts`:
   *   ESR/FAR/HPFAR/ELR/SPSR_EL2; the faulting access is retried on the next run) or HVC (the call is in the
   *   vCPU's registers; the next run continues after the HVC).
   */
  run(vmHandle: number, vcpuIdx: number, mmu: S2Mmu, exc: El2ExceptionState): number;
  /** The general-purpose registers of a guest vCPU (EL2 reads and writes x0…x3 for guest hypercalls). */
  regs(vmHandle: number, vcpuIdx: number): RegFile;
}
