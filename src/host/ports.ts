/**
 * The ports through which the host kernel (KVM at EL1) reaches everything it does not own (DESIGN.md §2, import
 * rules). They are the trust boundary of the real system: the host talks to EL2 only with `HVC #0` and register
 * values, and every host access to RAM goes through the host stage-2 that EL2 enforces. `src/system.ts` wires both
 * ports to the hypervisor model; `host/` never imports `el2/`.
 */

import type { RegFile } from '../arch/regs.js';

/**
 * The `HVC #0` instruction as seen from EL1: the host puts the SMCCC function id in x0 and arguments in x1…x7 of
 * `regs`, the call traps to EL2 on physical CPU `cpu`, and when it returns x0 holds the SMCCC status and x1 the
 * handler's result (arch/arm64/kvm/hyp/nvhe/hyp-main.c `handle_host_hcall`).
 */
export interface HvcConduit {
  /**
   * Issues `HVC #0` on `cpu` with the arguments already in `regs`; EL2 leaves its results in `regs`.
   * @param cpu physical CPU index the host thread runs on.
   * @param regs the host's x0…x7 for the call (the model copies them in and out of EL2's host context).
   */
  hvc(cpu: number, regs: RegFile): void;
}

/**
 * A host load or store to RAM, checked by the host stage-2 (arch/arm64/kvm/hyp/nvhe/mem_protect.c
 * `handle_host_mem_abort`): the first touch of a page the host owns is idmapped lazily by EL2, and an access to a
 * page the host gave away (donated to EL2 or a guest) is refused and the abort is injected back into the host
 * (V1 81/89).
 */
export interface HostMemPort {
  /**
   * Performs the stage-2 check of one host access.
   * @param cpu physical CPU index issuing the access.
   * @param pa physical address accessed.
   * @param write true for a store.
   * @returns true when the access may proceed; false when EL2 refused it and injected an abort into the host.
   */
  access(cpu: number, pa: number, write: boolean): boolean;
}
