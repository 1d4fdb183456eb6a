/**
 * Boot of the hypervisor: carve the hyp memory out of RAM, build the hyp page pools, the hypervisor's own stage-1
 * and the host stage-2, and hand the result to a `Hyp` (reference pkvm.md §8.1, §4.3, §7.7).
 *
 * Mirrors `__pkvm_init()` / `divide_memory_pool()` / `recreate_hyp_mappings()` / `fix_host_ownership()`
 * (arch/arm64/kvm/hyp/nvhe/setup.c), `kvm_host_prepare_stage2()` (mem_protect.c) and `kvm_get_vtcr()`
 * (arch/arm64/kvm/hyp/pgtable.c), 2022 series. In the model `hyp_vmemmap` and the EL2 text/data are not carved
 * from RAM (they are typed arrays and code), so the carve-out holds the host stage-2 pool and `hpool`.
 */

import { PAGE_SIZE } from '../arch/addr.js';
import { assert } from '../arch/assert.js';
import type { Ret } from '../arch/errno.js';
import type { CpuFeatures } from '../arch/features.js';
import { type AbiProfileName, PROFILES } from '../arch/smccc.js';
import { vtcr } from '../arch/vtcr.js';
import type { PhysMem } from '../mem/phys-mem.js';
import type { S2Mmu } from '../mmu/s2-mmu.js';
import { kvmPgtableHypInit, kvmPgtableHypMap } from '../pgtable/hyp.js';
import { kvmPgtableStage2Init, newKvmPgtable } from '../pgtable/stage2.js';
import type { Tlb } from '../mmu/tlb.js';
import { PAGE_HYP, Stage2Flags } from '../pgtable/types.js';
import type { GuestRunner } from './guest-runner.js';
import { buildHcallTable } from './hcall.js';
import { Hyp, hypVa } from './hyp.js';
import { HypPool } from './hyp-pool.js';
import { HypLock } from './locks.js';
import { hostDonateHyp, hostStage2ForcePte, hostStage2SetOwnerLocked } from './mem-protect.js';
import { PoolMmOps } from './mm-ops.js';
import { pkvmMkstateHi, PageState, PkvmId } from './page-state.js';
import { HypVmemmap } from './vmemmap.js';

/** The hypervisor's configuration, validated by the composition root. */
export interface HypConfig {
  /** Physical memory (RAM and MMIO regions already declared). */
  readonly mem: PhysMem;
  /** CPU features. */
  readonly features: CpuFeatures;
  /** The TLB shared by all CPUs. */
  readonly tlb: Tlb;
  /** Number of physical CPUs. */
  readonly nrCpus: number;
  /** The hyp carve-out: page-aligned PA and page count, inside one RAM region (`hyp_mem_base`/`hyp_mem_size`). */
  readonly carveout: { readonly base: number; readonly nrPages: number };
  /** Each CPU's stage-2 MMU (for guest runs and host accesses), or omitted when only hypercalls are used. */
  readonly mmus?: readonly S2Mmu[];
  /** The guest layer, or omitted. */
  readonly runner?: GuestRunner | null;
  /** ABI profile; default `pkvm-2022`. */
  readonly profile?: AbiProfileName;
}

/** `PTRS_PER_PTE` for 4 KiB pages. */
const PTRS_PER_PTE = 512;
/** `KVM_PGTABLE_MAX_LEVELS`. */
const MAX_LEVELS = 4;
/** The hypervisor's VA size (`hyp_va_bits`); the model's hyp linear map needs PAs below 2^48. */
export const HYP_VA_BITS = 48;

/**
 * Worst-case table pages to map `nrPages` pages at page granularity.
 * Mirrors `__hyp_pgtable_max_pages()` (arch/arm64/include/asm/kvm_pkvm.h).
 */
export function hypPgtableMaxPages(nrPages: number): number {
  let total = 0;
  let n = nrPages;
  for (let i = 0; i < MAX_LEVELS; i++) {
    n = Math.ceil(n / PTRS_PER_PTE);
    total += n;
  }
  return total;
}

/**
 * Pages reserved for the host stage-2: the worst case over all RAM, 1 GiB of MMIO, and a concatenated pgd.
 * Mirrors `host_s2_pgtable_pages()` (arch/arm64/include/asm/kvm_pkvm.h); the 16 pgd pages are the model's
 * explicit allowance for `kvm_pgtable_stage2_pgd_size()`.
 */
export function hostS2PgtablePages(mem: PhysMem): number {
  let res = 0;
  for (const r of mem.regionList) if (r.kind === 'ram') res += hypPgtableMaxPages(r.size / PAGE_SIZE);
  return res + hypPgtableMaxPages((1 << 30) / PAGE_SIZE) + 16;
}

/**
 * VTCR_EL2 for a stage 2 of `physShift` input bits on this CPU: RES1, T0SZ = 64 − physShift, SL0 from the number
 * of levels (at least 2), 4K granule, inner-shareable write-back walks, PS = PARange (capped at 48 bits), HA set
 * (CONFIG_ARM64_HW_AFDBM: "RES0 on CPUs without the support"), VS for 16-bit VMIDs when implemented.
 * Mirrors `kvm_get_vtcr()` (arch/arm64/kvm/hyp/pgtable.c) with `stage2_pgtable_levels()`.
 */
