/**
 * kvm_pgtable_walk(): visitor flags, re-read after a callback, error propagation (-EAGAIN only with HANDLE_FAULT),
 * range checks, concatenated pgds, get_leaf. Rules: kvm_pgtable.h `enum kvm_pgtable_walk_flags` and
 * `__kvm_pgtable_visit()` (arch/arm64/kvm/hyp/pgtable.c).
 */
import t from 'tap';
import { Err } from '../../src/arch/errno.js';
import { DESC_TYPE_LO, DESC_VALID_LO } from '../../src/arch/desc.js';
import { kvmPgtableGetLeaf, kvmPgtableWalk, kvmPgdPages, type VisitCtx } from '../../src/pgtable/walk.js';
import { stage2Map } from '../../src/pgtable/stage2.js';
import { kvmPhysToPteHi, kvmPhysToPteLo, kvmPteToPhys } from '../../src/pgtable/pte.js';
import { newLeafOut, WalkFlags, type WalkVisit } from '../../src/pgtable/types.js';
import { makeEnv, prot } from './helpers/env.js';

const RW = prot('RW');
const BASE = 0x8000_0000;
const MB2 = 0x20_0000;

/** A tree: one 4K page at BASE (L3 table under an L2 table under L1) and a 2M block at BASE + 2M. */
function tree() {
  const env = makeEnv();
  t.equal(stage2Map(env.pgt, BASE, 0x1000, 0x4000_0000, RW.lo, RW.hi, env.mc, 0), 0);
  t.equal(stage2Map(env.pgt, BASE + MB2, MB2, 0x4020_0000, RW.lo, RW.hi, env.mc, 0), 0);
  return env;
}

type Rec = [WalkVisit, number, number];

function record(flags: number, addr = BASE, size = 2 * MB2) {
  const env = tree();
  const seen: Rec[] = [];
  const ret = kvmPgtableWalk(env.pgt, addr, size, {
    cb: (ctx: VisitCtx<null>, v: WalkVisit) => {
      seen.push([v, ctx.addr, ctx.level]);
      return 0;
    },
    arg: null,
    flags,
  });
  return { ret, seen };
}

/** The full visit order for the tree with every visit kind requested. */
function fullOrder(): Rec[] {
  const out: Rec[] = [
    [WalkFlags.TABLE_PRE, BASE, 1],
    [WalkFlags.TABLE_PRE, BASE, 2],
  ];
  for (let i = 0; i < 512; i++) out.push([WalkFlags.LEAF, BASE + i * 0x1000, 3]);
  out.push([WalkFlags.TABLE_POST, BASE, 2], [WalkFlags.LEAF, BASE + MB2, 2], [WalkFlags.TABLE_POST, BASE, 1]);
  return out;
}

t.test('every combination of LEAF / TABLE_PRE / TABLE_POST visits exactly the requested kinds, in order', async (t) => {
  const kinds = [WalkFlags.LEAF, WalkFlags.TABLE_PRE, WalkFlags.TABLE_POST];
  for (let m = 0; m < 8; m++) {
    let flags = 0;
    kinds.forEach((k, i) => {
      if (m & (1 << i)) flags |= k;
    });
    const { ret, seen } = record(flags);
    t.equal(ret, 0);
    t.same(seen, fullOrder().filter(([v]) => (v & flags) !== 0), `flags=${flags}`);
  }
});

t.test('TABLE_POST sees the cursor of the moment the table entry was reached', async (t) => {
  const { seen } = record(WalkFlags.TABLE_PRE | WalkFlags.TABLE_POST, BASE + 0x3000, 0x1000);
  t.same(seen, [
    [WalkFlags.TABLE_PRE, BASE + 0x3000, 1],
    [WalkFlags.TABLE_PRE, BASE + 0x3000, 2],
    [WalkFlags.TABLE_POST, BASE + 0x3000, 2],
    [WalkFlags.TABLE_POST, BASE + 0x3000, 1],
  ]);
});

t.test('-EAGAIN is ignored unless HANDLE_FAULT; other errors stop the walk and are returned', async (t) => {
  for (const [err, hf, expRet, expVisits] of [
    [Err.EAGAIN, false, 0, 513],
    [Err.EAGAIN, true, Err.EAGAIN, 1],
    [Err.ENOMEM, false, Err.ENOMEM, 1],
    [Err.EINVAL, true, Err.EINVAL, 1],
  ] as const) {
    const env = tree();
    let n = 0;
    const ret = kvmPgtableWalk(env.pgt, BASE, 2 * MB2, {
      cb: () => {
        n++;
        return err;
      },
      arg: null,
      flags: WalkFlags.LEAF | (hf ? WalkFlags.HANDLE_FAULT : 0),
    });
    t.equal(ret, expRet, `${err} hf=${hf}`);
    t.equal(n, expVisits, `${err} hf=${hf} visits`);
  }
});

t.test('an error from TABLE_PRE or TABLE_POST stops the walk', async (t) => {
  for (const kind of [WalkFlags.TABLE_PRE, WalkFlags.TABLE_POST]) {
    const env = tree();
    const seen: number[] = [];
    const ret = kvmPgtableWalk(env.pgt, BASE, 2 * MB2, {
      cb: (_ctx: VisitCtx<null>, v: WalkVisit) => {
        seen.push(v);
        return v === kind ? Err.EBUSY : 0;
      },
      arg: null,
      flags: WalkFlags.LEAF | WalkFlags.TABLE_PRE | WalkFlags.TABLE_POST,
    });
    t.equal(ret, Err.EBUSY);
    t.equal(seen[seen.length - 1], kind, 'the failing visit is the last one');
    t.notOk(seen.includes(WalkFlags.LEAF) && kind === WalkFlags.TABLE_PRE, 'no leaf visited after a failing PRE');
  }
});

