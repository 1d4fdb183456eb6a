import t from 'tap';
import { PAGE_SIZE } from '../../src/arch/addr.js';
import { Err } from '../../src/arch/errno.js';
import { HOST_KVM, HOST_VCPU, hypVcpuSize, hypVmSize } from '../../src/arch/smccc.js';
import { guestShareHost } from '../../src/el2/mem-protect.js';
import { PageState } from '../../src/el2/page-state.js';
import { HANDLE_OFFSET, KVM_MAX_PVMS } from '../../src/el2/vm.js';
import { HypPageFlag } from '../../src/el2/vmemmap.js';
import { kvmPgtableStage2PgdSize } from '../../src/pgtable/stage2.js';
import {
  allocHostPages,
  bootMachine,
  createVm,
  get64,
  hvc,
  hvcRet,
  put64,
  topupHostMemcache,
  type TestMachine,
} from './helpers/machine.js';

/** A host struct kvm shared with EL2, plus an aligned pgd and a VM area, without issuing init_vm. */
function prepareVm(m: TestMachine, nrVcpus: number, share = true): { kvm: number; vmArea: number; pgd: number } {
  const kvm = allocHostPages(m);
  put64(m, kvm + HOST_KVM.CREATED_VCPUS, nrVcpus);
  if (share) hvcRet(m, 0, '__pkvm_host_share_hyp', kvm / PAGE_SIZE);
  const vmArea = allocHostPages(m, Math.max(1, hypVmSize(Math.max(nrVcpus, 1)) / PAGE_SIZE));
  const pgdSize = kvmPgtableStage2PgdSize(m.hyp.hostVtcrLo);
  while (m.nextPa % pgdSize !== 0) m.nextPa += PAGE_SIZE;
  const pgd = allocHostPages(m, pgdSize / PAGE_SIZE);
  return { kvm, vmArea, pgd };
}

