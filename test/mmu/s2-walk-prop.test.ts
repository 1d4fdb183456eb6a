import t from 'tap';
import fc from 'fast-check';
import { s2Block, s2Invalid, s2Page, s2Table, type Desc } from '../../src/arch/desc-codec.js';
import { ARMV8_0_PA40_FEATURES, ARMV8_4_PA48_FEATURES, type CpuFeatures } from '../../src/arch/features.js';
import { FaultType } from '../../src/arch/fault.js';
import { blockAllowed, granuleShift, levelShift, type Granule } from '../../src/arch/granule.js';
import { hcr } from '../../src/arch/hcr.js';
import { vtcr } from '../../src/arch/vtcr.js';
import { vttbr } from '../../src/arch/vttbr.js';
import { PhysMem } from '../../src/mem/phys-mem.js';
import { naiveS2Walk, type NaiveFault } from '../../src/mmu/naive-walk.js';
import { makeS2Config } from '../../src/mmu/s2-config.js';
import { AccessKind, WalkFlag, s2Walk } from '../../src/mmu/s2-walk.js';
import { WalkResult } from '../../src/mmu/walk-result.js';
import { S2Tree } from './helpers/s2-tree.js';

const RAM = 0x4000_0000;
const RAM_SIZE = 0x4000_0000;
const BASE = 0x4800_0000;
const ARENA = 0x4900_0000;

/** Valid (IAS, SL0, start level) triples per granule, incl. concatenated start tables and TTST start levels. */
const CONFIGS: Record<Granule, [number, number, number][]> = {
  '4k': [[48, 2, 0], [40, 1, 1], [39, 1, 1], [32, 0, 2], [25, 3, 3]],
  '16k': [[48, 2, 1], [40, 1, 2], [36, 1, 2], [28, 0, 3]],
  '64k': [[48, 2, 1], [42, 1, 2], [33, 0, 3]],
};

const NAMES: Record<FaultType, NaiveFault | 'other'> = {
  [FaultType.NONE]: 'none',
  [FaultType.TRANSLATION]: 'translation',
  [FaultType.ADDRESS_SIZE]: 'address_size',
  [FaultType.ACCESS_FLAG]: 'access_flag',
  [FaultType.PERMISSION]: 'permission',
  [FaultType.SEA_WALK]: 'sea_walk',
  [FaultType.SEA]: 'other',
  [FaultType.ALIGNMENT]: 'other',
  [FaultType.TLB_CONFLICT]: 'other',
};

interface EntrySpec {
  ipaFrac: number;
  level: number;
  kind: 'page-or-block' | 'invalid' | 'wrong-type' | 'table-far';
  oaFrac: number;
  ap: 'NONE' | 'RO' | 'WO' | 'RW';
  af: boolean;
  dbm: boolean;
  xn: number;
  memAttr: number;
}

const entryArb = fc.record<EntrySpec>({
  ipaFrac: fc.double({ min: 0, max: 1, noNaN: true, maxExcluded: true }),
  level: fc.integer({ min: 0, max: 3 }),
  kind: fc.constantFrom('page-or-block', 'page-or-block', 'page-or-block', 'invalid', 'wrong-type', 'table-far'),
  oaFrac: fc.double({ min: 0, max: 1, noNaN: true, maxExcluded: true }),
  ap: fc.constantFrom('NONE', 'RO', 'WO', 'RW'),
  af: fc.boolean(),
  dbm: fc.boolean(),
  xn: fc.integer({ min: 0, max: 3 }),
  memAttr: fc.constantFrom(0x1, 0x5, 0xf, 0xf),
});

const caseArb = fc.record({
  granule: fc.constantFrom<Granule>('4k', '16k', '64k'),
  cfgIndex: fc.nat(),
  ps: fc.integer({ min: 0, max: 6 }),
  ha: fc.boolean(),
  hd: fc.boolean(),
  pa40: fc.boolean(),
  entries: fc.array(entryArb, { minLength: 1, maxLength: 12 }),
  queries: fc.array(
    fc.record({
      pick: fc.nat(),
      offFrac: fc.double({ min: 0, max: 1, noNaN: true, maxExcluded: true }),
      random: fc.boolean(),
      access: fc.constantFrom('read', 'write', 'exec' as const),
      el0: fc.boolean(),
      at: fc.boolean(),
    }),
    { minLength: 1, maxLength: 10 },
  ),
});

type Case = typeof caseArb extends fc.Arbitrary<infer T> ? T : never;

function entryDesc(g: Granule, level: number, e: EntrySpec, feat: CpuFeatures): Desc {
  const sh = levelShift(g, level);
  const oa = Math.floor(e.oaFrac * 2 ** (48 - sh)) * 2 ** sh;
  const attrs = { granule: g, oa, ap: e.ap, af: e.af, dbm: e.dbm, xn: e.xn, memAttr: e.memAttr, lpa: false };
  switch (e.kind) {
    case 'page-or-block':
      if (level === 3) return s2Page(attrs);
      if (blockAllowed(g, level, false, feat.paBits >= 52)) return s2Block({ ...attrs, level });
      return s2Invalid(0x5a5a_5a5a, 0);
    case 'wrong-type': {
      // A page-type word at level < 3 is a table (to the OA); a block-type word at level 3 is reserved.
      const d = level === 3 ? s2Page(attrs) : s2Block({ ...attrs, oa: Math.floor(e.oaFrac * 2 ** (48 - granuleShift(g))) * 2 ** granuleShift(g), level: 3 });
      return { lo: (d.lo ^ 2) >>> 0, hi: d.hi };
    }
    case 'table-far':
      return s2Table({ granule: g, nlta: Math.floor(e.oaFrac * 2 ** (48 - granuleShift(g))) * 2 ** granuleShift(g), lpa: false });
    case 'invalid':
      return s2Invalid(Math.floor(e.oaFrac * 0xffff_ffff), 0);
  }
}

