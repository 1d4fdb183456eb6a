/**
 * Environment fakes for host-side unit tests (ordering and unwind of the host's own code). `FakeEl2` stands in for
 * the hypervisor: it implements the host hypercall ABI by hand (ids from the profile, x0 status, x1 result) and
 * runs a scripted "guest" that faults on unmapped IPAs. It is not a mock of an s2emu module; the integration test
 * (kvm-hyp.test.ts) drives the real `Hyp`.
 */
import { PAGE_SIZE } from '../../src/arch/addr.js';
import { Err } from '../../src/arch/errno.js';
import { EsrEc, esrDataAbort, esrInsnAbort, esrInsnSyndrome, Sas } from '../../src/arch/esr.js';
import { hpfarHiFromIpa, hpfarLoFromIpa } from '../../src/arch/hpfar.js';
import type { RegFile } from '../../src/arch/regs.js';
import { ArmException, HOST_KVM, HOST_VCPU, KVM_HOST_SMCCC_BASE, PROFILE_PKVM_2022 } from '../../src/arch/smccc.js';
import type { PhysMem } from '../../src/mem/phys-mem.js';
import type { HostMemPort, HvcConduit } from '../../src/host/ports.js';

export interface FakeAccess {
  ipa: number;
  write?: boolean;
  exec?: boolean;
  /** Instruction syndrome valid (default true). */
  isv?: boolean;
  /** DFSC/IFSC to report instead of a translation fault. */
  fsc?: number;
}

interface FakeVm {
  handle: number;
  kvmPa: number;
  vcpus: number[];
  donated: number[];
  mapped: Map<number, number>;
  loaded: number;
}

/** Stands in for EL2 (environment fake, see the file header). */
export class FakeEl2 implements HvcConduit {
  readonly mem: PhysMem;
  readonly shared = new Set<number>();
  readonly pinnedByHyp = new Set<number>();
  readonly vms: FakeVm[] = [];
  readonly pendingReclaim = new Set<number>();
  readonly guestPages = new Set<number>();
  readonly calls: string[] = [];
  /** Accesses the fake guest performs on `__kvm_vcpu_run`, in order; an unmapped one faults. */
  readonly guest: FakeAccess[] = [];
  /** Pages the hyp vCPU memcache holds (admitted from the host). */
  hypMcPages = 0;
  /** Pages the map call needs in the hyp memcache. */
  minPages = 2;
  /** When set, the next map call returns this errno. */
  mapErrno = 0;
  private readonly loadedOn = new Map<number, FakeVm>();

  constructor(mem: PhysMem) {
    this.mem = mem;
  }

  private u64(pa: number): number {
    return this.mem.read64Hi(pa) * 2 ** 32 + this.mem.read64Lo(pa);
  }

  private w64(pa: number, v: number): void {
    this.mem.write64(pa, v >>> 0, Math.floor(v / 2 ** 32));
  }

