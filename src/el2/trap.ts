/**
 * Entry to EL2 from the host: an `HVC #imm16` (hypercall), an SMC, or a stage-2 abort of a host memory access, each
 * delivered as an exception (ESR/ELR/SPSR_EL2 filled by `mmu/abort.ts`) and dispatched on ESR_EL2.EC
 * (reference pkvm.md §3.2, §8.2; STYLE.md §10.9).
 *
 * Mirrors `handle_trap()` (arch/arm64/kvm/hyp/nvhe/hyp-main.c), `handle_host_smc()` and, for the abort path, the
 * hardware side of a host access under the host stage-2 followed by `handle_host_mem_abort()` and
 * `host_inject_abort()` (mem_protect.c / hyp-main.c, V1 81/89).
 */

import { assert } from '../arch/assert.js';
import { ESR_S1PTW_LO, EsrEc, esrEc, esrEncode, esrIss } from '../arch/esr.js';
import { FaultType } from '../arch/fault.js';
import { hpfarToIpa } from '../arch/hpfar.js';
import { SmcccRet } from '../arch/smccc.js';
import { SpsrMode, spsrEncode, spsrMode } from '../arch/spsr.js';
import { AbortAccess, AbortContext, deliverHvc, deliverSmcTrap, deliverStage2Abort, INSN_NO_SYNDROME } from '../mmu/abort.js';
import { AccessKind } from '../mmu/s2-walk.js';
import { WalkResult } from '../mmu/walk-result.js';
import { POW2 } from '../pgtable/pte.js';
import { handleHostHcall } from './hcall.js';
import type { Hyp, HypCpu } from './hyp.js';
import { handleHostMemAbort, HostAbortResult } from './mem-protect.js';

/** The host's exception context (it runs at EL1h with interrupts masked while calling EL2; its PC is not modelled). */
const hostCtx = new AbortContext();
hostCtx.pstate = spsrEncode(SpsrMode.EL1h, 0b1111, 0);
const walk = new WalkResult();

/**
 * The host executes `HVC #imm16` on `cpu` with its arguments already in `hyp.cpus[cpu].regs`; on return x0/x1 hold
 * the SMCCC status and the result.
 * Mirrors the HVC64 path of `handle_trap()` → `handle_host_hcall()`.
 */
export function hostHvc(hyp: Hyp, cpu: number, imm16: number): void {
  const c = hyp.cpus[cpu];
  if (c === undefined) assert(false, `no CPU ${cpu}`);
  deliverHvc(imm16, hostCtx, c.exc);
  handleTrap(hyp, c);
}

/**
 * Takes the exception already described by `hyp.cpus[cpu].exc` (ESR/FAR/HPFAR/ELR/SPSR_EL2, e.g. filled by
 * `mmu/abort.ts` for a host access that faulted at stage 2) and dispatches it as {@link handleTrap} does.
 * Mirrors the host vector's synchronous entry → `handle_trap()` (arch/arm64/kvm/hyp/nvhe/host.S, hyp-main.c).
 */
export function hostTrap(hyp: Hyp, cpu: number): HostAbortResult {
  const c = hyp.cpus[cpu];
  if (c === undefined) assert(false, `no CPU ${cpu}`);
  return handleTrap(hyp, c);
}

/**
 * The host executes `SMC #imm16` (trapped by HCR_EL2.TSC). EL3 firmware is not modelled, so the forwarded call
 * answers SMCCC_RET_NOT_SUPPORTED in x0, as firmware does for a function it does not implement.
 * Mirrors `handle_host_smc()` → `default_host_smc_handler()` (hyp-main.c); the PC advance
 * (`kvm_skip_host_instr`) is implicit.
 */
export function hostSmc(hyp: Hyp, cpu: number, imm16: number): void {
  const c = hyp.cpus[cpu];
  if (c === undefined) assert(false, `no CPU ${cpu}`);
  deliverSmcTrap(imm16, hostCtx, c.exc);
  handleTrap(hyp, c);
}

/**
 * Dispatches the exception in `cpu.exc` on ESR_EL2.EC: HVC64 → hypercall, SMC64 → SMC handler, IABT_LOW/DABT_LOW
 * → host stage-2 abort. Any other class cannot be taken from the host in this model (the kernel's BUG()).
 * Mirrors `handle_trap()` (arch/arm64/kvm/hyp/nvhe/hyp-main.c).
 * @returns for aborts, the {@link HostAbortResult}; otherwise MAPPED (0).
 */
