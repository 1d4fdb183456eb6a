/**
 * The VM table and the VM/vCPU lifecycle at EL2: `__pkvm_init_vm`, `__pkvm_init_vcpu`, `__pkvm_vcpu_load` /
 * `__pkvm_vcpu_put` and `__pkvm_teardown_vm` (reference pkvm.md §4, §5.4, §2.5).
 *
 * Mirrors arch/arm64/kvm/hyp/nvhe/pkvm.c (UP-6.2 structure; 2022-series semantics: the guest stage-2 lives at EL2,
 * handles from 0x1000, VMID = index + 1, a host `struct kvm` registered twice is refused with -EEXIST, and teardown
 * marks every page the guest mapped PENDING_RECLAIM (and NEED_POISONING when the guest owned it) for
 * `__pkvm_host_reclaim_page`).
 */

import { PAGE_SIZE } from '../arch/addr.js';
import { Err, type Ret } from '../arch/errno.js';
import { AbiProfileName, HOST_KVM, HOST_VCPU, hypVcpuSize, hypVmSize } from '../arch/smccc.js';
import { vttbr } from '../arch/vttbr.js';
import { kvmPteToPhys, kvmPteValid } from '../pgtable/pte.js';
import { kvmPgtableStage2Init, kvmPgtableStage2PgdSize, newKvmPgtable, stage2Destroy } from '../pgtable/stage2.js';
import { kvmTlbFlushVmid } from '../pgtable/tlb-ops.js';
import { WalkFlags } from '../pgtable/types.js';
import { kvmPgtableWalk, type VisitCtx, type Walker } from '../pgtable/walk.js';
import type { Hyp } from './hyp.js';
import { HypPool } from './hyp-pool.js';
import { HypLock } from './locks.js';
import {
  type MemcacheCopy,
  popHypMemcache,
  pushHypMemcache,
  readHostMemcache,
  readU64,
  writeHostMemcache,
} from './memcache.js';
import { hostDonateHyp, hypDonateHost, hypPinSharedMem, hypUnpinSharedMem } from './mem-protect.js';
import { GuestMmOps } from './mm-ops.js';
import { PageState, pkvmGetstateHi } from './page-state.js';
import { HypVcpu, HypVm, KVM_MAX_PVMS } from './vm.js';
import { HypPageFlag } from './vmemmap.js';

/**
 * Takes ownership of `size` bytes of host memory at `pa` for an EL2 structure: page alignment, then a host→hyp
 * donation of every page, then (when `clear`) zeroing.
 * Mirrors `map_donated_memory()` / `map_donated_memory_noclear()` (arch/arm64/kvm/hyp/nvhe/pkvm.c).
 * @returns 0, or -ENOMEM (misaligned, not the host's, not memory).
 */
function mapDonatedMemory(hyp: Hyp, pa: number, size: number, clear: boolean): Ret {
  if (!Number.isSafeInteger(pa) || pa % PAGE_SIZE !== 0) return Err.ENOMEM;
  const nr = Math.ceil(size / PAGE_SIZE);
  if (hostDonateHyp(hyp, pa / PAGE_SIZE, nr) !== 0) return Err.ENOMEM;
  if (clear) hyp.mem.zero(pa, nr * PAGE_SIZE);
  return 0;
}

/** Gives donated memory back to the host. Mirrors `unmap_donated_memory_noclear()`. */
function unmapDonatedMemory(hyp: Hyp, pa: number, size: number): void {
  hyp.warnOn(hypDonateHost(hyp, pa / PAGE_SIZE, Math.ceil(size / PAGE_SIZE)), 'unmap_donated_memory');
}

