/**
 * `Hyp`: all EL2 state of one machine, the composition of what the kernel keeps in globals and per-CPU variables
 * at EL2 (`host_mmu`, `pkvm_pgtable`, `hpool`, `host_s2_pool`, `vm_table`, `hyp_vmemmap`, `loaded_hyp_vcpu`, the
 * host CPU contexts), plus the recorded warnings (the kernel's `WARN_ON`, DESIGN.md §4).
 *
 * Built by `createHyp()` (el2/setup.ts, the analogue of `__pkvm_init`). Hypercalls enter through `hostHvc()`
 * (el2/trap.ts); host memory accesses through `hostAccess()`. The read-only inspection methods at the end serve
 * tests, the ghost-state invariants (check/) and the scenario harness; EL2 code never calls them.
 */

import { PAGE_SIZE } from '../arch/addr.js';
import { errnoName, type Ret } from '../arch/errno.js';
import { vttbr } from '../arch/vttbr.js';
import type { CpuFeatures } from '../arch/features.js';
import { RegFile } from '../arch/regs.js';
import type { HcallProfile } from '../arch/smccc.js';
import type { PhysMem } from '../mem/phys-mem.js';
import { El2ExceptionState } from '../mmu/abort.js';
import type { S2Mmu } from '../mmu/s2-mmu.js';
import type { Tlb } from '../mmu/tlb.js';
import { type KvmPgtable, type LeafOut, newLeafOut } from '../pgtable/types.js';
import { kvmPgdPages, kvmPgtableGetLeaf, kvmPgtableWalk, type VisitCtx, type Walker } from '../pgtable/walk.js';
import { WalkFlags } from '../pgtable/types.js';
import { kvmPteTable, kvmPteToPhys, kvmPteValid } from '../pgtable/pte.js';
import type { GuestRunner } from './guest-runner.js';
import type { HypPool } from './hyp-pool.js';
import { HypLocks } from './locks.js';
import { PageState, pkvmGetstateHi, PkvmId } from './page-state.js';
import { HypPageFlag, type HypVmemmap } from './vmemmap.js';
import { HypVcpu, type HypVm, KVM_MAX_PVMS, vmHandleToIdx } from './vm.js';

/** The hyp linear map: EL2 VA of a PA (`__hyp_va`). The model's offset is 0; no state depends on its value. */
export function hypVa(pa: number): number {
  return pa;
}

/** One physical CPU as EL2 sees it. */
export class HypCpu {
  /** CPU number. */
  readonly id: number;
  /** The host's register context on this CPU (`host_ctxt`): x0…x30 as halves. */
  readonly regs = new RegFile();
  /** ESR/FAR/HPFAR/ELR/SPSR_EL2 of the last exception taken to EL2 on this CPU. */
  readonly exc = new El2ExceptionState();
  /** `loaded_hyp_vcpu`: the hyp vCPU loaded on this CPU, or null. */
  loadedVcpu: HypVcpu | null = null;
  /** HCR_EL2.VM is set: the host stage-2 is enabled on this CPU (`__pkvm_prot_finalize` done). */
  hostS2Enabled = false;
  /** This CPU's stage-2 MMU, or null when the machine has none (hypercall-only use). */
  readonly mmu: S2Mmu | null;
  /** ESR_EL1 of the last abort injected into the host on this CPU (0 if none): `host_inject_abort()`. */
  injectedEsr = 0;
  /** FAR_EL1 of the last injected abort. */
  injectedFar = 0;
  /** Aborts injected into the host on this CPU. */
  injectedAborts = 0;

  /** @param id CPU number. @param mmu its MMU or null. */
  constructor(id: number, mmu: S2Mmu | null) {
    this.id = id;
    this.mmu = mmu;
  }
}

/** Everything `new Hyp()` is given; `createHyp()` builds it. */
export interface HypParts {
  readonly mem: PhysMem;
  readonly features: CpuFeatures;
  readonly tlb: Tlb;
  readonly profile: HcallProfile;
  readonly vmemmap: HypVmemmap;
  readonly hpool: HypPool;
  readonly hostS2Pool: HypPool;
  readonly hostPgt: KvmPgtable;
  readonly hypPgt: KvmPgtable;
  readonly hostVtcrLo: number;
  readonly hostVtcrHi: number;
  readonly nrCpus: number;
  readonly carveoutPfn: number;
  readonly carveoutPages: number;
  readonly runner: GuestRunner | null;
  readonly mmus: readonly S2Mmu[];
  readonly hcallTable: readonly (HcallHandlerRef | null)[];
  readonly admitHostPage: (pfn: number) => Ret;
  readonly warnings: string[];
}

