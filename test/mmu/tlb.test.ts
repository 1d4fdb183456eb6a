import t from 'tap';
import fc from 'fast-check';
import { InvariantError } from '../../src/arch/assert.js';
import { s2Block, s2Page, type Desc } from '../../src/arch/desc-codec.js';
import { FaultType } from '../../src/arch/fault.js';
import { Granule, levelShift } from '../../src/arch/granule.js';
import { Tlb, TlbiOp, tlbiOpName, type TlbListener } from '../../src/mmu/tlb.js';
import { WalkResult } from '../../src/mmu/walk-result.js';

const G = Granule.G4K;

/** A successful walk result for a leaf at `level` mapping `ipa` to `oaBase` + offset, as s2Walk would fill it. */
function leafResult(ipa: number, oaBase: number, level: number, descPa = 0x8000_0000, ap: 'RW' | 'RO' = 'RW'): WalkResult {
  const shift = levelShift(G, level);
  const d: Desc = level === 3 ? s2Page({ oa: oaBase, ap }) : s2Block({ oa: oaBase, level, ap });
  const r = new WalkResult();
  r.ipa = ipa;
  r.pa = oaBase + (ipa % 2 ** shift);
  r.level = level;
  r.leafLevel = level;
  r.leafShift = shift;
  r.descPa = descPa;
  r.descLo = d.lo;
  r.descHi = d.hi;
  r.memAttr = 0xf;
  r.s2ap = ap === 'RW' ? 3 : 1;
  r.af = true;
  return r;
}

class Recorder implements TlbListener {
  events: string[] = [];
  onTlbi(op: TlbiOp, vmid: number, ipa: number, ttl: number): void {
    this.events.push(`${tlbiOpName(op)} ${vmid} ${ipa} ${ttl}`);
  }
  onDsb(): void {
    this.events.push('DSB');
  }
  onIsb(): void {
    this.events.push('ISB');
  }
}

t.test('lookup', async (t) => {
  t.test('a hit returns block base + offset and the cached leaf', async (t) => {
    const tlb = new Tlb();
    const ipa = 0x4020_1234;
    tlb.fill(1, ipa, leafResult(ipa, 0x9000_0000, 2, 0x7000_0010));
    const out = new WalkResult();
    t.ok(tlb.lookup(1, 0x4021_5678, out));
    t.equal(out.pa, 0x9000_0000 + 0x1_5678);
    t.equal(out.leafLevel, 2);
    t.equal(out.leafShift, 21);
    t.equal(out.descPa, 0x7000_0010);
    t.equal(out.descLo, s2Block({ oa: 0x9000_0000, level: 2 }).lo);
    t.equal(out.fault, FaultType.NONE);
    t.equal(out.ipa, 0x4021_5678);
    t.equal(out.s2ap, 3);
    t.equal(out.af, true);
    t.equal(tlb.hits, 1);
  });
  t.test('misses another VMID and another block', async (t) => {
    const tlb = new Tlb();
    tlb.fill(1, 0x4020_0000, leafResult(0x4020_0000, 0x9000_0000, 2));
    const out = new WalkResult();
    t.notOk(tlb.lookup(2, 0x4020_0000, out));
    t.notOk(tlb.lookup(1, 0x4040_0000, out));
    t.equal(tlb.misses, 2);
  });
  t.test('finds entries of every size at once', async (t) => {
    const tlb = new Tlb();
    tlb.fill(3, 0x1000, leafResult(0x1000, 0x5000_0000, 3));
    tlb.fill(3, 0x20_0000, leafResult(0x20_0000, 0x6000_0000, 2));
    tlb.fill(3, 0x8000_0000, leafResult(0x8000_0000, 0x1_c000_0000, 1));
    const out = new WalkResult();
    t.ok(tlb.lookup(3, 0x1abc, out));
    t.equal(out.pa, 0x5000_0abc);
    t.ok(tlb.lookup(3, 0x3f_fff8, out));
    t.equal(out.pa, 0x601f_fff8);
    t.ok(tlb.lookup(3, 0xbfff_fff0, out));
    t.equal(out.pa, 0x1_ffff_fff0);
    tlb.checkInvariants();
  });
  t.test('handles IPAs and PAs above 2^32 exactly', async (t) => {
    const tlb = new Tlb();
    const ipa = 0xf_ffff_ffff_f000;
    tlb.fill(0xffff, ipa, leafResult(ipa, 0xffff_ffff_f000, 3));
    const out = new WalkResult();
    t.ok(tlb.lookup(0xffff, ipa + 0xfff, out));
    t.equal(out.pa, 0xffff_ffff_ffff);
    t.notOk(tlb.lookup(0xffff, ipa - 0x1_0000_0000, out), 'same low 32 bits of the tag, different IPA');
  });
});

