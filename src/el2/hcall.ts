/**
 * Host hypercall dispatch and handlers (reference pkvm.md §3; STYLE.md §10.9): one handler per hypercall of the
 * ABI profile, each "decode registers → call → write x1", and `handleHostHcall`, which masks the SMCCC hint bit,
 * refuses unknown ids and (once protected mode is initialised) ids below `__pkvm_prot_finalize` with
 * SMCCC_RET_NOT_SUPPORTED in x0 and x1 untouched, and otherwise writes SMCCC_RET_SUCCESS to x0 and runs the handler.
 *
 * Mirrors `handle_host_hcall()` and the `handle___*` functions of arch/arm64/kvm/hyp/nvhe/hyp-main.c: one handler
 * record per ABI profile (`pkvm-2022`: the 2022 series, CORE numbering; `upstream-6.16`: Linux v6.16). No path from
 * register contents leads to a throw: handlers validate their arguments.
 *
 * Hypercalls for subsystems outside this model (vGIC, timer, SSBS, Spectre vectors, debug) are dispatched like the
 * others and have no effect on modelled state: they leave x1 untouched where the kernel handler writes nothing and
 * report the reset value 0 where it returns a register value.
 */

import { PAGE_SIZE } from '../arch/addr.js';
import { Err } from '../arch/errno.js';
import { hcr } from '../arch/hcr.js';
import {
  AbiProfileName,
  ArmException,
  GuestExit,
  type Hcall2022,
  type HcallProfile,
  type HcallUp616,
  HOST_S2_MMU,
  HOST_VCPU,
  KVM_HOST_SMCCC_BASE,
  SMCCC_CALL_HINTS,
  SmcccRet,
} from '../arch/smccc.js';
import { kvmTlbFlushVmid, kvmTlbFlushVmidIpa, kvmTlbFlushVmidIpaNsh, kvmTlbFlushVmidRange } from '../pgtable/tlb-ops.js';
import { kvmPgtableHypMap } from '../pgtable/hyp.js';
import { assert } from '../arch/assert.js';
import { handleGuestHvc } from './guest-hcall.js';
import type { HcallHandlerRef, Hyp, HypCpu } from './hyp.js';
import { readU64, refillMemcache } from './memcache.js';
import { hostDonateGuest, hostReclaimPage, hostShareGuest, hostShareHyp, hostUnshareHyp } from './mem-protect.js';
import { HypLock } from './locks.js';
import {
  hostMkyoungGuest,
  hostRelaxPermsGuest,
  hostShareGuestNp,
  hostTestClearYoungGuest,
  hostUnshareGuestNp,
  hostWrprotectGuest,
} from './np-guest.js';
import { pkvmInitVcpu, pkvmInitVm, pkvmTeardownVm, pkvmVcpuLoad, pkvmVcpuPut } from './pkvm.js';
import type { HypVcpu, HypVm } from './vm.js';
import { kvmMmuCacheMinPages } from '../pgtable/stage2.js';

/** A hypercall handler: reads its arguments from the CPU's host context, writes its result to x1. */
export type HcallHandler = HcallHandlerRef;

/** Handler of calls with no effect on modelled state and no return value (x1 untouched). */
const noEffect: HcallHandler = () => {};

/** Handler of calls returning a register value the model keeps at its reset value 0. */
const returnsZero: HcallHandler = (_hyp, cpu) => {
  cpu.regs.setU(1, 0);
};

/** Mirrors `handle___pkvm_host_share_hyp()`. */
function handleHostShareHyp(hyp: Hyp, cpu: HypCpu): void {
  cpu.regs.setSigned(1, hostShareHyp(hyp, cpu.regs.u(1)));
}

/** Mirrors `handle___pkvm_host_unshare_hyp()`. */
function handleHostUnshareHyp(hyp: Hyp, cpu: HypCpu): void {
  cpu.regs.setSigned(1, hostUnshareHyp(hyp, cpu.regs.u(1)));
}

/** Mirrors `handle___pkvm_host_reclaim_page()` (V1 26/89). */
function handleHostReclaimPage(hyp: Hyp, cpu: HypCpu): void {
  cpu.regs.setSigned(1, hostReclaimPage(hyp, cpu.regs.u(1)));
}

