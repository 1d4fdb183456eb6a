/**
 * Every stage-2 operation of the library, run against the MMU's TLB and break-before-make checker (Arm ARM
 * D8.16.1; arm-s2.md §8.2–8.3): no violation and no uncovered break at the quiescent point after each step.
 * (Permission restrictions such as wrprotect need a caller TLBI; the checker flags those only on a TLB hit.)
 */
import t from 'tap';
import { FaultType } from '../../src/arch/fault.js';
import { AccessKind, s2Walk } from '../../src/mmu/s2-walk.js';
import { WalkResult } from '../../src/mmu/walk-result.js';
import { kvmPgtableGetLeaf } from '../../src/pgtable/walk.js';
import {
  stage2Destroy,
  stage2Map,
  stage2Mkyoung,
  stage2Relaxperms,
  stage2SetOwner,
  stage2TestClearYoung,
  stage2Unmap,
  stage2Wrprotect,
} from '../../src/pgtable/stage2.js';
import { KvmPgtableProt, newLeafOut } from '../../src/pgtable/types.js';
import { prot } from './helpers/env.js';
import { hwWorld } from './helpers/hw.js';

const K4 = 0x1000;
const M2 = 0x20_0000;
const IPA = 0x8000_0000;

t.test('a scripted mix of every operation leaves the BBM checker silent', async (t) => {
  const w = hwWorld(false);
  const RW = prot('RW');
  const steps: Array<[string, () => number | boolean]> = [
    ['map 2 blocks', () => stage2Map(w.pgt, IPA, 2 * M2, 0x4000_0000, RW.lo, RW.hi, w.pool, 0)],
    ['block → table + page', () => stage2Map(w.pgt, IPA + K4, K4, 0x5000_0000, RW.lo, RW.hi, w.pool, 0)],
    ['table → block', () => stage2Map(w.pgt, IPA, M2, 0x6000_0000, RW.lo, RW.hi, w.pool, 0)],
    ['pages', () => stage2Map(w.pgt, IPA + 2 * M2, 8 * K4, 0x5000_0000, RW.lo, RW.hi, w.pool, 0)],
    ['remap a page elsewhere', () => stage2Map(w.pgt, IPA + 2 * M2, K4, 0x5100_0000, RW.lo, RW.hi, w.pool, 0)],
    ['SW bits only', () => {
      const p = prot('RW', { sw0: true });
      return stage2Map(w.pgt, IPA + 2 * M2 + K4, K4, 0x5000_1000, p.lo, p.hi, w.pool, 0);
    }],
    ['annotate over a valid page', () => stage2SetOwner(w.pgt, IPA + 2 * M2 + 2 * K4, 2 * K4, w.pool, 2)],
    ['wrprotect', () => stage2Wrprotect(w.pgt, IPA, 3 * M2)],
    ['relax', () => stage2Relaxperms(w.pgt, IPA + 2 * M2 + 5 * K4, KvmPgtableProt.W | KvmPgtableProt.X, 0, 0)],
    ['mkold', () => stage2TestClearYoung(w.pgt, IPA, 3 * M2, true)],
    ['mkyoung', () => stage2Mkyoung(w.pgt, IPA + 2 * M2 + 6 * K4, 0, null)],
    ['unmap part of a block', () => stage2Unmap(w.pgt, IPA + M2 + K4, K4)],
    ['unmap the rest', () => stage2Unmap(w.pgt, IPA, 4 * M2)],
  ];
  for (const [name, step] of steps) {
    const r = step();
    t.ok(r === 0 || typeof r === 'boolean', `${name}: ${r}`);
    t.equal(w.checker.checkQuiescent(), 0, `${name}: every break covered`);
    t.same(w.checker.violations, [], `${name}: no violation`);
  }
  t.equal(w.pool.usedPages, w.basePages);
  const l = newLeafOut();
  t.equal(kvmPgtableGetLeaf(w.pgt, IPA, l), 0);
  t.equal(l.level, 1);
  stage2Destroy(w.pgt);
  t.same(w.warnings, []);
});

for (const [granule, iaBits, page, block] of [
  ['4k', 40, 0x1000, 0x20_0000],
  ['16k', 40, 0x4000, 0x200_0000],
  ['64k', 40, 0x1_0000, 0x2000_0000],
] as const) {
  t.test(`${granule}: the hardware walker agrees with get_leaf after map/unmap (differential)`, async (t) => {
    const w = hwWorld(false, 7, granule, iaBits);
    const RW = prot('RW');
    const base = 2 * block;
    t.equal(stage2Map(w.pgt, base, block + 3 * page, 0x4000_0000, RW.lo, RW.hi, w.pool, 0), 0);
    t.equal(stage2Unmap(w.pgt, base + block + page, page), 0);
    t.equal(stage2SetOwner(w.pgt, base + block + 2 * page, page, w.pool, 2), 0);
    const hw = new WalkResult();
    const l = newLeafOut();
    for (const off of [0, page, block - page, block, block + page, block + 2 * page, block + 3 * page, 4 * block]) {
      const ipa = base + off;
      t.equal(kvmPgtableGetLeaf(w.pgt, ipa, l), 0);
      const fault = s2Walk(w.mem, w.cfg, ipa, AccessKind.READ, 0, hw, null);
      if ((l.lo & 1) === 0) {
        t.same([fault, hw.level], [FaultType.TRANSLATION, l.level], `+0x${off.toString(16)} unmapped`);
      } else {
        t.same([fault, hw.pa], [FaultType.NONE, 0x4000_0000 + off], `+0x${off.toString(16)} mapped`);
      }
    }
    t.same(w.checker.violations, []);
    t.same(w.warnings, []);
  });
}
