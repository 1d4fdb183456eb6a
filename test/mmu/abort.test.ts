// Stage-2 abort delivery from EL1/EL0 to EL2 (Arm ARM D1.10, D19.2; arm-s2.md §6.1–§6.8).
import t from 'tap';
import {
  AbortAccess,
  AbortContext,
  deliverHvc,
  deliverSmcTrap,
  deliverStage2Abort,
  El2ExceptionState,
  INSN_NO_SYNDROME,
  insnLdrStrX,
  insnSingleGpr,
  VECTOR_LOWER_A32_SYNC,
  VECTOR_LOWER_A64_SYNC,
} from '../../src/mmu/abort.js';
import { WalkResult } from '../../src/mmu/walk-result.js';
import { FaultType, faultStatusCode } from '../../src/arch/fault.js';
import { EsrEc, esrEc, esrFsc, esrImm16, esrIsv, esrS1ptw, esrSas, esrSf, esrSrt, esrSse, esrWnR, Sas } from '../../src/arch/esr.js';
import { hpfarToIpa } from '../../src/arch/hpfar.js';
import { spsrEncode, spsrEl, spsrIsAarch32, spsrMode, spsrModeName, SpsrMode } from '../../src/arch/spsr.js';
import { InvariantError } from '../../src/arch/assert.js';
import { hi32, join, lo32 } from '../../src/arch/bits.js';

function faulted(fault: FaultType, level: number, ipa: number, s1ptw = false): WalkResult {
  const w = new WalkResult();
  w.fault = fault;
  w.level = level;
  w.ipa = ipa;
  w.s1ptw = s1ptw;
  return w;
}

function ctxFor(access: AbortAccess, ipa: number, insn = insnLdrStrX(1)): AbortContext {
  const c = new AbortContext();
  c.access = access;
  c.insn = insn;
  c.vaLo = lo32(ipa);
  c.vaHi = hi32(ipa);
  c.pcLo = 0x8000_1000;
  c.pcHi = 0xffff_8000;
  c.pstate = spsrEncode(SpsrMode.EL1h, 0b1111, 0b0100);
  c.vbarLo = 0x4021_0800;
  c.vbarHi = 0;
  return c;
}

t.test('deliverStage2Abort: data abort from a 64-bit LDR (QEMU fixture value)', async (t) => {
  const ipa = 0x6b5a72000e68;
  const out = new El2ExceptionState();
  deliverStage2Abort(faulted(FaultType.TRANSLATION, 3, ipa), ctxFor(AbortAccess.READ, ipa), out);
  t.equal(out.esrLo, 0x93c18007);
  t.equal(join(out.farLo, out.farHi), ipa);
  t.equal(join(out.hpfarLo, out.hpfarHi), 0x6b5a720000);
  t.ok(out.hpfarValid);
  t.equal(out.elrLo, 0x8000_1000);
  t.equal(out.elrHi, 0xffff_8000, 'ELR keeps a kernel VA above 2^53');
  t.equal(spsrMode(out.spsrLo), SpsrMode.EL1h);
  t.equal(out.vectorLo, 0x4021_0800 + VECTOR_LOWER_A64_SYNC);
});

t.test('deliverStage2Abort: every fault kind and level maps to its FSC; WnR follows the access', async (t) => {
  for (const fault of [FaultType.TRANSLATION, FaultType.ACCESS_FLAG, FaultType.PERMISSION, FaultType.ADDRESS_SIZE, FaultType.SEA_WALK]) {
    for (const level of [0, 1, 2, 3]) {
      for (const access of [AbortAccess.READ, AbortAccess.WRITE, AbortAccess.EXEC]) {
        const out = new El2ExceptionState();
        deliverStage2Abort(faulted(fault, level, 0x1234_5000), ctxFor(access, 0x1234_5000), out);
        t.equal(esrFsc(out.esrLo), faultStatusCode(fault, level));
        t.equal(esrEc(out.esrLo), access === AbortAccess.EXEC ? EsrEc.IABT_LOW : EsrEc.DABT_LOW);
        t.equal(esrWnR(out.esrLo), access === AbortAccess.WRITE);
      }
    }
  }
});