/**
 * Mirrors `handle___pkvm_host_map_guest()` (V1 33/89 with "do not pass the vcpu"): no loaded vCPU → -EINVAL; refill
 * the vCPU's hyp memcache from the host's up to the minimum (error → returned); then donate (protected VM) or share.
 */
function handleHostMapGuest(hyp: Hyp, cpu: HypCpu): void {
  const vcpu = cpu.loadedVcpu;
  if (vcpu === null) {
    cpu.regs.setSigned(1, Err.EINVAL);
    return;
  }
  const pfn = cpu.regs.u(1);
  const gfn = cpu.regs.u(2);
  let ret = refillMemcache(hyp.mem, vcpu.memcache, kvmMmuCacheMinPages(vcpu.vm.pgt), vcpu.hostVcpuPa, hyp.admitHostPage);
  if (ret === 0) ret = vcpu.vm.isProtected ? hostDonateGuest(hyp, pfn, gfn, vcpu) : hostShareGuest(hyp, pfn, gfn, vcpu);
  cpu.regs.setSigned(1, ret);
}

/**
 * Mirrors `handle___pkvm_init_vm()`: x1 host kvm, x2 VM area, x3 pgd; returns the handle or an errno. The CORE and
 * Android trees also donate a per-CPU `last_vcpu_ran` array in x4, used by `__pkvm_vcpu_load` to flush the CPU's
 * stage-1 TLB context when another vCPU of the VM ran there last; the model caches no stage-1 state, so it takes
 * the UP-6.2 three-argument form (pkvm.md §3.5).
 */
function handleInitVm(hyp: Hyp, cpu: HypCpu): void {
  cpu.regs.setSigned(1, pkvmInitVm(hyp, cpu.regs.u(1), cpu.regs.u(2), cpu.regs.u(3)));
}

/** Mirrors `handle___pkvm_init_vcpu()`: x1 handle, x2 host vCPU, x3 hyp-vCPU area. */
function handleInitVcpu(hyp: Hyp, cpu: HypCpu): void {
  cpu.regs.setSigned(1, pkvmInitVcpu(hyp, cpu.regs.u(1), cpu.regs.u(2), cpu.regs.u(3)));
}

/** Mirrors `handle___pkvm_teardown_vm()`. */
function handleTeardownVm(hyp: Hyp, cpu: HypCpu): void {
  cpu.regs.setSigned(1, pkvmTeardownVm(hyp, cpu.regs.u(1)));
}

/** Mirrors `handle___pkvm_vcpu_load()`: x1 handle, x2 vCPU index (x3 HCR WFx bits: not modelled). No return. */
function handleVcpuLoad(hyp: Hyp, cpu: HypCpu): void {
  pkvmVcpuLoad(hyp, cpu.id, cpu.regs.u(1), cpu.regs.u(2));
}

/** Mirrors `handle___pkvm_vcpu_put()`. No return. */
function handleVcpuPut(hyp: Hyp, cpu: HypCpu): void {
  pkvmVcpuPut(hyp, cpu.id);
}

/**
 * Enables the host stage-2 on this CPU: HCR_EL2.VM, the host VTTBR (VMID 0) and VTCR, then TLBI VMALLS12E1.
 * The first call also flips the `kvm_protected_mode_initialized` static key (the host flips it just before
 * finalising), which closes the pre-initialisation hypercalls.
 * Mirrors `__pkvm_prot_finalize()` (arch/arm64/kvm/hyp/nvhe/mem_protect.c).
 * @returns (x1) 0; -EPERM when already enabled on this CPU.
 */
function handleProtFinalize(hyp: Hyp, cpu: HypCpu): void {
  hyp.protectedModeInitialized = true;
  if (cpu.hostS2Enabled) {
    cpu.regs.setSigned(1, Err.EPERM);
    return;
  }
  cpu.hostS2Enabled = true;
  loadHostStage2(hyp, cpu);
  hyp.tlb.vmalls12e1(0);
  hyp.tlb.dsb();
  hyp.tlb.isb();
  cpu.regs.setSigned(1, 0);
}

