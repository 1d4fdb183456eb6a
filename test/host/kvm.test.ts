// VM lifecycle on the host: KVM_CREATE_VM/VCPU share the host structs with EL2, the first run creates the hyp VM
// (pgd and hyp structs donated), and destroy follows V1 kvm_shadow_destroy(): teardown hypercall, free the teardown
// memcache, then reclaim + uncharge + unpin every pinned page, then release the vCPU memcaches and structs.
import t from 'tap';
import { PAGE_SIZE } from '../../src/arch/addr.js';
import { Err } from '../../src/arch/errno.js';
import { HOST_KVM, HOST_VCPU } from '../../src/arch/smccc.js';
import { KvmRun, kvmArchVcpuIoctlRun } from '../../src/host/arm.js';
import { stage2PgdSize } from '../../src/host/stage2-geom.js';
import { GUEST_HVA, GUEST_IPA, hostFixture } from './_machine.js';

t.test('createVm fills and shares the host structs', async (t) => {
  const fx = hostFixture({ nrVcpus: 3 });
  t.equal(fx.kvm.vcpus.length, 3);
  t.equal(fx.mem.read64Lo(fx.kvm.structPa + HOST_KVM.CREATED_VCPUS), 3);
  t.equal(fx.mem.read64Lo(fx.kvm.structPa + HOST_KVM.PROTECTED), 0);
  for (const v of fx.kvm.vcpus) t.equal(fx.mem.read64Lo(v.structPa + HOST_VCPU.VCPU_IDX), v.idx);
  t.same([...fx.el2.shared].sort(), [fx.kvm.structPa, ...fx.kvm.vcpus.map((v) => v.structPa)].map((pa) => pa / PAGE_SIZE).sort());
  t.ok(fx.mm.notifiers.includes(fx.kvm.notifier));
});

t.test('createVm refuses a bad vCPU count and returns -ENOMEM without pages', async (t) => {
  const fx = hostFixture();
  t.equal(fx.host.createVm(0, fx.mm, 0, false), Err.EINVAL);
  while (fx.host.pages.allocPage() >= 0);
  t.equal(fx.host.createVm(0, fx.mm, 1, true), Err.ENOMEM);
});

t.test('createVm releases what it took when sharing a vCPU struct fails', async (t) => {
  const fx = hostFixture();
  const free = fx.host.pages.freePages;
  // The next page the allocator hands out is already "shared": EL2 answers -EPERM.
  const pa = fx.host.pages.allocPage();
  fx.host.pages.freePage(pa);
  const next = fx.host.pages.allocPage();
  fx.host.pages.freePage(next);
  fx.el2.shared.add((next + PAGE_SIZE) / PAGE_SIZE);
  t.equal(fx.host.createVm(0, fx.mm, 1, false), Err.EPERM);
  t.equal(fx.host.pages.freePages, free);
});

t.test('createHypVm donates a pgd of the host-computed size and one area per vCPU', async (t) => {
  const fx = hostFixture({ nrVcpus: 2 });
  t.equal(fx.kvm.createHypVm(0), 0);
  t.equal(fx.kvm.createHypVm(0), Err.EEXIST);
  const vm = fx.el2.vms[0]!;
  t.equal(vm.kvmPa, fx.kvm.structPa);
  t.equal(stage2PgdSize(40), 2 * PAGE_SIZE, '40-bit IPA: two concatenated level-1 tables');
  t.equal(vm.donated[1]! % (2 * PAGE_SIZE), 0, 'the pgd is aligned to its size');
  t.equal(vm.donated.length, 5);
  t.same(fx.kvm.vcpus.map((v) => v.hypVcpuPa), vm.donated.slice(3));
});

