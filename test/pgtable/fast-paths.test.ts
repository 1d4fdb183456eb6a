/**
 * The library's fast paths against the general paths they short-cut (differential, fast-check): the same random
 * tables and operations run with `setPgtableFastPaths(true)` and `(false)`, and every descriptor write (address, old
 * and new halves, position in the TLB log), TLB operation, cache-maintenance call, warning, table-page refcount and
 * return value must agree.
 * - `kvm_pgtable_stage2_map()` / `kvm_pgtable_stage2_set_owner()` of one page: the 4 KiB direct descent to the
 *   last-level entry with a single LEAF visit, and the walk without TABLE_PRE visits (arch/arm64/kvm/hyp/pgtable.c
 *   `stage2_map_walk_table_pre()` is a no-op for a one-page range);
 * - `kvm_pgtable_get_leaf()`: the 4 KiB descent.
 * Trees come from random map / set_owner / unmap sequences with blocks allowed, with and without a force-PTE
 * policy, in the 4K, 16K and 64K granules.
 */
import t from 'tap';
import fc from 'fast-check';
import { Err } from '../../src/arch/errno.js';
import type { Granule } from '../../src/arch/granule.js';
import { PhysMem } from '../../src/mem/phys-mem.js';
import { pgtPageSize } from '../../src/pgtable/pte.js';
import { kvmPgtableStage2Init, kvmVtcrFor, newKvmPgtable, stage2Map, stage2SetOwner, stage2Unmap, warningList } from '../../src/pgtable/stage2.js';
import { PgtPagePool } from '../../src/pgtable/test-pool.js';
import { newLeafOut, WalkFlags } from '../../src/pgtable/types.js';
import { kvmPgtableGetLeaf, setPgtableFastPaths } from '../../src/pgtable/walk.js';
import { makeEnv, PageStackMemcache, POOL_BASE, prot, RAM_BASE, type Env } from './helpers/env.js';

const WINDOW = 0x8000_0000; // IPA of page 0
const PA_BASE = 0x4000_0000;
const PAGES = 2048;

type Op = { kind: 'map' | 'owner' | 'unmap'; page: number; n: number };

const opArb: fc.Arbitrary<Op> = fc.record({
  kind: fc.constantFrom('map' as const, 'owner' as const, 'unmap' as const),
  page: fc.oneof(fc.integer({ min: 0, max: PAGES - 1 }), fc.integer({ min: 0, max: 3 }).map((b) => b * 512)),
  n: fc.oneof(fc.integer({ min: 1, max: 600 }), fc.constant(512)),
});

/** The last operation: one page (or less) mapped or annotated, with the arguments varied. */
type Last = {
  kind: 'map' | 'owner';
  page: number;
  off: number;
  size: number;
  perms: number;
  sw: number;
  flags: number;
  owner: number;
  mc: 'pool' | 'none' | 'empty';
};

const PERMS = ['R', 'RW', 'RWX', 'RX', ''];
const FLAGS = [0, WalkFlags.HANDLE_FAULT, WalkFlags.SKIP_BBM_TLBI, WalkFlags.SKIP_CMO, WalkFlags.HANDLE_FAULT | WalkFlags.SKIP_CMO];

const lastArb: fc.Arbitrary<Last> = fc.record({
  kind: fc.constantFrom('map' as const, 'owner' as const),
  page: fc.integer({ min: 0, max: PAGES - 1 }),
  off: fc.constantFrom(0, 0x10, 0x7ff),
  size: fc.constantFrom(1, 0x800, 0x1000, 0x1000 - 0x10),
  perms: fc.integer({ min: 0, max: PERMS.length - 1 }),
  sw: fc.integer({ min: 0, max: 3 }),
  flags: fc.integer({ min: 0, max: FLAGS.length - 1 }),
  owner: fc.integer({ min: 0, max: 3 }),
  mc: fc.constantFrom('pool' as const, 'none' as const, 'empty' as const),
});

function envFor(granule: Granule, forcePte: boolean, sparse = false): Env {
  const env = makeEnv({ granule, poolPages: 256, forcePteCb: forcePte ? () => true : null });
  return sparse ? sparseCopy(env) : env;
}

/**
 * The same environment over sparse memory (`flatMaxBytes: 0`: every read goes through the read cache, none through
 * the flat window the 4K descent reads directly): a fresh pgd in a fresh pool, the TLB and warning sinks kept.
 */