/** HCR_EL2 while the host runs with its stage-2 enabled (VM, RW); the model's HCR holds only what stage 2 reads. */
const HCR_HOST_S2 = hcr({ vm: true, rw: true });
/** HCR_EL2 before `__pkvm_prot_finalize` on a CPU (stage 2 off). */
const HCR_HOST_NO_S2 = hcr({ vm: false, rw: true });
/** HCR_EL2 while a guest runs (`HCR_GUEST_FLAGS`: VM, RW). */
const HCR_GUEST = hcr({ vm: true, rw: true });

/** `__load_stage2(&host_mmu.arch.mmu)` on this CPU's MMU. */
export function loadHostStage2(hyp: Hyp, cpu: HypCpu): void {
  const mmu = cpu.mmu;
  if (mmu === null) return;
  mmu.setRegs(hyp.hostVtcr, hyp.hostVttbr, cpu.hostS2Enabled ? HCR_HOST_S2 : HCR_HOST_NO_S2);
}

/** The VMID of a host `struct kvm_s2_mmu` passed by pointer (pre-finalise TLB calls); -1 when unreadable. */
function hostMmuVmid(hyp: Hyp, pa: number): number {
  if (!Number.isSafeInteger(pa) || pa % 8 !== 0 || !hyp.isMemory(pa)) return -1;
  const v = readU64(hyp.mem, pa + HOST_S2_MMU.VMID);
  return v <= 0xffff ? v : -1;
}

/** Mirrors `handle___kvm_flush_vm_context()`: TLBI ALLE1IS. */
function handleFlushVmContext(hyp: Hyp): void {
  hyp.tlb.dsb();
  hyp.tlb.alle1is();
  hyp.tlb.dsb();
}

/** Mirrors `handle___kvm_tlb_flush_vmid_ipa()`: x1 host s2 mmu, x2 IPA, x3 level. */
function handleTlbFlushVmidIpa(hyp: Hyp, cpu: HypCpu): void {
  const vmid = hostMmuVmid(hyp, cpu.regs.u(1));
  const ipa = cpu.regs.u(2);
  const level = cpu.regs.u(3);
  if (vmid < 0 || !Number.isSafeInteger(ipa)) return;
  kvmTlbFlushVmidIpa(hyp.tlb, vmid, ipa, level >= 0 && level <= 3 ? level : 0x7fff_ffff);
}

/** Mirrors `handle___kvm_tlb_flush_vmid()`: x1 host s2 mmu. */
function handleTlbFlushVmid(hyp: Hyp, cpu: HypCpu): void {
  const vmid = hostMmuVmid(hyp, cpu.regs.u(1));
  if (vmid >= 0) kvmTlbFlushVmid(hyp.tlb, vmid);
}

/** Mirrors `handle___kvm_flush_cpu_context()`: local TLBI VMALLE1 for the VMID. */
function handleFlushCpuContext(hyp: Hyp, cpu: HypCpu): void {
  const vmid = hostMmuVmid(hyp, cpu.regs.u(1));
  if (vmid < 0) return;
  hyp.tlb.vmalle1(vmid);
  hyp.tlb.dsb();
  hyp.tlb.isb();
}

/** Bottom of the private VA range handed out by `__pkvm_create_private_mapping` (above the hyp linear map). */
const PRIVATE_VA_BASE = 2 ** 47;

/**
 * Mirrors `handle___pkvm_create_private_mapping()`: x1 PA, x2 size, x3 prot; maps the range at the next free
 * private hyp VA and returns that VA (plus the PA's page offset) in x1, or an errno.
 */
function handleCreatePrivateMapping(hyp: Hyp, cpu: HypCpu): void {
  const phys = cpu.regs.u(1);
  const size = cpu.regs.u(2);
  const prot = cpu.regs.hi(3) === 0 ? cpu.regs.lo(3) : -1;
  if (!Number.isSafeInteger(phys) || !Number.isSafeInteger(size) || size <= 0 || prot < 0) {
    cpu.regs.setSigned(1, Err.EINVAL);
    return;
  }
  const off = phys % PAGE_SIZE;
  const bytes = Math.ceil((off + size) / PAGE_SIZE) * PAGE_SIZE;
  const va = PRIVATE_VA_BASE + hyp.privateVaUsed;
  if (va + bytes > 2 ** 48) {
    cpu.regs.setSigned(1, Err.ENOMEM);
    return;
  }
  const ret = kvmPgtableHypMap(hyp.hypPgt, va, bytes, phys - off, prot & 0x1f, 0);
  if (ret !== 0) {
    cpu.regs.setSigned(1, ret);
    return;
  }
  hyp.privateVaUsed += bytes;
  cpu.regs.setU(1, va + off);
}

