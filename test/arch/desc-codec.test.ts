import t from 'tap';
import fc from 'fast-check';
import {
  OaFormat,
  S2DescKind,
  decodeS2Desc,
  descEquals,
  encodeS2Desc,
  oaFormatOf,
  s2Block,
  s2DescAddr,
  s2Invalid,
  s2MemAttrIsDevice,
  s2Page,
  s2Table,
  type DescContext,
} from '../../src/arch/desc-codec.js';
import { S2_AF_LO, S2_DBM_HI, S2_XN_HI } from '../../src/arch/desc.js';
import { blockAllowed, granuleShift, levelShift, type Granule } from '../../src/arch/granule.js';

const GRANULES: Granule[] = ['4k', '16k', '64k'];
const u32 = fc.integer({ min: 0, max: 0xffff_ffff });

/** Every (granule, level, ds, pa52) context that exists. */
function contexts(): DescContext[] {
  const out: DescContext[] = [];
  for (const granule of GRANULES) {
    for (const ds of granule === '64k' ? [false] : [false, true]) {
      for (const pa52 of [false, true]) {
        const min = granule === '4k' ? (ds ? -1 : 0) : granule === '16k' ? 0 : 1;
        for (let level = min; level <= 3; level++) out.push({ granule, level, ds, pa52 });
      }
    }
  }
  return out;
}
const CTX = contexts();

t.test('decode then encode is the identity on every 64-bit value, in every context', async (t) => {
  fc.assert(
    fc.property(fc.constantFrom(...CTX), u32, u32, (ctx, lo, hi) => {
      const d = decodeS2Desc(lo, hi, ctx);
      return descEquals(encodeS2Desc(d, ctx), { lo, hi });
    }),
    { numRuns: 3000 },
  );
  t.pass('round trip holds');
});

t.test('builders round-trip through decode for every granule × level × field', async (t) => {
  const attrs = fc.record({
    memAttr: fc.integer({ min: 0, max: 15 }),
    ap: fc.constantFrom('NONE', 'RO', 'WO', 'RW' as const),
    sh: fc.integer({ min: 0, max: 3 }),
    af: fc.boolean(),
    fnxs: fc.boolean(),
    dbm: fc.boolean(),
    cont: fc.boolean(),
    xn: fc.integer({ min: 0, max: 3 }),
    sw: fc.integer({ min: 0, max: 15 }),
    pbha: fc.integer({ min: 0, max: 15 }),
    nT: fc.boolean(),
  });
  fc.assert(
    fc.property(fc.constantFrom(...CTX), attrs, fc.integer({ min: 0, max: 2 ** 40 }), (ctx, a, frame) => {
      const fmt = oaFormatOf(ctx.granule, ctx.ds, ctx.pa52);
      const top = fmt === OaFormat.OA48 ? 48 : 52;
      const isPage = ctx.level === 3;
      const leafOk = isPage || blockAllowed(ctx.granule, ctx.level, ctx.ds, ctx.pa52);
      const lsb = isPage || leafOk ? levelShift(ctx.granule, ctx.level) : granuleShift(ctx.granule);
      const oa = (frame % 2 ** (top - lsb)) * 2 ** lsb;
      const sh = ctx.ds ? 0 : a.sh;
      const fmtOpts = { granule: ctx.granule, ds: ctx.ds, lpa: ctx.pa52 };
      if (ctx.level < 3) {
        const tb = s2Table({ ...fmtOpts, nlta: (frame % 2 ** (top - granuleShift(ctx.granule))) * 2 ** granuleShift(ctx.granule) });
        const td = decodeS2Desc(tb.lo, tb.hi, ctx);
        if (td.kind !== S2DescKind.TABLE || td.restLo !== 0 || td.restHi !== 0) return false;
      }
      if (!leafOk) return true;
      const d = isPage
        ? s2Page({ ...fmtOpts, ...a, sh, nT: false, oa })
        : s2Block({ ...fmtOpts, ...a, sh, level: ctx.level, oa });
      const x = decodeS2Desc(d.lo, d.hi, ctx);
      return (
        x.kind === (isPage ? S2DescKind.PAGE : S2DescKind.BLOCK) &&
        x.addr === oa &&
        x.memAttr === a.memAttr &&
        x.s2ap === { NONE: 0, RO: 1, WO: 2, RW: 3 }[a.ap] &&
        x.sh === sh &&
        x.af === a.af &&
        x.fnxs === a.fnxs &&
        x.dbm === a.dbm &&
        x.cont === a.cont &&
        x.xn === a.xn &&
        x.sw === a.sw &&
        x.pbha === a.pbha &&
        x.nT === (!isPage && a.nT) &&
        x.restLo === 0 &&
        x.restHi === 0
      );
    }),
    { numRuns: 3000 },
  );
  t.pass('builders and decoder agree');
});

