/**
 * Non-protected guest memory as upstream Linux v6.16 manages it (the `upstream-6.16` ABI profile; reference
 * pkvm.md §2.6, §2.7): the host shares each page (or 2 MiB block) with a guest explicitly and takes it back with an
 * unshare; it may relax, write-protect and age the guest's mappings through EL2. A host page may be shared with
 * several np-guests at once (`host_share_guest_count`).
 *
 * Mirrors `__pkvm_host_share_guest()`, `__pkvm_host_unshare_guest()`, `__pkvm_host_relax_perms_guest()`,
 * `__pkvm_host_wrprotect_guest()`, `__pkvm_host_test_clear_young_guest()`, `__pkvm_host_mkyoung_guest()`,
 * `__guest_check_transition_size()`, `__check_host_shared_guest()` and `check_range_allowed_memory()`
 * (arch/arm64/kvm/hyp/nvhe/mem_protect.c, v6.16), with the FIX-2026 memcache precheck before any state change. The
 * host's view is decoded from the host stage-2 as in the rest of the model (v6.16 keeps it in `hyp_vmemmap`; the
 * observable states are the same).
 */

import { PAGE_SIZE } from '../arch/addr.js';
import { Err, type Ret } from '../arch/errno.js';
import { kvmPteToPhys, kvmPteValid } from '../pgtable/pte.js';
import {
  kvmMmuCacheMinPages,
  stage2Map,
  stage2Mkyoung,
  stage2Relaxperms,
  stage2TestClearYoung,
  stage2Unmap,
  stage2Wrprotect,
} from '../pgtable/stage2.js';
import { KVM_PGTABLE_PROT_RWX, newLeafOut } from '../pgtable/types.js';
import { kvmPgtableGetLeaf } from '../pgtable/walk.js';
import type { Hyp } from './hyp.js';
import { HypLock } from './locks.js';
import { checkGuestStateLocked, findMemRange, type MemRange, setHostStateLocked } from './mem-protect.js';
import { PageState, pkvmGetstateHi, pkvmMkstateHi } from './page-state.js';
import type { HypVcpu, HypVm } from './vm.js';

/** `kvm_granule_size(KVM_PGTABLE_LAST_LEVEL - 1)`: the only block size np-guest transitions accept (2 MiB). */
export const NP_BLOCK_SIZE = 2 * 1024 * 1024;
/** `U32_MAX`: the saturation value of `host_share_guest_count`. */
const SHARE_COUNT_MAX = 0xffff_ffff;

const rangeScratch: MemRange = { start: 0, end: 0 };
const leaf = newLeafOut();

/**
 * The byte size of an np-guest transition: one page, or one 2 MiB block with both addresses 2 MiB aligned.
 * Mirrors `__guest_check_transition_size()`.
 * @returns the size, or -EINVAL.
 */
export function guestCheckTransitionSize(phys: number, ipa: number, nrPages: number): number {
  if (nrPages === 1) return PAGE_SIZE;
  if (nrPages !== NP_BLOCK_SIZE / PAGE_SIZE) return Err.EINVAL;
  if (phys % NP_BLOCK_SIZE !== 0 || ipa % NP_BLOCK_SIZE !== 0) return Err.EINVAL;
  return NP_BLOCK_SIZE;
}

/**
 * [start, end) must lie within one memory region (-EPERM when it is MMIO) and not straddle memory and MMIO
 * (-EINVAL). Mirrors `check_range_allowed_memory()`.
 */
export function checkRangeAllowedMemory(hyp: Hyp, start: number, end: number): Ret {
  const isMemory = findMemRange(hyp.mem, start, rangeScratch);
  if (!(end - 1 >= rangeScratch.start && end - 1 < rangeScratch.end)) return Err.EINVAL;
  return isMemory ? 0 : Err.EPERM;
}

/** Validates an untrusted frame number as an address: a safe integer inside the IPA/PA space. */
function addrOk(x: number, iaBits: number): boolean {
  return Number.isSafeInteger(x) && x >= 0 && x < 2 ** iaBits;
}

/**
 * The host shares a page or a 2 MiB block with a non-protected guest, with `prot` (a subset of RWX).
 *
 *   host: OWNED (or SHARED_OWNED with other np-guests) → SHARED_OWNED, count++
 *   guest: NOPAGE → SHARED_BORROWED (prot)
 *
 * Mirrors `__pkvm_host_share_guest()` (arch/arm64/kvm/hyp/nvhe/mem_protect.c, v6.16) plus the FIX-2026 memcache
 * precheck.
 * @returns 0; -EINVAL for prot outside RWX, a bad size or alignment, or a range straddling memory and MMIO;
 *   -EPERM when the range is MMIO, the guest range is mapped, or a host page is not the host's to share; -EBUSY when
 *   a page's share count would overflow; -ENOMEM when the vCPU memcache is short; -ERANGE past the IPA spaces.
 * @remarks Takes the host then the VM's lock.
 */
