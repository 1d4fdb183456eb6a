/**
 * Stage-2 operations of the page-table library EL2 runs (guest stage 2 and the host's idmap): init from VTCR_EL2,
 * map (block or page), owner annotations, unmap with table-page refcounts, permission and access-flag updates,
 * destroy. A mirror of the `kvm_pgtable_stage2_*()` functions of arch/arm64/kvm/hyp/pgtable.c (Linux v6.10, nVHE
 * build), descriptor layout per Arm ARM D8.3 (reference arm-s2.md §3.3, §9.4; pkvm.md §7).
 *
 * Break-before-make follows the kernel exactly (arm-s2.md §8.3): `stage2_try_break_pte()` stores the invalid
 * `KVM_INVALID_PTE_LOCKED` marker, invalidates the TLB for the old entry (by IPA for a leaf, the whole VMID for a
 * table, as `kvm_tlb_flush_vmid_range()` does without FEAT_TLBIRANGE), drops the table-page reference, then
 * `stage2_make_pte()` publishes the new entry. Changes of software bits only are written in place (V1 83/89).
 * Every descriptor store goes through {@link PhysMem.writeDesc}, the model's observed descriptor-write API.
 *
 * Differences from the 2022 series' base (v5.18, pkvm.md §7.3–7.4), kept out of the model on purpose: v5.18 broke
 * an entry by writing zero instead of the LOCKED marker, replaced a table by a block through the "anchor"
 * (TABLE_POST) scheme with a whole-VMID flush, and returned every visitor error including -EAGAIN (here: pass
 * `HANDLE_FAULT`). Observable outcomes (final tables, TLBIs issued before each make, refcounts) are the same.
 *
 * Refcounts (pkvm.md §7.6, §9.17): a table page holds 1 (allocation) + one per counted entry, and an entry is
 * counted when it is non-zero (`stage2_pte_is_counted()`): valid mappings and owner annotations alike.
 */

import { assert, assertNever } from '../arch/assert.js';
import { Bug, injected } from '../arch/inject.js';
import { Err, type Ret } from '../arch/errno.js';
import { granuleShift, levelShift, type Granule } from '../arch/granule.js';
import {
  DESC_TYPE_LO,
  DESC_VALID_LO,
  S2AP_R_LO,
  S2AP_W_LO,
  S2_AF_LO,
  S2_MEMATTR_LO,
  S2_MEMATTR_SHIFT,
  S2_SH_SHIFT,
  S2_XN_HI,
} from '../arch/desc.js';
import type { PhysMem } from '../mem/phys-mem.js';
import type { Memcache, PgtMmOps } from './mm-ops.js';
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
import { kvmTlbFlushVmidIpa, kvmTlbFlushVmidIpaNsh, kvmTlbFlushVmidRange, TLBI_TTL_UNKNOWN } from './tlb-ops.js';
import {
  KVM_INVALID_PTE_LOCKED_LO,
  KVM_INVALID_PTE_OWNER_SHIFT,
  KVM_MAX_OWNER_ID,
  KVM_PGTABLE_LAST_LEVEL,
  KvmPgtableProt,
  PROT_SW_HI,
  Stage2Flags,
  WalkFlags,
  type ForcePteCb,
  type KvmPgtable,
  type KvmS2Mmu,
  type LeafOut,
  type WalkVisit,
  type WarnSink,
} from './types.js';
import {
  kvmPgdPages,
  kvmPgtableFindPage4k,
  kvmPgtableWalk,
  kvmPgtableWalkNoTablePre,
  kvmPgtableWalkResult,
  pgtableFastPaths,
  kvmPgtableWalkUnlinked,
  type VisitCtx,
  type VisitorFn,
  type Walker,
} from './walk.js';

/** `MT_S2_NORMAL` (arch/arm64/include/asm/memory.h): Normal, outer and inner Write-Back. */
export const MT_S2_NORMAL = 0xf;
/** `MT_S2_NORMAL_NC`: Normal, outer and inner Non-cacheable. */
export const MT_S2_NORMAL_NC = 0x5;
/** `MT_S2_DEVICE_nGnRE`. */
export const MT_S2_DEVICE_nGnRE = 0x1;
/** `MT_S2_FWB_NORMAL`: with FEAT_S2FWB, force Normal Write-Back. */
export const MT_S2_FWB_NORMAL = 0x6;
/** `MT_S2_FWB_NORMAL_NC`. */
export const MT_S2_FWB_NORMAL_NC = 0x5;
/** `MT_S2_FWB_DEVICE_nGnRE`. */
export const MT_S2_FWB_DEVICE_nGnRE = 0x1;
/** `KVM_PTE_LEAF_ATTR_LO_S2_SH_IS`: Inner Shareable. */
export const KVM_PTE_LEAF_ATTR_LO_S2_SH_IS = 3;
/** `KVM_PTE_LEAF_ATTR_LO` = bits[11:2]. */
export const KVM_PTE_LEAF_ATTR_LO = 0xffc;
/** `KVM_PTE_LEAF_ATTR_HI` = bits[63:50], on the high half. */
export const KVM_PTE_LEAF_ATTR_HI_MASK = 0xfffc_0000;
/** `KVM_PTE_LEAF_ATTR_S2_PERMS`, low half: S2AP_R | S2AP_W. */
const S2_PERMS_LO = S2AP_R_LO | S2AP_W_LO;
/** `KVM_PTE_LEAF_ATTR_S2_PERMS`, high half: XN (bit 54). */
const S2_PERMS_HI = S2_XN_HI;

/** Default `WARN_ON()` sink: throws nothing, keeps the messages on the array it closes over. */
export function warningList(list: string[]): WarnSink {
  return (msg: string) => {
    list.push(msg);
  };
}

/**
 * Creates an uninitialised table object (no pgd): pass it to {@link kvmPgtableStage2Init} or `kvmPgtableHypInit`.
 * @param mem memory holding the tables.
 * @param mmOps allocator callbacks.
 * @param warn receives `WARN_ON()` messages.
 */
export function newKvmPgtable(mem: PhysMem, mmOps: PgtMmOps, warn: WarnSink): KvmPgtable {
  return {
    iaBits: 0,
    startLevel: 0,
    pgd: -1,
    granule: '4k',
    mmOps,
    mem,
    mmu: null,
    flags: 0,
    forcePteCb: null,
    hypTlb: null,
    warn,
  };
}

/** Stage-2 geometry decoded from VTCR_EL2 bits[31:0]. */
export interface VtcrGeometry {
  /** `VTCR_EL2_IPA(vtcr)` = 64 − T0SZ. */
  iaBits: number;
  /** `VTCR_EL2_TGRAN_SL0_BASE − SL0`. */
  startLevel: number;
  /** From TG0. */
  granule: Granule;
}