t.test('descriptor bit positions (Arm ARM D8.3, arm-s2.md §3.3)', async (t) => {
  const p = s2Page({ oa: 0x1234_5000, ap: 'RW', af: true, memAttr: 0xf, sh: 3 });
  // valid+page 0b11, MemAttr 0xf << 2, S2AP 0b11 << 6, SH 0b11 << 8, AF bit 10.
  t.equal(p.lo, 0x1234_5000 | 0b11 | (0xf << 2) | (3 << 6) | (3 << 8) | S2_AF_LO);
  t.equal(p.hi, 0);
  t.equal(s2Page({ oa: 0, xn: 2 }).hi, S2_XN_HI);
  t.equal(s2Page({ oa: 0, dbm: true }).hi, S2_DBM_HI);
  t.equal(s2Page({ oa: 0, sw: 0xf }).hi, 0xf << (55 - 32));
  t.equal(s2Page({ oa: 0, ign63: true }).hi, 0x8000_0000);
  t.equal(s2Block({ level: 2, oa: 0x20_0000, nT: true }).lo & (1 << 16), 1 << 16);
  t.equal(s2Block({ level: 1, oa: 2 ** 30 }).lo & 3, 0b01);
  t.same(s2Table({ nlta: 0x4800_1000 }), { lo: 0x4800_1003, hi: 0 });
  t.same(s2Invalid(0xffff_ffff, 7), { lo: 0xffff_fffe, hi: 7 });
});

t.test('52-bit OA formats (arm-s2.md §3.5)', async (t) => {
  const oa = 2 ** 51 + 2 ** 50 + 2 ** 49 + 2 ** 48 + 0x1000;
  const ds = s2Page({ oa, ds: true });
  t.equal((ds.lo >>> 8) & 3, 3, 'DS: OA[51:50] in bits[9:8]');
  t.equal((ds.hi >>> 16) & 3, 3, 'DS: OA[49:48] in bits[49:48]');
  t.equal(s2DescAddr(ds.lo, ds.hi, 12, OaFormat.DS), oa);
  t.equal(s2DescAddr(ds.lo, ds.hi, 12, OaFormat.OA48), 0x1000, 'the 48-bit format ignores them');
  const lpa = s2Page({ granule: '64k', oa: 2 ** 51 + 0x1_0000 });
  t.equal((lpa.lo >>> 12) & 0xf, 8, '64K: OA[51:48] in bits[15:12]');
  t.equal(s2DescAddr(lpa.lo, lpa.hi, 16, OaFormat.LPA64K), 2 ** 51 + 0x1_0000);
  const tbl = s2Table({ granule: '16k', ds: true, nlta: 2 ** 50 + 0x4000 });
  t.equal(s2DescAddr(tbl.lo, tbl.hi, 14, OaFormat.DS), 2 ** 50 + 0x4000);
  // Block shifts above 32 (4K L0 with DS, 64K L1) drop RES0 bits in the high half.
  t.equal(s2DescAddr(0xffff_f001, 0xffff, 39, OaFormat.OA48), 0xff80_0000_0000);
  t.equal(s2DescAddr(0xffff_f001, 0xffff, 42, OaFormat.OA48), 0xfc00_0000_0000);
  t.equal(s2DescAddr(0xffff_f001, 0xffff, 32, OaFormat.OA48), 0xffff_0000_0000);
});