t.test('capacity', async (t) => {
  t.test('0 turns the TLB off', async (t) => {
    const tlb = new Tlb({ capacity: 0 });
    tlb.fill(1, 0x1000, leafResult(0x1000, 0x2000, 3));
    t.notOk(tlb.lookup(1, 0x1000, new WalkResult()));
    t.equal(tlb.size, 0);
    t.notOk(tlb.enabled);
    tlb.checkInvariants();
  });
  t.test('a bounded TLB evicts and never exceeds its capacity', async (t) => {
    const tlb = new Tlb({ capacity: 8 });
    for (let k = 0; k < 100; k++) tlb.fill(1, k * 0x1000, leafResult(k * 0x1000, 0x10_0000 + k * 0x1000, 3));
    t.equal(tlb.size, 8);
    t.equal(tlb.evictions, 92);
    tlb.checkInvariants();
  });
  t.test('an unbounded TLB grows and keeps every entry', async (t) => {
    const tlb = new Tlb();
    for (let k = 0; k < 5000; k++) tlb.fill(k & 7, k * 0x1000, leafResult(k * 0x1000, 0x4000_0000 + k * 0x1000, 3));
    t.equal(tlb.size, 5000);
    const out = new WalkResult();
    for (let k = 0; k < 5000; k += 97) {
      t.ok(tlb.lookup(k & 7, k * 0x1000 + 8, out));
      t.equal(out.pa, 0x4000_0000 + k * 0x1000 + 8);
    }
    tlb.checkInvariants();
  });
  t.test('refilling the same key replaces the entry', async (t) => {
    const tlb = new Tlb();
    tlb.fill(1, 0x1000, leafResult(0x1000, 0x2000, 3));
    tlb.fill(1, 0x1008, leafResult(0x1008, 0x3000, 3));
    const out = new WalkResult();
    t.ok(tlb.lookup(1, 0x1010, out));
    t.equal(out.pa, 0x3010);
    t.equal(tlb.size, 1);
  });
  t.test('rejects a fill from a faulting walk and a bad capacity', async (t) => {
    const tlb = new Tlb();
    const r = new WalkResult();
    r.fault = FaultType.TRANSLATION;
    t.throws(() => tlb.fill(1, 0, r), InvariantError);
    t.throws(() => new Tlb({ capacity: -1 }), InvariantError);
  });
});

