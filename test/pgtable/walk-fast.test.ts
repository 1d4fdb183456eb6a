/**
 * The walker's one-page fast paths against the recursive walk they replace (differential, fast-check):
 * - a one-page walk without TABLE_POST runs as a loop (`walkOnePage`); the same walk with TABLE_POST requested (and
 *   its visits ignored) takes the recursion. Both must make the same callbacks with the same context values, stop
 *   and return the same way (-EAGAIN with and without HANDLE_FAULT, other errors), and descend into a table a
 *   visitor installs;
 * - `kvm_pgtable_get_leaf()` descends directly; it must report what a LEAF walk over a larger range sees first.
 * Trees come from random map / set_owner / unmap sequences with blocks allowed (kvm_pgtable_walk() semantics:
 * arch/arm64/kvm/hyp/pgtable.c `__kvm_pgtable_visit()`).
 */
import t from 'tap';
import fc from 'fast-check';
import { DESC_TYPE_LO, DESC_VALID_LO } from '../../src/arch/desc.js';
import { Err } from '../../src/arch/errno.js';
import { kvmPhysToPteHi, kvmPhysToPteLo } from '../../src/pgtable/pte.js';
import { stage2Map, stage2SetOwner, stage2Unmap } from '../../src/pgtable/stage2.js';
import { KVM_PGTABLE_LAST_LEVEL, newLeafOut, WalkFlags, type WalkVisit } from '../../src/pgtable/types.js';
import { kvmPgtableGetLeaf, kvmPgtableWalk, type VisitCtx } from '../../src/pgtable/walk.js';
import { makeEnv, prot, type Env } from './helpers/env.js';

const K4 = 0x1000;
const WINDOW = 0x8000_0000; // IPA of page 0
const PAGES = 2048; // 8 MiB: four 2 MiB blocks
const PA_BASE = 0x4000_0000;
const RW = prot('RW');

type Op = { kind: 'map' | 'owner' | 'unmap'; page: number; n: number };

const opArb: fc.Arbitrary<Op> = fc.record({
  kind: fc.constantFrom('map' as const, 'owner' as const, 'unmap' as const),
  page: fc.oneof(fc.integer({ min: 0, max: PAGES - 1 }), fc.integer({ min: 0, max: 3 }).map((b) => b * 512)),
  n: fc.oneof(fc.integer({ min: 1, max: 600 }), fc.constant(512)),
});

/** A table built by `ops` (the same ops always build the same table). */
function build(ops: readonly Op[]): Env {
  const env = makeEnv({ poolPages: 256 });
  for (const op of ops) {
    const n = Math.min(op.n, PAGES - op.page);
    const ipa = WINDOW + op.page * K4;
    if (op.kind === 'map') stage2Map(env.pgt, ipa, n * K4, PA_BASE + op.page * K4, RW.lo, RW.hi, env.mc, 0);
    else if (op.kind === 'owner') stage2SetOwner(env.pgt, ipa, n * K4, env.mc, 2);
    else stage2Unmap(env.pgt, ipa, n * K4);
  }
  env.writes.length = 0;
  return env;
}

/** One recorded callback: kind, descriptor PA, cursor, level, old halves, start/end of the walk. */
type Rec = [WalkVisit, number, number, number, number, number, number, number];

/**
 * Walks one page of `env` recording every LEAF / TABLE_PRE callback. The visitor returns `stopRet` at callback
 * number `stopAt`, and with `install` puts a fresh table under an empty entry above the last level (the walk must
 * then descend into it). `recursive` adds TABLE_POST (ignored by the visitor), which forces the recursive walk.
 */
function walkPage(env: Env, addr: number, flags: number, stopAt: number, stopRet: number, install: boolean, recursive: boolean) {
  const seen: Rec[] = [];
  const ret = kvmPgtableWalk(env.pgt, addr, K4, {
    cb: (ctx: VisitCtx<null>, v: WalkVisit) => {
      if (v === WalkFlags.TABLE_POST) return 0;
      seen.push([v, ctx.ptep, ctx.addr, ctx.level, ctx.oldLo, ctx.oldHi, ctx.start, ctx.end]);
      if (install && v === WalkFlags.LEAF && ctx.oldLo === 0 && ctx.oldHi === 0 && ctx.level < KVM_PGTABLE_LAST_LEVEL) {
        const child = env.pool.zallocPage(env.mc);
        if (child >= 0) {
          env.mem.writeDesc(ctx.ptep, (kvmPhysToPteLo(child, '4k') | DESC_TYPE_LO | DESC_VALID_LO) >>> 0, kvmPhysToPteHi(child));
        }
      }
      return seen.length === stopAt ? stopRet : 0;
    },
    arg: null,
    flags: recursive ? flags | WalkFlags.TABLE_POST : flags,
  });
  return { ret, seen, writes: env.writes.map((w) => [w.pa, w.newLo, w.newHi]) };
}