export function hostShareGuestNp(hyp: Hyp, pfn: number, gfn: number, nrPages: number, prot: number, vcpu: HypVcpu): Ret {
  const vm = vcpu.vm;
  if ((prot & ~KVM_PGTABLE_PROT_RWX) !== 0) return Err.EINVAL;
  const phys = pfn * PAGE_SIZE;
  const ipa = gfn * PAGE_SIZE;
  if (!addrOk(phys, hyp.hostPgt.iaBits) || !addrOk(ipa, vm.pgt.iaBits)) return Err.ERANGE;
  const size = guestCheckTransitionSize(phys, ipa, nrPages);
  if (size < 0) return size as Ret;
  let ret = checkRangeAllowedMemory(hyp, phys, phys + size);
  if (ret !== 0) return ret;
  hyp.locks.lock(HypLock.HOST);
  hyp.locks.lock(HypLock.GUEST, vm.idx);
  ret = checkGuestStateLocked(hyp, vm, ipa, size, PageState.NOPAGE);
  const vmm = hyp.vmemmap;
  for (let off = 0; ret === 0 && off < size; off += PAGE_SIZE) {
    const pa = phys + off;
    const x = vmm.idx(pa / PAGE_SIZE);
    const s = hyp.hostState(pa);
    if (s === PageState.OWNED) continue;
    if (s === PageState.SHARED_OWNED && vmm.shareGuestCount[x] === SHARE_COUNT_MAX) ret = Err.EBUSY;
    else if (s !== PageState.SHARED_OWNED || vmm.shareGuestCount[x] === 0) ret = Err.EPERM; // only np multi-share
  }
  if (ret === 0 && vcpu.memcache.nrPages < kvmMmuCacheMinPages(vm.pgt)) ret = Err.ENOMEM;
  if (ret === 0) {
    hyp.warnOn(setHostStateLocked(hyp, phys, size, PageState.SHARED_OWNED), 'host_share_guest: host state');
    for (let off = 0; off < size; off += PAGE_SIZE) vmm.shareGuestCount[vmm.idx((phys + off) / PAGE_SIZE)]!++;
    const r = stage2Map(vm.pgt, ipa, size, phys, prot, pkvmMkstateHi(0, PageState.SHARED_BORROWED), vcpu.memcache, 0);
    hyp.warnOn(r, 'host_share_guest: guest map');
  }
  hyp.locks.unlock(HypLock.GUEST);
  hyp.locks.unlock(HypLock.HOST);
  return ret;
}

/**
 * Checks that `ipa` holds a SHARED_BORROWED leaf of exactly `size` whose host pages are SHARED_OWNED with a
 * non-zero share count. Mirrors `__check_host_shared_guest()`.
 * @returns the PA, or -ENOENT (not mapped), -E2BIG (leaf of another size), -EPERM (state), -EINVAL (count 0, a WARN).
 */
function checkHostSharedGuestLocked(hyp: Hyp, vm: HypVm, ipa: number, size: number): number {
  const r = kvmPgtableGetLeaf(vm.pgt, ipa, leaf);
  if (r !== 0) return r;
  if (!kvmPteValid(leaf.lo)) return Err.ENOENT;
  if (2 ** (12 + (3 - leaf.level) * 9) !== size) return Err.E2BIG;
  if (pkvmGetstateHi(leaf.hi) !== PageState.SHARED_BORROWED) return Err.EPERM;
  const phys = kvmPteToPhys(leaf.lo, leaf.hi, vm.pgt.granule);
  const ret = checkRangeAllowedMemory(hyp, phys, phys + size);
  if (hyp.warnOn(ret, 'check_host_shared_guest: not memory')) return ret;
  for (let off = 0; off < size; off += PAGE_SIZE) {
    if (hyp.hostState(phys + off) !== PageState.SHARED_OWNED) return Err.EPERM;
    if (hyp.vmemmap.shareGuestCount[hyp.vmemmap.idx((phys + off) / PAGE_SIZE)] === 0) {
      hyp.warn('check_host_shared_guest: share count 0');
      return Err.EINVAL;
    }
  }
  return phys;
}

/**
 * The host takes back a page or 2 MiB block it shared with a non-protected guest.
 *
 *   guest: SHARED_BORROWED → NOPAGE (unmapped, with TLBI at EL2)
 *   host: count--; at zero SHARED_OWNED → OWNED
 *
 * Mirrors `__pkvm_host_unshare_guest()` (arch/arm64/kvm/hyp/nvhe/mem_protect.c, v6.16).
 * @returns 0; -EINVAL for a bad size or alignment; -ENOENT when not mapped; -E2BIG for a leaf of another size;
 *   -EPERM on a wrong state; -ERANGE past the guest IPA space.
 * @remarks Takes the host then the VM's lock.
 */