/** A hypercall handler as the dispatch table stores it (see el2/hcall.ts). */
export type HcallHandlerRef = (hyp: Hyp, cpu: HypCpu) => void;

/** The hypervisor at EL2 of one machine. */
export class Hyp {
  /** Physical memory. */
  readonly mem: PhysMem;
  /** CPU features (ID_AA64MMFR*_EL1 as decoded). */
  readonly features: CpuFeatures;
  /** The TLB, reached through its maintenance interface. */
  readonly tlb: Tlb;
  /** The host hypercall ABI in force. */
  readonly profile: HcallProfile;
  /** `hyp_vmemmap`. */
  readonly vmemmap: HypVmemmap;
  /** `hpool`: the hypervisor's general page pool (its stage-1 tables, the VM table). */
  readonly hpool: HypPool;
  /** `host_s2_pool`: pages for the host stage-2 tables. */
  readonly hostS2Pool: HypPool;
  /** `host_mmu.pgt`: the host stage-2 (identity map, owner annotations). */
  readonly hostPgt: KvmPgtable;
  /** `pkvm_pgtable`: the hypervisor's stage-1. */
  readonly hypPgt: KvmPgtable;
  /** `host_mmu.arch.vtcr` as halves (for the MMU's register writes). */
  readonly hostVtcr: { readonly lo: number; readonly hi: number };
  /** VTTBR_EL2 of the host stage-2 (pgd, VMID 0). */
  readonly hostVttbr: { readonly lo: number; readonly hi: number };
  /** `admit_host_page()` for this hypervisor: a host→hyp donation of one page (created once, not per call). */
  readonly admitHostPage: (pfn: number) => Ret;
  /** `host_mmu.arch.vtcr` bits[31:0]. */
  readonly hostVtcrLo: number;
  /** `host_mmu.arch.vtcr` bits[63:32]. */
  readonly hostVtcrHi: number;
  /** First pfn of the hypervisor's carve-out (`hyp_mem_base`). */
  readonly carveoutPfn: number;
  /** Pages in the carve-out. */
  readonly carveoutPages: number;
  /** PA of the hpool page holding the kernel's `vm_table` array (the slots themselves are {@link vmTable}). */
  vmTablePa = -1;
  /** `vm_table`: VM slots (null = free). */
  readonly vmTable: (HypVm | null)[];
  /** Per-CPU state. */
  readonly cpus: HypCpu[];
  /** Lock bookkeeping. */
  readonly locks = new HypLocks();
  /** Recorded `WARN_ON`s; tests require it to stay empty. */
  readonly warnings: string[];
  /** Runs guest vCPUs for `__kvm_vcpu_run` (the guest layer implements it), or null. */
  runner: GuestRunner | null;
  /** The profile's handlers by function number (`host_hcall[]`). */
  readonly hcallTable: readonly (HcallHandlerRef | null)[];
  /** Bytes of private hyp VA handed out by `__pkvm_create_private_mapping`. */
  privateVaUsed = 0;
  /** The `kvm_protected_mode_initialized` static key (flipped by the first `__pkvm_prot_finalize`). */
  protectedModeInitialized = false;
  /** Hypercalls dispatched (statistics). */
  hcalls = 0;
  /** Host stage-2 aborts handled (statistics). */
  hostAborts = 0;

  /** @internal use `createHyp()`. */
  constructor(p: HypParts) {
    this.mem = p.mem;
    this.features = p.features;
    this.tlb = p.tlb;
    this.profile = p.profile;
    this.vmemmap = p.vmemmap;
    this.hpool = p.hpool;
    this.hostS2Pool = p.hostS2Pool;
    this.hostPgt = p.hostPgt;
    this.hypPgt = p.hypPgt;
    this.hostVtcrLo = p.hostVtcrLo;
    this.hostVtcrHi = p.hostVtcrHi;
    this.hostVtcr = { lo: p.hostVtcrLo, hi: p.hostVtcrHi };
    this.hostVttbr = vttbr({ baddr: p.hostPgt.pgd, vmid: 0 });
    this.admitHostPage = p.admitHostPage;
    this.carveoutPfn = p.carveoutPfn;
    this.carveoutPages = p.carveoutPages;
    this.runner = p.runner;
    this.warnings = p.warnings;
    this.hcallTable = p.hcallTable;
    this.vmTable = new Array<HypVm | null>(KVM_MAX_PVMS).fill(null);
    this.cpus = [];
    for (let i = 0; i < p.nrCpus; i++) this.cpus.push(new HypCpu(i, p.mmus[i] ?? null));
  }

