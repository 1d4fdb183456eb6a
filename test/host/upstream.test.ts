// The host under the upstream-6.16 ABI: np-guest faults share pages with __pkvm_host_share_guest (no long-term
// pin, no memlock charge), the MMU notifier unshares, teardown unshares every page before __pkvm_teardown_vm, and a
// protected VM is refused with -EINVAL. End to end through createMachine.
import t from 'tap';
import { PAGE_SIZE } from '../../src/arch/addr.js';
import { Err } from '../../src/arch/errno.js';
import { AbiProfileName } from '../../src/arch/smccc.js';
import { createMachine, type Machine, type MachineConfig } from '../../src/system.js';

const RAM = { base: 0x4000_0000, size: 64 * 2 ** 20 };
const BACKING = 0x4200_0000;
const PAGES = 8;
const np = { name: 'g', memory: PAGES * PAGE_SIZE, ipaBase: 0, backingPa: BACKING, vcpus: 2, protected: false };

function machine(profile: AbiProfileName, over: Partial<MachineConfig> = {}): Machine {
  return createMachine({ ram: [RAM], cpus: 2, profile, ...over });
}

/** Everything that must hold after each test: invariants, no EL2 or host warnings. */
function clean(t: Tap.Test, m: Machine): void {
  t.same(m.checkInvariants().violations, [], 'invariants hold');
  t.same(m.hyp.warnings, [], 'no hypervisor warnings');
  t.same(m.host.log.warnings, [], 'no host warnings');
}

t.test('guest faults map with __pkvm_host_share_guest; the host still reads a shared page', async (t) => {
  const m = machine(AbiProfileName.UPSTREAM_6_16);
  t.equal(m.createVm(np).ret, 0);
  for (let i = 0; i < PAGES; i++) {
    t.match(m.guestAccess('g', i % 2, i * PAGE_SIZE, 'write', { value: 0x100 + i }), { result: 'ok', exits: 1, errno: 0 });
  }
  t.match(m.guestAccess('g', 0, 3 * PAGE_SIZE, 'read'), { result: 'ok', exits: 0, value: 0x103 });
  const st = m.stats();
  t.equal(st.hvcs.__pkvm_host_share_guest, PAGES);
  t.equal(st.hvcs.__pkvm_host_map_guest, undefined, 'no 2022 name issued');
  t.match(m.pageView(BACKING + 3 * PAGE_SIZE), { host: 'SHARED_OWNED', guests: { g: 'SHARED_BORROWED' }, owner: 'host' });
  t.equal(m.vmView('g').lockedPages, 0, 'no account_locked_vm for np-guests');
  t.equal(m.vmView('g').mappedPages, PAGES);
  t.same(m.hostAccess(1, BACKING + 3 * PAGE_SIZE, 'read'), { result: 'ok', value: 0x103 });
  t.match(m.hostAccess(1, BACKING + 3 * PAGE_SIZE, 'write', 0x55), { result: 'ok' });
  t.match(m.guestAccess('g', 1, 3 * PAGE_SIZE, 'read'), { result: 'ok', value: 0x55 });
  clean(t, m);
});

t.test('teardown unshares every page before __pkvm_teardown_vm and returns all host pages', async (t) => {
  const m = machine(AbiProfileName.UPSTREAM_6_16);
  const free0 = m.host.pages.freePages;
  t.equal(m.createVm(np).ret, 0);
  for (let i = 0; i < PAGES; i++) t.match(m.guestAccess('g', 0, i * PAGE_SIZE, 'write', { value: i }), { result: 'ok' });
  const kvm = m.host.vms[0]!;
  kvm.trace = [];
  t.equal(m.destroyVm('g'), 0);
  const unshares = kvm.trace.filter((s) => s.startsWith('__pkvm_host_unshare_guest')).length;
  t.equal(unshares, PAGES);
  t.ok(kvm.trace.indexOf('__pkvm_teardown_vm') > kvm.trace.findLastIndex((s) => s.startsWith('__pkvm_host_unshare_guest')), 'unshare before teardown');
  t.equal(m.stats().hvcs.__pkvm_host_reclaim_page, undefined);
  for (let i = 0; i < PAGES; i++) t.match(m.pageView(BACKING + i * PAGE_SIZE), { host: 'OWNED', guests: {}, pinned: false, owner: 'host' });
  t.equal(m.host.pages.freePages, free0, 'every host page is back in the allocator');
  t.equal(kvm.pinned.count, 0);
  t.equal(m.destroyVm('g'), Err.ENOENT);
  clean(t, m);
});

