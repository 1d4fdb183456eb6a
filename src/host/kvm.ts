/**
 * KVM at EL1 in protected mode: the host kernel's side of VM and vCPU lifecycle (arch/arm64/kvm/arm.c,
 * arch/arm64/kvm/pkvm.c, 2022 series / CORE naming; pkvm.md §4, §5.2, §6). The host reaches EL2 only through
 * hypercalls ({@link HypCaller}) and its own RAM only through the host stage-2 ({@link HostRam}).
 *
 * The host `struct kvm` and each `struct kvm_vcpu` live in one host page each, shared with EL2
 * (`kvm_share_hyp()`), holding the fields EL2 reads at the offsets `arch/smccc.ts` fixes ({@link HOST_KVM},
 * {@link HOST_VCPU}). The hyp VM is created lazily on the first KVM_RUN, as `pkvm_create_hyp_vm()` is: the host
 * allocates the pgd and the hyp VM/vCPU areas, issues `__pkvm_init_vm` / `__pkvm_init_vcpu`, and EL2 takes the
 * pages by donation. Teardown follows V1 `kvm_shadow_destroy()`: `__pkvm_teardown_vm`, free the teardown memcache,
 * then for every pinned page reclaim it, uncharge it and unpin it.
 */

import { PAGE_SIZE, paToPfn } from '../arch/addr.js';
import { Err, errnoName, type Ret } from '../arch/errno.js';
import { AbiProfileName, HOST_KVM, HOST_VCPU, hypVcpuSize, hypVmSize, type HcallProfile } from '../arch/smccc.js';
import type { PhysMem } from '../mem/phys-mem.js';
import { GupStats, unpinUserPages } from './gup.js';
import { HostPages, type PaRange } from './host-pages.js';
import { HostRam } from './host-ram.js';
import { HypCaller } from './hyp-call.js';
import { KernelLog } from './klog.js';
import { HostMemcache } from './memcache.js';
import { accountLockedVm } from './memlock.js';
import { PkvmMmuNotifier } from './mmu-notifier.js';
import { PinnedPages } from './pinned-pages.js';
import type { HostMemPort, HvcConduit } from './ports.js';
import { stage2PgdSize } from './stage2-geom.js';
import { Memslots, type Mm } from './vmm-mem.js';

/** One-page PA list for dropping the reference of an unshared page (teardown, MMU notifier). */
const unshareScratch = new Float64Array(1);

/** What the composition root gives the host kernel. */
export interface KvmHostOptions {
  /** Physical memory. */
  readonly mem: PhysMem;
  /** The host stage-2 check (EL2's host-abort handler). */
  readonly port: HostMemPort;
  /** The HVC path to EL2. */
  readonly conduit: HvcConduit;
  /** The hypercall numbering of the running hypervisor. */
  readonly profile: HcallProfile;
  /** RAM the host owns: all RAM minus the hypervisor's carve-out. */
  readonly ram: readonly PaRange[];
  /** `kvm_ipa_limit`: the host's PA range in bits; pKVM guests use it as their IPA size (V1 33/89). */
  readonly ipaBits: number;
}

/** The host kernel with KVM in protected mode. */
export class KvmHost {
  /** Warnings, oopses and signals. */
  readonly log = new KernelLog();
  /** The host page allocator and `struct page` array. */
  readonly pages: HostPages;
  /** Host accesses to RAM through the host stage-2. */
  readonly ram: HostRam;
  /** Hypercalls. */
  readonly hyp: HypCaller;
  /** GUP and migration counters. */
  readonly gup = new GupStats();
  /** Guest IPA size in bits (= the host's PA range). */
  readonly ipaBits: number;
  /** VMs created, in order. */
  readonly vms: Kvm[] = [];
  /** The vCPU loaded on each physical CPU (the host's view of EL2's `loaded_hyp_vcpu`), or null. */
  readonly loadedVcpu: (KvmVcpu | null)[] = [];
  /**
   * The hypervisor's ABI shares np-guest memory page by page (`__pkvm_host_share_guest` family, Linux v6.14+) rather
   * than mapping pinned pages (`__pkvm_host_map_guest`): the host runs the upstream fault, MMU-notifier and teardown
   * paths. Chosen from the profile once, as the kernel source is built for one ABI.
   */
  readonly npGuests: boolean;

