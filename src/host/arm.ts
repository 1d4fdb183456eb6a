/**
 * `KVM_RUN` for a pKVM vCPU (arch/arm64/kvm/arm.c `kvm_arch_vcpu_ioctl_run()`, arch/arm64/kvm/handle_exit.c
 * `handle_exit()`): create the hyp VM on first run, load the vCPU at EL2, then loop `__kvm_vcpu_run` → handle the
 * exit until the VMM must be involved, and put the vCPU.
 *
 * Model conventions, where the real loop would never stop by itself:
 *   - `ARM_EXCEPTION_IRQ` is what EL2 reports when the guest has nothing more to run; the run returns with
 *     {@link KvmExit.IDLE} (the kernel would re-enter the guest after an interrupt);
 *   - the V1 -EPERM ambiguity (pkvm.md §9.2) can make a vCPU re-fault forever; after {@link LIVELOCK_FAULTS}
 *     consecutive stage-2 aborts at the same IPA the run stops with {@link KvmExit.LIVELOCK}, flagged as a host-side
 *     problem;
 *   - an exception the host injects into the guest stops the run with {@link KvmExit.INJECTED}: the host cannot
 *     reach the guest's registers, so the harness completes the guest's side.
 */

import { assertNever } from '../arch/assert.js';
import { Err, type Ret } from '../arch/errno.js';
import { EsrEc, esrEc, esrImm16 } from '../arch/esr.js';
import { ArmException } from '../arch/smccc.js';
import type { KvmVcpu } from './kvm.js';
import { AbortOutcome, GuestAbortInfo, GuestAbortResult, kvmHandleGuestAbort, readGuestAbort } from './mmu.js';

/** Consecutive stage-2 aborts at one IPA after which the model reports a livelock. */
export const LIVELOCK_FAULTS = 16;

/** Why `KVM_RUN` returned to the VMM (`run->exit_reason`, plus the model's own stops). */
export const KvmExit = {
  /** The guest ran out of queued operations (the model's stand-in for an interrupt exit the VMM never sees). */
  IDLE: 'idle',
  /** `KVM_EXIT_MMIO`: an access outside the memslots with a valid syndrome. */
  MMIO: 'mmio',
  /** `KVM_EXIT_HYPERCALL`: a guest HVC the host forwards to the VMM. */
  HYPERCALL: 'hypercall',
  /** `KVM_EXIT_INTR`: a signal is pending (SIGBUS after a poisoned page); the ioctl returns -EINTR. */
  INTR: 'intr',
  /** The host injected an exception into the guest (model stop, see the file header). */
  INJECTED: 'injected',
  /** The same IPA kept faulting (model stop, see the file header). */
  LIVELOCK: 'livelock',
  /** The ioctl failed with an errno (`ret` < 0). */
  ERROR: 'error',
} as const;
/** Why `KVM_RUN` returned. */
export type KvmExit = (typeof KvmExit)[keyof typeof KvmExit];

/** The shared `struct kvm_run` of a vCPU (one per vCPU; rewritten by each run). */
export class KvmRun {
  /** Why the run returned. */
  exitReason: KvmExit = KvmExit.IDLE;
  /** The ioctl's return value: 0 or a negative errno. */
  ret = 0;
  /** Exits from the guest handled during the run. */
  exits = 0;
  /** MMIO exit: guest physical address. */
  mmioPhysAddr = 0;
  /** MMIO exit: access size in bytes. */
  mmioLen = 0;
  /** MMIO exit: a write. */
  mmioIsWrite = false;
  /** HYPERCALL exit: the HVC's imm16. */
  hvcImm = 0;
  /** ESR_EL2 of the last exit. */
  esr = 0;
  /** Faulting IPA of the last stage-2 abort exit. */
  faultIpa = 0;
}

const info = new GuestAbortInfo();
const result = new GuestAbortResult();

