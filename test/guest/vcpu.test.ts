// Guest vCPU accesses go through the stage-2 MMU; a faulting access reaches EL2 with the syndrome of its
// instruction (Arm ARM ESR_EL2 ISS for data/instruction aborts; arm-s2.md §6.3, §6.4) and is retried on the next run.
import t from 'tap';
import fc from 'fast-check';
import { s2Page, s2Table } from '../../src/arch/desc-codec.js';
import { EsrEc, Sas, decodeEsr } from '../../src/arch/esr.js';
import { ARMV8_4_PA48_FEATURES } from '../../src/arch/features.js';
import { hcr } from '../../src/arch/hcr.js';
import { hpfarToIpa } from '../../src/arch/hpfar.js';
import { GuestExit } from '../../src/arch/smccc.js';
import { vtcr } from '../../src/arch/vtcr.js';
import { vttbr } from '../../src/arch/vttbr.js';
import { PhysMem, RegionKind } from '../../src/mem/phys-mem.js';
import { El2ExceptionState } from '../../src/mmu/abort.js';
import { S2Mmu } from '../../src/mmu/s2-mmu.js';
import { GUEST_ENTRY_PC, GuestCpus, GuestOp, GuestVcpu, XZR } from '../../src/guest/vcpu.js';

const RAM = 0x4000_0000;
const ROOT = 0x4800_0000;
const DATA_PA = 0x4a00_0000;
const MMIO_PA = 0x0900_0000;
const IPA = 0x8000_0000; // a guest page backed by DATA_PA once mapped

/** A machine with one 39-bit-IPA guest stage-2 (start level 1) whose tables are built in place. */
function machine() {
  const mem = new PhysMem();
  mem.addRegion(RAM, 0x1000_0000);
  mem.addRegion(MMIO_PA, 0x1000, RegionKind.MMIO);
  const mmu = new S2Mmu(mem, ARMV8_4_PA48_FEATURES);
  mmu.setRegs(vtcr({ t0sz: 25, sl0: 1, tg0: '4k', ps: 2 }), vttbr({ baddr: ROOT, vmid: 1 }), hcr({ vm: true, rw: true }));
  let next = ROOT + 0x1000;
  /** Maps the 4 KiB page at `ipa` to `pa` (level-3 leaf; tables allocated on the way). */
  const map = (ipa: number, pa: number, ap: 'RW' | 'RO' | 'NONE' = 'RW', xn = 0): void => {
    let table = ROOT;
    for (let level = 1; level < 3; level++) {
      const e = table + (Math.floor(ipa / 2 ** (12 + 9 * (3 - level))) % 512) * 8;
      const w = { lo: 0, hi: 0 };
      mem.read64(e, w);
      if ((w.lo & 3) === 3) table = (w.lo & ~0xfff) >>> 0;
      else {
        const d = s2Table({ nlta: next });
        mem.write64(e, d.lo, d.hi);
        table = next;
        next += 0x1000;
      }
    }
    const d = s2Page({ oa: pa, ap, xn });
    mem.write64(table + (Math.floor(ipa / 4096) % 512) * 8, d.lo, d.hi);
    mmu.tlb.alle1is();
    mmu.tlb.dsb();
  };
  return { mem, mmu, map, exc: new El2ExceptionState() };
}

/** Every load form: size, sign, destination width, and the value a 0x80…-patterned memory word yields. */
const LOADS = [
  { name: 'LDRB Wt', size: 1, signed: false, x: false, lo: 0x81, hi: 0 },
  { name: 'LDRSB Wt', size: 1, signed: true, x: false, lo: 0xffff_ff81, hi: 0 },
  { name: 'LDRSB Xt', size: 1, signed: true, x: true, lo: 0xffff_ff81, hi: 0xffff_ffff },
  { name: 'LDRH Wt', size: 2, signed: false, x: false, lo: 0x8281, hi: 0 },
  { name: 'LDRSH Wt', size: 2, signed: true, x: false, lo: 0xffff_8281, hi: 0 },
  { name: 'LDRSH Xt', size: 2, signed: true, x: true, lo: 0xffff_8281, hi: 0xffff_ffff },
  { name: 'LDR Wt', size: 4, signed: false, x: false, lo: 0x8483_8281, hi: 0 },
  { name: 'LDRSW Xt', size: 4, signed: true, x: true, lo: 0x8483_8281, hi: 0xffff_ffff },
  { name: 'LDR Xt', size: 8, signed: false, x: true, lo: 0x8483_8281, hi: 0x8887_8685 },
] as const;

