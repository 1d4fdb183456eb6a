/**
 * Stage-2 operations of the library against arch/arm64/kvm/hyp/pgtable.c (v6.10): attribute composition
 * (`stage2_set_prot_attr`), block vs page policy, break-before-make and TLBI sequences, table-page refcounts
 * including owner annotations (`stage2_pte_is_counted`), -ENOMEM with a bounded pool, permission and AF updates.
 */
import t from 'tap';
import { Err } from '../../src/arch/errno.js';
import {
  DESC_TYPE_LO,
  DESC_VALID_LO,
  S2AP_R_LO,
  S2AP_W_LO,
  S2_AF_LO,
  S2_MEMATTR_SHIFT,
  S2_SH_SHIFT,
  S2_XN_HI,
  SW0_HI,
  SW1_HI,
} from '../../src/arch/desc.js';
import {
  KVM_PTE_LEAF_ATTR_LO_S2_SH_IS,
  MT_S2_DEVICE_nGnRE,
  MT_S2_FWB_DEVICE_nGnRE,
  MT_S2_FWB_NORMAL,
  MT_S2_FWB_NORMAL_NC,
  MT_S2_NORMAL,
  MT_S2_NORMAL_NC,
  kvmInvalidPteOwner,
  kvmMmuCacheMinPages,
  kvmPgtableStage2PgdSize,
  kvmPgtableStage2PteProt,
  kvmVtcrFor,
  stage2Destroy,
  stage2EstimatePages,
  stage2Flush,
  stage2Map,
  stage2Mkyoung,
  stage2Relaxperms,
  stage2SetOwner,
  stage2SetProtAttr,
  stage2TestClearYoung,
  stage2Unmap,
  stage2Wrprotect,
  type Halves,
} from '../../src/pgtable/stage2.js';
import { kvmPgtableGetLeaf } from '../../src/pgtable/walk.js';
import { kvmPhysToPteHi, kvmPhysToPteLo, kvmPteToPhys } from '../../src/pgtable/pte.js';
import { TLBI_TTL_UNKNOWN } from '../../src/pgtable/tlb-ops.js';
import {
  KVM_INVALID_PTE_LOCKED_LO,
  KVM_MAX_OWNER_ID,
  KvmPgtableProt,
  KvmPgtableProtHi,
  Stage2Flags,
  WalkFlags,
  newLeafOut,
} from '../../src/pgtable/types.js';
import { PageStackMemcache } from '../../src/pgtable/test-pool.js';
import { makeEnv, prot, type Env } from './helpers/env.js';

const K4 = 0x1000;
const M2 = 0x20_0000;
const G1 = 0x4000_0000;
const IPA = 0x8000_0000;
const PA = 0x4000_0000;
const RW = prot('RW');
const RWX = prot('RWX');

function map(env: Env, ipa: number, size: number, pa: number, p = RW, flags = 0): number {
  return stage2Map(env.pgt, ipa, size, pa, p.lo, p.hi, env.mc, flags);
}
function leaf(env: Env, ipa: number) {
  const out = newLeafOut();
  t.equal(kvmPgtableGetLeaf(env.pgt, ipa, out), 0);
  return out;
}
/** The PA a leaf maps for `ipa` (−1 when not valid). */
function translate(env: Env, ipa: number): number {
  const l = leaf(env, ipa);
  if ((l.lo & DESC_VALID_LO) === 0) return -1;
  const size = 2 ** (12 + 9 * (3 - l.level));
  return kvmPteToPhys(l.lo, l.hi, '4k') + (ipa % size);
}
/** PA of the table page holding the leaf for `ipa` at `level`, found by walking from the pgd. */
function tablePageOf(env: Env, ipa: number, level: number): number {
  let table = env.pgt.pgd + Math.floor(ipa / 2 ** 39) * K4;
  for (let l = env.pgt.startLevel; l < level; l++) {
    const idx = Math.floor(ipa / 2 ** (12 + 9 * (3 - l))) % 512;
    const lo = env.mem.read64Lo(table + idx * 8);
    const hi = env.mem.read64Hi(table + idx * 8);
    table = kvmPteToPhys(lo, hi, '4k');
  }
  return table;
}

