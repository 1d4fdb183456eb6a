// The host KVM code driving the real hypervisor model, wired the way src/system.ts wires it: HVC through the host
// context registers, host memory accesses through the host stage-2, guests through GuestCpus (pkvm.md §4–§6, §9).
import t from 'tap';
import { PAGE_SIZE } from '../../src/arch/addr.js';
import { Err } from '../../src/arch/errno.js';
import { ARMV8_0_PA40_FEATURES } from '../../src/arch/features.js';
import type { RegFile } from '../../src/arch/regs.js';
import { PROFILE_PKVM_2022 } from '../../src/arch/smccc.js';
import { PageState } from '../../src/el2/page-state.js';
import { createHyp, hostS2PgtablePages } from '../../src/el2/setup.js';
import { hostAccess, hostHvc } from '../../src/el2/trap.js';
import { GuestCpus } from '../../src/guest/vcpu.js';
import { KvmExit, KvmRun, kvmArchVcpuIoctlRun } from '../../src/host/arm.js';
import { KvmHost } from '../../src/host/kvm.js';
import { pkvmMemAbort } from '../../src/host/mmu.js';
import { Mm, VmaKind } from '../../src/host/vmm-mem.js';
import { PhysMem } from '../../src/mem/phys-mem.js';
import { S2Mmu } from '../../src/mmu/s2-mmu.js';
import { Tlb } from '../../src/mmu/tlb.js';

const RAM = 0x4000_0000;
const RAM_PAGES = 4096; // 16 MiB
const HVA = 0x7f00_0000_0000;
const IPA = 0x8000_0000;
const NR_CPUS = 2;

function machine(guestPages = 32, isProtected = false) {
  const mem = new PhysMem();
  mem.addRegion(RAM, RAM_PAGES * PAGE_SIZE);
  const tlb = new Tlb();
  const features = ARMV8_0_PA40_FEATURES;
  const mmus = [new S2Mmu(mem, features, { tlb }), new S2Mmu(mem, features, { tlb })];
  const guests = new GuestCpus();
  const carvePages = hostS2PgtablePages(mem) + 512;
  const carveBase = RAM + (RAM_PAGES - carvePages) * PAGE_SIZE;
  const hyp = createHyp({ mem, features, tlb, nrCpus: NR_CPUS, carveout: { base: carveBase, nrPages: carvePages }, mmus, runner: guests });
  const conduit = {
    hvc(cpu: number, regs: RegFile): void {
      const ctx = hyp.cpus[cpu]!.regs;
      for (let n = 0; n < 8; n++) ctx.set(n, regs.lo(n), regs.hi(n));
      hostHvc(hyp, cpu, 0);
      for (let n = 0; n < 4; n++) regs.set(n, ctx.lo(n), ctx.hi(n));
    },
  };
  const port = { access: (cpu: number, pa: number, write: boolean): boolean => hostAccess(hyp, cpu, pa, write) };
  const host = new KvmHost({
    mem,
    port,
    conduit,
    profile: PROFILE_PKVM_2022,
    ram: [{ base: RAM, size: carveBase - RAM }],
    ipaBits: 40,
  });
  for (let cpu = 0; cpu < NR_CPUS; cpu++) t.equal(host.hyp.call(cpu, '__pkvm_prot_finalize'), 0);
  const mm = new Mm(host.pages);
  t.equal(mm.mmap(HVA, guestPages * PAGE_SIZE, VmaKind.ANON), 0);
  const kvm = host.createVm(0, mm, 2, isProtected);
  if (typeof kvm === 'number') throw new Error(`createVm ${kvm}`);
  t.equal(kvm.memslots.set(0, IPA, guestPages * PAGE_SIZE, HVA), 0);
  t.equal(kvm.createHypVm(0), 0);
  return { mem, hyp, host, mm, kvm, guests };
}

t.test('a guest store faults, the host pins and maps the page, the retry lands in the pinned page', async (t) => {
  const m = machine();
  const g = m.guests.vcpu(m.kvm.handle, 0);
  g.regs.set(3, 0xcafe_f00d, 0x1234);
  g.queueStore(IPA + 5 * PAGE_SIZE + 0x18, 8, 3);
  g.queueLoad(IPA + 5 * PAGE_SIZE + 0x18, 4, 4, { signed: true, x: true });
  const run = new KvmRun();
  t.equal(kvmArchVcpuIoctlRun(m.kvm.vcpus[0]!, 0, run), 0);
  t.equal(run.exitReason, KvmExit.IDLE);
  t.equal(m.kvm.stats.mapped, 1);
  const pa = m.kvm.pinned.paAt(0);
  t.equal(pa, m.mm.paOf(HVA + 5 * PAGE_SIZE));
  t.same([m.mem.read64Lo(pa + 0x18), m.mem.read64Hi(pa + 0x18)], [0xcafe_f00d, 0x1234]);
  t.same([g.regs.lo(4), g.regs.hi(4)], [0xcafe_f00d, 0xffff_ffff]);
  t.equal(m.hyp.hostState(pa), PageState.SHARED_OWNED, 'non-protected guest: shared');
  t.equal(m.hyp.guestState(m.kvm.handle, IPA + 5 * PAGE_SIZE), PageState.SHARED_BORROWED);
  t.equal(m.mm.memlock.lockedVm, 1);
  t.same(m.hyp.warnings, []);
  t.same(m.host.log.warnings, []);
});