  /** @param opts the ports and layout, validated by the caller (a bad layout throws InvariantError). */
  constructor(opts: KvmHostOptions) {
    this.pages = new HostPages(opts.ram);
    this.ram = new HostRam(opts.mem, opts.port, this.log);
    this.hyp = new HypCaller(opts.conduit, opts.profile, this.log);
    this.ipaBits = opts.ipaBits;
    this.npGuests = opts.profile.name === AbiProfileName.UPSTREAM_6_16;
  }

  /**
   * `KVM_CREATE_VM` followed by `KVM_CREATE_VCPU` × `nrVcpus`: allocates the host `struct kvm` and `struct
   * kvm_vcpu` pages, fills the fields EL2 reads and shares each page with EL2.
   *
   * Mirrors `kvm_arch_init_vm()` and `kvm_arch_vcpu_create()` (arch/arm64/kvm/arm.c) with their `kvm_share_hyp()`.
   * @param cpu CPU the VMM thread runs on.
   * @param mm the VMM's address space (the VM's memory comes from it).
   * @param nrVcpus number of vCPUs, ≥ 1.
   * @param isProtected a protected VM (`KVM_VM_TYPE_ARM_PROTECTED`): EL2 donates rather than shares pages.
   * @returns the VM, or -EINVAL for a bad vCPU count, -ENOMEM when host pages run out, or the errno of a refused
   *   `__pkvm_host_share_hyp` (everything allocated so far is released). Under the `upstream-6.16` ABI a protected
   *   VM is -EINVAL: v6.16 has no protected-guest memory hypercalls and no `KVM_VM_TYPE_ARM_PROTECTED`, so the type
   *   bit is one `kvm_init_stage2_mmu()` (arch/arm64/kvm/mmu.c) rejects (`type & ~KVM_VM_TYPE_ARM_IPA_SIZE_MASK`).
   */
  createVm(cpu: number, mm: Mm, nrVcpus: number, isProtected: boolean): Kvm | Err {
    // KVM_MAX_VCPUS is 512 on arm64 (arch/arm64/include/asm/kvm_host.h).
    if (!Number.isSafeInteger(nrVcpus) || nrVcpus < 1 || nrVcpus > 512) return Err.EINVAL;
    if (isProtected && this.npGuests) return Err.EINVAL;
    const kvmPa = this.allocSharedStruct(cpu);
    if (kvmPa < 0) return kvmPa as Err;
    const ok =
      this.ram.write64(cpu, kvmPa + HOST_KVM.CREATED_VCPUS, nrVcpus, 0) &&
      this.ram.write64(cpu, kvmPa + HOST_KVM.PROTECTED, isProtected ? 1 : 0, 0);
    const kvm = new Kvm(this, mm, kvmPa, isProtected);
    if (!ok) {
      kvm.releaseStructs(cpu);
      return Err.EFAULT;
    }
    for (let i = 0; i < nrVcpus; i++) {
      const pa = this.allocSharedStruct(cpu);
      if (pa < 0 || !this.ram.write64(cpu, pa + HOST_VCPU.VCPU_IDX, i, 0)) {
        kvm.releaseStructs(cpu);
        if (pa >= 0) this.releaseSharedStruct(cpu, pa);
        return pa < 0 ? (pa as Err) : Err.EFAULT;
      }
      kvm.vcpus.push(new KvmVcpu(kvm, i, pa));
    }
    mm.notifiers.push(kvm.notifier);
    this.vms.push(kvm);
    return kvm;
  }