/** The model's `__pkvm_init` ran at boot (`createHyp`); a second one is refused. */
function handlePkvmInit(_hyp: Hyp, cpu: HypCpu): void {
  cpu.regs.setSigned(1, Err.EPERM);
}

/**
 * Runs the vCPU loaded on this CPU until it exits to the host. A stage-2 abort is reported by writing ESR, FAR and
 * HPFAR into the host vCPU struct and returning ARM_EXCEPTION_TRAP; a protected guest's HVC is handled at EL2 and
 * the guest continues; a non-protected guest's HVC exits to the host as a TRAP with its ESR.
 * Mirrors `handle___kvm_vcpu_run()` (hyp-main.c, protected mode: `get_host_hyp_vcpus`, `flush_hyp_vcpu`,
 * `__kvm_vcpu_run`, `sync_hyp_vcpu`).
 * @returns (x1) the `ARM_EXCEPTION_*` exit code; -EINVAL when x1 is not the host vCPU of the vCPU loaded on this
 *   CPU, or the machine has no guest layer.
 */
function handleVcpuRun(hyp: Hyp, cpu: HypCpu): void {
  const vcpu = cpu.loadedVcpu;
  const runner = hyp.runner;
  const mmu = cpu.mmu;
  // get_host_hyp_vcpus(): x1 must name the host vCPU of the vCPU loaded on this CPU.
  if (vcpu === null || vcpu.hostVcpuPa !== cpu.regs.u(1) || runner === null || mmu === null) {
    cpu.regs.setSigned(1, Err.EINVAL);
    return;
  }
  const vm = vcpu.vm;
  mmu.setRegs(vm.vtcr, vm.vttbr, HCR_GUEST);
  const exc = cpu.exc;
  let exit: number = ArmException.IRQ;
  for (;;) {
    const r = runner.run(vm.handle, vcpu.idx, mmu, exc);
    if (r === GuestExit.COMPLETED) break;
    if (r === GuestExit.HVC && vm.isProtected && handleGuestHvc(hyp, vcpu, runner.regs(vm.handle, vcpu.idx))) continue;
    if (r !== GuestExit.S2_ABORT && r !== GuestExit.HVC) assert(false, `guest runner returned ${r}`);
    const h = vcpu.hostVcpuPa;
    hyp.mem.write64(h + HOST_VCPU.FAULT_ESR, exc.esrLo, exc.esrHi);
    hyp.mem.write64(h + HOST_VCPU.FAULT_FAR, exc.farLo, exc.farHi);
    hyp.mem.write64(h + HOST_VCPU.FAULT_HPFAR, exc.hpfarLo, exc.hpfarHi);
    exit = ArmException.TRAP;
    break;
  }
  loadHostStage2(hyp, cpu);
  cpu.regs.setSigned(1, exit);
}

/**
 * The `pkvm-2022` handler table, by kernel name. `null` marks `__kvm_hyp_init`, reachable only through the init
 * vectors (NOT_SUPPORTED here).
 */
export const HANDLERS_PKVM_2022 = {
  __kvm_hyp_init: null,
  __kvm_get_mdcr_el2: returnsZero,
  __pkvm_init: handlePkvmInit,
  __pkvm_create_private_mapping: handleCreatePrivateMapping,
  __pkvm_cpu_set_vector: returnsZero,
  __kvm_enable_ssbs: noEffect,
  __vgic_v3_init_lrs: noEffect,
  __vgic_v3_get_gic_config: returnsZero,
  __kvm_flush_vm_context: handleFlushVmContext,
  __kvm_tlb_flush_vmid_ipa: handleTlbFlushVmidIpa,
  __kvm_tlb_flush_vmid: handleTlbFlushVmid,
  __kvm_flush_cpu_context: handleFlushCpuContext,
  __pkvm_prot_finalize: handleProtFinalize,
  __pkvm_host_share_hyp: handleHostShareHyp,
  __pkvm_host_unshare_hyp: handleHostUnshareHyp,
  __pkvm_host_reclaim_page: handleHostReclaimPage,
  __pkvm_host_map_guest: handleHostMapGuest,
  __kvm_adjust_pc: noEffect,
  __kvm_vcpu_run: handleVcpuRun,
  __kvm_timer_set_cntvoff: noEffect,
  __vgic_v3_save_vmcr_aprs: noEffect,
  __vgic_v3_restore_vmcr_aprs: noEffect,
  __pkvm_init_vm: handleInitVm,
  __pkvm_init_vcpu: handleInitVcpu,
  __pkvm_teardown_vm: handleTeardownVm,
  __pkvm_vcpu_load: handleVcpuLoad,
  __pkvm_vcpu_put: handleVcpuPut,
  __pkvm_vcpu_sync_state: noEffect,
} satisfies Record<Hcall2022, HcallHandler | null>;

