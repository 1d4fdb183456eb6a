// The example of README.md "Using it from TypeScript", kept here verbatim so the README cannot rot.
import t from 'tap';
import { createMachine } from '../src/system.js';

t.test('a protected guest page is refused to the host', async (t) => {
  const m = createMachine({ ram: [{ base: 0x4000_0000, size: 256 * 1024 * 1024 }], cpus: 2 });
  const vm = m.createVm({ name: 'pvm', memory: 2 * 1024 * 1024, ipaBase: 0x8000_0000,
                          backingPa: 0x4800_0000, vcpus: 1, protected: true });
  t.equal(vm.ret, 0);
  t.equal(vm.handle, 0x1000);                       // handles start at 0x1000, as in the kernel

  const r = m.guestAccess('pvm', 0, 0x8000_1000, 'write');   // stage-2 fault → pkvm_mem_abort → map → retry
  t.equal(r.result, 'ok');
  t.equal(r.exits, 1);
  t.same(m.pageView(0x4800_1000), { host: 'NOPAGE', hyp: 'NOPAGE', guests: { pvm: 'OWNED' },
                                    pinned: true, owner: 'guest' });
  t.equal(m.hostAccess(0, 0x4800_1000, 'read').result, 'abort');   // donated: the host is refused

  t.equal(m.destroyVm('pvm'), 0);                   // teardown, reclaim (poisoned), unpin, unaccount
  t.same(m.checkInvariants().violations, []);
  t.same(m.hyp.warnings, []);
});