export function kvmGetVtcr(features: CpuFeatures, physShift: number): { lo: number; hi: number } {
  const levels = Math.max(2, Math.floor((physShift - 8) / 9));
  return vtcr({
    t0sz: 64 - physShift,
    sl0: levels - 2,
    irgn0: 1,
    orgn0: 1,
    sh0: 3,
    tg0: '4k',
    ps: Math.min(features.paRange, 5),
    ha: true,
    vs: features.vmid16,
  });
}

/**
 * Boots EL2: builds the pools, the hyp stage-1 (the carve-out mapped OWNED), the host stage-2 (empty: filled lazily
 * by host aborts) with the carve-out annotated as owned by the hypervisor, and the VM table page.
 * Throws {@link InvariantError} on a configuration the composition root should have refused (carve-out not in one
 * RAM region, too small, RAM beyond the hyp VA space).
 * Mirrors `__pkvm_init()` (arch/arm64/kvm/hyp/nvhe/setup.c).
 */
export function createHyp(cfg: HypConfig): Hyp {
  const mem = cfg.mem;
  const warnings: string[] = [];
  const warn = (msg: string): void => {
    warnings.push(msg);
  };
  let minPfn = Number.MAX_SAFE_INTEGER;
  let endPfn = 0;
  for (const r of mem.regionList) {
    if (r.kind !== 'ram') continue;
    minPfn = Math.min(minPfn, r.base / PAGE_SIZE);
    endPfn = Math.max(endPfn, r.end / PAGE_SIZE);
  }
  assert(endPfn > minPfn, 'createHyp: no RAM');
  assert(endPfn * PAGE_SIZE <= 2 ** HYP_VA_BITS, 'createHyp: RAM beyond the hyp VA space');
  const { base, nrPages } = cfg.carveout;
  assert(base % PAGE_SIZE === 0 && nrPages > 0, 'createHyp: carve-out not page aligned');
  const reg = mem.regionOf(base);
  assert(reg !== null && reg.kind === 'ram' && base + nrPages * PAGE_SIZE <= reg.end, 'createHyp: carve-out not in RAM');
  const hostS2Pages = hostS2PgtablePages(mem);
  assert(nrPages >= hostS2Pages + 16, `createHyp: carve-out needs at least ${hostS2Pages + 16} pages`);

  const vmemmap = new HypVmemmap(minPfn, endPfn - minPfn);
  const basePfn = base / PAGE_SIZE;
  const hostS2Pool = new HypPool(vmemmap, mem, basePfn, hostS2Pages, 0);
  const hpool = new HypPool(vmemmap, mem, basePfn + hostS2Pages, nrPages - hostS2Pages, 0);

  const hypPgt = newKvmPgtable(mem, new PoolMmOps(hpool, vmemmap), warn);
  assert(kvmPgtableHypInit(hypPgt, HYP_VA_BITS) === 0, 'createHyp: hyp pgd');
  const mapRet = kvmPgtableHypMap(hypPgt, hypVa(base), nrPages * PAGE_SIZE, base, PAGE_HYP, pkvmMkstateHi(0, PageState.OWNED));
  assert(mapRet === 0, 'createHyp: hyp stage-1 of the carve-out');

  const physShift = Math.min(cfg.features.paBits, 48);
  const hostVtcr = kvmGetVtcr(cfg.features, physShift);
  const hostPgt = newKvmPgtable(mem, new PoolMmOps(hostS2Pool, vmemmap), warn);
  const forcePte = (addr: number, end: number, protLo: number, protHi: number): boolean =>
    hostStage2ForcePte(mem, addr, end, protLo, protHi);
  const initRet = kvmPgtableStage2Init(
    hostPgt,
    { vmid: 0, tlb: cfg.tlb, hasFwb: cfg.features.fwb },
    hostVtcr.lo,
    Stage2Flags.NOFWB | Stage2Flags.IDMAP,
    forcePte,
  );
  assert(initRet === 0, 'createHyp: host stage-2 pgd');

  const profile = PROFILES[cfg.profile ?? 'pkvm-2022'];
  const hyp: Hyp = new Hyp({
    mem,
    features: cfg.features,
    tlb: cfg.tlb,
    profile,
    vmemmap,
    hpool,
    hostS2Pool,
    hostPgt,
    hypPgt,
    hostVtcrLo: hostVtcr.lo,
    hostVtcrHi: hostVtcr.hi,
    nrCpus: cfg.nrCpus,
    carveoutPfn: basePfn,
    carveoutPages: nrPages,
    runner: cfg.runner ?? null,
    mmus: cfg.mmus ?? [],
    hcallTable: buildHcallTable(profile),
    admitHostPage: (pfn: number): Ret => hostDonateHyp(hyp, pfn, 1),
    warnings,
  });

  // fix_host_ownership(): everything the hypervisor maps as OWNED is annotated HYP in the host stage-2.
  hyp.locks.lock(HypLock.HOST);
  const own = hostStage2SetOwnerLocked(hyp, base, nrPages * PAGE_SIZE, PkvmId.HYP);
  hyp.locks.unlock(HypLock.HOST);
  assert(own === 0, 'createHyp: host stage-2 annotation of the carve-out');

  // pkvm_hyp_vm_table_init(): the VM table lives in a page of hpool.
  const tablePfn = hpool.allocPages(0);
  assert(tablePfn >= 0, 'createHyp: VM table page');
  hyp.vmTablePa = tablePfn * PAGE_SIZE;
  return hyp;
}