const FLAG_SETS = [
  WalkFlags.LEAF,
  WalkFlags.TABLE_PRE,
  WalkFlags.LEAF | WalkFlags.TABLE_PRE,
  WalkFlags.LEAF | WalkFlags.HANDLE_FAULT,
  WalkFlags.LEAF | WalkFlags.TABLE_PRE | WalkFlags.HANDLE_FAULT,
];
const RETS = [0, Err.EAGAIN, Err.EPERM, Err.E2BIG];

t.test('a one-page walk makes the callbacks, context values and return of the recursive walk', async (t) => {
  let checked = 0;
  let descents = 0;
  fc.assert(
    fc.property(
      fc.array(opArb, { minLength: 0, maxLength: 12 }),
      fc.integer({ min: 0, max: PAGES - 1 }),
      fc.integer({ min: 0, max: K4 - 1 }),
      fc.integer({ min: 0, max: FLAG_SETS.length - 1 }),
      fc.integer({ min: 1, max: 5 }),
      fc.integer({ min: 0, max: RETS.length - 1 }),
      fc.boolean(),
      (ops, page, off, fi, stopAt, ri, install) => {
        const addr = WINDOW + page * K4 + off;
        const fast = walkPage(build(ops), addr, FLAG_SETS[fi]!, stopAt, RETS[ri]!, install, false);
        const slow = walkPage(build(ops), addr, FLAG_SETS[fi]!, stopAt, RETS[ri]!, install, true);
        t.same(fast.seen, slow.seen);
        t.equal(fast.ret, slow.ret);
        t.same(fast.writes, slow.writes);
        checked++;
        if (fast.writes.length > 0 && fast.seen.length > 1) descents++;
      },
    ),
    { numRuns: 150, seed: 0x5eed_0001 },
  );
  t.ok(checked === 150, 'every run compared');
  t.ok(descents > 0, 'some runs descended into a table the visitor installed');
});

t.test('the fast one-page walk is taken: a one-page walk reports the same ctx.end as its range', async (t) => {
  const env = build([{ kind: 'map', page: 0, n: 1 }]);
  const { seen, ret } = walkPage(env, WINDOW, WalkFlags.LEAF | WalkFlags.TABLE_PRE, 99, 0, false, false);
  t.equal(ret, 0);
  t.same(
    seen.map((r) => [r[0], r[2], r[3], r[6], r[7]]),
    [
      [WalkFlags.TABLE_PRE, WINDOW, 1, WINDOW, WINDOW + K4],
      [WalkFlags.TABLE_PRE, WINDOW, 2, WINDOW, WINDOW + K4],
      [WalkFlags.LEAF, WINDOW, 3, WINDOW, WINDOW + K4],
    ],
  );
});

t.test('get_leaf reports the first leaf a LEAF walk over a larger range visits', async (t) => {
  fc.assert(
    fc.property(fc.array(opArb, { minLength: 0, maxLength: 12 }), fc.array(fc.integer({ min: 0, max: PAGES - 2 }), { minLength: 1, maxLength: 8 }), (ops, pages) => {
      const env = build(ops);
      const out = newLeafOut();
      for (const page of pages) {
        const addr = WINDOW + page * K4;
        let first: [number, number, number] | null = null;
        const ret = kvmPgtableWalk(env.pgt, addr, 2 * K4, {
          cb: (ctx: VisitCtx<null>) => {
            if (first === null) first = [ctx.oldLo, ctx.oldHi, ctx.level];
            return 0;
          },
          arg: null,
          flags: WalkFlags.LEAF,
        });
        t.equal(ret, 0);
        t.equal(kvmPgtableGetLeaf(env.pgt, addr + 0x123, out), 0);
        t.same([out.lo, out.hi, out.level], first);
      }
    }),
    { numRuns: 100, seed: 0x5eed_0002 },
  );
});

t.test('get_leaf keeps the walk errors: -ERANGE past ia_bits, -EINVAL without a pgd', async (t) => {
  const env = makeEnv();
  const out = newLeafOut();
  out.lo = 7;
  t.equal(kvmPgtableGetLeaf(env.pgt, 2 ** 40, out), Err.ERANGE);
  t.equal(kvmPgtableGetLeaf(env.pgt, 2 ** 40 - K4, out), 0);
  t.equal(out.level, env.pgt.startLevel);
  env.pgt.pgd = -1;
  out.lo = 7;
  t.equal(kvmPgtableGetLeaf(env.pgt, 0, out), Err.EINVAL);
  t.equal(out.lo, 7, 'out untouched on failure');
});