/**
 * Decodes T0SZ (bits[5:0]), SL0 (bits[7:6]) and TG0 (bits[15:14]: 00 4K, 01 64K, 10 16K) of VTCR_EL2 the way
 * `__kvm_pgtable_stage2_init()` does (start level = `VTCR_EL2_TGRAN_SL0_BASE` − SL0, base 2 for 4K, 3 otherwise).
 * @returns false (and leaves `out` alone) when TG0 is reserved or the geometry needs more than 16 concatenated
 *   pgd pages or an unsupported start level.
 */
export function decodeVtcr(vtcrLo: number, out: VtcrGeometry): boolean {
  const t0sz = vtcrLo & 0x3f;
  const sl0 = (vtcrLo >>> 6) & 0x3;
  const tg0 = (vtcrLo >>> 14) & 0x3;
  const granule: Granule | null = tg0 === 0 ? '4k' : tg0 === 1 ? '64k' : tg0 === 2 ? '16k' : null;
  if (granule === null) return false;
  const startLevel = (granule === '4k' ? 2 : 3) - sl0;
  const iaBits = 64 - t0sz;
  if (startLevel < 0 || startLevel > KVM_PGTABLE_LAST_LEVEL || iaBits > 52) return false;
  if (granule === '64k' && startLevel < 1) return false;
  if (kvmPgdPages(granule, iaBits, startLevel) > 16) return false;
  out.iaBits = iaBits;
  out.startLevel = startLevel;
  out.granule = granule;
  return true;
}

/**
 * Size in bytes of the (possibly concatenated) pgd that a VTCR_EL2 value implies, or 0 for an impossible VTCR.
 * @remarks Mirrors `kvm_pgtable_stage2_pgd_size()` (arch/arm64/kvm/hyp/pgtable.c).
 */
export function kvmPgtableStage2PgdSize(vtcrLo: number): number {
  const geo: VtcrGeometry = { iaBits: 0, startLevel: 0, granule: '4k' };
  if (!decodeVtcr(vtcrLo, geo)) return 0;
  return kvmPgdPages(geo.granule, geo.iaBits, geo.startLevel) * pgtPageSize(geo.granule);
}

/**
 * Initialises a stage-2 table: allocates the zeroed, concatenated pgd that VTCR_EL2 implies and records the
 * geometry, MMU context, flags and force-PTE policy.
 *
 * @param pgt an object from {@link newKvmPgtable}.
 * @param mmu VMID and TLB of this stage 2.
 * @param vtcrLo VTCR_EL2 bits[31:0].
 * @param flags a set of {@link Stage2Flags}.
 * @param forcePteCb block-vs-page policy, or null.
 * @returns 0; -ENOMEM when `zallocPagesExact` fails; -EINVAL for an impossible VTCR.
 * @remarks Mirrors `__kvm_pgtable_stage2_init()` (arch/arm64/kvm/hyp/pgtable.c).
 */
export function kvmPgtableStage2Init(
  pgt: KvmPgtable,
  mmu: KvmS2Mmu,
  vtcrLo: number,
  flags: number,
  forcePteCb: ForcePteCb | null,
): Ret {
  const geo: VtcrGeometry = { iaBits: 0, startLevel: 0, granule: '4k' };
  if (!decodeVtcr(vtcrLo, geo)) return Err.EINVAL;
  const pgdSz = kvmPgdPages(geo.granule, geo.iaBits, geo.startLevel) * pgtPageSize(geo.granule);
  const pgd = pgt.mmOps.zallocPagesExact(pgdSz);
  if (pgd < 0) return Err.ENOMEM;
  pgt.pgd = pgd;
  pgt.iaBits = geo.iaBits;
  pgt.startLevel = geo.startLevel;
  pgt.granule = geo.granule;
  pgt.mmu = mmu;
  pgt.flags = flags;
  pgt.forcePteCb = forcePteCb;
  // dsb(ishst): zeroed pgd pages visible to the hardware walker.
  mmu.tlb.dsb();
  return 0;
}

/**
 * `VTCR_EL2` bits[31:0] for a stage 2 of `iaBits` with `granule`, as `kvm_get_vtcr()` chooses the levels (at least
 * two, concatenating up to 16 pages at the start level): T0SZ, SL0, TG0, SH0 = ISH, IRGN0/ORGN0 = WBWA, RES1 bit 31.
 * PS, HA, VS and DS are left 0 (they do not affect the software walker).
 * @remarks Mirrors the geometry part of `kvm_get_vtcr()` (arch/arm64/kvm/hyp/pgtable.c) with
 *   `stage2_pgtable_levels()` (arch/arm64/include/asm/stage2_pgtable.h).
 */
export function kvmVtcrFor(granule: Granule, iaBits: number): number {
  const g = granuleShift(granule);
  const s = g - 3;
  // stage2_pgtable_levels(ipa) = ARM64_HW_PGTABLE_LEVELS(ipa - 4): up to 16 concatenated start tables.
  let levels = Math.floor((iaBits - 4 - 4) / s);
  if (levels < 2) levels = 2;
  const startLevel = 4 - levels;
  const sl0 = (granule === '4k' ? 2 : 3) - startLevel;
  const tg0 = granule === '4k' ? 0 : granule === '64k' ? 1 : 2;
  return ((1 << 31) | (tg0 << 14) | (3 << 12) | (1 << 10) | (1 << 8) | (sl0 << 6) | (64 - iaBits)) >>> 0;
}

/**
 * `stage2_has_fwb()`: the CPU has FEAT_S2FWB and the table was not created with `NOFWB`.
 * @remarks Mirrors `stage2_has_fwb()` (arch/arm64/kvm/hyp/pgtable.c).
 */
export function stage2HasFwb(pgt: KvmPgtable): boolean {
  if (pgt.mmu === null || !pgt.mmu.hasFwb) return false;
  return (pgt.flags & Stage2Flags.NOFWB) === 0;
}

/** A preallocated pair of halves (a prot value or descriptor attributes). */
export interface Halves {
  /** Bits[31:0]. */
  lo: number;
  /** Bits[63:32]. */
  hi: number;
}

/**
 * Composes the stage-2 leaf attributes for `prot`: MemAttr (Normal / Normal-NC / Device-nGnRE, FWB or not), XN
 * unless X, S2AP_R/W, SH = Inner Shareable, AF = 1, and the SW bits copied.
 *
 * @param out receives the attribute halves on success.
 * @returns 0; -EINVAL for DEVICE together with NORMAL_NC, or X with DEVICE or NORMAL_NC.
 * @remarks Mirrors `stage2_set_prot_attr()` (arch/arm64/kvm/hyp/pgtable.c). LPA2 is not modelled, so SH is
 *   always written.
 */
