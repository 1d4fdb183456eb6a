/**
 * SMCCC function identifiers, return codes and the pKVM hypercall ABI (reference pkvm.md §3, §2.4, §4, §5.1).
 *
 * A host hypercall is `HVC #0` with the SMCCC function id in x0 and arguments in x1…x7; EL2 answers with an SMCCC
 * status in x0 and the handler's result in x1. The function id is formed as in include/linux/arm-smccc.h:
 *
 *   31      30        29:24   23:17  16          15:0
 *   [fast] [SMC64]   [owner]  [0]   [hint]      [function number]
 *     1      1       6 = VENDOR_HYP              index in the profile's enumeration
 *
 * so `KVM_HOST_SMCCC_ID(n)` = 0xC600_0000 + n (arch/arm64/include/asm/kvm_asm.h). The enumeration differs between
 * kernels; each is a {@link HcallProfile} (data, not code). The default profile `pkvm-2022` is the CORE numbering of
 * the 2022 series after patch 78/89 moved the VMID TLB calls before `__pkvm_prot_finalize` (pkvm.md §3.4 (a'));
 * `upstream-6.16` is the enumeration of Linux v6.16 (np-guest `__pkvm_host_*_guest` family).
 *
 * This module also fixes the layout of the host structures EL2 reads (the host `struct kvm` and `struct kvm_vcpu`
 * pages the host shares with EL2, and `struct kvm_hyp_memcache`), because both sides of the ABI (the host in `host/`
 * and EL2 in `el2/`) must agree on them and may only meet in `arch/`. The kernel's structures are far larger; only
 * the fields pKVM's memory management reads or writes are modelled, at fixed byte offsets. Pointers the host passes
 * in registers are PAs: the model's host kernel linear map has offset 0, so `kern_hyp_va(ptr)` is the hyp linear
 * address of that PA.
 *
 * `struct kvm_hyp_memcache` (arch/arm64/include/asm/kvm_host.h, pkvm.md §5.1) is a pair {head PA, nr_pages} stored
 * in the host struct that owns it; its free pages are linked through their first 64-bit word (the PA of the next
 * page).
 */

/** bit[31]: fast call (`ARM_SMCCC_FAST_CALL`). */
export const SMCCC_FAST_CALL = 0x8000_0000;
/** bit[30]: SMC64/HVC64 calling convention (`ARM_SMCCC_SMC_64`). */
export const SMCCC_SMC_64 = 0x4000_0000;
/** bits[29:24]: owner shift (`ARM_SMCCC_OWNER_SHIFT`). */
export const SMCCC_OWNER_SHIFT = 24;
/** bits[29:24] mask before shifting (`ARM_SMCCC_OWNER_MASK`). */
export const SMCCC_OWNER_MASK = 0x3f;
/** Owner 6: vendor-specific hypervisor service (`ARM_SMCCC_OWNER_VENDOR_HYP`). */
export const SMCCC_OWNER_VENDOR_HYP = 6;
/** bits[15:0]: function number (`ARM_SMCCC_FUNC_MASK`). */
export const SMCCC_FUNC_MASK = 0xffff;
/** bit[16]: `ARM_SMCCC_CALL_HINTS` (SVE "no live state" hint); `handle_host_hcall` masks it off before decoding. */
export const SMCCC_CALL_HINTS = 0x1_0000;

/** SMCCC return codes placed in x0 (include/linux/arm-smccc.h), written sign-extended to 64 bits. */
export const SmcccRet = {
  SUCCESS: 0,
  NOT_SUPPORTED: -1,
  NOT_REQUIRED: -2,
  INVALID_PARAMETER: -3,
} as const;
/** An SMCCC status. */
export type SmcccRet = (typeof SmcccRet)[keyof typeof SmcccRet];

/**
 * `ARM_SMCCC_CALL_VAL(type, calling_convention, owner, func_num)` as an unsigned 32-bit number.
 * @param fast true for a fast call (bit 31).
 * @param smc64 true for the 64-bit convention (bit 30).
 * @param owner service owner, 0…63 (bits 29:24).
 * @param fn function number, 0…0xFFFF (bits 15:0).
 */
export function smcccCallVal(fast: boolean, smc64: boolean, owner: number, fn: number): number {
  return (
    ((fast ? SMCCC_FAST_CALL : 0) +
      (smc64 ? SMCCC_SMC_64 : 0) +
      (owner & SMCCC_OWNER_MASK) * 2 ** SMCCC_OWNER_SHIFT +
      (fn & SMCCC_FUNC_MASK)) >>>
    0
  );
}

/** Base of the host hypercall space: `KVM_HOST_SMCCC_ID(0)` = fast, SMC64, vendor-hyp, function 0 = 0xC600_0000. */
export const KVM_HOST_SMCCC_BASE = 0xc600_0000;

