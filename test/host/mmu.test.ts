// pkvm_mem_abort() follows V1 33/89 step by step (pkvm.md §6.2): top-up, record, memlock, pin, map, and on
// failure the unwind in reverse (unlock → unpin → uncharge → kfree). Each branch is checked by its trace and by
// what is left behind: pins, locked_vm, pinned records, hypercalls.
import t from 'tap';
import fc from 'fast-check';
import { PAGE_SHIFT, PAGE_SIZE } from '../../src/arch/addr.js';
import { Err } from '../../src/arch/errno.js';
import { FOLL_WRITE, pinUserPages } from '../../src/host/gup.js';
import { PINNED_PER_SLAB } from '../../src/host/pinned-pages.js';
import { kvmMmuCacheMinPages } from '../../src/host/stage2-geom.js';
import { pkvmMemAbort } from '../../src/host/mmu.js';
import { VmaKind } from '../../src/host/vmm-mem.js';
import { GUEST_HVA, GUEST_IPA, hostFixture, type HostFixture } from './_machine.js';

/** Faults guest page `i` in through pkvm_mem_abort on CPU 0 with vCPU 0 loaded, tracing the steps. */
function fault(fx: HostFixture, i: number): { ret: number; steps: string[] } {
  const vcpu = fx.kvm.vcpus[0]!;
  if (fx.kvm.handle === 0) fx.kvm.createHypVm(0);
  vcpu.load(0);
  fx.kvm.trace = [];
  const ret = pkvmMemAbort(vcpu, 0, GUEST_IPA + i * PAGE_SIZE, GUEST_HVA + i * PAGE_SIZE);
  const steps = fx.kvm.trace;
  fx.kvm.trace = null;
  vcpu.put();
  return { ret, steps };
}

function pinOf(fx: HostFixture, hva: number): number {
  const pa = fx.mm.paOf(hva);
  return pa < 0 ? 0 : fx.host.pages.pinCount[fx.host.pages.indexOf(pa)]!;
}

const HAPPY = [
  'topup_hyp_memcache',
  'kmalloc ppage',
  'account_locked_vm +1',
  'pin_user_pages',
  'write_lock mmu_lock',
  '__pkvm_host_map_guest',
  'write_unlock mmu_lock',
];

t.test('success: the steps run in order and the page ends pinned, charged, recorded and mapped', async (t) => {
  const fx = hostFixture();
  const { ret, steps } = fault(fx, 3);
  t.equal(ret, 0);
  t.same(steps, HAPPY);
  t.equal(fx.mm.memlock.lockedVm, 1);
  t.equal(pinOf(fx, GUEST_HVA + 3 * PAGE_SIZE), 1);
  t.equal(fx.kvm.pinned.count, 1);
  t.equal(fx.kvm.pinned.gfnAt(0), GUEST_IPA / PAGE_SIZE + 3);
  t.equal(fx.kvm.pinned.paAt(0), fx.mm.paOf(GUEST_HVA + 3 * PAGE_SIZE));
  t.equal(fx.el2.vms[0]!.mapped.get(GUEST_IPA / PAGE_SIZE + 3), fx.kvm.pinned.paAt(0) / PAGE_SIZE);
  t.equal(fx.kvm.mmuLocked, false);
  t.equal(fx.kvm.vcpus[0]!.memcache.nrPages(0), 0, 'EL2 admitted the topped-up pages');
  t.same(fx.host.log.warnings, []);
});

t.test('top-up failure: -ENOMEM before anything else', async (t) => {
  const fx = hostFixture();
  fx.kvm.createHypVm(0);
  while (fx.host.pages.allocPage() >= 0);
  const { ret, steps } = fault(fx, 0);
  t.equal(ret, Err.ENOMEM);
  t.same(steps, ['topup_hyp_memcache']);
  t.equal(fx.mm.memlock.lockedVm, 0);
  t.equal(fx.el2.calls.includes('__pkvm_host_map_guest'), false);
});

t.test('top-up keeps the pages it managed to push', async (t) => {
  const fx = hostFixture();
  fx.kvm.createHypVm(0);
  const free = [];
  for (let pa = fx.host.pages.allocPage(); pa >= 0; pa = fx.host.pages.allocPage()) free.push(pa);
  fx.host.pages.freePage(free.pop()!);
  t.equal(fx.kvm.vcpus[0]!.topupMemcache(0, kvmMmuCacheMinPages(40)), Err.ENOMEM);
  t.equal(fx.kvm.vcpus[0]!.memcache.nrPages(0), 1);
});