export function stage2SetProtAttr(pgt: KvmPgtable, protLo: number, protHi: number, out: Halves): Ret {
  const fwb = stage2HasFwb(pgt);
  const type = protLo & (KvmPgtableProt.DEVICE | KvmPgtableProt.NORMAL_NC);
  let memattr: number;
  if (type === (KvmPgtableProt.DEVICE | KvmPgtableProt.NORMAL_NC)) return Err.EINVAL;
  if (type === KvmPgtableProt.DEVICE) {
    if ((protLo & KvmPgtableProt.X) !== 0) return Err.EINVAL;
    memattr = fwb ? MT_S2_FWB_DEVICE_nGnRE : MT_S2_DEVICE_nGnRE;
  } else if (type === KvmPgtableProt.NORMAL_NC) {
    if ((protLo & KvmPgtableProt.X) !== 0) return Err.EINVAL;
    memattr = fwb ? MT_S2_FWB_NORMAL_NC : MT_S2_NORMAL_NC;
  } else {
    memattr = fwb ? MT_S2_FWB_NORMAL : MT_S2_NORMAL;
  }
  let lo = memattr << S2_MEMATTR_SHIFT;
  let hi = 0;
  if ((protLo & KvmPgtableProt.X) === 0) hi |= S2_XN_HI;
  if ((protLo & KvmPgtableProt.R) !== 0) lo |= S2AP_R_LO;
  if ((protLo & KvmPgtableProt.W) !== 0) lo |= S2AP_W_LO;
  lo |= KVM_PTE_LEAF_ATTR_LO_S2_SH_IS << S2_SH_SHIFT;
  lo |= S2_AF_LO;
  hi |= protHi & PROT_SW_HI;
  out.lo = lo >>> 0;
  out.hi = hi >>> 0;
  return 0;
}

/**
 * The prot a stage-2 PTE grants: R from S2AP_R, W from S2AP_W, X when XN is clear, plus the SW bits (also for
 * invalid PTEs, which report only their SW bits). DEVICE is not reported back.
 * @param out receives the prot halves.
 * @remarks Mirrors `kvm_pgtable_stage2_pte_prot()` (arch/arm64/kvm/hyp/pgtable.c).
 */
export function kvmPgtableStage2PteProt(lo: number, hi: number, out: Halves): void {
  out.hi = (hi & PROT_SW_HI) >>> 0;
  out.lo = 0;
  if (!kvmPteValid(lo)) return;
  if ((lo & S2AP_R_LO) !== 0) out.lo |= KvmPgtableProt.R;
  if ((lo & S2AP_W_LO) !== 0) out.lo |= KvmPgtableProt.W;
  if ((hi & S2_XN_HI) === 0) out.lo |= KvmPgtableProt.X;
}

/** `stage2_pte_is_counted()`: any non-zero PTE holds a reference on its table page. */
export function stage2PteIsCounted(lo: number, hi: number): boolean {
  return injected(Bug.REFCOUNT_IGNORES_ANNOTATIONS) ? (lo & 1) !== 0 : lo !== 0 || hi !== 0;
}

/** `stage2_pte_is_locked()`: invalid with `KVM_INVALID_PTE_LOCKED`. */
export function stage2PteIsLocked(lo: number): boolean {
  return !kvmPteValid(lo) && (lo & KVM_INVALID_PTE_LOCKED_LO) !== 0;
}

/** `stage2_pte_cacheable()`: valid with the Normal (cacheable) MemAttr of this table. */
function stage2PteCacheable(pgt: KvmPgtable, lo: number): boolean {
  const normal = stage2HasFwb(pgt) ? MT_S2_FWB_NORMAL : MT_S2_NORMAL;
  return kvmPteValid(lo) && (lo & S2_MEMATTR_LO) >>> S2_MEMATTR_SHIFT === normal;
}

/** `stage2_pte_executable()`. */
function stage2PteExecutable(lo: number, hi: number): boolean {
  return kvmPteValid(lo) && (hi & S2_XN_HI) === 0;
}

/** `stage2_pte_needs_update()`: false when only the permission bits (or nothing) would change. */
function stage2PteNeedsUpdate(oldLo: number, oldHi: number, newLo: number, newHi: number): boolean {
  if (!kvmPteValid(oldLo) || !kvmPteValid(newLo)) return true;
  return ((oldLo ^ newLo) & ~S2_PERMS_LO) !== 0 || ((oldHi ^ newHi) & ~S2_PERMS_HI) !== 0;
}

/** `kvm_init_invalid_leaf_owner()`: owner id in bits[9:2] of an invalid PTE. */
export function kvmInitInvalidLeafOwnerLo(ownerId: number): number {
  return (ownerId & 0xff) << KVM_INVALID_PTE_OWNER_SHIFT;
}

/** Owner id of an invalid PTE (bits[9:2]); 0 for a valid one. Inverse of `kvm_init_invalid_leaf_owner()`. */
export function kvmInvalidPteOwner(lo: number): number {
  return kvmPteValid(lo) ? 0 : (lo >>> KVM_INVALID_PTE_OWNER_SHIFT) & 0xff;
}

/** `kvm_init_table_pte()`: low half of a table descriptor to `childPa`. */
function tablePteLo(pgt: KvmPgtable, childPa: number): number {
  return (kvmPhysToPteLo(childPa, pgt.granule) | DESC_TYPE_LO | DESC_VALID_LO) >>> 0;
}

/** `kvm_init_valid_leaf_pte()` into halves: OA, the attribute fields, type (page at L3, block above), valid. */
export function kvmInitValidLeafPte(
  granule: Granule,
  pa: number,
  attrLo: number,
  attrHi: number,
  level: number,
  out: Halves,
): void {
  const type = level === KVM_PGTABLE_LAST_LEVEL ? DESC_TYPE_LO : 0;
  out.lo = (kvmPhysToPteLo(pa, granule) | (attrLo & KVM_PTE_LEAF_ATTR_LO) | type | DESC_VALID_LO) >>> 0;
  out.hi = (kvmPhysToPteHi(pa) | (attrHi & KVM_PTE_LEAF_ATTR_HI_MASK)) >>> 0;
}

/** The MMU context of a stage-2 table; calling a stage-2 operation on a stage-1 table is API misuse. */
function mmuOf(pgt: KvmPgtable): KvmS2Mmu {
  const mmu = pgt.mmu;
  assert(mmu !== null, 'stage-2 operation on a table without an MMU context');
  return mmu;
}

/**
 * `stage2_try_break_pte()`: stores the LOCKED marker, invalidates the TLB for the old entry (VMID flush for a
 * table, IPA flush for a valid leaf) unless `SKIP_BBM_TLBI`, and drops the old entry's reference.
 * @returns false if the entry is already locked (never at EL2, where walks are exclusive: a WARN).
 */
function stage2TryBreakPte(ctx: VisitCtx<unknown>, pgt: KvmPgtable): boolean {
  return stage2TryBreakPteAt(pgt, ctx.ptep, ctx.oldLo, ctx.oldHi, ctx.level, ctx.addr, ctx.flags);
}

/**
 * {@link stage2TryBreakPte} on the entry at `ptep` (old halves, level, cursor address and walk flags given: the
 * visitor context's fields; its memory, mm_ops and granule are always the table's).
 */