t.test('maintenance (arm-s2.md §8.1)', async (t) => {
  const setup = (): Tlb => {
    const tlb = new Tlb();
    tlb.fill(1, 0x1000, leafResult(0x1000, 0x5000, 3));
    tlb.fill(1, 0x20_0000, leafResult(0x20_0000, 0x4000_0000, 2));
    tlb.fill(2, 0x1000, leafResult(0x1000, 0x6000, 3));
    return tlb;
  };
  t.test('IPAS2E1IS alone leaves the combined copy, so the translation survives', async (t) => {
    const tlb = setup();
    tlb.ipas2e1is(1, 0x1000, 3);
    const i = tlb.probe(1, 0x1000, 12);
    t.equal(tlb.copiesOf(i), 2);
    t.ok(tlb.lookup(1, 0x1000, new WalkResult()));
  });
  t.test('VMALLE1IS alone leaves the stage-2 copy, which a lookup revives', async (t) => {
    const tlb = setup();
    tlb.vmalle1is(1);
    t.equal(tlb.copiesOf(tlb.probe(1, 0x1000, 12)), 1);
    t.ok(tlb.lookup(1, 0x1000, new WalkResult()));
    t.equal(tlb.copiesOf(tlb.probe(1, 0x1000, 12)), 3);
  });
  t.test('IPAS2E1IS then VMALLE1IS removes exactly that translation', async (t) => {
    const tlb = setup();
    tlb.ipas2e1is(1, 0x1000);
    tlb.vmalle1is(1);
    const out = new WalkResult();
    t.notOk(tlb.lookup(1, 0x1000, out));
    t.equal(tlb.copiesOf(tlb.probe(1, 0x20_0000, 21)), 1, 'VMALLE1IS removed the other combined copy only');
    t.ok(tlb.lookup(1, 0x20_0000, out), 'its stage-2 copy still translates');
    t.equal(tlb.copiesOf(tlb.probe(1, 0x20_0000, 21)), 3, 'and the lookup revived the combined copy');
    t.ok(tlb.lookup(2, 0x1000, out), 'other VMID untouched');
    tlb.checkInvariants();
  });
  t.test('an IPA anywhere inside a block invalidates the block', async (t) => {
    const tlb = setup();
    tlb.ipas2le1is(1, 0x3f_f000);
    tlb.vmalle1is(1);
    t.notOk(tlb.lookup(1, 0x20_0000, new WalkResult()));
  });
  t.test('VMALLS12E1IS removes one VMID, ALLE1IS every VMID', async (t) => {
    const tlb = setup();
    tlb.vmalls12e1is(1);
    t.equal(tlb.countVmid(1), 0);
    t.equal(tlb.countVmid(2), 1);
    tlb.alle1is();
    t.equal(tlb.size, 0);
    tlb.checkInvariants();
  });
  t.test('non-IS forms act as the IS forms', async (t) => {
    const tlb = setup();
    tlb.ipas2e1(1, 0x1000);
    tlb.ipas2le1(1, 0x20_0000);
    tlb.vmalle1(1);
    t.equal(tlb.countVmid(1), 0);
    tlb.vmalls12e1(2);
    t.equal(tlb.size, 0);
    tlb.fill(1, 0x1000, leafResult(0x1000, 0x5000, 3));
    tlb.alle1();
    t.equal(tlb.size, 0);
  });
  t.test('the listener sees each operation and barrier in order', async (t) => {
    const tlb = setup();
    const rec = new Recorder();
    tlb.listener = rec;
    tlb.ipas2e1is(1, 0x1000, 3);
    tlb.dsb();
    tlb.vmalle1is(1);
    tlb.dsb();
    tlb.isb();
    tlb.vmalls12e1is(2);
    tlb.alle1is();
    tlb.ipas2le1is(2, 0x2000);
    t.same(rec.events, [
      'IPAS2E1IS 1 4096 3', 'DSB', 'VMALLE1IS 1 -1 -1', 'DSB', 'ISB', 'VMALLS12E1IS 2 -1 -1', 'ALLE1IS -1 -1 -1',
      'IPAS2LE1IS 2 8192 -1',
    ]);
  });
});

t.test('lookupPerm answers from the mask only under the same signature', async (t) => {
  const tlb = new Tlb();
  const out = new WalkResult();
  t.equal(tlb.lookupPerm(1, 0x1000, 1, 7, out), 0, 'miss');
  tlb.fill(1, 0x1000, leafResult(0x1000, 0x5000, 3), 0b000101, 7);
  t.equal(tlb.lookupPerm(1, 0x1000, 0b000001, 7, out), 1);
  t.equal(out.pa, 0x5000);
  t.equal(tlb.lookupPerm(1, 0x1000, 0b000100, 7, out), 1);
  t.equal(tlb.lookupPerm(1, 0x1000, 0b000010, 7, out), 2, 'bit not known');
  t.equal(tlb.lookupPerm(1, 0x1000, 0b000001, 8, out), 2, 'another configuration');
  t.equal(tlb.lookupPerm(1, 0x1000, 0, 7, out), 2, 'no bit asked');
  tlb.fill(1, 0x1000, leafResult(0x1000, 0x5000, 3));
  t.equal(tlb.lookupPerm(1, 0x1000, 0b000001, 7, out), 2, 'a refill without a mask forgets it');
  t.throws(() => tlb.fill(1, 0x1000, leafResult(0x1000, 0x5000, 3), 0x40, 1), InvariantError);
});

t.test('checkInvariants detects corruption', async (t) => {
  const tlb = new Tlb();
  tlb.fill(1, 0x1000, leafResult(0x1000, 0x5000, 3));
  // JUSTIFY: white-box corruption of a private array to prove the checker can fail.
  // Slot 6 of the 8-slot entry holds the packed attributes, including the copy bits.
  (tlb as unknown as { ent: Float64Array }).ent[tlb.probe(1, 0x1000, 12) * 8 + 6] = 0;
  t.throws(() => tlb.checkInvariants(), InvariantError);
});

