// account_locked_vm() (mm/util.c): charges past RLIMIT_MEMLOCK fail with -ENOMEM unless CAP_IPC_LOCK.
import t from 'tap';
import fc from 'fast-check';
import { PAGE_SIZE } from '../../src/arch/addr.js';
import { Err } from '../../src/arch/errno.js';
import { KernelLog } from '../../src/host/klog.js';
import { MLOCK_LIMIT_DEFAULT, MemlockAccount, accountLockedVm } from '../../src/host/memlock.js';

t.test('the limit is inclusive and a refused charge changes nothing', async (t) => {
  const a = new MemlockAccount();
  const log = new KernelLog();
  a.rlimitMemlock = 3 * PAGE_SIZE;
  t.equal(accountLockedVm(a, 3, true, log), 0);
  t.equal(accountLockedVm(a, 1, true, log), Err.ENOMEM);
  t.equal(a.lockedVm, 3);
  a.capIpcLock = true;
  t.equal(accountLockedVm(a, 1, true, log), 0);
  t.equal(a.lockedVm, 4);
  t.equal(accountLockedVm(a, 0, true, log), 0);
});

t.test('the default limit is 8 MiB; RLIM_INFINITY never refuses', async (t) => {
  const a = new MemlockAccount();
  t.equal(a.limitPages, MLOCK_LIMIT_DEFAULT / PAGE_SIZE);
  a.rlimitMemlock = Infinity;
  t.equal(accountLockedVm(a, 2 ** 40, true, new KernelLog()), 0);
});

t.test('over-uncharging warns and clamps at zero', async (t) => {
  const a = new MemlockAccount();
  const log = new KernelLog();
  accountLockedVm(a, 2, true, log);
  t.equal(accountLockedVm(a, 3, false, log), 0);
  t.equal(a.lockedVm, 0);
  t.equal(log.warnings.length, 1);
});

t.test('property: locked_vm never exceeds the limit without CAP_IPC_LOCK', async (t) => {
  fc.assert(
    fc.property(fc.nat(64), fc.array(fc.tuple(fc.nat(8), fc.boolean()), { maxLength: 50 }), (limit, ops) => {
      const a = new MemlockAccount();
      const log = new KernelLog();
      a.rlimitMemlock = limit * PAGE_SIZE;
      for (const [n, inc] of ops) {
        if (!inc && n > a.lockedVm) continue;
        accountLockedVm(a, n, inc, log);
        if (a.lockedVm > limit) return false;
      }
      return log.warnings.length === 0;
    }),
  );
});