t.test('two vCPUs faulting the same IPA: the loser gets -EPERM → -EAGAIN → 0 and drops its extra pin', async (t) => {
  const m = machine();
  m.guests.vcpu(m.kvm.handle, 0).queueLoad(IPA, 8, 1);
  kvmArchVcpuIoctlRun(m.kvm.vcpus[0]!, 0, new KvmRun());
  const v1 = m.kvm.vcpus[1]!;
  v1.load(1);
  t.equal(pkvmMemAbort(v1, 1, IPA, HVA), 0);
  v1.put();
  t.equal(m.kvm.stats.eagain, 1);
  t.equal(m.kvm.pinned.count, 1);
  t.equal(m.host.pages.pinCount[m.host.pages.indexOf(m.kvm.pinned.paAt(0))], 1);
  t.equal(m.mm.memlock.lockedVm, 1);
  t.same(m.hyp.warnings, []);
});

t.test('munmap and NUMA balancing leave the guest stage-2 intact', async (t) => {
  const m = machine();
  const g = m.guests.vcpu(m.kvm.handle, 0);
  g.queueLoad(IPA, 8, 1);
  kvmArchVcpuIoctlRun(m.kvm.vcpus[0]!, 0, new KvmRun());
  const pa = m.kvm.pinned.paAt(0);
  t.equal(m.mm.munmap(HVA, 32 * PAGE_SIZE), 0);
  t.equal(m.hyp.guestState(m.kvm.handle, IPA), PageState.SHARED_BORROWED);
  m.mem.write64(pa, 99, 0);
  g.queueLoad(IPA, 8, 2);
  t.equal(kvmArchVcpuIoctlRun(m.kvm.vcpus[0]!, 0, new KvmRun()), 0);
  t.equal(g.regs.lo(2), 99, 'the guest still reads the pinned page');
  t.equal(m.kvm.stats.mapped, 1, 'no new fault');
});

t.test('protected guest: the page is donated and a host access to it is refused (abort injected)', async (t) => {
  const m = machine(32, true);
  m.guests.vcpu(m.kvm.handle, 1).queueStore(IPA + PAGE_SIZE, 4, 0);
  t.equal(kvmArchVcpuIoctlRun(m.kvm.vcpus[1]!, 1, new KvmRun()), 0);
  const pa = m.kvm.pinned.paAt(0);
  t.equal(m.hyp.hostState(pa), PageState.NOPAGE);
  t.notOk(m.host.ram.write64(0, pa, 1, 0), 'the host cannot touch guest memory');
  t.equal(m.host.log.oopses.length, 1);
});

t.test('teardown reclaims and unpins everything, poisons protected pages, and returns all host pages', async (t) => {
  for (const prot of [false, true]) {
    const m = machine(64, prot);
    const free0 = m.host.pages.freePages;
    const g0 = m.guests.vcpu(m.kvm.handle, 0);
    const g1 = m.guests.vcpu(m.kvm.handle, 1);
    for (let i = 0; i < 64; i++) {
      (i % 2 === 0 ? g0 : g1).regs.set(1, 0x5a5a_5a5a, 0);
      (i % 2 === 0 ? g0 : g1).queueStore(IPA + i * PAGE_SIZE, 8, 1);
    }
    t.equal(kvmArchVcpuIoctlRun(m.kvm.vcpus[0]!, 0, new KvmRun()), 0);
    t.equal(kvmArchVcpuIoctlRun(m.kvm.vcpus[1]!, 1, new KvmRun()), 0);
    t.equal(m.kvm.pinned.count, 64);
    const pas = Array.from(m.kvm.pinned.pasView());
    t.equal(m.kvm.destroy(0), 0);
    t.same(m.hyp.warnings, [], `no hypervisor warning (protected=${prot})`);
    t.same(m.host.log.warnings, []);
    t.equal(m.kvm.stats.reclaimed, 64);
    t.equal(m.mm.memlock.lockedVm, 0);
    for (const pa of pas) {
      t.equal(m.host.pages.pinCount[m.host.pages.indexOf(pa)], 0);
      t.equal(m.hyp.hostState(pa), PageState.OWNED);
    }
    t.equal(m.mem.read64Lo(pas[0]!), prot ? 0 : 0x5a5a_5a5a, prot ? 'guest-owned pages are poisoned' : 'shared pages keep their data');
    t.equal(m.hyp.liveVms().length, 0);
    // Only the 64 guest pages, still mapped by the VMM, stay allocated. Back since free0: the kvm and two vCPU
    // structs, and, through the teardown memcache, the 2-page pgd, the hyp VM page and two hyp vCPU pages.
    t.equal(m.host.pages.freePages, free0 + 3 + 5 - 64);
  }
});

