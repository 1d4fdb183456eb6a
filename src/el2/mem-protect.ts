/**
 * Page-ownership transitions between the host, the hypervisor and guests, and the host stage-2 abort handler
 * (reference pkvm.md §1–§2, §8; STYLE.md §10.8). Every transition locks its components in order, checks every side,
 * and only then changes every side; a failure after the checks is a hypervisor bug, recorded with `hyp.warnOn()`.
 *
 * Page-state views (2022 series, PTE-based):
 *   host   host stage-2 leaf: valid → SW bits; invalid and non-zero (owner annotation) → NOPAGE; zero → OWNED
 *   hyp    hyp stage-1 leaf at `hypVa(pa)`: invalid → NOPAGE; valid → SW bits
 *   guest  guest stage-2 leaf at the IPA: invalid → NOPAGE; valid → SW bits
 *
 * Mirrors arch/arm64/kvm/hyp/nvhe/mem_protect.c: the 2022 series (V1 26/89, 27/89, 33/89, 39/89, 81/89, 84/89) for
 * the set of transitions and their errors, written in the newest upstream shape (direct check-then-set functions
 * instead of the `pkvm_mem_transition` engine); check order and errnos follow the CORE branch's engine
 * (`check_share` / `check_unshare` / `check_donation`), and updates change the initiator before the completer as
 * `__do_share` / `__do_unshare` / `__do_donate` do. Completer checks that engine ran only with
 * CONFIG_NVHE_EL2_DEBUG (hyp NOPAGE when the host shares or donates; host NOPAGE when the hyp donates) are always
 * run here, as upstream does since 6.15 ("unconditionally cross check hyp state"); they can only fail if EL2 state
 * is already inconsistent, and then they refuse with -EPERM instead of corrupting it further.
 */

import { PAGE_SIZE } from '../arch/addr.js';
import { Err, type Ret } from '../arch/errno.js';
import { Bug, injected } from '../arch/inject.js';
import type { PhysMem } from '../mem/phys-mem.js';
import type { Memcache } from '../pgtable/mm-ops.js';
import { kvmPgtableHypMap, kvmPgtableHypUnmap } from '../pgtable/hyp.js';
import { kvmLevelSupportsBlockMapping, kvmPteToPhys, kvmPteValid } from '../pgtable/pte.js';
import { kvmMmuCacheMinPages, kvmPgtableStage2PteProt, stage2Map, stage2SetOwner, stage2Unmap } from '../pgtable/stage2.js';
import {
  KVM_PGTABLE_LAST_LEVEL,
  type KvmPgtable,
  newLeafOut,
  PAGE_HYP,
  PKVM_HOST_MEM_PROT,
  PKVM_HOST_MMIO_PROT,
  WalkFlags,
} from '../pgtable/types.js';
import { kvmPgtableGetLeaf, kvmPgtableWalk, type VisitCtx, type Walker } from '../pgtable/walk.js';
import { type Hyp, hypVa } from './hyp.js';
import { HypLock } from './locks.js';
import { PageState, pkvmGetstateHi, pkvmMkstateHi, PkvmId } from './page-state.js';
import type { HypVcpu, HypVm } from './vm.js';
import { HypPageFlag } from './vmemmap.js';

/** The protection the guest stage-2 gets for pages mapped by `__pkvm_host_map_guest` (RWX, pkvm.md §2.3). */
export const GUEST_MAP_PROT = PKVM_HOST_MEM_PROT;

// ---- State decoding and range checks --------------------------------------------------------------------------

/** Which decoder a state check uses. */
const Decoder = { HOST: 0, HYP_OR_GUEST: 1 } as const;
type Decoder = (typeof Decoder)[keyof typeof Decoder];

/** `struct check_walk_data`. */
interface CheckData {
  hyp: Hyp | null;
  desired: PageState;
  decoder: Decoder;
}

/**
 * `host_get_page_state()`: an address that is not memory → NOPAGE; invalid non-zero (owner annotation) → NOPAGE;
 * zero or valid → the SW bits (a zero PTE decodes as OWNED).
 */
function hostPteState(hyp: Hyp, lo: number, hi: number, addr: number): PageState {
  if (!hyp.isMemory(addr)) return PageState.NOPAGE;
  if (!kvmPteValid(lo)) return lo === 0 && hi === 0 ? PageState.OWNED : PageState.NOPAGE;
  return pkvmGetstateHi(hi);
}

/** `hyp_get_page_state()` / `guest_get_page_state()`: invalid → NOPAGE, valid → SW bits. */
function mappedPteState(lo: number, hi: number): PageState {
  return kvmPteValid(lo) ? pkvmGetstateHi(hi) : PageState.NOPAGE;
}

/** `__check_page_state_visitor()`: -EPERM unless the leaf decodes to the desired state. */
function checkPageStateVisitor(ctx: VisitCtx<CheckData>): number {
  const d = ctx.arg;
  const s =
    d.decoder === Decoder.HOST
      ? hostPteState(d.hyp!, ctx.oldLo, ctx.oldHi, ctx.addr) // JUSTIFY: set before every walk.
      : mappedPteState(ctx.oldLo, ctx.oldHi);
  return s === d.desired ? 0 : Err.EPERM;
}

