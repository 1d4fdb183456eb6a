import t from 'tap';
import { RegFile } from '../../src/arch/regs.js';
import { pfnToPa, paToPfn, gfnToIpa, ipaToGfn, asPa, asIpa, asPfn, asGfn, isAddr, PAGE_SIZE } from '../../src/arch/addr.js';
import { assert, assertNever, InvariantError } from '../../src/arch/assert.js';

t.test('RegFile', async (t) => {
  const r = new RegFile();
  r.setSigned(1, -1);
  t.equal(r.lo(1), 0xffff_ffff);
  t.equal(r.hi(1), 0xffff_ffff, 'negative errno is 64-bit two\'s complement');
  t.equal(r.signed(1), -1);
  r.setSigned(1, -133);
  t.equal(r.signed(1), -133);
  r.setSigned(2, 5);
  t.equal(r.hi(2), 0);
  t.equal(r.signed(2), 5);
  r.setU(3, 2 ** 40 + 7);
  t.equal(r.u(3), 2 ** 40 + 7);
  r.set(4, 0, 0x8000_0000);
  t.ok(Number.isNaN(r.u(4)), 'values ≥ 2^53 are not numbers');
  t.ok(Number.isNaN(r.signed(4)), 'not a sign-extended int32');
  r.set(5, 0x8000_0000, 0);
  t.ok(Number.isNaN(r.signed(5)), 'bit 31 set without sign extension');
  r.clear();
  t.equal(r.u(3), 0);
});

t.test('address conversions', async (t) => {
  t.equal(pfnToPa(asPfn(0x1_0000_0001)), 0x1_0000_0001 * PAGE_SIZE, 'no int32 truncation');
  t.equal(paToPfn(asPa(2 ** 51 + 0xfff)), 2 ** 39);
  t.equal(gfnToIpa(asGfn(3)), 0x3000);
  t.equal(ipaToGfn(asIpa(0x3fff)), 3);
  t.ok(isAddr(0));
  t.notOk(isAddr(-1));
  t.notOk(isAddr(1.5));
  t.notOk(isAddr('1'));
  t.notOk(isAddr(2 ** 53));
});

t.test('assert', async (t) => {
  t.doesNotThrow(() => assert(true, 'x'));
  t.throws(() => assert(false, 'boom'), InvariantError);
  t.throws(() => assertNever('z' as never), /unexpected value: z/);
});
