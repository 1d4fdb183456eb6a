import fc from 'fast-check';
import t from 'tap';
import { PAGE_SIZE } from '../../src/arch/addr.js';
import { Err } from '../../src/arch/errno.js';
import { HCALLS_PKVM_2022, HOST_S2_MMU, KVM_HOST_SMCCC_BASE, kvmHostSmcccId, SMCCC_CALL_HINTS, SmcccRet } from '../../src/arch/smccc.js';
import { HANDLERS_PKVM_2022 } from '../../src/el2/hcall.js';
import { PageState } from '../../src/el2/page-state.js';
import { hostHvc, hostSmc } from '../../src/el2/trap.js';
import { allocHostPages, bootMachine, createVm, hvc, MMIO_BASE, put64, snapshot } from './helpers/machine.js';

const X1_MARK = [0x1234_5678, 0x9abc_def0];

t.test('handleHostHcall', (t) => {
  t.test('answers NOT_SUPPORTED with x1 untouched for ids outside the table, and __kvm_hyp_init', (t) => {
    const m = bootMachine();
    const regs = m.hyp.cpus[0]!.regs;
    const bad: [number, number][] = [
      [kvmHostSmcccId(Object.keys(HCALLS_PKVM_2022).length), 0],
      [KVM_HOST_SMCCC_BASE - 1, 0],
      [0, 0],
      [kvmHostSmcccId(HCALLS_PKVM_2022.__pkvm_host_share_hyp), 1],
      [kvmHostSmcccId(HCALLS_PKVM_2022.__kvm_hyp_init), 0],
      [0xc700_000d, 0],
    ];
    for (const [lo, hi] of bad) {
      regs.set(0, lo, hi);
      regs.set(1, X1_MARK[0]!, X1_MARK[1]!);
      hostHvc(m.hyp, 0, 0);
      t.equal(regs.signed(0), SmcccRet.NOT_SUPPORTED, `x0 for 0x${hi.toString(16)}_${lo.toString(16)}`);
      t.same([regs.lo(1), regs.hi(1)], X1_MARK, 'x1 untouched');
    }
    t.end();
  });
  t.test('refuses ids below __pkvm_prot_finalize once protected mode is initialised, but not before', (t) => {
    const m = bootMachine({ finalize: false });
    const mmu = allocHostPages(m);
    put64(m, mmu + HOST_S2_MMU.VMID, 3);
    t.same(hvc(m, 0, '__kvm_tlb_flush_vmid', mmu).x0, SmcccRet.SUCCESS, 'pre-finalise TLB call allowed');
    t.same(hvc(m, 0, '__kvm_get_mdcr_el2'), { x0: 0, x1: 0 });
    t.same(hvc(m, 0, '__pkvm_prot_finalize'), { x0: 0, x1: 0 });
    for (let n = 0; n < HCALLS_PKVM_2022.__pkvm_prot_finalize; n++) {
      const regs = m.hyp.cpus[1]!.regs;
      regs.setU(0, kvmHostSmcccId(n));
      regs.set(1, X1_MARK[0]!, X1_MARK[1]!);
      hostHvc(m.hyp, 1, 0);
      t.equal(regs.signed(0), SmcccRet.NOT_SUPPORTED, `id ${n} refused after finalise`);
      t.same([regs.lo(1), regs.hi(1)], X1_MARK);
    }
    t.same(hvc(m, 0, '__pkvm_prot_finalize'), { x0: 0, x1: Err.EPERM }, 'second finalise on a CPU: -EPERM');
    t.same(hvc(m, 1, '__pkvm_prot_finalize'), { x0: 0, x1: 0 }, 'each CPU finalises once');
    t.end();
  });
  t.test('masks the SMCCC hint bit (bit 16) before decoding', (t) => {
    const m = bootMachine();
    const pa = allocHostPages(m);
    const regs = m.hyp.cpus[0]!.regs;
    regs.setU(0, (kvmHostSmcccId(HCALLS_PKVM_2022.__pkvm_host_share_hyp) | SMCCC_CALL_HINTS) >>> 0);
    regs.setU(1, pa / PAGE_SIZE);
    hostHvc(m.hyp, 0, 0);
    t.equal(regs.signed(0), 0);
    t.equal(regs.signed(1), 0);
    t.equal(m.hyp.hostState(pa), PageState.SHARED_OWNED);
    t.end();
  });
  t.test('writes negative errnos as 64-bit two\'s complement in x1', (t) => {
    const m = bootMachine();
    const regs = m.hyp.cpus[0]!.regs;
    regs.setU(0, kvmHostSmcccId(HCALLS_PKVM_2022.__pkvm_host_unshare_hyp));
    regs.setU(1, allocHostPages(m) / PAGE_SIZE);
    hostHvc(m.hyp, 0, 0);
    t.same(snapshot(regs), [0, 0, (Err.EPERM >>> 0), 0xffff_ffff]);
    t.end();
  });
  t.test('a huge pfn in x1 is refused with -ERANGE, never a throw', (t) => {
    const m = bootMachine();
    const regs = m.hyp.cpus[0]!.regs;
    for (const name of ['__pkvm_host_share_hyp', '__pkvm_host_unshare_hyp', '__pkvm_host_reclaim_page'] as const) {
      regs.setU(0, kvmHostSmcccId(HCALLS_PKVM_2022[name]));
      regs.set(1, 0xffff_ffff, 0xffff_ffff);
      hostHvc(m.hyp, 0, 0);
      t.equal(regs.signed(1), Err.ERANGE, name);
    }
    t.same(m.hyp.warnings, []);
    t.end();
  });
  t.test('every hypercall tolerates all-ones arguments without throwing or warning', (t) => {
    const m = bootMachine({ finalize: false });
    const regs = m.hyp.cpus[0]!.regs;
    for (const [name, n] of Object.entries(HCALLS_PKVM_2022)) {
      regs.setU(0, kvmHostSmcccId(n));
      for (let r = 1; r <= 7; r++) regs.set(r, 0xffff_ffff, 0xffff_ffff);
      hostHvc(m.hyp, 0, 0);
      t.equal(regs.signed(0), name === '__kvm_hyp_init' ? SmcccRet.NOT_SUPPORTED : SmcccRet.SUCCESS, name);
    }
    t.same(m.hyp.warnings, []);
    t.ok(m.hyp.locks.idle);
    t.end();
  });
  t.test('the handler table covers every name of the profile', (t) => {
    t.same(Object.keys(HANDLERS_PKVM_2022).sort(), Object.keys(HCALLS_PKVM_2022).sort());
    t.end();
  });
  t.end();
});

