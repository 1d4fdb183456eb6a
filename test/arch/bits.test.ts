import t from 'tap';
import fc from 'fast-check';
import {
  TWO_32, lo32, hi32, join, mask32, field, setField, bitsOf, alignDown, isAligned, u64ToBigInt, bigIntToU64,
  u64ToHex, u64ToShortHex, parseHex64,
} from '../../src/arch/bits.js';

t.test('lo32/hi32/join', async (t) => {
  // Rule: a 52-bit address splits into halves and joins back exactly.
  fc.assert(fc.property(fc.integer({ min: 0, max: 2 ** 52 - 1 }), (x) => join(lo32(x), hi32(x)) === x));
  t.equal(lo32(2 ** 40 + 0x8000_0001), 0x8000_0001, 'bit 31 stays unsigned');
  t.equal(hi32(2 ** 40 + 5), 0x100);
  t.equal(join(0xffff_ffff, 0), TWO_32 - 1);
});

t.test('mask32, field, setField', async (t) => {
  t.equal(mask32(0), 0);
  t.equal(mask32(1), 1);
  t.equal(mask32(31), 0x7fff_ffff);
  t.equal(mask32(32), 0xffff_ffff);
  t.equal(field(0xc000_0000, 31, 30), 3, 'top field is unsigned');
  t.equal(field(0b1011_0000, 7, 4), 0b1011);
  t.equal(setField(0xffff_ffff, 7, 4, 0), 0xffff_ff0f);
  t.equal(setField(0, 31, 28, 0xf), 0xf000_0000, 'bit 31 result normalised');
  t.equal(setField(0, 3, 0, 0x1f), 0xf, 'value truncated to the field');
});

t.test('bitsOf, alignDown, isAligned on values above 2^32', async (t) => {
  const x = 2 ** 51 + 2 ** 40 + 0x1234_5678;
  t.equal(bitsOf(x, 51, 48), 0b1000);
  t.equal(bitsOf(x, 47, 40), 1);
  t.equal(bitsOf(x, 31, 0), 0x1234_5678);
  t.equal(bitsOf(x, 60, 0), x, 'a field wider than the value returns the value');
  t.equal(alignDown(x, 12), x - 0x678);
  t.ok(isAligned(2 ** 40, 30));
  t.notOk(isAligned(2 ** 40 + 4096, 30));
});

t.test('BigInt edges', async (t) => {
  fc.assert(
    fc.property(fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), (v) => {
      const { lo, hi } = bigIntToU64(v);
      return u64ToBigInt(lo, hi) === v;
    }),
  );
  t.throws(() => bigIntToU64(-1n), RangeError);
  t.throws(() => bigIntToU64(1n << 64n), RangeError);
  t.equal(u64ToHex(0x07c3, 0x40), '0x00000040000007c3');
  t.equal(u64ToHex(0x07c3, 0x40, true), '0x0000_0040_0000_07c3');
  t.equal(u64ToShortHex(0, 0), '0x0');
  t.equal(u64ToShortHex(0x4000_0fc3, 0), '0x40000fc3');
});

t.test('parseHex64', async (t) => {
  t.same(parseHex64('0x0000_0040_0000_07c3'), { lo: 0x7c3, hi: 0x40 });
  t.same(parseHex64('0xFFFFFFFFFFFFFFFF'), { lo: 0xffff_ffff, hi: 0xffff_ffff });
  t.equal(parseHex64('0x1_0000_0000_0000_0000'), null, 'wider than 64 bits');
  t.equal(parseHex64('12'), null, 'no 0x prefix');
  t.equal(parseHex64('0x'), null, 'no digits');
  t.equal(parseHex64('0x_1'), null, 'leading underscore');
  t.equal(parseHex64('0xg'), null, 'not hex');
  t.equal(parseHex64(12 as unknown as string), null, 'not a string');
});