t.test('__pkvm_init_vm', (t) => {
  t.test('hands out handles from 0x1000 with VMID = index + 1, up to 255 VMs, then -ENOMEM', (t) => {
    const m = bootMachine();
    for (let i = 0; i < KVM_MAX_PVMS; i++) {
      const p = prepareVm(m, 1);
      const h = hvcRet(m, 0, '__pkvm_init_vm', p.kvm, p.vmArea, p.pgd);
      if (h !== HANDLE_OFFSET + i || m.hyp.vmByHandle(h)!.vmid !== i + 1) {
        t.fail(`VM ${i}: handle ${h}`);
        break;
      }
    }
    const p = prepareVm(m, 1);
    t.equal(hvcRet(m, 0, '__pkvm_init_vm', p.kvm, p.vmArea, p.pgd), Err.ENOMEM, '256th VM');
    t.equal(m.hyp.hostState(p.vmArea), PageState.OWNED, 'donations undone');
    t.equal(m.hyp.hostState(p.pgd), PageState.OWNED);
    t.equal(m.hyp.pageRefcount(p.kvm), 0, 'host kvm unpinned');
    t.equal(m.hyp.liveVms().length, 255);
    t.same(m.hyp.warnings, []);
    t.end();
  });
  t.test('reuses the first free slot after a teardown', (t) => {
    const m = bootMachine();
    const a = createVm(m);
    createVm(m);
    t.equal(hvcRet(m, 0, '__pkvm_teardown_vm', a.handle), 0);
    t.equal(createVm(m).handle, HANDLE_OFFSET);
    t.end();
  });
  t.test('refuses, in order: unshared kvm (-EPERM), no vCPUs (-EINVAL), bad VM area (-ENOMEM), bad pgd (-ENOMEM)', (t) => {
    const m = bootMachine();
    const p0 = prepareVm(m, 1, false);
    t.equal(hvcRet(m, 0, '__pkvm_init_vm', p0.kvm, p0.vmArea, p0.pgd), Err.EPERM);
    const p1 = prepareVm(m, 0);
    t.equal(hvcRet(m, 0, '__pkvm_init_vm', p1.kvm, p1.vmArea, p1.pgd), Err.EINVAL);
    t.equal(m.hyp.pageRefcount(p1.kvm), 0, 'unpinned after -EINVAL');
    const pHuge = prepareVm(m, 1);
    m.mem.write64(pHuge.kvm + HOST_KVM.CREATED_VCPUS, 0xffff_ffff, 0xffff_ffff);
    t.equal(hvcRet(m, 0, '__pkvm_init_vm', pHuge.kvm, pHuge.vmArea, pHuge.pgd), Err.ENOMEM, 'absurd vCPU count: the VM area cannot be donated');
    t.equal(m.hyp.pageRefcount(pHuge.kvm), 0);
    const p2 = prepareVm(m, 1);
    t.equal(hvcRet(m, 0, '__pkvm_init_vm', p2.kvm, p2.vmArea + 8, p2.pgd), Err.ENOMEM, 'unaligned VM area');
    t.equal(hvcRet(m, 0, '__pkvm_init_vm', p2.kvm, p2.kvm, p2.pgd), Err.ENOMEM, 'VM area not owned by the host');
    t.equal(hvcRet(m, 0, '__pkvm_init_vm', p2.kvm, p2.vmArea, p2.vmArea), Err.ENOMEM, 'pgd overlapping the VM area');
    t.equal(m.hyp.hostState(p2.vmArea), PageState.OWNED, 'VM area returned');
    t.equal(hvcRet(m, 0, '__pkvm_init_vm', p2.kvm, p2.vmArea, p2.pgd + PAGE_SIZE), Err.ENOMEM, 'misaligned pgd: the VM pool cannot hand it out');
    t.equal(m.hyp.hostState(p2.pgd + PAGE_SIZE), PageState.OWNED, 'pgd returned');
    t.equal(m.hyp.pageRefcount(p2.kvm), 0);
    t.same(m.hyp.warnings, []);
    t.end();
  });
  t.test('refuses a host struct kvm that already has a VM with -EEXIST', (t) => {
    const m = bootMachine();
    const vm = createVm(m);
    const p = prepareVm(m, 1);
    t.equal(hvcRet(m, 0, '__pkvm_init_vm', vm.kvmPa, p.vmArea, p.pgd), Err.EEXIST);
    t.equal(m.hyp.pageRefcount(vm.kvmPa), 1, 'only the live VM pins it');
    t.end();
  });
  t.test('donates the VM area and pgd to the hypervisor and pins the host kvm', (t) => {
    const m = bootMachine();
    const p = prepareVm(m, 2);
    const h = hvcRet(m, 0, '__pkvm_init_vm', p.kvm, p.vmArea, p.pgd);
    t.equal(m.hyp.hostState(p.vmArea), PageState.NOPAGE);
    t.equal(m.hyp.hypState(p.vmArea), PageState.OWNED);
    t.equal(m.hyp.hypState(p.pgd), PageState.OWNED);
    t.ok(m.hyp.isPinnedByHyp(p.kvm));
    const vm = m.hyp.vmByHandle(h)!;
    t.equal(vm.createdVcpus, 2);
    t.equal(vm.vtcrLo, m.hyp.hostVtcrLo, 'guest VTCR = host VTCR');
    t.equal(vm.pgt.pgd, p.pgd);
    t.end();
  });
  t.end();
});

t.test('__pkvm_init_vcpu', (t) => {
  t.test('refuses unknown handles (-ENOENT), extra vCPUs and wrong indices (-EINVAL), unshared structs (-EBUSY)', (t) => {
    const m = bootMachine();
    const vm = createVm(m, { nrVcpus: 1 });
    const hv = allocHostPages(m);
    hvcRet(m, 0, '__pkvm_host_share_hyp', hv / PAGE_SIZE);
    const area = (): number => allocHostPages(m, hypVcpuSize() / PAGE_SIZE);
    t.equal(hvcRet(m, 0, '__pkvm_init_vcpu', 0x2000, hv, area()), Err.ENOENT);
    t.equal(hvcRet(m, 0, '__pkvm_init_vcpu', vm.handle, hv, area()), Err.EINVAL, 'all created vCPUs exist');
    const p = prepareVm(m, 2);
    const h2 = hvcRet(m, 0, '__pkvm_init_vm', p.kvm, p.vmArea, p.pgd);
    put64(m, hv + HOST_VCPU.VCPU_IDX, 1);
    t.equal(hvcRet(m, 0, '__pkvm_init_vcpu', h2, hv, area()), Err.EINVAL, 'index 1 before 0');
    t.equal(m.hyp.pageRefcount(hv), 0, 'unpinned after -EINVAL');
    const unshared = allocHostPages(m);
    const a = area();
    t.equal(hvcRet(m, 0, '__pkvm_init_vcpu', h2, unshared, a), Err.EBUSY);
    t.equal(m.hyp.hostState(a), PageState.OWNED, 'area returned');
    t.equal(hvcRet(m, 0, '__pkvm_init_vcpu', h2, hv, hv), Err.ENOMEM, 'area not donatable');
    put64(m, hv + HOST_VCPU.VCPU_IDX, 0);
    t.equal(hvcRet(m, 0, '__pkvm_init_vcpu', h2, hv, area()), 0);
    t.same(m.hyp.warnings, []);
    t.end();
  });
  t.end();
});

