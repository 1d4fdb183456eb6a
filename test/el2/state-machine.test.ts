import fc from 'fast-check';
import t from 'tap';
import { PAGE_SIZE } from '../../src/arch/addr.js';
import { HOST_VCPU } from '../../src/arch/smccc.js';
import { guestShareHost, guestUnshareHost } from '../../src/el2/mem-protect.js';
import { PageState, pageStateName, PkvmId } from '../../src/el2/page-state.js';
import { kvmPteToPhys, kvmPteValid } from '../../src/pgtable/pte.js';
import { newLeafOut } from '../../src/pgtable/types.js';
import { hostAccess } from '../../src/el2/trap.js';
import { allocHostPages, bootMachine, createVm, hvc, topupHostMemcache, type TestMachine } from './helpers/machine.js';

/**
 * Rule (pkvm.md §1.6): whatever the host asks, every page stays in one of the consistent combinations of
 * (host view, host owner annotation, hyp view, guest views), and the host can access a page iff its view is not
 * NOPAGE.
 */
const N_PAGES = 6;
const N_GFNS = 4;

type Op =
  | { k: 'share' | 'unshare' | 'access'; p: number }
  | { k: 'map'; p: number; g: number; vm: 0 | 1 }
  | { k: 'gshare' | 'gunshare'; g: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ k: fc.constantFrom('share' as const, 'unshare' as const, 'access' as const), p: fc.nat(N_PAGES - 1) }),
  fc.record({ k: fc.constant('map' as const), p: fc.nat(N_PAGES - 1), g: fc.nat(N_GFNS - 1), vm: fc.constantFrom(0 as const, 1 as const) }),
  fc.record({ k: fc.constantFrom('gshare' as const, 'gunshare' as const), g: fc.nat(N_GFNS - 1) }),
);

function consistent(m: TestMachine, pa: number, guestViews: PageState[]): string | null {
  const h = m.hyp;
  const host = h.hostState(pa);
  const owner = h.hostOwner(pa);
  const hyp = h.hypState(pa);
  const key = `${pageStateName(host)}/${owner}/${pageStateName(hyp)}/${guestViews.map(pageStateName).join(',')}`;
  const ok = [
    `OWNED/${PkvmId.HOST}/NOPAGE/`,
    `SHARED_OWNED/${PkvmId.HOST}/SHARED_BORROWED/`,
    `NOPAGE/${PkvmId.HYP}/OWNED/`,
    `SHARED_OWNED/${PkvmId.HOST}/NOPAGE/SHARED_BORROWED`,
    `NOPAGE/${PkvmId.GUEST}/NOPAGE/OWNED`,
    `SHARED_BORROWED/${PkvmId.HOST}/NOPAGE/SHARED_OWNED`,
  ];
  return ok.includes(key) ? null : key;
}

t.test('random host/guest request sequences keep every page in a consistent state', (t) => {
  fc.assert(
    fc.property(fc.array(opArb, { minLength: 1, maxLength: 40 }), (ops) => {
      const m = bootMachine();
      const pages: number[] = [];
      for (let i = 0; i < N_PAGES; i++) pages.push(allocHostPages(m));
      const vms = [createVm(m, { cpu: 0 }), createVm(m, { protected: true, cpu: 0 })];
      hvc(m, 0, '__pkvm_vcpu_load', vms[0]!.handle, 0);
      hvc(m, 1, '__pkvm_vcpu_load', vms[1]!.handle, 0);
      const pvcpu = m.hyp.vmByHandle(vms[1]!.handle)!.vcpus[0]!;
      const leaf = newLeafOut();
      for (const op of ops) {
        switch (op.k) {
          case 'share':
            hvc(m, 0, '__pkvm_host_share_hyp', pages[op.p]! / PAGE_SIZE);
            break;
          case 'unshare':
            hvc(m, 0, '__pkvm_host_unshare_hyp', pages[op.p]! / PAGE_SIZE);
            break;
          case 'access': {
            const can = m.hyp.hostState(pages[op.p]!) !== PageState.NOPAGE;
            if (hostAccess(m.hyp, 0, pages[op.p]!, true) !== can) return false;
            break;
          }
          case 'map':
            topupHostMemcache(m, vms[op.vm]!.vcpuPas[0]! + HOST_VCPU.MC_HEAD, 2);
            hvc(m, op.vm, '__pkvm_host_map_guest', pages[op.p]! / PAGE_SIZE, 0x100 + op.g);
            break;
          case 'gshare':
            guestShareHost(m.hyp, pvcpu, (0x100 + op.g) * PAGE_SIZE);
            break;
          case 'gunshare':
            guestUnshareHost(m.hyp, pvcpu, (0x100 + op.g) * PAGE_SIZE);
            break;
        }
        const views = new Map<number, PageState[]>();
        for (const vm of vms) {
          for (let g = 0; g < N_GFNS; g++) {
            if (!m.hyp.guestLeaf(vm.handle, (0x100 + g) * PAGE_SIZE, leaf) || !kvmPteValid(leaf.lo)) continue;
            const pa = kvmPteToPhys(leaf.lo, leaf.hi, '4k');
            views.set(pa, [...(views.get(pa) ?? []), m.hyp.guestState(vm.handle, (0x100 + g) * PAGE_SIZE)]);
          }
        }
        for (const pa of pages) {
          const bad = consistent(m, pa, views.get(pa) ?? []);
          if (bad !== null) throw new Error(`page ${pa.toString(16)} after ${JSON.stringify(op)}: ${bad}`);
        }
        if (m.hyp.warnings.length !== 0) throw new Error(m.hyp.warnings.join('; '));
        if (!m.hyp.locks.idle) return false;
      }
      // Teardown and reclaim return every page to the host.
      hvc(m, 0, '__pkvm_vcpu_put');
      hvc(m, 1, '__pkvm_vcpu_put');
      for (const vm of vms) if (hvc(m, 0, '__pkvm_teardown_vm', vm.handle).x1 !== 0) return false;
      for (const pa of pages) {
        if (m.hyp.hostState(pa) === PageState.SHARED_OWNED && m.hyp.hypState(pa) === PageState.SHARED_BORROWED) {
          hvc(m, 0, '__pkvm_host_unshare_hyp', pa / PAGE_SIZE);
        }
        if (hvc(m, 0, '__pkvm_host_reclaim_page', pa / PAGE_SIZE).x1 !== 0) return false;
        if (m.hyp.hostState(pa) !== PageState.OWNED) return false;
      }
      return m.hyp.warnings.length === 0 && m.hyp.pendingReclaimPages() === 0;
    }),
    { numRuns: 40 },
  );
  t.end();
});