t.test('ISV: set for a single-GPR load/store, clear on fetch, S1PTW, no-syndrome forms and SEA with FEAT_RAS', async (t) => {
  const ipa = 0x5000_0000;
  const run = (w: WalkResult, c: AbortContext) => {
    const out = new El2ExceptionState();
    deliverStage2Abort(w, c, out);
    return out.esrLo;
  };
  const ldrsh = insnSingleGpr(Sas.HALFWORD, true, 2, true, false);
  const e = run(faulted(FaultType.PERMISSION, 3, ipa), ctxFor(AbortAccess.READ, ipa, ldrsh));
  t.ok(esrIsv(e));
  t.equal(esrSas(e), Sas.HALFWORD);
  t.ok(esrSse(e));
  t.equal(esrSrt(e), 2);
  t.ok(esrSf(e));
  t.notOk(esrIsv(run(faulted(FaultType.PERMISSION, 3, ipa, true), ctxFor(AbortAccess.READ, ipa))), 'S1PTW');
  t.ok(esrS1ptw(run(faulted(FaultType.PERMISSION, 3, ipa, true), ctxFor(AbortAccess.READ, ipa))));
  t.notOk(esrIsv(run(faulted(FaultType.PERMISSION, 3, ipa), ctxFor(AbortAccess.READ, ipa, INSN_NO_SYNDROME))), 'LDP-like');
  t.ok(esrIsv(run(faulted(FaultType.SEA_WALK, 2, ipa), ctxFor(AbortAccess.READ, ipa))), 'SEA without FEAT_RAS keeps the syndrome (QEMU)');
  const ras = ctxFor(AbortAccess.READ, ipa);
  ras.ras = true;
  t.notOk(esrIsv(run(faulted(FaultType.SEA_WALK, 2, ipa), ras)), 'SEA with FEAT_RAS: ISV=0');
  t.ok(esrIsv(run(faulted(FaultType.PERMISSION, 2, ipa), ras)), 'FEAT_RAS does not affect other faults');
});

t.test('HPFAR is written for every fault, hpfarValid says when the architecture defines it', async (t) => {
  const out = new El2ExceptionState();
  deliverStage2Abort(faulted(FaultType.PERMISSION, 3, 0x7654_3210), ctxFor(AbortAccess.WRITE, 0x7654_3210), out);
  t.equal(hpfarToIpa(out.hpfarLo, out.hpfarHi), 0x7654_3000);
  t.notOk(out.hpfarValid);
});

t.test('vector: +0x600 when EL1 is AArch32; VBAR bits[10:0] ignored', async (t) => {
  const c = ctxFor(AbortAccess.READ, 0x1000);
  c.el1Aarch32 = true;
  c.vbarLo = 0x4021_07ff;
  c.vbarHi = 0xffff_8000;
  const out = new El2ExceptionState();
  deliverStage2Abort(faulted(FaultType.TRANSLATION, 1, 0x1000), c, out);
  t.equal(out.vectorLo, 0x4021_0000 + VECTOR_LOWER_A32_SYNC);
  t.equal(out.vectorHi, 0xffff_8000);
});

t.test('deliverStage2Abort on a walk without a fault is API misuse', async (t) => {
  t.throws(() => deliverStage2Abort(new WalkResult(), new AbortContext(), new El2ExceptionState()), InvariantError);
});

t.test('HVC: EC 0x16, imm16, ELR = PC + 4 with carry into the high half', async (t) => {
  const c = ctxFor(AbortAccess.READ, 0);
  c.pcLo = 0xffff_fffc;
  c.pcHi = 0x0000_0001;
  const out = new El2ExceptionState();
  deliverHvc(0x77, c, out);
  t.equal(esrEc(out.esrLo), EsrEc.HVC64);
  t.equal(esrImm16(out.esrLo), 0x77);
  t.equal(out.elrLo, 0);
  t.equal(out.elrHi, 2);
  t.equal(out.vectorLo, 0x4021_0800 + VECTOR_LOWER_A64_SYNC);
});

t.test('SMC trapped by HCR_EL2.TSC: EC 0x17, ELR = the SMC itself', async (t) => {
  const c = ctxFor(AbortAccess.READ, 0);
  const out = new El2ExceptionState();
  deliverSmcTrap(0, c, out);
  t.equal(esrEc(out.esrLo), EsrEc.SMC64);
  t.equal(out.elrLo, c.pcLo);
  out.reset();
  t.equal(out.esrLo, 0);
});

t.test('spsr helpers', async (t) => {
  const s = spsrEncode(SpsrMode.EL0t, 0, 0b1000);
  t.equal(spsrEl(s), 0);
  t.notOk(spsrIsAarch32(s));
  t.equal(spsrModeName(s), 'EL0t');
  t.equal(spsrModeName(spsrEncode(SpsrMode.EL2h, 0xf, 0)), 'EL2h');
  t.equal(spsrModeName(0x10), 'M=0b10000', 'AArch32 user mode');
  t.equal(s >>> 28, 0b1000, 'N flag');
});