function stage2TryBreakPteAt(
  pgt: KvmPgtable,
  ptep: number,
  oldLo: number,
  oldHi: number,
  level: number,
  addr: number,
  flags: number,
): boolean {
  if (stage2PteIsLocked(oldLo)) {
    pgt.warn('stage2_try_break_pte: PTE already locked in an exclusive walk');
    return false;
  }
  if (injected(Bug.SKIP_BBM_BREAK) && kvmPteValid(oldLo)) {
    if (stage2PteIsCounted(oldLo, oldHi)) pgt.mmOps.putPage(ptep); // planted bug: no break, no TLBI
    return true;
  }
  pgt.mem.writeDesc(ptep, KVM_INVALID_PTE_LOCKED_LO, 0);
  if ((flags & WalkFlags.SKIP_BBM_TLBI) === 0 && !injected(Bug.MISSING_TLBI_UNMAP)) {
    const mmu = mmuOf(pgt);
    if (kvmPteTable(oldLo, level)) {
      const size = kvmGranuleSize(pgt.granule, level);
      kvmTlbFlushVmidRange(mmu.tlb, mmu.vmid, alignDownPow2(addr, size), size);
    } else if (kvmPteValid(oldLo)) {
      kvmTlbFlushVmidIpa(mmu.tlb, mmu.vmid, addr, level);
    }
  }
  if (stage2PteIsCounted(oldLo, oldHi)) pgt.mmOps.putPage(ptep);
  return true;
}

/** `stage2_make_pte()`: takes a reference for a counted new entry and publishes it. */
function stage2MakePte(ctx: VisitCtx<unknown>, pgt: KvmPgtable, newLo: number, newHi: number): void {
  stage2MakePteAt(pgt, ctx.ptep, newLo, newHi);
}

/** {@link stage2MakePte} on the entry at `ptep`. */
function stage2MakePteAt(pgt: KvmPgtable, ptep: number, newLo: number, newHi: number): void {
  const mem = pgt.mem;
  const cur = mem.read64Lo(ptep);
  if (!stage2PteIsLocked(cur)) pgt.warn('stage2_make_pte: PTE not locked');
  if (stage2PteIsCounted(newLo, newHi)) pgt.mmOps.getPage(ptep);
  mem.writeDesc(ptep, newLo, newHi);
}

/** `struct stage2_map_data`. */
interface Stage2MapData {
  pgt: KvmPgtable;
  phys: number;
  attrLo: number;
  attrHi: number;
  ownerId: number;
  memcache: Memcache;
  forcePte: boolean;
  annotation: boolean;
  /** Scratch for the new descriptor. */
  readonly nu: Halves;
}

/** A map request's data and walker, reused across calls (see {@link takeMapWalk}). */
interface MapWalk {
  readonly data: Stage2MapData;
  readonly walker: { cb: VisitorFn<Stage2MapData>; arg: Stage2MapData; flags: number };
  busy: boolean;
}

function newMapWalk(): MapWalk {
  const data: Stage2MapData = {
    pgt: null as unknown as KvmPgtable, // JUSTIFY: set by takeMapWalk before any use.
    phys: 0,
    attrLo: 0,
    attrHi: 0,
    ownerId: 0,
    memcache: null,
    forcePte: false,
    annotation: false,
    nu: { lo: 0, hi: 0 },
  };
  return { data, walker: { cb: stage2MapWalker, arg: data, flags: 0 }, busy: false };
}

/** The shared map walk; a map started while it is in use (from an allocator callback) gets a fresh one. */
const sharedMapWalk = newMapWalk();

/** Fills a map walk for one `stage2Map`/`stage2SetOwner` call; release it with `mw.busy = false`. */
function takeMapWalk(
  pgt: KvmPgtable,
  phys: number,
  attrLo: number,
  attrHi: number,
  ownerId: number,
  mc: Memcache,
  forcePte: boolean,
  annotation: boolean,
  flags: number,
): MapWalk {
  const mw = sharedMapWalk.busy ? newMapWalk() : sharedMapWalk;
  mw.busy = true;
  const d = mw.data;
  d.pgt = pgt;
  d.phys = phys;
  d.attrLo = attrLo;
  d.attrHi = attrHi;
  d.ownerId = ownerId;
  d.memcache = mc;
  d.forcePte = forcePte;
  d.annotation = annotation;
  mw.walker.flags = flags;
  return mw;
}

/** Ends a map walk: drops its references so the shared one retains nothing. */
function releaseMapWalk(mw: MapWalk): void {
  mw.data.pgt = null as unknown as KvmPgtable; // JUSTIFY: idle; set again before any use.
  mw.data.memcache = null;
  mw.busy = false;
}

/** `stage2_map_walker_phys_addr()`: the PA for the cursor, phys + (addr − start). */
function mapPhys(ctx: VisitCtx<Stage2MapData>): number {
  return ctx.arg.phys + (ctx.addr - ctx.start);
}

/** `kvm_block_mapping_supported()`: level allows blocks, the entry's span fits, addr and phys aligned. */
function kvmBlockMappingSupported(ctx: VisitCtx<unknown>, phys: number): boolean {
  const granule = kvmGranuleSize(ctx.granule, ctx.level);
  if (!kvmLevelSupportsBlockMapping(ctx.granule, ctx.level)) return false;
  if (granule > ctx.end - ctx.addr) return false;
  if (modPow2(phys, granule) !== 0) return false;
  return modPow2(ctx.addr, granule) === 0;
}

/** `stage2_leaf_mapping_allowed()`. */
function stage2LeafMappingAllowed(ctx: VisitCtx<Stage2MapData>): boolean {
  const data = ctx.arg;
  if (data.forcePte && ctx.level < KVM_PGTABLE_LAST_LEVEL) return false;
  if (data.annotation) return true;
  return kvmBlockMappingSupported(ctx, mapPhys(ctx));
}

/** `stage2_map_walker_try_leaf()`: -E2BIG when no leaf may go here, -EAGAIN when nothing needs to change. */
function stage2MapWalkerTryLeaf(ctx: VisitCtx<Stage2MapData>): number {
  const data = ctx.arg;
  if (!stage2LeafMappingAllowed(ctx)) return Err.E2BIG;
  const nu = data.nu;
  if (!data.annotation) {
    kvmInitValidLeafPte(ctx.granule, mapPhys(ctx), data.attrLo, data.attrHi, ctx.level, nu);
  } else {
    nu.lo = kvmInitInvalidLeafOwnerLo(data.ownerId);
    nu.hi = 0;
  }
  return stage2MapLeafAt(data.pgt, ctx.ptep, ctx.oldLo, ctx.oldHi, ctx.level, ctx.addr, ctx.flags, nu.lo, nu.hi);
}

/**
 * The rest of `stage2_map_walker_try_leaf()` once the leaf is allowed and the new entry composed: the entry at
 * `ptep` (old halves, level, cursor address, walk flags) becomes `newLo`/`newHi` — unchanged (-EAGAIN) when only
 * permissions differ, in place when only software bits differ, otherwise by break-before-make with cache
 * maintenance.
 */