export function handleTrap(hyp: Hyp, cpu: HypCpu): HostAbortResult {
  const ec = esrEc(cpu.exc.esrLo);
  switch (ec) {
    case EsrEc.HVC64:
      handleHostHcall(hyp, cpu);
      return HostAbortResult.MAPPED;
    case EsrEc.SMC64:
      cpu.regs.setSigned(0, SmcccRet.NOT_SUPPORTED);
      return HostAbortResult.MAPPED;
    case EsrEc.IABT_LOW:
    case EsrEc.DABT_LOW: {
      const e = cpu.exc;
      // The faulting IPA: HPFAR_EL2.FIPA (page) plus the page offset from FAR_EL2 (IPA = PA for the host).
      const addr = hpfarToIpa(e.hpfarLo, e.hpfarHi) + (e.farLo & 0xfff);
      const r = handleHostMemAbort(hyp, addr);
      if (r === HostAbortResult.INJECTED) hostInjectAbort(cpu);
      return r;
    }
    default:
      assert(false, `BUG: unexpected exception class 0x${ec.toString(16)} from the host`);
  }
}

/**
 * Injects a synchronous abort into the host: ESR_EL1 = the EL2 syndrome with the class repainted from "lower EL"
 * to "current EL" when the host ran at EL1, and S1PTW (bit 7) set as the pKVM marker; FAR_EL1 = FAR_EL2.
 * Mirrors `host_inject_abort()` (arch/arm64/kvm/hyp/nvhe/mem_protect.c, V1 81/89).
 */
function hostInjectAbort(cpu: HypCpu): void {
  const e = cpu.exc;
  let ec = esrEc(e.esrLo);
  if (spsrMode(e.spsrLo) !== SpsrMode.EL0t) ec = ec === EsrEc.IABT_LOW ? EsrEc.IABT_CUR : EsrEc.DABT_CUR;
  cpu.injectedEsr = (esrEncode(ec, true, esrIss(e.esrLo)) | ESR_S1PTW_LO) >>> 0;
  cpu.injectedFar = e.farHi * 0x1_0000_0000 + e.farLo;
  cpu.injectedAborts++;
}

/** 2^ia_bits of the host stage 2 (the table lookup avoids a `pow()` call per host access). */
function hostIpaLimit(hyp: Hyp): number {
  const n = hyp.hostPgt.iaBits;
  const v = POW2[n];
  return v !== undefined ? v : 2 ** n;
}

/**
 * A host access to PA `pa` on `cpu` through the host stage-2: with the stage-2 enabled the MMU translates it, and
 * a stage-2 fault is taken to EL2, which identity-maps the page lazily (the access is then retried) or refuses it
 * and injects an abort into the host.
 *
 * Two outcomes end without an EL2 decision, and both report a failed access: a PA the CPU cannot address (the
 * host's own stage 1 would have faulted with an address-size fault at EL1, before stage 2), and a fault on a page
 * that is already mapped (a permission fault, e.g. an instruction fetch from MMIO mapped RW, XN): EL2 answers
 * -EAGAIN and the host would re-execute and fault forever.
 * @param write a store (else a load).
 * @param exec an instruction fetch.
 * @returns true when the access completes; false when it cannot (an abort was injected into the host, or one of
 *   the two cases above).
 */
export function hostAccess(hyp: Hyp, cpu: number, pa: number, write: boolean, exec = false): boolean {
  const c = hyp.cpus[cpu];
  if (c === undefined || c.mmu === null) assert(false, `no MMU on CPU ${cpu}`);
  if (!Number.isSafeInteger(pa) || pa < 0 || pa >= hostIpaLimit(hyp)) return false;
  if (!c.hostS2Enabled) return true;
  const mmu = c.mmu;
  const access = exec ? AccessKind.EXEC : write ? AccessKind.WRITE : AccessKind.READ;
  for (let attempt = 0; ; attempt++) {
    // A fault right after EL2 installed a mapping for this address can only be a permission fault (handled
    // below); a third abort would mean the idmap did not cover the address: an emulator bug.
    if (attempt >= 3) assert(false, `host access to 0x${pa.toString(16)} still faults after the idmap`);
    if (mmu.translatePa(pa, access, 0, walk) === FaultType.NONE) return true;
    hostCtx.access = exec ? AbortAccess.EXEC : write ? AbortAccess.WRITE : AbortAccess.READ;
    hostCtx.insn = INSN_NO_SYNDROME;
    hostCtx.vaLo = pa >>> 0;
    hostCtx.vaHi = Math.floor(pa / 0x1_0000_0000) >>> 0;
    deliverStage2Abort(walk, hostCtx, c.exc);
    const r = handleTrap(hyp, c);
    if (r !== HostAbortResult.MAPPED) return false;
  }
}