const SAS_OF = { 1: Sas.BYTE, 2: Sas.HALFWORD, 4: Sas.WORD, 8: Sas.DOUBLEWORD } as const;

t.test('loads', async (t) => {
  for (const l of LOADS) {
    for (const rt of [0, 7, 30]) {
      t.test(`${l.name} into register ${rt}: a fault carries ISV/SAS/SSE/SRT/SF, WnR=0; the retry loads the value`, async (t) => {
        const m = machine();
        const v = new GuestVcpu();
        v.regs.set(rt, 0xdead_beef, 0xdead_beef);
        t.ok(v.queueLoad(IPA + 8, l.size, rt, { signed: l.signed, x: l.x }));
        t.equal(v.run(m.mmu, m.exc), GuestExit.S2_ABORT);
        const e = decodeEsr(m.exc.esrLo, m.exc.esrHi);
        t.equal(e.ec, EsrEc.DABT_LOW);
        t.same(
          { isv: e.dabt?.isv, sas: e.dabt?.sas, sse: e.dabt?.sse, srt: e.dabt?.srt, sf: e.dabt?.sf, wnr: e.dabt?.wnr, ar: e.dabt?.ar },
          { isv: true, sas: SAS_OF[l.size], sse: l.signed, srt: rt, sf: l.x, wnr: false, ar: false },
        );
        t.equal(e.dabt?.dfsc, 0x05, 'translation fault at level 1 (empty start table)');
        t.equal(hpfarToIpa(m.exc.hpfarLo, m.exc.hpfarHi), IPA);
        t.equal(m.exc.farLo, IPA + 8);
        t.equal(m.exc.elrLo, GUEST_ENTRY_PC, 'ELR is the faulting instruction');
        t.equal(v.pending, 1, 'the faulting load stays queued');
        // Arrange memory: bytes 0x81, 0x82, … at IPA + 8.
        m.map(IPA, DATA_PA);
        m.mem.write64(DATA_PA + 8, 0x8483_8281, 0x8887_8685);
        t.equal(v.run(m.mmu, m.exc), GuestExit.COMPLETED);
        t.equal(v.pending, 0);
        t.same([v.regs.lo(rt), v.regs.hi(rt)], [l.lo, l.hi]);
        t.equal(v.pcLo, GUEST_ENTRY_PC + 4);
      });
    }
  }
  t.test('LDAR sets AR in the syndrome', async (t) => {
    const m = machine();
    const v = new GuestVcpu();
    v.queueLoad(IPA, 8, 3, { acqRel: true });
    v.run(m.mmu, m.exc);
    t.equal(decodeEsr(m.exc.esrLo, 0).dabt?.ar, true);
  });
  t.test('a load into XZR is discarded and reports SRT=31', async (t) => {
    const m = machine();
    m.map(IPA, DATA_PA, 'NONE');
    m.mem.write64(DATA_PA, 0x1234, 0);
    const v = new GuestVcpu();
    v.queueLoad(IPA, 4, XZR);
    t.equal(v.run(m.mmu, m.exc), GuestExit.S2_ABORT);
    const e = decodeEsr(m.exc.esrLo, 0);
    t.equal(e.dabt?.srt, 31);
    t.equal(e.dabt?.dfsc, 0x0f, 'permission fault, level 3');
    m.map(IPA, DATA_PA, 'RO');
    t.equal(v.run(m.mmu, m.exc), GuestExit.COMPLETED);
    for (let r = 0; r <= 30; r++) t.equal(v.regs.lo(r), 0);
  });
});

const STORES = [
  { name: 'STRB Wt', size: 1, mem: [0xaaaa_aa44, 0xaaaa_aaaa] },
  { name: 'STRH Wt', size: 2, mem: [0xaaaa_3344, 0xaaaa_aaaa] },
  { name: 'STR Wt', size: 4, mem: [0x1122_3344, 0xaaaa_aaaa] },
  { name: 'STR Xt', size: 8, mem: [0x1122_3344, 0x5566_7788] },
] as const;

