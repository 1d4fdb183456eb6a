import fc from 'fast-check';
import t from 'tap';
import { PAGE_SIZE } from '../../src/arch/addr.js';
import { S2AP_W_LO, S2_AF_LO } from '../../src/arch/desc.js';
import { Err } from '../../src/arch/errno.js';
import { HCALLS_UPSTREAM_6_16, HOST_VCPU, kvmHostSmcccId, PROFILE_UPSTREAM_6_16, SmcccRet } from '../../src/arch/smccc.js';
import { HANDLERS_UPSTREAM_6_16 } from '../../src/el2/hcall.js';
import { hostDonateHyp } from '../../src/el2/mem-protect.js';
import { guestCheckTransitionSize, NP_BLOCK_SIZE } from '../../src/el2/np-guest.js';
import { PageState, pageStateName } from '../../src/el2/page-state.js';
import { hostHvc } from '../../src/el2/trap.js';
import { KVM_PGTABLE_PROT_RW, KVM_PGTABLE_PROT_RWX, KvmPgtableProt, newLeafOut } from '../../src/pgtable/types.js';
import { allocHostPages, bootMachine, createVm, hvc, MMIO_BASE, topupHostMemcache, type TestMachine } from './helpers/machine.js';

const n = pageStateName;
const RWX = KVM_PGTABLE_PROT_RWX;

/** A v6.16 machine with one non-protected VM whose vCPU 0 is loaded on CPU 0. */
function setup(): { m: TestMachine; handle: number; hv: number } {
  const m = bootMachine({ profile: 'upstream-6.16' });
  const vm = createVm(m);
  hvc(m, 0, '__pkvm_vcpu_load', vm.handle, 0);
  return { m, handle: vm.handle, hv: vm.vcpuPas[0]! };
}

function share(m: TestMachine, hv: number, pfn: number, gfn: number, nr = 1, prot: number = RWX): number {
  topupHostMemcache(m, hv + HOST_VCPU.MC_HEAD, 2);
  const r = hvc(m, 0, '__pkvm_host_share_guest', pfn, gfn, nr, prot);
  return r.x0 === 0 ? r.x1 : Number.NaN;
}

t.test('upstream-6.16 profile numbering and table', (t) => {
  t.equal(HCALLS_UPSTREAM_6_16.__pkvm_prot_finalize, 7);
  t.equal(HCALLS_UPSTREAM_6_16.__pkvm_host_share_guest, 10);
  t.equal(HCALLS_UPSTREAM_6_16.__pkvm_tlb_flush_vmid, 32);
  t.equal(PROFILE_UPSTREAM_6_16.names.length, 33);
  t.same(Object.keys(HANDLERS_UPSTREAM_6_16).sort(), Object.keys(HCALLS_UPSTREAM_6_16).sort());
  const { m } = setup();
  const regs = m.hyp.cpus[1]!.regs;
  regs.setU(0, kvmHostSmcccId(33));
  hostHvc(m.hyp, 1, 0);
  t.equal(regs.signed(0), SmcccRet.NOT_SUPPORTED, 'past the table');
  regs.setU(0, kvmHostSmcccId(HCALLS_UPSTREAM_6_16.__pkvm_cpu_set_vector));
  hostHvc(m.hyp, 1, 0);
  t.equal(regs.signed(0), SmcccRet.NOT_SUPPORTED, 'pre-finalise call after finalise');
  t.end();
});

t.test('__guest_check_transition_size accepts one page or one aligned 2 MiB block', (t) => {
  t.equal(guestCheckTransitionSize(0x1234_5000, 0x5000, 1), PAGE_SIZE);
  t.equal(guestCheckTransitionSize(0x4020_0000, 0x20_0000, 512), NP_BLOCK_SIZE);
  t.equal(guestCheckTransitionSize(0x4020_1000, 0x20_0000, 512), Err.EINVAL);
  t.equal(guestCheckTransitionSize(0x4020_0000, 0x20_1000, 512), Err.EINVAL);
  t.equal(guestCheckTransitionSize(0, 0, 2), Err.EINVAL);
  t.end();
});

