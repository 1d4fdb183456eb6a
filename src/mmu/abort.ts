/**
 * Delivery of a stage-2 abort taken from EL1 or EL0 to AArch64 EL2 (Arm ARM D1.10 "Exception entry", D19.2
 * ESR_EL2/FAR_EL2/HPFAR_EL2; reference arm-s2.md §6.1–§6.8): from a faulting {@link WalkResult} and the properties of
 * the access (the instruction syndrome a load/store carries, or an instruction fetch), fill a preallocated
 * {@link El2ExceptionState} with ESR_EL2, FAR_EL2, HPFAR_EL2, ELR_EL2, SPSR_EL2 and the vector address. Mirrors
 * QEMU's `arm_deliver_fault()` (target/arm/tlb_helper.c) and `arm_cpu_do_interrupt_aarch64()` (target/arm/helper.c)
 * for the stage-2 case, which is what the kernel's `kvm_handle_guest_abort()` and `handle_host_mem_abort()` consume.
 *
 * Choices, each an Arm rule or a legal option the reference names:
 *   - every stage-2 fault goes to EL2, EC 0x24 (data) or 0x20 (instruction) from a lower EL; IL = 1 (A64);
 *   - ISV = 1 only for a load/store of a single general-purpose register (a non-zero instruction syndrome), never on
 *     an instruction fetch or a stage-1 walk (S1PTW); with FEAT_RAS also never for an external abort. Without
 *     FEAT_RAS ISV on an external abort on a stage-2 walk is IMPLEMENTATION DEFINED, and we keep the syndrome as QEMU
 *     7.2 does (`ras: false` is the default, see docs/divergences.md);
 *   - WnR is the direction of the original access, also when S1PTW = 1 (QEMU; arm-s2.md §11 #11);
 *   - HPFAR_EL2 holds the faulting IPA for every stage-2 fault (UNKNOWN-but-legal where R_FKLWR does not define it;
 *     `hpfarValid` says which are defined, as Linux's `__hpfar_valid()` does);
 *   - FAR_EL2 holds the VA of the access (the fetch address for an instruction abort);
 *   - ELR_EL2 = the faulting instruction's address; SPSR_EL2 = PSTATE at the fault; PC = VBAR_EL2 + 0x400 (lower EL,
 *     AArch64) or + 0x600 (lower EL, AArch32).
 */

import { assert } from '../arch/assert.js';
import {
  EsrEc,
  ESR_IMM16_MASK,
  esrDataAbort,
  esrHvc64,
  esrInsnAbort,
  esrInsnSyndrome,
  esrSmc64,
  Sas,
} from '../arch/esr.js';
import { FaultType, faultStatusCode } from '../arch/fault.js';
import { hpfarHiFromIpa, hpfarLoFromIpa, hpfarValid } from '../arch/hpfar.js';
import type { WalkResult } from './walk-result.js';

/** Offset from VBAR_EL2 of the synchronous vector for an exception from a lower EL in AArch64. */
export const VECTOR_LOWER_A64_SYNC = 0x400;
/** Offset from VBAR_EL2 of the synchronous vector for an exception from a lower EL in AArch32. */
export const VECTOR_LOWER_A32_SYNC = 0x600;
/** VBAR_EL2 bits[10:0] are RES0: the vector table is 2 KiB aligned. */
const VBAR_RES0_LO = 0x7ff;

/** Direction of the access that faulted (the values of `AccessKind` in `s2-walk.ts`: READ 0, WRITE 1, EXEC 2). */
export const AbortAccess = { READ: 0, WRITE: 1, EXEC: 2 } as const;
/** Direction of the access that faulted. */
export type AbortAccess = (typeof AbortAccess)[keyof typeof AbortAccess];

/**
 * The instruction syndrome (ESR ISS bits[24:14] with ISV) of `LDR Xt, [Xn]` / `STR Xt, [Xn]`: SAS = doubleword,
 * SF = 1, SRT = t. The oracle's stubs use t = 1 (FORMAT.md "ESR_EL2 for a data abort from EL1").
 */
export function insnLdrStrX(rt: number): number {
  return esrInsnSyndrome(Sas.DOUBLEWORD, false, rt, true, false);
}