/**
 * Creates the EL2 state of a VM from host-donated memory and returns its handle.
 *
 * Order (UP-6.2): pin the host `struct kvm` (must be shared with EL2); read `created_vcpus` once (< 1 → -EINVAL);
 * size the VM area from it and the pgd from the host VTCR; take the VM area (zeroed) and the pgd (not zeroed) by
 * donation; then under `vm_table_lock` insert into the table and prepare the guest stage-2. Errors unwind in
 * reverse.
 *
 * Mirrors `__pkvm_init_vm()` / `insert_vm_table_entry()` / `kvm_guest_prepare_stage2()`
 * (arch/arm64/kvm/hyp/nvhe/pkvm.c, mem_protect.c).
 * @param hostKvmPa PA of the host `struct kvm`.
 * @param vmPa PA of the donated VM area (`hypVmSize(created_vcpus)` bytes).
 * @param pgdPa PA of the donated pgd (`kvm_pgtable_stage2_pgd_size(host VTCR)` bytes).
 * @returns the handle (≥ 0x1000); -EPERM when the host struct is not shared; -EINVAL for no vCPUs; -ENOMEM when a
 *   donation fails or the table is full; -EEXIST when this host struct already has a VM.
 */
export function pkvmInitVm(hyp: Hyp, hostKvmPa: number, vmPa: number, pgdPa: number): number {
  if (!Number.isSafeInteger(hostKvmPa) || hostKvmPa % 8 !== 0) return Err.EINVAL;
  let ret: number = hypPinSharedMem(hyp, hostKvmPa, HOST_KVM.SIZE);
  if (ret !== 0) return ret;
  const nrVcpus = readU64(hyp.mem, hostKvmPa + HOST_KVM.CREATED_VCPUS);
  const isProtected = readU64(hyp.mem, hostKvmPa + HOST_KVM.PROTECTED) !== 0;
  if (nrVcpus < 1) {
    hypUnpinSharedMem(hyp, hostKvmPa, HOST_KVM.SIZE);
    return Err.EINVAL;
  }
  const vmSize = hypVmSize(nrVcpus);
  const pgdSize = kvmPgtableStage2PgdSize(hyp.hostVtcrLo);
  ret = mapDonatedMemory(hyp, vmPa, vmSize, true);
  if (ret !== 0) {
    hypUnpinSharedMem(hyp, hostKvmPa, HOST_KVM.SIZE);
    return ret;
  }
  ret = mapDonatedMemory(hyp, pgdPa, pgdSize, false);
  if (ret !== 0) {
    unmapDonatedMemory(hyp, vmPa, vmSize);
    hypUnpinSharedMem(hyp, hostKvmPa, HOST_KVM.SIZE);
    return ret;
  }

  hyp.locks.lock(HypLock.VM_TABLE);
  let idx = -1;
  let dup = false;
  for (let i = 0; i < KVM_MAX_PVMS; i++) {
    const v = hyp.vmTable[i];
    if (v === null) {
      if (idx < 0) idx = i;
    } else if (v!.hostKvmPa === hostKvmPa) dup = true; // JUSTIFY: i < length.
  }
  if (dup) ret = Err.EEXIST;
  else if (idx < 0) ret = Err.ENOMEM;
  let vm: HypVm | null = null;
  if (ret === 0) {
    // kvm_guest_prepare_stage2(): a pool over the pgd pages, the guest VTCR = the host's, VMID = idx + 1.
    const pool = new HypPool(hyp.vmemmap, hyp.mem, pgdPa / PAGE_SIZE, pgdSize / PAGE_SIZE, 0);
    const pgt = newKvmPgtable(hyp.mem, new GuestMmOps(pool, hyp.vmemmap, hyp.mem), (m) => hyp.warn(m));
    vm = new HypVm(idx, hostKvmPa, isProtected, nrVcpus, vmPa, vmSize, pgdPa, pgdSize, hyp.hostVtcrLo, hyp.hostVtcrHi, pool, pgt);
    hyp.locks.lock(HypLock.GUEST, idx);
    // The 2022 series forces page mappings; v6.16 lets np-guest shares of a 2 MiB range use a block.
    const forcePte = hyp.profile.name === AbiProfileName.PKVM_2022 ? guestForcePte : null;
    ret = kvmPgtableStage2Init(pgt, { vmid: vm.vmid, tlb: hyp.tlb, hasFwb: hyp.features.fwb }, hyp.hostVtcrLo, 0, forcePte);
    hyp.locks.unlock(HypLock.GUEST);
    if (ret === 0) {
      vm.vttbr = vttbr({ baddr: pgt.pgd, vmid: vm.vmid });
      hyp.vmTable[idx] = vm;
    }
  }
  hyp.locks.unlock(HypLock.VM_TABLE);
  if (ret !== 0) {
    // The pgd pages may have been claimed by the VM pool: clear their hyp_page state before giving them back.
    for (let p = pgdPa / PAGE_SIZE; p < (pgdPa + pgdSize) / PAGE_SIZE; p++) resetHypPage(hyp, p);
    unmapDonatedMemory(hyp, pgdPa, pgdSize);
    unmapDonatedMemory(hyp, vmPa, vmSize);
    hypUnpinSharedMem(hyp, hostKvmPa, HOST_KVM.SIZE);
    return ret;
  }
  return vm!.handle; // JUSTIFY: ret === 0 implies vm was created.
}