export function hostUnshareGuestNp(hyp: Hyp, gfn: number, nrPages: number, vm: HypVm): Ret {
  const ipa = gfn * PAGE_SIZE;
  if (!addrOk(ipa, vm.pgt.iaBits)) return Err.ERANGE;
  const size = guestCheckTransitionSize(0, ipa, nrPages);
  if (size < 0) return size as Ret;
  hyp.locks.lock(HypLock.HOST);
  hyp.locks.lock(HypLock.GUEST, vm.idx);
  const phys = checkHostSharedGuestLocked(hyp, vm, ipa, size);
  let ret: Ret = phys < 0 ? (phys as Ret) : (stage2Unmap(vm.pgt, ipa, size) as Ret);
  if (ret === 0) {
    const vmm = hyp.vmemmap;
    for (let off = 0; off < size; off += PAGE_SIZE) {
      const x = vmm.idx((phys + off) / PAGE_SIZE);
      vmm.shareGuestCount[x]!--;
      if (vmm.shareGuestCount[x] === 0) {
        ret = setHostStateLocked(hyp, phys + off, PAGE_SIZE, PageState.OWNED);
        hyp.warnOn(ret, 'host_unshare_guest: host state');
        ret = 0;
      }
    }
  }
  hyp.locks.unlock(HypLock.GUEST);
  hyp.locks.unlock(HypLock.HOST);
  return ret;
}

/**
 * Adds permissions to the loaded vCPU's guest mapping at `gfn` (TLBI by IPA at EL2).
 * Mirrors `__pkvm_host_relax_perms_guest()` (v6.16).
 * @returns 0; -EPERM for a protected VM; -EINVAL for prot outside RWX; -ERANGE.
 * @remarks Takes the VM's lock.
 */
export function hostRelaxPermsGuest(hyp: Hyp, gfn: number, vcpu: HypVcpu, prot: number): Ret {
  const vm = vcpu.vm;
  if (vm.isProtected) return Err.EPERM;
  if ((prot & ~KVM_PGTABLE_PROT_RWX) !== 0) return Err.EINVAL;
  const ipa = gfn * PAGE_SIZE;
  if (!addrOk(ipa, vm.pgt.iaBits)) return Err.ERANGE;
  hyp.locks.lock(HypLock.GUEST, vm.idx);
  const ret = stage2Relaxperms(vm.pgt, ipa, prot, 0, 0) as Ret;
  hyp.locks.unlock(HypLock.GUEST);
  return ret;
}

/**
 * Removes write permission from a page or block of a non-protected guest (no TLBI: the host flushes with
 * `__pkvm_tlb_flush_vmid`). Mirrors `__pkvm_host_wrprotect_guest()` (v6.16).
 * @returns 0; -EPERM for a protected VM; -EINVAL for a bad size; -ERANGE.
 * @remarks Takes the VM's lock.
 */
export function hostWrprotectGuest(hyp: Hyp, gfn: number, nrPages: number, vm: HypVm): Ret {
  if (vm.isProtected) return Err.EPERM;
  const ipa = gfn * PAGE_SIZE;
  if (!addrOk(ipa, vm.pgt.iaBits)) return Err.ERANGE;
  const size = guestCheckTransitionSize(0, ipa, nrPages);
  if (size < 0) return size as Ret;
  hyp.locks.lock(HypLock.GUEST, vm.idx);
  const ret = stage2Wrprotect(vm.pgt, ipa, size) as Ret;
  hyp.locks.unlock(HypLock.GUEST);
  return ret;
}

/**
 * Reports whether any mapping of the range was accessed, clearing the access flags when `mkold` (no TLBI).
 * Mirrors `__pkvm_host_test_clear_young_guest()` (v6.16).
 * @returns 1 (young) or 0; -EPERM for a protected VM; -EINVAL for a bad size; -ERANGE.
 * @remarks Takes the VM's lock.
 */
export function hostTestClearYoungGuest(hyp: Hyp, gfn: number, nrPages: number, mkold: boolean, vm: HypVm): number {
  if (vm.isProtected) return Err.EPERM;
  const ipa = gfn * PAGE_SIZE;
  if (!addrOk(ipa, vm.pgt.iaBits)) return Err.ERANGE;
  const size = guestCheckTransitionSize(0, ipa, nrPages);
  if (size < 0) return size;
  hyp.locks.lock(HypLock.GUEST, vm.idx);
  const young = stage2TestClearYoung(vm.pgt, ipa, size, mkold);
  hyp.locks.unlock(HypLock.GUEST);
  return young ? 1 : 0;
}

/**
 * Sets the access flag of the loaded vCPU's guest mapping at `gfn`. Mirrors `__pkvm_host_mkyoung_guest()` (v6.16).
 * @returns 0; -EPERM for a protected VM; -ERANGE.
 * @remarks Takes the VM's lock.
 */
export function hostMkyoungGuest(hyp: Hyp, gfn: number, vcpu: HypVcpu): Ret {
  const vm = vcpu.vm;
  if (vm.isProtected) return Err.EPERM;
  const ipa = gfn * PAGE_SIZE;
  if (!addrOk(ipa, vm.pgt.iaBits)) return Err.ERANGE;
  hyp.locks.lock(HypLock.GUEST, vm.idx);
  stage2Mkyoung(vm.pgt, ipa, 0, null);
  hyp.locks.unlock(HypLock.GUEST);
  return 0;
}