t.test('the entry is re-read after LEAF: a table installed by the visitor is descended into', async (t) => {
  const env = makeEnv();
  const child = env.pool.zallocPage(env.mc);
  const levels: number[] = [];
  let installed = false;
  kvmPgtableWalk(env.pgt, BASE, 0x1000, {
    cb: (ctx: VisitCtx<null>, _v: WalkVisit) => {
      levels.push(ctx.level);
      if (!installed && ctx.level === 1) {
        installed = true;
        ctx.mem.writeDesc(ctx.ptep, kvmPhysToPteLo(child, '4k') | DESC_TYPE_LO | DESC_VALID_LO, kvmPhysToPteHi(child));
      }
      return 0;
    },
    arg: null,
    flags: WalkFlags.LEAF,
  });
  t.same(levels, [1, 2], 'visited the empty L1 entry, then the new L2 table');
});

t.test('the entry is re-read after TABLE_PRE: a table removed by the visitor is skipped whole', async (t) => {
  const env = tree();
  const seen: Rec[] = [];
  kvmPgtableWalk(env.pgt, BASE, 2 * MB2, {
    cb: (ctx: VisitCtx<null>, v: WalkVisit) => {
      seen.push([v, ctx.addr, ctx.level]);
      if (v === WalkFlags.TABLE_PRE && ctx.level === 2) ctx.mem.writeDesc(ctx.ptep, 0, 0);
      return 0;
    },
    arg: null,
    flags: WalkFlags.LEAF | WalkFlags.TABLE_PRE | WalkFlags.TABLE_POST,
  });
  t.same(seen, [
    [WalkFlags.TABLE_PRE, BASE, 1],
    [WalkFlags.TABLE_PRE, BASE, 2],
    [WalkFlags.LEAF, BASE + MB2, 2],
    [WalkFlags.TABLE_POST, BASE, 1],
  ]);
});

t.test('range and state checks', async (t) => {
  const env = makeEnv({ iaBits: 40 });
  const w = { cb: () => 0, arg: null, flags: WalkFlags.LEAF };
  t.equal(kvmPgtableWalk(env.pgt, 2 ** 40 - 0x1000, 0x1000, w), 0, 'last page is in range');
  t.equal(kvmPgtableWalk(env.pgt, 2 ** 40 - 0x1000, 0x2000, w), Err.ERANGE, 'end past 2^ia_bits');
  t.equal(kvmPgtableWalk(env.pgt, 2 ** 40 + 0x1000, 0x1000, w), Err.ERANGE, 'start past 2^ia_bits');
  t.equal(kvmPgtableWalk(env.pgt, 0, 0x1000, { ...w, flags: WalkFlags.LEAF | WalkFlags.SHARED }), Err.EPERM);
  env.pgt.pgd = -1;
  t.equal(kvmPgtableWalk(env.pgt, 0, 0x1000, w), Err.EINVAL, 'no pgd');
});

t.test('a walk crosses the pages of a concatenated pgd', async (t) => {
  // 4K, 40-bit IPA: start level 1 with two concatenated pgd pages, the second one from 2^39.
  const env = makeEnv({ iaBits: 40 });
  t.equal(kvmPgdPages('4k', 40, 1), 2);
  const edge = 2 ** 39;
  t.equal(stage2Map(env.pgt, edge - 0x1000, 0x2000, 0x4000_0000, RW.lo, RW.hi, env.mc, 0), 0);
  const addrs: number[] = [];
  kvmPgtableWalk(env.pgt, edge - 0x1000, 0x2000, {
    cb: (ctx: VisitCtx<null>) => {
      addrs.push(ctx.addr);
      t.ok(ctx.ptep >= env.pgt.pgd, 'entry read from the table');
      return 0;
    },
    arg: null,
    flags: WalkFlags.LEAF,
  });
  t.same(addrs, [edge - 0x1000, edge]);
  const out = newLeafOut();
  t.equal(kvmPgtableGetLeaf(env.pgt, edge, out), 0);
  t.equal(kvmPteToPhys(out.lo, out.hi, '4k'), 0x4000_1000);
});

t.test('get_leaf reports the level where the walk stopped', async (t) => {
  const env = tree();
  const out = newLeafOut();
  t.equal(kvmPgtableGetLeaf(env.pgt, BASE + 0x10, out), 0);
  t.equal(out.level, 3);
  t.equal(kvmPteToPhys(out.lo, out.hi, '4k'), 0x4000_0000);
  t.equal(kvmPgtableGetLeaf(env.pgt, BASE + MB2 + 0x5000, out), 0);
  t.equal(out.level, 2);
  t.equal(kvmPgtableGetLeaf(env.pgt, 0x10_0000_0000, out), 0);
  t.same(out, { lo: 0, hi: 0, level: 1 }, 'empty L1 entry');
  t.equal(kvmPgtableGetLeaf(env.pgt, BASE + 0x4000_0000 * 2, out), 0);
  t.equal(out.level, 1);
  const before = { ...out };
  t.equal(kvmPgtableGetLeaf(env.pgt, 2 ** 41, out), Err.ERANGE);
  t.same(out, before, 'out untouched on failure');
});
