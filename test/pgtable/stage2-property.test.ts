/**
 * Properties of random map/unmap sequences on a stage-2 table:
 * - with page granularity forced, the table equals a naive Map<ipaPage, {pa, prot}> model (checked via get_leaf);
 * - with blocks allowed, every mapped page translates as the last map covering it (a block broken by a later map
 *   or unmap may drop neighbours: the kernel re-faults them lazily), and each op's own range is exactly mapped;
 * - table-page refcounts are 1 + counted entries, and unmapping everything returns every table page;
 * - the hardware walker (mmu/s2-walk) agrees with get_leaf on every page (differential: the two walkers share only
 *   arch/), and the MMU's break-before-make checker sees no violation from any sequence.
 */
import t, { type Test } from 'tap';
import fc from 'fast-check';
import { DESC_VALID_LO } from '../../src/arch/desc.js';
import { FaultType } from '../../src/arch/fault.js';
import { AccessKind, s2Walk } from '../../src/mmu/s2-walk.js';
import { WalkResult } from '../../src/mmu/walk-result.js';
import { kvmPgtableStage2PteProt, stage2Map, stage2Unmap, type Halves } from '../../src/pgtable/stage2.js';
import { kvmPteTable, kvmPteToPhys } from '../../src/pgtable/pte.js';
import { newLeafOut } from '../../src/pgtable/types.js';
import { kvmPgtableGetLeaf } from '../../src/pgtable/walk.js';
import { prot } from './helpers/env.js';
import { hwWorld, type HwWorld } from './helpers/hw.js';

const K4 = 0x1000;
const M2 = 0x20_0000;
const WINDOW = 0x8000_0000; // IPA of page 0
const PAGES = 2048; // 8 MiB: four 2 MiB blocks
const PROTS = [prot('RW'), prot('RWX'), prot('R'), prot('RW', { sw0: true }), prot('RX', { sw1: true })];

type Op = { kind: 'map'; page: number; n: number; prot: number } | { kind: 'unmap'; page: number; n: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({
    kind: fc.constant('map' as const),
    page: fc.oneof(fc.integer({ min: 0, max: PAGES - 1 }), fc.integer({ min: 0, max: 3 }).map((b) => b * 512)),
    n: fc.oneof(fc.integer({ min: 1, max: 600 }), fc.constant(512), fc.constant(1024)),
    prot: fc.integer({ min: 0, max: PROTS.length - 1 }),
  }),
  fc.record({
    kind: fc.constant('unmap' as const),
    page: fc.integer({ min: 0, max: PAGES - 1 }),
    n: fc.integer({ min: 1, max: 700 }),
  }),
);

type World = HwWorld;
const world = hwWorld;

/** Each map op gets fresh, 2 MiB-congruent PAs, so no map is ever an identical remap. */
function runOps(w: World, ops: Op[], model: Map<number, { pa: number; prot: number }>, exactOwnRange: (op: Op, pa: number) => void) {
  let paCursor = 0x4000_0000;
  for (const op of ops) {
    const n = Math.min(op.n, PAGES - op.page);
    const ipa = WINDOW + op.page * K4;
    if (op.kind === 'map') {
      const pa = paCursor + (ipa % M2);
      paCursor += Math.ceil((n * K4 + M2) / M2) * M2;
      if (paCursor > 0xa000_0000) paCursor = 0x4000_0000;
      const p = PROTS[op.prot]!;
      const ret = stage2Map(w.pgt, ipa, n * K4, pa, p.lo, p.hi, w.pool, 0);
      if (ret !== 0) throw new Error(`map returned ${ret}`);
      for (let i = 0; i < n; i++) model.set(op.page + i, { pa: pa + i * K4, prot: op.prot });
      exactOwnRange(op, pa);
    } else {
      const ret = stage2Unmap(w.pgt, ipa, n * K4);
      if (ret !== 0) throw new Error(`unmap returned ${ret}`);
      for (let i = 0; i < n; i++) model.delete(op.page + i);
    }
  }
}

const leafOut = newLeafOut();
const protOut: Halves = { lo: 0, hi: 0 };
const hw = new WalkResult();

/** Translation of one page by get_leaf: {pa, prot index} or null; also checks the hardware walker agrees. */
function lookup(w: World, page: number): { pa: number; prot: number } | null {
  const ipa = WINDOW + page * K4;
  if (kvmPgtableGetLeaf(w.pgt, ipa, leafOut) !== 0) throw new Error('get_leaf');
  const fault = s2Walk(w.mem, w.cfg, ipa, AccessKind.READ, 0, hw, null);
  if ((leafOut.lo & DESC_VALID_LO) === 0) {
    if (fault !== FaultType.TRANSLATION || hw.level !== leafOut.level) {
      throw new Error(`hw walker: fault ${fault} level ${hw.level}, sw: invalid at level ${leafOut.level}`);
    }
    return null;
  }
  const size = 2 ** (12 + 9 * (3 - leafOut.level));
  const pa = kvmPteToPhys(leafOut.lo, leafOut.hi, '4k') + (ipa % size);
  if (fault !== FaultType.NONE || hw.pa !== pa) throw new Error(`hw walker: fault ${fault} pa ${hw.pa} sw pa ${pa}`);
  kvmPgtableStage2PteProt(leafOut.lo, leafOut.hi, protOut);
  const idx = PROTS.findIndex((p) => p.lo === protOut.lo && p.hi === protOut.hi);
  return { pa, prot: idx };
}