/** `KVM_HOST_SMCCC_ID(n)` (arch/arm64/include/asm/kvm_asm.h): the x0 value of host hypercall number `n`. */
export function kvmHostSmcccId(n: number): number {
  return smcccCallVal(true, true, SMCCC_OWNER_VENDOR_HYP, n);
}

/**
 * Guest-facing KVM vendor-hyp services a protected guest calls (include/linux/arm-smccc.h,
 * `ARM_SMCCC_KVM_FUNC_*`; pkvm.md §2.4). They arrive through the guest exit path, never through the host's.
 */
export const GuestHcall = {
  /** `ARM_SMCCC_VENDOR_HYP_KVM_HYP_MEMINFO_FUNC_ID`: returns the stage-2 granule (PAGE_SIZE) in x0. */
  HYP_MEMINFO: 0xc600_0002,
  /** `ARM_SMCCC_VENDOR_HYP_KVM_MEM_SHARE_FUNC_ID`: x1 = IPA of a guest-owned page to share with the host. */
  MEM_SHARE: 0xc600_0003,
  /** `ARM_SMCCC_VENDOR_HYP_KVM_MEM_UNSHARE_FUNC_ID`: x1 = IPA of a page previously shared with the host. */
  MEM_UNSHARE: 0xc600_0004,
} as const;
/** A guest hypercall id. */
export type GuestHcall = (typeof GuestHcall)[keyof typeof GuestHcall];

/**
 * The host hypercall enumeration of the 2022 series, CORE numbering (V1 after 78/89; pkvm.md §3.4 (a')): function
 * number of each hypercall, by its kernel name. `__pkvm_prot_finalize` (12) is the post-initialisation minimum.
 */
export const HCALLS_PKVM_2022 = {
  __kvm_hyp_init: 0,
  __kvm_get_mdcr_el2: 1,
  __pkvm_init: 2,
  __pkvm_create_private_mapping: 3,
  __pkvm_cpu_set_vector: 4,
  __kvm_enable_ssbs: 5,
  __vgic_v3_init_lrs: 6,
  __vgic_v3_get_gic_config: 7,
  __kvm_flush_vm_context: 8,
  __kvm_tlb_flush_vmid_ipa: 9,
  __kvm_tlb_flush_vmid: 10,
  __kvm_flush_cpu_context: 11,
  __pkvm_prot_finalize: 12,
  __pkvm_host_share_hyp: 13,
  __pkvm_host_unshare_hyp: 14,
  __pkvm_host_reclaim_page: 15,
  __pkvm_host_map_guest: 16,
  __kvm_adjust_pc: 17,
  __kvm_vcpu_run: 18,
  __kvm_timer_set_cntvoff: 19,
  __vgic_v3_save_vmcr_aprs: 20,
  __vgic_v3_restore_vmcr_aprs: 21,
  __pkvm_init_vm: 22,
  __pkvm_init_vcpu: 23,
  __pkvm_teardown_vm: 24,
  __pkvm_vcpu_load: 25,
  __pkvm_vcpu_put: 26,
  __pkvm_vcpu_sync_state: 27,
} as const;
/** The kernel name of a hypercall of the `pkvm-2022` profile. */
export type Hcall2022 = keyof typeof HCALLS_PKVM_2022;

/**
 * The host hypercall enumeration of upstream Linux v6.16 (arch/arm64/include/asm/kvm_asm.h of the 6.14–6.16
 * generation: `__kvm_get_mdcr_el2` gone, the np-guest `__pkvm_host_*_guest` family after the hyp calls, the VMID TLB
 * calls back after finalisation, no `__pkvm_reserve_vm` yet; pkvm.md §3.4 (b)). `__pkvm_prot_finalize` (7) is the
 * post-initialisation minimum.
 */
export const HCALLS_UPSTREAM_6_16 = {
  __kvm_hyp_init: 0,
  __pkvm_init: 1,
  __pkvm_create_private_mapping: 2,
  __pkvm_cpu_set_vector: 3,
  __kvm_enable_ssbs: 4,
  __vgic_v3_init_lrs: 5,
  __vgic_v3_get_gic_config: 6,
  __pkvm_prot_finalize: 7,
  __pkvm_host_share_hyp: 8,
  __pkvm_host_unshare_hyp: 9,
  __pkvm_host_share_guest: 10,
  __pkvm_host_unshare_guest: 11,
  __pkvm_host_relax_perms_guest: 12,
  __pkvm_host_wrprotect_guest: 13,
  __pkvm_host_test_clear_young_guest: 14,
  __pkvm_host_mkyoung_guest: 15,
  __kvm_adjust_pc: 16,
  __kvm_vcpu_run: 17,
  __kvm_flush_vm_context: 18,
  __kvm_tlb_flush_vmid_ipa: 19,
  __kvm_tlb_flush_vmid_ipa_nsh: 20,
  __kvm_tlb_flush_vmid: 21,
  __kvm_tlb_flush_vmid_range: 22,
  __kvm_flush_cpu_context: 23,
  __kvm_timer_set_cntvoff: 24,
  __vgic_v3_save_vmcr_aprs: 25,
  __vgic_v3_restore_vmcr_aprs: 26,
  __pkvm_init_vm: 27,
  __pkvm_init_vcpu: 28,
  __pkvm_teardown_vm: 29,
  __pkvm_vcpu_load: 30,
  __pkvm_vcpu_put: 31,
  __pkvm_tlb_flush_vmid: 32,
} as const;
/** The kernel name of a hypercall of the `upstream-6.16` profile. */
export type HcallUp616 = keyof typeof HCALLS_UPSTREAM_6_16;

