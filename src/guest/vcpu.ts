/**
 * Guest vCPUs: each has its own register file and a queue of memory operations the harness puts there (loads and
 * stores of 1, 2, 4 or 8 bytes with their sign-extending forms, instruction fetches, and HVCs). Running a vCPU
 * executes the queue through the CPU's stage-2 MMU (`S2Mmu.translate`); the data path reads and writes physical
 * memory at the translated PA. An access that faults is delivered to EL2 with the syndrome its instruction carries
 * (`mmu/abort.ts`: ISV/SAS/SSE/SRT/SF/AR/WnR for a single-register load or store, IFSC for a fetch; arm-s2.md §6.3,
 * §6.4) and stays at the head of the queue, so the next run retries it, as the real guest re-executes the
 * faulting instruction after KVM fixed its stage-2.
 *
 * Instructions modelled (A64, Arm ARM C6.2), stage 1 off (VA = IPA):
 *
 *   size  load (zero-extend)   sign-extending load           store
 *   1     LDRB Wt              LDRSB Wt / LDRSB Xt           STRB Wt
 *   2     LDRH Wt              LDRSH Wt / LDRSH Xt           STRH Wt
 *   4     LDR Wt               LDRSW Xt                      STR Wt
 *   8     LDR Xt               —                             STR Xt
 *
 * Accesses are naturally aligned (an unaligned address is refused at queue time, so no access crosses a page).
 * Register 31 is XZR: loads into it are discarded and stores from it write zero. `LDAR`/`STLR` forms set AR.
 *
 * `GuestCpus` implements the `GuestRunner` interface of `el2/guest-runner.ts` structurally (guest/ imports only
 * `arch/` and `mmu/`, DESIGN.md §2). The hot path allocates nothing per access.
 */

import { assert } from '../arch/assert.js';
import { Sas } from '../arch/esr.js';
import { FaultType } from '../arch/fault.js';
import { RegFile } from '../arch/regs.js';
import { GuestExit } from '../arch/smccc.js';
import { SpsrMode, spsrEncode } from '../arch/spsr.js';
import { AbortAccess, AbortContext, deliverHvc, deliverStage2Abort, insnSingleGpr, type El2ExceptionState } from '../mmu/abort.js';
import type { S2Mmu } from '../mmu/s2-mmu.js';
import { AccessKind } from '../mmu/s2-walk.js';
import { WalkResult } from '../mmu/walk-result.js';

/** Kind of a queued guest operation. */
export const GuestOp = { LOAD: 0, STORE: 1, FETCH: 2, HVC: 3 } as const;
/** Kind of a queued guest operation. */
export type GuestOp = (typeof GuestOp)[keyof typeof GuestOp];

/** Operation flag: sign-extending load (`LDRS*`, ISS.SSE). */
export const OPF_SIGNED = 0x1;
/** Operation flag: the transfer register is Xt (64-bit, ISS.SF); otherwise Wt. */
export const OPF_X = 0x2;
/** Operation flag: load-acquire / store-release (`LDAR*` / `STLR*`, ISS.AR). */
export const OPF_ACQREL = 0x4;

/** Register number 31 in a load/store is XZR/WZR. */
export const XZR = 31;

/** Where the guest starts executing (PC of its first queued operation); the queue advances it by 4 per op. */
export const GUEST_ENTRY_PC = 0x4000_0000;

/** PSTATE the guest runs in: EL1h, D/A/I/F masked (SPSR format). */
const GUEST_PSTATE = spsrEncode(SpsrMode.EL1h, 0b1111, 0);

/** Counters of one guest vCPU. */
export class GuestVcpuStats {
  /** Operations completed. */
  completed = 0;
  /** Stage-2 aborts delivered to EL2. */
  aborts = 0;
  /** HVCs executed. */
  hvcs = 0;
}

