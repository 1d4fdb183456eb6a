import t from 'tap';
import { PAGE_SIZE } from '../../src/arch/addr.js';
import { Err } from '../../src/arch/errno.js';
import { HOST_VCPU } from '../../src/arch/smccc.js';
import {
  guestShareHost,
  guestUnshareHost,
  hostDonateGuest,
  hostDonateHyp,
  hostReclaimPage,
  hostShareGuest,
  hostShareHyp,
  hostUnshareHyp,
  hypDonateHost,
  hypPinSharedMem,
  hypUnpinSharedMem,
} from '../../src/el2/mem-protect.js';
import { PageState, pageStateName, PkvmId } from '../../src/el2/page-state.js';
import { HypPageFlag } from '../../src/el2/vmemmap.js';
import { fillVcpuMemcache, forgeGuest, forgeHost, forgeHyp, STATES } from './helpers/forge.js';
import { allocHostPages, bootMachine, createVm, hvc, MMIO_BASE, topupHostMemcache, type TestMachine } from './helpers/machine.js';

const n = pageStateName;

function views(m: TestMachine, pa: number): string {
  return `host=${n(m.hyp.hostState(pa))} hyp=${n(m.hyp.hypState(pa))}`;
}

/**
 * Runs a host↔hyp transition over every (host, hyp) state pair of a fresh page. `ok` is the single pair the rule
 * allows; `after` the views it leaves; every other pair must return `errOther` and leave both views unchanged.
 */
function hostHypTable(
  t: Tap.Test,
  fn: (m: TestMachine, pfn: number) => number,
  ok: [PageState, PageState],
  after: [PageState, PageState],
  errOther: number,
): void {
  const m = bootMachine();
  for (const host of STATES) {
    for (const hyp of STATES) {
      const pa = allocHostPages(m);
      forgeHost(m, pa, host);
      forgeHyp(m, pa, hyp);
      const ret = fn(m, pa / PAGE_SIZE);
      const allowed = host === ok[0] && hyp === ok[1];
      const label = `host=${n(host)} hyp=${n(hyp)}`;
      t.equal(ret, allowed ? 0 : errOther, `${label}: ret`);
      const [h, y] = allowed ? after : [host, hyp];
      t.equal(views(m, pa), `host=${n(h)} hyp=${n(y)}`, `${label}: post-states`);
    }
  }
  t.same(m.hyp.warnings, [], 'no warnings');
  t.ok(m.hyp.locks.idle, 'no lock left held');
}

declare namespace Tap {
  type Test = Parameters<Parameters<typeof t.test>[1]>[0];
}

t.test('hostShareHyp: host OWNED → SHARED_OWNED, hyp NOPAGE → SHARED_BORROWED; else -EPERM', (t) => {
  hostHypTable(t, (m, pfn) => hostShareHyp(m.hyp, pfn), [PageState.OWNED, PageState.NOPAGE], [PageState.SHARED_OWNED, PageState.SHARED_BORROWED], Err.EPERM);
  t.end();
});

t.test('hostUnshareHyp: host SHARED_OWNED → OWNED, hyp SHARED_BORROWED → NOPAGE; else -EPERM', (t) => {
  hostHypTable(t, (m, pfn) => hostUnshareHyp(m.hyp, pfn), [PageState.SHARED_OWNED, PageState.SHARED_BORROWED], [PageState.OWNED, PageState.NOPAGE], Err.EPERM);
  t.end();
});

t.test('hostDonateHyp: host OWNED → NOPAGE (owner HYP), hyp NOPAGE → OWNED; else -EPERM', (t) => {
  hostHypTable(t, (m, pfn) => hostDonateHyp(m.hyp, pfn, 1), [PageState.OWNED, PageState.NOPAGE], [PageState.NOPAGE, PageState.OWNED], Err.EPERM);
  t.end();
});

t.test('hypDonateHost: hyp OWNED → NOPAGE, host NOPAGE → OWNED; else -EPERM', (t) => {
  hostHypTable(t, (m, pfn) => hypDonateHost(m.hyp, pfn, 1), [PageState.NOPAGE, PageState.OWNED], [PageState.OWNED, PageState.NOPAGE], Err.EPERM);
  t.end();
});

