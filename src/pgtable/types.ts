/**
 * Types and constants of the software page-table library EL2 runs: a mirror of `struct kvm_pgtable`,
 * `enum kvm_pgtable_prot`, `enum kvm_pgtable_walk_flags` and `enum kvm_pgtable_stage2_flags`
 * (arch/arm64/include/asm/kvm_pgtable.h) and of the descriptor fields `arch/arm64/kvm/hyp/pgtable.c` uses.
 *
 * Pinned kernel: the upstream library of Linux v6.10 (the generation with `KVM_PGTABLE_PROT_NORMAL_NC`,
 * `KVM_PGTABLE_WALK_HANDLE_FAULT`, `stage2_try_break_pte()` with the `KVM_INVALID_PTE_LOCKED` marker and a
 * single XN bit 54), built for the nVHE hypervisor (`__KVM_NVHE_HYPERVISOR__`: no RCU, shared walks refused).
 * Where the 2022 pKVM series (V1, based on v5.18-rc2) behaves differently the TSDoc says so (pkvm.md §7.3, §7.4).
 *
 * Prot values are two 32-bit halves like descriptors: R/W/X/DEVICE/NORMAL_NC live in `protLo`, SW0..SW3 (bits
 * 55..58, copied verbatim into descriptors) in `protHi`.
 */

import type { Granule } from '../arch/granule.js';
import type { PhysMem } from '../mem/phys-mem.js';
import type { PgtMmOps } from './mm-ops.js';
import type { HypTlbMaintenance, TlbMaintenance } from './tlb-ops.js';

/** `enum kvm_pgtable_prot`, low half (bits 31:0): permission and memory-type requests. */
export const KvmPgtableProt = {
  /** `KVM_PGTABLE_PROT_X` = BIT(0). */
  X: 0x1,
  /** `KVM_PGTABLE_PROT_W` = BIT(1). */
  W: 0x2,
  /** `KVM_PGTABLE_PROT_R` = BIT(2). */
  R: 0x4,
  /** `KVM_PGTABLE_PROT_DEVICE` = BIT(3). */
  DEVICE: 0x8,
  /** `KVM_PGTABLE_PROT_NORMAL_NC` = BIT(4). */
  NORMAL_NC: 0x10,
} as const;
/** One low-half prot flag. */
export type KvmPgtableProt = (typeof KvmPgtableProt)[keyof typeof KvmPgtableProt];

/** `KVM_PGTABLE_PROT_SW0..SW3` = BIT(55..58), as masks on the high half of a prot (same positions as in a PTE). */
export const KvmPgtableProtHi = {
  /** `KVM_PGTABLE_PROT_SW0` = BIT(55). */
  SW0: 0x80_0000, // 1 << (55 - 32)
  /** `KVM_PGTABLE_PROT_SW1` = BIT(56). */
  SW1: 0x100_0000, // 1 << (56 - 32)
  /** `KVM_PGTABLE_PROT_SW2` = BIT(57). */
  SW2: 0x200_0000, // 1 << (57 - 32)
  /** `KVM_PGTABLE_PROT_SW3` = BIT(58). */
  SW3: 0x400_0000, // 1 << (58 - 32)
} as const;
/** One high-half prot flag. */
export type KvmPgtableProtHi = (typeof KvmPgtableProtHi)[keyof typeof KvmPgtableProtHi];