t.test('vcpu load/put', (t) => {
  const m = bootMachine();
  const vm = createVm(m, { nrVcpus: 2 });
  hvc(m, 0, '__pkvm_vcpu_load', vm.handle, 0);
  const c0 = m.hyp.cpus[0]!;
  t.equal(c0.loadedVcpu?.idx, 0);
  hvc(m, 0, '__pkvm_vcpu_load', vm.handle, 1);
  t.equal(c0.loadedVcpu?.idx, 0, 'a CPU with a loaded vCPU ignores a second load');
  hvc(m, 1, '__pkvm_vcpu_load', vm.handle, 0);
  t.equal(m.hyp.cpus[1]!.loadedVcpu, null, 'a vCPU loaded elsewhere is not loaded twice');
  hvc(m, 1, '__pkvm_vcpu_load', vm.handle, 2);
  hvc(m, 1, '__pkvm_vcpu_load', 0x1234, 0);
  t.equal(m.hyp.cpus[1]!.loadedVcpu, null, 'bad index or handle loads nothing');
  const r = hvc(m, 1, '__pkvm_vcpu_put');
  t.equal(r.x0, 0, 'put with nothing loaded is harmless');
  hvc(m, 0, '__pkvm_vcpu_put');
  t.equal(c0.loadedVcpu, null);
  t.equal(m.hyp.pageRefcount(m.hyp.vmByHandle(vm.handle)!.pa), 0, 'VM reference dropped');
  t.end();
});

