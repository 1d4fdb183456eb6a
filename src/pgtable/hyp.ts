/**
 * The hypervisor's own stage-1 table (EL2 translation regime) in the page-table library: init, map, unmap,
 * destroy and the PTE→prot decode pKVM uses to read the hyp's page state from SW bits 55/56 (pkvm.md §1.3, §7.1).
 * Mirrors the `kvm_pgtable_hyp_*()` functions of arch/arm64/kvm/hyp/pgtable.c (Linux v6.10, nVHE: not hVHE, no
 * BTI guarded pages, no LPA2).
 *
 *   EL2 stage-1 leaf   54 XN | 58:55 SW | 10 AF | 9:8 SH = 3 (ISH) | 7:6 AP (RW = 1, RO = 3) | 4:2 AttrIndx
 *
 * AttrIndx values are the kernel's MAIR slots (arch/arm64/include/asm/memory.h): `MT_NORMAL` = 0,
 * `MT_DEVICE_nGnRE` = 4.
 */

import { Err, type Ret } from '../arch/errno.js';
import { granuleShift, type Granule } from '../arch/granule.js';
import { S2_AF_LO, S2_XN_HI } from '../arch/desc.js';
import { DESC_TYPE_LO, DESC_VALID_LO } from '../arch/desc.js';
import {
  alignDownPow2,
  kvmGranuleSize,
  kvmLevelSupportsBlockMapping,
  kvmPhysToPteHi,
  kvmPhysToPteLo,
  kvmPteTable,
  kvmPteToPhys,
  kvmPteValid,
  modPow2,
  pgtPageSize,
} from './pte.js';
import { kvmInitValidLeafPte, type Halves } from './stage2.js';
import { TLBI_TTL_UNKNOWN } from './tlb-ops.js';
import { KVM_PGTABLE_LAST_LEVEL, KvmPgtableProt, PROT_SW_HI, WalkFlags, type KvmPgtable } from './types.js';
import { kvmPgtableWalk, type VisitCtx, type Walker } from './walk.js';

/** `MT_NORMAL` MAIR index. */
export const MT_NORMAL = 0;
/** `MT_DEVICE_nGnRE` MAIR index. */
export const MT_DEVICE_nGnRE = 4;
/** `KVM_PTE_LEAF_ATTR_LO_S1_ATTRIDX` = bits[4:2]. */
export const KVM_PTE_LEAF_ATTR_LO_S1_ATTRIDX_SHIFT = 2;
/** `KVM_PTE_LEAF_ATTR_LO_S1_AP` = bits[7:6]. */
export const KVM_PTE_LEAF_ATTR_LO_S1_AP_SHIFT = 6;
/** `KVM_PTE_LEAF_ATTR_LO_S1_AP_RO` (nVHE). */
export const KVM_PTE_LEAF_ATTR_LO_S1_AP_RO = 3;
/** `KVM_PTE_LEAF_ATTR_LO_S1_AP_RW` (nVHE). */
export const KVM_PTE_LEAF_ATTR_LO_S1_AP_RW = 1;
/** `KVM_PTE_LEAF_ATTR_LO_S1_SH` = bits[9:8]. */
export const KVM_PTE_LEAF_ATTR_LO_S1_SH_SHIFT = 8;
/** `KVM_PTE_LEAF_ATTR_LO_S1_SH_IS`. */
export const KVM_PTE_LEAF_ATTR_LO_S1_SH_IS = 3;
/** `KVM_PTE_LEAF_ATTR_LO_S1_AF` = bit 10. */
export const KVM_PTE_LEAF_ATTR_LO_S1_AF = S2_AF_LO;
/** `KVM_PTE_LEAF_ATTR_HI_S1_XN` = bit 54, on the high half. */
export const KVM_PTE_LEAF_ATTR_HI_S1_XN = S2_XN_HI;