  /**
   * The kernel's `WARN_ON(ret)`: records a warning when `ret` is non-zero (a step failed after every check
   * passed) and returns whether it did.
   */
  warnOn(ret: number, what = 'WARN_ON'): boolean {
    if (ret === 0) return false;
    this.warnings.push(`${what}: ${errnoName(ret)}`);
    return true;
  }

  /** Records a warning message. */
  warn(msg: string): void {
    this.warnings.push(msg);
  }

  /** `get_vm_by_handle()`: the VM of a handle, or null (no lock assertion: callers hold `vm_table_lock`). */
  vmByHandle(handle: number): HypVm | null {
    const idx = vmHandleToIdx(handle);
    if (!Number.isInteger(idx) || idx < 0 || idx >= KVM_MAX_PVMS) return null;
    return this.vmTable[idx] ?? null;
  }

  /** True when `pa` lies in a RAM region (the hypervisor's copy of the memblock list: `addr_is_memory()`). */
  isMemory(pa: number): boolean {
    return this.mem.isRam(pa);
  }

  /** True when the pfn range [pfn, pfn + nrPages) is memory with a `hyp_page` (`pfn_range_is_valid`-style). */
  pfnRangeIsValid(pfn: number, nrPages: number): boolean {
    if (!Number.isSafeInteger(pfn) || !Number.isSafeInteger(nrPages) || pfn < 0 || nrPages < 1) return false;
    const last = pfn + nrPages - 1;
    if (!this.vmemmap.has(pfn) || !this.vmemmap.has(last)) return false;
    for (let p = pfn; p <= last; p++) if (!this.mem.isRam(p * PAGE_SIZE)) return false;
    return true;
  }

  // ---- Inspection (tests, check/, harness) -------------------------------------------------------------------

  private readonly leaf: LeafOut = newLeafOut();

  /** The host stage-2 entry covering `pa` (zero halves when the walk fails). */
  hostLeaf(pa: number, out: LeafOut): void {
    if (kvmPgtableGetLeaf(this.hostPgt, pa, out) !== 0) {
      out.lo = 0;
      out.hi = 0;
    }
  }

  /** The host's view of the page at `pa` (valid → SW bits; invalid non-zero → NOPAGE; zero → OWNED). */
  hostState(pa: number): PageState {
    this.hostLeaf(pa, this.leaf);
    const l = this.leaf;
    if (kvmPteValid(l.lo)) return pkvmGetstateHi(l.hi);
    return l.lo === 0 && l.hi === 0 ? PageState.OWNED : PageState.NOPAGE;
  }

  /** The owner annotated in the host stage-2 for `pa` ({@link PkvmId}); HOST when the entry is valid or zero. */
  hostOwner(pa: number): number {
    this.hostLeaf(pa, this.leaf);
    const l = this.leaf;
    if (kvmPteValid(l.lo) || (l.lo === 0 && l.hi === 0)) return PkvmId.HOST;
    return (l.lo >>> 2) & 0xff;
  }

  /** The hypervisor's view of the page at `pa` (its stage-1 at `hypVa(pa)`: invalid → NOPAGE, else SW bits). */
  hypState(pa: number): PageState {
    if (kvmPgtableGetLeaf(this.hypPgt, hypVa(pa), this.leaf) !== 0) return PageState.NOPAGE;
    return kvmPteValid(this.leaf.lo) ? pkvmGetstateHi(this.leaf.hi) : PageState.NOPAGE;
  }

  /** The guest stage-2 entry of VM `handle` covering `ipa`; false when the VM or the walk does not exist. */
  guestLeaf(handle: number, ipa: number, out: LeafOut): boolean {
    const vm = this.vmByHandle(handle);
    return vm !== null && vm.pgt.pgd >= 0 && kvmPgtableGetLeaf(vm.pgt, ipa, out) === 0;
  }

