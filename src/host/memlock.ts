/**
 * RLIMIT_MEMLOCK accounting of pinned memory, as `account_locked_vm()` / `__account_locked_vm()` in mm/util.c do
 * for VFIO, SEV and pKVM: every guest page the host pins is charged to the VMM's `mm->locked_vm`, and a charge past
 * `RLIMIT_MEMLOCK` fails with -ENOMEM unless the task has CAP_IPC_LOCK (pkvm.md §6.2 step 3, §9.11).
 */

import { PAGE_SHIFT } from '../arch/addr.js';
import { Err, type Ret } from '../arch/errno.js';
import type { KernelLog } from './klog.js';

/** `MLOCK_LIMIT`, the default RLIMIT_MEMLOCK since Linux 5.16 (include/uapi/linux/resource.h): 8 MiB. */
export const MLOCK_LIMIT_DEFAULT = 8 * 1024 * 1024;

/** The locked-memory state of one `mm_struct` and the limits of the task that owns it. */
export class MemlockAccount {
  /** `mm->locked_vm`, in pages. */
  lockedVm = 0;
  /** `RLIMIT_MEMLOCK` soft limit in bytes; `Infinity` is `RLIM_INFINITY`. */
  rlimitMemlock: number = MLOCK_LIMIT_DEFAULT;
  /** `capable(CAP_IPC_LOCK)`: the limit is bypassed. */
  capIpcLock = false;

  /** The limit in pages (`task_rlimit(task, RLIMIT_MEMLOCK) >> PAGE_SHIFT`). */
  get limitPages(): number {
    return this.rlimitMemlock === Infinity ? Infinity : Math.floor(this.rlimitMemlock / 2 ** PAGE_SHIFT);
  }
}

/**
 * Charges (`inc`) or uncharges `pages` pages of locked memory.
 *
 * Mirrors `account_locked_vm()` / `__account_locked_vm()` (mm/util.c): on a charge, the new total is compared with
 * the limit and refused unless CAP_IPC_LOCK; an uncharge larger than the total is a `WARN_ON_ONCE` (the model
 * clamps at zero instead of wrapping the unsigned counter).
 * @param acct the mm's account.
 * @param pages number of pages; 0 is a no-op.
 * @param inc true to charge, false to uncharge.
 * @param log where the uncharge warning goes.
 * @returns 0; -ENOMEM when a charge would exceed RLIMIT_MEMLOCK without CAP_IPC_LOCK (nothing is charged then).
 */
export function accountLockedVm(acct: MemlockAccount, pages: number, inc: boolean, log: KernelLog): Ret {
  if (pages === 0) return 0;
  if (inc) {
    const lockedVm = acct.lockedVm + pages;
    if (!acct.capIpcLock && lockedVm > acct.limitPages) return Err.ENOMEM;
    acct.lockedVm = lockedVm;
    return 0;
  }
  if (pages > acct.lockedVm) {
    log.warnOn(true, `account_locked_vm: uncharging ${pages} pages of ${acct.lockedVm}`);
    acct.lockedVm = 0;
    return 0;
  }
  acct.lockedVm -= pages;
  return 0;
}