/**
 * The instruction syndrome of a single-register load or store of `1 << sas` bytes (`LDRB`/`LDRH`/`LDR Wt`/`LDR Xt`,
 * sign-extending `LDRS*` with `sse`, into an X register with `sf`, acquire/release with `ar`). For example `LDRSH
 * X2, [X0]` is `(Sas.HALFWORD, true, 2, true, false)` and `STRB W3, [X0]` is `(Sas.BYTE, false, 3, false, false)`.
 */
export function insnSingleGpr(sas: Sas, sse: boolean, rt: number, sf: boolean, ar: boolean): number {
  return esrInsnSyndrome(sas, sse, rt, sf, ar);
}

/**
 * The instruction syndrome of an access that architecturally reports none (ISV = 0): load/store pair, exclusive,
 * writeback forms, SIMD&FP, atomics (Arm ARM, ESR_EL2.ISV).
 */
export const INSN_NO_SYNDROME = 0;

/**
 * What the vCPU was doing when the access faulted: one per vCPU, rewritten per access (no allocation). 64-bit
 * values are halves because kernel VAs and PCs exceed 2^53.
 */
export class AbortContext {
  /** Direction of the access. */
  access: AbortAccess = AbortAccess.READ;
  /** Instruction syndrome ({@link insnLdrStrX}, {@link insnSingleGpr} or {@link INSN_NO_SYNDROME}); ignored for fetches. */
  insn = 0;
  /** VA of the access, bits[31:0] (FAR_EL2). With stage 1 off it equals the IPA. */
  vaLo = 0;
  /** VA bits[63:32]. */
  vaHi = 0;
  /** Address of the faulting instruction, bits[31:0] (ELR_EL2); the fetch address for an instruction abort. */
  pcLo = 0;
  /** PC bits[63:32]. */
  pcHi = 0;
  /** PSTATE at the fault, in SPSR format (arch/spsr.ts), e.g. `spsrEncode(SpsrMode.EL1h, 0b1111, 0)`. */
  pstate = 0;
  /** VBAR_EL2 bits[31:0]. */
  vbarLo = 0;
  /** VBAR_EL2 bits[63:32]. */
  vbarHi = 0;
  /** EL1 is AArch32 (HCR_EL2.RW = 0): vector + 0x600. */
  el1Aarch32 = false;
  /** The PE implements FEAT_RAS: no instruction syndrome on external aborts. */
  ras = false;
}

/** The EL2 registers an exception entry writes. One per vCPU; every field set in the constructor. */
export class El2ExceptionState {
  /** ESR_EL2 bits[31:0]. */
  esrLo = 0;
  /** ESR_EL2 bits[63:32] (ISS2; 0 in our scope). */
  esrHi = 0;
  /** FAR_EL2 bits[31:0]. */
  farLo = 0;
  /** FAR_EL2 bits[63:32]. */
  farHi = 0;
  /** HPFAR_EL2 bits[31:0]. */
  hpfarLo = 0;
  /** HPFAR_EL2 bits[63:32]. */
  hpfarHi = 0;
  /** HPFAR_EL2 is architecturally defined for this fault (R_FKLWR); otherwise it is our legal choice of value. */
  hpfarValid = false;
  /** ELR_EL2 bits[31:0]. */
  elrLo = 0;
  /** ELR_EL2 bits[63:32]. */
  elrHi = 0;
  /** SPSR_EL2 bits[31:0]. */
  spsrLo = 0;
  /** SPSR_EL2 bits[63:32]. */
  spsrHi = 0;
  /** The address execution continues at, bits[31:0] (VBAR_EL2 + vector offset). */
  vectorLo = 0;
  /** Vector address bits[63:32]. */
  vectorHi = 0;

  /** Restores the constructor state. */
  reset(): void {
    this.esrLo = 0;
    this.esrHi = 0;
    this.farLo = 0;
    this.farHi = 0;
    this.hpfarLo = 0;
    this.hpfarHi = 0;
    this.hpfarValid = false;
    this.elrLo = 0;
    this.elrHi = 0;
    this.spsrLo = 0;
    this.spsrHi = 0;
    this.vectorLo = 0;
    this.vectorHi = 0;
  }
}

function setVector(ctx: AbortContext, offset: number, out: El2ExceptionState): void {
  // VBAR_EL2[10:0] are RES0 and the offsets are below 0x800, so adding never carries into the high half.
  out.vectorLo = (((ctx.vbarLo & ~VBAR_RES0_LO) >>> 0) + offset) >>> 0;
  out.vectorHi = ctx.vbarHi >>> 0;
}