const checkLeaf = newLeafOut();
const checkData: CheckData = { hyp: null, desired: PageState.OWNED, decoder: Decoder.HOST };
const checkWalker: Walker<CheckData> = { cb: checkPageStateVisitor, arg: checkData, flags: WalkFlags.LEAF };

/**
 * `check_page_state_range()`. Untrusted addresses that are not integers are refused with -ERANGE here, as the
 * walker refuses addresses past `ia_bits` (the kernel's u64 arithmetic cannot produce a non-integer).
 */
function checkPageStateRange(hyp: Hyp, pgt: KvmPgtable, addr: number, size: number, desired: PageState, dec: Decoder): Ret {
  if (!Number.isSafeInteger(addr) || addr < 0) return Err.ERANGE;
  if (size === PAGE_SIZE && pgt.granule === '4k') {
    // One page: the walk visits exactly the leaf covering it, with the cursor at the page's start.
    const ret = kvmPgtableGetLeaf(pgt, addr, checkLeaf);
    if (ret !== 0) return ret;
    const start = Math.floor(addr / PAGE_SIZE) * PAGE_SIZE; // exact: addr is a non-negative safe integer
    const s =
      dec === Decoder.HOST ? hostPteState(hyp, checkLeaf.lo, checkLeaf.hi, start) : mappedPteState(checkLeaf.lo, checkLeaf.hi);
    return s === desired ? 0 : Err.EPERM;
  }
  checkData.hyp = hyp;
  checkData.desired = desired;
  checkData.decoder = dec;
  return kvmPgtableWalk(pgt, addr, size, checkWalker) as Ret;
}

/**
 * Checks that the host's view of [pa, pa + size) is `desired`.
 * Mirrors `__host_check_page_state_range()` (arch/arm64/kvm/hyp/nvhe/mem_protect.c).
 * @returns 0; -EPERM on another state (an address that is not memory is NOPAGE to the host); -ERANGE past the
 *   host IPA size.
 * @remarks Requires the host lock.
 */
export function checkHostStateLocked(hyp: Hyp, pa: number, size: number, desired: PageState): Ret {
  hyp.locks.assertHeld(HypLock.HOST);
  return checkPageStateRange(hyp, hyp.hostPgt, pa, size, desired, Decoder.HOST);
}

/**
 * Checks that the hypervisor's view of [pa, pa + size) is `desired`.
 * Mirrors `__hyp_check_page_state_range()` (arch/arm64/kvm/hyp/nvhe/mem_protect.c).
 * @returns 0; -EPERM; -ERANGE past the hyp VA size.
 * @remarks Requires the hyp lock.
 */
export function checkHypStateLocked(hyp: Hyp, pa: number, size: number, desired: PageState): Ret {
  hyp.locks.assertHeld(HypLock.HYP);
  return checkPageStateRange(hyp, hyp.hypPgt, hypVa(pa), size, desired, Decoder.HYP_OR_GUEST);
}

/**
 * Checks that a guest's view of [ipa, ipa + size) is `desired`.
 * Mirrors `__guest_check_page_state_range()` (arch/arm64/kvm/hyp/nvhe/mem_protect.c).
 * @returns 0; -EPERM; -ERANGE past the guest IPA size.
 * @remarks Requires the VM's lock.
 */
export function checkGuestStateLocked(hyp: Hyp, vm: HypVm, ipa: number, size: number, desired: PageState): Ret {
  hyp.locks.assertHeld(HypLock.GUEST, vm.idx);
  return checkPageStateRange(hyp, vm.pgt, ipa, size, desired, Decoder.HYP_OR_GUEST);
}

// ---- Setting state ---------------------------------------------------------------------------------------------

/**
 * `host_stage2_unmap_dev_all()`: unmaps every non-memory range of the host stage-2 to recycle table pages.
 * @returns 0 or the first unmap error.
 */
function hostStage2UnmapDevAll(hyp: Hyp): Ret {
  const pgt = hyp.hostPgt;
  let addr = 0;
  for (const r of hyp.mem.regionList) {
    if (r.kind !== 'ram') continue;
    const ret = stage2Unmap(pgt, addr, r.base - addr);
    if (ret !== 0) return ret as Ret;
    addr = r.end;
  }
  return stage2Unmap(pgt, addr, 2 ** pgt.iaBits - addr) as Ret;
}

/**
 * Maps [pa, pa + size) identity in the host stage-2 with `protLo`/`protHi`; on -ENOMEM recycles the MMIO mappings
 * and retries once. Mirrors `host_stage2_idmap_locked()` with `host_stage2_try()`.
 * @remarks Requires the host lock.
 */