t.test('host↔hyp transitions: a pfn that is not memory is NOPAGE to the host (-EPERM); past the IPA size -ERANGE', (t) => {
  const m = bootMachine();
  const mmio = MMIO_BASE / PAGE_SIZE;
  t.equal(hostShareHyp(m.hyp, mmio), Err.EPERM);
  t.equal(hostUnshareHyp(m.hyp, mmio), Err.EPERM);
  t.equal(hostDonateHyp(m.hyp, mmio, 1), Err.EPERM);
  t.equal(hypDonateHost(m.hyp, mmio, 1), Err.EPERM);
  t.equal(hostShareHyp(m.hyp, 2 ** 40), Err.ERANGE, 'PA 2^52, past the 40-bit host IPA space');
  t.equal(hostShareHyp(m.hyp, Number.NaN), Err.ERANGE, 'x1 above 2^53');
  t.equal(hostDonateHyp(m.hyp, allocHostPages(m) / PAGE_SIZE, 0), Err.EINVAL, 'zero pages');
  t.equal(hypPinSharedMem(m.hyp, MMIO_BASE, 8), Err.EPERM, 'pin of MMIO');
  t.same(m.hyp.warnings, []);
  t.end();
});

t.test('hostDonateHyp of a range checks every page before changing any', (t) => {
  const m = bootMachine();
  const pa = allocHostPages(m, 4);
  forgeHost(m, pa + 3 * PAGE_SIZE, PageState.SHARED_OWNED);
  t.equal(hostDonateHyp(m.hyp, pa / PAGE_SIZE, 4), Err.EPERM);
  for (let i = 0; i < 3; i++) t.equal(m.hyp.hostState(pa + i * PAGE_SIZE), PageState.OWNED, `page ${i} untouched`);
  t.end();
});

t.test('hostUnshareHyp of a pinned page returns -EBUSY until it is unpinned', (t) => {
  const m = bootMachine();
  const pa = allocHostPages(m);
  t.equal(hostShareHyp(m.hyp, pa / PAGE_SIZE), 0);
  t.equal(hypPinSharedMem(m.hyp, pa + 8, 16), 0);
  t.ok(m.hyp.isPinnedByHyp(pa));
  t.equal(hostUnshareHyp(m.hyp, pa / PAGE_SIZE), Err.EBUSY);
  t.equal(m.hyp.hostState(pa), PageState.SHARED_OWNED);
  hypUnpinSharedMem(m.hyp, pa + 8, 16);
  t.equal(hostUnshareHyp(m.hyp, pa / PAGE_SIZE), 0);
  t.same(m.hyp.warnings, []);
  t.end();
});

t.test('hypPinSharedMem refuses pages not shared with the hypervisor (-EPERM) and pins a whole range', (t) => {
  const m = bootMachine();
  const pa = allocHostPages(m, 2);
  t.equal(hypPinSharedMem(m.hyp, pa, 8), Err.EPERM);
  t.equal(hostShareHyp(m.hyp, pa / PAGE_SIZE), 0);
  t.equal(hypPinSharedMem(m.hyp, pa + PAGE_SIZE - 8, 16), Err.EPERM, 'second page not shared');
  t.equal(m.hyp.pageRefcount(pa), 0, 'nothing pinned on failure');
  t.end();
});

/** A VM with one loaded vCPU; returns the hyp vCPU. */
function vmWithVcpu(m: TestMachine, prot: boolean) {
  const vm = createVm(m, { protected: prot });
  const hv = m.hyp.vmByHandle(vm.handle)!.vcpus[0]!;
  return { vm, hv };
}

t.test('__pkvm_host_map_guest over every (host, guest) pair', (t) => {
  for (const prot of [false, true]) {
    const m = bootMachine();
    const { vm, hv } = vmWithVcpu(m, prot);
    hvc(m, 0, '__pkvm_vcpu_load', vm.handle, 0);
    let gfn = 0x10;
    for (const host of STATES) {
      for (const guest of STATES) {
        const pa = allocHostPages(m);
        const other = allocHostPages(m);
        gfn += 1;
        forgeHost(m, pa, host);
        forgeGuest(m, hv, gfn * PAGE_SIZE, other, guest);
        topupHostMemcache(m, vm.vcpuPas[0]! + HOST_VCPU.MC_HEAD, 2);
        const r = hvc(m, 0, '__pkvm_host_map_guest', pa / PAGE_SIZE, gfn);
        const label = `${prot ? 'pVM' : 'np'} host=${n(host)} guest=${n(guest)}`;
        const allowed = host === PageState.OWNED && guest === PageState.NOPAGE;
        t.same(r, { x0: 0, x1: allowed ? 0 : Err.EPERM }, `${label}: ret`);
        const h = allowed ? (prot ? PageState.NOPAGE : PageState.SHARED_OWNED) : host;
        const g = allowed ? (prot ? PageState.OWNED : PageState.SHARED_BORROWED) : guest;
        t.equal(n(m.hyp.hostState(pa)), n(h), `${label}: host after`);
        t.equal(n(m.hyp.guestState(vm.handle, gfn * PAGE_SIZE)), n(g), `${label}: guest after`);
        if (allowed && prot) t.equal(m.hyp.hostOwner(pa), PkvmId.GUEST, `${label}: annotated GUEST`);
      }
    }
    t.same(m.hyp.warnings, []);
  }
  t.end();
});

