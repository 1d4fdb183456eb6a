// AT S12E1R/W with EL1 stage 1 off → PAR_EL1 (Arm ARM C5.5, D8.14; arm-s2.md §7).
import t from 'tap';
import { atAttrStage1Off, ATTR_DEVICE_NGNRNE, ATTR_NORMAL_WB_RWA, AtResult, atS12E1 } from '../../src/mmu/at.js';
import { WalkResult } from '../../src/mmu/walk-result.js';
import { WalkTrace } from '../../src/mmu/walk-trace.js';
import { s2Page, s2Table, S2MemAttr } from '../../src/arch/desc-codec.js';
import { decodePar, Shareability } from '../../src/arch/par.js';
import { FaultType, faultStatusCode } from '../../src/arch/fault.js';
import { EsrEc, esrCm, esrEc, esrFsc, esrWnR } from '../../src/arch/esr.js';
import { hi32, lo32 } from '../../src/arch/bits.js';
import { QEMU_MAX_FEATURES } from '../../src/arch/features.js';
import { ipaOf, L1, L2, L3, machine } from './_s2-machine.js';

const PA = 0x5000_3000;

function build(opts: { ha?: boolean; hd?: boolean; fwb?: boolean } = {}, leaf = s2Page({ oa: PA, ap: 'RW', af: true })) {
  const m = machine(opts);
  m.put(L1 + 8 * 1, s2Table({ nlta: L2 }));
  m.put(L2 + 8 * 2, s2Table({ nlta: L3 }));
  m.put(L3 + 8 * 3, leaf);
  return m;
}

function at(m: ReturnType<typeof build>, ipa: number, write: boolean): { r: AtResult; w: WalkResult; trace: WalkTrace } {
  const r = new AtResult();
  const w = new WalkResult();
  const trace = new WalkTrace();
  atS12E1(m.mem, m.cfg, QEMU_MAX_FEATURES.paBits, lo32(ipa), hi32(ipa), write, w, trace, r);
  return { r, w, trace };
}

t.test('a successful AT reports PA, NS=1, SH=OSH, ATTR Device-nGnRnE (stage 1 off)', async (t) => {
  const m = build();
  const { r, trace } = at(m, ipaOf(1, 2, 3, 0x123), false);
  t.notOk(r.exception);
  t.same(decodePar(r.parLo, r.parHi), { f: false, pa: PA, sh: Shareability.OSH, ns: true, attr: ATTR_DEVICE_NGNRNE });
  t.equal(trace.n, 3, 'three descriptor reads (L1, L2, L3)');
});

t.test('a stage-2 fault is reported in PAR with S=1 and the FSC', async (t) => {
  const m = build({}, s2Page({ oa: PA, ap: 'RO', af: true }));
  const { r } = at(m, ipaOf(1, 2, 3), true);
  t.same(decodePar(r.parLo, r.parHi), { f: true, fst: faultStatusCode(FaultType.PERMISSION, 3), ptw: false, s: true });
  const miss = at(m, ipaOf(1, 2, 4), false).r;
  t.same(decodePar(miss.parLo, miss.parHi), { f: true, fst: faultStatusCode(FaultType.TRANSLATION, 3), ptw: false, s: true });
});

t.test('an IPA at or above 2^PAMax is a stage-1 address size fault (S=0), no walk', async (t) => {
  const m = build();
  const r = new AtResult();
  const trace = new WalkTrace();
  atS12E1(m.mem, m.cfg, 52, 0, 0x0010_0000, false, new WalkResult(), trace, r);
  t.ok(r.stage1);
  t.same(decodePar(r.parLo, r.parHi), { f: true, fst: 0, ptw: false, s: false });
  t.equal(trace.n, 0);
});

t.test('an external abort on the walk is a Data Abort at EL2 (EC 0x25, CM=1, WnR=1), not PAR', async (t) => {
  const m = build();
  m.put(L2 + 8 * 2, s2Table({ nlta: 0x1_0000_0000 })); // unbacked PA space
  const ipa = ipaOf(1, 2, 3, 8);
  const { r } = at(m, ipa, false);
  t.ok(r.exception);
  t.equal(esrEc(r.esrLo), EsrEc.DABT_CUR);
  t.ok(esrCm(r.esrLo));
  t.ok(esrWnR(r.esrLo), 'WnR is 1 for AT even for the R form');
  t.equal(esrFsc(r.esrLo), faultStatusCode(FaultType.SEA_WALK, 3));
  t.equal(r.farLo, lo32(ipa));
});

t.test('AT S12E1W does not set the dirty state of a DBM page (Arm; QEMU 7.2 does)', async (t) => {
  const m = build({ ha: true, hd: true }, s2Page({ oa: PA, ap: 'RO', dbm: true, af: true }));
  const before = m.get(L3 + 8 * 3);
  const { r } = at(m, ipaOf(1, 2, 3), true);
  t.notOk(decodePar(r.parLo, r.parHi).f, 'DBM with HD makes the page writable for the check');
  t.same(m.get(L3 + 8 * 3), before, 'S2AP[1] untouched');
});

t.test('AT sets the Access flag with HA', async (t) => {
  const m = build({ ha: true }, s2Page({ oa: PA, ap: 'RW', af: false }));
  const { r } = at(m, ipaOf(1, 2, 3), false);
  t.notOk(decodePar(r.parLo, r.parHi).f);
  t.not(m.get(L3 + 8 * 3).lo & (1 << 10), 0);
});

t.test('atAttrStage1Off: FWB MemAttr 0b110 forces Normal WB; everything else stays Device', async (t) => {
  t.equal(atAttrStage1Off(S2MemAttr.NORMAL_WB, false), ATTR_DEVICE_NGNRNE, 'FWB=0: stage-1 Device wins');
  t.equal(atAttrStage1Off(S2MemAttr.FWB_NORMAL, true), ATTR_NORMAL_WB_RWA);
  t.equal(atAttrStage1Off(S2MemAttr.FWB_NORMAL_NC, true), ATTR_DEVICE_NGNRNE, '0b101 with stage-1 Device → stage-1 attributes');
  t.equal(atAttrStage1Off(S2MemAttr.FWB_USE_S1, true), ATTR_DEVICE_NGNRNE);
  t.equal(atAttrStage1Off(0b1110, true), ATTR_DEVICE_NGNRNE, 'bit 5 set is Device');
  const m = build({ fwb: true }, s2Page({ oa: PA, ap: 'RW', memAttr: S2MemAttr.FWB_NORMAL }));
  const { r } = at(m, ipaOf(1, 2, 3), false);
  t.equal(decodePar(r.parLo, r.parHi).f === false && (decodePar(r.parLo, r.parHi) as { attr: number }).attr, ATTR_NORMAL_WB_RWA);
});