export function hostStage2IdmapLocked(hyp: Hyp, pa: number, size: number, protLo: number, protHi: number): Ret {
  hyp.locks.assertHeld(HypLock.HOST);
  let ret = stage2Map(hyp.hostPgt, pa, size, pa, protLo, protHi, hyp.hostS2Pool, 0) as Ret;
  if (ret === Err.ENOMEM) {
    ret = hostStage2UnmapDevAll(hyp);
    if (ret === 0) ret = stage2Map(hyp.hostPgt, pa, size, pa, protLo, protHi, hyp.hostS2Pool, 0) as Ret;
  }
  return ret;
}

/**
 * Annotates [pa, pa + size) in the host stage-2 as owned by `owner` (HOST clears the entries).
 * Mirrors `host_stage2_set_owner_locked()` with `host_stage2_try()`.
 * @remarks Requires the host lock.
 */
export function hostStage2SetOwnerLocked(hyp: Hyp, pa: number, size: number, owner: PkvmId): Ret {
  hyp.locks.assertHeld(HypLock.HOST);
  let ret = stage2SetOwner(hyp.hostPgt, pa, size, hyp.hostS2Pool, owner) as Ret;
  if (ret === Err.ENOMEM) {
    ret = hostStage2UnmapDevAll(hyp);
    if (ret === 0) ret = stage2SetOwner(hyp.hostPgt, pa, size, hyp.hostS2Pool, owner) as Ret;
  }
  return ret;
}

/**
 * Sets the host's view of [pa, pa + size) to a stored state by re-mapping it RWX with the state bits.
 * Mirrors `__host_set_page_state_range()` (arch/arm64/kvm/hyp/nvhe/mem_protect.c).
 * @remarks Requires the host lock.
 */
export function setHostStateLocked(hyp: Hyp, pa: number, size: number, state: PageState): Ret {
  return hostStage2IdmapLocked(hyp, pa, size, PKVM_HOST_MEM_PROT, pkvmMkstateHi(0, state));
}

/**
 * Maps [pa, pa + size) into the hypervisor's stage-1 (PAGE_HYP) with a stored state.
 * Mirrors `pkvm_create_mappings_locked()` with `pkvm_mkstate(PAGE_HYP, state)`.
 * @remarks Requires the hyp lock.
 */
export function setHypStateLocked(hyp: Hyp, pa: number, size: number, state: PageState): Ret {
  hyp.locks.assertHeld(HypLock.HYP);
  for (let off = 0; off < size; off += PAGE_SIZE) {
    const ret = kvmPgtableHypMap(hyp.hypPgt, hypVa(pa + off), PAGE_SIZE, pa + off, PAGE_HYP, pkvmMkstateHi(0, state));
    if (ret !== 0) return ret as Ret;
  }
  return 0;
}

/**
 * Unmaps [pa, pa + size) from the hypervisor's stage-1.
 * @returns 0, or -EFAULT when fewer bytes were unmapped than requested (as the kernel's callers check).
 * @remarks Requires the hyp lock. Mirrors the `kvm_pgtable_hyp_unmap() != size` checks in mem_protect.c.
 */
export function hypUnmapLocked(hyp: Hyp, pa: number, size: number): Ret {
  hyp.locks.assertHeld(HypLock.HYP);
  return kvmPgtableHypUnmap(hyp.hypPgt, hypVa(pa), size) === size ? 0 : Err.EFAULT;
}

// ---- Host ↔ hyp ------------------------------------------------------------------------------------------------

/**
 * The host shares one of its pages with the hypervisor.
 *
 *   host: OWNED → SHARED_OWNED        hyp: NOPAGE → SHARED_BORROWED (PAGE_HYP)
 *
 * Mirrors `__pkvm_host_share_hyp()` (arch/arm64/kvm/hyp/nvhe/mem_protect.c).
 * @returns 0; -EPERM when either side is in the wrong state (a pfn that is not memory is NOPAGE to the host);
 *   -ERANGE past the host IPA size.
 * @remarks Takes the host then hyp lock.
 */
export function hostShareHyp(hyp: Hyp, pfn: number): Ret {
  const pa = pfn * PAGE_SIZE;
  hyp.locks.lock(HypLock.HOST);
  hyp.locks.lock(HypLock.HYP);
  let ret = checkHostStateLocked(hyp, pa, PAGE_SIZE, PageState.OWNED);
  if (ret !== 0 && injected(Bug.MUTATE_BEFORE_FAIL) && hyp.isMemory(pa)) setHostStateLocked(hyp, pa, PAGE_SIZE, PageState.SHARED_OWNED);
  if (ret === 0) ret = checkHypStateLocked(hyp, pa, PAGE_SIZE, PageState.NOPAGE);
  if (ret === 0) {
    hyp.warnOn(setHostStateLocked(hyp, pa, PAGE_SIZE, PageState.SHARED_OWNED), 'host_share_hyp: host state');
    hyp.warnOn(setHypStateLocked(hyp, pa, PAGE_SIZE, PageState.SHARED_BORROWED), 'host_share_hyp: hyp map');
  }
  hyp.locks.unlock(HypLock.HYP);
  hyp.locks.unlock(HypLock.HOST);
  return ret;
}

