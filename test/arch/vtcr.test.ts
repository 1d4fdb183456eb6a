import t from 'tap';
import fc from 'fast-check';
import {
  VTCR_DS_HI,
  VTCR_HA_LO,
  VTCR_RES1_LO,
  VTCR_SL2_HI,
  decodeVtcr,
  granuleTg0,
  tg0Granule,
  vtcr,
  vtcrPs,
  vtcrTg0,
  type VtcrFields,
} from '../../src/arch/vtcr.js';

t.test('field positions (arm-s2.md §1.1)', async (t) => {
  // Linux's 40-bit IPA 4K VTCR: T0SZ 24, SL0 1, IRGN0/ORGN0 WBWA, SH0 ISH, TG0 4K, PS 40-bit, RES1.
  t.same(vtcr({ t0sz: 24, sl0: 1, irgn0: 1, orgn0: 1, sh0: 3, tg0: '4k', ps: 2 }), { lo: 0x8002_3558, hi: 0 });
  t.equal(vtcr({ t0sz: 0, ha: true }).lo, (VTCR_HA_LO | VTCR_RES1_LO) >>> 0);
  t.equal(vtcr({ t0sz: 0, ds: true, sl2: true }).hi, VTCR_DS_HI | VTCR_SL2_HI);
  t.equal(vtcr({ t0sz: 0, res1: false }).lo, 0);
  t.equal(vtcrTg0(vtcr({ t0sz: 0, tg0: '16k' }).lo), 2);
  t.equal(vtcrTg0(vtcr({ t0sz: 0, tg0: '64k' }).lo), 1);
  t.equal(vtcrPs(vtcr({ t0sz: 0, ps: 6 }).lo), 6);
  t.equal(tg0Granule(3), null);
  t.equal(granuleTg0('16k'), 2);
  t.throws(() => vtcr({ t0sz: 64 }));
  t.throws(() => vtcr({ t0sz: 0, sl0: 4 }));
});

t.test('vtcr() and decodeVtcr() are inverse', async (t) => {
  const fields = fc.record<Required<VtcrFields>>({
    t0sz: fc.integer({ min: 0, max: 63 }),
    sl0: fc.integer({ min: 0, max: 3 }),
    irgn0: fc.integer({ min: 0, max: 3 }),
    orgn0: fc.integer({ min: 0, max: 3 }),
    sh0: fc.integer({ min: 0, max: 3 }),
    tg0: fc.constantFrom('4k', '16k', '64k', 'reserved' as const),
    ps: fc.integer({ min: 0, max: 7 }),
    vs: fc.boolean(),
    ha: fc.boolean(),
    hd: fc.boolean(),
    hwu: fc.integer({ min: 0, max: 15 }),
    nsw: fc.boolean(),
    nsa: fc.boolean(),
    res1: fc.boolean(),
    ds: fc.boolean(),
    sl2: fc.boolean(),
  });
  fc.assert(fc.property(fields, (f) => JSON.stringify(decodeVtcr(vtcr(f).lo, vtcr(f).hi)) === JSON.stringify(f)));
  t.pass();
});

t.test('decodeVtcr example and accessors', async (t) => {
  const v = vtcr({ t0sz: 24, sl0: 1, irgn0: 1, orgn0: 1, sh0: 3, tg0: '4k', ps: 2, vs: true, ha: true, hd: true, hwu: 5 });
  t.match(decodeVtcr(v.lo, v.hi), { t0sz: 24, sl0: 1, irgn0: 1, orgn0: 1, sh0: 3, tg0: '4k', ps: 2, vs: true, ha: true, hd: true, hwu: 5, res1: true, ds: false });
  t.equal(decodeVtcr(vtcr({ t0sz: 0, tg0: 'reserved' }).lo, 0).tg0, 'reserved');
});