t.test('a VM with a loaded vCPU is not torn down (-EBUSY, no hypercall, no warning)', async (t) => {
  const m = machine(AbiProfileName.UPSTREAM_6_16);
  t.equal(m.createVm(np).ret, 0);
  t.match(m.guestAccess('g', 0, 0, 'write', { value: 1 }), { result: 'ok' });
  const kvm = m.host.vms[0]!;
  kvm.vcpus[0]!.load(0);
  t.equal(m.destroyVm('g'), Err.EBUSY);
  t.equal(m.stats().hvcs.__pkvm_host_unshare_guest, undefined);
  kvm.vcpus[0]!.put();
  t.equal(m.destroyVm('g'), 0);
  clean(t, m);
});

t.test('the MMU notifier unshares: munmap and migration take the page from the guest, a refault maps it again', async (t) => {
  const m = machine(AbiProfileName.UPSTREAM_6_16);
  t.equal(m.createVm(np).ret, 0);
  t.match(m.guestAccess('g', 0, PAGE_SIZE, 'write', { value: 0xabc }), { result: 'ok' });
  const mig = m.hostEvent('numa_balance', 'g', PAGE_SIZE, 1);
  t.same(mig, { ret: 0, migrated: 1, guestMapped: false }, 'unpinned np-guest memory migrates after the unshare');
  t.match(m.pageView(BACKING + PAGE_SIZE), { host: 'OWNED', guests: {}, pinned: false });
  t.match(m.guestAccess('g', 0, PAGE_SIZE, 'read'), { result: 'ok', exits: 1, value: 0xabc });
  t.match(m.guestAccess('g', 0, 2 * PAGE_SIZE, 'write', { value: 1 }), { result: 'ok' });
  t.match(m.hostEvent('munmap', 'g', 2 * PAGE_SIZE, 1), { ret: 0, guestMapped: false });
  t.equal(m.stats().hvcs.__pkvm_host_unshare_guest, 2);
  clean(t, m);
  t.equal(m.destroyVm('g'), 0);
  clean(t, m);
});

t.test('pkvm-2022 keeps its path: the same events leave the pinned page mapped', async (t) => {
  const m = machine(AbiProfileName.PKVM_2022);
  t.equal(m.createVm(np).ret, 0);
  t.match(m.guestAccess('g', 0, PAGE_SIZE, 'write', { value: 0xabc }), { result: 'ok' });
  t.same(m.hostEvent('numa_balance', 'g', PAGE_SIZE, 1), { ret: 0, migrated: 0, guestMapped: true });
  t.equal(m.stats().hvcs.__pkvm_host_map_guest, 1);
  t.equal(m.vmView('g').lockedPages, 1);
  clean(t, m);
});

t.test('a protected VM under upstream-6.16 is -EINVAL, with nothing allocated or leaked', async (t) => {
  const m = machine(AbiProfileName.UPSTREAM_6_16);
  const free0 = m.host.pages.freePages;
  const r = m.createVm({ ...np, protected: true });
  t.equal(r.ret, Err.EINVAL);
  t.equal(m.host.pages.freePages, free0);
  t.equal(m.stats().hvcs.__pkvm_host_share_hyp, undefined, 'refused before any hypercall');
  t.equal(m.createVm(np).ret, 0, 'a non-protected VM still works');
  clean(t, m);
});