  hvc(cpu: number, regs: RegFile): void {
    const name = PROFILE_PKVM_2022.names[regs.lo(0) - KVM_HOST_SMCCC_BASE];
    this.calls.push(name ?? '?');
    const a1 = regs.u(1);
    const a2 = regs.u(2);
    const a3 = regs.u(3);
    let ret = 0;
    regs.setSigned(0, 0);
    switch (name) {
      case '__pkvm_host_share_hyp':
        if (this.shared.has(a1)) ret = Err.EPERM;
        else this.shared.add(a1);
        break;
      case '__pkvm_host_unshare_hyp':
        if (this.pinnedByHyp.has(a1)) ret = Err.EBUSY;
        else if (!this.shared.delete(a1)) ret = Err.EPERM;
        break;
      case '__pkvm_init_vm': {
        const handle = 0x1000 + this.vms.length;
        this.pinnedByHyp.add(a1 / PAGE_SIZE);
        // The pgd of a 40-bit IPA space is two concatenated pages.
        this.vms.push({ handle, kvmPa: a1, vcpus: [], donated: [a2, a3, a3 + PAGE_SIZE], mapped: new Map(), loaded: -1 });
        ret = handle;
        break;
      }
      case '__pkvm_init_vcpu': {
        const vm = this.vms.find((v) => v.handle === a1);
        if (vm === undefined) ret = Err.ENOENT;
        else {
          vm.vcpus.push(a2);
          vm.donated.push(a3);
          this.pinnedByHyp.add(a2 / PAGE_SIZE);
        }
        break;
      }
      case '__pkvm_vcpu_load': {
        const vm = this.vms.find((v) => v.handle === a1);
        if (vm !== undefined) {
          vm.loaded = a2;
          this.loadedOn.set(cpu, vm);
        }
        return;
      }
      case '__pkvm_vcpu_put': {
        const vm = this.loadedOn.get(cpu);
        if (vm !== undefined) vm.loaded = -1;
        this.loadedOn.delete(cpu);
        return;
      }
      case '__pkvm_host_map_guest': {
        const vm = this.loadedOn.get(cpu);
        if (vm === undefined) {
          ret = Err.EINVAL;
          break;
        }
        // Admit pages from the host vCPU memcache until the hyp one holds minPages (V1 refill).
        const mc = vm.vcpus[vm.loaded]! + HOST_VCPU.MC_HEAD;
        while (this.hypMcPages < this.minPages && this.u64(mc + 8) > 0) {
          const page = this.u64(mc);
          this.w64(mc, this.u64(page));
          this.w64(mc + 8, this.u64(mc + 8) - 1);
          vm.donated.push(page);
          this.hypMcPages++;
        }
        if (this.hypMcPages < this.minPages) ret = Err.ENOMEM;
        else if (this.mapErrno !== 0) {
          ret = this.mapErrno;
          this.mapErrno = 0;
        } else if (vm.mapped.has(a2) || this.guestPages.has(a1)) ret = Err.EPERM;
        else {
          vm.mapped.set(a2, a1);
          this.guestPages.add(a1);
          // A new leaf under fresh tables uses the memcache pages.
          if (vm.mapped.size === 1) this.hypMcPages = 0;
        }
        break;
      }
      case '__kvm_vcpu_run': {
        const vm = this.loadedOn.get(cpu);
        if (vm === undefined) {
          ret = Err.EINVAL;
          break;
        }
        ret = ArmException.IRQ;
        while (this.guest.length > 0) {
          const acc = this.guest[0]!;
          if (vm.mapped.has(Math.floor(acc.ipa / PAGE_SIZE)) && acc.fsc === undefined) {
            this.guest.shift();
            continue;
          }
          const fsc = acc.fsc ?? 0x07;
          const esr = acc.exec
            ? esrInsnAbort(EsrEc.IABT_LOW, false, fsc)
            : esrDataAbort(EsrEc.DABT_LOW, acc.isv === false ? 0 : esrInsnSyndrome(Sas.DOUBLEWORD, false, 1, true, false), false, false, acc.write === true, fsc);
          this.mem.write64(a1 + HOST_VCPU.FAULT_ESR, esr, 0);
          this.w64(a1 + HOST_VCPU.FAULT_FAR, acc.ipa);
          this.mem.write64(a1 + HOST_VCPU.FAULT_HPFAR, hpfarLoFromIpa(acc.ipa), hpfarHiFromIpa(acc.ipa));
          if (acc.fsc !== undefined) this.guest.shift();
          ret = ArmException.TRAP;
          break;
        }
        break;
      }
      case '__pkvm_teardown_vm': {
        const vm = this.vms.find((v) => v.handle === a1);
        if (vm === undefined) ret = Err.ENOENT;
        else if (vm.loaded >= 0) ret = Err.EBUSY;
        else {
          for (const pfn of vm.mapped.values()) this.pendingReclaim.add(pfn);
          const mc = vm.kvmPa + HOST_KVM.TEARDOWN_MC_HEAD;
          for (const page of vm.donated) {
            this.w64(page, this.u64(mc));
            this.w64(mc, page);
            this.w64(mc + 8, this.u64(mc + 8) + 1);
          }
          this.pinnedByHyp.delete(vm.kvmPa / PAGE_SIZE);
          for (const v of vm.vcpus) this.pinnedByHyp.delete(v / PAGE_SIZE);
          this.vms.splice(this.vms.indexOf(vm), 1);
        }
        break;
      }
      case '__pkvm_host_reclaim_page':
        if (this.pendingReclaim.delete(a1)) this.guestPages.delete(a1);
        else ret = Err.EPERM;
        break;
      default:
        regs.setSigned(0, -1);
        return;
    }
    void a3;
    regs.setSigned(1, ret);
  }
}

/** The host stage-2 check as an environment fake: every access allowed except to pages in `deny`. */
export class FakeHostS2 implements HostMemPort {
  readonly deny = new Set<number>();
  accesses = 0;
  access(_cpu: number, pa: number, _write: boolean): boolean {
    this.accesses++;
    return !this.deny.has(Math.floor(pa / PAGE_SIZE));
  }
}