function sparseCopy(env: Env): Env {
  const mem = new PhysMem({ flatMaxBytes: 0 });
  mem.addRegion(RAM_BASE, 0x8000_0000);
  const pageSize = pgtPageSize(env.pgt.granule);
  const pool = new PgtPagePool(mem, POOL_BASE, 256, pageSize);
  const writes: Env['writes'] = [];
  mem.observer = {
    onDescWrite(pa, oldLo, oldHi, newLo, newHi) {
      writes.push({ pa, oldLo, oldHi, newLo, newHi, tlbAt: env.tlb.ops.length });
    },
  };
  const pgt = newKvmPgtable(mem, pool, warningList(env.warnings));
  const mmu = env.pgt.mmu!;
  const vtcr = kvmVtcrFor(env.pgt.granule, env.pgt.iaBits);
  if (kvmPgtableStage2Init(pgt, mmu, vtcr, env.pgt.flags, env.pgt.forcePteCb) !== 0) throw new Error('sparse init');
  env.tlb.clear();
  return { ...env, mem, pool, pgt, writes, mc: pool, basePages: pool.usedPages };
}

function pageSize(granule: Granule): number {
  return granule === '4k' ? 0x1000 : granule === '16k' ? 0x4000 : 0x1_0000;
}

/** Builds the table, runs the last operation, and returns everything observable about it. */
function run(granule: Granule, forcePte: boolean, ops: readonly Op[], last: Last, fast: boolean, sparse = false) {
  const prev = setPgtableFastPaths(fast);
  try {
    const env = envFor(granule, forcePte, sparse);
    const pg = pageSize(granule);
    const rw = prot('RW');
    for (const op of ops) {
      const n = Math.min(op.n, PAGES - op.page);
      const ipa = WINDOW + op.page * pg;
      if (op.kind === 'map') stage2Map(env.pgt, ipa, n * pg, PA_BASE + op.page * pg, rw.lo, rw.hi, env.mc, 0);
      else if (op.kind === 'owner') stage2SetOwner(env.pgt, ipa, n * pg, env.mc, 2);
      else stage2Unmap(env.pgt, ipa, n * pg);
    }
    env.writes.length = 0;
    env.tlb.clear();
    env.pool.cmos.length = 0;
    const warnings0 = env.warnings.length;
    const mc = last.mc === 'pool' ? env.mc : last.mc === 'empty' ? new PageStackMemcache() : null;
    const ipa = WINDOW + last.page * pg + last.off;
    const size = granule === '4k' ? last.size : last.size === 0x1000 ? pg : last.size;
    let ret: number;
    if (last.kind === 'map') {
      const p = prot(PERMS[last.perms]!, { sw0: (last.sw & 1) !== 0, sw1: (last.sw & 2) !== 0 });
      ret = stage2Map(env.pgt, ipa, size, PA_BASE + last.page * pg, p.lo, p.hi, mc, FLAGS[last.flags]!);
    } else {
      ret = stage2SetOwner(env.pgt, ipa, size, mc, last.owner);
    }
    const refcounts = [...new Set(env.writes.map((w) => w.pa - (w.pa % pg)))].map((pa) => env.pool.pageCount(pa));
    const leaf = newLeafOut();
    const leafRet = kvmPgtableGetLeaf(env.pgt, ipa, leaf);
    return {
      ret,
      writes: env.writes.map((w) => [w.pa, w.oldLo, w.oldHi, w.newLo, w.newHi, w.tlbAt]),
      tlb: env.tlb.text(),
      cmos: env.pool.cmos.map((c) => [...c]),
      warnings: env.warnings.slice(warnings0),
      refcounts,
      used: env.pool.usedPages,
      leaf: [leafRet, leaf.lo, leaf.hi, leaf.level],
    };
  } finally {
    setPgtableFastPaths(prev);
  }
}

for (const granule of ['4k', '16k', '64k'] as const) {
  t.test(`${granule}: one-page map / set_owner do the same with and without the fast paths`, async (t) => {
    let leafLevel3 = 0;
    let changed = 0;
    fc.assert(
      fc.property(fc.boolean(), fc.array(opArb, { minLength: 0, maxLength: 10 }), lastArb, (forcePte, ops, last) => {
        const fast = run(granule, forcePte, ops, last, true);
        const slow = run(granule, forcePte, ops, last, false);
        t.same(fast, slow);
        if (fast.leaf[3] === 3) leafLevel3++;
        if (fast.writes.length > 0) changed++;
      }),
      { numRuns: granule === '4k' ? 150 : 30, seed: 0x5eed_0101 },
    );
    t.ok(leafLevel3 > 0, 'some operations ended on a last-level entry');
    t.ok(changed > 0, 'some operations wrote descriptors');
  });
}