t.test('__pkvm_host_map_guest error paths', (t) => {
  const m = bootMachine();
  const { vm, hv } = vmWithVcpu(m, false);
  const pa = allocHostPages(m);
  t.same(hvc(m, 0, '__pkvm_host_map_guest', pa / PAGE_SIZE, 1), { x0: 0, x1: Err.EINVAL }, 'no loaded vCPU');
  hvc(m, 0, '__pkvm_vcpu_load', vm.handle, 0);
  t.same(hvc(m, 0, '__pkvm_host_map_guest', pa / PAGE_SIZE, 1), { x0: 0, x1: Err.ENOMEM }, 'empty host memcache');
  t.equal(m.hyp.hostState(pa), PageState.OWNED, 'no state change on -ENOMEM');
  topupHostMemcache(m, vm.vcpuPas[0]! + HOST_VCPU.MC_HEAD, 2);
  t.same(hvc(m, 0, '__pkvm_host_map_guest', MMIO_BASE / PAGE_SIZE, 1), { x0: 0, x1: Err.EPERM }, 'MMIO pfn');
  t.same(hvc(m, 0, '__pkvm_host_map_guest', pa / PAGE_SIZE, 2 ** 40), { x0: 0, x1: Err.ERANGE }, 'gfn past the IPA space');
  t.equal(hv.memcache.nrPages, 2, 'memcache admitted before the argument checks');
  t.same(hvc(m, 0, '__pkvm_host_map_guest', pa / PAGE_SIZE, 1), { x0: 0, x1: 0 });
  t.equal(hv.memcache.nrPages, 0, 'two table pages used (levels 2 and 3)');
  t.same(hvc(m, 0, '__pkvm_host_map_guest', allocHostPages(m) / PAGE_SIZE, 1), { x0: 0, x1: Err.ENOMEM }, 'refill precedes the checks');
  topupHostMemcache(m, vm.vcpuPas[0]! + HOST_VCPU.MC_HEAD, 2);
  t.same(hvc(m, 0, '__pkvm_host_map_guest', allocHostPages(m) / PAGE_SIZE, 1), { x0: 0, x1: Err.EPERM }, 'second fault on the same IPA');
  t.same(m.hyp.warnings, []);
  t.end();
});

t.test('host→guest: a short vCPU memcache is refused with -ENOMEM before any state changes (FIX-2026)', (t) => {
  const m = bootMachine();
  const { vm, hv } = vmWithVcpu(m, false);
  const pa = allocHostPages(m);
  t.equal(hv.memcache.nrPages, 0);
  t.equal(hostShareGuest(m.hyp, pa / PAGE_SIZE, 7, hv), Err.ENOMEM);
  t.equal(hostDonateGuest(m.hyp, pa / PAGE_SIZE, 7, hv), Err.ENOMEM);
  t.equal(m.hyp.hostState(pa), PageState.OWNED);
  t.equal(m.hyp.guestState(vm.handle, 7 * PAGE_SIZE), PageState.NOPAGE);
  t.same(m.hyp.warnings, []);
  t.end();
});