/** The ABI profiles s2emu knows. */
export const AbiProfileName = { PKVM_2022: 'pkvm-2022', UPSTREAM_6_16: 'upstream-6.16' } as const;
/** The name of an ABI profile. */
export type AbiProfileName = (typeof AbiProfileName)[keyof typeof AbiProfileName];

/** One kernel's host hypercall enumeration, as data. */
export interface HcallProfile<N extends string = string> {
  /** Profile name, e.g. `pkvm-2022`. */
  readonly name: AbiProfileName;
  /** Function number of each hypercall by kernel name. */
  readonly ids: { readonly [K in N]: number };
  /** Kernel name by function number (`names[n]`); dense, `names.length` = `__KVM_HOST_SMCCC_FUNC_MAX`. */
  readonly names: readonly N[];
  /** Index below which calls are refused once protected mode is initialised (`__pkvm_prot_finalize`). */
  readonly minPostInit: number;
}

function namesOf<N extends string>(ids: { readonly [K in N]: number }): N[] {
  const out: N[] = [];
  for (const k of Object.keys(ids) as N[]) out[ids[k]] = k;
  return out;
}

/** The default profile: the 2022 series / CORE numbering (pkvm.md §3.4 (a'), DESIGN.md §5). */
export const PROFILE_PKVM_2022: HcallProfile<Hcall2022> = {
  name: AbiProfileName.PKVM_2022,
  ids: HCALLS_PKVM_2022,
  names: namesOf<Hcall2022>(HCALLS_PKVM_2022),
  minPostInit: HCALLS_PKVM_2022.__pkvm_prot_finalize,
};

/**
 * The upstream v6.16 profile: np-guest memory is shared page by page (or 2 MiB block) with
 * `__pkvm_host_share_guest` and taken back with `__pkvm_host_unshare_guest` (pkvm.md §2.6, §2.7, §3.5).
 */
export const PROFILE_UPSTREAM_6_16: HcallProfile<HcallUp616> = {
  name: AbiProfileName.UPSTREAM_6_16,
  ids: HCALLS_UPSTREAM_6_16,
  names: namesOf<HcallUp616>(HCALLS_UPSTREAM_6_16),
  minPostInit: HCALLS_UPSTREAM_6_16.__pkvm_prot_finalize,
};

/** Every known profile by name. */
export const PROFILES: { readonly [K in AbiProfileName]: HcallProfile } = {
  'pkvm-2022': PROFILE_PKVM_2022,
  'upstream-6.16': PROFILE_UPSTREAM_6_16,
};

/**
 * The x0 value for a hypercall of a profile, by kernel name (`KVM_HOST_SMCCC_FUNC(name)`), or null when the profile
 * has no such call.
 */
export function hcallFuncId(profile: HcallProfile, name: string): number | null {
  const ids = profile.ids as Readonly<Record<string, number>>;
  if (!Object.prototype.hasOwnProperty.call(ids, name)) return null;
  return kvmHostSmcccId(ids[name]!); // JUSTIFY: presence checked above.
}

/** The kernel name of host function number `n` in a profile, or null when it names none. */
export function hcallName(profile: HcallProfile, n: number): string | null {
  return Number.isInteger(n) && n >= 0 && n < profile.names.length ? (profile.names[n] ?? null) : null;
}

/**
 * Exit codes `__kvm_vcpu_run` returns in x1 (`ARM_EXCEPTION_*`, arch/arm64/include/asm/kvm_asm.h). A stage-2
 * abort or a guest HVC the host must see is a TRAP; the fault syndrome is in the host vCPU struct
 * ({@link HOST_VCPU}). IRQ is also what the model reports when the guest has nothing more to run (the host regains
 * control as after an interrupt).
 */
export const ArmException = {
  IRQ: 0,
  EL1_SERROR: 1,
  TRAP: 2,
  IL: 3,
} as const;
/** An `ARM_EXCEPTION_*` exit code. */
export type ArmException = (typeof ArmException)[keyof typeof ArmException];