/**
 * The host takes back a page it shared with the hypervisor.
 *
 *   host: SHARED_OWNED → OWNED        hyp: SHARED_BORROWED → NOPAGE
 *
 * Mirrors `__pkvm_host_unshare_hyp()` (arch/arm64/kvm/hyp/nvhe/mem_protect.c).
 * @returns 0; -EPERM on a wrong state; -EBUSY while EL2 has the page pinned (`hyp_pin_shared_mem`); -ERANGE past
 *   the host IPA size.
 * @remarks Takes the host then hyp lock.
 */
export function hostUnshareHyp(hyp: Hyp, pfn: number): Ret {
  const pa = pfn * PAGE_SIZE;
  hyp.locks.lock(HypLock.HOST);
  hyp.locks.lock(HypLock.HYP);
  let ret = checkHostStateLocked(hyp, pa, PAGE_SIZE, PageState.SHARED_OWNED);
  if (ret === 0 && hyp.vmemmap.pageCount(pfn) !== 0) ret = Err.EBUSY;
  if (ret === 0) ret = checkHypStateLocked(hyp, pa, PAGE_SIZE, PageState.SHARED_BORROWED);
  if (ret === 0) {
    hyp.warnOn(setHostStateLocked(hyp, pa, PAGE_SIZE, PageState.OWNED), 'host_unshare_hyp: host state');
    hyp.warnOn(hypUnmapLocked(hyp, pa, PAGE_SIZE), 'host_unshare_hyp: hyp unmap');
  }
  hyp.locks.unlock(HypLock.HYP);
  hyp.locks.unlock(HypLock.HOST);
  return ret;
}

/**
 * The host gives pages to the hypervisor.
 *
 *   host: OWNED → NOPAGE (owner annotation HYP)        hyp: NOPAGE → OWNED (PAGE_HYP)
 *
 * Mirrors `__pkvm_host_donate_hyp()` (arch/arm64/kvm/hyp/nvhe/mem_protect.c).
 * @returns 0; -EPERM on a wrong state; -ERANGE past the host IPA size; -EINVAL for no pages.
 * @remarks Takes the host then hyp lock. Not a hypercall: EL2 calls it for memcache admission and VM/vCPU setup.
 */
export function hostDonateHyp(hyp: Hyp, pfn: number, nrPages: number): Ret {
  if (!Number.isSafeInteger(nrPages) || nrPages < 1) return Err.EINVAL;
  const pa = pfn * PAGE_SIZE;
  const size = nrPages * PAGE_SIZE;
  hyp.locks.lock(HypLock.HOST);
  hyp.locks.lock(HypLock.HYP);
  let ret = checkHostStateLocked(hyp, pa, size, PageState.OWNED);
  if (ret === 0) ret = checkHypStateLocked(hyp, pa, size, PageState.NOPAGE);
  if (ret === 0) {
    hyp.warnOn(hostStage2SetOwnerLocked(hyp, pa, size, PkvmId.HYP), 'host_donate_hyp: host owner');
    hyp.warnOn(setHypStateLocked(hyp, pa, size, PageState.OWNED), 'host_donate_hyp: hyp map');
  }
  hyp.locks.unlock(HypLock.HYP);
  hyp.locks.unlock(HypLock.HOST);
  return ret;
}

/**
 * The hypervisor gives pages back to the host.
 *
 *   hyp: OWNED → NOPAGE        host: NOPAGE → OWNED (annotation cleared; re-mapped lazily)
 *
 * Mirrors `__pkvm_hyp_donate_host()` (arch/arm64/kvm/hyp/nvhe/mem_protect.c).
 * @returns 0; -EPERM on a wrong state; -ERANGE past the hyp VA size; -EINVAL for no pages.
 * @remarks Takes the host then hyp lock.
 */
export function hypDonateHost(hyp: Hyp, pfn: number, nrPages: number): Ret {
  if (!Number.isSafeInteger(nrPages) || nrPages < 1) return Err.EINVAL;
  const pa = pfn * PAGE_SIZE;
  const size = nrPages * PAGE_SIZE;
  hyp.locks.lock(HypLock.HOST);
  hyp.locks.lock(HypLock.HYP);
  let ret = checkHypStateLocked(hyp, pa, size, PageState.OWNED);
  if (ret === 0) ret = checkHostStateLocked(hyp, pa, size, PageState.NOPAGE);
  if (ret === 0) {
    hyp.warnOn(hypUnmapLocked(hyp, pa, size), 'hyp_donate_host: hyp unmap');
    hyp.warnOn(hostStage2SetOwnerLocked(hyp, pa, size, PkvmId.HOST), 'hyp_donate_host: host owner');
  }
  hyp.locks.unlock(HypLock.HYP);
  hyp.locks.unlock(HypLock.HOST);
  return ret;
}

/**
 * Pins host-shared memory [pa, pa + size) so the host cannot unshare it: every page must be host SHARED_OWNED and
 * hyp SHARED_BORROWED; each page's `hyp_page.refcount` is then incremented.
 * Mirrors `hyp_pin_shared_mem()` (arch/arm64/kvm/hyp/nvhe/mem_protect.c).
 * @returns 0; -EPERM when a page is not shared with the hypervisor (or not memory).
 * @remarks Takes the host then hyp lock.
 */