t.test('__pkvm_teardown_vm', (t) => {
  t.test('returns -ENOENT for unknown handles and -EBUSY while a vCPU is loaded', (t) => {
    const m = bootMachine();
    t.equal(hvcRet(m, 0, '__pkvm_teardown_vm', 0x1000), Err.ENOENT);
    t.equal(hvcRet(m, 0, '__pkvm_teardown_vm', 0xfff), Err.ENOENT);
    t.equal(hvcRet(m, 0, '__pkvm_teardown_vm', 2 ** 40), Err.ENOENT);
    const vm = createVm(m);
    hvc(m, 1, '__pkvm_vcpu_load', vm.handle, 0);
    t.equal(hvcRet(m, 0, '__pkvm_teardown_vm', vm.handle), Err.EBUSY);
    t.not(m.hyp.vmByHandle(vm.handle), null, 'still in the table');
    hvc(m, 1, '__pkvm_vcpu_put');
    t.equal(hvcRet(m, 0, '__pkvm_teardown_vm', vm.handle), 0);
    t.equal(hvcRet(m, 0, '__pkvm_teardown_vm', vm.handle), Err.ENOENT, 'second teardown');
    t.same(m.hyp.warnings, []);
    t.end();
  });
  t.test('marks guest pages for reclaim, returns every EL2 page through the teardown memcache, unpins', (t) => {
    for (const prot of [false, true]) {
      const m = bootMachine();
      const vm = createVm(m, { protected: prot, nrVcpus: 1 });
      hvc(m, 0, '__pkvm_vcpu_load', vm.handle, 0);
      const guestPages: number[] = [];
      for (let i = 0; i < 4; i++) {
        topupHostMemcache(m, vm.vcpuPas[0]! + HOST_VCPU.MC_HEAD, 2);
        const pa = allocHostPages(m);
        m.mem.fill32(pa, PAGE_SIZE, 0x1111_1111);
        t.equal(hvc(m, 0, '__pkvm_host_map_guest', pa / PAGE_SIZE, 0x40000 * i).x1, 0);
        guestPages.push(pa);
      }
      hvc(m, 0, '__pkvm_vcpu_put');
      const hypVm = m.hyp.vmByHandle(vm.handle)!;
      const elPages = [hypVm.pa, hypVm.vcpus[0]!.pa, ...m.hyp.tablePages(hypVm.pgt), ...m.hyp.memcachePages()];
      t.equal(hvcRet(m, 0, '__pkvm_teardown_vm', vm.handle), 0);
      const nr = get64(m, vm.kvmPa + HOST_KVM.TEARDOWN_MC_NR);
      const returned: number[] = [];
      for (let pa = get64(m, vm.kvmPa + HOST_KVM.TEARDOWN_MC_HEAD), i = 0; i < nr; i++, pa = get64(m, pa)) returned.push(pa);
      for (const pa of elPages) t.ok(returned.includes(pa), `EL2 page ${pa.toString(16)} returned`);
      for (const pa of returned) t.equal(m.hyp.hostState(pa), PageState.OWNED, 'returned page is the host\'s');
      const flags = prot ? HypPageFlag.PENDING_RECLAIM | HypPageFlag.NEED_POISONING : HypPageFlag.PENDING_RECLAIM;
      for (const pa of guestPages) t.equal(m.hyp.pageFlags(pa), flags);
      t.equal(m.hyp.pendingReclaimPages(), 4);
      t.equal(m.hyp.pageRefcount(vm.kvmPa), 0);
      t.equal(m.hyp.pageRefcount(vm.vcpuPas[0]!), 0);
      // Reclaim: pVM pages are poisoned, np-guest pages keep their contents.
      for (const pa of guestPages) t.equal(hvcRet(m, 0, '__pkvm_host_reclaim_page', pa / PAGE_SIZE), 0);
      for (const pa of guestPages) {
        t.equal(m.hyp.hostState(pa), PageState.OWNED);
        t.equal(m.mem.read32(pa), prot ? 0 : 0x1111_1111);
      }
      t.equal(m.hyp.pendingReclaimPages(), 0);
      t.same(m.hyp.warnings, []);
    }
    t.end();
  });
  t.test('a pVM page shared back with the host is reclaimed without poisoning', (t) => {
    const m = bootMachine();
    const vm = createVm(m, { protected: true });
    hvc(m, 0, '__pkvm_vcpu_load', vm.handle, 0);
    topupHostMemcache(m, vm.vcpuPas[0]! + HOST_VCPU.MC_HEAD, 2);
    const pa = allocHostPages(m);
    t.equal(hvc(m, 0, '__pkvm_host_map_guest', pa / PAGE_SIZE, 9).x1, 0);
    t.equal(guestShareHost(m.hyp, m.hyp.vmByHandle(vm.handle)!.vcpus[0]!, 9 * PAGE_SIZE), 0);
    m.mem.write32(pa, 0x77);
    hvc(m, 0, '__pkvm_vcpu_put');
    t.equal(hvcRet(m, 0, '__pkvm_teardown_vm', vm.handle), 0);
    t.equal(m.hyp.pageFlags(pa), HypPageFlag.PENDING_RECLAIM);
    t.equal(hvcRet(m, 0, '__pkvm_host_reclaim_page', pa / PAGE_SIZE), 0);
    t.equal(m.mem.read32(pa), 0x77);
    t.equal(m.hyp.hostState(pa), PageState.OWNED);
    t.same(m.hyp.warnings, []);
    t.end();
  });
  t.test('reclaim of a page that is not pending is refused with -EPERM (host never shared it)', (t) => {
    const m = bootMachine();
    const vm = createVm(m, { protected: true });
    hvc(m, 0, '__pkvm_vcpu_load', vm.handle, 0);
    topupHostMemcache(m, vm.vcpuPas[0]! + HOST_VCPU.MC_HEAD, 2);
    const pa = allocHostPages(m);
    t.equal(hvc(m, 0, '__pkvm_host_map_guest', pa / PAGE_SIZE, 3).x1, 0);
    t.equal(hvcRet(m, 0, '__pkvm_host_reclaim_page', pa / PAGE_SIZE), Err.EPERM, 'live guest page');
    t.equal(hvcRet(m, 0, '__pkvm_host_reclaim_page', allocHostPages(m) / PAGE_SIZE), 0, 'host page: idempotent 0');
    t.end();
  });
  t.end();
});