function stage2MapLeafAt(
  pgt: KvmPgtable,
  ptep: number,
  oldLo: number,
  oldHi: number,
  level: number,
  addr: number,
  flags: number,
  newLo: number,
  newHi: number,
): number {
  // Same mapping, or only permissions differ: the vCPU faults again and goes through relax_perms.
  if (!stage2PteNeedsUpdate(oldLo, oldHi, newLo, newHi)) return Err.EAGAIN;

  const mmOps = pgt.mmOps;
  // Only software bits change: store them and go, no break-before-make (V1 83/89).
  if ((oldLo ^ newLo) === 0 && ((oldHi ^ newHi) & ~PROT_SW_HI) === 0) {
    const oldCounted = stage2PteIsCounted(oldLo, oldHi);
    if (oldCounted !== stage2PteIsCounted(newLo, newHi)) {
      if (oldCounted) mmOps.putPage(ptep);
      else mmOps.getPage(ptep);
    }
    pgt.mem.writeDesc(ptep, newLo, newHi);
    return 0;
  }

  if (!stage2TryBreakPteAt(pgt, ptep, oldLo, oldHi, level, addr, flags)) return Err.EAGAIN;

  // Cache maintenance before the new PTE is visible to the guest.
  if ((flags & WalkFlags.SKIP_CMO) === 0) {
    const dc = mmOps.dcacheCleanInvalPoc;
    if (dc !== undefined && stage2PteCacheable(pgt, newLo)) {
      dc.call(mmOps, kvmPteToPhys(newLo, newHi, pgt.granule), kvmGranuleSize(pgt.granule, level));
    }
    const ic = mmOps.icacheInvalPou;
    if (ic !== undefined && stage2PteExecutable(newLo, newHi)) {
      ic.call(mmOps, kvmPteToPhys(newLo, newHi, pgt.granule), kvmGranuleSize(pgt.granule, level));
    }
  }
  stage2MakePteAt(pgt, ptep, newLo, newHi);
  return 0;
}

/** `stage2_map_walk_table_pre()`: replaces a table by a block when a leaf is allowed at this level. */
function stage2MapWalkTablePre(ctx: VisitCtx<Stage2MapData>): number {
  const childPa = kvmPteToPhys(ctx.oldLo, ctx.oldHi, ctx.granule);
  if (!stage2LeafMappingAllowed(ctx)) return 0;
  const level = ctx.level;
  const ret = stage2MapWalkerTryLeaf(ctx);
  if (ret !== 0) return ret;
  kvmPgtableStage2FreeUnlinked(ctx.arg.pgt, childPa, level);
  return 0;
}

/** `stage2_map_walk_leaf()`: installs a leaf, or a new table to descend into. */
function stage2MapWalkLeaf(ctx: VisitCtx<Stage2MapData>): number {
  const data = ctx.arg;
  const pgt = data.pgt;
  const ret = stage2MapWalkerTryLeaf(ctx);
  if (ret !== Err.E2BIG) return ret;
  if (ctx.level === KVM_PGTABLE_LAST_LEVEL) {
    pgt.warn('stage2_map_walk_leaf: no leaf possible at the last level');
    return Err.EINVAL;
  }
  if (data.memcache === null) return Err.ENOMEM;
  const childPa = ctx.mmOps.zallocPage(data.memcache);
  if (childPa < 0) return Err.ENOMEM;
  if (!stage2TryBreakPte(ctx, pgt)) {
    ctx.mmOps.putPage(childPa);
    return Err.EAGAIN;
  }
  // An old block is replaced by an empty table: the rest of its span faults back lazily.
  stage2MakePte(ctx, pgt, tablePteLo(pgt, childPa), kvmPhysToPteHi(childPa));
  return 0;
}

/** `stage2_map_walker()`. */
function stage2MapWalker(ctx: VisitCtx<Stage2MapData>, visit: WalkVisit): number {
  switch (visit) {
    case WalkFlags.TABLE_PRE:
      return stage2MapWalkTablePre(ctx);
    case WalkFlags.LEAF:
      return stage2MapWalkLeaf(ctx);
    case WalkFlags.TABLE_POST:
      return Err.EINVAL; // never requested by the map walks; the kernel's default case
    default:
      return assertNever(visit, 'walk visit');
  }
}

const attrScratch: Halves = { lo: 0, hi: 0 };
/** The last-level entry a one-page fast path found, and the new descriptor it composes. */
const fastLeaf: LeafOut = { lo: 0, hi: 0, level: 0 };
const fastNu: Halves = { lo: 0, hi: 0 };

/**
 * Maps [addr, addr + size) to [phys, …) with `prot`, using blocks where the level allows them, the range and both
 * addresses are aligned, and `force_pte_cb` does not force pages; otherwise descending and allocating tables from
 * `mc`. An existing identical mapping, or one differing only in permissions, is left alone (the visitor's -EAGAIN,
 * which the walk swallows unless `flags` has `HANDLE_FAULT`; pass `HANDLE_FAULT` to get the 2022 series' (v5.18)
 * behaviour of returning -EAGAIN).
 *
 * @param pgt an initialised stage-2 table.
 * @param addr IPA (page aligned down).
 * @param size bytes (end rounded up to a page).
 * @param phys PA (page aligned down).
 * @param protLo R/W/X/DEVICE/NORMAL_NC ({@link KvmPgtableProt}).
 * @param protHi SW0..SW3 on the high half.
 * @param mc memcache for table pages (null → -ENOMEM when a table is needed).
 * @param flags extra walk flags (`HANDLE_FAULT`, `SKIP_BBM_TLBI`, `SKIP_CMO`).
 * @returns 0; -ENOMEM when a table page cannot be allocated (the part mapped so far stays); -ERANGE past
 *   ia_bits; -EINVAL for an impossible prot or an IDMAP table with addr ≠ phys (a WARN); -EAGAIN only with
 *   `HANDLE_FAULT`.
 * @remarks Mirrors `kvm_pgtable_stage2_map()` (arch/arm64/kvm/hyp/pgtable.c).
 */