export function hypPinSharedMem(hyp: Hyp, pa: number, size: number): Ret {
  const first = Math.floor(pa / PAGE_SIZE);
  const last = Math.floor((pa + size - 1) / PAGE_SIZE);
  if (!hyp.pfnRangeIsValid(first, last - first + 1)) return Err.EPERM;
  const start = first * PAGE_SIZE;
  const bytes = (last - first + 1) * PAGE_SIZE;
  hyp.locks.lock(HypLock.HOST);
  hyp.locks.lock(HypLock.HYP);
  let ret = checkHostStateLocked(hyp, start, bytes, PageState.SHARED_OWNED);
  if (ret === 0) ret = checkHypStateLocked(hyp, start, bytes, PageState.SHARED_BORROWED);
  if (ret === 0) {
    for (let p = first; p <= last; p++) {
      const x = hyp.vmemmap.idx(p);
      if (hyp.vmemmap.refcount[x]! >= 0xffff) hyp.warn('hyp_pin_shared_mem: refcount overflow');
      else hyp.vmemmap.refcount[x]!++;
    }
  }
  hyp.locks.unlock(HypLock.HYP);
  hyp.locks.unlock(HypLock.HOST);
  return ret;
}

/**
 * Drops the pins {@link hypPinSharedMem} took. Mirrors `hyp_unpin_shared_mem()`.
 * @remarks Takes the host then hyp lock. Unpinning an unpinned page is an emulator bug (the kernel WARNs).
 */
export function hypUnpinSharedMem(hyp: Hyp, pa: number, size: number): void {
  const first = Math.floor(pa / PAGE_SIZE);
  const last = Math.floor((pa + size - 1) / PAGE_SIZE);
  hyp.locks.lock(HypLock.HOST);
  hyp.locks.lock(HypLock.HYP);
  for (let p = first; p <= last; p++) {
    const x = hyp.vmemmap.idx(p);
    if (hyp.vmemmap.refcount[x] === 0) hyp.warn('hyp_unpin_shared_mem: page not pinned');
    else hyp.vmemmap.refcount[x]!--;
  }
  hyp.locks.unlock(HypLock.HYP);
  hyp.locks.unlock(HypLock.HOST);
}

// ---- Host → guest (2022: map_guest = share for non-protected, donate for protected VMs) -----------------------

/** Memcache precheck (FIX-2026): the vCPU's hyp memcache must hold enough pages for one worst-case map. */
function guestMemcacheShort(vcpu: HypVcpu): boolean {
  return vcpu.memcache.nrPages < kvmMmuCacheMinPages(vcpu.vm.pgt);
}

/**
 * The host shares a page with a non-protected guest.
 *
 *   host: OWNED → SHARED_OWNED        guest: NOPAGE → SHARED_BORROWED (RWX at gfn)
 *
 * Mirrors `__pkvm_host_share_guest()` (arch/arm64/kvm/hyp/nvhe/mem_protect.c, V1 27/89), with the FIX-2026
 * memcache precheck so that nothing can fail after the host side changed (pkvm.md §9.3).
 * @returns 0; -EPERM when the host does not own the page (or it is not memory) or the guest IPA is already mapped;
 *   -ERANGE when the pfn or gfn is past the host or guest IPA size; -ENOMEM when the vCPU memcache is short.
 * @remarks Takes the host then the VM's lock. Table pages come from `vcpu.memcache`.
 */
export function hostShareGuest(hyp: Hyp, pfn: number, gfn: number, vcpu: HypVcpu): Ret {
  return hostToGuest(hyp, pfn, gfn, vcpu, false);
}

/**
 * The host donates a page to a protected guest.
 *
 *   host: OWNED → NOPAGE (owner annotation GUEST)        guest: NOPAGE → OWNED (RWX at gfn)
 *
 * Mirrors `__pkvm_host_donate_guest()` (arch/arm64/kvm/hyp/nvhe/mem_protect.c, V1 39/89), with the FIX-2026
 * memcache precheck.
 * @returns as {@link hostShareGuest}.
 * @remarks Takes the host then the VM's lock.
 */
export function hostDonateGuest(hyp: Hyp, pfn: number, gfn: number, vcpu: HypVcpu): Ret {
  return hostToGuest(hyp, pfn, gfn, vcpu, true);
}