t.test('builders reject what the format cannot hold (API misuse throws)', async (t) => {
  t.throws(() => s2Page({ oa: 0x1001 }));
  t.throws(() => s2Page({ oa: 2 ** 48 }));
  t.throws(() => s2Page({ oa: 2 ** 48, granule: '64k', lpa: false }));
  t.throws(() => s2Page({ oa: 0, ds: true, sh: 3 }));
  t.throws(() => s2Page({ oa: 0, nT: true }));
  t.throws(() => s2Page({ oa: 0, xn: 4 }));
  t.throws(() => s2Block({ level: 2, oa: 0x1000 }));
  t.doesNotThrow(() => s2Page({ oa: 2 ** 48, granule: '64k' }));
});

t.test('decode classifies descriptor types per level (arm-s2.md §3.2)', async (t) => {
  const c = (level: number): DescContext => ({ granule: '4k', level, ds: false, pa52: false });
  t.equal(decodeS2Desc(0, 0, c(1)).kind, S2DescKind.INVALID);
  t.equal(decodeS2Desc(1, 0, c(0)).kind, S2DescKind.INVALID, 'block at 4K L0 without DS');
  t.equal(decodeS2Desc(1, 0, c(1)).kind, S2DescKind.BLOCK);
  t.equal(decodeS2Desc(1, 0, c(3)).kind, S2DescKind.INVALID, 'reserved 0b01 at level 3');
  t.equal(decodeS2Desc(3, 0, c(3)).kind, S2DescKind.PAGE);
  t.equal(decodeS2Desc(3, 0, c(2)).kind, S2DescKind.TABLE);
  t.equal(decodeS2Desc(1, 0, { granule: '64k', level: 1, ds: false, pa52: true }).kind, S2DescKind.BLOCK);
  t.equal(decodeS2Desc(1, 0, { granule: '64k', level: 1, ds: false, pa52: false }).kind, S2DescKind.INVALID);
});

t.test('stage-2 Device memory types (arm-s2.md §9.1, §9.3)', async (t) => {
  const fwb0 = Array.from({ length: 16 }, (_, m) => s2MemAttrIsDevice(m, false));
  t.same(fwb0, [true, true, true, true, ...Array(12).fill(false)]);
  const fwb1 = Array.from({ length: 8 }, (_, m) => s2MemAttrIsDevice(m, true));
  t.same(fwb1, [true, true, true, true, true, false, false, false]);
  t.equal(s2MemAttrIsDevice(0xe, true), true, 'bit 5 set with FWB');
});

t.test('decode/encode examples: a KVM-style page, a DS table, an invalid annotation', async (t) => {
  const ctx: DescContext = { granule: '4k', level: 3, ds: false, pa52: false };
  const p = s2Page({ oa: 0x4000_1000, ap: 'RW', af: true, sh: 3, sw: 1, xn: 2 });
  const d = decodeS2Desc(p.lo, p.hi, ctx);
  t.match(d, { kind: S2DescKind.PAGE, addr: 0x4000_1000, s2ap: 3, sh: 3, af: true, sw: 1, xn: 2, restLo: 0, restHi: 0 });
  t.same(encodeS2Desc(d, ctx), p);
  const dsCtx: DescContext = { granule: '16k', level: 2, ds: true, pa52: true };
  const tb = s2Table({ granule: '16k', ds: true, nlta: 2 ** 51 + 0x8000, ignHi: 0x7f });
  const td = decodeS2Desc(tb.lo, tb.hi, dsCtx);
  t.match(td, { kind: S2DescKind.TABLE, addr: 2 ** 51 + 0x8000, restHi: (0x7f << 20) >>> 0 });
  t.same(encodeS2Desc(td, dsCtx), tb);
  const inv = s2Invalid(0x0200_0000, 0);
  const id = decodeS2Desc(inv.lo, inv.hi, ctx);
  t.match(id, { kind: S2DescKind.INVALID, typeBits: 0, restLo: 0x0200_0000 });
  t.same(encodeS2Desc(id, ctx), inv);
  const blk = s2Block({ granule: '64k', level: 1, oa: 2 ** 51, lpa: true, nT: true });
  const bctx: DescContext = { granule: '64k', level: 1, ds: false, pa52: true };
  const bd = decodeS2Desc(blk.lo, blk.hi, bctx);
  t.match(bd, { kind: S2DescKind.BLOCK, addr: 2 ** 51, nT: true });
  t.same(encodeS2Desc(bd, bctx), blk);
});