t.test('stage2_set_prot_attr composes MemAttr, S2AP, SH, AF, XN and SW bits', async (t) => {
  const cases: Array<[string, { lo: number; hi: number }, boolean, number, boolean]> = [
    ['normal RWX, no FWB', RWX, false, MT_S2_NORMAL, false],
    ['normal RW, no FWB', RW, false, MT_S2_NORMAL, true],
    ['normal RWX, FWB', RWX, true, MT_S2_FWB_NORMAL, false],
    ['device RW, no FWB', prot('RW', { device: true }), false, MT_S2_DEVICE_nGnRE, true],
    ['device RW, FWB', prot('RW', { device: true }), true, MT_S2_FWB_DEVICE_nGnRE, true],
    ['NC R, no FWB', prot('R', { nc: true }), false, MT_S2_NORMAL_NC, true],
    ['NC R, FWB', prot('R', { nc: true }), true, MT_S2_FWB_NORMAL_NC, true],
  ];
  for (const [name, p, fwb, memattr, xn] of cases) {
    const env = makeEnv({ hasFwb: fwb });
    const out: Halves = { lo: 0, hi: 0 };
    t.equal(stage2SetProtAttr(env.pgt, p.lo, p.hi, out), 0, name);
    let lo = (memattr << S2_MEMATTR_SHIFT) | (KVM_PTE_LEAF_ATTR_LO_S2_SH_IS << S2_SH_SHIFT) | S2_AF_LO;
    if (p.lo & KvmPgtableProt.R) lo |= S2AP_R_LO;
    if (p.lo & KvmPgtableProt.W) lo |= S2AP_W_LO;
    t.same(out, { lo, hi: xn ? S2_XN_HI : 0 }, name);
  }
  const env = makeEnv({ hasFwb: true, flags: Stage2Flags.NOFWB });
  const out: Halves = { lo: 0, hi: 0 };
  stage2SetProtAttr(env.pgt, RWX.lo, RWX.hi, out);
  t.equal((out.lo >>> S2_MEMATTR_SHIFT) & 0xf, MT_S2_NORMAL, 'NOFWB overrides the CPU feature');
  const sw = prot('RW', { sw0: true, sw1: true, sw2: true, sw3: true });
  stage2SetProtAttr(env.pgt, sw.lo, sw.hi, out);
  t.equal(out.hi & ~S2_XN_HI, sw.hi, 'SW0..SW3 copied to bits 58:55');
});

t.test('impossible prot is -EINVAL', async (t) => {
  const env = makeEnv();
  for (const p of [prot('RWX', { device: true }), prot('RX', { nc: true }), prot('RW', { device: true, nc: true })]) {
    t.equal(map(env, IPA, K4, PA, p), Err.EINVAL);
  }
  t.equal(env.writes.length, 0, 'nothing written');
});

t.test('kvm_pgtable_stage2_pte_prot round-trips R/W/X and SW bits', async (t) => {
  const env = makeEnv();
  for (const p of [RW, RWX, prot('R'), prot('RX', { sw1: true }), prot('RW', { sw0: true })]) {
    map(env, IPA, K4, PA, p);
    const l = leaf(env, IPA);
    const back: Halves = { lo: 0, hi: 0 };
    kvmPgtableStage2PteProt(l.lo, l.hi, back);
    t.same(back, p);
    stage2Unmap(env.pgt, IPA, K4);
  }
});