t.test('stores', async (t) => {
  for (const s of STORES) {
    t.test(`${s.name}: a fault carries WnR=1 and SF only for Xt; the retry writes only its bytes`, async (t) => {
      const m = machine();
      m.map(IPA, DATA_PA, 'RO');
      m.mem.write64(DATA_PA + 0x10, 0xaaaa_aaaa, 0xaaaa_aaaa);
      const v = new GuestVcpu();
      v.regs.set(5, 0x1122_3344, 0x5566_7788);
      t.ok(v.queueStore(IPA + 0x10, s.size, 5));
      t.equal(v.run(m.mmu, m.exc), GuestExit.S2_ABORT);
      const e = decodeEsr(m.exc.esrLo, 0);
      t.same(
        { isv: e.dabt?.isv, sas: e.dabt?.sas, sse: e.dabt?.sse, srt: e.dabt?.srt, sf: e.dabt?.sf, wnr: e.dabt?.wnr, dfsc: e.dabt?.dfsc },
        { isv: true, sas: SAS_OF[s.size], sse: false, srt: 5, sf: s.size === 8, wnr: true, dfsc: 0x0f },
      );
      t.equal(m.mem.read64Lo(DATA_PA + 0x10), 0xaaaa_aaaa, 'nothing written by the faulting store');
      m.map(IPA, DATA_PA, 'RW');
      t.equal(v.run(m.mmu, m.exc), GuestExit.COMPLETED);
      t.same([m.mem.read64Lo(DATA_PA + 0x10), m.mem.read64Hi(DATA_PA + 0x10)], s.mem);
    });
  }
  t.test('a halfword store at offset 2 replaces only bytes 2–3', async (t) => {
    const m = machine();
    m.map(IPA, DATA_PA);
    m.mem.write32(DATA_PA, 0x1111_1111);
    const v = new GuestVcpu();
    v.regs.set(1, 0xbeef, 0);
    v.queueStore(IPA + 2, 2, 1);
    v.run(m.mmu, m.exc);
    t.equal(m.mem.read32(DATA_PA), 0xbeef_1111);
  });
  t.test('a store from XZR writes zero', async (t) => {
    const m = machine();
    m.map(IPA, DATA_PA);
    m.mem.write64(DATA_PA, 0xffff_ffff, 0xffff_ffff);
    const v = new GuestVcpu();
    v.queueStore(IPA, 8, XZR);
    v.run(m.mmu, m.exc);
    t.same([m.mem.read64Lo(DATA_PA), m.mem.read64Hi(DATA_PA)], [0, 0]);
  });
  t.test('a store to a PA outside RAM takes a synchronous external abort (DFSC 0x10)', async (t) => {
    const m = machine();
    m.map(IPA, MMIO_PA);
    const v = new GuestVcpu();
    v.queueStore(IPA, 4, 0);
    t.equal(v.run(m.mmu, m.exc), GuestExit.S2_ABORT);
    t.equal(decodeEsr(m.exc.esrLo, 0).dabt?.dfsc, 0x10);
  });
});

t.test('instruction fetch', async (t) => {
  t.test('a fetch fault is an instruction abort with FAR = ELR = the fetch address and no data syndrome', async (t) => {
    const m = machine();
    const v = new GuestVcpu();
    t.ok(v.queueFetch(IPA + 0x40));
    t.equal(v.run(m.mmu, m.exc), GuestExit.S2_ABORT);
    const e = decodeEsr(m.exc.esrLo, 0);
    t.equal(e.ec, EsrEc.IABT_LOW);
    t.equal(e.iabt?.ifsc, 0x05);
    t.equal(m.exc.farLo, IPA + 0x40);
    t.equal(m.exc.elrLo, IPA + 0x40);
    t.equal(e.iss & 0x01ff_c000, 0, 'ISS bits[24:14] are RES0 for an instruction abort');
  });
  t.test('execute-never faults a fetch with a permission fault, not a load', async (t) => {
    const m = machine();
    m.map(IPA, DATA_PA, 'RW', 2);
    const v = new GuestVcpu();
    v.queueLoad(IPA, 4, 0);
    v.queueFetch(IPA);
    t.equal(v.run(m.mmu, m.exc), GuestExit.S2_ABORT);
    t.equal(decodeEsr(m.exc.esrLo, 0).iabt?.ifsc, 0x0f);
    t.equal(v.stats.completed, 1);
  });
});