  /** A guest's view of its page at `ipa` (invalid → NOPAGE, else SW bits). */
  guestState(handle: number, ipa: number): PageState {
    if (!this.guestLeaf(handle, ipa, this.leaf)) return PageState.NOPAGE;
    return kvmPteValid(this.leaf.lo) ? pkvmGetstateHi(this.leaf.hi) : PageState.NOPAGE;
  }

  /** `hyp_page.refcount` of the page at `pa` (pins of shared pages; table-page references), 0 outside RAM. */
  pageRefcount(pa: number): number {
    const pfn = Math.floor(pa / PAGE_SIZE);
    return this.vmemmap.has(pfn) ? this.vmemmap.pageCount(pfn) : 0;
  }

  /** `hyp_page.flags` of the page at `pa` ({@link HypPageFlag} bits). */
  pageFlags(pa: number): number {
    const pfn = Math.floor(pa / PAGE_SIZE);
    return this.vmemmap.has(pfn) ? this.vmemmap.flags[this.vmemmap.idx(pfn)]! : 0; // JUSTIFY: has() checked.
  }

  /** True when the host-shared page at `pa` is pinned by EL2 (`hyp_pin_shared_mem`): shared and refcount > 0. */
  isPinnedByHyp(pa: number): boolean {
    return this.hostState(pa) === PageState.SHARED_OWNED && this.pageRefcount(pa) > 0;
  }

  /** Live VMs. */
  liveVms(): HypVm[] {
    const out: HypVm[] = [];
    for (const vm of this.vmTable) if (vm !== null) out.push(vm);
    return out;
  }

  /** PAs of every page held in a hyp vCPU memcache. */
  memcachePages(): number[] {
    const out: number[] = [];
    const cell = { lo: 0, hi: 0 };
    for (const vm of this.vmTable) {
      if (vm === null) continue;
      for (const vcpu of vm.vcpus) {
        let pa = vcpu.memcache.head;
        for (let i = 0; i < vcpu.memcache.nrPages; i++) {
          out.push(pa);
          this.mem.read64(pa, cell);
          pa = cell.hi * 0x1_0000_0000 + cell.lo;
        }
      }
    }
    return out;
  }

  /** PAs of every table page of `pgt` (pgd pages included), by a TABLE_PRE walk. */
  tablePages(pgt: KvmPgtable): number[] {
    const out: number[] = [];
    if (pgt.pgd < 0) return out;
    const walker: Walker<number[]> = { cb: collectTables, arg: out, flags: WalkFlags.TABLE_PRE };
    kvmPgtableWalk(pgt, 0, 2 ** pgt.iaBits, walker);
    const pgdPages = kvmPgdPages(pgt.granule, pgt.iaBits, pgt.startLevel);
    for (let i = 0; i < pgdPages; i++) out.push(pgt.pgd + i * PAGE_SIZE);
    return out;
  }

  /** Counts of RAM pages by host state, over every RAM region (slow: for tests and summaries). */
  countHostStates(): Record<'OWNED' | 'SHARED_OWNED' | 'SHARED_BORROWED' | 'NOPAGE', number> {
    const c = { OWNED: 0, SHARED_OWNED: 0, SHARED_BORROWED: 0, NOPAGE: 0 };
    for (const r of this.mem.regionList) {
      if (r.kind !== 'ram') continue;
      for (let pa = r.base; pa < r.end; pa += PAGE_SIZE) {
        const s = this.hostState(pa);
        if (s === PageState.OWNED) c.OWNED++;
        else if (s === PageState.SHARED_OWNED) c.SHARED_OWNED++;
        else if (s === PageState.SHARED_BORROWED) c.SHARED_BORROWED++;
        else c.NOPAGE++;
      }
    }
    return c;
  }

  /** Pages flagged PENDING_RECLAIM in `hyp_vmemmap`. */
  pendingReclaimPages(): number {
    let n = 0;
    const f = this.vmemmap.flags;
    for (let i = 0; i < f.length; i++) if ((f[i]! & HypPageFlag.PENDING_RECLAIM) !== 0) n++; // JUSTIFY: i < length.
    return n;
  }
}

function collectTables(ctx: VisitCtx<number[]>): number {
  if (kvmPteTable(ctx.oldLo, ctx.level)) ctx.arg.push(kvmPteToPhys(ctx.oldLo, ctx.oldHi, ctx.granule));
  return 0;
}