  /**
   * Allocates a zeroed host page and shares it with EL2 (`kvm_share_hyp()` → `__pkvm_host_share_hyp`).
   * @returns its PA, or -ENOMEM / -EFAULT / the hypercall's errno.
   */
  private allocSharedStruct(cpu: number): number {
    const pa = this.pages.allocPage();
    if (pa < 0) return Err.ENOMEM;
    if (!this.ram.zeroPage(cpu, pa)) {
      this.pages.freePage(pa);
      return Err.EFAULT;
    }
    const ret = this.hyp.call(cpu, '__pkvm_host_share_hyp', paToPfn(pa));
    if (ret !== 0) {
      this.pages.freePage(pa);
      return ret;
    }
    return pa;
  }

  /**
   * Unshares a struct page from EL2 (`kvm_unshare_hyp()` → `__pkvm_host_unshare_hyp`) and frees it. A refusal
   * (EL2 still pins it) is a `WARN_ON` and the page is leaked, as the kernel would rather leak than reuse it.
   * @internal
   */
  releaseSharedStruct(cpu: number, pa: number): void {
    const ret = this.hyp.call(cpu, '__pkvm_host_unshare_hyp', paToPfn(pa));
    if (ret !== 0) {
      this.log.warnOn(true, `kvm_unshare_hyp(0x${pa.toString(16)}): ${errnoName(ret)}`);
      return;
    }
    this.pages.freePage(pa);
  }

  /**
   * `alloc_pages_exact(nrPages * PAGE_SIZE)`: `nrPages` contiguous free pages aligned to the next power of two
   * (the buddy order the kernel allocates before trimming the tail).
   * @returns the PA of the first page, or -1.
   */
  allocPagesExact(nrPages: number): number {
    let order = 1;
    while (order < nrPages) order *= 2;
    const p = this.pages;
    // Candidates are tested in PA space: a range need not start on an `order` boundary. Linear, once per VM.
    for (let first = 0; first + nrPages <= p.nrPages; first++) {
      const base = p.paOf(first);
      if (base % (order * PAGE_SIZE) !== 0) continue;
      let ok = true;
      for (let i = 0; i < nrPages && ok; i++) ok = p.paOf(first + i) === base + i * PAGE_SIZE && !p.isAllocated(base + i * PAGE_SIZE);
      if (!ok) continue;
      for (let i = 0; i < nrPages; i++) {
        if (!p.claimPage(base + i * PAGE_SIZE)) {
          for (let j = 0; j < i; j++) p.freePage(base + j * PAGE_SIZE);
          ok = false;
          break;
        }
      }
      if (ok) return base;
    }
    return -1;
  }

  /** `free_pages_exact()`. */
  freePagesExact(pa: number, nrPages: number): void {
    for (let i = 0; i < nrPages; i++) this.pages.freePage(pa + i * PAGE_SIZE);
  }
}

/** Counters of one VM's fault handling. */
export class KvmStats {
  /** Stage-2 abort exits handled (`kvm_handle_guest_abort`). */
  guestAborts = 0;
  /** Calls of `pkvm_mem_abort`. */
  memAborts = 0;
  /** Pages mapped into the guest (map hypercall succeeded). */
  mapped = 0;
  /** Map hypercalls that lost a race (-EPERM → -EAGAIN → retry). */
  eagain = 0;
  /** MMIO exits to the VMM. */
  mmioExits = 0;
  /** SIGBUS signals for poisoned memory. */
  sigbus = 0;
  /** Pins leaked on the -EIO path (V1 quirk, see `pkvmMemAbort`). */
  leakedPins = 0;
  /** Exceptions the host injected into the guest (external, prefetch or data abort). */
  injected = 0;
  /** Pages reclaimed at teardown (pkvm-2022), or unshared at teardown or by the MMU notifier (upstream-6.16). */
  reclaimed = 0;
}