t.test('guest HVC', async (t) => {
  t.test('sets x0 = function id and x1…x3, exits with EC 0x16 and imm16, and retires', async (t) => {
    const m = machine();
    const v = new GuestVcpu();
    t.ok(v.queueHvc(0xc600_0003, IPA, 2, 3, 0x1234));
    t.equal(v.run(m.mmu, m.exc), GuestExit.HVC);
    const e = decodeEsr(m.exc.esrLo, 0);
    t.equal(e.ec, EsrEc.HVC64);
    t.equal(e.imm16, 0x1234);
    t.same([v.regs.lo(0), v.regs.lo(1), v.regs.lo(2), v.regs.lo(3)], [0xc600_0003, IPA, 2, 3]);
    t.equal(m.exc.elrLo, GUEST_ENTRY_PC + 4, 'preferred return is the next instruction');
    t.equal(v.pending, 0);
    t.equal(v.run(m.mmu, m.exc), GuestExit.COMPLETED);
  });
});

t.test('queue validation', async (t) => {
  const v = new GuestVcpu();
  t.notOk(v.queueLoad(IPA + 1, 2, 0), 'unaligned');
  t.notOk(v.queueLoad(IPA, 3, 0), 'size 3');
  t.notOk(v.queueLoad(IPA, 8, 0, { signed: true }), 'signed doubleword');
  t.notOk(v.queueLoad(IPA, 4, 0, { signed: true, x: false }), 'LDRSW Wt');
  t.notOk(v.queueLoad(IPA, 4, 32), 'register 32');
  t.notOk(v.queueStore(-8, 8, 0), 'negative address');
  t.notOk(v.queueFetch(IPA + 2), 'unaligned fetch');
  t.notOk(v.queueHvc(2 ** 32), 'function id wider than 32 bits');
  t.equal(v.pending, 0);
});

t.test('MMIO completion and skipping', async (t) => {
  const v = new GuestVcpu();
  v.queueLoad(IPA, 2, 4, { signed: true, x: true });
  v.queueStore(IPA, 4, 4);
  t.equal(v.headKind, GuestOp.LOAD);
  t.equal(v.headIpa, IPA);
  t.ok(v.completeMmio(0x0001_8000, 0x1234));
  t.same([v.regs.lo(4), v.regs.hi(4)], [0xffff_8000, 0xffff_ffff], 'truncated to 16 bits and sign-extended');
  t.ok(v.skipHead());
  t.notOk(v.skipHead());
  t.notOk(v.completeMmio(0, 0));
});

t.test('GuestCpus runs the vCPU EL2 names and exposes its registers', async (t) => {
  const m = machine();
  m.map(IPA, DATA_PA);
  m.mem.write64(DATA_PA, 42, 0);
  const g = new GuestCpus();
  g.vcpu(0x1000, 1).queueLoad(IPA, 8, 2);
  t.equal(g.run(0x1000, 0, m.mmu, m.exc), GuestExit.COMPLETED, 'vCPU 0 has nothing queued');
  t.equal(g.run(0x1000, 1, m.mmu, m.exc), GuestExit.COMPLETED);
  t.equal(g.regs(0x1000, 1).lo(2), 42);
  t.equal(g.regs(0x1001, 1).lo(2), 0, 'another VM has its own vCPUs');
  g.removeVm(0x1000);
  t.equal(g.regs(0x1000, 1).lo(2), 0, 'a removed VM starts afresh');
});

t.test('property: a store then a load of the same size returns the stored value, truncated and extended', async (t) => {
  const m = machine();
  m.map(IPA, DATA_PA);
  fc.assert(
    fc.property(
      fc.constantFrom(1, 2, 4, 8),
      fc.nat(4095),
      fc.nat(0xffff_ffff),
      fc.nat(0xffff_ffff),
      fc.boolean(),
      (size, off, lo, hi, signed) => {
        const v = new GuestVcpu();
        const ipa = IPA + off - (off % size);
        v.regs.set(1, lo, hi);
        v.queueStore(ipa, size, 1);
        const s = signed && size < 8;
        v.queueLoad(ipa, size, 2, { signed: s, x: true });
        if (v.run(m.mmu, m.exc) !== GuestExit.COMPLETED) return false;
        const bits = size * 8;
        let elo = bits >= 32 ? lo : lo % 2 ** bits;
        let ehi = bits === 64 ? hi : 0;
        if (s && elo >= 2 ** (bits - 1)) {
          elo = (elo - 2 ** bits + 2 ** 32) >>> 0;
          ehi = 0xffff_ffff;
        }
        return v.regs.lo(2) === elo && v.regs.hi(2) === ehi;
      },
    ),
    { numRuns: 300 },
  );
});