/** Guest stage-2 at EL2 maps only pages (`force_pte` always true in the 2022 series, pkvm.md §4.3). */
function guestForcePte(): boolean {
  return true;
}

/** Zeroes a page's `hyp_page` (refcount, order, flags, links), as `memset(hyp_virt_to_page(addr), 0, …)` does. */
function resetHypPage(hyp: Hyp, pfn: number): void {
  const v = hyp.vmemmap;
  const x = v.idx(pfn);
  v.refcount[x] = 0;
  v.order[x] = 0xff;
  v.flags[x] = 0;
  v.next[x] = -1;
  v.prev[x] = -1;
  v.onFreeList[x] = 0;
}

/**
 * Creates the EL2 state of the next vCPU of a VM from a donated area.
 * Mirrors `__pkvm_init_vcpu()` / `init_pkvm_hyp_vcpu()` (arch/arm64/kvm/hyp/nvhe/pkvm.c).
 * @param handle the VM.
 * @param hostVcpuPa PA of the host `struct kvm_vcpu` (must be shared with EL2; pinned).
 * @param vcpuPa PA of the donated hyp-vCPU area (`hypVcpuSize()` bytes).
 * @returns 0; -ENOMEM when the donation fails; -ENOENT for an unknown handle; -EINVAL when all vCPUs exist or the
 *   host vCPU's index is not the next one; -EBUSY when the host vCPU struct cannot be pinned.
 */
export function pkvmInitVcpu(hyp: Hyp, handle: number, hostVcpuPa: number, vcpuPa: number): Ret {
  const size = hypVcpuSize();
  let ret = mapDonatedMemory(hyp, vcpuPa, size, true);
  if (ret !== 0) return ret;
  hyp.locks.lock(HypLock.VM_TABLE);
  const vm = hyp.vmByHandle(handle);
  if (vm === null) ret = Err.ENOENT;
  else if (vm.nrVcpus >= vm.createdVcpus) ret = Err.EINVAL;
  else if (!Number.isSafeInteger(hostVcpuPa) || hostVcpuPa % 8 !== 0) ret = Err.EBUSY;
  else if (hypPinSharedMem(hyp, hostVcpuPa, HOST_VCPU.SIZE) !== 0) ret = Err.EBUSY;
  else if (readU64(hyp.mem, hostVcpuPa + HOST_VCPU.VCPU_IDX) !== vm.nrVcpus) {
    hypUnpinSharedMem(hyp, hostVcpuPa, HOST_VCPU.SIZE);
    ret = Err.EINVAL;
  } else {
    vm.vcpus.push(new HypVcpu(vm, vm.nrVcpus, hostVcpuPa, vcpuPa));
  }
  hyp.locks.unlock(HypLock.VM_TABLE);
  if (ret !== 0) unmapDonatedMemory(hyp, vcpuPa, size);
  return ret;
}

/**
 * Loads vCPU `idx` of VM `handle` on `cpu`. Silently does nothing when this CPU already has a loaded vCPU, the
 * handle or index is unknown, or the vCPU is loaded elsewhere. Takes a reference on the VM (its first struct page).
 * Mirrors `pkvm_load_hyp_vcpu()` / `handle___pkvm_vcpu_load()` (arch/arm64/kvm/hyp/nvhe/pkvm.c, hyp-main.c).
 */