t.test('leaf size: blocks where level, size and alignment allow, pages otherwise', async (t) => {
  const cases: Array<[string, number, number, number, number]> = [
    ['1G aligned', G1, G1, G1 * 2, 1],
    ['2M aligned', IPA, M2, PA + M2, 2],
    ['4K', IPA, K4, PA, 3],
    ['2M size but PA misaligned', IPA, M2, PA + K4, 3],
    ['2M size but IPA misaligned', IPA + K4, M2, PA, 3],
  ];
  for (const [name, ipa, size, pa, level] of cases) {
    const env = makeEnv();
    t.equal(map(env, ipa, size, pa), 0, name);
    const l = leaf(env, ipa);
    t.equal(l.level, level, name);
    t.equal((l.lo & DESC_TYPE_LO) !== 0, level === 3, `${name}: type bit`);
    t.equal(translate(env, ipa + size - K4), pa + size - K4, `${name}: last page`);
  }
  const env = makeEnv();
  t.equal(map(env, IPA, M2 + K4, PA), 0);
  t.equal(leaf(env, IPA).level, 2, 'aligned head is a block');
  t.equal(leaf(env, IPA + M2).level, 3, 'tail is a page');
  t.equal(translate(env, IPA + M2 + K4), -1, 'nothing past the end');
});

t.test('force_pte_cb forces pages and sees (addr, end, prot)', async (t) => {
  const calls: number[][] = [];
  const env = makeEnv({
    forcePteCb: (a, e, lo, hi) => {
      calls.push([a, e, lo, hi]);
      return true;
    },
  });
  t.equal(map(env, IPA, M2, PA), 0);
  t.same(calls, [[IPA, IPA + M2, RW.lo, RW.hi]]);
  t.equal(leaf(env, IPA).level, 3);
  t.equal(env.pool.pageCount(tablePageOf(env, IPA, 3)), 1 + 512, 'one reference per page entry');
});

t.test('refcounts: 1 + counted entries; unmap frees empty tables (TABLE_POST)', async (t) => {
  const env = makeEnv();
  for (let i = 0; i < 5; i++) t.equal(map(env, IPA + i * K4, K4, PA + i * K4), 0);
  const l3 = tablePageOf(env, IPA, 3);
  const l2 = tablePageOf(env, IPA, 2);
  t.equal(env.pool.pageCount(l3), 6);
  t.equal(env.pool.pageCount(l2), 2);
  t.equal(env.pool.usedPages, env.basePages + 2);
  t.equal(stage2Unmap(env.pgt, IPA, 2 * K4), 0);
  t.equal(env.pool.pageCount(l3), 4);
  t.equal(stage2Unmap(env.pgt, IPA, 5 * K4), 0);
  t.equal(env.pool.usedPages, env.basePages, 'both tables freed');
  t.equal(leaf(env, IPA).level, 1);
  t.same(env.warnings, []);
});

t.test('owner annotations are counted: a table holding them is not freed (pkvm.md §9.17)', async (t) => {
  const env = makeEnv();
  t.equal(stage2SetOwner(env.pgt, IPA, 3 * K4, env.mc, 2), 0);
  const l = leaf(env, IPA + K4);
  t.equal(l.level, 3, 'annotations are page granular');
  t.equal(kvmInvalidPteOwner(l.lo), 2);
  t.equal(l.lo & DESC_VALID_LO, 0);
  const l3 = tablePageOf(env, IPA, 3);
  t.equal(env.pool.pageCount(l3), 4);
  t.equal(map(env, IPA + 8 * K4, K4, PA), 0);
  t.equal(stage2Unmap(env.pgt, IPA + 8 * K4, K4), 0);
  t.equal(env.pool.pageCount(l3), 4, 'table kept: annotations still hold it');
  t.equal(kvmInvalidPteOwner(leaf(env, IPA).lo), 2, 'ownership survives');
  t.equal(stage2Unmap(env.pgt, IPA, 3 * K4), 0);
  t.equal(env.pool.usedPages, env.basePages, 'unmap clears annotations and frees the tables');
});