/** One VM on the host (`struct kvm` with its `arch.pkvm` part). */
export class Kvm {
  /** The host kernel. */
  readonly host: KvmHost;
  /** The VMM's address space. */
  readonly mm: Mm;
  /** Guest memory map. */
  readonly memslots = new Memslots();
  /** PA of the host `struct kvm` page (shared with EL2). */
  readonly structPa: number;
  /** A protected VM. */
  readonly isProtected: boolean;
  /** vCPUs. */
  readonly vcpus: KvmVcpu[] = [];
  /** `kvm->arch.pkvm.handle`: the hyp VM handle, 0 until created. */
  handle = 0;
  /** The VM was destroyed. */
  destroyed = false;
  /**
   * `kvm->arch.pkvm.pinned_pages` (pkvm-2022); under the `upstream-6.16` ABI the host's `pkvm_mappings` tree of
   * shared pages (`struct pkvm_mapping` {gfn, pfn, nr_pages = 1}, arch/arm64/kvm/pkvm.c).
   */
  readonly pinned: PinnedPages;
  /** `kvm->arch.pkvm.teardown_mc`, embedded in the host struct. */
  readonly teardownMc: HostMemcache;
  /** The MMU notifier KVM registered on the VMM's mm (ignored by pkvm-2022; unshares under upstream-6.16). */
  readonly notifier: PkvmMmuNotifier;
  /** `kvm->mmu_lock` held for write (bookkeeping). */
  mmuLocked = false;
  /** Fault-handling counters. */
  readonly stats = new KvmStats();
  /** When non-null, the steps of the fault and teardown paths are appended (tests, `--trace`). */
  trace: string[] | null = null;
  private hypVmPa = -1;
  private hypVmPages = 0;
  private pgdPa = -1;
  private pgdPages = 0;

  /** @internal created by {@link KvmHost.createVm}. */
  constructor(host: KvmHost, mm: Mm, structPa: number, isProtected: boolean) {
    this.host = host;
    this.mm = mm;
    this.structPa = structPa;
    this.isProtected = isProtected;
    this.pinned = new PinnedPages(host.pages);
    this.teardownMc = new HostMemcache(host.ram, structPa + HOST_KVM.TEARDOWN_MC_HEAD);
    this.notifier = new PkvmMmuNotifier(host.npGuests ? this : null);
  }

  /**
   * The MMU notifier's unmap of [start, end) of the VMM's address space under the `upstream-6.16` ABI: every
   * tracked mapping whose host address lies in the range is unshared from the guest and its page reference dropped.
   *
   * Mirrors `kvm_unmap_gfn_range()` → `pkvm_pgtable_stage2_unmap()` → `__pkvm_pgtable_stage2_unmap()`
   * (arch/arm64/kvm/pkvm.c, v6.16): `__pkvm_host_unshare_guest(handle, gfn, nr_pages)` per mapping, `WARN_ON` and
   * stop on error. The kernel runs it on whichever CPU the mm path runs; the model uses CPU 0.
   */
  unmapHvaRange(start: number, end: number): void {
    if (this.destroyed || this.handle === 0) return;
    for (let i = 0; i < this.pinned.count; ) {
      const gfn = this.pinned.gfnAt(i);
      const hva = this.gpaToHva(gfn * PAGE_SIZE);
      if (hva < start || hva >= end) {
        i++;
        continue;
      }
      if (this.trace !== null) this.step(`__pkvm_host_unshare_guest gfn 0x${gfn.toString(16)}`);
      if (!this.unshareAt(0, i)) return;
    }
  }

  /**
   * Unshares tracked mapping `i` (`__pkvm_host_unshare_guest(handle, gfn, 1)`), drops its page reference and
   * removes it. A refusal is a `WARN_ON` and the mapping stays tracked, as `__pkvm_pgtable_stage2_unmap()` does.
   * @returns true when unshared.
   */
  private unshareAt(cpu: number, i: number): boolean {
    const host = this.host;
    const pa = this.pinned.paAt(i);
    const gfn = this.pinned.gfnAt(i);
    const r = host.hyp.call(cpu, '__pkvm_host_unshare_guest', this.handle, gfn, 1);
    if (host.log.warnOn(r !== 0, `__pkvm_host_unshare_guest(gfn 0x${gfn.toString(16)}): ${errnoName(r)}`)) return false;
    unshareScratch[0] = pa;
    unpinUserPages(this.mm, unshareScratch, 1, true, host.gup);
    this.pinned.removeAt(i);
    this.stats.reclaimed++;
    return true;
  }