export function pkvmVcpuLoad(hyp: Hyp, cpu: number, handle: number, idx: number): void {
  const c = hyp.cpus[cpu]!; // JUSTIFY: callers pass a valid CPU.
  if (c.loadedVcpu !== null) return;
  hyp.locks.lock(HypLock.VM_TABLE);
  const vm = hyp.vmByHandle(handle);
  if (vm !== null && Number.isInteger(idx) && idx >= 0 && idx < vm.nrVcpus) {
    const vcpu = vm.vcpus[idx]!; // JUSTIFY: idx < nrVcpus.
    if (vcpu.loadedCpu < 0) {
      vcpu.loadedCpu = cpu;
      c.loadedVcpu = vcpu;
      hyp.vmemmap.refcount[hyp.vmemmap.idx(vm.pa / PAGE_SIZE)]!++;
    }
  }
  hyp.locks.unlock(HypLock.VM_TABLE);
}

/**
 * Puts the vCPU loaded on `cpu` (if any) and drops its VM reference.
 * Mirrors `pkvm_put_hyp_vcpu()` / `handle___pkvm_vcpu_put()`.
 */
export function pkvmVcpuPut(hyp: Hyp, cpu: number): void {
  const c = hyp.cpus[cpu]!; // JUSTIFY: callers pass a valid CPU.
  const vcpu = c.loadedVcpu;
  if (vcpu === null) return;
  hyp.locks.lock(HypLock.VM_TABLE);
  vcpu.loadedCpu = -1;
  c.loadedVcpu = null;
  hyp.vmemmap.refcount[hyp.vmemmap.idx(vcpu.vm.pa / PAGE_SIZE)]!--;
  hyp.locks.unlock(HypLock.VM_TABLE);
}

/** Visitor state of the teardown walk over the guest stage-2. */
interface TeardownData {
  hyp: Hyp | null;
  bad: number;
}

/**
 * Marks the host page behind a valid guest leaf for reclaim: guest OWNED (donated) → NEED_POISONING |
 * PENDING_RECLAIM; SHARED_BORROWED (np-guest) or SHARED_OWNED (a pVM page it shared back: the host already sees
 * its contents) → PENDING_RECLAIM. Mirrors `reclaim_walker()` (arch/arm64/kvm/hyp/nvhe/mem_protect.c, CORE); the
 * kernel BUGs on any other state, which cannot occur (the reserved SW value is never written), so the model counts
 * it and reports a warning.
 */
function teardownVisitor(ctx: VisitCtx<TeardownData>): number {
  const d = ctx.arg;
  if (!kvmPteValid(ctx.oldLo)) return 0;
  const hyp = d.hyp!; // JUSTIFY: set before the walk.
  const pfn = Math.floor(kvmPteToPhys(ctx.oldLo, ctx.oldHi, ctx.granule) / PAGE_SIZE);
  if (!hyp.vmemmap.has(pfn)) {
    d.bad++;
    return 0;
  }
  const x = hyp.vmemmap.idx(pfn);
  const s = pkvmGetstateHi(ctx.oldHi);
  if (s === PageState.OWNED) {
    hyp.vmemmap.flags[x] = hyp.vmemmap.flags[x]! | HypPageFlag.NEED_POISONING | HypPageFlag.PENDING_RECLAIM;
  } else if (s === PageState.SHARED_BORROWED || s === PageState.SHARED_OWNED) {
    hyp.vmemmap.flags[x] = hyp.vmemmap.flags[x]! | HypPageFlag.PENDING_RECLAIM;
  } else {
    d.bad++;
  }
  return 0;
}

const teardownData: TeardownData = { hyp: null, bad: 0 };
const teardownWalker: Walker<TeardownData> = { cb: teardownVisitor, arg: teardownData, flags: WalkFlags.LEAF };

/**
 * Pushes one hyp-owned page onto the host's teardown memcache and donates it to the host.
 * Mirrors the `push_hyp_memcache(mc, addr, …); __pkvm_hyp_donate_host(pfn, 1)` pairs of pkvm.c / mem_protect.c.
 */
function teardownPushPage(hyp: Hyp, mc: MemcacheCopy, pa: number): void {
  pushHypMemcache(hyp.mem, mc, pa);
  hyp.warnOn(hypDonateHost(hyp, pa / PAGE_SIZE, 1), 'teardown: hyp_donate_host');
}