t.test('set_owner: id range, owner 0 clears, a valid mapping is broken with TLBI first', async (t) => {
  const env = makeEnv();
  t.equal(stage2SetOwner(env.pgt, IPA, K4, env.mc, KVM_MAX_OWNER_ID + 1), Err.EINVAL);
  t.equal(stage2SetOwner(env.pgt, IPA, K4, env.mc, -1), Err.EINVAL);
  t.equal(stage2SetOwner(env.pgt, IPA, K4, env.mc, KVM_MAX_OWNER_ID), 0);
  t.equal(kvmInvalidPteOwner(leaf(env, IPA).lo), KVM_MAX_OWNER_ID);
  t.equal(stage2SetOwner(env.pgt, IPA, K4, env.mc, 0), 0);
  t.same([leaf(env, IPA).lo, leaf(env, IPA).hi], [0, 0], 'owner 0 is the zero PTE');
  t.equal(env.pool.pageCount(tablePageOf(env, IPA, 3)), 1, 'and is not counted');

  map(env, IPA + K4, K4, PA);
  env.tlb.clear();
  env.writes.length = 0;
  t.equal(stage2SetOwner(env.pgt, IPA + K4, K4, env.mc, 1), 0);
  t.same(env.writes.map((w) => [w.newLo, w.newHi]), [
    [KVM_INVALID_PTE_LOCKED_LO, 0],
    [1 << 2, 0],
  ]);
  t.same(env.tlb.text(), ['dsb', `ipas2e1is(1,0x${(IPA + K4).toString(16)},3)`, 'dsb', 'vmalle1is(1)', 'dsb', 'isb']);
  t.equal(env.writes[1]!.tlbAt, 6, 'the annotation is written after the TLBI completed');
});

t.test('BBM on a changed mapping: LOCKED, TLBI by IPA (IPAS2E1IS, DSB, VMALLE1IS, DSB, ISB), make', async (t) => {
  const env = makeEnv();
  map(env, IPA, K4, PA);
  env.tlb.clear();
  env.writes.length = 0;
  t.equal(map(env, IPA, K4, PA + K4), 0);
  t.equal(env.writes.length, 2);
  t.equal(env.writes[0]!.newLo, KVM_INVALID_PTE_LOCKED_LO, 'break: invalid LOCKED marker');
  t.equal(env.writes[0]!.tlbAt, 0, 'before any TLBI');
  t.same(env.tlb.text(), [
    'dsb',
    `ipas2e1is(1,0x${IPA.toString(16)},3)`,
    'dsb',
    'vmalle1is(1)',
    'dsb',
    'isb',
    'dsb',
  ]);
  t.equal(env.writes[1]!.tlbAt, 6, 'make after the flush, before the final dsb(ishst)');
  t.equal(translate(env, IPA), PA + K4);
  t.equal(env.pool.pageCount(tablePageOf(env, IPA, 3)), 2, 'put then get: net zero');
});

t.test('identical or permission-only remap writes nothing; -EAGAIN only with HANDLE_FAULT (quirk)', async (t) => {
  const env = makeEnv();
  map(env, IPA, K4, PA, RW);
  env.writes.length = 0;
  t.equal(map(env, IPA, K4, PA, RW), 0, 'swallowed without HANDLE_FAULT');
  t.equal(map(env, IPA, K4, PA, RW, WalkFlags.HANDLE_FAULT), Err.EAGAIN, 'V1 behaviour');
  t.equal(map(env, IPA, K4, PA, RWX), 0, 'permission change is not applied by map (quirk)');
  t.equal(env.writes.length, 0);
  const back: Halves = { lo: 0, hi: 0 };
  const l = leaf(env, IPA);
  kvmPgtableStage2PteProt(l.lo, l.hi, back);
  t.same(back, RW, 'still RW: relax_perms is the path for that');
});

t.test('SW-bit-only changes are written in place without BBM (V1 83/89)', async (t) => {
  const env = makeEnv();
  map(env, IPA, K4, PA, RW);
  env.tlb.clear();
  env.writes.length = 0;
  t.equal(map(env, IPA, K4, PA, prot('RW', { sw0: true })), 0);
  t.equal(env.writes.length, 1);
  t.equal(env.writes[0]!.newHi & SW0_HI, SW0_HI);
  t.equal(env.writes[0]!.oldLo, env.writes[0]!.newLo);
  t.same(env.tlb.text(), ['dsb'], 'only the dsb(ishst) after the walk');
  t.equal(env.pool.pageCount(tablePageOf(env, IPA, 3)), 2);
});