// ---- upstream-6.16 handlers ------------------------------------------------------------------------------------

/**
 * The loaded vCPU of this CPU when it belongs to a non-protected VM, else null (the handlers then answer -EINVAL).
 * Mirrors `pkvm_get_loaded_hyp_vcpu()` + `pkvm_hyp_vcpu_is_protected()` in the v6.16 handlers.
 */
function loadedNpVcpu(cpu: HypCpu): HypVcpu | null {
  const v = cpu.loadedVcpu;
  return v !== null && !v.vm.isProtected ? v : null;
}

/**
 * The VM of a handle when it is not protected, with a reference held on it until {@link putVm}.
 * Mirrors `get_np_pkvm_hyp_vm()` (arch/arm64/kvm/hyp/nvhe/pkvm.c, v6.16).
 */
function getNpVm(hyp: Hyp, handle: number): HypVm | null {
  hyp.locks.lock(HypLock.VM_TABLE);
  const vm = hyp.vmByHandle(handle);
  const ok = vm !== null && !vm.isProtected;
  if (ok) hyp.vmemmap.refcount[hyp.vmemmap.idx(vm.pa / PAGE_SIZE)]!++;
  hyp.locks.unlock(HypLock.VM_TABLE);
  return ok ? vm : null;
}

/** Drops the reference {@link getNpVm} took. Mirrors `put_pkvm_hyp_vm()`. */
function putVm(hyp: Hyp, vm: HypVm): void {
  hyp.locks.lock(HypLock.VM_TABLE);
  hyp.vmemmap.refcount[hyp.vmemmap.idx(vm.pa / PAGE_SIZE)]!--;
  hyp.locks.unlock(HypLock.VM_TABLE);
}

/**
 * Mirrors `handle___pkvm_host_share_guest()` (v6.16): x1 pfn, x2 gfn, x3 nr_pages, x4 prot. Needs a loaded vCPU of
 * a non-protected VM (-EINVAL); first tops the vCPU's hyp memcache up to the host memcache's page count (error →
 * returned).
 */
function handleHostShareGuestNp(hyp: Hyp, cpu: HypCpu): void {
  const vcpu = loadedNpVcpu(cpu);
  if (vcpu === null) {
    cpu.regs.setSigned(1, Err.EINVAL);
    return;
  }
  const regs = cpu.regs;
  const offered = readU64(hyp.mem, vcpu.hostVcpuPa + HOST_VCPU.MC_NR);
  // v6.16 pkvm_refill_memcache(): top up to as many pages as the host's memcache holds.
  let ret = refillMemcache(hyp.mem, vcpu.memcache, offered, vcpu.hostVcpuPa, hyp.admitHostPage);
  if (ret === 0) {
    const prot = regs.hi(4) === 0 ? regs.lo(4) : -1;
    ret = hostShareGuestNp(hyp, regs.u(1), regs.u(2), regs.u(3), prot, vcpu);
  }
  regs.setSigned(1, ret);
}

/** Mirrors `handle___pkvm_host_unshare_guest()` (v6.16): x1 handle, x2 gfn, x3 nr_pages. */
function handleHostUnshareGuestNp(hyp: Hyp, cpu: HypCpu): void {
  const vm = getNpVm(hyp, cpu.regs.u(1));
  if (vm === null) {
    cpu.regs.setSigned(1, Err.EINVAL);
    return;
  }
  cpu.regs.setSigned(1, hostUnshareGuestNp(hyp, cpu.regs.u(2), cpu.regs.u(3), vm));
  putVm(hyp, vm);
}

