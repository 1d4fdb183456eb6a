/**
 * The host's stage-2 abort handling for pKVM guests (arch/arm64/kvm/mmu.c, 2022 series 33/89): the exit syndrome
 * EL2 left in the host vCPU struct is decoded as `kvm_handle_guest_abort()` does, and a fault on guest RAM goes to
 * `pkvm_mem_abort()`, which pins the backing page and asks EL2 to map it (pkvm.md §6.1–§6.2).
 *
 * No allocation per fault: the syndrome is read into a preallocated {@link GuestAbortInfo}, the pinned PA into a
 * one-entry typed array.
 */

import { PAGE_SHIFT, PAGE_SIZE } from '../arch/addr.js';
import { Err } from '../arch/errno.js';
import { EsrEc, esrEc, esrFsc, esrIsv, esrS1ptw, esrSas, esrWnR, esrCm } from '../arch/esr.js';
import { hpfarToIpa } from '../arch/hpfar.js';
import { HOST_VCPU } from '../arch/smccc.js';
import type { U64 } from '../mem/phys-mem.js';
import { FOLL_HWPOISON, FOLL_LONGTERM, FOLL_WRITE, pinUserPages, unpinUserPages } from './gup.js';
import { PG_SWAPBACKED } from './host-pages.js';
import type { Kvm, KvmVcpu } from './kvm.js';
import { accountLockedVm } from './memlock.js';
import { kvmMmuCacheMinPages } from './stage2-geom.js';

/** `ESR_ELx_FSC_TYPE` (arch/arm64/include/asm/esr.h): the fault-type bits of a DFSC/IFSC, level stripped. */
export const ESR_ELX_FSC_TYPE = 0x3c;
/** `ESR_ELx_FSC_FAULT`: translation fault. */
export const ESR_ELX_FSC_FAULT = 0x04;
/** `ESR_ELx_FSC_ACCESS`: access-flag fault. */
export const ESR_ELX_FSC_ACCESS = 0x08;
/** `ESR_ELx_FSC_PERM`: permission fault. */
export const ESR_ELX_FSC_PERM = 0x0c;

/** The stage-2 exit syndrome as the host reads it from its vCPU struct. One per host; rewritten per exit. */
export class GuestAbortInfo {
  /** ESR_EL2 bits[31:0]. */
  esr = 0;
  /** FAR_EL2 bits[31:0]. */
  farLo = 0;
  /** FAR_EL2 bits[63:32]. */
  farHi = 0;
  /** `kvm_vcpu_get_fault_ipa()`: the page-aligned faulting IPA from HPFAR_EL2. */
  faultIpa = 0;
}

/** What `kvm_handle_guest_abort()` decided, besides its return value. */
export const AbortOutcome = {
  /** A page was mapped, or the fault was benign: the guest retries. */
  RETRY: 0,
  /** An MMIO access outside the memslots: exit to the VMM (`KVM_EXIT_MMIO`). */
  MMIO: 1,
  /** The host injected an exception into the guest (SEA → SError, abort outside memory → PABT/DABT). */
  INJECTED: 2,
  /** The access was a cache maintenance op outside memory: skipped (`kvm_incr_pc()`). */
  SKIPPED: 3,
  /** An error return (errno). */
  ERROR: 4,
} as const;
/** What `kvm_handle_guest_abort()` decided. */
export type AbortOutcome = (typeof AbortOutcome)[keyof typeof AbortOutcome];

/** Preallocated scratch of the fault path (one per module: the host is single-threaded in the model). */
const tmp: U64 = { lo: 0, hi: 0 };
const onePa = new Float64Array(1);

/**
 * Reads the exit syndrome (ESR_EL2, FAR_EL2, HPFAR_EL2) EL2 wrote into the host vCPU struct.
 * @returns false when the host stage-2 refused a load (an oops was recorded).
 */
export function readGuestAbort(vcpu: KvmVcpu, cpu: number, out: GuestAbortInfo): boolean {
  const ram = vcpu.kvm.host.ram;
  const base = vcpu.structPa;
  if (!ram.read64(cpu, base + HOST_VCPU.FAULT_ESR, tmp)) return false;
  out.esr = tmp.lo;
  if (!ram.read64(cpu, base + HOST_VCPU.FAULT_FAR, tmp)) return false;
  out.farLo = tmp.lo;
  out.farHi = tmp.hi;
  if (!ram.read64(cpu, base + HOST_VCPU.FAULT_HPFAR, tmp)) return false;
  out.faultIpa = hpfarToIpa(tmp.lo, tmp.hi);
  return true;
}