t.test('a block hit by a smaller mapping becomes a table; the rest of the block is not re-created', async (t) => {
  const env = makeEnv();
  map(env, IPA, M2, PA);
  env.tlb.clear();
  t.equal(map(env, IPA + 3 * K4, K4, 0x5000_0000), 0);
  t.same(env.tlb.text().slice(0, 2), ['dsb', `ipas2e1is(1,0x${(IPA + 3 * K4).toString(16)},2)`], 'block flushed at L2');
  t.equal(translate(env, IPA + 3 * K4), 0x5000_0000);
  t.equal(translate(env, IPA), -1, 'other pages of the old block fault again');
  t.equal(env.pool.pageCount(tablePageOf(env, IPA, 3)), 2);
});

t.test('a table replaced by a block: VMID flush, sub-tree freed', async (t) => {
  const env = makeEnv();
  for (let i = 0; i < 3; i++) map(env, IPA + i * K4, K4, PA + i * K4);
  const used = env.pool.usedPages;
  env.tlb.clear();
  t.equal(map(env, IPA, M2, 0x6000_0000), 0);
  t.ok(env.tlb.text().includes('vmalls12e1is(1)'), 'whole-VMID flush for a table (no FEAT_TLBIRANGE)');
  t.equal(env.pool.usedPages, used - 1, 'the L3 table page went back to the pool');
  t.equal(leaf(env, IPA + K4).level, 2);
  t.equal(translate(env, IPA + K4), 0x6000_0000 + K4);
  t.same(env.warnings, []);
});

t.test('unmap: a block larger than the range goes whole; TLBI per leaf; table entries unhinted', async (t) => {
  const env = makeEnv();
  map(env, IPA, M2, PA);
  env.tlb.clear();
  t.equal(stage2Unmap(env.pgt, IPA + K4, K4), 0);
  t.equal(translate(env, IPA), -1);
  const flush = (ipa: number, ttl: number) => ['dsb', `ipas2e1is(1,0x${ipa.toString(16)},${ttl})`, 'dsb', 'vmalle1is(1)', 'dsb', 'isb'];
  t.same(env.tlb.text(), [...flush(IPA + K4, 2), ...flush(IPA + K4, TLBI_TTL_UNKNOWN)], 'the block, then the emptied L2 table');
  t.equal(env.pool.usedPages, env.basePages);

  const env2 = makeEnv();
  map(env2, IPA, K4, PA);
  env2.tlb.clear();
  stage2Unmap(env2.pgt, IPA, K4);
  const ttl = env2.tlb.ops.filter((o) => o.op === 'ipas2e1is').map((o) => ('level' in o ? o.level : -1));
  t.same(ttl, [3, TLBI_TTL_UNKNOWN, TLBI_TTL_UNKNOWN], 'the page, then the L3 and L2 table entries');
  t.equal(env2.pool.usedPages, env2.basePages);
});

t.test('unmap without FWB cleans cacheable leaves to PoC; map cleans new cacheable targets, ic for X', async (t) => {
  const env = makeEnv();
  map(env, IPA, K4, PA, RWX);
  t.same(env.pool.cmos, [
    ['dc', PA, K4],
    ['ic', PA, K4],
  ]);
  env.pool.cmos.length = 0;
  stage2Unmap(env.pgt, IPA, K4);
  t.same(env.pool.cmos, [['dc', PA, K4]]);
  // With FWB the map path still calls the hook (the kernel's mm_op elides it), the unmap path does not.
  const fwb = makeEnv({ hasFwb: true });
  map(fwb, IPA, K4, PA, RW);
  t.same(fwb.pool.cmos, [['dc', PA, K4]]);
  stage2Unmap(fwb.pgt, IPA, K4);
  t.same(fwb.pool.cmos, [['dc', PA, K4]], 'FWB: no clean on unmap');
  fwb.pool.cmos.length = 0;
  map(fwb, IPA, K4, PA, RW, WalkFlags.SKIP_CMO);
  t.same(fwb.pool.cmos, [], 'SKIP_CMO');
  const dev = makeEnv();
  map(dev, IPA, K4, PA, prot('RW', { device: true }));
  t.same(dev.pool.cmos, [], 'device memory is not cleaned');
  t.equal(stage2Flush(env.pgt, 0, 2 ** 40), 0);
});