/** Mirrors `handle___pkvm_host_relax_perms_guest()` (v6.16): x1 gfn, x2 prot. */
function handleHostRelaxPermsGuest(hyp: Hyp, cpu: HypCpu): void {
  const vcpu = loadedNpVcpu(cpu);
  const prot = cpu.regs.hi(2) === 0 ? cpu.regs.lo(2) : -1;
  cpu.regs.setSigned(1, vcpu === null ? Err.EINVAL : hostRelaxPermsGuest(hyp, cpu.regs.u(1), vcpu, prot));
}

/** Mirrors `handle___pkvm_host_wrprotect_guest()` (v6.16): x1 handle, x2 gfn, x3 nr_pages. */
function handleHostWrprotectGuest(hyp: Hyp, cpu: HypCpu): void {
  const vm = getNpVm(hyp, cpu.regs.u(1));
  if (vm === null) {
    cpu.regs.setSigned(1, Err.EINVAL);
    return;
  }
  cpu.regs.setSigned(1, hostWrprotectGuest(hyp, cpu.regs.u(2), cpu.regs.u(3), vm));
  putVm(hyp, vm);
}

/** Mirrors `handle___pkvm_host_test_clear_young_guest()` (v6.16): x1 handle, x2 gfn, x3 nr_pages, x4 mkold. */
function handleHostTestClearYoungGuest(hyp: Hyp, cpu: HypCpu): void {
  const vm = getNpVm(hyp, cpu.regs.u(1));
  if (vm === null) {
    cpu.regs.setSigned(1, Err.EINVAL);
    return;
  }
  const mkold = (cpu.regs.lo(4) & 0xff) !== 0; // DECLARE_REG(bool, …): the low byte
  cpu.regs.setSigned(1, hostTestClearYoungGuest(hyp, cpu.regs.u(2), cpu.regs.u(3), mkold, vm));
  putVm(hyp, vm);
}

/** Mirrors `handle___pkvm_host_mkyoung_guest()` (v6.16): x1 gfn. */
function handleHostMkyoungGuest(hyp: Hyp, cpu: HypCpu): void {
  const vcpu = loadedNpVcpu(cpu);
  cpu.regs.setSigned(1, vcpu === null ? Err.EINVAL : hostMkyoungGuest(hyp, cpu.regs.u(1), vcpu));
}

/** Mirrors `handle___pkvm_tlb_flush_vmid()` (v6.16): x1 handle; unknown or protected VMs are ignored. */
function handlePkvmTlbFlushVmid(hyp: Hyp, cpu: HypCpu): void {
  const vm = getNpVm(hyp, cpu.regs.u(1));
  if (vm === null) return;
  kvmTlbFlushVmid(hyp.tlb, vm.vmid);
  putVm(hyp, vm);
}

/** Mirrors `handle___kvm_tlb_flush_vmid_ipa_nsh()`: x1 host s2 mmu, x2 IPA, x3 level. */
function handleTlbFlushVmidIpaNsh(hyp: Hyp, cpu: HypCpu): void {
  const vmid = hostMmuVmid(hyp, cpu.regs.u(1));
  const ipa = cpu.regs.u(2);
  const level = cpu.regs.u(3);
  if (vmid < 0 || !Number.isSafeInteger(ipa)) return;
  kvmTlbFlushVmidIpaNsh(hyp.tlb, vmid, ipa, level >= 0 && level <= 3 ? level : 0x7fff_ffff);
}

/** Mirrors `handle___kvm_tlb_flush_vmid_range()`: x1 host s2 mmu, x2 start IPA, x3 pages. */
function handleTlbFlushVmidRange(hyp: Hyp, cpu: HypCpu): void {
  const vmid = hostMmuVmid(hyp, cpu.regs.u(1));
  const start = cpu.regs.u(2);
  const pages = cpu.regs.u(3);
  if (vmid < 0 || !Number.isSafeInteger(start) || !Number.isSafeInteger(pages)) return;
  kvmTlbFlushVmidRange(hyp.tlb, vmid, start, pages * PAGE_SIZE);
}