/** `kvm_vcpu_abt_issea()` (arch/arm64/include/asm/kvm_emulate.h): SEA or parity error, on a walk or not. */
function isSea(fsc: number): boolean {
  return fsc === 0x10 || fsc === 0x18 || (fsc >= 0x14 && fsc <= 0x17) || (fsc >= 0x1c && fsc <= 0x1f);
}

/** What {@link kvmHandleGuestAbort} decided. One per host; rewritten per exit. */
export class GuestAbortResult {
  /** The outcome. */
  outcome: AbortOutcome = AbortOutcome.RETRY;
  /** The errno when `outcome` is ERROR, else 0. */
  errno = 0;
  /** `run->mmio.phys_addr`: the faulting IPA with the FAR page offset (MMIO only). */
  mmioPhysAddr = 0;
  /** `run->mmio.len`: 1 << SAS (MMIO only). */
  mmioLen = 0;
  /** `run->mmio.is_write` (MMIO only). */
  mmioIsWrite = false;
}

/**
 * Handles a stage-2 abort exit (EC 0x24/0x20) of a pKVM guest.
 *
 * Mirrors `kvm_handle_guest_abort()` (arch/arm64/kvm/mmu.c, 2022 series): SEA → `kvm_handle_guest_sea()` fails
 * without firmware-first RAS, so a virtual SError is injected; a fault type other than translation, access flag or
 * permission → `kvm_err("Unsupported FSC")` and -EFAULT; an IPA outside every memslot (or a write to a read-only
 * slot) → prefetch abort injected for a fetch, data abort for an S1PTW, the instruction skipped for cache
 * maintenance, otherwise `io_mem_abort()` (an MMIO exit when ISV is set, -ENOSYS without a syndrome); an access
 * fault → `handle_access_fault()` (nothing to do: EL2 maps with AF set); anything else → {@link pkvmMemAbort}.
 * @param vcpu the faulting vCPU (loaded on `cpu`).
 * @param cpu the physical CPU.
 * @param info the syndrome read by {@link readGuestAbort}.
 * @param out receives the outcome, the errno (-EFAULT, -ENOSYS, or one of {@link pkvmMemAbort}) and MMIO details.
 */
export function kvmHandleGuestAbort(vcpu: KvmVcpu, cpu: number, info: GuestAbortInfo, out: GuestAbortResult): void {
  out.errno = 0;
  const kvm = vcpu.kvm;
  kvm.stats.guestAborts++;
  const esr = info.esr;
  const fsc = esrFsc(esr);
  const isIabt = esrEc(esr) === EsrEc.IABT_LOW;
  if (isSea(fsc)) {
    kvm.step('kvm_handle_guest_sea → kvm_inject_vabt');
    kvm.stats.injected++;
    out.outcome = AbortOutcome.INJECTED;
    return;
  }
  const type = fsc & ESR_ELX_FSC_TYPE;
  if (type !== ESR_ELX_FSC_FAULT && type !== ESR_ELX_FSC_PERM && type !== ESR_ELX_FSC_ACCESS) {
    if (kvm.trace !== null) kvm.step(`Unsupported FSC 0x${fsc.toString(16)}`);
    out.errno = Err.EFAULT;
    out.outcome = AbortOutcome.ERROR;
    return;
  }
  const faultIpa = info.faultIpa;
  const gfn = faultIpa / PAGE_SIZE;
  const slot = kvm.memslots.find(gfn);
  // kvm_is_write_fault(): an S1PTW fault is a write (the walker may update AF/DBM); a fetch is not.
  const writeFault = esrS1ptw(esr) || (!isIabt && esrWnR(esr));
  if (slot < 0 || (writeFault && kvm.memslots.isReadonly(slot))) {
    if (isIabt || esrS1ptw(esr)) {
      kvm.step(isIabt ? 'kvm_inject_pabt' : 'kvm_inject_dabt');
      kvm.stats.injected++;
      out.outcome = AbortOutcome.INJECTED;
      return;
    }
    if (slot < 0 && esrCm(esr)) {
      kvm.step('kvm_incr_pc (cache maintenance outside memory)');
      out.outcome = AbortOutcome.SKIPPED;
      return;
    }
    // io_mem_abort(): without a valid syndrome the access cannot be emulated.
    if (!esrIsv(esr)) {
      kvm.step('io_mem_abort: no valid syndrome');
      out.errno = Err.ENOSYS;
      out.outcome = AbortOutcome.ERROR;
      return;
    }
    out.mmioPhysAddr = faultIpa + (info.farLo & (PAGE_SIZE - 1));
    out.mmioLen = 1 << esrSas(esr);
    out.mmioIsWrite = esrWnR(esr);
    kvm.stats.mmioExits++;
    kvm.step('io_mem_abort → KVM_EXIT_MMIO');
    out.outcome = AbortOutcome.MMIO;
    return;
  }
  if (type === ESR_ELX_FSC_ACCESS) {
    kvm.step('handle_access_fault');
    // v6.16: kvm_pgtable_stage2_mkyoung() is redirected to pkvm_pgtable_stage2_mkyoung() (arch/arm64/kvm/pkvm.c).
    if (kvm.host.npGuests) {
      kvm.step('__pkvm_host_mkyoung_guest');
      kvm.host.hyp.call(cpu, '__pkvm_host_mkyoung_guest', gfn);
    }
    out.outcome = AbortOutcome.RETRY;
    return;
  }
  const hva = kvm.memslots.hvaOf(slot, gfn);
  const ret = kvm.host.npGuests
    ? pkvmNpMemAbort(vcpu, cpu, faultIpa, hva, kvm.memslots.isReadonly(slot), type === ESR_ELX_FSC_PERM)
    : pkvmMemAbort(vcpu, cpu, faultIpa, hva);
  out.errno = ret;
  out.outcome = ret === 0 ? AbortOutcome.RETRY : AbortOutcome.ERROR;
}