t.test('-ENOMEM: null memcache, and an N-page pool that runs dry mid-walk', async (t) => {
  const env = makeEnv();
  t.equal(stage2Map(env.pgt, IPA, K4, PA, RW.lo, RW.hi, null, 0), Err.ENOMEM);
  t.equal(env.pool.usedPages, env.basePages, 'nothing allocated');
  // 40-bit IPA: two concatenated pgd pages; one more page lets the walk install an L2 table and no L3 table.
  const small = makeEnv({ poolPages: 3 });
  t.equal(map(small, IPA, K4, PA), Err.ENOMEM);
  t.equal(leaf(small, IPA).level, 2, 'the L2 table stayed');
  t.equal(small.pool.usedPages, 3);
  // A memcache of exactly kvm_mmu_cache_min_pages() is enough for one page.
  const mcEnv = makeEnv({ poolPages: 8 });
  const mc = new PageStackMemcache();
  mcEnv.pool.topup(mc, kvmMmuCacheMinPages(mcEnv.pgt));
  t.equal(kvmMmuCacheMinPages(mcEnv.pgt), 2);
  t.equal(stage2Map(mcEnv.pgt, IPA, K4, PA, RW.lo, RW.hi, mc, 0), 0);
  t.equal(mc.nrPages, 0);
  t.equal(stage2Map(mcEnv.pgt, IPA + G1, K4, PA, RW.lo, RW.hi, mc, 0), Err.ENOMEM);
});

t.test('-ERANGE past ia_bits, IDMAP requires addr == phys', async (t) => {
  const env = makeEnv({ iaBits: 40 });
  t.equal(map(env, 2 ** 40, K4, PA), Err.ERANGE);
  const id = makeEnv({ flags: Stage2Flags.IDMAP | Stage2Flags.NOFWB });
  t.equal(map(id, PA, K4, PA + K4), Err.EINVAL);
  t.equal(id.warnings.length, 1, 'a WARN, not a throw');
  t.equal(map(id, PA, K4, PA), 0);
});

t.test('wrprotect clears S2AP_W on every valid leaf of the range, in place, no TLBI', async (t) => {
  const env = makeEnv();
  map(env, IPA, M2, PA);
  map(env, IPA + M2, 2 * K4, PA + M2);
  env.tlb.clear();
  env.writes.length = 0;
  t.equal(stage2Wrprotect(env.pgt, IPA, M2 + 4 * K4), 0, 'invalid entries are skipped');
  t.equal(env.writes.length, 3, 'block + two pages');
  for (const ipa of [IPA, IPA + M2, IPA + M2 + K4]) t.equal(leaf(env, ipa).lo & S2AP_W_LO, 0);
  t.same(env.tlb.text(), []);
});