t.test('memlock limit reached: KVM_RUN fails with -ENOMEM and nothing leaks', async (t) => {
  const m = machine();
  m.mm.memlock.rlimitMemlock = 2 * PAGE_SIZE;
  const g = m.guests.vcpu(m.kvm.handle, 0);
  for (let i = 0; i < 3; i++) g.queueLoad(IPA + i * PAGE_SIZE, 8, 1);
  const run = new KvmRun();
  t.equal(kvmArchVcpuIoctlRun(m.kvm.vcpus[0]!, 0, run), Err.ENOMEM);
  t.equal(m.kvm.pinned.count, 2);
  t.equal(g.pending, 1, 'the third load is still waiting');
  t.equal(m.kvm.destroy(0), 0);
  t.same(m.hyp.warnings, []);
});

t.test('an instruction fetch fault is handled like a data fault: the page is mapped and the fetch retried', async (t) => {
  const m = machine();
  const g = m.guests.vcpu(m.kvm.handle, 0);
  g.queueFetch(IPA + 7 * PAGE_SIZE);
  const run = new KvmRun();
  t.equal(kvmArchVcpuIoctlRun(m.kvm.vcpus[0]!, 0, run), 0);
  t.equal(run.exitReason, KvmExit.IDLE);
  t.equal(m.kvm.stats.mapped, 1);
  t.equal(g.pending, 0);
});

t.test('MMIO: the VMM completes the load and the guest continues', async (t) => {
  const m = machine();
  const g = m.guests.vcpu(m.kvm.handle, 0);
  g.queueLoad(0x0900_0004, 4, 6, { signed: true, x: true });
  g.queueStore(IPA, 8, 6);
  const run = new KvmRun();
  t.equal(kvmArchVcpuIoctlRun(m.kvm.vcpus[0]!, 0, run), 0);
  t.equal(run.exitReason, KvmExit.MMIO);
  t.same([run.mmioPhysAddr, run.mmioLen, run.mmioIsWrite], [0x0900_0004, 4, false]);
  t.ok(g.completeMmio(0x8000_0001, 0));
  t.equal(kvmArchVcpuIoctlRun(m.kvm.vcpus[0]!, 0, run), 0);
  t.equal(run.exitReason, KvmExit.IDLE);
  const pa = m.kvm.pinned.paAt(0);
  t.same([m.mem.read64Lo(pa), m.mem.read64Hi(pa)], [0x8000_0001, 0xffff_ffff], 'LDRSW result stored by the next instruction');
});

t.test('guest HVC: a non-protected guest exits to the VMM; a protected guest MEM_SHARE is handled at EL2', async (t) => {
  const np = machine();
  np.guests.vcpu(np.kvm.handle, 0).queueHvc(0xc600_0002, 0, 0, 0, 7);
  const run = new KvmRun();
  t.equal(kvmArchVcpuIoctlRun(np.kvm.vcpus[0]!, 0, run), 0);
  t.equal(run.exitReason, KvmExit.HYPERCALL);
  t.equal(run.hvcImm, 7);

  const p = machine(32, true);
  const g = p.guests.vcpu(p.kvm.handle, 0);
  g.queueStore(IPA, 8, 0);
  g.queueHvc(0xc600_0003, IPA);
  t.equal(kvmArchVcpuIoctlRun(p.kvm.vcpus[0]!, 0, run), 0);
  t.equal(run.exitReason, KvmExit.IDLE);
  t.equal(g.regs.lo(0), 0, 'x0 = SMCCC_RET_SUCCESS');
  const pa = p.kvm.pinned.paAt(0);
  t.equal(p.hyp.hostState(pa), PageState.SHARED_BORROWED, 'the guest shared its page back with the host');
  t.ok(p.host.ram.write64(0, pa, 1, 0), 'the host may now touch it');
  t.equal(p.kvm.destroy(0), 0);
  t.same(p.hyp.warnings, []);
});
