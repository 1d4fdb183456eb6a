import t from 'tap';
import { FaultType, faultStatusCode, decodeFaultStatusCode, faultTypeName } from '../../src/arch/fault.js';

t.test('fault status codes (arm-s2.md §6.5)', async (t) => {
  t.equal(faultStatusCode(FaultType.NONE, 0), 0);
  t.same([0, 1, 2, 3].map((l) => faultStatusCode(FaultType.ADDRESS_SIZE, l)), [0, 1, 2, 3]);
  t.same([0, 1, 2, 3].map((l) => faultStatusCode(FaultType.TRANSLATION, l)), [4, 5, 6, 7]);
  t.same([0, 1, 2, 3].map((l) => faultStatusCode(FaultType.ACCESS_FLAG, l)), [8, 9, 10, 11]);
  t.same([0, 1, 2, 3].map((l) => faultStatusCode(FaultType.PERMISSION, l)), [12, 13, 14, 15]);
  t.same([0, 1, 2, 3].map((l) => faultStatusCode(FaultType.SEA_WALK, l)), [0x14, 0x15, 0x16, 0x17]);
  // Level −1 codes of FEAT_LPA2; address size is 0x29 (Arm), not Linux esr.h's 0x25.
  t.equal(faultStatusCode(FaultType.ADDRESS_SIZE, -1), 0x29);
  t.equal(faultStatusCode(FaultType.TRANSLATION, -1), 0x2b);
  t.equal(faultStatusCode(FaultType.SEA_WALK, -1), 0x13);
  t.equal(faultStatusCode(FaultType.SEA, 0), 0x10);
  t.equal(faultStatusCode(FaultType.ALIGNMENT, 0), 0x21);
  t.equal(faultStatusCode(FaultType.TLB_CONFLICT, 0), 0x30);
});

t.test('decode inverts encode', async (t) => {
  const kinds = [FaultType.ADDRESS_SIZE, FaultType.TRANSLATION, FaultType.ACCESS_FLAG, FaultType.PERMISSION, FaultType.SEA_WALK];
  for (const k of kinds) {
    for (let l = 0; l <= 3; l++) t.same(decodeFaultStatusCode(faultStatusCode(k, l)), { type: k, level: l });
  }
  for (const k of [FaultType.ADDRESS_SIZE, FaultType.TRANSLATION, FaultType.SEA_WALK]) {
    t.same(decodeFaultStatusCode(faultStatusCode(k, -1)), { type: k, level: -1 });
  }
  t.same(decodeFaultStatusCode(0x10), { type: FaultType.SEA, level: null });
  t.same(decodeFaultStatusCode(0x21), { type: FaultType.ALIGNMENT, level: null });
  t.same(decodeFaultStatusCode(0x30), { type: FaultType.TLB_CONFLICT, level: null });
  t.same(decodeFaultStatusCode(0x31), { type: 'other', level: null });
  t.equal(faultTypeName(FaultType.TRANSLATION), 'translation');
  t.equal(faultTypeName(FaultType.ADDRESS_SIZE), 'address_size');
  t.equal(faultTypeName(FaultType.ACCESS_FLAG), 'access_flag');
  t.equal(faultTypeName(FaultType.PERMISSION), 'permission');
  t.equal(faultTypeName(FaultType.NONE), 'none');
  t.equal(faultTypeName(FaultType.SEA_WALK), 'other');
  t.equal(faultTypeName('other'), 'other');
});