/**
 * Initialises a hyp stage-1 table for `vaBits` of VA: start level = 4 − ARM64_HW_PGTABLE_LEVELS(va_bits), one
 * zeroed pgd page from `zallocPage(null)`.
 * @param pgt an object from `newKvmPgtable`.
 * @param vaBits VA bits of the EL2 regime.
 * @param granule translation granule (pKVM: 4K).
 * @returns 0; -EINVAL for an impossible start level (LPA2's level −1 is not modelled); -ENOMEM.
 * @remarks Mirrors `kvm_pgtable_hyp_init()` (arch/arm64/kvm/hyp/pgtable.c).
 */
export function kvmPgtableHypInit(pgt: KvmPgtable, vaBits: number, granule: Granule = '4k'): Ret {
  const levels = Math.floor((vaBits - 4) / (granuleShift(granule) - 3));
  const startLevel = KVM_PGTABLE_LAST_LEVEL + 1 - levels;
  if (startLevel < 0 || startLevel > KVM_PGTABLE_LAST_LEVEL) return Err.EINVAL;
  if (granule === '64k' && startLevel < 1) return Err.EINVAL;
  pgt.granule = granule;
  const pgd = pgt.mmOps.zallocPage(null);
  if (pgd < 0) return Err.ENOMEM;
  pgt.pgd = pgd;
  pgt.iaBits = vaBits;
  pgt.startLevel = startLevel;
  pgt.mmu = null;
  pgt.forcePteCb = null;
  return 0;
}

/**
 * Composes EL2 stage-1 leaf attributes for `prot`.
 * @param out receives the attribute halves.
 * @returns 0; -EINVAL without R, or X together with W or DEVICE.
 * @remarks Mirrors `hyp_set_prot_attr()` (arch/arm64/kvm/hyp/pgtable.c).
 */
export function hypSetProtAttr(protLo: number, protHi: number, out: Halves): Ret {
  const device = (protLo & KvmPgtableProt.DEVICE) !== 0;
  const mtype = device ? MT_DEVICE_nGnRE : MT_NORMAL;
  let lo = mtype << KVM_PTE_LEAF_ATTR_LO_S1_ATTRIDX_SHIFT;
  let hi = 0;
  const ap = (protLo & KvmPgtableProt.W) !== 0 ? KVM_PTE_LEAF_ATTR_LO_S1_AP_RW : KVM_PTE_LEAF_ATTR_LO_S1_AP_RO;
  if ((protLo & KvmPgtableProt.R) === 0) return Err.EINVAL;
  if ((protLo & KvmPgtableProt.X) !== 0) {
    if ((protLo & KvmPgtableProt.W) !== 0) return Err.EINVAL;
    if (device) return Err.EINVAL;
  } else {
    hi |= KVM_PTE_LEAF_ATTR_HI_S1_XN;
  }
  lo |= ap << KVM_PTE_LEAF_ATTR_LO_S1_AP_SHIFT;
  lo |= KVM_PTE_LEAF_ATTR_LO_S1_SH_IS << KVM_PTE_LEAF_ATTR_LO_S1_SH_SHIFT;
  lo |= KVM_PTE_LEAF_ATTR_LO_S1_AF;
  hi |= protHi & PROT_SW_HI;
  out.lo = lo >>> 0;
  out.hi = hi >>> 0;
  return 0;
}

/**
 * The prot an EL2 stage-1 PTE grants: SW bits (also for invalid PTEs), X when XN is clear, R for AP RO, R|W for
 * AP RW.
 * @param out receives the prot halves.
 * @remarks Mirrors `kvm_pgtable_hyp_pte_prot()` (arch/arm64/kvm/hyp/pgtable.c).
 */
export function kvmPgtableHypPteProt(lo: number, hi: number, out: Halves): void {
  out.hi = (hi & PROT_SW_HI) >>> 0;
  out.lo = 0;
  if (!kvmPteValid(lo)) return;
  if ((hi & KVM_PTE_LEAF_ATTR_HI_S1_XN) === 0) out.lo |= KvmPgtableProt.X;
  const ap = (lo >>> KVM_PTE_LEAF_ATTR_LO_S1_AP_SHIFT) & 3;
  if (ap === KVM_PTE_LEAF_ATTR_LO_S1_AP_RO) out.lo |= KvmPgtableProt.R;
  else if (ap === KVM_PTE_LEAF_ATTR_LO_S1_AP_RW) out.lo |= KvmPgtableProt.R | KvmPgtableProt.W;
}