t.test('relax_perms adds R/W/X in place and flushes the IPA; SW bits refused', async (t) => {
  const env = makeEnv();
  map(env, IPA, K4, PA, prot('R'));
  env.tlb.clear();
  t.equal(stage2Relaxperms(env.pgt, IPA, KvmPgtableProt.W | KvmPgtableProt.X, 0, 0), 0);
  const l = leaf(env, IPA);
  t.equal(l.lo & (S2AP_R_LO | S2AP_W_LO), S2AP_R_LO | S2AP_W_LO);
  t.equal(l.hi & S2_XN_HI, 0);
  t.same(env.tlb.text(), ['dsb', `ipas2e1is(1,0x${IPA.toString(16)},3)`, 'dsb', 'vmalle1is(1)', 'dsb', 'isb']);
  t.same(env.pool.cmos.at(-1), ['ic', PA, K4], 'I-cache invalidated when X is added');
  t.equal(stage2Relaxperms(env.pgt, IPA, KvmPgtableProt.R, KvmPgtableProtHi.SW0, 0), Err.EINVAL);
  env.tlb.clear();
  t.equal(stage2Relaxperms(env.pgt, IPA + K4, KvmPgtableProt.W, 0, WalkFlags.HANDLE_FAULT), Err.EAGAIN);
  t.equal(env.tlb.text()[1], `ipas2e1is(1,0x${(IPA + K4).toString(16)},${TLBI_TTL_UNKNOWN})`, 'unhinted');
  t.equal(stage2Relaxperms(env.pgt, IPA + K4, KvmPgtableProt.W, 0, 0), 0, 'swallowed without HANDLE_FAULT');
});

t.test('test_clear_young / mkyoung: AF reported and cleared without TLBI, set again in place', async (t) => {
  const env = makeEnv();
  map(env, IPA, 2 * K4, PA);
  env.tlb.clear();
  t.equal(stage2TestClearYoung(env.pgt, IPA, 2 * K4, false), true);
  t.equal(leaf(env, IPA).lo & S2_AF_LO, S2_AF_LO, 'test only');
  t.equal(stage2TestClearYoung(env.pgt, IPA, 2 * K4, true), true);
  t.equal(leaf(env, IPA).lo & S2_AF_LO, 0);
  t.equal(stage2TestClearYoung(env.pgt, IPA, 2 * K4, false), false);
  t.same(env.tlb.text(), []);
  const out = newLeafOut();
  t.equal(stage2Mkyoung(env.pgt, IPA + K4, 0, out), 0);
  t.equal(out.lo & S2_AF_LO, 0, 'the PTE before the update');
  t.equal(out.level, 3);
  t.equal(leaf(env, IPA + K4).lo & S2_AF_LO, S2_AF_LO);
  t.equal(leaf(env, IPA).lo & S2_AF_LO, 0, 'only the one page');
  t.equal(stage2Mkyoung(env.pgt, IPA + 8 * K4, WalkFlags.HANDLE_FAULT, null), Err.EAGAIN);
  t.same(env.warnings, []);
});

t.test('destroy frees every table page and the pgd, annotations included', async (t) => {
  const env = makeEnv();
  map(env, IPA, M2 + 3 * K4, PA);
  map(env, 0x100_0000_0000 - K4, K4, PA);
  stage2SetOwner(env.pgt, 0x10_0000, 4 * K4, env.mc, 1);
  t.ok(env.pool.usedPages > env.basePages);
  stage2Destroy(env.pgt);
  t.equal(env.pool.usedPages, 0);
  t.equal(env.pgt.pgd, -1);
  t.same(env.warnings, []);
});

t.test('pgd size and memcache sizing helpers', async (t) => {
  t.equal(kvmPgtableStage2PgdSize(kvmVtcrFor('4k', 40)), 2 * K4);
  t.equal(kvmPgtableStage2PgdSize(kvmVtcrFor('4k', 48)), K4);
  t.equal(kvmPgtableStage2PgdSize(kvmVtcrFor('16k', 40)), 16 * 0x4000);
  t.equal(kvmPgtableStage2PgdSize(kvmVtcrFor('64k', 42)), 0x1_0000);
  t.equal(kvmPgtableStage2PgdSize(3 << 14), 0, 'reserved TG0');
  for (const [ipa, size] of [
    [IPA, K4],
    [IPA + M2 - K4, 2 * K4],
    [G1 - K4, 2 * K4],
    [IPA, 3 * M2],
  ] as const) {
    const env = makeEnv({ forcePteCb: () => true });
    const est = stage2EstimatePages(env.pgt, ipa, size);
    map(env, ipa, size, PA);
    t.equal(env.pool.usedPages - env.basePages, est, `estimate exact on an empty table: ${ipa.toString(16)}+${size}`);
  }
});