/**
 * `pkvm_host_map_guest(pfn, gfn)`: the map hypercall, with -EPERM read as "another vCPU mapped this IPA first"
 * and turned into -EAGAIN. Mirrors `pkvm_host_map_guest()` (arch/arm64/kvm/mmu.c, 33/89 with the follow-up that
 * stopped passing the vCPU).
 */
export function pkvmHostMapGuest(kvm: Kvm, cpu: number, pfn: number, gfn: number): number {
  const ret = kvm.host.hyp.call(cpu, '__pkvm_host_map_guest', pfn, gfn);
  return ret === Err.EPERM ? Err.EAGAIN : ret;
}

/**
 * Maps the page behind `hva` into the guest at `faultIpa` through EL2.
 *
 * Mirrors `pkvm_mem_abort()` (arch/arm64/kvm/mmu.c, 2022 series 33/89), step by step (pkvm.md §6.2):
 *
 *   1. `topup_hyp_memcache(vcpu memcache, kvm_mmu_cache_min_pages())`   fail → -ENOMEM
 *   2. `kmalloc()` the pinned-page record                                fail → -ENOMEM
 *   3. `account_locked_vm(mm, 1, true)`                                  fail → free record, return it
 *   4. `pin_user_pages(hva, 1, FOLL_HWPOISON | FOLL_LONGTERM | FOLL_WRITE)`
 *        -EHWPOISON → SIGBUS, return 0 (uncharge, free record)
 *        pinned ≠ 1 → -EFAULT (uncharge, free record)
 *        !PageSwapBacked → -EIO (uncharge, free record; V1 jumps past the unpin, so the pin leaks: quirk)
 *   5. `write_lock(&kvm->mmu_lock)`
 *   6. `__pkvm_host_map_guest(pfn, gfn)`: -EPERM → -EAGAIN → return 0 after dropping the extra pin; other errors
 *      returned after the full unwind
 *   7. success: record added to the pinned list, unlock, return 0
 *   8. unwind: unlock → `unpin_user_pages()` → `account_locked_vm(mm, 1, false)` → `kfree()`
 * @returns 0 (mapped, lost the race, or poisoned page signalled); -ENOMEM; -EFAULT; -EIO; an errno from EL2.
 */