t.test('property: the TLB agrees with a naive model under random fills and invalidations', async (t) => {
  type Op =
    | { k: 'fill'; vmid: number; page: number; level: number }
    | { k: 'ipa'; vmid: number; page: number }
    | { k: 'vmalle1'; vmid: number }
    | { k: 'vmalls12'; vmid: number }
    | { k: 'all' };
  const vmid = fc.integer({ min: 0, max: 2 });
  const page = fc.integer({ min: 0, max: 4095 }); // 4K pages within 16 MiB... and 4 GiB blocks below
  const op: fc.Arbitrary<Op> = fc.oneof(
    { weight: 5, arbitrary: fc.record({ k: fc.constant('fill' as const), vmid, page, level: fc.integer({ min: 1, max: 3 }) }) },
    { weight: 3, arbitrary: fc.record({ k: fc.constant('ipa' as const), vmid, page }) },
    { weight: 1, arbitrary: fc.record({ k: fc.constant('vmalle1' as const), vmid }) },
    { weight: 1, arbitrary: fc.record({ k: fc.constant('vmalls12' as const), vmid }) },
    { weight: 1, arbitrary: fc.record({ k: fc.constant('all' as const) }) },
  );
  fc.assert(
    fc.property(fc.array(op, { maxLength: 60 }), fc.constantFrom(Infinity, 4), (ops, capacity) => {
      const tlb = new Tlb({ capacity });
      // model: key "vmid:shift:tag" → [paBase, copies]
      const model = new Map<string, [number, number]>();
      for (const o of ops) {
        if (o.k === 'fill') {
          const shift = levelShift(G, o.level);
          const ipa = o.page * 0x1_0000 * 4;
          const base = Math.floor(ipa / 2 ** shift) * 2 ** shift;
          const oa = 0x10_0000_0000 + base;
          tlb.fill(o.vmid, ipa, leafResult(ipa, oa, o.level));
          model.set(`${o.vmid}:${shift}:${base / 2 ** shift}`, [oa, 3]);
        } else if (o.k === 'ipa') {
          const ipa = o.page * 0x1_0000 * 4;
          tlb.ipas2e1is(o.vmid, ipa);
          for (const [key, v] of model) {
            const [mv, ms, mt] = key.split(':').map(Number) as [number, number, number];
            if (mv === o.vmid && Math.floor(ipa / 2 ** ms) === mt) v[1] &= ~1;
          }
        } else if (o.k === 'vmalle1') {
          tlb.vmalle1is(o.vmid);
          for (const [key, v] of model) if (Number(key.split(':')[0]) === o.vmid) v[1] &= ~2;
        } else if (o.k === 'vmalls12') {
          tlb.vmalls12e1is(o.vmid);
          for (const [key, v] of model) if (Number(key.split(':')[0]) === o.vmid) v[1] = 0;
        } else {
          tlb.alle1is();
          model.clear();
        }
        for (const [key, v] of model) if (v[1] === 0) model.delete(key);
        tlb.checkInvariants();
      }
      if (capacity === Infinity) {
        // Exact agreement: every modelled translation hits with its PA, and nothing else does.
        if (tlb.size !== model.size) return false;
        const out = new WalkResult();
        for (const [key, [oa]] of model) {
          const [mv, ms, mt] = key.split(':').map(Number) as [number, number, number];
          if (!tlb.lookup(mv, mt * 2 ** ms + 0x18, out) || out.pa !== oa + 0x18) return false;
        }
      } else {
        // A bounded TLB holds a subset: every hit must be a modelled translation (never a stale one).
        const out = new WalkResult();
        for (let v = 0; v <= 2; v++) {
          for (let p = 0; p < 4096; p += 61) {
            const ipa = p * 0x1_0000 * 4;
            if (!tlb.lookup(v, ipa, out)) continue;
            const key = `${v}:${out.leafShift}:${Math.floor(ipa / 2 ** out.leafShift)}`;
            const m = model.get(key);
            if (m === undefined || out.pa !== m[0] + (ipa % 2 ** out.leafShift)) return false;
          }
        }
      }
      return true;
    }),
    { numRuns: 300 },
  );
  t.pass('300 random sequences agreed');
});
