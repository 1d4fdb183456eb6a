/**
 * The hypervisor's locks as bookkeeping (STYLE.md §10.8): the model is single-threaded, so a lock cannot be
 * contended, but the kernel's lock order and "lock held" assertions are still checked, because a transition that
 * takes locks out of order or touches state without its lock is a bug in the mirrored code.
 *
 * Order (lowest first), from `enum pkvm_component_id` ("corresponds to page-table locking order": host → hyp →
 * guest) and from `__pkvm_init_vm` / `__pkvm_init_vcpu`, which take `vm_table_lock` and then, inside it, the host
 * and hyp locks (`hyp_pin_shared_mem`) and the guest lock (`kvm_guest_prepare_stage2`):
 *
 *   VM_TABLE (vm_table_lock) → HOST (host_mmu.lock) → HYP (pkvm_pgd_lock) → GUEST (vm->lock, one VM at a time)
 */

import { assert } from '../arch/assert.js';

/** The hypervisor's locks, valued by acquisition rank. */
export const HypLock = {
  VM_TABLE: 0,
  HOST: 1,
  HYP: 2,
  GUEST: 3,
} as const;
/** One of the hypervisor's locks. */
export type HypLock = (typeof HypLock)[keyof typeof HypLock];

const NAMES = ['vm_table_lock', 'host_mmu.lock', 'pkvm_pgd_lock', 'vm->lock'] as const;

/** Lock bookkeeping for one hypervisor (all CPUs: the model runs one hypercall at a time). */
export class HypLocks {
  private held = 0;
  /** VM index whose lock is held (the kernel's per-CPU `current_vm`), or -1. */
  currentVm = -1;

  /**
   * Acquires `l`; throws {@link InvariantError} when it is already held or when a lock later in the order is held
   * (an out-of-order acquire, a potential deadlock in the kernel).
   * @param vmIdx for {@link HypLock.GUEST}: the VM whose lock is taken (sets `current_vm`, as
   * `guest_lock_component()` does).
   */
  lock(l: HypLock, vmIdx = -1): void {
    const bit = 1 << l;
    // Messages are built only on failure: lock/unlock run several times per hypercall.
    if ((this.held & bit) !== 0) assert(false, `${NAMES[l]} taken twice`);
    if (this.held >= bit) assert(false, `${NAMES[l]} taken out of order (held mask 0b${this.held.toString(2)})`);
    assert(l !== HypLock.GUEST || vmIdx >= 0, 'guest lock needs a VM');
    this.held |= bit;
    if (l === HypLock.GUEST) this.currentVm = vmIdx;
  }

  /** Releases `l`; throws when it is not held. */
  unlock(l: HypLock): void {
    const bit = 1 << l;
    if ((this.held & bit) === 0) assert(false, `${NAMES[l]} released but not held`);
    this.held &= ~bit;
    if (l === HypLock.GUEST) this.currentVm = -1;
  }

  /** `hyp_assert_lock_held()`: throws when `l` is not held (for the guest lock: not held for `vmIdx`). */
  assertHeld(l: HypLock, vmIdx = -1): void {
    if ((this.held & (1 << l)) === 0) assert(false, `${NAMES[l]} not held`);
    if (l === HypLock.GUEST && vmIdx >= 0) assert(this.currentVm === vmIdx, `vm->lock held for another VM`);
  }

  /** True when no lock is held (checked after every hypercall). */
  get idle(): boolean {
    return this.held === 0;
  }
}