function hostToGuest(hyp: Hyp, pfn: number, gfn: number, vcpu: HypVcpu, donate: boolean): Ret {
  const vm = vcpu.vm;
  const pa = pfn * PAGE_SIZE;
  const ipa = gfn * PAGE_SIZE;
  hyp.locks.lock(HypLock.HOST);
  hyp.locks.lock(HypLock.GUEST, vm.idx);
  let ret = checkHostStateLocked(hyp, pa, PAGE_SIZE, PageState.OWNED);
  if (ret === 0 && !injected(Bug.SHARE_NO_COMPLETER_CHECK)) ret = checkGuestStateLocked(hyp, vm, ipa, PAGE_SIZE, PageState.NOPAGE);
  if (ret === 0 && guestMemcacheShort(vcpu)) ret = Err.ENOMEM;
  if (ret === 0) {
    if (donate) {
      hyp.warnOn(hostStage2SetOwnerLocked(hyp, pa, PAGE_SIZE, PkvmId.GUEST), 'host_donate_guest: host owner');
    } else {
      hyp.warnOn(setHostStateLocked(hyp, pa, PAGE_SIZE, PageState.SHARED_OWNED), 'host_share_guest: host state');
    }
    const state = donate ? PageState.OWNED : PageState.SHARED_BORROWED;
    const r = stage2Map(vm.pgt, ipa, PAGE_SIZE, pa, GUEST_MAP_PROT, pkvmMkstateHi(0, state), vcpu.memcache as Memcache, 0);
    hyp.warnOn(r, donate ? 'host_donate_guest: guest map' : 'host_share_guest: guest map');
  }
  hyp.locks.unlock(HypLock.GUEST);
  hyp.locks.unlock(HypLock.HOST);
  return ret;
}

// ---- Guest → host (protected guests' MEM_SHARE / MEM_UNSHARE) --------------------------------------------------

const guestLeaf = newLeafOut();
const guestProt = { lo: 0, hi: 0 };

/**
 * The initiator check of a guest-initiated transition: the leaf at `ipa` must be valid (-EFAULT: not faulted in
 * yet), in the `desired` state (-EPERM), a last-level page (-EINVAL) of memory (-EINVAL).
 * Mirrors `__guest_request_page_transition()` (arch/arm64/kvm/hyp/nvhe/mem_protect.c); the leaf is left in
 * `guestLeaf`.
 */
function guestRequestPageTransitionLocked(hyp: Hyp, vm: HypVm, ipa: number, desired: PageState): Ret {
  hyp.locks.assertHeld(HypLock.GUEST, vm.idx);
  if (!Number.isSafeInteger(ipa) || ipa < 0) return Err.ERANGE;
  const ret = kvmPgtableGetLeaf(vm.pgt, ipa, guestLeaf) as Ret;
  if (ret !== 0) return ret;
  const state = mappedPteState(guestLeaf.lo, guestLeaf.hi);
  if (state === PageState.NOPAGE) return Err.EFAULT;
  if (state !== desired) return Err.EPERM;
  if (guestLeaf.level !== KVM_PGTABLE_LAST_LEVEL) return Err.EINVAL;
  if (!hyp.isMemory(kvmPteToPhys(guestLeaf.lo, guestLeaf.hi, vm.pgt.granule))) return Err.EINVAL;
  return 0;
}

/**
 * Rewrites the guest leaf at `ipa` (in `guestLeaf`) with its own permissions and a new state (SW bits only: no
 * break-before-make). Mirrors `__guest_initiate_page_transition()`.
 */
function guestInitiatePageTransitionLocked(vm: HypVm, vcpu: HypVcpu, ipa: number, pa: number, state: PageState): number {
  kvmPgtableStage2PteProt(guestLeaf.lo, guestLeaf.hi, guestProt);
  return stage2Map(vm.pgt, ipa, PAGE_SIZE, pa, guestProt.lo, pkvmMkstateHi(guestProt.hi, state), vcpu.memcache, 0);
}

/**
 * A protected guest shares one of its pages back with the host.
 *
 *   guest: OWNED → SHARED_OWNED (SW bits only, no BBM)        host: NOPAGE → SHARED_BORROWED (RWX idmap)
 *
 * Mirrors `__pkvm_guest_share_host()` (arch/arm64/kvm/hyp/nvhe/mem_protect.c, V1 84/89).
 * @param ipa the guest IPA (page aligned by the caller).
 * @returns 0; -EFAULT when the IPA is not mapped yet; -EPERM when the guest does not own it or the host already
 *   has access; -EINVAL for a block leaf or a non-memory PA; -ERANGE for an IPA outside the guest's space.
 * @remarks Takes the host then the VM's lock.
 */
export function guestShareHost(hyp: Hyp, vcpu: HypVcpu, ipa: number): Ret {
  const vm = vcpu.vm;
  hyp.locks.lock(HypLock.HOST);
  hyp.locks.lock(HypLock.GUEST, vm.idx);
  let ret = guestRequestPageTransitionLocked(hyp, vm, ipa, PageState.OWNED);
  const pa = ret === 0 ? kvmPteToPhys(guestLeaf.lo, guestLeaf.hi, vm.pgt.granule) : 0;
  if (ret === 0) ret = checkHostStateLocked(hyp, pa, PAGE_SIZE, PageState.NOPAGE);
  if (ret === 0) {
    hyp.warnOn(guestInitiatePageTransitionLocked(vm, vcpu, ipa, pa, PageState.SHARED_OWNED), 'guest_share_host: guest state');
    hyp.warnOn(setHostStateLocked(hyp, pa, PAGE_SIZE, PageState.SHARED_BORROWED), 'guest_share_host: host map');
  }
  hyp.locks.unlock(HypLock.GUEST);
  hyp.locks.unlock(HypLock.HOST);
  return ret;
}