t.test('guest→host share/unshare over every (guest, host) pair', (t) => {
  const m = bootMachine();
  const { vm, hv } = vmWithVcpu(m, true);
  let ipa = 0x100 * PAGE_SIZE;
  const cases: [string, (pa: number, ipa: number) => number, PageState, PageState, PageState, PageState][] = [
    ['share', (_pa, i) => guestShareHost(m.hyp, hv, i), PageState.OWNED, PageState.NOPAGE, PageState.SHARED_OWNED, PageState.SHARED_BORROWED],
    ['unshare', (_pa, i) => guestUnshareHost(m.hyp, hv, i), PageState.SHARED_OWNED, PageState.SHARED_BORROWED, PageState.OWNED, PageState.NOPAGE],
  ];
  for (const [name, fn, gOk, hOk, gAfter, hAfter] of cases) {
    for (const guest of STATES) {
      for (const host of STATES) {
        const pa = allocHostPages(m);
        ipa += PAGE_SIZE;
        forgeHost(m, pa, host);
        forgeGuest(m, hv, ipa, pa, guest);
        const ret = fn(pa, ipa);
        const label = `${name} guest=${n(guest)} host=${n(host)}`;
        const allowed = guest === gOk && host === hOk;
        t.equal(ret, guest === PageState.NOPAGE ? Err.EFAULT : allowed ? 0 : Err.EPERM, `${label}: ret`);
        t.equal(n(m.hyp.guestState(vm.handle, ipa)), n(allowed ? gAfter : guest), `${label}: guest after`);
        t.equal(n(m.hyp.hostState(pa)), n(allowed ? hAfter : host), `${label}: host after`);
      }
    }
  }
  t.equal(guestShareHost(m.hyp, hv, 2 ** 41), Err.ERANGE, 'IPA outside the guest');
  t.equal(guestShareHost(m.hyp, hv, Number.NaN), Err.ERANGE, 'IPA not an integer');
  t.same(m.hyp.warnings, []);
  t.end();
});

t.test('guest share then unshare is the identity on both views', (t) => {
  const m = bootMachine();
  const { vm, hv } = vmWithVcpu(m, true);
  hvc(m, 0, '__pkvm_vcpu_load', vm.handle, 0);
  topupHostMemcache(m, vm.vcpuPas[0]! + HOST_VCPU.MC_HEAD, 2);
  const pa = allocHostPages(m);
  t.equal(hvc(m, 0, '__pkvm_host_map_guest', pa / PAGE_SIZE, 5).x1, 0);
  const before = [m.hyp.hostState(pa), m.hyp.hostOwner(pa), m.hyp.guestState(vm.handle, 5 * PAGE_SIZE)];
  t.equal(guestShareHost(m.hyp, hv, 5 * PAGE_SIZE), 0);
  t.equal(guestUnshareHost(m.hyp, hv, 5 * PAGE_SIZE), 0);
  t.same([m.hyp.hostState(pa), m.hyp.hostOwner(pa), m.hyp.guestState(vm.handle, 5 * PAGE_SIZE)], before);
  t.same(m.hyp.warnings, []);
  t.end();
});

t.test('hostReclaimPage over every host state × reclaim flags', (t) => {
  const m = bootMachine();
  const flagSets = [0, HypPageFlag.PENDING_RECLAIM, HypPageFlag.PENDING_RECLAIM | HypPageFlag.NEED_POISONING];
  for (const host of STATES) {
    for (const flags of flagSets) {
      const pa = allocHostPages(m);
      m.mem.fill32(pa, PAGE_SIZE, 0x5a5a_5a5a);
      forgeHost(m, pa, host);
      const x = m.hyp.vmemmap.idx(pa / PAGE_SIZE);
      m.hyp.vmemmap.flags[x] = flags;
      const ret = hostReclaimPage(m.hyp, pa / PAGE_SIZE);
      const label = `host=${n(host)} flags=${flags}`;
      const owned = host === PageState.OWNED;
      const pending = (flags & HypPageFlag.PENDING_RECLAIM) !== 0;
      t.equal(ret, owned || pending ? 0 : Err.EPERM, `${label}: ret`);
      t.equal(n(m.hyp.hostState(pa)), n(owned || pending ? PageState.OWNED : host), `${label}: host after`);
      const poisoned = !owned && (flags & HypPageFlag.NEED_POISONING) !== 0;
      t.equal(m.mem.read32(pa + 64), poisoned ? 0 : 0x5a5a_5a5a, `${label}: poisoned iff NEED_POISONING`);
      t.equal(m.hyp.pageFlags(pa), owned ? flags : pending ? 0 : flags, `${label}: flags after`);
    }
  }
  t.same(m.hyp.warnings, []);
  t.end();
});

t.test('fillVcpuMemcache builder admits pages as hyp-owned', (t) => {
  const m = bootMachine();
  const { hv } = vmWithVcpu(m, false);
  fillVcpuMemcache(m, hv, 2);
  for (const pa of m.hyp.memcachePages()) t.equal(m.hyp.hypState(pa), PageState.OWNED);
  t.equal(m.hyp.memcachePages().length, 2);
  t.end();
});