/** `KVM_PGTABLE_PROT_RW`. */
export const KVM_PGTABLE_PROT_RW = KvmPgtableProt.R | KvmPgtableProt.W;
/** `KVM_PGTABLE_PROT_RWX`. */
export const KVM_PGTABLE_PROT_RWX = KVM_PGTABLE_PROT_RW | KvmPgtableProt.X;
/** `PKVM_HOST_MEM_PROT` (kvm_pgtable.h): what the host idmap uses for memory. */
export const PKVM_HOST_MEM_PROT = KVM_PGTABLE_PROT_RWX;
/** `PKVM_HOST_MMIO_PROT` (kvm_pgtable.h): what the host idmap uses for MMIO. */
export const PKVM_HOST_MMIO_PROT = KVM_PGTABLE_PROT_RW;
/** `PAGE_HYP` (kvm_pgtable.h). */
export const PAGE_HYP = KVM_PGTABLE_PROT_RW;
/** `PAGE_HYP_EXEC` (kvm_pgtable.h). */
export const PAGE_HYP_EXEC = KvmPgtableProt.R | KvmPgtableProt.X;
/** `PAGE_HYP_RO` (kvm_pgtable.h). */
export const PAGE_HYP_RO = KvmPgtableProt.R;
/** `PAGE_HYP_DEVICE` (kvm_pgtable.h). */
export const PAGE_HYP_DEVICE = PAGE_HYP | KvmPgtableProt.DEVICE;
/** `KVM_PTE_LEAF_ATTR_HI_SW` = bits[58:55], on the high half: the prot bits copied verbatim. */
export const PROT_SW_HI = 0x780_0000; // 0xf << (55 - 32)

/** `enum kvm_pgtable_walk_flags` (kvm_pgtable.h). Literals so that the visit kinds are types (STYLE §10.3). */
export const WalkFlags = {
  /** `KVM_PGTABLE_WALK_LEAF`: visit leaf entries, including invalid ones. */
  LEAF: 0x1,
  /** `KVM_PGTABLE_WALK_TABLE_PRE`: visit table entries before their children. */
  TABLE_PRE: 0x2,
  /** `KVM_PGTABLE_WALK_TABLE_POST`: visit table entries after their children. */
  TABLE_POST: 0x4,
  /** `KVM_PGTABLE_WALK_SHARED`: the tables may be shared with other walkers (refused with -EPERM at EL2). */
  SHARED: 0x8,
  /** `KVM_PGTABLE_WALK_HANDLE_FAULT`: called from a fault handler; -EAGAIN from a visitor stops the walk. */
  HANDLE_FAULT: 0x10,
  /** `KVM_PGTABLE_WALK_SKIP_BBM_TLBI`: update entries without break-before-make's TLB invalidation. */
  SKIP_BBM_TLBI: 0x20,
  /** `KVM_PGTABLE_WALK_SKIP_CMO`: update entries without cache maintenance. */
  SKIP_CMO: 0x40,
} as const;
/** One walk flag. */
export type WalkFlags = (typeof WalkFlags)[keyof typeof WalkFlags];
/** The three visit kinds a visitor is called with. */
export type WalkVisit = typeof WalkFlags.LEAF | typeof WalkFlags.TABLE_PRE | typeof WalkFlags.TABLE_POST;

/** `enum kvm_pgtable_stage2_flags` (kvm_pgtable.h). */
export const Stage2Flags = {
  /** `KVM_PGTABLE_S2_NOFWB`: use the non-FWB MemAttr encodings even if the CPU has FEAT_S2FWB. */
  NOFWB: 0x1,
  /** `KVM_PGTABLE_S2_IDMAP`: identity map only (map requests must have IPA == PA). */
  IDMAP: 0x2,
} as const;
/** One stage-2 table flag. */
export type Stage2Flags = (typeof Stage2Flags)[keyof typeof Stage2Flags];

/**
 * `kvm_pgtable_force_pte_cb_t`: true when a mapping of [addr, end) with `prot` must use page granularity.
 * `protHi` carries the SW bits (pKVM's host idmap forces pages for anything carrying page state).
 */
export type ForcePteCb = (addr: number, end: number, protLo: number, protHi: number) => boolean;

/** Receives the library's `WARN_ON()`s (DESIGN.md §4: recorded, never thrown). */
export type WarnSink = (msg: string) => void;

/**
 * The stage-2 MMU context a table belongs to (the parts of `struct kvm_s2_mmu` the library touches): the VMID the
 * TLB maintenance targets, and the TLB reached through an injected interface (pgtable/ never imports mmu/).
 */
