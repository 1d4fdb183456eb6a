/**
 * State builders for transition tables: put one page into any (host, hyp, guest) view combination, including
 * combinations the hypercall API never produces, through EL2's own `…Locked` setters (not by writing descriptors),
 * so that every (initiator state, completer state) pair of a transition can be tested.
 */

import { PAGE_SIZE } from '../../../src/arch/addr.js';
import { HOST_VCPU } from '../../../src/arch/smccc.js';
import { HypLock } from '../../../src/el2/locks.js';
import { refillMemcache } from '../../../src/el2/memcache.js';
import {
  GUEST_MAP_PROT,
  hostDonateHyp,
  hostStage2SetOwnerLocked,
  setHostStateLocked,
  setHypStateLocked,
} from '../../../src/el2/mem-protect.js';
import { PageState, pkvmMkstateHi, PkvmId } from '../../../src/el2/page-state.js';
import type { HypVcpu } from '../../../src/el2/vm.js';
import { stage2Map } from '../../../src/pgtable/stage2.js';
import { topupHostMemcache, type TestMachine } from './machine.js';

/** The four views, for table loops. */
export const STATES = [PageState.OWNED, PageState.SHARED_OWNED, PageState.SHARED_BORROWED, PageState.NOPAGE] as const;

/** Puts the host's view of `pa` into `s` (NOPAGE = annotated as owned by the hypervisor). */
export function forgeHost(m: TestMachine, pa: number, s: PageState): void {
  const hyp = m.hyp;
  if (s === PageState.OWNED) return;
  hyp.locks.lock(HypLock.HOST);
  const r = s === PageState.NOPAGE ? hostStage2SetOwnerLocked(hyp, pa, PAGE_SIZE, PkvmId.HYP) : setHostStateLocked(hyp, pa, PAGE_SIZE, s);
  hyp.locks.unlock(HypLock.HOST);
  if (r !== 0) throw new Error(`forgeHost ${r}`);
}

/** Puts the hypervisor's view of `pa` into `s` (NOPAGE = unmapped). */
export function forgeHyp(m: TestMachine, pa: number, s: PageState): void {
  const hyp = m.hyp;
  if (s === PageState.NOPAGE) return;
  hyp.locks.lock(HypLock.HYP);
  const r = setHypStateLocked(hyp, pa, PAGE_SIZE, s);
  hyp.locks.unlock(HypLock.HYP);
  if (r !== 0) throw new Error(`forgeHyp ${r}`);
}

/** Admits `n` host pages into a hyp vCPU's memcache the way `__pkvm_host_map_guest` does. */
export function fillVcpuMemcache(m: TestMachine, vcpu: HypVcpu, n: number): void {
  topupHostMemcache(m, vcpu.hostVcpuPa + HOST_VCPU.MC_HEAD, n);
  const r = refillMemcache(m.mem, vcpu.memcache, vcpu.memcache.nrPages + n, vcpu.hostVcpuPa, (p) => hostDonateHyp(m.hyp, p, 1));
  if (r !== 0) throw new Error(`fillVcpuMemcache ${r}`);
}

/** Puts a guest's view of `ipa` into `s`, mapped to `pa` (NOPAGE = unmapped). Uses the vCPU's memcache. */
export function forgeGuest(m: TestMachine, vcpu: HypVcpu, ipa: number, pa: number, s: PageState): void {
  if (s === PageState.NOPAGE) return;
  const hyp = m.hyp;
  if (vcpu.memcache.nrPages < 3) fillVcpuMemcache(m, vcpu, 3);
  hyp.locks.lock(HypLock.GUEST, vcpu.vm.idx);
  const r = stage2Map(vcpu.vm.pgt, ipa, PAGE_SIZE, pa, GUEST_MAP_PROT, pkvmMkstateHi(0, s), vcpu.memcache, 0);
  hyp.locks.unlock(HypLock.GUEST);
  if (r !== 0) throw new Error(`forgeGuest ${r}`);
}