t.test('__pkvm_create_private_mapping maps at a private hyp VA before finalise', (t) => {
  const m = bootMachine({ finalize: false });
  const pa = allocHostPages(m);
  const r = hvc(m, 0, '__pkvm_create_private_mapping', pa + 0x10, 0x20, 0x6);
  t.equal(r.x0, 0);
  const va = m.hyp.cpus[0]!.regs.u(1);
  t.equal(va % PAGE_SIZE, 0x10, 'keeps the page offset');
  t.ok(va >= 2 ** 47);
  t.same(hvc(m, 0, '__pkvm_create_private_mapping', pa, 0, 0x6).x1, Err.EINVAL, 'empty range');
  t.same(hvc(m, 0, '__pkvm_init').x1, Err.EPERM, 'the model booted EL2 already');
  t.end();
});

t.test('host SMC is forwarded to (absent) firmware: NOT_SUPPORTED', (t) => {
  const m = bootMachine();
  const regs = m.hyp.cpus[0]!.regs;
  regs.setU(0, 0x8400_0000);
  hostSmc(m.hyp, 0, 0);
  t.equal(regs.signed(0), SmcccRet.NOT_SUPPORTED);
  t.end();
});

t.test('property: random register contents never make a hypercall throw, warn, or leave a lock held', (t) => {
  const m = bootMachine();
  const vm = createVm(m);
  hvc(m, 0, '__pkvm_vcpu_load', vm.handle, 0);
  const interesting = [0, 1, vm.handle, vm.kvmPa, vm.vcpuPas[0]!, allocHostPages(m), MMIO_BASE, 0x4000_0000 / PAGE_SIZE, 2 ** 52];
  const word = fc.oneof(
    fc.constantFrom(...interesting).map((v) => [v >>> 0, Math.floor(v / 2 ** 32) >>> 0] as const),
    fc.tuple(fc.nat({ max: 0xffff_ffff }), fc.nat({ max: 0xffff_ffff })),
  );
  const n = Object.keys(HCALLS_PKVM_2022).length;
  fc.assert(
    fc.property(fc.nat(n + 2), fc.array(word, { minLength: 7, maxLength: 7 }), (fn, args) => {
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