  /**
   * The VMM address backing guest address `ipa` (`gfn_to_hva()` plus the page offset), or -1 outside the memslots.
   * For harnesses that turn guest addresses into host events (munmap, NUMA balancing of guest memory).
   */
  gpaToHva(ipa: number): number {
    const gfn = Math.floor(ipa / PAGE_SIZE);
    const slot = this.memslots.find(gfn);
    return slot < 0 ? -1 : this.memslots.hvaOf(slot, gfn) + (ipa % PAGE_SIZE);
  }

  /** Appends a step to the trace when tracing. */
  step(s: string): void {
    if (this.trace !== null) this.trace.push(s);
  }

  /**
   * Creates the hyp VM and its vCPUs at EL2.
   *
   * Mirrors `__pkvm_create_hyp_vm()` (arch/arm64/kvm/pkvm.c): pgd of `kvm_pgtable_stage2_pgd_size()` bytes and
   * the hyp VM area via `alloc_pages_exact()`, `__pkvm_init_vm(kvm, hyp_vm, pgd)` → handle; then per vCPU, in
   * index order, a hyp vCPU area and `__pkvm_init_vcpu(handle, vcpu, hyp_vcpu)`. A vCPU failure tears the VM down
   * (its donated pages come back through the teardown memcache).
   * @returns 0; -EEXIST when already created; -ENOMEM when host pages run out; the errno EL2 returned.
   */
  createHypVm(cpu: number): Ret {
    if (this.handle !== 0 || this.destroyed) return Err.EEXIST;
    const host = this.host;
    this.pgdPages = stage2PgdSize(host.ipaBits) / PAGE_SIZE;
    this.pgdPa = host.allocPagesExact(this.pgdPages);
    if (this.pgdPa < 0) return Err.ENOMEM;
    this.hypVmPages = hypVmSize(this.vcpus.length) / PAGE_SIZE;
    this.hypVmPa = host.allocPagesExact(this.hypVmPages);
    if (this.hypVmPa < 0) {
      host.freePagesExact(this.pgdPa, this.pgdPages);
      return Err.ENOMEM;
    }
    this.step('__pkvm_init_vm');
    const handle = host.hyp.call(cpu, '__pkvm_init_vm', this.structPa, this.hypVmPa, this.pgdPa);
    if (handle < 0) {
      host.freePagesExact(this.hypVmPa, this.hypVmPages);
      host.freePagesExact(this.pgdPa, this.pgdPages);
      return handle as Err;
    }
    this.handle = handle;
    const vcpuPages = hypVcpuSize() / PAGE_SIZE;
    for (const vcpu of this.vcpus) {
      const pa = host.allocPagesExact(vcpuPages);
      if (pa < 0) {
        this.destroy(cpu);
        return Err.ENOMEM;
      }
      if (this.trace !== null) this.step(`__pkvm_init_vcpu ${vcpu.idx}`);
      const ret = host.hyp.call(cpu, '__pkvm_init_vcpu', handle, vcpu.structPa, pa);
      if (ret !== 0) {
        host.freePagesExact(pa, vcpuPages);
        this.destroy(cpu);
        return ret as Err;
      }
      vcpu.hypVcpuPa = pa;
    }
    return 0;
  }