/** Scans every table page reachable from the pgd: refcount = 1 + non-zero entries. Returns the table-page count. */
function checkRefcounts(w: World): number {
  let tables = 0;
  const scan = (table: number, level: number, pgdPage: boolean): void => {
    let nonzero = 0;
    for (let i = 0; i < 512; i++) {
      const lo = w.mem.read64Lo(table + i * 8);
      const hi = w.mem.read64Hi(table + i * 8);
      if (lo !== 0 || hi !== 0) nonzero++;
      if (kvmPteTable(lo, level)) scan(kvmPteToPhys(lo, hi, '4k'), level + 1, false);
    }
    if (!pgdPage) tables++;
    const rc = w.pool.pageCount(table);
    if (rc !== 1 + nonzero) throw new Error(`table ${table.toString(16)} refcount ${rc}, entries ${nonzero}`);
  };
  scan(w.pgt.pgd, w.pgt.startLevel, true);
  scan(w.pgt.pgd + K4, w.pgt.startLevel, true);
  return tables;
}

function finish(t: Test, w: World) {
  const tables = checkRefcounts(w);
  t.equal(w.pool.usedPages, w.basePages + tables, 'no leaked table pages');
  stage2Unmap(w.pgt, WINDOW, PAGES * K4);
  t.equal(w.pool.usedPages, w.basePages, 'unmapping everything frees every table');
  t.equal(w.checker.checkQuiescent(), 0, 'every break was invalidated');
  t.same(w.checker.violations, [], 'BBM checker: no violation');
  t.same(w.warnings, []);
}

t.test('page granularity: the table equals the naive model', async (t) => {
  fc.assert(
    fc.property(fc.array(opArb, { minLength: 1, maxLength: 20 }), (ops) => {
      const w = world(true);
      const model = new Map<number, { pa: number; prot: number }>();
      runOps(w, ops, model, () => undefined);
      for (let p = 0; p < PAGES; p++) {
        const got = lookup(w, p);
        const want = model.get(p) ?? null;
        if (JSON.stringify(got) !== JSON.stringify(want)) {
          throw new Error(`page ${p}: got ${JSON.stringify(got)} want ${JSON.stringify(want)}`);
        }
      }
      checkRefcounts(w);
      stage2Unmap(w.pgt, WINDOW, PAGES * K4);
      if (w.pool.usedPages !== w.basePages) throw new Error('leak');
      if (w.checker.violations.length !== 0) throw new Error(JSON.stringify(w.checker.violations[0]));
      if (w.warnings.length !== 0) throw new Error(w.warnings[0]);
    }),
    { numRuns: 40 },
  );
  const w = world(true);
  runOps(w, [{ kind: 'map', page: 0, n: 700, prot: 0 }], new Map(), () => undefined);
  finish(t, w);
});

t.test('blocks allowed: mapped pages match the last map covering them; own ranges exact', async (t) => {
  fc.assert(
    fc.property(fc.array(opArb, { minLength: 1, maxLength: 20 }), (ops) => {
      const w = world(false);
      const model = new Map<number, { pa: number; prot: number }>();
      runOps(w, ops, model, (op, pa) => {
        // Right after a map, its whole range is mapped as requested.
        const n = Math.min(op.n, PAGES - op.page);
        for (const i of [0, n - 1, n >> 1]) {
          const got = lookup(w, op.page + i);
          if (got === null || got.pa !== pa + i * K4) throw new Error(`own range page ${op.page + i}`);
        }
      });
      for (let p = 0; p < PAGES; p++) {
        const got = lookup(w, p);
        if (got === null) continue;
        const want = model.get(p);
        if (want === undefined || want.pa !== got.pa || want.prot !== got.prot) {
          throw new Error(`page ${p}: got ${JSON.stringify(got)} want ${JSON.stringify(want)}`);
        }
      }
      checkRefcounts(w);
      stage2Unmap(w.pgt, WINDOW, PAGES * K4);
      if (w.pool.usedPages !== w.basePages) throw new Error('leak');
      if (w.checker.checkQuiescent() !== 0 || w.checker.violations.length !== 0) {
        throw new Error(JSON.stringify(w.checker.violations[0]));
      }
      if (w.warnings.length !== 0) throw new Error(w.warnings[0]);
    }),
    { numRuns: 40 },
  );
  const w = world(false);
  runOps(
    w,
    [
      { kind: 'map', page: 0, n: 1536, prot: 1 },
      { kind: 'map', page: 5, n: 1, prot: 0 },
      { kind: 'unmap', page: 700, n: 1 },
    ],
    new Map(),
    () => undefined,
  );
  t.equal(lookup(w, 6), null, 'the rest of the broken block faults again');
  t.equal(lookup(w, 1100)?.prot, 1, 'the third block is intact');
  t.equal(lookup(w, 600), null, 'the second block went with the one-page unmap');
  t.equal(lookup(w, 701), null, 'unmap of one page removed its whole block');
  finish(t, w);
});
