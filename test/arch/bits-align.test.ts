import t from 'tap';
import fc from 'fast-check';
import { TWO_32, alignDown, isAligned } from '../../src/arch/bits.js';

/** The definition both functions must keep: remainder by 2^shift (what they computed before the fast path). */
const refAlignDown = (x: number, shift: number): number => x - (x % 2 ** shift);
const refIsAligned = (x: number, shift: number): boolean => x % 2 ** shift === 0;

t.test('alignDown and isAligned agree with the remainder definition (both paths)', async (t) => {
  const values = fc.oneof(
    fc.integer({ min: 0, max: TWO_32 - 1 }),
    fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
    fc.integer({ min: 0, max: 52 }).map((b) => 2 ** b),
    fc.integer({ min: 1, max: 52 }).map((b) => 2 ** b - 1),
  );
  fc.assert(
    fc.property(values, fc.integer({ min: 0, max: 63 }), (x, shift) => {
      return alignDown(x, shift) === refAlignDown(x, shift) && isAligned(x, shift) === refIsAligned(x, shift);
    }),
    { numRuns: 5000 },
  );
  t.pass('5000 random values agreed');
});

t.test('boundaries of the 32-bit path', async (t) => {
  t.equal(alignDown(TWO_32 - 1, 31), 2 ** 31, 'shift 31 keeps bit 31');
  t.equal(alignDown(TWO_32 - 1, 32), 0, 'shift 32 of a value below 2^32');
  t.equal(alignDown(TWO_32 + 0x1fff, 12), TWO_32 + 0x1000, 'just above 2^32 takes the remainder path');
  t.equal(alignDown(0xffff_f123, 0), 0xffff_f123);
  t.ok(isAligned(2 ** 31, 31));
  t.notOk(isAligned(2 ** 31 + 2 ** 30, 31));
  t.ok(isAligned(0, 63));
  t.notOk(isAligned(TWO_32 - 4096, 32));
});