t.test('SW1 state bits survive unmap/map cycles through prot (page-state round trip)', async (t) => {
  const env = makeEnv();
  map(env, IPA, K4, PA, prot('RWX', { sw1: true }));
  t.equal(leaf(env, IPA).hi & (SW0_HI | SW1_HI), SW1_HI);
});

t.test('wrprotect and relax_perms act on whole L1, L2 and L3 leaves; the flush carries the leaf level', async (t) => {
  const env = makeEnv();
  map(env, 2 * G1, G1, G1, RW); // L1 block
  map(env, 0x1000_0000, M2, PA, RW); // L2 block
  map(env, 0x2000_0000, K4, PA, RW); // L3 page
  for (const [ipa, level] of [
    [2 * G1, 1],
    [0x1000_0000, 2],
    [0x2000_0000, 3],
  ] as const) {
    t.equal(stage2Wrprotect(env.pgt, ipa + K4 * (level === 3 ? 0 : 7), K4), 0);
    t.equal(leaf(env, ipa).lo & S2AP_W_LO, 0, `L${level}: W cleared for the whole leaf`);
    env.tlb.clear();
    t.equal(stage2Relaxperms(env.pgt, ipa, KvmPgtableProt.W, 0, 0), 0);
    t.equal(leaf(env, ipa).lo & S2AP_W_LO, S2AP_W_LO, `L${level}: W back`);
    t.equal(env.tlb.text()[1], `ipas2e1is(1,0x${ipa.toString(16)},${level})`);
  }
});

for (const [granule, iaBits, page, block] of [
  ['16k', 40, 0x4000, 0x200_0000],
  ['64k', 42, 0x1_0000, 0x2000_0000],
] as const) {
  t.test(`${granule} granule: pages and level-2 blocks, OA round trip, tables freed`, async (t) => {
    const env = makeEnv({ granule, iaBits });
    const out = newLeafOut();
    const ipa = 4 * block;
    t.equal(stage2Map(env.pgt, ipa, 2 * block + page, 0x4000_0000, RW.lo, RW.hi, env.mc, 0), 0);
    t.equal(kvmPgtableGetLeaf(env.pgt, ipa + block + page, out), 0);
    t.equal(out.level, 2, 'block');
    t.equal(kvmPteToPhys(out.lo, out.hi, granule), 0x4000_0000 + block);
    t.equal(kvmPgtableGetLeaf(env.pgt, ipa + 2 * block, out), 0);
    t.equal(out.level, 3, 'page');
    t.equal(out.lo & DESC_TYPE_LO, DESC_TYPE_LO);
    t.equal(kvmPteToPhys(out.lo, out.hi, granule), 0x4000_0000 + 2 * block);
    t.equal(kvmPgtableGetLeaf(env.pgt, ipa + 2 * block + page, out), 0);
    t.equal(out.lo & DESC_VALID_LO, 0, 'nothing after the last page');
    t.equal(stage2Unmap(env.pgt, 0, 2 ** iaBits), 0);
    t.equal(env.pool.usedPages, env.basePages);
    t.same(env.warnings, []);
  });
}

t.test('PTE output-address packing: 64K keeps PA[51:48] in bits[15:12]; 4K/16K use bits[47:G]', async (t) => {
  const pa52 = 0xf_1234_5678_0000;
  t.equal(kvmPteToPhys(kvmPhysToPteLo(pa52, '64k'), kvmPhysToPteHi(pa52), '64k'), pa52);
  const pa48 = 0xabcd_1234_c000;
  t.equal(kvmPteToPhys(kvmPhysToPteLo(pa48, '16k'), kvmPhysToPteHi(pa48), '16k'), pa48);
  t.equal(kvmPteToPhys(kvmPhysToPteLo(pa48 + 0x1000, '4k'), kvmPhysToPteHi(pa48), '4k'), pa48 + 0x1000);
  t.equal(kvmPhysToPteLo(0x1234_5fff, '4k'), 0x1234_5000, 'offset bits dropped');
});