t.test('createHypVm frees its pages when EL2 refuses the VM', async (t) => {
  const fx = hostFixture();
  const free = fx.host.pages.freePages;
  fx.el2.hvc = (_cpu, regs) => {
    regs.setSigned(0, 0);
    regs.setSigned(1, Err.ENOMEM);
  };
  t.equal(fx.kvm.createHypVm(0), Err.ENOMEM);
  t.equal(fx.host.pages.freePages, free);
  t.equal(fx.kvm.handle, 0);
});

t.test('destroy reclaims, uncharges and unpins every pinned page and returns all host memory', async (t) => {
  const fx = hostFixture({ nrVcpus: 2 });
  const free0 = fx.host.pages.freePages + 0;
  for (let i = 0; i < 8; i++) fx.el2.guest.push({ ipa: GUEST_IPA + i * PAGE_SIZE });
  kvmArchVcpuIoctlRun(fx.kvm.vcpus[0]!, 0, new KvmRun());
  fx.kvm.vcpus[1]!.topupMemcache(0, 3);
  t.equal(fx.kvm.pinned.count, 8);
  t.equal(fx.mm.memlock.lockedVm, 8);
  fx.kvm.trace = [];
  t.equal(fx.kvm.destroy(0), 0);
  const steps = fx.kvm.trace;
  t.same(steps.slice(0, 3), ['__pkvm_teardown_vm', 'free_hyp_memcache teardown_mc', `reclaim 0x${fx.mm.paOf(GUEST_HVA).toString(16)}`]);
  t.same(steps.slice(-2), ['free_hyp_memcache vcpu 0', 'free_hyp_memcache vcpu 1']);
  t.equal(fx.el2.calls.filter((c) => c === '__pkvm_host_reclaim_page').length, 8);
  t.equal(fx.kvm.stats.reclaimed, 8);
  t.equal(fx.mm.memlock.lockedVm, 0);
  t.equal(fx.host.gup.unpins, 8);
  for (let i = 0; i < 8; i++) {
    const pa = fx.mm.paOf(GUEST_HVA + i * PAGE_SIZE);
    t.equal(fx.host.pages.pinCount[fx.host.pages.indexOf(pa)], 0);
  }
  t.equal(fx.el2.shared.size, 0, 'kvm and vCPU structs unshared');
  t.equal(fx.el2.pendingReclaim.size, 0);
  // Guest pages stay with the VMM's VMA; every other page (structs, pgd, hyp areas, memcaches, slab) is free.
  t.equal(fx.host.pages.freePages, free0 + 3 - 8, 'only the 8 guest pages remain allocated (structs were allocated before free0)');
  t.same(fx.host.log.warnings, []);
  t.equal(fx.kvm.destroy(0), Err.EEXIST);
});

t.test('destroy with a loaded vCPU: -EBUSY is warned and nothing is released', async (t) => {
  const fx = hostFixture();
  fx.el2.guest.push({ ipa: GUEST_IPA });
  kvmArchVcpuIoctlRun(fx.kvm.vcpus[0]!, 0, new KvmRun());
  fx.kvm.vcpus[0]!.load(1);
  t.equal(fx.kvm.destroy(0), Err.EBUSY);
  t.equal(fx.host.log.warnings.length, 1);
  t.equal(fx.kvm.pinned.count, 1);
  t.equal(fx.mm.memlock.lockedVm, 1);
  t.equal(fx.kvm.destroyed, false);
  fx.kvm.vcpus[0]!.put();
  t.equal(fx.kvm.destroy(0), 0);
  t.equal(fx.kvm.pinned.count, 0);
});

t.test('a failing reclaim is warned and the page is still unpinned', async (t) => {
  const fx = hostFixture();
  fx.el2.guest.push({ ipa: GUEST_IPA });
  kvmArchVcpuIoctlRun(fx.kvm.vcpus[0]!, 0, new KvmRun());
  const hvc = fx.el2.hvc.bind(fx.el2);
  fx.el2.hvc = (cpu, regs) => {
    hvc(cpu, regs);
    if (fx.el2.calls.at(-1) === '__pkvm_host_reclaim_page') regs.setSigned(1, Err.EPERM);
  };
  t.equal(fx.kvm.destroy(0), 0);
  t.equal(fx.host.log.warnings.length, 1);
  t.equal(fx.host.gup.unpins, 1);
});