export function stage2Map(
  pgt: KvmPgtable,
  addr: number,
  size: number,
  phys: number,
  protLo: number,
  protHi: number,
  mc: Memcache,
  flags: number,
): Ret {
  const mmu = mmuOf(pgt);
  const cb = pgt.forcePteCb;
  const forcePte = cb !== null && cb(addr, addr + size, protLo, protHi);
  if ((pgt.flags & Stage2Flags.IDMAP) !== 0 && addr !== phys) {
    pgt.warn('kvm_pgtable_stage2_map: IDMAP table with addr != phys');
    return Err.EINVAL;
  }
  const ret = stage2SetProtAttr(pgt, protLo, protHi, attrScratch);
  if (ret !== 0) return ret;
  const phys0 = alignDownPow2(phys, pgtPageSize(pgt.granule));
  const walkFlags = flags | WalkFlags.TABLE_PRE | WalkFlags.LEAF;
  if (pgt.granule === '4k' && pgtableFastPaths()) {
    const ptep = modPow2(phys0, 0x1000) === 0 ? kvmPgtableFindPage4k(pgt, addr, size, walkFlags, fastLeaf) : -1;
    if (ptep >= 0) {
      // The walk's one LEAF visit (stage2_map_walk_leaf() at the last level), made directly: the leaf is allowed
      // (a page at the last level, one-page range, phys0 page aligned), so try_leaf composes the page descriptor for
      // OA phys0 (the cursor is the walk's start) and never returns -E2BIG.
      kvmInitValidLeafPte('4k', phys0, attrScratch.lo, attrScratch.hi, KVM_PGTABLE_LAST_LEVEL, fastNu);
      const start = alignDownPow2(addr, 0x1000);
      const L3 = KVM_PGTABLE_LAST_LEVEL;
      const r = stage2MapLeafAt(pgt, ptep, fastLeaf.lo, fastLeaf.hi, L3, start, walkFlags, fastNu.lo, fastNu.hi);
      mmu.tlb.dsb(); // dsb(ishst)
      return kvmPgtableWalkResult(walkFlags, r) as Ret; // JUSTIFY: the map visitor returns only 0 or a negated errno.
    }
  }
  const mw = takeMapWalk(pgt, phys0, attrScratch.lo, attrScratch.hi, 0, mc, forcePte, false, walkFlags);
  let r: number;
  try {
    // TABLE_PRE on a one-page walk is a no-op here: stage2LeafMappingAllowed() is false above the last level (the
    // level's granule exceeds the one-page range, so no block), which kvmPgtableWalkNoTablePre needs.
    r = kvmPgtableWalkNoTablePre(pgt, addr, size, mw.walker);
  } finally {
    releaseMapWalk(mw);
  }
  mmu.tlb.dsb(); // dsb(ishst)
  return r as Ret; // JUSTIFY: the map visitor returns only 0 or a negated errno.
}

/**
 * Annotates [addr, addr + size) as owned by `ownerId`: invalid page-level PTEs carrying the id in bits[9:2]
 * (owner 0 writes zero PTEs). Valid mappings in the range are broken (with TLBI) first. Annotated PTEs are counted
 * in the table-page refcount, so unmap does not free tables that still hold ownership.
 *
 * @param mc memcache for table pages.
 * @param ownerId 0..`KVM_MAX_OWNER_ID` (255 in the 2022 series after V1 39/89; pkvm.md §1.4).
 * @returns 0; -EINVAL for an owner id out of range; -ENOMEM; -ERANGE.
 * @remarks Mirrors `kvm_pgtable_stage2_set_owner()` (arch/arm64/kvm/hyp/pgtable.c).
 */
export function stage2SetOwner(pgt: KvmPgtable, addr: number, size: number, mc: Memcache, ownerId: number): Ret {
  mmuOf(pgt);
  if (!Number.isInteger(ownerId) || ownerId < 0 || ownerId > KVM_MAX_OWNER_ID) return Err.EINVAL;
  const walkFlags = WalkFlags.TABLE_PRE | WalkFlags.LEAF;
  if (pgt.granule === '4k' && pgtableFastPaths()) {
    const ptep = kvmPgtableFindPage4k(pgt, addr, size, walkFlags, fastLeaf);
    if (ptep >= 0) {
      // The walk's one LEAF visit, made directly: an annotation is allowed at the last level.
      const start = alignDownPow2(addr, 0x1000);
      const ownerLo = kvmInitInvalidLeafOwnerLo(ownerId);
      const r = stage2MapLeafAt(pgt, ptep, fastLeaf.lo, fastLeaf.hi, KVM_PGTABLE_LAST_LEVEL, start, walkFlags, ownerLo, 0);
      return kvmPgtableWalkResult(walkFlags, r) as Ret; // JUSTIFY: the map visitor returns only 0 or a negated errno.
    }
  }
  const mw = takeMapWalk(pgt, 0, 0, 0, ownerId, mc, true, true, walkFlags);
  try {
    // TABLE_PRE on a one-page walk is a no-op: forcePte keeps annotations at the last level.
    // JUSTIFY: the map visitor returns 0 or an errno.
    return kvmPgtableWalkNoTablePre(pgt, addr, size, mw.walker) as Ret;
  } finally {
    releaseMapWalk(mw);
  }
}

/** `stage2_unmap_put_pte()`: clears a valid entry with TLBI (no deferral without FEAT_TLBIRANGE), drops its ref. */
function stage2UnmapPutPte(ctx: VisitCtx<KvmPgtable>, mmu: KvmS2Mmu): void {
  if (kvmPteValid(ctx.oldLo)) {
    ctx.mem.writeDesc(ctx.ptep, 0, 0);
    if (injected(Bug.MISSING_TLBI_UNMAP)) {
      // planted bug: no TLBI for the entry just cleared
    } else if (kvmPteTable(ctx.oldLo, ctx.level)) {
      kvmTlbFlushVmidIpa(mmu.tlb, mmu.vmid, ctx.addr, TLBI_TTL_UNKNOWN);
    } else {
      kvmTlbFlushVmidIpa(mmu.tlb, mmu.vmid, ctx.addr, ctx.level);
    }
  }
  ctx.mmOps.putPage(ctx.ptep);
}

/** `stage2_unmap_walker()`. */
function stage2UnmapWalker(ctx: VisitCtx<KvmPgtable>): number {
  const pgt = ctx.arg;
  const mmu = mmuOf(pgt);
  const oldLo = ctx.oldLo;
  const oldHi = ctx.oldHi;
  let childPa = -1;
  let needFlush = false;

  if (!kvmPteValid(oldLo)) {
    // Owner annotations are counted: clearing one drops its reference.
    if (stage2PteIsCounted(oldLo, oldHi)) {
      ctx.mem.writeDesc(ctx.ptep, 0, 0);
      ctx.mmOps.putPage(ctx.ptep);
    }
    return 0;
  }

  if (kvmPteTable(oldLo, ctx.level)) {
    childPa = kvmPteToPhys(oldLo, oldHi, ctx.granule);
    if (ctx.mmOps.pageCount(childPa) !== 1) return 0;
  } else if (stage2PteCacheable(pgt, oldLo)) {
    needFlush = !stage2HasFwb(pgt);
  }

  // As in map, a block larger than the range is removed whole; the rest faults back lazily.
  stage2UnmapPutPte(ctx, mmu);

  const dc = ctx.mmOps.dcacheCleanInvalPoc;
  if (needFlush && dc !== undefined) {
    dc.call(ctx.mmOps, kvmPteToPhys(oldLo, oldHi, ctx.granule), kvmGranuleSize(ctx.granule, ctx.level));
  }
  if (childPa >= 0) ctx.mmOps.putPage(childPa);
  return 0;
}