t.test('record allocation failure: -ENOMEM after a successful top-up, nothing charged', async (t) => {
  const fx = hostFixture();
  fx.kvm.createHypVm(0);
  t.equal(fx.kvm.vcpus[0]!.topupMemcache(0, kvmMmuCacheMinPages(40)), 0);
  while (fx.host.pages.allocPage() >= 0);
  const { ret, steps } = fault(fx, 0);
  t.equal(ret, Err.ENOMEM);
  t.same(steps, ['topup_hyp_memcache', 'kmalloc ppage']);
  t.equal(fx.mm.memlock.lockedVm, 0);
  t.equal(fx.kvm.pinned.slabPages, 0);
});

t.test('memlock refused: -ENOMEM, the record is freed, nothing pinned', async (t) => {
  const fx = hostFixture();
  fx.mm.memlock.rlimitMemlock = 2 * PAGE_SIZE;
  t.equal(fault(fx, 0).ret, 0);
  t.equal(fault(fx, 1).ret, 0);
  const { ret, steps } = fault(fx, 2);
  t.equal(ret, Err.ENOMEM);
  t.same(steps, ['topup_hyp_memcache', 'kmalloc ppage', 'account_locked_vm +1', 'kfree ppage']);
  t.equal(fx.mm.memlock.lockedVm, 2);
  t.equal(pinOf(fx, GUEST_HVA + 2 * PAGE_SIZE), 0);
  t.equal(fx.kvm.pinned.count, 2);
});

t.test('memlock bypassed with CAP_IPC_LOCK', async (t) => {
  const fx = hostFixture();
  fx.mm.memlock.rlimitMemlock = 0;
  fx.mm.memlock.capIpcLock = true;
  t.equal(fault(fx, 0).ret, 0);
  t.equal(fx.mm.memlock.lockedVm, 1);
});

t.test('hardware poison: SIGBUS at the HVA, return 0, uncharged, not pinned', async (t) => {
  const fx = hostFixture();
  fx.mm.poison(GUEST_HVA + 5 * PAGE_SIZE);
  const { ret, steps } = fault(fx, 5);
  t.equal(ret, 0);
  t.same(steps, [...HAPPY.slice(0, 4), 'kvm_send_hwpoison_signal', 'account_locked_vm -1', 'kfree ppage']);
  t.same(fx.host.log.signals, [{ sig: 'SIGBUS', addr: GUEST_HVA + 5 * PAGE_SIZE, addrLsb: PAGE_SHIFT }]);
  t.equal(fx.mm.memlock.lockedVm, 0);
  t.equal(fx.kvm.pinned.count, 0);
  t.equal(fx.kvm.stats.sigbus, 1);
});

t.test('a poisoned populated page also gives SIGBUS', async (t) => {
  const fx = hostFixture();
  const out = new Float64Array(1);
  pinUserPages(fx.mm, fx.host.ram, 0, GUEST_HVA, 1, FOLL_WRITE, out, fx.host.gup);
  fx.host.pages.markHwPoison(out[0]!);
  t.equal(fault(fx, 0).ret, 0);
  t.equal(fx.host.log.signals.length, 1);
});

t.test('unmapped HVA: -EFAULT, uncharged, record freed', async (t) => {
  const fx = hostFixture();
  fx.mm.munmap(GUEST_HVA, PAGE_SIZE);
  const { ret, steps } = fault(fx, 0);
  t.equal(ret, Err.EFAULT);
  t.same(steps, [...HAPPY.slice(0, 4), 'account_locked_vm -1', 'kfree ppage']);
  t.equal(fx.mm.memlock.lockedVm, 0);
});

t.test('page-cache page: -EIO, uncharged, and the pin leaks as in V1 (quirk)', async (t) => {
  const fx = hostFixture({ kind: VmaKind.FILE });
  const { ret, steps } = fault(fx, 0);
  t.equal(ret, Err.EIO);
  t.same(steps, [...HAPPY.slice(0, 4), '!PageSwapBacked', 'account_locked_vm -1', 'kfree ppage']);
  t.equal(fx.mm.memlock.lockedVm, 0);
  t.equal(pinOf(fx, GUEST_HVA), 1, 'V1 jumps to dec_account, past unpin_user_pages');
  t.equal(fx.kvm.stats.leakedPins, 1);
  t.equal(fx.el2.calls.includes('__pkvm_host_map_guest'), false);
});

