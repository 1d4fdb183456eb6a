/**
 * The walker writes every result field on every path without resetting first on success, so a reused WalkResult
 * must end up exactly as a fresh one would: this property test walks the same queries with one reused result and
 * with a fresh result per walk (on twin memories, since hardware updates write the tables) and compares every field.
 */
import t from 'tap';
import fc from 'fast-check';
import { s2Block, s2Invalid, s2Page, type Desc } from '../../src/arch/desc-codec.js';
import { QEMU_MAX_FEATURES } from '../../src/arch/features.js';
import { FaultType } from '../../src/arch/fault.js';
import { levelShift } from '../../src/arch/granule.js';
import { hcr } from '../../src/arch/hcr.js';
import { vtcr } from '../../src/arch/vtcr.js';
import { vttbr } from '../../src/arch/vttbr.js';
import { PhysMem } from '../../src/mem/phys-mem.js';
import { makeS2Config } from '../../src/mmu/s2-config.js';
import { AccessKind, WalkFlag, s2Walk } from '../../src/mmu/s2-walk.js';
import { WalkResult } from '../../src/mmu/walk-result.js';
import { WalkTrace } from '../../src/mmu/walk-trace.js';
import { S2Tree } from './helpers/s2-tree.js';

const RAM = 0x4000_0000;
const BASE = 0x4800_0000;
const ARENA = 0x4900_0000;
const IAS = 39;

const entryArb = fc.record({
  page: fc.nat({ max: 63 }),
  level: fc.constantFrom(1, 2, 3, 3),
  invalid: fc.constantFrom(false, false, false, true),
  ap: fc.constantFrom('NONE' as const, 'RO' as const, 'WO' as const, 'RW' as const),
  af: fc.constantFrom(true, true, false),
  dbm: fc.boolean(),
  xn: fc.integer({ min: 0, max: 3 }),
  memAttr: fc.constantFrom(0x1, 0x5, 0xf),
  oaHigh: fc.constantFrom(false, false, false, true),
});

const queryArb = fc.record({
  kind: fc.constantFrom('mapped' as const, 'mapped' as const, 'any' as const, 'negative' as const, 'beyond' as const),
  page: fc.nat({ max: 63 }),
  off: fc.nat({ max: 4095 }),
  access: fc.constantFrom(AccessKind.READ, AccessKind.WRITE, AccessKind.EXEC),
  flags: fc.integer({ min: 0, max: 15 }),
});

type Entry = typeof entryArb extends fc.Arbitrary<infer T> ? T : never;

function leafDesc(level: number, e: Entry): Desc {
  if (e.invalid) return s2Invalid(0x1234_5678, 0);
  const sh = levelShift('4k', level);
  // oaHigh puts the OA above the 40-bit PS programmed below (an Address size fault at the leaf).
  const oa = (e.oaHigh ? 2 ** 41 : 0) + ((ipaOf(e.page) + 2 ** 37) % 2 ** 38);
  const f = { oa: Math.floor(oa / 2 ** sh) * 2 ** sh, ap: e.ap, af: e.af, dbm: e.dbm, xn: e.xn, memAttr: e.memAttr };
  return level === 3 ? s2Page(f) : s2Block({ ...f, level });
}

/** The IPA of test page `page`: a distinct 4 KiB page, 2 MiB region and 1 GiB region for each. */
function ipaOf(page: number): number {
  return page * 2 ** 30 + page * 2 ** 21 + page * 4096;
}

function snapshot(r: WalkResult): string {
  return JSON.stringify([
    r.fault, r.level, r.s1ptw, r.ipa, r.pa, r.leafLevel, r.leafShift, r.descPa, r.descLo, r.descHi, r.memAttr,
    r.s2ap, r.sh, r.xn, r.af, r.dbm, r.sw, r.cont, r.hwUpdated,
  ]);
}

