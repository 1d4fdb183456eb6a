// KVM_RUN (kvm_arch_vcpu_ioctl_run + handle_exit): the hyp VM is created on the first run, the vCPU is loaded and
// put around the loop, stage-2 aborts are handled until the guest is idle, and each exit the VMM must see stops it.
import t from 'tap';
import { PAGE_SIZE } from '../../src/arch/addr.js';
import { Err } from '../../src/arch/errno.js';
import { KvmExit, KvmRun, LIVELOCK_FAULTS, kvmArchVcpuIoctlRun } from '../../src/host/arm.js';
import { GUEST_HVA, GUEST_IPA, hostFixture } from './_machine.js';

t.test('first run creates the hyp VM, faults pages in and returns idle with the vCPU put', async (t) => {
  const fx = hostFixture({ nrVcpus: 2 });
  fx.el2.guest.push({ ipa: GUEST_IPA }, { ipa: GUEST_IPA + 3 * PAGE_SIZE, write: true }, { ipa: GUEST_IPA + 8 });
  const run = new KvmRun();
  t.equal(kvmArchVcpuIoctlRun(fx.kvm.vcpus[1]!, 0, run), 0);
  t.equal(run.exitReason, KvmExit.IDLE);
  t.equal(fx.kvm.handle, 0x1000);
  t.equal(fx.kvm.stats.mapped, 2);
  t.equal(run.exits, 3, 'two aborts and the final idle exit');
  t.equal(fx.kvm.vcpus[1]!.loadedOn, -1);
  t.same(
    fx.el2.calls.filter((c) => c.startsWith('__pkvm_init') || c.includes('vcpu_load') || c.includes('vcpu_put')),
    ['__pkvm_init_vm', '__pkvm_init_vcpu', '__pkvm_init_vcpu', '__pkvm_vcpu_load', '__pkvm_vcpu_put'],
  );
  t.equal(fx.el2.calls.at(-1), '__pkvm_vcpu_put');
});

t.test('an access outside the memslots with a syndrome is an MMIO exit', async (t) => {
  const fx = hostFixture();
  fx.el2.guest.push({ ipa: 0x0900_0010, write: true });
  const run = new KvmRun();
  t.equal(kvmArchVcpuIoctlRun(fx.kvm.vcpus[0]!, 0, run), 0);
  t.equal(run.exitReason, KvmExit.MMIO);
  t.same([run.mmioPhysAddr, run.mmioLen, run.mmioIsWrite], [0x0900_0010, 8, true]);
});

t.test('an access outside the memslots without a syndrome fails with -ENOSYS', async (t) => {
  const fx = hostFixture();
  fx.el2.guest.push({ ipa: 0x0900_0000, isv: false });
  const run = new KvmRun();
  t.equal(kvmArchVcpuIoctlRun(fx.kvm.vcpus[0]!, 0, run), Err.ENOSYS);
  t.equal(run.exitReason, KvmExit.ERROR);
});

t.test('a fetch outside the memslots injects a prefetch abort', async (t) => {
  const fx = hostFixture();
  fx.el2.guest.push({ ipa: 0x0900_0000, exec: true });
  const run = new KvmRun();
  kvmArchVcpuIoctlRun(fx.kvm.vcpus[0]!, 0, run);
  t.equal(run.exitReason, KvmExit.INJECTED);
  t.equal(fx.kvm.stats.injected, 1);
});

t.test('a synchronous external abort injects an SError', async (t) => {
  const fx = hostFixture();
  fx.el2.guest.push({ ipa: GUEST_IPA, fsc: 0x10 });
  const run = new KvmRun();
  kvmArchVcpuIoctlRun(fx.kvm.vcpus[0]!, 0, run);
  t.equal(run.exitReason, KvmExit.INJECTED);
});

t.test('an unsupported fault status (address size) fails with -EFAULT', async (t) => {
  const fx = hostFixture();
  fx.el2.guest.push({ ipa: GUEST_IPA, fsc: 0x00 });
  const run = new KvmRun();
  t.equal(kvmArchVcpuIoctlRun(fx.kvm.vcpus[0]!, 0, run), Err.EFAULT);
});

t.test('an access-flag fault needs nothing from the host', async (t) => {
  const fx = hostFixture();
  fx.el2.guest.push({ ipa: GUEST_IPA, fsc: 0x0b });
  const run = new KvmRun();
  t.equal(kvmArchVcpuIoctlRun(fx.kvm.vcpus[0]!, 0, run), 0);
  t.equal(run.exitReason, KvmExit.IDLE);
  t.equal(fx.kvm.stats.memAborts, 0);
});

t.test('a write to a read-only memslot is handled as MMIO', async (t) => {
  const fx = hostFixture();
  fx.kvm.memslots.set(0, GUEST_IPA, 16 * PAGE_SIZE, GUEST_HVA, 0x2);
  fx.el2.guest.push({ ipa: GUEST_IPA, write: true });
  const run = new KvmRun();
  kvmArchVcpuIoctlRun(fx.kvm.vcpus[0]!, 0, run);
  t.equal(run.exitReason, KvmExit.MMIO);
});

t.test('SIGBUS for a poisoned page ends the run with -EINTR', async (t) => {
  const fx = hostFixture();
  fx.mm.poison(GUEST_HVA);
  fx.el2.guest.push({ ipa: GUEST_IPA });
  const run = new KvmRun();
  t.equal(kvmArchVcpuIoctlRun(fx.kvm.vcpus[0]!, 0, run), Err.EINTR);
  t.equal(run.exitReason, KvmExit.INTR);
});

t.test('an error of the fault path is the ioctl result', async (t) => {
  const fx = hostFixture();
  fx.mm.munmap(GUEST_HVA, PAGE_SIZE);
  fx.el2.guest.push({ ipa: GUEST_IPA });
  const run = new KvmRun();
  t.equal(kvmArchVcpuIoctlRun(fx.kvm.vcpus[0]!, 0, run), Err.EFAULT);
  t.equal(fx.kvm.vcpus[0]!.loadedOn, -1, 'the vCPU is put on the error path too');
});

t.test('the V1 -EPERM ambiguity livelocks: the run stops after repeated faults at one IPA', async (t) => {
  const fx = hostFixture();
  // The page behind the IPA already belongs to a guest, so every map returns -EPERM → -EAGAIN → retry.
  fx.el2.guest.push({ ipa: GUEST_IPA });
  kvmArchVcpuIoctlRun(fx.kvm.vcpus[0]!, 0, new KvmRun());
  const pa = fx.mm.paOf(GUEST_HVA);
  fx.el2.vms[0]!.mapped.clear();
  fx.el2.guestPages.add(pa / PAGE_SIZE);
  fx.el2.guest.push({ ipa: GUEST_IPA });
  const run = new KvmRun();
  t.equal(kvmArchVcpuIoctlRun(fx.kvm.vcpus[0]!, 0, run), 0);
  t.equal(run.exitReason, KvmExit.LIVELOCK);
  t.equal(fx.kvm.stats.eagain, LIVELOCK_FAULTS);
});

t.test('a destroyed VM cannot run', async (t) => {
  const fx = hostFixture();
  const vcpu = fx.kvm.vcpus[0]!;
  t.equal(fx.kvm.destroy(0), 0);
  t.equal(kvmArchVcpuIoctlRun(vcpu, 0, new KvmRun()), Err.EINVAL);
});