t.test('shmem (memfd) pages are swap-backed and accepted', async (t) => {
  const fx = hostFixture({ kind: VmaKind.SHMEM });
  t.equal(fault(fx, 0).ret, 0);
});

t.test('-EPERM from EL2 is a lost race: -EAGAIN → 0, the extra pin and charge dropped, nothing recorded', async (t) => {
  const fx = hostFixture();
  t.equal(fault(fx, 0).ret, 0);
  fx.el2.mapErrno = Err.EPERM;
  const { ret, steps } = fault(fx, 0);
  t.equal(ret, 0);
  t.same(steps, [...HAPPY.slice(0, 6), 'write_unlock mmu_lock', 'unpin_user_pages', 'account_locked_vm -1', 'kfree ppage']);
  t.equal(pinOf(fx, GUEST_HVA), 1, 'only the first pin remains');
  t.equal(fx.mm.memlock.lockedVm, 1);
  t.equal(fx.kvm.pinned.count, 1);
  t.equal(fx.kvm.stats.eagain, 1);
});

t.test('another EL2 errno is returned after the full unwind', async (t) => {
  const fx = hostFixture();
  fx.el2.mapErrno = Err.ENOMEM;
  const { ret, steps } = fault(fx, 0);
  t.equal(ret, Err.ENOMEM);
  t.same(steps.slice(-4), ['write_unlock mmu_lock', 'unpin_user_pages', 'account_locked_vm -1', 'kfree ppage']);
  t.equal(pinOf(fx, GUEST_HVA), 0);
  t.equal(fx.mm.memlock.lockedVm, 0);
  t.equal(fx.kvm.pinned.count, 0);
});

t.test('records come from slab pages of the host allocator', async (t) => {
  const fx = hostFixture({ hostPages: 1024, guestPages: PINNED_PER_SLAB + 1 });
  for (let i = 0; i <= PINNED_PER_SLAB; i++) t.equal(fault(fx, i).ret, 0, `page ${i}`);
  t.equal(fx.kvm.pinned.count, PINNED_PER_SLAB + 1);
  t.equal(fx.kvm.pinned.slabPages, 2);
});

t.test('property: after any sequence of faults, errors and unmaps, charges equal records and pins equal records', async (t) => {
  const Op = fc.oneof(
    fc.record({ k: fc.constant('fault' as const), page: fc.nat(7) }),
    fc.record({ k: fc.constant('mapErr' as const), err: fc.constantFrom(Err.EPERM, Err.ENOMEM, Err.EINVAL) }),
    fc.record({ k: fc.constant('limit' as const), pages: fc.nat(8) }),
    fc.record({ k: fc.constant('munmap' as const), page: fc.nat(7) }),
    fc.record({ k: fc.constant('poison' as const), page: fc.nat(7) }),
  );
  fc.assert(
    fc.property(fc.array(Op, { maxLength: 40 }), (ops) => {
      const fx = hostFixture({ guestPages: 8 });
      for (const op of ops) {
        if (op.k === 'fault') fault(fx, op.page);
        else if (op.k === 'mapErr') fx.el2.mapErrno = op.err;
        else if (op.k === 'limit') fx.mm.memlock.rlimitMemlock = op.pages * PAGE_SIZE;
        else if (op.k === 'munmap') fx.mm.munmap(GUEST_HVA + op.page * PAGE_SIZE, PAGE_SIZE);
        else fx.mm.poison(GUEST_HVA + op.page * PAGE_SIZE);
      }
      let pins = 0;
      const pages = fx.host.pages;
      for (let i = 0; i < pages.nrPages; i++) pins += pages.pinCount[i]!;
      return (
        fx.mm.memlock.lockedVm === fx.kvm.pinned.count &&
        pins === fx.kvm.pinned.count + fx.kvm.stats.leakedPins &&
        fx.kvm.mmuLocked === false &&
        fx.host.log.warnings.length === 0
      );
    }),
    { numRuns: 150 },
  );
});
