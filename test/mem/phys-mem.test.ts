import t from 'tap';
import { PhysMem, RegionKind, type U64 } from '../../src/mem/phys-mem.js';
import { InvariantError } from '../../src/arch/assert.js';

t.test('sparse backing: reads of untouched RAM cost nothing', async (t) => {
  const m = new PhysMem();
  m.addRegion(2 ** 51, 2 ** 40); // 1 TiB of RAM high in a 52-bit space
  const out: U64 = { lo: 1, hi: 1 };
  t.ok(m.read64(2 ** 51 + 2 ** 39, out));
  t.same(out, { lo: 0, hi: 0 });
  t.equal(m.touchedPages, 0, 'a read allocates nothing');
  t.ok(m.write64(2 ** 51 + 2 ** 39 + 8, 0x8000_0001, 0xdead_beef));
  t.equal(m.touchedPages, 1);
  m.read64(2 ** 51 + 2 ** 39 + 8, out);
  t.same(out, { lo: 0x8000_0001, hi: 0xdead_beef });
  t.equal(m.read64Lo(2 ** 51 + 2 ** 39 + 8), 0x8000_0001);
  t.equal(m.read64Hi(2 ** 51 + 2 ** 39 + 8), 0xdead_beef);
});

t.test('unbacked and MMIO addresses', async (t) => {
  const m = new PhysMem();
  m.addRegion(0x4000_0000, 0x10_0000);
  m.addRegion(0x900_0000, 0x1000, RegionKind.MMIO);
  const out: U64 = { lo: 9, hi: 9 };
  t.notOk(m.read64(0x1000, out), 'unbacked');
  t.same(out, { lo: 0, hi: 0 });
  t.notOk(m.write64(0x1000, 1, 1));
  t.notOk(m.writeDesc(0x1000, 1, 1));
  t.notOk(m.isRam(0x900_0000), 'MMIO is not RAM');
  t.ok(m.isRam(0x4000_0000));
  t.equal(m.pageForRead(0x900_0000), null);
  t.equal(m.read32(0x1000), 0);
  t.notOk(m.write32(0x1000, 1));
  t.notOk(m.write8(0x1000, 1));
  t.equal(m.read64Lo(0x1000), 0);
  t.equal(m.read64Hi(0x1000), 0);
  t.equal(m.regionOf(0x4000_0000 + 0x10_0000), null, 'end is exclusive');
  t.equal(m.regionList.length, 2);
});

t.test('region declaration is validated (API misuse throws)', async (t) => {
  const m = new PhysMem();
  m.addRegion(0x4000_0000, 0x20_0000);
  t.throws(() => m.addRegion(0x4010_0000, 0x1000), InvariantError, 'overlap');
  t.throws(() => m.addRegion(0x123, 0x1000), InvariantError, 'unaligned base');
  t.throws(() => m.addRegion(0x8000_0000, 0), InvariantError, 'empty');
});

t.test('writeDesc reports old and new values to the observer; write64 does not', async (t) => {
  const m = new PhysMem();
  m.addRegion(0x4000_0000, 0x10_0000);
  const seen: number[][] = [];
  m.observer = { onDescWrite: (pa, ol, oh, nl, nh) => seen.push([pa, ol, oh, nl, nh]) };
  m.writeDesc(0x4000_0008, 0x4000_1003, 0);
  m.writeDesc(0x4000_0008, 0, 0xffff_ffff);
  m.write64(0x4000_0008, 5, 5);
  t.same(seen, [
    [0x4000_0008, 0, 0, 0x4000_1003, 0],
    [0x4000_0008, 0x4000_1003, 0, 0, 0xffff_ffff],
  ]);
});

t.test('bytes, words, zero and fill', async (t) => {
  const m = new PhysMem();
  m.addRegion(0x4000_0000, 0x10_0000);
  m.write32(0x4000_0100, 0x1122_3344);
  t.equal(m.read8(0x4000_0100), 0x44);
  t.equal(m.read8(0x4000_0103), 0x11);
  m.write8(0x4000_0101, 0xaa);
  t.equal(m.read32(0x4000_0100), 0x1122_aa44);
  m.write8(0x4000_0103, 0xff);
  t.equal(m.read32(0x4000_0100), 0xff22_aa44, 'top byte written unsigned');
  m.fill32(0x4000_1000, 0x2000, 0xdead_beef);
  t.equal(m.read32(0x4000_2ffc), 0xdead_beef);
  m.zero(0x4000_1000, 0x1000);
  t.equal(m.read32(0x4000_1ffc), 0);
  t.equal(m.read32(0x4000_2000), 0xdead_beef, 'zero stops at the end of the range');
  const before = m.touchedPages;
  m.zero(0x4008_0000, 0x4000);
  m.zero(0x1000, 0x1000);
  t.equal(m.touchedPages, before, 'zeroing untouched or unbacked pages allocates nothing');
  m.fill32(0x1000, 0x1000, 1);
});