t.test('a reused WalkResult ends up exactly as a fresh one, on every path', async (t) => {
  let faults = 0;
  let updates = 0;
  let successes = 0;
  fc.assert(
    fc.property(
      fc.array(entryArb, { minLength: 1, maxLength: 10 }),
      fc.array(queryArb, { minLength: 2, maxLength: 12 }),
      fc.boolean(),
      fc.boolean(),
      (entries, queries, ha, hd) => {
        const mems = [new PhysMem(), new PhysMem()];
        for (const mem of mems) {
          mem.addRegion(RAM, 0x4000_0000);
          const tree = new S2Tree(mem, { granule: '4k', ias: IAS, startLevel: 1, base: BASE }, ARENA);
          for (const e of entries) tree.set(ipaOf(e.page), e.level, leafDesc(e.level, e));
        }
        const cfg = makeS2Config(
          vtcr({ t0sz: 64 - IAS, sl0: 1, tg0: '4k', ps: 2, ha, hd }),
          vttbr({ baddr: BASE }),
          hcr({ vm: true, rw: true, ptw: true }),
          QEMU_MAX_FEATURES,
        );
        if (cfg.fault !== FaultType.NONE) return false;
        const reused = new WalkResult();
        const trace = new WalkTrace();
        for (const q of queries) {
          const ipa =
            q.kind === 'mapped'
              ? ipaOf(entries[q.page % entries.length]!.page) + q.off
              : q.kind === 'any'
                ? q.page * 2 ** 30 + q.off * 4096
                : q.kind === 'negative'
                  ? -(q.off + 1)
                  : 2 ** IAS + q.off;
          const fresh = new WalkResult();
          const a = s2Walk(mems[0]!, cfg, ipa, q.access, q.flags, reused, trace);
          const b = s2Walk(mems[1]!, cfg, ipa, q.access, q.flags, fresh, null);
          if (a !== b || a !== reused.fault || snapshot(reused) !== snapshot(fresh)) return false;
          if (a === FaultType.NONE) successes++;
          else faults++;
          if (reused.hwUpdated) updates++;
        }
        return true;
      },
    ),
    { numRuns: 400 },
  );
  t.ok(successes > 0 && faults > 0 && updates > 0, `paths covered: ${successes} successes, ${faults} faults, ${updates} hardware updates`);
});

t.test('the IPA is reported as given on the paths that read no descriptor', async (t) => {
  const mem = new PhysMem();
  mem.addRegion(RAM, 0x100_0000);
  const cfg = makeS2Config(vtcr({ t0sz: 64 - IAS, sl0: 1, tg0: '4k', ps: 2 }), vttbr({ baddr: BASE }), hcr({ vm: true, rw: true }), QEMU_MAX_FEATURES);
  const out = new WalkResult();
  for (const ipa of [-1, 2 ** IAS, 2 ** 52 + 4096, 1.5 + 2 ** IAS]) {
    t.equal(s2Walk(mem, cfg, ipa, AccessKind.READ, 0, out, null), FaultType.TRANSLATION);
    t.equal(out.ipa, ipa);
    t.equal(out.level, 0);
    t.equal(out.descPa, -1);
  }
  t.ok(Number.isNaN((s2Walk(mem, cfg, Number.NaN, AccessKind.READ, WalkFlag.S1PTW, out, null), out.ipa)));
  t.equal(out.fault, FaultType.TRANSLATION);
  t.equal(out.s1ptw, true);
  const off = makeS2Config(vtcr({ t0sz: 64 - IAS, sl0: 1, tg0: '4k' }), vttbr({ baddr: BASE }), hcr({ vm: false, rw: true }), QEMU_MAX_FEATURES);
  t.equal(s2Walk(mem, off, 2 ** 50 + 5, AccessKind.WRITE, 0, out, null), FaultType.NONE);
  t.equal(out.pa, 2 ** 50 + 5, 'stage 2 off: PA = IPA');
  t.equal(out.ipa, 2 ** 50 + 5);
});
