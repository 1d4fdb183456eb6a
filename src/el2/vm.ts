/**
 * The hypervisor's per-VM and per-vCPU state (`struct pkvm_hyp_vm`, `struct pkvm_hyp_vcpu`; the 2022 series'
 * "shadow" VM/vCPU). The kernel keeps these structures inside pages the host donated; the model keeps the fields as
 * objects and the donated pages as hyp-owned, zeroed memory, so ownership and page accounting are exact while no EL2
 * state is readable by the host or guest.
 *
 * Mirrors arch/arm64/kvm/hyp/include/nvhe/pkvm.h (UP-6.2 naming, 2022-series fields).
 */

import type { KvmPgtable } from '../pgtable/types.js';
import type { HypPool } from './hyp-pool.js';
import { HypMemcache } from './memcache.js';

/** `KVM_MAX_PVMS`: size of the VM table. */
export const KVM_MAX_PVMS = 255;
/** `HANDLE_OFFSET`: handle of VM table slot 0. */
export const HANDLE_OFFSET = 0x1000;

/** `idx_to_vm_handle()`. */
export function idxToVmHandle(idx: number): number {
  return idx + HANDLE_OFFSET;
}

/** `vm_handle_to_idx()`. */
export function vmHandleToIdx(handle: number): number {
  return handle - HANDLE_OFFSET;
}

/** One hyp vCPU (`struct pkvm_hyp_vcpu`). */
export class HypVcpu {
  /** The VM. */
  readonly vm: HypVm;
  /** Index within the VM (`vcpu_idx`). */
  readonly idx: number;
  /** PA of the host `struct kvm_vcpu` (pinned while the hyp vCPU exists). */
  readonly hostVcpuPa: number;
  /** PA of the donated pages holding this struct. */
  readonly pa: number;
  /** The hyp vCPU's memcache of page-table pages (`vcpu.arch.pkvm_memcache`). */
  readonly memcache = new HypMemcache();
  /** Physical CPU this vCPU is loaded on, or -1. */
  loadedCpu = -1;

  /** @internal created by `__pkvm_init_vcpu`. */
  constructor(vm: HypVm, idx: number, hostVcpuPa: number, pa: number) {
    this.vm = vm;
    this.idx = idx;
    this.hostVcpuPa = hostVcpuPa;
    this.pa = pa;
  }
}

/** One hyp VM (`struct pkvm_hyp_vm`). */
export class HypVm {
  /** Slot in the VM table. */
  readonly idx: number;
  /** Handle returned to the host (`idx + HANDLE_OFFSET`). */
  readonly handle: number;
  /** VMID (`idx + 1`; 0 is the host). */
  readonly vmid: number;
  /** PA of the host `struct kvm` (pinned while the VM exists). */
  readonly hostKvmPa: number;
  /** A protected VM (`kvm.arch.pkvm.enabled` copied at init). */
  readonly isProtected: boolean;
  /** `kvm.created_vcpus`, read once from the host at init. */
  readonly createdVcpus: number;
  /** PA of the donated VM struct pages. */
  readonly pa: number;
  /** Size in bytes of the VM struct area. */
  readonly size: number;
  /** PA of the donated pgd pages. */
  readonly pgdPa: number;
  /** Size of the pgd in bytes. */
  readonly pgdSize: number;
  /** VTCR_EL2 bits[31:0] of the guest stage-2 (the host's, §4.3). */
  readonly vtcrLo: number;
  /** VTCR_EL2 bits[63:32]. */
  readonly vtcrHi: number;
  /** VTCR_EL2 as halves, for the MMU's register writes on a world switch. */
  readonly vtcr: { readonly lo: number; readonly hi: number };
  /** VTTBR_EL2 of the guest stage-2 (pgd, VMID); set once the stage-2 exists. */
  vttbr: { readonly lo: number; readonly hi: number } = { lo: 0, hi: 0 };
  /** The VM's page pool (over the pgd pages, plus table pages freed by the guest stage-2). */
  readonly pool: HypPool;
  /** The guest stage-2 (`vm->pgt`). */
  readonly pgt: KvmPgtable;
  /** Initialised vCPUs (`vcpus[0..nr_vcpus)`). */
  readonly vcpus: HypVcpu[] = [];

  /** @internal created by `__pkvm_init_vm`. */
  constructor(
    idx: number,
    hostKvmPa: number,
    isProtected: boolean,
    createdVcpus: number,
    pa: number,
    size: number,
    pgdPa: number,
    pgdSize: number,
    vtcrLo: number,
    vtcrHi: number,
    pool: HypPool,
    pgt: KvmPgtable,
  ) {
    this.idx = idx;
    this.handle = idxToVmHandle(idx);
    this.vmid = idx + 1;
    this.hostKvmPa = hostKvmPa;
    this.isProtected = isProtected;
    this.createdVcpus = createdVcpus;
    this.pa = pa;
    this.size = size;
    this.pgdPa = pgdPa;
    this.pgdSize = pgdSize;
    this.vtcrLo = vtcrLo;
    this.vtcrHi = vtcrHi;
    this.vtcr = { lo: vtcrLo, hi: vtcrHi };
    this.pool = pool;
    this.pgt = pgt;
  }

  /** `nr_vcpus`: vCPUs initialised so far. */
  get nrVcpus(): number {
    return this.vcpus.length;
  }
}