/** One guest vCPU. */
export class GuestVcpu {
  /** x0…x30. */
  readonly regs = new RegFile();
  /** PC bits[31:0] of the next operation. */
  pcLo = GUEST_ENTRY_PC;
  /** PC bits[63:32]. */
  pcHi = 0;
  /** Counters. */
  readonly stats = new GuestVcpuStats();
  /** Scratch of the access path (one per vCPU). */
  readonly walk = new WalkResult();
  /** What the vCPU was doing at its last exit, handed to `mmu/abort.ts`. */
  readonly ctx = new AbortContext();
  private kind = new Uint8Array(16);
  private addr = new Float64Array(16);
  private sas = new Uint8Array(16);
  private reg = new Uint8Array(16);
  private flags = new Uint8Array(16);
  private arg1 = new Float64Array(16);
  private arg2 = new Float64Array(16);
  private arg3 = new Float64Array(16);
  private imm = new Uint16Array(16);
  private head = 0;
  private tail = 0;

  constructor() {
    this.ctx.pstate = GUEST_PSTATE;
  }

  /** Number of queued operations not yet completed. */
  get pending(): number {
    return this.tail - this.head;
  }

  /** Kind of the operation at the head of the queue, or -1 when empty. */
  get headKind(): number {
    return this.head < this.tail ? this.kind[this.head]! : -1; // JUSTIFY: head < tail ≤ capacity.
  }

  /** IPA of the operation at the head of the queue, or -1 when empty. */
  get headIpa(): number {
    return this.head < this.tail ? this.addr[this.head]! : -1; // JUSTIFY: as above.
  }

  /**
   * Queues a load of `size` bytes from `ipa` into register `rt`.
   * @param size 1, 2, 4 or 8.
   * @param rt 0…31 (31 = XZR).
   * @param opts `signed` for LDRSB/LDRSH/LDRSW, `x` for an Xt destination (implied for size 8 and for LDRSW),
   *   `acqRel` for LDAR forms.
   * @returns false (nothing queued) for an impossible combination (LDRSW Wt, signed 8-byte, sizes other than
   *   1/2/4/8, a bad register) or an IPA that is not naturally aligned or not a safe integer.
   */
  queueLoad(ipa: number, size: number, rt: number, opts: { signed?: boolean; x?: boolean; acqRel?: boolean } = {}): boolean {
    const sas = sasOf(size);
    if (sas < 0 || !validAddr(ipa, size) || !validReg(rt)) return false;
    const signed = opts.signed === true;
    let x = opts.x === true || size === 8;
    if (signed && size === 8) return false;
    if (signed && size === 4) {
      if (opts.x === false) return false; // LDRSW has only an Xt form
      x = true;
    }
    this.push(GuestOp.LOAD, ipa, sas, rt, (signed ? OPF_SIGNED : 0) | (x ? OPF_X : 0) | (opts.acqRel === true ? OPF_ACQREL : 0));
    return true;
  }

  /**
   * Queues a store of the low `size` bytes of register `rt` to `ipa` (STRB/STRH/STR Wt/STR Xt).
   * @param opts `acqRel` for STLR forms.
   * @returns false for a bad size, register or address (see {@link queueLoad}).
   */
  queueStore(ipa: number, size: number, rt: number, opts: { acqRel?: boolean } = {}): boolean {
    const sas = sasOf(size);
    if (sas < 0 || !validAddr(ipa, size) || !validReg(rt)) return false;
    this.push(GuestOp.STORE, ipa, sas, rt, (size === 8 ? OPF_X : 0) | (opts.acqRel === true ? OPF_ACQREL : 0));
    return true;
  }

  /**
   * Queues an instruction fetch at `ipa` (the vCPU branches there and executes one instruction).
   * @returns false for an address that is not 4-byte aligned.
   */
  queueFetch(ipa: number): boolean {
    if (!validAddr(ipa, 4)) return false;
    this.push(GuestOp.FETCH, ipa, Sas.WORD, 0, 0);
    return true;
  }

  /**
   * Queues `HVC #imm16` with x0 = `fnId` and x1…x3 = `a1`…`a3` (non-negative integers below 2^53).
   * @returns false for a bad function id, immediate or argument.
   */
  queueHvc(fnId: number, a1 = 0, a2 = 0, a3 = 0, imm16 = 0): boolean {
    if (!Number.isInteger(fnId) || fnId < 0 || fnId > 0xffff_ffff) return false;
    if (!Number.isInteger(imm16) || imm16 < 0 || imm16 > 0xffff) return false;
    if (!isU53(a1) || !isU53(a2) || !isU53(a3)) return false;
    this.push(GuestOp.HVC, fnId, 0, 0, 0);
    const i = this.tail - 1;
    this.arg1[i] = a1;
    this.arg2[i] = a2;
    this.arg3[i] = a3;
    this.imm[i] = imm16;
    return true;
  }