  /**
   * Destroys the VM: tears down the hyp VM, frees the teardown memcache, reclaims, uncharges and unpins every
   * pinned page, then frees the vCPU memcaches and unshares and frees the host structs.
   *
   * Mirrors V1 `kvm_shadow_destroy()` (arch/arm64/kvm/pkvm.c, 33/89) followed by `kvm_arch_vcpu_destroy()` and
   * `kvm_arch_destroy_vm()` (arch/arm64/kvm/arm.c). A failing reclaim is a `WARN_ON` and the page is still
   * unpinned, as in the kernel.
   * @returns 0; -EEXIST when already destroyed; the teardown hypercall's errno (-EBUSY with a loaded vCPU), after
   *   which nothing is released: the kernel cannot reach that state (vCPUs are put before destroy) and releasing
   *   pinned pages still mapped in the guest would break isolation, so the model stops there.
   */
  destroy(cpu: number): Ret {
    if (this.destroyed) return Err.EEXIST;
    const host = this.host;
    if (host.npGuests) return this.destroyNp(cpu);
    if (this.handle !== 0) {
      this.step('__pkvm_teardown_vm');
      const ret = host.hyp.call(cpu, '__pkvm_teardown_vm', this.handle);
      if (ret !== 0) {
        host.log.warnOn(true, `__pkvm_teardown_vm(0x${this.handle.toString(16)}): ${errnoName(ret)}`);
        return ret as Err;
      }
      this.handle = 0;
    }
    this.step('free_hyp_memcache teardown_mc');
    this.teardownMc.free(cpu, host.pages);
    const n = this.pinned.count;
    const pas = this.pinned.pasView();
    const one = new Float64Array(1);
    for (let i = 0; i < n; i++) {
      const pa = pas[i]!; // JUSTIFY: i < count.
      if (this.trace !== null) this.step(`reclaim 0x${pa.toString(16)}`);
      const r = host.hyp.call(cpu, '__pkvm_host_reclaim_page', paToPfn(pa));
      if (r === 0) this.stats.reclaimed++;
      else host.log.warnOn(true, `__pkvm_host_reclaim_page(0x${pa.toString(16)}): ${errnoName(r)}`);
      accountLockedVm(this.mm.memlock, 1, false, host.log);
      one[0] = pa;
      unpinUserPages(this.mm, one, 1, true, host.gup);
    }
    this.pinned.clear();
    for (const v of this.vcpus) {
      if (this.trace !== null) this.step(`free_hyp_memcache vcpu ${v.idx}`);
      v.memcache.free(cpu, host.pages);
    }
    this.releaseStructs(cpu);
    const ni = this.mm.notifiers.indexOf(this.notifier);
    if (ni >= 0) this.mm.notifiers.splice(ni, 1);
    this.destroyed = true;
    return 0;
  }

  /**
   * {@link destroy} under the `upstream-6.16` ABI: unshares every tracked mapping, then tears the hyp VM down and
   * frees the teardown memcache, the vCPU memcaches and the host structs. No reclaim, unpin-by-list or memlock
   * uncharge: nothing was long-term pinned or charged.
   *
   * Mirrors the v6.16 order in `kvm_destroy_vm()` (virt/kvm/kvm_main.c): `kvm_flush_shadow_all()` →
   * `kvm_uninit_stage2_mmu()` → `pkvm_pgtable_stage2_destroy()` (arch/arm64/kvm/pkvm.c), which unshares every
   * `pkvm_mapping` with the handle still valid, before `kvm_arch_destroy_vm()` → `pkvm_destroy_hyp_vm()` →
   * `__pkvm_teardown_vm`; then `kvm_destroy_vcpus()` (`free_hyp_memcache()` of each vCPU memcache) and
   * `kvm_unshare_hyp()`.
   *
   * A vCPU still loaded is -EBUSY before any hypercall: in the kernel a loaded vCPU holds a reference on the VM
   * (`kvm_vcpu_release()` → `kvm_put_kvm()`), so `kvm_destroy_vm()` cannot run then, and v6.16's
   * `__pkvm_teardown_vm` would `WARN_ON` a referenced VM. The result matches what pkvm-2022 returns for it.
   * @returns 0; -EBUSY (a vCPU loaded, or a mapping EL2 refused to unshare, `WARN_ON`ed) or the teardown
   *   hypercall's errno, after which nothing more is released, for the reason {@link destroy} gives.
   */
  private destroyNp(cpu: number): Ret {
    const host = this.host;
    for (const v of this.vcpus) if (v.loadedOn >= 0) return Err.EBUSY;
    if (this.handle !== 0) {
      while (this.pinned.count > 0) {
        if (this.trace !== null) this.step(`__pkvm_host_unshare_guest gfn 0x${this.pinned.gfnAt(this.pinned.count - 1).toString(16)}`);
        if (!this.unshareAt(cpu, this.pinned.count - 1)) return Err.EBUSY;
      }
      this.step('__pkvm_teardown_vm');
      const ret = host.hyp.call(cpu, '__pkvm_teardown_vm', this.handle);
      if (ret !== 0) {
        host.log.warnOn(true, `__pkvm_teardown_vm(0x${this.handle.toString(16)}): ${errnoName(ret)}`);
        return ret as Err;
      }
      this.handle = 0;
    }
    this.step('free_hyp_memcache teardown_mc');
    this.teardownMc.free(cpu, host.pages);
    this.pinned.clear();
    for (const v of this.vcpus) {
      if (this.trace !== null) this.step(`free_hyp_memcache vcpu ${v.idx}`);
      v.memcache.free(cpu, host.pages);
    }
    this.releaseStructs(cpu);
    const ni = this.mm.notifiers.indexOf(this.notifier);
    if (ni >= 0) this.mm.notifiers.splice(ni, 1);
    this.destroyed = true;
    return 0;
  }