/**
 * A protected guest revokes a share.
 *
 *   guest: SHARED_OWNED → OWNED        host: SHARED_BORROWED → NOPAGE (owner annotation GUEST)
 *
 * Mirrors `__pkvm_guest_unshare_host()` (arch/arm64/kvm/hyp/nvhe/mem_protect.c, V1 84/89).
 * @returns 0; -EFAULT when the IPA is not mapped; -EPERM when it is not shared; -EINVAL / -ERANGE as
 *   {@link guestShareHost}.
 * @remarks Takes the host then the VM's lock.
 */
export function guestUnshareHost(hyp: Hyp, vcpu: HypVcpu, ipa: number): Ret {
  const vm = vcpu.vm;
  hyp.locks.lock(HypLock.HOST);
  hyp.locks.lock(HypLock.GUEST, vm.idx);
  let ret = guestRequestPageTransitionLocked(hyp, vm, ipa, PageState.SHARED_OWNED);
  const pa = ret === 0 ? kvmPteToPhys(guestLeaf.lo, guestLeaf.hi, vm.pgt.granule) : 0;
  if (ret === 0) ret = checkHostStateLocked(hyp, pa, PAGE_SIZE, PageState.SHARED_BORROWED);
  if (ret === 0) {
    hyp.warnOn(guestInitiatePageTransitionLocked(vm, vcpu, ipa, pa, PageState.OWNED), 'guest_unshare_host: guest state');
    hyp.warnOn(hostStage2SetOwnerLocked(hyp, pa, PAGE_SIZE, PkvmId.GUEST), 'guest_unshare_host: host owner');
  }
  hyp.locks.unlock(HypLock.GUEST);
  hyp.locks.unlock(HypLock.HOST);
  return ret;
}

// ---- Reclaim -----------------------------------------------------------------------------------------------------

const reclaimLeaf = newLeafOut();

/**
 * The host takes back a page a torn-down guest released; guest-owned pages are poisoned (zeroed) first.
 *
 *   host: NOPAGE (annotation GUEST) or SHARED_OWNED → OWNED   (only with PENDING_RECLAIM; idempotent when OWNED)
 *
 * Mirrors `__pkvm_host_reclaim_page()` (arch/arm64/kvm/hyp/nvhe/mem_protect.c, V1 26/89).
 * @returns 0 (also when the host already owns the page); -EPERM when the page is not pending reclaim; -ERANGE
 *   when the pfn is past the host IPA space.
 * @remarks Takes the host lock. The poison is `mem.zero` (the kernel zeroes through the fixmap and cleans to PoC).
 */
export function hostReclaimPage(hyp: Hyp, pfn: number): Ret {
  const pa = pfn * PAGE_SIZE;
  if (!Number.isSafeInteger(pa) || pa < 0) return Err.ERANGE;
  hyp.locks.lock(HypLock.HOST);
  let ret = kvmPgtableGetLeaf(hyp.hostPgt, pa, reclaimLeaf) as Ret;
  if (ret === 0 && hostPteState(hyp, reclaimLeaf.lo, reclaimLeaf.hi, pa) !== PageState.OWNED) {
    const vmm = hyp.vmemmap;
    const x = vmm.has(pfn) ? vmm.idx(pfn) : -1;
    if (x < 0 || (vmm.flags[x]! & HypPageFlag.PENDING_RECLAIM) === 0) {
      ret = Err.EPERM;
    } else {
      if ((vmm.flags[x]! & HypPageFlag.NEED_POISONING) !== 0) {
        if (!injected(Bug.RECLAIM_NO_POISON)) hyp.mem.zero(pa, PAGE_SIZE);
        vmm.flags[x] = vmm.flags[x]! & ~HypPageFlag.NEED_POISONING;
      }
      ret = hostStage2SetOwnerLocked(hyp, pa, PAGE_SIZE, PkvmId.HOST);
      if (ret === 0) vmm.flags[x] = vmm.flags[x]! & ~HypPageFlag.PENDING_RECLAIM;
    }
  }
  hyp.locks.unlock(HypLock.HOST);
  return ret;
}

// ---- Host stage-2 aborts ---------------------------------------------------------------------------------------

/** A memory range [start, end) (`struct kvm_mem_range`); `end` may be 2^64 (ULONG_MAX + 1). */
export interface MemRange {
  start: number;
  end: number;
}

const idmapRange: MemRange = { start: 0, end: 0 };
const forceRange: MemRange = { start: 0, end: 0 };
const adjustLeaf = newLeafOut();

/**
 * Finds the memory region containing `addr` (range = the region) or the gap around it (range = the MMIO gap).
 * Mirrors `find_mem_range()` (arch/arm64/kvm/hyp/nvhe/mem_protect.c).
 * @returns true for memory.
 */