/** The `upstream-6.16` handler table, by kernel name (hyp-main.c `host_hcall[]`, v6.16). */
export const HANDLERS_UPSTREAM_6_16 = {
  __kvm_hyp_init: null,
  __pkvm_init: handlePkvmInit,
  __pkvm_create_private_mapping: handleCreatePrivateMapping,
  __pkvm_cpu_set_vector: returnsZero,
  __kvm_enable_ssbs: noEffect,
  __vgic_v3_init_lrs: noEffect,
  __vgic_v3_get_gic_config: returnsZero,
  __pkvm_prot_finalize: handleProtFinalize,
  __pkvm_host_share_hyp: handleHostShareHyp,
  __pkvm_host_unshare_hyp: handleHostUnshareHyp,
  __pkvm_host_share_guest: handleHostShareGuestNp,
  __pkvm_host_unshare_guest: handleHostUnshareGuestNp,
  __pkvm_host_relax_perms_guest: handleHostRelaxPermsGuest,
  __pkvm_host_wrprotect_guest: handleHostWrprotectGuest,
  __pkvm_host_test_clear_young_guest: handleHostTestClearYoungGuest,
  __pkvm_host_mkyoung_guest: handleHostMkyoungGuest,
  __kvm_adjust_pc: noEffect,
  __kvm_vcpu_run: handleVcpuRun,
  __kvm_flush_vm_context: handleFlushVmContext,
  __kvm_tlb_flush_vmid_ipa: handleTlbFlushVmidIpa,
  __kvm_tlb_flush_vmid_ipa_nsh: handleTlbFlushVmidIpaNsh,
  __kvm_tlb_flush_vmid: handleTlbFlushVmid,
  __kvm_tlb_flush_vmid_range: handleTlbFlushVmidRange,
  __kvm_flush_cpu_context: handleFlushCpuContext,
  __kvm_timer_set_cntvoff: noEffect,
  __vgic_v3_save_vmcr_aprs: noEffect,
  __vgic_v3_restore_vmcr_aprs: noEffect,
  __pkvm_init_vm: handleInitVm,
  __pkvm_init_vcpu: handleInitVcpu,
  __pkvm_teardown_vm: handleTeardownVm,
  __pkvm_vcpu_load: handleVcpuLoad,
  __pkvm_vcpu_put: handleVcpuPut,
  __pkvm_tlb_flush_vmid: handlePkvmTlbFlushVmid,
} satisfies Record<HcallUp616, HcallHandler | null>;

/** The dense handler array of a profile, by function number (built once per `Hyp`). */
export function buildHcallTable(profile: HcallProfile): (HcallHandler | null)[] {
  const byName = (profile.name === AbiProfileName.UPSTREAM_6_16 ? HANDLERS_UPSTREAM_6_16 : HANDLERS_PKVM_2022) as Readonly<
    Record<string, HcallHandler | null>
  >;
  const names = profile.names;
  const out: (HcallHandler | null)[] = [];
  for (let n = 0; n < names.length; n++) {
    const name = names[n]!; // JUSTIFY: n < length.
    assert(Object.prototype.hasOwnProperty.call(byName, name), `no handler for ${name}`);
    out.push(byName[name]!); // JUSTIFY: presence asserted.
  }
  return out;
}

/**
 * Dispatches the host hypercall in x0 of `cpu`'s host context.
 * Mirrors `handle_host_hcall()` (arch/arm64/kvm/hyp/nvhe/hyp-main.c).
 */
export function handleHostHcall(hyp: Hyp, cpu: HypCpu): void {
  const regs = cpu.regs;
  hyp.hcalls++;
  // id = x0 & ~ARM_SMCCC_CALL_HINTS; id -= KVM_HOST_SMCCC_ID(0), as a 64-bit unsigned subtraction.
  const id = ((regs.lo(0) & ~SMCCC_CALL_HINTS) >>> 0) - KVM_HOST_SMCCC_BASE;
  const table = hyp.hcallTable;
  const min = hyp.protectedModeInitialized ? hyp.profile.minPostInit : 0;
  const handler = regs.hi(0) === 0 && id >= min && id < table.length ? table[id]! : null; // JUSTIFY: bounds checked.
  if (handler === null) {
    regs.setSigned(0, SmcccRet.NOT_SUPPORTED);
    return;
  }
  regs.setSigned(0, SmcccRet.SUCCESS);
  handler(hyp, cpu);
}