t.test('4k over sparse memory: one-page map / set_owner do the same with and without the fast paths', async (t) => {
  let leafLevel3 = 0;
  fc.assert(
    fc.property(fc.boolean(), fc.array(opArb, { minLength: 0, maxLength: 10 }), lastArb, (forcePte, ops, last) => {
      const fast = run('4k', forcePte, ops, last, true, true);
      const slow = run('4k', forcePte, ops, last, false, true);
      t.same(fast, slow);
      if (fast.leaf[3] === 3) leafLevel3++;
    }),
    { numRuns: 40, seed: 0x5eed_0103 },
  );
  t.ok(leafLevel3 > 0, 'some operations ended on a last-level entry');
});

t.test('get_leaf with and without the fast path: every address of a random tree, and the error cases', async (t) => {
  fc.assert(
    fc.property(fc.array(opArb, { minLength: 0, maxLength: 12 }), fc.array(fc.integer({ min: 0, max: PAGES * 0x1000 - 1 }), { minLength: 1, maxLength: 16 }), (ops, offs) => {
      const env = envFor('4k', false);
      const rw = prot('RW');
      for (const op of ops) {
        const n = Math.min(op.n, PAGES - op.page);
        if (op.kind === 'map') stage2Map(env.pgt, WINDOW + op.page * 0x1000, n * 0x1000, PA_BASE + op.page * 0x1000, rw.lo, rw.hi, env.mc, 0);
        else if (op.kind === 'owner') stage2SetOwner(env.pgt, WINDOW + op.page * 0x1000, n * 0x1000, env.mc, 2);
        else stage2Unmap(env.pgt, WINDOW + op.page * 0x1000, n * 0x1000);
      }
      const a = newLeafOut();
      const b = newLeafOut();
      for (const off of offs) {
        for (const addr of [WINDOW + off, WINDOW + off + 0.5, off]) {
          const prev = setPgtableFastPaths(true);
          const ra = kvmPgtableGetLeaf(env.pgt, addr, a);
          setPgtableFastPaths(false);
          const rb = kvmPgtableGetLeaf(env.pgt, addr, b);
          setPgtableFastPaths(prev);
          t.same([ra, a.lo, a.hi, a.level], [rb, b.lo, b.hi, b.level]);
        }
      }
    }),
    { numRuns: 40, seed: 0x5eed_0102 },
  );
  const env = envFor('4k', false);
  for (const fastOn of [true, false]) {
    const prev = setPgtableFastPaths(fastOn);
    const out = newLeafOut();
    t.equal(kvmPgtableGetLeaf(env.pgt, 2 ** 40, out), Err.ERANGE);
    t.equal(kvmPgtableGetLeaf(env.pgt, 2 ** 40 - 1, out), 0);
    t.equal(out.level, env.pgt.startLevel);
    const pgd = env.pgt.pgd;
    env.pgt.pgd = -1;
    out.lo = 7;
    t.equal(kvmPgtableGetLeaf(env.pgt, 0, out), Err.EINVAL);
    t.equal(out.lo, 7, 'out untouched on failure');
    env.pgt.pgd = pgd;
    setPgtableFastPaths(prev);
  }
});

t.test('one-page map errors are the general walk errors with the fast paths on', async (t) => {
  const env = envFor('4k', false);
  const rw = prot('RW');
  t.equal(stage2Map(env.pgt, 2 ** 40, 0x1000, PA_BASE, rw.lo, rw.hi, env.mc, 0), Err.ERANGE);
  t.equal(stage2Map(env.pgt, 2 ** 40 - 0x1000, 0x1000, PA_BASE, rw.lo, rw.hi, env.mc, 0), 0);
  t.equal(stage2Map(env.pgt, 2 ** 40 - 0x1000, 0x1000, PA_BASE + 0x1000, rw.lo, rw.hi, env.mc, WalkFlags.HANDLE_FAULT), 0, 'only the OA changes');
  t.equal(stage2Map(env.pgt, 2 ** 40 - 0x1000, 0x1000, PA_BASE + 0x1000, rw.lo, rw.hi, env.mc, WalkFlags.HANDLE_FAULT), Err.EAGAIN, 'the same mapping again');
  t.equal(stage2Map(env.pgt, 2 ** 40 - 0x1000, 0x1000, PA_BASE + 0x1000, rw.lo, rw.hi, env.mc, 0), 0, '-EAGAIN swallowed');
  t.equal(stage2Map(env.pgt, 0, 0x1000, PA_BASE, rw.lo, rw.hi, env.mc, WalkFlags.SHARED), Err.EPERM);
  t.equal(env.warnings.length, 0);
});