/**
 * Removes every mapping and owner annotation in [addr, addr + size), with TLB invalidation for each valid entry
 * cleared, and frees table pages left without counted entries (on the `TABLE_POST` pass). A block reaching outside
 * the range is removed whole.
 *
 * @returns 0; -ERANGE past ia_bits.
 * @remarks Mirrors `kvm_pgtable_stage2_unmap()` (arch/arm64/kvm/hyp/pgtable.c); no deferred range TLBI
 *   (`stage2_unmap_defer_tlb_flush()` is false without FEAT_TLBIRANGE). A table entry is invalidated by IPA
 *   with `TLBI_TTL_UNKNOWN`, as in current upstream.
 */
export function stage2Unmap(pgt: KvmPgtable, addr: number, size: number): Ret {
  mmuOf(pgt);
  const walker: Walker<KvmPgtable> = {
    cb: stage2UnmapWalker,
    arg: pgt,
    flags: WalkFlags.LEAF | WalkFlags.TABLE_POST,
  };
  return kvmPgtableWalk(pgt, addr, size, walker) as Ret; // JUSTIFY: the unmap visitor returns 0.
}

/** `struct stage2_attr_data`. */
interface Stage2AttrData {
  readonly setLo: number;
  readonly setHi: number;
  readonly clrLo: number;
  readonly clrHi: number;
  lo: number;
  hi: number;
  level: number;
}

/** `stage2_attr_walker()`: (old & ~clr) | set on valid leaves, in place (permission/AF/SW changes need no BBM). */
function stage2AttrWalker(ctx: VisitCtx<Stage2AttrData>): number {
  const data = ctx.arg;
  const oldLo = ctx.oldLo;
  const oldHi = ctx.oldHi;
  if (!kvmPteValid(oldLo)) return Err.EAGAIN;
  data.level = ctx.level;
  data.lo = oldLo;
  data.hi = oldHi;
  const lo = ((oldLo & ~data.clrLo) | data.setLo) >>> 0;
  const hi = ((oldHi & ~data.clrHi) | data.setHi) >>> 0;
  if (lo !== oldLo || hi !== oldHi) {
    const ic = ctx.mmOps.icacheInvalPou;
    if (ic !== undefined && stage2PteExecutable(lo, hi) && !stage2PteExecutable(oldLo, oldHi)) {
      ic.call(ctx.mmOps, kvmPteToPhys(lo, hi, ctx.granule), kvmGranuleSize(ctx.granule, ctx.level));
    }
    ctx.mem.writeDesc(ctx.ptep, lo, hi);
  }
  return 0;
}

/**
 * `stage2_update_leaf_attrs()`: applies set/clear masks to every valid leaf in the range.
 * @param out receives the last visited valid PTE and its level (level 0 and PTE 0 if none), or null.
 * @returns the walk's result.
 */
function stage2UpdateLeafAttrs(
  pgt: KvmPgtable,
  addr: number,
  size: number,
  setLo: number,
  setHi: number,
  clrLo: number,
  clrHi: number,
  out: LeafOut | null,
  flags: number,
): Ret {
  const data: Stage2AttrData = {
    setLo: setLo & KVM_PTE_LEAF_ATTR_LO,
    setHi: (setHi & KVM_PTE_LEAF_ATTR_HI_MASK) >>> 0,
    clrLo: clrLo & KVM_PTE_LEAF_ATTR_LO,
    clrHi: (clrHi & KVM_PTE_LEAF_ATTR_HI_MASK) >>> 0,
    lo: 0,
    hi: 0,
    level: 0,
  };
  const walker: Walker<Stage2AttrData> = { cb: stage2AttrWalker, arg: data, flags: flags | WalkFlags.LEAF };
  // JUSTIFY: the attribute visitor returns 0 or -EAGAIN; the walk adds -ERANGE/-EINVAL/-EPERM.
  const ret = kvmPgtableWalk(pgt, addr, size, walker) as Ret;
  if (ret !== 0) return ret;
  if (out !== null) {
    out.lo = data.lo;
    out.hi = data.hi;
    out.level = data.level;
  }
  return 0;
}

/**
 * Clears S2AP_W on every valid leaf in the range, in place; no TLBI (the caller flushes).
 * @returns 0; -ERANGE past ia_bits.
 * @remarks Mirrors `kvm_pgtable_stage2_wrprotect()` (arch/arm64/kvm/hyp/pgtable.c).
 */
export function stage2Wrprotect(pgt: KvmPgtable, addr: number, size: number): Ret {
  return stage2UpdateLeafAttrs(pgt, addr, size, 0, 0, S2AP_W_LO, 0, null, 0);
}

/**
 * Sets the access flag of the leaf mapping `addr`, in place.
 * @param flags walk flags (pass `HANDLE_FAULT` to get -EAGAIN for an invalid entry).
 * @param out receives the PTE before the update and its level, or null.
 * @returns 0; -EAGAIN (with `HANDLE_FAULT`) when `addr` is not mapped; -ERANGE.
 * @remarks Mirrors `kvm_pgtable_stage2_mkyoung()` (arch/arm64/kvm/hyp/pgtable.c); v6.10 returns the PTE,
 *   newer kernels nothing; here the PTE goes to `out`. A `dsb(ishst)` follows a successful update.
 */
export function stage2Mkyoung(pgt: KvmPgtable, addr: number, flags: number, out: LeafOut | null): Ret {
  const ret = stage2UpdateLeafAttrs(pgt, addr, 1, S2_AF_LO, 0, 0, 0, out, flags);
  if (ret === 0) mmuOf(pgt).tlb.dsb();
  return ret;
}

/** `struct stage2_age_data`. */
interface Stage2AgeData {
  readonly mkold: boolean;
  young: boolean;
}

/** `stage2_age_walker()`: reports AF, and clears it without TLBI when asked (AF is only a hint). */
function stage2AgeWalker(ctx: VisitCtx<Stage2AgeData>): number {
  const data = ctx.arg;
  const oldLo = ctx.oldLo;
  const newLo = (oldLo & ~S2_AF_LO) >>> 0;
  if (!kvmPteValid(oldLo) || newLo === oldLo) return 0;
  data.young = true;
  if (data.mkold) ctx.mem.writeDesc(ctx.ptep, newLo, ctx.oldHi);
  return 0;
}

/**
 * Whether any valid leaf in the range has its access flag set; with `mkold`, clears those flags (no TLBI: the
 * core code flushes in `clear_flush_young`).
 * @remarks Mirrors `kvm_pgtable_stage2_test_clear_young()` (arch/arm64/kvm/hyp/pgtable.c); a failing walk is a
 *   WARN. The older `kvm_pgtable_stage2_mkold()` is this function with `mkold` true.
 */
export function stage2TestClearYoung(pgt: KvmPgtable, addr: number, size: number, mkold: boolean): boolean {
  const data: Stage2AgeData = { mkold, young: false };
  const walker: Walker<Stage2AgeData> = { cb: stage2AgeWalker, arg: data, flags: WalkFlags.LEAF };
  const ret = kvmPgtableWalk(pgt, addr, size, walker);
  if (ret !== 0) pgt.warn(`kvm_pgtable_stage2_test_clear_young: walk returned ${ret}`);
  return data.young;
}