  /** Drops every queued operation. */
  clearQueue(): void {
    this.head = 0;
    this.tail = 0;
  }

  /**
   * Completes the head operation as the VMM's MMIO emulation does after `KVM_EXIT_MMIO`
   * (`kvm_handle_mmio_return()`): a load receives `lo`/`hi` (truncated and extended as the instruction says), a
   * store just retires; the PC advances.
   * @returns false when the head operation is not a load or store.
   */
  completeMmio(lo: number, hi: number): boolean {
    const k = this.headKind;
    if (k !== GuestOp.LOAD && k !== GuestOp.STORE) return false;
    if (k === GuestOp.LOAD) this.writeLoad(this.head, lo >>> 0, hi >>> 0);
    this.retire();
    return true;
  }

  /**
   * Drops the head operation without executing it: the guest took an exception the host injected (its handler
   * skips the instruction in this model).
   * @returns false when the queue is empty.
   */
  skipHead(): boolean {
    if (this.head >= this.tail) return false;
    this.retire();
    return true;
  }

  /**
   * Runs queued operations until one traps or the queue is empty.
   * @returns a `GuestExit` value: COMPLETED, S2_ABORT (`exc` filled) or HVC (`exc` filled, x0…x3 set).
   */
  run(mmu: S2Mmu, exc: El2ExceptionState): GuestExit {
    const walk = this.walk;
    const ctx = this.ctx;
    const mem = mmu.mem;
    while (this.head < this.tail) {
      const i = this.head;
      const kind = this.kind[i]!; // JUSTIFY: i < tail ≤ capacity.
      const ipa = this.addr[i]!; // JUSTIFY: as above.
      if (kind === GuestOp.HVC) {
        const regs = this.regs;
        regs.set(0, ipa >>> 0, 0);
        regs.setU(1, this.arg1[i]!); // JUSTIFY: as above.
        regs.setU(2, this.arg2[i]!); // JUSTIFY: as above.
        regs.setU(3, this.arg3[i]!); // JUSTIFY: as above.
        ctx.pcLo = this.pcLo;
        ctx.pcHi = this.pcHi;
        deliverHvc(this.imm[i]!, ctx, exc); // JUSTIFY: as above.
        this.stats.hvcs++;
        this.retire();
        return GuestExit.HVC;
      }
      const access = kind === GuestOp.LOAD ? AccessKind.READ : kind === GuestOp.STORE ? AccessKind.WRITE : AccessKind.EXEC;
      let fault = mmu.translatePa(ipa, access, 0, walk);
      // A PA in the memory's flat window is RAM (the window is a flat RAM region): test it before isRam's lookup.
      const winOff = walk.pa - mem.winBase;
      if (fault === FaultType.NONE && kind !== GuestOp.FETCH && !(winOff >= 0 && winOff < mem.winBytes) && !mem.isRam(walk.pa)) {
        // The translated PA is not memory: a synchronous external abort on the access itself (DFSC 0x10).
        walk.fault = FaultType.SEA;
        walk.level = 0;
        fault = FaultType.SEA;
      }
      if (fault !== FaultType.NONE) {
        this.fillContext(i, kind, ipa);
        deliverStage2Abort(walk, ctx, exc);
        this.stats.aborts++;
        return GuestExit.S2_ABORT;
      }
      if (kind === GuestOp.LOAD) this.load(mem, i, walk.pa);
      else if (kind === GuestOp.STORE) this.store(mem, i, walk.pa);
      this.retire();
    }
    return GuestExit.COMPLETED;
  }

