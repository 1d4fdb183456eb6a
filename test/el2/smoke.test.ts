import t from 'tap';
import { bootMachine, createVm, hvc, allocHostPages, topupHostMemcache } from './helpers/machine.js';
import { PAGE_SIZE } from '../../src/arch/addr.js';
import { HOST_VCPU } from '../../src/arch/smccc.js';
import { pageStateName } from '../../src/el2/page-state.js';

t.test('smoke', (t) => {
  const m = bootMachine();
  const pa = allocHostPages(m);
  t.same(hvc(m, 0, '__pkvm_host_share_hyp', pa / PAGE_SIZE), { x0: 0, x1: 0 });
  t.equal(pageStateName(m.hyp.hostState(pa)), 'SHARED_OWNED');
  t.equal(pageStateName(m.hyp.hypState(pa)), 'SHARED_BORROWED');
  t.same(hvc(m, 0, '__pkvm_host_unshare_hyp', pa / PAGE_SIZE), { x0: 0, x1: 0 });
  t.equal(pageStateName(m.hyp.hostState(pa)), 'OWNED');
  const vm = createVm(m, { nrVcpus: 1 });
  t.equal(vm.handle, 0x1000);
  hvc(m, 0, '__pkvm_vcpu_load', vm.handle, 0);
  topupHostMemcache(m, vm.vcpuPas[0]! + HOST_VCPU.MC_HEAD, 2);
  const g = allocHostPages(m);
  t.same(hvc(m, 0, '__pkvm_host_map_guest', g / PAGE_SIZE, 0x100), { x0: 0, x1: 0 });
  t.equal(pageStateName(m.hyp.guestState(vm.handle, 0x100 * PAGE_SIZE)), 'SHARED_BORROWED');
  t.same(hvc(m, 0, '__pkvm_teardown_vm', vm.handle), { x0: 0, x1: -16 });
  hvc(m, 0, '__pkvm_vcpu_put');
  t.same(hvc(m, 0, '__pkvm_teardown_vm', vm.handle), { x0: 0, x1: 0 });
  t.same(hvc(m, 0, '__pkvm_host_reclaim_page', g / PAGE_SIZE), { x0: 0, x1: 0 });
  t.equal(pageStateName(m.hyp.hostState(g)), 'OWNED');
  t.same(m.hyp.warnings, []);
  t.end();
});