/** `struct hyp_map_data`. */
interface HypMapData {
  readonly pgt: KvmPgtable;
  readonly phys: number;
  readonly attrLo: number;
  readonly attrHi: number;
  readonly nu: Halves;
}

/** `kvm_block_mapping_supported()` for the hyp walker. */
function hypBlockMappingSupported(ctx: VisitCtx<HypMapData>, phys: number): boolean {
  const granule = kvmGranuleSize(ctx.granule, ctx.level);
  if (!kvmLevelSupportsBlockMapping(ctx.granule, ctx.level)) return false;
  if (granule > ctx.end - ctx.addr) return false;
  if (modPow2(phys, granule) !== 0) return false;
  return modPow2(ctx.addr, granule) === 0;
}

/**
 * `hyp_map_walker_try_leaf()`: installs the leaf if a leaf fits here. An existing different valid mapping is a
 * WARN (only SW-bit changes are allowed in place).
 */
function hypMapWalkerTryLeaf(ctx: VisitCtx<HypMapData>): boolean {
  const data = ctx.arg;
  const phys = data.phys + (ctx.addr - ctx.start);
  if (!hypBlockMappingSupported(ctx, phys)) return false;
  kvmInitValidLeafPte(ctx.granule, phys, data.attrLo, data.attrHi, ctx.level, data.nu);
  const newLo = data.nu.lo;
  const newHi = data.nu.hi;
  if (ctx.oldLo === newLo && ctx.oldHi === newHi) return true;
  if (!kvmPteValid(ctx.oldLo)) {
    ctx.mmOps.getPage(ctx.ptep);
  } else if ((ctx.oldLo ^ newLo) !== 0 || ((ctx.oldHi ^ newHi) & ~PROT_SW_HI) !== 0) {
    data.pgt.warn('hyp_map_walker_try_leaf: remapping a valid hyp mapping');
    return false;
  }
  ctx.mem.writeDesc(ctx.ptep, newLo, newHi);
  return true;
}

/** `hyp_map_walker()`: a leaf, or a new table to descend into. */
function hypMapWalker(ctx: VisitCtx<HypMapData>): number {
  if (hypMapWalkerTryLeaf(ctx)) return 0;
  if (ctx.level === KVM_PGTABLE_LAST_LEVEL) {
    ctx.arg.pgt.warn('hyp_map_walker: no leaf possible at the last level');
    return Err.EINVAL;
  }
  const childPa = ctx.mmOps.zallocPage(null);
  if (childPa < 0) return Err.ENOMEM;
  const lo = (kvmPhysToPteLo(childPa, ctx.granule) | DESC_TYPE_LO | DESC_VALID_LO) >>> 0;
  ctx.mmOps.getPage(ctx.ptep);
  ctx.mem.writeDesc(ctx.ptep, lo, kvmPhysToPteHi(childPa));
  return 0;
}

const hypAttr: Halves = { lo: 0, hi: 0 };

/**
 * Maps [addr, addr + size) of EL2 VA to [phys, …) with `prot`, blocks where aligned. Remapping a VA that is
 * already mapped differently is refused with a WARN and -EINVAL.
 * @returns 0; -EINVAL for an impossible prot or a conflicting mapping; -ENOMEM; -ERANGE past va_bits.
 * @remarks Mirrors `kvm_pgtable_hyp_map()` (arch/arm64/kvm/hyp/pgtable.c); DSB ISHST and ISB follow the walk.
 */
export function kvmPgtableHypMap(
  pgt: KvmPgtable,
  addr: number,
  size: number,
  phys: number,
  protLo: number,
  protHi: number,
): number {
  const r = hypSetProtAttr(protLo, protHi, hypAttr);
  if (r !== 0) return r;
  const data: HypMapData = {
    pgt,
    phys: alignDownPow2(phys, pgtPageSize(pgt.granule)),
    attrLo: hypAttr.lo,
    attrHi: hypAttr.hi,
    nu: { lo: 0, hi: 0 },
  };
  const walker: Walker<HypMapData> = { cb: hypMapWalker, arg: data, flags: WalkFlags.LEAF };
  const ret = kvmPgtableWalk(pgt, addr, size, walker);
  const tlb = pgt.hypTlb;
  if (tlb !== null) {
    tlb.dsb();
    tlb.isb();
  }
  return ret;
}

