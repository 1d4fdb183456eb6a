// HPFAR_EL2: FIPA = IPA[55:12] in bits[47:4] (Arm ARM D19.2 HPFAR_EL2; arm-s2.md §6.6).
import t from 'tap';
import fc from 'fast-check';
import { HPFAR_FIPA_HI, hpfarHiFromIpa, hpfarLoFromIpa, hpfarToIpa, hpfarValid } from '../../src/arch/hpfar.js';
import { FaultType, faultStatusCode } from '../../src/arch/fault.js';
import { join } from '../../src/arch/bits.js';

t.test('hpfarFromIpa matches QEMU values recorded in the fixtures', async (t) => {
  t.equal(join(hpfarLoFromIpa(0x1f164c268), hpfarHiFromIpa(0x1f164c268)), 0x1f164c0);
  t.equal(join(hpfarLoFromIpa(0x6b5a72000e68), hpfarHiFromIpa(0x6b5a72000e68)), 0x6b5a720000);
});

t.test('hpfarToIpa inverts the encoding for every 52-bit IPA page (property)', async (t) => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 2 ** 40 - 1 }), fc.integer({ min: 0, max: 0xfff }), (page, off) => {
      const ipa = page * 4096 + off;
      const lo = hpfarLoFromIpa(ipa);
      const hi = hpfarHiFromIpa(ipa);
      return hpfarToIpa(lo, hi) === page * 4096 && (lo & 0xf) === 0 && (hi & ~HPFAR_FIPA_HI) === 0;
    }),
  );
});

t.test('hpfarValid follows R_FKLWR (Linux __hpfar_valid)', async (t) => {
  for (const level of [0, 1, 2, 3]) {
    t.ok(hpfarValid(faultStatusCode(FaultType.TRANSLATION, level), false), `translation L${level}`);
    t.ok(hpfarValid(faultStatusCode(FaultType.ADDRESS_SIZE, level), false), `address size L${level}`);
    t.ok(hpfarValid(faultStatusCode(FaultType.ACCESS_FLAG, level), false), `access flag L${level}`);
    t.notOk(hpfarValid(faultStatusCode(FaultType.PERMISSION, level), false), `permission L${level}`);
    t.ok(hpfarValid(faultStatusCode(FaultType.PERMISSION, level), true), `permission on S1PTW L${level}`);
    t.notOk(hpfarValid(faultStatusCode(FaultType.SEA_WALK, level), false), `SEA on walk L${level}`);
  }
  t.ok(hpfarValid(faultStatusCode(FaultType.TRANSLATION, -1), false));
  t.ok(hpfarValid(faultStatusCode(FaultType.ADDRESS_SIZE, -1), false));
  t.notOk(hpfarValid(faultStatusCode(FaultType.ALIGNMENT, 0), false));
  t.notOk(hpfarValid(faultStatusCode(FaultType.SEA, 0), false));
});