/**
 * Byte offsets of the fields of the host's `struct kvm` that EL2 reads (64-bit little-endian words). The host
 * shares the page(s) holding it with EL2 (`kvm_share_hyp`) before `__pkvm_init_vm`, which pins them.
 *
 *   offset  field (kernel name)
 *   0x00    created_vcpus
 *   0x08    arch.pkvm.enabled (non-zero: a protected VM)
 *   0x10    arch.pkvm.teardown_mc.head      (PA of the first page, 0 when empty)
 *   0x18    arch.pkvm.teardown_mc.nr_pages
 */
export const HOST_KVM = {
  CREATED_VCPUS: 0x00,
  PROTECTED: 0x08,
  TEARDOWN_MC_HEAD: 0x10,
  TEARDOWN_MC_NR: 0x18,
  /** Bytes EL2 pins for the struct (`sizeof(struct kvm)` in the model). */
  SIZE: 0x20,
} as const;

/**
 * Byte offsets of the fields of the host's `struct kvm_vcpu` that EL2 reads or writes (64-bit words). Shared with
 * and pinned by EL2 at `__pkvm_init_vcpu`.
 *
 *   offset  field (kernel name)
 *   0x00    vcpu_idx
 *   0x08    arch.pkvm_memcache.head      (host → EL2 page supply, §5.1)
 *   0x10    arch.pkvm_memcache.nr_pages
 *   0x18    arch.fault.esr_el2           (written by EL2 on a stage-2 abort or HVC exit)
 *   0x20    arch.fault.far_el2
 *   0x28    arch.fault.hpfar_el2
 */
export const HOST_VCPU = {
  VCPU_IDX: 0x00,
  MC_HEAD: 0x08,
  MC_NR: 0x10,
  FAULT_ESR: 0x18,
  FAULT_FAR: 0x20,
  FAULT_HPFAR: 0x28,
  /** Bytes EL2 pins for the struct. */
  SIZE: 0x30,
} as const;

/**
 * Sizes of the EL2-side structures the host donates at `__pkvm_init_vm` / `__pkvm_init_vcpu` (pkvm.md §4.2, §4.4):
 * the host allocates them with these sizes, EL2 computes the same from the vCPU count it reads itself.
 */
export const HYP_STRUCT = {
  /** `sizeof(struct pkvm_hyp_vm)` without the vCPU pointer array, in the model. */
  VM_BASE: 0x100,
  /** Bytes per vCPU pointer appended to the VM struct. */
  VM_PER_VCPU: 8,
  /** `sizeof(struct pkvm_hyp_vcpu)` in the model. */
  VCPU: 0x200,
} as const;

/** `PAGE_ALIGN(size)` for 4 KiB pages, in bytes. */
function pageAlign(size: number): number {
  return Math.ceil(size / 4096) * 4096;
}

/** Bytes of the hyp VM struct area for `nrVcpus` vCPUs, page aligned (`pkvm_get_hyp_vm_size()`, arch/arm64/kvm/pkvm.c). */
export function hypVmSize(nrVcpus: number): number {
  return pageAlign(HYP_STRUCT.VM_BASE + HYP_STRUCT.VM_PER_VCPU * nrVcpus);
}

/** Bytes of one hyp vCPU struct area, page aligned (`PAGE_ALIGN(sizeof(struct pkvm_hyp_vcpu))`). */
export function hypVcpuSize(): number {
  return pageAlign(HYP_STRUCT.VCPU);
}

/**
 * Why a guest vCPU stopped running and control returned to EL2: the return value of `GuestRunner.run`
 * (`src/el2/guest-runner.ts`). It lives in `arch/` so that the guest layer, which may not import `el2/`, can
 * return the same values. Not a kernel enumeration: the kernel learns the reason from ESR_EL2 in its exit path
 * (`handle_exit`); the model says it directly.
 */
export const GuestExit = {
  /** The vCPU ran everything it had queued (the host regains control as after an interrupt). */
  COMPLETED: 0,
  /** A stage-2 abort; `exc` holds ESR/FAR/HPFAR_EL2 filled by `mmu/abort.ts`. */
  S2_ABORT: 1,
  /** The guest executed HVC; x0…x3 of its register file hold the SMCCC call, ELR points after the HVC. */
  HVC: 2,
} as const;
/** Why a guest vCPU stopped running. */
export type GuestExit = (typeof GuestExit)[keyof typeof GuestExit];

/**
 * Byte offsets of the host `struct kvm_s2_mmu` fields EL2 reads for the VMID TLB-maintenance hypercalls the host may
 * issue before `__pkvm_prot_finalize` (`__kvm_tlb_flush_vmid_ipa` etc. take a pointer to it).
 *
 *   offset  field (kernel name)
 *   0x00    vmid.id
 */
export const HOST_S2_MMU = {
  VMID: 0x00,
} as const;
