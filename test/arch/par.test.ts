// PAR_EL1 64-bit format, success and fault forms (Arm ARM D19.2 PAR_EL1; arm-s2.md §7.1).
import t from 'tap';
import fc from 'fast-check';
import {
  decodePar,
  parAttr,
  parF,
  parFaultLo,
  parFst,
  parNs,
  parPa,
  parPtw,
  parS,
  parSh,
  parSuccessHi,
  parSuccessLo,
  PAR_RES1_LO,
  Shareability,
} from '../../src/arch/par.js';
import { FaultType, faultStatusCode } from '../../src/arch/fault.js';
import { u64ToShortHex } from '../../src/arch/bits.js';

t.test('fault form matches the oracle values', async (t) => {
  t.equal(u64ToShortHex(parFaultLo(faultStatusCode(FaultType.ADDRESS_SIZE, 0), false, true), 0), '0xa01');
  t.equal(u64ToShortHex(parFaultLo(faultStatusCode(FaultType.TRANSLATION, 0), false, true), 0), '0xa09');
  t.equal(u64ToShortHex(parFaultLo(faultStatusCode(FaultType.ADDRESS_SIZE, 0), false, false), 0), '0x801', 'stage-1 fault: S=0');
});

t.test('success form: PA[51:12], RES1, NS, SH, ATTR', async (t) => {
  const pa = 0x000a_0000_5002_1238;
  const lo = parSuccessLo(pa, Shareability.OSH, true);
  const hi = parSuccessHi(pa, 0x00);
  t.equal(u64ToShortHex(lo, hi), '0xa000050021b00', 'a 52-bit PA as QEMU reports it (feat-lpa2 case)');
  t.notOk(parF(lo));
  t.ok(parNs(lo));
  t.equal(parSh(lo), Shareability.OSH);
});

t.test('fields round trip (property)', async (t) => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 2 ** 40 - 1 }), fc.integer({ min: 0, max: 3 }), fc.boolean(), fc.integer({ min: 0, max: 255 }), (page, sh, ns, attr) => {
      const pa = page * 4096;
      const lo = parSuccessLo(pa, sh, ns);
      const hi = parSuccessHi(pa, attr);
      const d = decodePar(lo, hi);
      return !d.f && d.pa === pa && d.sh === sh && d.ns === ns && d.attr === attr && parAttr(hi) === attr && parPa(lo, hi) === pa && (lo & PAR_RES1_LO) !== 0;
    }),
  );
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 0x3f }), fc.boolean(), fc.boolean(), (fst, ptw, s) => {
      const lo = parFaultLo(fst, ptw, s);
      const d = decodePar(lo, 0);
      return parF(lo) && parFst(lo) === fst && parPtw(lo) === ptw && parS(lo) === s && d.f && d.fst === fst;
    }),
  );
});