export function findMemRange(mem: PhysMem, addr: number, range: MemRange): boolean {
  range.start = 0;
  range.end = 2 ** 64;
  for (const r of mem.regionList) {
    if (r.kind !== 'ram') continue;
    if (addr < r.base) {
      range.end = r.base;
      return false;
    }
    if (addr >= r.end) {
      range.start = r.end;
      continue;
    }
    range.start = r.base;
    range.end = r.end;
    return true;
  }
  return false;
}

/**
 * Chooses the identity-map window for a host fault at `addr`: -EAGAIN when already mapped, -EPERM when annotated
 * (not the host's), otherwise the largest block-capable granule window around `addr` inside `range`.
 * Mirrors `host_stage2_adjust_range()` (arch/arm64/kvm/hyp/nvhe/mem_protect.c), including its loop, which tests
 * the next level's block support against the current window (so a fitting window at the walk's level is kept).
 * @remarks Requires the host lock.
 */
function hostStage2AdjustRangeLocked(hyp: Hyp, addr: number, range: MemRange): Ret {
  hyp.locks.assertHeld(HypLock.HOST);
  const ret = kvmPgtableGetLeaf(hyp.hostPgt, addr, adjustLeaf);
  if (ret !== 0) return ret as Ret;
  if (kvmPteValid(adjustLeaf.lo)) return Err.EAGAIN;
  if (adjustLeaf.lo !== 0 || adjustLeaf.hi !== 0) return Err.EPERM;
  let level = adjustLeaf.level;
  let start = 0;
  let end = 0;
  do {
    const granule = 2 ** (12 + (3 - level) * 9);
    start = addr - (addr % granule);
    end = start + granule;
    level++;
  } while (level < 4 && !(kvmLevelSupportsBlockMapping(hyp.hostPgt.granule, level) && start >= range.start && end <= range.end));
  range.start = start;
  range.end = end;
  return 0;
}

/**
 * Lazily identity-maps the host page at `addr` (and the largest uniform window around it): RWX for memory, RW for
 * MMIO. Mirrors `host_stage2_idmap()` (arch/arm64/kvm/hyp/nvhe/mem_protect.c).
 * @returns 0; -EAGAIN when already mapped; -EPERM when the host does not own the page; -ENOMEM when the host
 *   stage-2 pool is exhausted even after recycling MMIO mappings.
 * @remarks Takes the host lock.
 */
export function hostStage2Idmap(hyp: Hyp, addr: number): Ret {
  const isMemory = findMemRange(hyp.mem, addr, idmapRange);
  const prot = isMemory ? PKVM_HOST_MEM_PROT : PKVM_HOST_MMIO_PROT;
  hyp.locks.lock(HypLock.HOST);
  let ret = hostStage2AdjustRangeLocked(hyp, addr, idmapRange);
  if (ret === 0) ret = hostStage2IdmapLocked(hyp, idmapRange.start, idmapRange.end - idmapRange.start, prot, 0);
  hyp.locks.unlock(HypLock.HOST);
  return ret;
}

/**
 * `host_stage2_force_pte_cb()`: only the default idmaps (RWX memory, RW MMIO, no state bits) may use blocks,
 * because any other host stage-2 entry is the only record of its page's state.
 */
export function hostStage2ForcePte(mem: PhysMem, addr: number, end: number, protLo: number, protHi: number): boolean {
  // State bits force pages whatever the range (the region lookup only chooses the default prot to compare with).
  if (protHi !== 0) return true;
  const memory = findMemRange(mem, addr, forceRange) && end <= forceRange.end;
  return protLo !== (memory ? PKVM_HOST_MEM_PROT : PKVM_HOST_MMIO_PROT);
}

/** What a host stage-2 abort led to. */
export const HostAbortResult = {
  /** The page was identity-mapped; the host retries the access. */
  MAPPED: 0,
  /** It was already mapped (a race); the host retries. */
  RETRY: 1,
  /** The host does not own the page: a synchronous abort was injected into the host (EL1). */
  INJECTED: 2,
} as const;
/** What a host stage-2 abort led to. */
export type HostAbortResult = (typeof HostAbortResult)[keyof typeof HostAbortResult];

/**
 * Handles a host stage-2 abort at IPA (= PA) `addr` (from HPFAR_EL2 and FAR_EL2).
 * Mirrors `handle_host_mem_abort()` (arch/arm64/kvm/hyp/nvhe/mem_protect.c, with V1 81/89's abort injection).
 * @returns what happened; an error other than -EPERM/-EAGAIN (the kernel's BUG) is recorded as a warning and
 *   reported as INJECTED, so the model keeps running.
 */
export function handleHostMemAbort(hyp: Hyp, addr: number): HostAbortResult {
  hyp.hostAborts++;
  const page = addr - (addr % PAGE_SIZE);
  const ret = hostStage2Idmap(hyp, page);
  if (ret === 0) return HostAbortResult.MAPPED;
  if (ret === Err.EAGAIN) return HostAbortResult.RETRY;
  if (ret !== Err.EPERM) hyp.warnOn(ret, 'BUG: handle_host_mem_abort');
  return HostAbortResult.INJECTED;
}