const relaxOut: LeafOut = { lo: 0, hi: 0, level: 0 };

/**
 * Adds permissions to the leaf mapping `addr` (R → S2AP_R, W → S2AP_W, X → clear XN), in place, then invalidates
 * that IPA (also on -EAGAIN).
 * @param protLo R/W/X to add.
 * @param protHi must be 0: SW bits are refused.
 * @param flags walk flags (`HANDLE_FAULT` makes an unmapped `addr` return -EAGAIN).
 * @returns 0; -EINVAL when SW bits are requested; -EAGAIN (with `HANDLE_FAULT`); -ERANGE.
 * @remarks Mirrors `kvm_pgtable_stage2_relax_perms()` (arch/arm64/kvm/hyp/pgtable.c). On -EAGAIN the kernel's
 *   level is uninitialised; here the invalidation is unhinted (`TLBI_TTL_UNKNOWN`).
 */
export function stage2Relaxperms(pgt: KvmPgtable, addr: number, protLo: number, protHi: number, flags: number): Ret {
  const mmu = mmuOf(pgt);
  if ((protHi & PROT_SW_HI) !== 0) return Err.EINVAL;
  let setLo = 0;
  let clrHi = 0;
  if ((protLo & KvmPgtableProt.R) !== 0) setLo |= S2AP_R_LO;
  if ((protLo & KvmPgtableProt.W) !== 0) setLo |= S2AP_W_LO;
  if ((protLo & KvmPgtableProt.X) !== 0) clrHi |= S2_XN_HI;
  relaxOut.level = 0;
  const ret = stage2UpdateLeafAttrs(pgt, addr, 1, setLo, 0, 0, clrHi, relaxOut, flags);
  if (ret === 0) kvmTlbFlushVmidIpaNsh(mmu.tlb, mmu.vmid, addr, relaxOut.level);
  else if (ret === Err.EAGAIN) kvmTlbFlushVmidIpaNsh(mmu.tlb, mmu.vmid, addr, TLBI_TTL_UNKNOWN);
  return ret;
}

/** `stage2_flush_walker()`. */
function stage2FlushWalker(ctx: VisitCtx<KvmPgtable>): number {
  const pgt = ctx.arg;
  if (!stage2PteCacheable(pgt, ctx.oldLo)) return 0;
  const dc = ctx.mmOps.dcacheCleanInvalPoc;
  if (dc !== undefined) {
    dc.call(ctx.mmOps, kvmPteToPhys(ctx.oldLo, ctx.oldHi, ctx.granule), kvmGranuleSize(ctx.granule, ctx.level));
  }
  return 0;
}

/**
 * Cleans and invalidates to PoC every cacheable mapping in the range (nothing with FWB).
 * @returns 0; -ERANGE.
 * @remarks Mirrors `kvm_pgtable_stage2_flush()` (arch/arm64/kvm/hyp/pgtable.c).
 */
export function stage2Flush(pgt: KvmPgtable, addr: number, size: number): Ret {
  if (stage2HasFwb(pgt)) return 0;
  const walker: Walker<KvmPgtable> = { cb: stage2FlushWalker, arg: pgt, flags: WalkFlags.LEAF };
  return kvmPgtableWalk(pgt, addr, size, walker) as Ret; // JUSTIFY: the flush visitor returns 0.
}

/** `stage2_free_walker()`: drops the reference of each counted entry, and the child table's own reference. */
function stage2FreeWalker(ctx: VisitCtx<null>): number {
  const lo = ctx.oldLo;
  const hi = ctx.oldHi;
  if (!stage2PteIsCounted(lo, hi)) return 0;
  ctx.mmOps.putPage(ctx.ptep);
  if (kvmPteTable(lo, ctx.level)) ctx.mmOps.putPage(kvmPteToPhys(lo, hi, ctx.granule));
  return 0;
}

const freeWalker: Walker<null> = {
  cb: stage2FreeWalker,
  arg: null,
  flags: WalkFlags.LEAF | WalkFlags.TABLE_POST,
};

/**
 * Frees a table already unlinked from its parent (and TLB-invalidated): drops every counted entry's reference
 * and the table's own, which frees all its pages. The entries are not rewritten: nothing can walk them any more.
 * @param level level of the parent entry that pointed at the table.
 * @remarks Mirrors `kvm_pgtable_stage2_free_unlinked()` (arch/arm64/kvm/hyp/pgtable.c), the stage-2
 *   `free_unlinked_table` mm_op.
 */
export function kvmPgtableStage2FreeUnlinked(pgt: KvmPgtable, tablePa: number, level: number): void {
  const ret = kvmPgtableWalkUnlinked(pgt, tablePa, level + 1, freeWalker);
  if (ret !== 0) pgt.warn(`kvm_pgtable_stage2_free_unlinked: walk returned ${ret}`);
  if (pgt.mmOps.pageCount(tablePa) !== 1) pgt.warn('kvm_pgtable_stage2_free_unlinked: table still referenced');
  pgt.mmOps.putPage(tablePa);
}

/**
 * Frees every table page and the pgd. The table must be unreachable by hardware walkers (no TLBI is done).
 * @remarks Mirrors `kvm_pgtable_stage2_destroy()` (arch/arm64/kvm/hyp/pgtable.c).
 */
export function stage2Destroy(pgt: KvmPgtable): void {
  if (pgt.pgd < 0) return;
  const ret = kvmPgtableWalk(pgt, 0, 2 ** pgt.iaBits, freeWalker);
  if (ret !== 0) pgt.warn(`kvm_pgtable_stage2_destroy: walk returned ${ret}`);
  const pgdSz = kvmPgdPages(pgt.granule, pgt.iaBits, pgt.startLevel) * pgtPageSize(pgt.granule);
  pgt.mmOps.freePagesExact(pgt.pgd, pgdSz);
  pgt.pgd = -1;
}

/**
 * Table pages one page-granular fault may need in the worst case: one per level below the start level.
 * @remarks Mirrors `kvm_mmu_cache_min_pages()` (arch/arm64/include/asm/stage2_pgtable.h: `kvm_stage2_levels() − 1`).
 */
export function kvmMmuCacheMinPages(pgt: KvmPgtable): number {
  return KVM_PGTABLE_LAST_LEVEL - pgt.startLevel;
}

/**
 * Upper bound on the table pages a page-granular map of [addr, addr + size) can allocate into an empty table:
 * for each level below the start, one table per spanned entry of the level above. Memcache sizing helper (the
 * multi-page analogue of `kvm_mmu_cache_min_pages()`).
 */
export function stage2EstimatePages(pgt: KvmPgtable, addr: number, size: number): number {
  if (size <= 0) return 0;
  const last = addr + size - 1;
  let n = 0;
  for (let level = pgt.startLevel + 1; level <= KVM_PGTABLE_LAST_LEVEL; level++) {
    const span = 2 ** levelShift(pgt.granule, level - 1);
    n += Math.floor(last / span) - Math.floor(addr / span) + 1;
  }
  return n;
}