/**
 * Fills `out` with the exception entry for a stage-2 abort taken to EL2 from EL1/EL0.
 *
 * @param walk the faulting walk (`walk.fault !== FaultType.NONE`; `walk.ipa`, `walk.level`, `walk.s1ptw` are used)
 * @param ctx the access and the vCPU state at the fault
 * @param out receives ESR/FAR/HPFAR/ELR/SPSR_EL2 and the vector address
 * @remarks Mirrors `arm_deliver_fault()` (QEMU target/arm/tlb_helper.c) with `target_el = 2` for `fi->stage2`.
 *   Calling it for a walk that did not fault is API misuse (throws InvariantError).
 */
export function deliverStage2Abort(walk: WalkResult, ctx: AbortContext, out: El2ExceptionState): void {
  const fault = walk.fault;
  assert(fault !== FaultType.NONE, 'deliverStage2Abort on a walk that did not fault');
  const fsc = faultStatusCode(fault, walk.level);
  const s1ptw = walk.s1ptw;
  if (ctx.access === AbortAccess.EXEC) {
    out.esrLo = esrInsnAbort(EsrEc.IABT_LOW, s1ptw, fsc);
  } else {
    const external = fault === FaultType.SEA_WALK || fault === FaultType.SEA;
    const isv = !s1ptw && !(external && ctx.ras);
    out.esrLo = esrDataAbort(EsrEc.DABT_LOW, isv ? ctx.insn : 0, false, s1ptw, ctx.access === AbortAccess.WRITE, fsc);
  }
  out.esrHi = 0;
  out.farLo = ctx.vaLo >>> 0;
  out.farHi = ctx.vaHi >>> 0;
  out.hpfarLo = hpfarLoFromIpa(walk.ipa);
  out.hpfarHi = hpfarHiFromIpa(walk.ipa);
  out.hpfarValid = hpfarValid(fsc, s1ptw);
  out.elrLo = ctx.pcLo >>> 0;
  out.elrHi = ctx.pcHi >>> 0;
  out.spsrLo = ctx.pstate >>> 0;
  out.spsrHi = 0;
  setVector(ctx, ctx.el1Aarch32 ? VECTOR_LOWER_A32_SYNC : VECTOR_LOWER_A64_SYNC, out);
}

/**
 * Fills `out` with the exception entry for `HVC #imm16` executed at EL1 in AArch64 (EC 0x16). ELR_EL2 is the
 * address of the next instruction (the HVC's preferred return address is `PC + 4`); FAR and HPFAR are not written.
 *
 * @remarks Mirrors `syn_aa64_hvc()` and the HVC path of `arm_cpu_do_interrupt_aarch64()` (QEMU target/arm).
 */
export function deliverHvc(imm16: number, ctx: AbortContext, out: El2ExceptionState): void {
  out.esrLo = esrHvc64(imm16 & ESR_IMM16_MASK);
  out.esrHi = 0;
  const lo = (ctx.pcLo >>> 0) + 4;
  out.elrLo = lo >>> 0;
  out.elrHi = (ctx.pcHi + (lo >= 0x1_0000_0000 ? 1 : 0)) >>> 0;
  out.spsrLo = ctx.pstate >>> 0;
  out.spsrHi = 0;
  out.hpfarValid = false;
  setVector(ctx, ctx.el1Aarch32 ? VECTOR_LOWER_A32_SYNC : VECTOR_LOWER_A64_SYNC, out);
}

/**
 * Fills `out` with the exception entry for `SMC #imm16` at EL1 trapped by HCR_EL2.TSC (EC 0x17). The trap is taken
 * before the SMC executes, so ELR_EL2 is the SMC's own address (arm-s2.md §6.7; the kernel's pKVM host handler
 * advances it with `kvm_skip_host_instr()`).
 */
export function deliverSmcTrap(imm16: number, ctx: AbortContext, out: El2ExceptionState): void {
  out.esrLo = esrSmc64(imm16 & ESR_IMM16_MASK);
  out.esrHi = 0;
  out.elrLo = ctx.pcLo >>> 0;
  out.elrHi = ctx.pcHi >>> 0;
  out.spsrLo = ctx.pstate >>> 0;
  out.spsrHi = 0;
  out.hpfarValid = false;
  setVector(ctx, ctx.el1Aarch32 ? VECTOR_LOWER_A32_SYNC : VECTOR_LOWER_A64_SYNC, out);
}