t.test('share/unshare with np-guests follows the kernel selftest (pkvm_ownership_selftest, v6.16)', (t) => {
  const { m, handle, hv } = setup();
  const pa = allocHostPages(m);
  const pfn = pa / PAGE_SIZE;
  const gfn = 0x400;
  const views = (): string =>
    `${n(m.hyp.hostState(pa))}/${n(m.hyp.hypState(pa))}/${n(m.hyp.guestState(handle, gfn * PAGE_SIZE))},${n(m.hyp.guestState(handle, (gfn + 1) * PAGE_SIZE))}`;
  const count = (): number => m.hyp.vmemmap.shareGuestCount[m.hyp.vmemmap.idx(pfn)]!;

  t.equal(share(m, hv, pfn, gfn), 0);
  t.equal(views(), 'SHARED_OWNED/NOPAGE/SHARED_BORROWED,NOPAGE');
  t.equal(share(m, hv, pfn, gfn), Err.EPERM, 'same gfn again');
  t.equal(hvc(m, 0, '__pkvm_host_share_hyp', pfn).x1, Err.EPERM);
  t.equal(hvc(m, 0, '__pkvm_host_unshare_hyp', pfn).x1, Err.EPERM);
  t.equal(hostDonateHyp(m.hyp, pfn, 1), Err.EPERM);
  t.equal(share(m, hv, pfn, gfn + 1), 0, 'the same page with a second gfn');
  t.equal(count(), 2);
  t.equal(views(), 'SHARED_OWNED/NOPAGE/SHARED_BORROWED,SHARED_BORROWED');
  t.equal(hvc(m, 0, '__pkvm_host_unshare_guest', handle, gfn, 1).x1, 0);
  t.equal(views(), 'SHARED_OWNED/NOPAGE/NOPAGE,SHARED_BORROWED');
  t.equal(hvc(m, 0, '__pkvm_host_unshare_guest', handle, gfn + 1, 1).x1, 0);
  t.equal(views(), 'OWNED/NOPAGE/NOPAGE,NOPAGE');
  t.equal(hvc(m, 0, '__pkvm_host_unshare_guest', handle, gfn, 1).x1, Err.ENOENT);
  t.equal(hostDonateHyp(m.hyp, pfn, 1), 0, 'the host owns it again');

  const shared = allocHostPages(m);
  t.equal(hvc(m, 0, '__pkvm_host_share_hyp', shared / PAGE_SIZE).x1, 0);
  t.equal(share(m, hv, shared / PAGE_SIZE, gfn + 8), Err.EPERM, 'SHARED_OWNED with the hypervisor, not an np-guest');
  t.same(m.hyp.warnings, []);
  t.ok(m.hyp.locks.idle);
  t.end();
});

t.test('share_guest argument checks', (t) => {
  const { m, handle, hv } = setup();
  const pfn = allocHostPages(m) / PAGE_SIZE;
  t.equal(share(m, hv, pfn, 0x10, 1, KvmPgtableProt.DEVICE | KVM_PGTABLE_PROT_RW), Err.EINVAL, 'prot outside RWX');
  t.equal(share(m, hv, pfn, 0x10, 2), Err.EINVAL, 'two pages');
  t.equal(share(m, hv, MMIO_BASE / PAGE_SIZE, 0x10), Err.EPERM, 'MMIO');
  t.equal(share(m, hv, pfn, 2 ** 40), Err.ERANGE, 'gfn past the guest IPA space');
  t.equal(hvc(m, 0, '__pkvm_host_unshare_guest', 0x1234, 0x10, 1).x1, Err.EINVAL, 'unknown handle');
  hvc(m, 0, '__pkvm_vcpu_put');
  t.equal(share(m, hv, pfn, 0x10), Err.EINVAL, 'no loaded vCPU');
  const p = createVm(m, { protected: true });
  hvc(m, 0, '__pkvm_vcpu_load', p.handle, 0);
  t.equal(share(m, p.vcpuPas[0]!, pfn, 0x10), Err.EINVAL, 'protected VM');
  t.equal(hvc(m, 0, '__pkvm_host_unshare_guest', p.handle, 0x10, 1).x1, Err.EINVAL, 'protected handle');
  t.equal(hvc(m, 0, '__pkvm_host_mkyoung_guest', 0x10).x1, Err.EINVAL);
  t.equal(hvc(m, 0, '__pkvm_host_relax_perms_guest', 0x10, RWX).x1, Err.EINVAL);
  t.equal(m.hyp.hostState(pfn * PAGE_SIZE), PageState.OWNED);
  t.equal(m.hyp.guestState(handle, 0x10 * PAGE_SIZE), PageState.NOPAGE);
  t.same(m.hyp.warnings, []);
  t.end();
});