/** Bytes unmapped so far by a hyp unmap walk. */
interface HypUnmapData {
  readonly pgt: KvmPgtable;
  unmapped: number;
}

/** `hyp_unmap_walker()`. */
function hypUnmapWalker(ctx: VisitCtx<HypUnmapData>): number {
  const data = ctx.arg;
  const tlb = data.pgt.hypTlb;
  const granule = kvmGranuleSize(ctx.granule, ctx.level);
  const oldLo = ctx.oldLo;
  let childPa = -1;
  if (!kvmPteValid(oldLo)) return Err.EINVAL;
  if (kvmPteTable(oldLo, ctx.level)) {
    childPa = kvmPteToPhys(oldLo, ctx.oldHi, ctx.granule);
    if (ctx.mmOps.pageCount(childPa) !== 1) return 0;
    ctx.mem.writeDesc(ctx.ptep, 0, 0);
    if (tlb !== null) {
      tlb.dsb();
      tlb.vae2is(ctx.addr, TLBI_TTL_UNKNOWN);
    }
  } else {
    if (ctx.end - ctx.addr < granule) return Err.EINVAL;
    ctx.mem.writeDesc(ctx.ptep, 0, 0);
    if (tlb !== null) {
      tlb.dsb();
      tlb.vale2is(ctx.addr, ctx.level);
    }
    data.unmapped += granule;
  }
  if (tlb !== null) {
    tlb.dsb();
    tlb.isb();
  }
  ctx.mmOps.putPage(ctx.ptep);
  if (childPa >= 0) ctx.mmOps.putPage(childPa);
  return 0;
}

/**
 * Unmaps [addr, addr + size) of EL2 VA, with TLBI VALE2IS per leaf and VAE2IS per freed table; stops at the first
 * invalid entry or at a block reaching outside the range.
 * @returns the number of bytes unmapped (possibly 0).
 * @remarks Mirrors `kvm_pgtable_hyp_unmap()` (arch/arm64/kvm/hyp/pgtable.c).
 */
export function kvmPgtableHypUnmap(pgt: KvmPgtable, addr: number, size: number): number {
  const data: HypUnmapData = { pgt, unmapped: 0 };
  const walker: Walker<HypUnmapData> = {
    cb: hypUnmapWalker,
    arg: data,
    flags: WalkFlags.LEAF | WalkFlags.TABLE_POST,
  };
  kvmPgtableWalk(pgt, addr, size, walker);
  return data.unmapped;
}

/** `hyp_free_walker()`. */
function hypFreeWalker(ctx: VisitCtx<null>): number {
  if (!kvmPteValid(ctx.oldLo)) return 0;
  ctx.mmOps.putPage(ctx.ptep);
  if (kvmPteTable(ctx.oldLo, ctx.level)) ctx.mmOps.putPage(kvmPteToPhys(ctx.oldLo, ctx.oldHi, ctx.granule));
  return 0;
}

/**
 * Frees every table page of an unused hyp table, then the pgd (no TLBI: the table must be unreachable).
 * @remarks Mirrors `kvm_pgtable_hyp_destroy()` (arch/arm64/kvm/hyp/pgtable.c).
 */
export function kvmPgtableHypDestroy(pgt: KvmPgtable): void {
  if (pgt.pgd < 0) return;
  const walker: Walker<null> = { cb: hypFreeWalker, arg: null, flags: WalkFlags.LEAF | WalkFlags.TABLE_POST };
  const ret = kvmPgtableWalk(pgt, 0, 2 ** pgt.iaBits, walker);
  if (ret !== 0) pgt.warn(`kvm_pgtable_hyp_destroy: walk returned ${ret}`);
  pgt.mmOps.putPage(pgt.pgd);
  pgt.pgd = -1;
}