function build(c: Case, feat: CpuFeatures): { mem: PhysMem; leafIpas: number[] } {
  const [ias, , start] = CONFIGS[c.granule][c.cfgIndex % CONFIGS[c.granule].length]!;
  const mem = new PhysMem();
  mem.addRegion(RAM, RAM_SIZE);
  const tree = new S2Tree(mem, { granule: c.granule, ias, startLevel: start, base: BASE }, ARENA);
  const leafIpas: number[] = [];
  for (const e of c.entries) {
    const level = Math.max(e.level, start);
    const ipa = Math.floor(e.ipaFrac * 2 ** (ias - 12)) * 2 ** 12;
    tree.set(ipa, level, entryDesc(c.granule, level, e, feat));
    leafIpas.push(ipa);
  }
  return { mem, leafIpas };
}

function run(c: Case): string | null {
  const feat = c.pa40 ? ARMV8_0_PA40_FEATURES : ARMV8_4_PA48_FEATURES;
  const [ias0, sl0] = CONFIGS[c.granule][c.cfgIndex % CONFIGS[c.granule].length]!;
  if (c.pa40 && (ias0 > 40 || (c.granule === '4k' && sl0 === 3))) return null; // not a valid config on that PE
  const v = vtcr({ t0sz: 64 - ias0, sl0, tg0: c.granule, ps: c.ps, ha: c.ha, hd: c.hd });
  const b = vttbr({ baddr: BASE });
  const cfg = makeS2Config(v, b, hcr({ vm: true, rw: true }), feat);
  if (cfg.fault !== FaultType.NONE) return `unexpected config fault ${cfg.fault}`;
  const a = build(c, feat);
  const n = build(c, feat);
  const out = new WalkResult();
  const vBig = (BigInt(v.hi) << 32n) | BigInt(v.lo);
  const bBig = (BigInt(b.hi) << 32n) | BigInt(b.lo);
  for (const q of c.queries) {
    const ipa = q.random
      ? Math.floor(q.offFrac * 2 ** (ias0 + 1)) // half of them beyond IAS
      : a.leafIpas[q.pick % a.leafIpas.length]! + Math.floor(q.offFrac * 2 ** 12);
    const access = q.access === 'read' ? AccessKind.READ : q.access === 'write' ? AccessKind.WRITE : AccessKind.EXEC;
    const at = q.at && q.access !== 'exec';
    const flags = (q.el0 ? WalkFlag.EL0 : 0) | (at ? WalkFlag.AT : 0);
    const ft = s2Walk(a.mem, cfg, ipa, access, flags, out, null);
    const ref = naiveS2Walk(n.mem, vBig, bBig, feat, BigInt(ipa), q.access, q.el0, at);
    const got = NAMES[ft];
    if (got !== ref.fault) return `ipa 0x${ipa.toString(16)} ${q.access}: s2Walk ${got} L${out.level}, naive ${ref.fault} L${ref.level}`;
    if (ft !== FaultType.NONE && out.level !== ref.level) return `ipa 0x${ipa.toString(16)}: level ${out.level} vs ${ref.level}`;
    if (ft === FaultType.NONE && BigInt(out.pa) !== ref.pa) return `ipa 0x${ipa.toString(16)}: pa 0x${out.pa.toString(16)} vs 0x${ref.pa.toString(16)}`;
    if (out.descPa >= 0) {
      const x = { lo: 0, hi: 0 };
      const y = { lo: 0, hi: 0 };
      a.mem.read64(out.descPa, x);
      n.mem.read64(out.descPa, y);
      if (x.lo !== y.lo || x.hi !== y.hi) return `descriptor at 0x${out.descPa.toString(16)} differs after the walk`;
    }
  }
  return null;
}

t.test('s2Walk agrees with the naive BigInt walker on random trees (differential)', async (t) => {
  let compared = 0;
  fc.assert(
    fc.property(caseArb, (c) => {
      const r = run(c);
      if (r === null) compared++;
      return r === null;
    }),
    { numRuns: 400 },
  );
  t.ok(compared > 100, `${compared} cases compared`);
});

t.test('NO_UPDATE gives the same outcome as a real access and leaves memory untouched', async (t) => {
  fc.assert(
    fc.property(caseArb, (c) => {
      const feat = ARMV8_4_PA48_FEATURES;
      const [ias0, sl0] = CONFIGS[c.granule][c.cfgIndex % CONFIGS[c.granule].length]!;
      const cfg = makeS2Config(
        vtcr({ t0sz: 64 - ias0, sl0, tg0: c.granule, ps: c.ps, ha: c.ha, hd: c.hd }),
        vttbr({ baddr: BASE }),
        hcr({ vm: true, rw: true }),
        feat,
      );
      const { mem, leafIpas } = build(c, feat);
      const probe = new WalkResult();
      const real = new WalkResult();
      for (const q of c.queries) {
        const ipa = leafIpas[q.pick % leafIpas.length]!;
        const access = q.access === 'write' ? AccessKind.WRITE : AccessKind.READ;
        const f1 = s2Walk(mem, cfg, ipa, access, WalkFlag.NO_UPDATE, probe, null);
        if (probe.descPa >= 0) {
          const w = { lo: 0, hi: 0 };
          mem.read64(probe.descPa, w);
          if (w.lo !== probe.descLo || w.hi !== probe.descHi) return false;
        }
        const f2 = s2Walk(mem, cfg, ipa, access, 0, real, null);
        if (f1 !== f2 || probe.pa !== real.pa || probe.level !== real.level) return false;
      }
      return true;
    }),
    { numRuns: 200 },
  );
  t.pass();
});
