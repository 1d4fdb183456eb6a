/**
 * The split hit path (hitIndex, hitPa, hitFill) used by S2Mmu.translate must answer exactly as lookupPerm / lookup.
 */
import t from 'tap';
import fc from 'fast-check';
import { s2Block, s2Page } from '../../src/arch/desc-codec.js';
import { FaultType } from '../../src/arch/fault.js';
import { levelShift } from '../../src/arch/granule.js';
import { Tlb } from '../../src/mmu/tlb.js';
import { WalkResult } from '../../src/mmu/walk-result.js';

function leaf(ipa: number, level: number, oaBase: number): WalkResult {
  const shift = levelShift('4k', level);
  const d = level === 3 ? s2Page({ oa: oaBase, ap: 'RO', xn: 2 }) : s2Block({ oa: oaBase, level, ap: 'RW', sw: 5 });
  const r = new WalkResult();
  r.ipa = ipa;
  r.pa = oaBase + (ipa % 2 ** shift);
  r.leafLevel = level;
  r.leafShift = shift;
  r.descPa = 0x8000_0000 + level * 8;
  r.descLo = d.lo;
  r.descHi = d.hi;
  r.memAttr = 0xf;
  r.s2ap = level === 3 ? 1 : 3;
  r.xn = level === 3 ? 2 : 0;
  r.sw = level === 3 ? 0 : 5;
  r.af = true;
  return r;
}

function fields(r: WalkResult): unknown[] {
  return [r.fault, r.level, r.s1ptw, r.ipa, r.pa, r.leafLevel, r.leafShift, r.descPa, r.descLo, r.descHi, r.memAttr,
    r.s2ap, r.sh, r.xn, r.af, r.dbm, r.sw, r.cont, r.hwUpdated];
}

t.test('hitIndex + hitPa + hitFill agree with lookupPerm on hits, misses and permission answers', async (t) => {
  fc.assert(
    fc.property(
      fc.array(fc.record({ vmid: fc.nat({ max: 3 }), page: fc.nat({ max: 2 ** 27 }), level: fc.constantFrom(1, 2, 3), perm: fc.nat({ max: 63 }), sig: fc.nat({ max: 3 }) }), { maxLength: 40 }),
      fc.array(fc.record({ vmid: fc.nat({ max: 3 }), page: fc.nat({ max: 2 ** 27 }), off: fc.nat({ max: 4095 }), bit: fc.constantFrom(0, 1, 2, 4, 8, 16, 32), sig: fc.nat({ max: 3 }) }), { maxLength: 40 }),
      (fills, queries) => {
        const tlb = new Tlb({ capacity: 16 });
        for (const f of fills) {
          const ipa = f.page * 4096;
          const shift = levelShift('4k', f.level);
          tlb.fill(f.vmid, ipa, leaf(ipa, f.level, Math.floor((2 ** 40 + ipa) / 2 ** shift) * 2 ** shift), f.perm, f.sig);
        }
        const ipas = [...fills.map((f) => f.page * 4096), ...queries.map((q) => q.page * 4096)];
        for (const q of queries) {
          const ipa = ipas[q.page % ipas.length]! + q.off;
          const a = new WalkResult();
          const b = new WalkResult();
          const hitsBefore = tlb.hits;
          const want = tlb.lookupPerm(q.vmid, ipa, q.bit, q.sig, a);
          const i = tlb.hitIndex(q.vmid, ipa);
          let got = 0;
          if (i >= 0) {
            b.ipa = ipa;
            b.pa = tlb.hitPa(i, ipa);
            got = tlb.hitFill(i, q.bit, q.sig, b);
          }
          if (got !== want) return false;
          if (JSON.stringify(fields(a)) !== JSON.stringify(fields(b))) return false;
          if (tlb.hits !== hitsBefore + (want === 0 ? 0 : 2)) return false;
          if (want !== 0 && a.fault !== FaultType.NONE) return false;
        }
        tlb.checkInvariants();
        return true;
      },
    ),
    { numRuns: 200 },
  );
  t.pass('200 random fill/query sequences agree');
});

t.test('a hit through hitFill revives the combined copy, as lookupPerm does', async (t) => {
  const tlb = new Tlb();
  tlb.fill(1, 0x4000_0000, leaf(0x4000_0000, 3, 0x9000_0000), 0x3f, 1);
  tlb.vmalle1is(1);
  const i = tlb.probe(1, 0x4000_0000, 12);
  t.equal(tlb.copiesOf(i), 1, 'stage-2-only copy left');
  t.equal(tlb.hitIndex(1, 0x4000_0123), i);
  const out = new WalkResult();
  t.equal(tlb.hitFill(i, 1, 1, out), 1, 'mask bit 0 set under signature 1');
  t.equal(tlb.copiesOf(i), 3, 'combined copy re-created');
  t.equal(tlb.hitPa(i, 0x4000_0123), 0x9000_0123);
  t.equal(tlb.hitFill(i, 1, 2, out), 2, 'another signature: full check');
  t.equal(tlb.hitIndex(2, 0x4000_0123), -1, 'other VMID misses');
});