export interface KvmS2Mmu {
  /** VMID of this stage 2 (VTTBR_EL2.VMID). */
  readonly vmid: number;
  /** TLB maintenance for this VMID; the hardware model's `Tlb` implements it. */
  readonly tlb: TlbMaintenance;
  /**
   * The CPU implements FEAT_S2FWB (`cpus_have_final_cap(ARM64_HAS_STAGE2_FWB)`). Combined with the table's
   * `NOFWB` flag by `stage2HasFwb()`.
   */
  readonly hasFwb: boolean;
}

/**
 * `struct kvm_pgtable`: one page table (stage 2 or the hypervisor's stage 1).
 *
 * @remarks Mirrors `struct kvm_pgtable` (arch/arm64/include/asm/kvm_pgtable.h). `pgd` is a PA (EL2 runs the
 * tables through its linear map, so `phys_to_virt` is the identity here); -1 means "no pgd" (the kernel's NULL).
 * `mem` is the physical memory all table reads and descriptor writes go to.
 */
export interface KvmPgtable {
  /** Input address size in bits (`ia_bits`). */
  iaBits: number;
  /** Level the walk starts at (`start_level`). */
  startLevel: number;
  /** PA of the first (possibly concatenated) top-level table page, or -1. */
  pgd: number;
  /** Translation granule; the kernel's PAGE_SIZE. pKVM uses 4K. */
  granule: Granule;
  /** Memory-management callbacks (`mm_ops`). */
  readonly mmOps: PgtMmOps;
  /** Physical memory holding the tables. */
  readonly mem: PhysMem;
  /** Stage-2 MMU context (`mmu`); null for a stage-1 table. */
  mmu: KvmS2Mmu | null;
  /** Stage-2 flags (`flags`, a set of {@link Stage2Flags}). */
  flags: number;
  /** Block-vs-page policy (`force_pte_cb`), or null. */
  forcePteCb: ForcePteCb | null;
  /** EL2 stage-1 TLB maintenance for a hyp table (`kvm_pgtable_hyp_unmap`), or null. */
  hypTlb: HypTlbMaintenance | null;
  /** Where `WARN_ON()`s go. */
  readonly warn: WarnSink;
}

/** A preallocated out-object for a PTE and the level it sits at (`kvm_pgtable_get_leaf`'s `ptep`/`level`). */
export interface LeafOut {
  /** Bits[31:0] of the PTE. */
  lo: number;
  /** Bits[63:32] of the PTE. */
  hi: number;
  /** Level of the entry. */
  level: number;
}

/** Creates a {@link LeafOut}. Allocate once and reuse. */
export function newLeafOut(): LeafOut {
  return { lo: 0, hi: 0, level: 0 };
}

/** `KVM_PGTABLE_LAST_LEVEL`. */
export const KVM_PGTABLE_LAST_LEVEL = 3;
/** `KVM_PHYS_INVALID` as the library passes it around (a PA that is never valid). */
export const KVM_PHYS_INVALID = -1;

/** `KVM_INVALID_PTE_OWNER_MASK` = bits[9:2] of an invalid PTE: the owner id (pkvm.md §1.4, UP-5.15…6.x and V1). */
export const KVM_INVALID_PTE_OWNER_SHIFT = 2;
/** bits[9:2] mask. */
export const KVM_INVALID_PTE_OWNER_MASK_LO = 0xff << 2;
/**
 * `KVM_MAX_OWNER_ID`. The 2022 series raised it from 1 to the field maximum (255) in V1 39/89 so that
 * `PKVM_ID_GUEST` (2) can be written (pkvm.md §1.4); the CORE profile derives from V1, so 255 applies.
 */
export const KVM_MAX_OWNER_ID = 255;
/** `KVM_INVALID_PTE_LOCKED` = BIT(10): an invalid PTE in the middle of break-before-make. */
export const KVM_INVALID_PTE_LOCKED_LO = 1 << 10;