  /** Sets the abort context for operation `i` (access kind, instruction syndrome, VA, PC). */
  private fillContext(i: number, kind: number, ipa: number): void {
    const ctx = this.ctx;
    const lo = ipa >>> 0;
    const hi = Math.floor(ipa / 0x1_0000_0000) >>> 0;
    ctx.vaLo = lo;
    ctx.vaHi = hi;
    if (kind === GuestOp.FETCH) {
      // The fetch address is the PC of the instruction that could not be fetched.
      ctx.access = AbortAccess.EXEC;
      ctx.insn = 0;
      ctx.pcLo = lo;
      ctx.pcHi = hi;
      return;
    }
    const f = this.flags[i]!; // JUSTIFY: i < tail.
    ctx.access = kind === GuestOp.LOAD ? AbortAccess.READ : AbortAccess.WRITE;
    ctx.insn = insnSingleGpr(this.sas[i]! as Sas, (f & OPF_SIGNED) !== 0, this.reg[i]!, (f & OPF_X) !== 0, (f & OPF_ACQREL) !== 0); // JUSTIFY: as above.
    ctx.pcLo = this.pcLo;
    ctx.pcHi = this.pcHi;
  }

  /** Performs load `i` from RAM at `pa`. */
  private load(mem: S2Mmu['mem'], i: number, pa: number): void {
    const sas = this.sas[i]!; // JUSTIFY: i < tail.
    let lo: number;
    let hi = 0;
    if (sas === Sas.DOUBLEWORD) {
      lo = mem.read64Lo(pa);
      hi = mem.read64Hi(pa);
    } else if (sas === Sas.WORD) {
      lo = mem.read32(pa);
    } else if (sas === Sas.HALFWORD) {
      const off = pa % 4;
      lo = (mem.read32(pa - off) >>> (off * 8)) & 0xffff;
    } else {
      lo = mem.read8(pa);
    }
    this.writeLoad(i, lo, hi);
  }

  /** Writes the value of load `i` into its register: truncation, sign or zero extension, Wt or Xt, XZR. */
  private writeLoad(i: number, lo: number, hi: number): void {
    const rt = this.reg[i]!; // JUSTIFY: i < tail.
    if (rt === XZR) return;
    const sas = this.sas[i]!; // JUSTIFY: as above.
    const f = this.flags[i]!; // JUSTIFY: as above.
    if (sas === Sas.DOUBLEWORD) {
      this.regs.set(rt, lo >>> 0, hi >>> 0);
      return;
    }
    const bits = 8 << sas;
    let v = bits === 32 ? lo >>> 0 : (lo >>> 0) % 2 ** bits;
    if ((f & OPF_SIGNED) !== 0) {
      const s = bits === 32 ? v | 0 : (v << (32 - bits)) >> (32 - bits);
      // LDRS* Wt sign-extends to 32 bits and zeroes bits[63:32]; LDRS* Xt sign-extends to 64.
      this.regs.set(rt, s >>> 0, (f & OPF_X) !== 0 && s < 0 ? 0xffff_ffff : 0);
      return;
    }
    v >>>= 0;
    this.regs.set(rt, v, 0);
  }

  /** Performs store `i` to RAM at `pa`. */
  private store(mem: S2Mmu['mem'], i: number, pa: number): void {
    const rt = this.reg[i]!; // JUSTIFY: i < tail.
    const lo = rt === XZR ? 0 : this.regs.lo(rt);
    const hi = rt === XZR ? 0 : this.regs.hi(rt);
    const sas = this.sas[i]!; // JUSTIFY: as above.
    if (sas === Sas.DOUBLEWORD) {
      mem.write64(pa, lo, hi);
    } else if (sas === Sas.WORD) {
      mem.write32(pa, lo);
    } else if (sas === Sas.HALFWORD) {
      const off = pa % 4;
      const base = pa - off;
      const sh = off * 8;
      const m = (0xffff << sh) >>> 0;
      mem.write32(base, ((mem.read32(base) & ~m) | ((lo << sh) & m)) >>> 0);
    } else {
      mem.write8(pa, lo & 0xff);
    }
  }

  /** Retires the head operation: the PC moves to the next instruction. */
  private retire(): void {
    this.head++;
    this.stats.completed++;
    const lo = this.pcLo + 4;
    this.pcLo = lo >>> 0;
    if (lo >= 0x1_0000_0000) this.pcHi = (this.pcHi + 1) >>> 0;
    if (this.head === this.tail) {
      this.head = 0;
      this.tail = 0;
    }
  }