t.test('a 2 MiB block share maps one level-2 leaf; unshare must name the same size', (t) => {
  const { m, handle, hv } = setup();
  while (m.nextPa % NP_BLOCK_SIZE !== 0) m.nextPa += PAGE_SIZE;
  const pa = allocHostPages(m, 512);
  const gfn = NP_BLOCK_SIZE / PAGE_SIZE; // IPA 2 MiB
  t.equal(share(m, hv, pa / PAGE_SIZE + 1, gfn, 512), Err.EINVAL, 'misaligned PA');
  t.equal(share(m, hv, pa / PAGE_SIZE, gfn, 512), 0);
  const leaf = newLeafOut();
  t.ok(m.hyp.guestLeaf(handle, gfn * PAGE_SIZE + 0x5000, leaf));
  t.equal(leaf.level, 2, 'block leaf');
  t.equal(m.hyp.hostState(pa + 100 * PAGE_SIZE), PageState.SHARED_OWNED);
  t.equal(hvc(m, 0, '__pkvm_host_unshare_guest', handle, gfn, 1).x1, Err.E2BIG);
  t.equal(hvc(m, 0, '__pkvm_host_unshare_guest', handle, gfn, 512).x1, 0);
  t.equal(m.hyp.hostState(pa + 511 * PAGE_SIZE), PageState.OWNED);
  t.same(m.hyp.warnings, []);
  t.end();
});

t.test('relax_perms, wrprotect, test_clear_young, mkyoung and tlb_flush_vmid on an np-guest mapping', (t) => {
  const { m, handle, hv } = setup();
  const pa = allocHostPages(m);
  const gfn = 0x77;
  const leaf = newLeafOut();
  const desc = (): { lo: number; hi: number } => {
    m.hyp.guestLeaf(handle, gfn * PAGE_SIZE, leaf);
    return { lo: leaf.lo, hi: leaf.hi };
  };
  t.equal(share(m, hv, pa / PAGE_SIZE, gfn, 1, KvmPgtableProt.R), 0, 'read-only share');
  t.equal(desc().lo & S2AP_W_LO, 0);
  t.equal(hvc(m, 0, '__pkvm_host_relax_perms_guest', gfn, KVM_PGTABLE_PROT_RW).x1, 0);
  t.not(desc().lo & S2AP_W_LO, 0, 'relaxed to RW');
  t.equal(hvc(m, 0, '__pkvm_host_wrprotect_guest', handle, gfn, 1).x1, 0);
  t.equal(desc().lo & S2AP_W_LO, 0, 'write-protected');
  t.equal(hvc(m, 0, '__pkvm_host_test_clear_young_guest', handle, gfn, 1, 1).x1, 1, 'young, then made old');
  t.equal(desc().lo & S2_AF_LO, 0);
  t.equal(hvc(m, 0, '__pkvm_host_test_clear_young_guest', handle, gfn, 1, 0).x1, 0, 'old');
  t.equal(hvc(m, 0, '__pkvm_host_mkyoung_guest', gfn).x1, 0);
  t.not(desc().lo & S2_AF_LO, 0, 'young again');
  t.equal(hvc(m, 0, '__pkvm_tlb_flush_vmid', handle).x0, 0);
  t.equal(hvc(m, 0, '__pkvm_host_relax_perms_guest', gfn, 0x10).x1, Err.EINVAL, 'prot outside RWX');
  t.same(m.hyp.warnings, []);
  t.end();
});

t.test('teardown of a referenced VM is -EBUSY with the v6.16 WARN_ON', (t) => {
  const { m, handle } = setup();
  t.equal(hvc(m, 1, '__pkvm_teardown_vm', handle).x1, Err.EBUSY);
  t.same(m.hyp.warnings, ['__pkvm_teardown_vm: VM still referenced']);
  m.hyp.warnings.length = 0;
  hvc(m, 0, '__pkvm_vcpu_put');
  t.equal(hvc(m, 1, '__pkvm_teardown_vm', handle).x1, 0);
  t.same(m.hyp.warnings, []);
  t.end();
});

t.test('property: random registers on every upstream-6.16 hypercall never throw, warn or leave a lock held', (t) => {
  const { m, handle, hv } = setup();
  const pa = allocHostPages(m);
  const interesting = [0, 1, 512, handle, hv, pa, pa / PAGE_SIZE, MMIO_BASE / PAGE_SIZE, 2 ** 52];
  const word = fc.oneof(
    fc.constantFrom(...interesting).map((v) => [v >>> 0, Math.floor(v / 2 ** 32) >>> 0] as const),
    fc.tuple(fc.nat({ max: 0xffff_ffff }), fc.nat({ max: 0xffff_ffff })),
  );
  fc.assert(
    fc.property(fc.nat(34), fc.array(word, { minLength: 7, maxLength: 7 }), (fn, args) => {
      if (fn === HCALLS_UPSTREAM_6_16.__pkvm_teardown_vm) return true; // its WARN_ON on a loaded VM is intended
      const regs = m.hyp.cpus[0]!.regs;
      regs.setU(0, kvmHostSmcccId(fn));
      args.forEach(([lo, hi], i) => regs.set(i + 1, lo, hi));
      hostHvc(m.hyp, 0, 0);
      return m.hyp.warnings.length === 0 && m.hyp.locks.idle;
    }),
    { numRuns: 400 },
  );
  t.end();
});