/**
 * Destroys a VM: the guest's pages are marked for reclaim, its page-table pages and the VM/vCPU structures go back
 * to the host through the teardown memcache in the host `struct kvm`, and the host structs are unpinned.
 *
 * Mirrors `__pkvm_teardown_vm()` (arch/arm64/kvm/hyp/nvhe/pkvm.c, UP-6.2 structure) with the 2022 series'
 * reclaim marking (`reclaim_guest_pages()`, V1 24/89 and 26/89).
 * @returns 0; -ENOENT for an unknown handle; -EBUSY while a vCPU of the VM is loaded.
 */
export function pkvmTeardownVm(hyp: Hyp, handle: number): Ret {
  hyp.locks.lock(HypLock.VM_TABLE);
  const vm = hyp.vmByHandle(handle);
  let ret: Ret = 0;
  if (vm === null) ret = Err.ENOENT;
  else if (hyp.vmemmap.pageCount(vm.pa / PAGE_SIZE) !== 0) {
    // v6.16 wraps this check in WARN_ON(); the 2022 series returns -EBUSY quietly.
    if (hyp.profile.name === AbiProfileName.UPSTREAM_6_16) hyp.warn('__pkvm_teardown_vm: VM still referenced');
    ret = Err.EBUSY;
  } else {
    // Ensure the VMID is clean before it can be reallocated.
    kvmTlbFlushVmid(hyp.tlb, vm.vmid);
    hyp.vmTable[vm.idx] = null;
  }
  hyp.locks.unlock(HypLock.VM_TABLE);
  if (ret !== 0 || vm === null) return ret;

  const mc: MemcacheCopy = { head: 0, nrPages: 0 };
  const mcPa = vm.hostKvmPa + HOST_KVM.TEARDOWN_MC_HEAD;
  readHostMemcache(hyp.mem, mcPa, mc);

  // reclaim_guest_pages(): mark the guest's pages, destroy its stage-2, drain the VM pool.
  hyp.locks.lock(HypLock.HOST);
  hyp.locks.lock(HypLock.GUEST, vm.idx);
  if (hyp.profile.name === AbiProfileName.PKVM_2022) {
    // v6.16 does not look at the leaves: the host unshares every np-guest page before the teardown.
    teardownData.hyp = hyp;
    teardownData.bad = 0;
    hyp.warnOn(kvmPgtableWalk(vm.pgt, 0, 2 ** vm.pgt.iaBits, teardownWalker), 'teardown: guest walk');
    if (teardownData.bad !== 0) hyp.warn(`teardown: ${teardownData.bad} guest leaves in an unexpected state`);
  }
  stage2Destroy(vm.pgt);
  hyp.locks.unlock(HypLock.GUEST);
  hyp.locks.unlock(HypLock.HOST);
  for (let pfn = vm.pool.allocPages(0); pfn >= 0; pfn = vm.pool.allocPages(0)) {
    resetHypPage(hyp, pfn);
    teardownPushPage(hyp, mc, pfn * PAGE_SIZE);
  }

  for (const vcpu of vm.vcpus) hypUnpinSharedMem(hyp, vcpu.hostVcpuPa, HOST_VCPU.SIZE);
  for (const vcpu of vm.vcpus) {
    for (let pa = popHypMemcache(hyp.mem, vcpu.memcache); pa >= 0; pa = popHypMemcache(hyp.mem, vcpu.memcache)) {
      teardownPushPage(hyp, mc, pa);
    }
    teardownDonatedMemory(hyp, mc, vcpu.pa, hypVcpuSize());
  }
  teardownDonatedMemory(hyp, mc, vm.pa, vm.size);
  writeHostMemcache(hyp.mem, mcPa, mc);
  hypUnpinSharedMem(hyp, vm.hostKvmPa, HOST_KVM.SIZE);
  return 0;
}

/** Zeroes an EL2 structure area and returns its pages. Mirrors `teardown_donated_memory()`. */
function teardownDonatedMemory(hyp: Hyp, mc: MemcacheCopy, pa: number, size: number): void {
  const bytes = Math.ceil(size / PAGE_SIZE) * PAGE_SIZE;
  hyp.mem.zero(pa, bytes);
  for (let off = 0; off < bytes; off += PAGE_SIZE) pushHypMemcache(hyp.mem, mc, pa + off);
  unmapDonatedMemory(hyp, pa, bytes);
}
