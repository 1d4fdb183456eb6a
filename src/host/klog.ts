/**
 * What the host kernel reports about itself: `WARN_ON` splats, oopses (an injected abort on a kernel access) and
 * signals sent to the VMM (SIGBUS for hardware-poisoned memory, `kvm_send_hwpoison_signal()` in
 * arch/arm64/kvm/mmu.c). Tests fail on any warning or oops, as they do on hypervisor warnings (DESIGN.md §4).
 */

/** A signal the kernel sent to the VMM process. */
export interface SentSignal {
  /** Signal name, e.g. `SIGBUS`. */
  readonly sig: 'SIGBUS' | 'SIGSEGV';
  /** `si_addr`: the faulting host virtual address. */
  readonly addr: number;
  /** `si_addr_lsb`: log2 of the poisoned extent (PAGE_SHIFT for a page). */
  readonly addrLsb: number;
}

/** The host kernel's log: warnings, oopses and signals, in order. */
export class KernelLog {
  /** `WARN_ON` messages. */
  readonly warnings: string[] = [];
  /** Oops messages: a kernel access EL2 refused (the kernel would die here). */
  readonly oopses: string[] = [];
  /** Signals delivered to the VMM. */
  readonly signals: SentSignal[] = [];

  /**
   * Records a warning when `cond` holds, as `WARN_ON(cond)` prints a splat and continues.
   * @returns `cond`, so that `if (log.warnOn(x, …))` reads like the kernel's `if (WARN_ON(x))`.
   */
  warnOn(cond: boolean, msg: string): boolean {
    if (cond) this.warnings.push(msg);
    return cond;
  }

  /** Records an oops: the kernel touched memory its stage-2 refuses. */
  oops(msg: string): void {
    this.oopses.push(msg);
  }

  /** Records a signal sent to the VMM. */
  signal(sig: SentSignal['sig'], addr: number, addrLsb: number): void {
    this.signals.push({ sig, addr, addrLsb });
  }

  /** True when nothing abnormal was recorded (no warning, no oops). */
  get clean(): boolean {
    return this.warnings.length === 0 && this.oopses.length === 0;
  }
}