  /** Appends an operation, growing the queue arrays when full. */
  private push(kind: GuestOp, addr: number, sas: number, reg: number, flags: number): void {
    if (this.tail === this.kind.length) this.grow();
    const i = this.tail++;
    this.kind[i] = kind;
    this.addr[i] = addr;
    this.sas[i] = sas;
    this.reg[i] = reg;
    this.flags[i] = flags;
    this.arg1[i] = 0;
    this.arg2[i] = 0;
    this.arg3[i] = 0;
    this.imm[i] = 0;
  }

  private grow(): void {
    const n = this.kind.length * 2;
    this.kind = growU8(this.kind, n);
    this.sas = growU8(this.sas, n);
    this.reg = growU8(this.reg, n);
    this.flags = growU8(this.flags, n);
    this.addr = growF64(this.addr, n);
    this.arg1 = growF64(this.arg1, n);
    this.arg2 = growF64(this.arg2, n);
    this.arg3 = growF64(this.arg3, n);
    const imm = new Uint16Array(n);
    imm.set(this.imm);
    this.imm = imm;
  }
}

function growU8(a: Uint8Array, n: number): Uint8Array<ArrayBuffer> {
  const b = new Uint8Array(n);
  b.set(a);
  return b;
}

function growF64(a: Float64Array, n: number): Float64Array<ArrayBuffer> {
  const b = new Float64Array(n);
  b.set(a);
  return b;
}

/** log2 of an access size, or -1. */
function sasOf(size: number): number {
  switch (size) {
    case 1:
      return Sas.BYTE;
    case 2:
      return Sas.HALFWORD;
    case 4:
      return Sas.WORD;
    case 8:
      return Sas.DOUBLEWORD;
    default:
      return -1;
  }
}

function isU53(x: number): boolean {
  return Number.isSafeInteger(x) && x >= 0;
}

function validAddr(ipa: number, size: number): boolean {
  return isU53(ipa) && ipa % size === 0;
}

function validReg(rt: number): boolean {
  return Number.isInteger(rt) && rt >= 0 && rt <= XZR;
}

/**
 * The guest vCPUs of every VM, by hyp VM handle and vCPU index; implements `GuestRunner`
 * (`el2/guest-runner.ts`) structurally for `__kvm_vcpu_run`.
 */
export class GuestCpus {
  private readonly handles: number[] = [];
  private readonly vcpus: GuestVcpu[][] = [];

  /**
   * The vCPU `vcpuIdx` of VM `vmHandle`, created on first use (the harness queues operations before or after the
   * hyp VM exists; EL2 hands out the handle).
   */
  vcpu(vmHandle: number, vcpuIdx: number): GuestVcpu {
    if (!(Number.isInteger(vcpuIdx) && vcpuIdx >= 0 && vcpuIdx < 4096)) assert(false, `bad vCPU index ${vcpuIdx}`);
    let at = this.handles.indexOf(vmHandle);
    if (at < 0) {
      at = this.handles.length;
      this.handles.push(vmHandle);
      this.vcpus.push([]);
    }
    const list = this.vcpus[at]!; // JUSTIFY: at < length.
    let v = list[vcpuIdx];
    if (v === undefined) {
      v = new GuestVcpu();
      list[vcpuIdx] = v;
    }
    return v;
  }

  /** Forgets the vCPUs of a VM (after teardown; a later VM may reuse the handle). */
  removeVm(vmHandle: number): void {
    const at = this.handles.indexOf(vmHandle);
    if (at < 0) return;
    this.handles.splice(at, 1);
    this.vcpus.splice(at, 1);
  }

  /**
   * `GuestRunner.run`: runs vCPU `vcpuIdx` of VM `vmHandle` through `mmu` until it traps.
   * @returns a `GuestExit` value.
   */
  run(vmHandle: number, vcpuIdx: number, mmu: S2Mmu, exc: El2ExceptionState): number {
    return this.vcpu(vmHandle, vcpuIdx).run(mmu, exc);
  }

  /** `GuestRunner.regs`: the register file of a guest vCPU. */
  regs(vmHandle: number, vcpuIdx: number): RegFile {
    return this.vcpu(vmHandle, vcpuIdx).regs;
  }
}