t.test('munmap of guest memory leaves the guest mapping and the pin; teardown then frees the page', async (t) => {
  const fx = hostFixture();
  fx.el2.guest.push({ ipa: GUEST_IPA });
  kvmArchVcpuIoctlRun(fx.kvm.vcpus[0]!, 0, new KvmRun());
  const pa = fx.kvm.pinned.paAt(0);
  t.equal(fx.mm.munmap(GUEST_HVA, 16 * PAGE_SIZE), 0);
  t.equal(fx.kvm.notifier.counts.unmap, 1);
  t.equal(fx.el2.vms[0]!.mapped.get(GUEST_IPA / PAGE_SIZE), pa / PAGE_SIZE, 'EL2 mapping untouched');
  t.ok(fx.host.pages.isAllocated(pa), 'pinned page stays allocated');
  t.equal(fx.mm.memlock.lockedVm, 1);
  t.equal(fx.kvm.destroy(0), 0);
  t.notOk(fx.host.pages.isAllocated(pa), 'the last unpin of an unmapped page frees it');
});

t.test('a protected VM says so in its struct', async (t) => {
  const fx = hostFixture();
  const kvm = fx.host.createVm(0, fx.mm, 1, true);
  if (typeof kvm === 'number') throw new Error(`createVm ${kvm}`);
  t.equal(fx.mem.read64Lo(kvm.structPa + HOST_KVM.PROTECTED), 1);
  t.equal(kvm.isProtected, true);
});

t.test('gpaToHva follows the memslots', async (t) => {
  const fx = hostFixture();
  t.equal(fx.kvm.gpaToHva(GUEST_IPA + 3 * PAGE_SIZE + 8), GUEST_HVA + 3 * PAGE_SIZE + 8);
  t.equal(fx.kvm.gpaToHva(0x1000), -1);
});

t.test('allocPagesExact aligns in PA space even when host RAM starts off the order boundary', async (t) => {
  const { KvmHost } = await import('../../src/host/kvm.js');
  const fx = hostFixture();
  // Host RAM starting one page past a 2-page boundary: the first aligned pair is at index 1.
  const host = new KvmHost({ mem: fx.mem, port: fx.s2, conduit: fx.el2, profile: fx.host.hyp.profile, ram: [{ base: 0x4000_1000, size: 4 * PAGE_SIZE }], ipaBits: 40 });
  t.equal(host.allocPagesExact(2), 0x4000_2000);
  t.equal(host.allocPagesExact(3), -1, 'no 4-aligned run of 3 free pages left');
  host.freePagesExact(0x4000_2000, 2);
  t.equal(host.pages.freePages, 4);
});

t.test('a physical CPU has at most one vCPU loaded: loading another puts the previous one (sched out/in)', async (t) => {
  const fx = hostFixture({ nrVcpus: 2 });
  fx.kvm.createHypVm(0);
  const [v0, v1] = fx.kvm.vcpus as [NonNullable<(typeof fx.kvm.vcpus)[0]>, NonNullable<(typeof fx.kvm.vcpus)[0]>];
  fx.el2.calls.length = 0;
  v0.load(0);
  v0.load(0);
  v1.load(0);
  t.equal(v0.loadedOn, -1);
  t.equal(v1.loadedOn, 0);
  v1.load(1);
  t.same(fx.el2.calls, ['__pkvm_vcpu_load', '__pkvm_vcpu_put', '__pkvm_vcpu_load', '__pkvm_vcpu_put', '__pkvm_vcpu_load']);
  t.same([fx.host.loadedVcpu[0], fx.host.loadedVcpu[1]], [null, v1]);
  v1.put();
  t.equal(fx.host.loadedVcpu[1], null);
});