  /** Unshares and frees the vCPU structs and the kvm struct. @internal */
  releaseStructs(cpu: number): void {
    for (const v of this.vcpus) this.host.releaseSharedStruct(cpu, v.structPa);
    this.vcpus.length = 0;
    this.host.releaseSharedStruct(cpu, this.structPa);
  }
}

/** One vCPU on the host (`struct kvm_vcpu`). */
export class KvmVcpu {
  /** The VM. */
  readonly kvm: Kvm;
  /** `vcpu->vcpu_idx`. */
  readonly idx: number;
  /** PA of the host `struct kvm_vcpu` page (shared with EL2). */
  readonly structPa: number;
  /** `vcpu->arch.pkvm_memcache`, embedded in the host struct. */
  readonly memcache: HostMemcache;
  /** PA of the donated hyp vCPU area, -1 before `__pkvm_init_vcpu`. */
  hypVcpuPa = -1;
  /** Physical CPU the vCPU is loaded on (`__pkvm_vcpu_load`), or -1. */
  loadedOn = -1;

  /** @internal created by {@link KvmHost.createVm}. */
  constructor(kvm: Kvm, idx: number, structPa: number) {
    this.kvm = kvm;
    this.idx = idx;
    this.structPa = structPa;
    this.memcache = new HostMemcache(kvm.host.ram, structPa + HOST_VCPU.MC_HEAD);
  }

  /**
   * `kvm_arch_vcpu_load()` in protected mode: `__pkvm_vcpu_load(handle, vcpu_idx, hcr)`. A vCPU already loaded on
   * `cpu` stays loaded; one loaded elsewhere is put first, and so is another vCPU loaded on `cpu`, as the preempt
   * notifiers do when vCPU threads are scheduled (`kvm_sched_out()` / `kvm_sched_in()`, virt/kvm/kvm_main.c), so
   * a physical CPU never has two vCPUs loaded.
   * @param cpu the physical CPU.
   */
  load(cpu: number): void {
    const host = this.kvm.host;
    if (this.loadedOn === cpu) return;
    if (this.loadedOn >= 0) this.put();
    const other = host.loadedVcpu[cpu];
    if (other !== undefined && other !== null) other.put();
    host.hyp.call(cpu, '__pkvm_vcpu_load', this.kvm.handle, this.idx, 0);
    this.loadedOn = cpu;
    host.loadedVcpu[cpu] = this;
  }

  /** `kvm_arch_vcpu_put()` in protected mode: `__pkvm_vcpu_put()` on the CPU the vCPU is loaded on. */
  put(): void {
    const cpu = this.loadedOn;
    if (cpu < 0) return;
    this.kvm.host.hyp.call(cpu, '__pkvm_vcpu_put');
    this.loadedOn = -1;
    this.kvm.host.loadedVcpu[cpu] = null;
  }

  /**
   * Tops the vCPU's hyp memcache up to `minPages` (`topup_hyp_memcache()`).
   * @returns 0, -ENOMEM or -EFAULT (see {@link HostMemcache.topup}).
   */
  topupMemcache(cpu: number, minPages: number): Ret {
    return this.memcache.topup(cpu, minPages, this.kvm.host.pages);
  }
}
