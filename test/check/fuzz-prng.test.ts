// The fuzzer's PRNG: deterministic per seed, unbiased bounds, different seeds give different streams.
import fc from 'fast-check';
import t from 'tap';
import { Prng } from '../../src/check/fuzz/prng.js';

t.test('the same seed gives the same stream; nearby seeds differ', async (t) => {
  const a = new Prng(42);
  const b = new Prng(42);
  const c = new Prng(43);
  const xa = Array.from({ length: 64 }, () => a.u32());
  const xb = Array.from({ length: 64 }, () => b.u32());
  const xc = Array.from({ length: 64 }, () => c.u32());
  t.same(xa, xb);
  t.notSame(xa, xc);
  t.ok(xa.every((x) => Number.isInteger(x) && x >= 0 && x < 2 ** 32), 'u32 range');
  t.ok(new Set(xa).size > 60, 'no short cycle');
  // Seeds above 2^32 are not truncated to the same stream.
  t.notSame(new Prng(2 ** 40 + 42).u32(), new Prng(42).u32());
});

t.test('below, range, pick and weighted stay in bounds (property)', async (t) => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 2 ** 31 }), fc.integer({ min: 1, max: 2 ** 32 }), (seed, n) => {
      const r = new Prng(seed);
      for (let i = 0; i < 20; i++) {
        const x = r.below(n);
        if (!(Number.isInteger(x) && x >= 0 && x < n)) return false;
        const y = r.range(-3, 3);
        if (y < -3 || y > 3) return false;
      }
      return true;
    }),
  );
  const r = new Prng(7);
  const counts = [0, 0, 0];
  for (let i = 0; i < 30000; i++) counts[r.weighted([1, 0, 2])]!++;
  t.equal(counts[1], 0, 'a zero weight is never chosen');
  t.ok(Math.abs(counts[2]! / counts[0]! - 2) < 0.15, `weights are respected (${counts.join('/')})`);
  const seen = new Set<string>();
  for (let i = 0; i < 200; i++) seen.add(r.pick(['a', 'b', 'c']));
  t.same([...seen].sort(), ['a', 'b', 'c']);
  let hits = 0;
  for (let i = 0; i < 10000; i++) if (r.chance(0.25)) hits++;
  t.ok(hits > 2200 && hits < 2800, `chance(0.25) ≈ 25% (${hits})`);
});
