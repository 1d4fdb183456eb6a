import t from 'tap';
import fc from 'fast-check';
import {
  ARMV8_0_PA40_FEATURES,
  ARMV8_4_PA48_FEATURES,
  QEMU_MAX_FEATURES,
  decodeCpuFeatures,
  encodeCpuFeatures,
  paBitsOf,
  paRangeOf,
  type CpuFeatures,
} from '../../src/arch/features.js';

t.test('QEMU 7.2 -cpu max ID registers decode as FORMAT.md states', async (t) => {
  t.match(QEMU_MAX_FEATURES, {
    paBits: 52,
    s2Gran4k: true,
    s2Gran16k: true,
    s2Gran64k: true,
    s2Lpa2Gran4k: true,
    s2Lpa2Gran16k: true,
    hafdbs: 2,
    xnx: true,
    vmid16: true,
    ttst: true,
    fwb: true,
    bbm: 2,
    ttl: true,
    lva: true,
    cnp: true,
  });
});

t.test('presets', async (t) => {
  t.match(ARMV8_0_PA40_FEATURES, { paBits: 40, hafdbs: 0, xnx: false, vmid16: false, ttst: false, fwb: false, s2Lpa2Gran4k: false });
  t.match(ARMV8_4_PA48_FEATURES, { paBits: 48, hafdbs: 2, xnx: true, vmid16: true, ttst: true, fwb: true, bbm: 2, s2Gran16k: true });
});

t.test('TGranX_2 = 0b0000 defers to the stage-1 field (arm-s2.md §10.1)', async (t) => {
  // TGran4 = 0 (IMP), TGran64 = 0xf (NI), TGran16 = 2 (IMP + LPA2); all TGranX_2 = 0.
  const f = decodeCpuFeatures(0x0f20_0005, 0, 0, 0, 0, 0);
  t.match(f, { s2Gran4k: true, s2Gran64k: false, s2Gran16k: true, s2Lpa2Gran16k: true, s2Lpa2Gran4k: false });
  // TGran4 = 1 (LPA2) with TGran4_2 = 0 → stage-2 LPA2; TGran4_2 = 1 → not implemented at stage 2.
  t.equal(decodeCpuFeatures(0x1000_0005, 0, 0, 0, 0, 0).s2Lpa2Gran4k, true);
  t.equal(decodeCpuFeatures(0x1000_0005, 0x100, 0, 0, 0, 0).s2Gran4k, false);
  // TGran4_2 = 2: implemented without LPA2 even if stage 1 has it.
  t.match(decodeCpuFeatures(0x1000_0005, 0x200, 0, 0, 0, 0), { s2Gran4k: true, s2Lpa2Gran4k: false });
});

t.test('PARange table', async (t) => {
  t.same([0, 1, 2, 3, 4, 5, 6, 7].map(paBitsOf), [32, 36, 40, 42, 44, 48, 52, 52]);
  t.equal(paRangeOf(44), 4);
  t.equal(paRangeOf(50), -1);
  t.equal(decodeCpuFeatures(0xf, 0, 0, 0, 0, 0).paBits, 52, 'a reserved PARange is taken as the largest known');
});

t.test('encode then decode is the identity on the feature record', async (t) => {
  const feat = fc.record<CpuFeatures>({
    paRange: fc.integer({ min: 0, max: 6 }),
    paBits: fc.constant(0),
    s2Gran4k: fc.boolean(),
    s2Gran16k: fc.boolean(),
    s2Gran64k: fc.boolean(),
    s2Lpa2Gran4k: fc.boolean(),
    s2Lpa2Gran16k: fc.boolean(),
    hafdbs: fc.integer({ min: 0, max: 4 }),
    xnx: fc.boolean(),
    vmid16: fc.boolean(),
    ttst: fc.boolean(),
    fwb: fc.boolean(),
    bbm: fc.integer({ min: 0, max: 2 }),
    ttl: fc.boolean(),
    lva: fc.boolean(),
    cnp: fc.boolean(),
  });
  fc.assert(
    fc.property(feat, (f0) => {
      const f: CpuFeatures = {
        ...f0,
        paBits: paBitsOf(f0.paRange),
        s2Lpa2Gran4k: f0.s2Gran4k && f0.s2Lpa2Gran4k,
        s2Lpa2Gran16k: f0.s2Gran16k && f0.s2Lpa2Gran16k,
      };
      const r = encodeCpuFeatures(f);
      const back = decodeCpuFeatures(r.mmfr0Lo, r.mmfr0Hi, r.mmfr1Lo, r.mmfr1Hi, r.mmfr2Lo, r.mmfr2Hi);
      const canon = (o: CpuFeatures): string => JSON.stringify(Object.entries(o).sort(([a], [b]) => (a < b ? -1 : 1)));
      return canon(back) === canon(f);
    }),
  );
  t.pass();
});

t.test('encodeCpuFeatures of the QEMU preset decodes back to it', async (t) => {
  const r = encodeCpuFeatures(QEMU_MAX_FEATURES);
  t.same(decodeCpuFeatures(r.mmfr0Lo, r.mmfr0Hi, r.mmfr1Lo, r.mmfr1Hi, r.mmfr2Lo, r.mmfr2Hi), QEMU_MAX_FEATURES);
  const none = encodeCpuFeatures({ ...ARMV8_0_PA40_FEATURES, s2Gran4k: false, s2Gran64k: false });
  t.match(decodeCpuFeatures(none.mmfr0Lo, none.mmfr0Hi, 0, 0, 0, 0), { s2Gran4k: false, s2Gran64k: false, s2Gran16k: true });
});