/**
 * Runs a vCPU until the VMM must act.
 *
 * Mirrors `kvm_arch_vcpu_ioctl_run()` (arch/arm64/kvm/arm.c) with `kvm_arch_vcpu_run_pid_change()` →
 * `pkvm_create_hyp_vm()` on the first run, `vcpu_load()`/`vcpu_put()` around the loop (`__pkvm_vcpu_load`,
 * `__pkvm_vcpu_put`), and `handle_exit()` / `handle_trap_exceptions()` (arch/arm64/kvm/handle_exit.c) per exit.
 * @param vcpu the vCPU.
 * @param cpu the physical CPU the VMM thread runs on.
 * @param run receives the exit.
 * @returns `run.ret`: 0, or -EINTR (signal pending), -ENOMEM / -EFAULT / -EIO / -ENOSYS / an EL2 errno from the
 *   fault path, or the errno of creating the hyp VM.
 */
export function kvmArchVcpuIoctlRun(vcpu: KvmVcpu, cpu: number, run: KvmRun): Ret {
  const kvm = vcpu.kvm;
  const host = kvm.host;
  run.exits = 0;
  run.ret = 0;
  if (kvm.destroyed) return finish(run, KvmExit.ERROR, Err.EINVAL);
  if (kvm.handle === 0) {
    const r = kvm.createHypVm(cpu);
    if (r !== 0) return finish(run, KvmExit.ERROR, r);
  }
  vcpu.load(cpu);
  const signals = host.log.signals.length;
  let lastIpa = -1;
  let sameIpa = 0;
  let exit: KvmExit = KvmExit.IDLE;
  let ret = 1;
  while (ret > 0) {
    if (host.log.signals.length !== signals) {
      exit = KvmExit.INTR;
      ret = Err.EINTR;
      break;
    }
    const code = host.hyp.call(cpu, '__kvm_vcpu_run', vcpu.structPa);
    run.exits++;
    switch (code) {
      case ArmException.IRQ:
        exit = KvmExit.IDLE;
        ret = 0;
        break;
      case ArmException.EL1_SERROR:
      case ArmException.IL:
        ret = 1;
        break;
      case ArmException.TRAP: {
        if (!readGuestAbort(vcpu, cpu, info)) {
          exit = KvmExit.ERROR;
          ret = Err.EFAULT;
          break;
        }
        run.esr = info.esr;
        const ec = esrEc(info.esr);
        if (ec === EsrEc.HVC64) {
          run.hvcImm = esrImm16(info.esr);
          exit = KvmExit.HYPERCALL;
          ret = 0;
          break;
        }
        if (ec !== EsrEc.DABT_LOW && ec !== EsrEc.IABT_LOW) {
          host.log.warnOn(true, `handle_exit: unexpected EC 0x${ec.toString(16)}`);
          exit = KvmExit.ERROR;
          ret = Err.EFAULT;
          break;
        }
        run.faultIpa = info.faultIpa;
        if (info.faultIpa === lastIpa) sameIpa++;
        else {
          lastIpa = info.faultIpa;
          sameIpa = 1;
        }
        if (sameIpa > LIVELOCK_FAULTS) {
          exit = KvmExit.LIVELOCK;
          ret = 0;
          break;
        }
        kvmHandleGuestAbort(vcpu, cpu, info, result);
        switch (result.outcome) {
          case AbortOutcome.RETRY:
          case AbortOutcome.SKIPPED:
            ret = 1;
            break;
          case AbortOutcome.MMIO:
            run.mmioPhysAddr = result.mmioPhysAddr;
            run.mmioLen = result.mmioLen;
            run.mmioIsWrite = result.mmioIsWrite;
            exit = KvmExit.MMIO;
            ret = 0;
            break;
          case AbortOutcome.INJECTED:
            exit = KvmExit.INJECTED;
            ret = 0;
            break;
          case AbortOutcome.ERROR:
            exit = KvmExit.ERROR;
            ret = result.errno;
            break;
          default:
            return assertNever(result.outcome, 'abort outcome');
        }
        break;
      }
      default:
        // A negative x1: EL2 refused the run (e.g. -EINVAL without a loaded vCPU).
        exit = KvmExit.ERROR;
        ret = code < 0 ? code : Err.EFAULT;
        break;
    }
  }
  vcpu.put();
  return finish(run, exit, ret);
}

function finish(run: KvmRun, exit: KvmExit, ret: number): Ret {
  run.exitReason = exit;
  run.ret = ret;
  return ret as Ret;
}