export function pkvmMemAbort(vcpu: KvmVcpu, cpu: number, faultIpa: number, hva: number): number {
  const kvm = vcpu.kvm;
  const host = kvm.host;
  const mm = kvm.mm;
  kvm.stats.memAborts++;
  kvm.step('topup_hyp_memcache');
  if (vcpu.memcache.topup(cpu, kvmMmuCacheMinPages(host.ipaBits), host.pages) !== 0) return Err.ENOMEM;
  kvm.step('kmalloc ppage');
  if (kvm.pinned.alloc() !== 0) return Err.ENOMEM;
  kvm.step('account_locked_vm +1');
  let ret: number = accountLockedVm(mm.memlock, 1, true, host.log);
  if (ret !== 0) {
    kvm.step('kfree ppage');
    kvm.pinned.free();
    return ret;
  }
  kvm.step('pin_user_pages');
  const pinned = pinUserPages(mm, host.ram, cpu, hva, 1, FOLL_HWPOISON | FOLL_LONGTERM | FOLL_WRITE, onePa, host.gup);
  let unpin = false;
  if (pinned === Err.EHWPOISON) {
    kvm.step('kvm_send_hwpoison_signal');
    host.log.signal('SIGBUS', hva, PAGE_SHIFT);
    kvm.stats.sigbus++;
    ret = 0;
  } else if (pinned !== 1) {
    ret = Err.EFAULT;
  } else if ((host.pages.flags[host.pages.indexOf(onePa[0]!)]! & PG_SWAPBACKED) === 0) { // JUSTIFY: pinned page is host RAM.
    // Page cache: writeback and rmap-based dirtying cannot see the EL2 mapping. V1 unwinds from dec_account, past
    // the unpin, so this pin is never dropped (counted as leaked).
    kvm.step('!PageSwapBacked');
    kvm.stats.leakedPins++;
    ret = Err.EIO;
  } else {
    const pa = onePa[0]!; // JUSTIFY: one page pinned.
    kvm.step('write_lock mmu_lock');
    kvm.mmuLocked = true;
    const gfn = faultIpa / PAGE_SIZE;
    kvm.step('__pkvm_host_map_guest');
    ret = pkvmHostMapGuest(kvm, cpu, pa / PAGE_SIZE, gfn);
    if (ret === 0) {
      kvm.pinned.add(pa, gfn);
      kvm.stats.mapped++;
      kvm.step('write_unlock mmu_lock');
      kvm.mmuLocked = false;
      return 0;
    }
    if (ret === Err.EAGAIN) {
      kvm.stats.eagain++;
      ret = 0;
    }
    unpin = true;
  }
  if (unpin) {
    kvm.step('write_unlock mmu_lock');
    kvm.mmuLocked = false;
    kvm.step('unpin_user_pages');
    unpinUserPages(mm, onePa, 1, false, host.gup);
  }
  kvm.step('account_locked_vm -1');
  accountLockedVm(mm.memlock, 1, false, host.log);
  kvm.step('kfree ppage');
  kvm.pinned.free();
  return ret;
}

/** `KVM_PGTABLE_PROT_X` (arch/arm64/include/asm/kvm_pgtable.h): the value the host passes in x4 of a share. */
export const KVM_PGTABLE_PROT_X = 0x1;
/** `KVM_PGTABLE_PROT_W`. */
export const KVM_PGTABLE_PROT_W = 0x2;
/** `KVM_PGTABLE_PROT_R`. */
export const KVM_PGTABLE_PROT_R = 0x4;

/**
 * Maps the page behind `hva` into a non-protected guest at `faultIpa` through EL2, under the `upstream-6.16` ABI.
 *
 * Mirrors `user_mem_abort()` (arch/arm64/kvm/mmu.c, v6.16) with the stage-2 ops redirected to the pKVM wrappers
 * (`KVM_PGT_FN()` → `pkvm_pgtable_stage2_map()` / `pkvm_pgtable_stage2_relax_perms()`, arch/arm64/kvm/pkvm.c),
 * for 4 KiB mappings:
 *
 *   1. `topup_hyp_memcache(&vcpu->arch.pkvm_memcache, kvm_mmu_cache_min_pages())`, which first allocates the
 *      spare `struct pkvm_mapping` (`mc->mapping`, `kzalloc`)                       fail → -ENOMEM
 *   2. `__kvm_faultin_pfn()`: GUP of the page, writable when the memslot and the VMA allow it (FOLL_WRITE, which
 *      breaks COW); -EHWPOISON → SIGBUS and 0; any other failure → -EFAULT. No FOLL_LONGTERM and no
 *      `account_locked_vm()`: np-guest memory stays movable, the MMU notifier unshares it first
 *      ({@link Kvm.unmapHvaRange}).
 *   3. `write_lock(&kvm->mmu_lock)`
 *   4. a permission fault on a page the host already tracks → `__pkvm_host_relax_perms_guest(gfn, prot)`;
 *      otherwise `pkvm_pgtable_stage2_map()`: a tracked mapping of the same size → -EAGAIN (another vCPU won),
 *      else `__pkvm_host_share_guest(pfn, gfn, 1, prot)`, `WARN_ON` on error, and the spare mapping is inserted
 *   5. `write_unlock`, `kvm_release_faultin_page()`; -EAGAIN is returned as 0 (the guest retries)
 *
 * prot is R | X, plus W when writable: the model is a CPU with ARM64_HAS_CACHE_DIC, where `user_mem_abort()`
 * grants X on every fault, so no execute-permission fault follows.
 *
 * One difference from v6.16, on purpose: the GUP reference is kept while the page is shared (dropped when the
 * mapping is unshared by the MMU notifier or at teardown) instead of being released at step 5. The mm paths of the
 * model (munmap, migration, KSM) call the notifier before they look at the reference, so no path can observe it;
 * it keeps the ghost invariant "every guest leaf is backed by a referenced host page" meaningful for both ABIs.
 * @param readonlySlot the memslot has `KVM_MEM_READONLY`.
 * @param permFault the fault is a permission fault (`kvm_vcpu_trap_is_permission_fault()`).
 * @returns 0 (mapped, relaxed, lost the race, or poisoned page signalled); -ENOMEM; -EFAULT; an errno from EL2.
 */
