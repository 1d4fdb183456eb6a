import t from 'tap';
import { InvariantError } from '../../src/arch/assert.js';
import { HypLock, HypLocks } from '../../src/el2/locks.js';

t.test('HypLocks', (t) => {
  t.test('accepts the kernel order vm_table → host → hyp → guest and tracks current_vm', (t) => {
    const l = new HypLocks();
    l.lock(HypLock.VM_TABLE);
    l.lock(HypLock.HOST);
    l.lock(HypLock.HYP);
    l.lock(HypLock.GUEST, 7);
    t.equal(l.currentVm, 7);
    l.assertHeld(HypLock.GUEST, 7);
    l.unlock(HypLock.GUEST);
    t.equal(l.currentVm, -1);
    l.unlock(HypLock.HYP);
    l.unlock(HypLock.HOST);
    l.unlock(HypLock.VM_TABLE);
    t.ok(l.idle);
    t.end();
  });
  t.test('throws on an out-of-order acquire (hyp then host)', (t) => {
    const l = new HypLocks();
    l.lock(HypLock.HYP);
    t.throws(() => l.lock(HypLock.HOST), InvariantError);
    t.end();
  });
  t.test('throws on a double acquire, a release of a free lock, and a missing lock', (t) => {
    const l = new HypLocks();
    l.lock(HypLock.HOST);
    t.throws(() => l.lock(HypLock.HOST), InvariantError);
    t.throws(() => l.unlock(HypLock.HYP), InvariantError);
    t.throws(() => l.assertHeld(HypLock.HYP), InvariantError);
    t.throws(() => l.lock(HypLock.GUEST), InvariantError, 'guest lock needs a VM');
    l.lock(HypLock.GUEST, 1);
    t.throws(() => l.assertHeld(HypLock.GUEST, 2), InvariantError);
    t.end();
  });
  t.end();
});