export function pkvmNpMemAbort(vcpu: KvmVcpu, cpu: number, faultIpa: number, hva: number, readonlySlot: boolean, permFault: boolean): number {
  const kvm = vcpu.kvm;
  const host = kvm.host;
  const mm = kvm.mm;
  kvm.stats.memAborts++;
  kvm.step('topup_hyp_memcache');
  if (kvm.pinned.alloc() !== 0) return Err.ENOMEM;
  if (vcpu.memcache.topup(cpu, kvmMmuCacheMinPages(host.ipaBits), host.pages) !== 0) {
    kvm.pinned.free();
    return Err.ENOMEM;
  }
  const vma = mm.findVma(hva);
  const writable = !readonlySlot && vma !== null && vma.writable;
  kvm.step('__kvm_faultin_pfn');
  const got = pinUserPages(mm, host.ram, cpu, hva, 1, FOLL_HWPOISON | (writable ? FOLL_WRITE : 0), onePa, host.gup);
  if (got === Err.EHWPOISON) {
    kvm.step('kvm_send_hwpoison_signal');
    host.log.signal('SIGBUS', hva, PAGE_SHIFT);
    kvm.stats.sigbus++;
    kvm.pinned.free();
    return 0;
  }
  if (got !== 1) {
    kvm.pinned.free();
    return Err.EFAULT;
  }
  const pa = onePa[0]!; // JUSTIFY: one page pinned.
  const gfn = faultIpa / PAGE_SIZE;
  const prot = KVM_PGTABLE_PROT_R | KVM_PGTABLE_PROT_X | (writable ? KVM_PGTABLE_PROT_W : 0);
  kvm.step('write_lock mmu_lock');
  kvm.mmuLocked = true;
  let ret: number;
  const existing = kvm.pinned.indexOfGfn(gfn);
  if (existing >= 0 && permFault) {
    kvm.step('__pkvm_host_relax_perms_guest');
    ret = host.hyp.call(cpu, '__pkvm_host_relax_perms_guest', gfn, prot);
  } else if (existing >= 0) {
    kvm.step('pkvm_pgtable_stage2_map: -EAGAIN');
    ret = Err.EAGAIN;
  } else {
    kvm.step('__pkvm_host_share_guest');
    ret = host.hyp.call(cpu, '__pkvm_host_share_guest', pa / PAGE_SIZE, gfn, 1, prot);
    if (ret === 0) {
      kvm.pinned.add(pa, gfn);
      kvm.stats.mapped++;
      kvm.step('write_unlock mmu_lock');
      kvm.mmuLocked = false;
      return 0;
    }
    host.log.warnOn(true, `pkvm_pgtable_stage2_map(gfn 0x${gfn.toString(16)}): __pkvm_host_share_guest ${ret}`);
  }
  kvm.step('write_unlock mmu_lock');
  kvm.mmuLocked = false;
  kvm.step('kvm_release_faultin_page');
  unpinUserPages(mm, onePa, 1, writable && ret === 0, host.gup);
  kvm.pinned.free();
  if (ret === Err.EAGAIN) {
    kvm.stats.eagain++;
    return 0;
  }
  return ret;
}
