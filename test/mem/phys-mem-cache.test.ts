import t from 'tap';
import fc from 'fast-check';
import { PhysMem, RegionKind, pageWordIndex, type U64 } from '../../src/mem/phys-mem.js';

/** The read cache serves sparse RAM only: these tests make every region sparse. */
const SPARSE = { flatMaxBytes: 0 } as const;
/** Pages this far apart share a read-cache slot (1024 slots of 4 KiB), whatever the slot count's low bits. */
const ALIAS = 1024 * 4096;

t.test('a write to a page first read as untouched is visible to later reads', async (t) => {
  const m = new PhysMem(SPARSE);
  m.addRegion(0x4000_0000, 0x100_0000);
  const out: U64 = { lo: 7, hi: 7 };
  t.ok(m.read64(0x4000_2008, out));
  t.same(out, { lo: 0, hi: 0 }, 'untouched RAM reads as zero');
  t.equal(m.touchedPages, 0);
  const zeroPage = m.pageForRead(0x4000_2000);
  t.ok(m.write64(0x4000_2008, 0x1234_5678, 0x9abc_def0));
  t.equal(m.touchedPages, 1);
  m.read64(0x4000_2008, out);
  t.same(out, { lo: 0x1234_5678, hi: 0x9abc_def0 }, 'the cached zero page was replaced');
  t.not(m.pageForRead(0x4000_2000), zeroPage);
  t.equal(zeroPage![2], 0, 'the shared zero page was never written');
  t.equal(m.read64Lo(0x4000_3008), 0, 'another untouched page still reads zero');
});

t.test('pages that share a cache slot, and unbacked addresses in the slot of a cached page', async (t) => {
  const m = new PhysMem(SPARSE);
  const base = 2 ** 40;
  m.addRegion(base, 4 * ALIAS);
  m.addRegion(base + 8 * ALIAS, 0x1000, RegionKind.MMIO);
  m.write64(base + 0x10, 1, 2);
  m.write64(base + ALIAS + 0x10, 3, 4);
  const out: U64 = { lo: 0, hi: 0 };
  for (let round = 0; round < 3; round++) {
    m.read64(base + 0x10, out);
    t.same(out, { lo: 1, hi: 2 });
    m.read64(base + ALIAS + 0x10, out);
    t.same(out, { lo: 3, hi: 4 });
    t.equal(m.read64Hi(base + 2 * ALIAS + 0x10), 0, 'untouched alias');
  }
  t.notOk(m.read64(base + 5 * ALIAS + 0x10, out), 'unbacked address in the slot of a cached page');
  t.same(out, { lo: 0, hi: 0 });
  t.equal(m.pageForRead(base + 8 * ALIAS), null, 'MMIO in the slot of a cached page');
  t.equal(m.pageForRead(base - ALIAS), null, 'below the region');
  t.equal(m.pageForRead(-8), null, 'negative');
  t.equal(m.pageForRead(Number.NaN), null, 'NaN');
  m.read64(base + 0x10, out);
  t.same(out, { lo: 1, hi: 2 }, 'still cached correctly after the misses');
});

t.test('a region added later is readable at an address that missed before', async (t) => {
  const m = new PhysMem(SPARSE);
  m.addRegion(0x4000_0000, ALIAS);
  t.equal(m.pageForRead(0x4000_0000 + ALIAS), null);
  m.addRegion(0x4000_0000 + ALIAS, ALIAS);
  m.write32(0x4000_0000 + ALIAS + 4, 0xfeed_f00d);
  t.equal(m.read32(0x4000_0000 + ALIAS + 4), 0xfeed_f00d);
});

t.test('writes through pageForWrite (host copies) are seen by cached readers', async (t) => {
  const m = new PhysMem(SPARSE);
  m.addRegion(0x8000_0000, 0x10_0000);
  t.equal(m.read32(0x8000_5000), 0);
  const p = m.pageForWrite(0x8000_5000)!;
  p[pageWordIndex(0x8000_5ffc)] = 0xdead_beef;
  t.equal(m.read32(0x8000_5ffc), 0xdead_beef);
});

t.test('a fractional address reads the page and word of its integer part, cached or not', async (t) => {
  const m = new PhysMem(SPARSE);
  m.addRegion(0x4000_0000, 0x10_0000);
  m.write64(0x4000_2008, 0xaaaa_5555, 0x1111_2222);
  for (let i = 0; i < 2; i++) {
    t.equal(m.read64Lo(0x4000_2008 + 0.5), 0xaaaa_5555);
    t.equal(m.read64Hi(0x4000_2008), 0x1111_2222);
  }
});

t.test('pageWordIndex is pa[11:2] for addresses up to 52 bits', async (t) => {
  t.equal(pageWordIndex(0), 0);
  t.equal(pageWordIndex(0xffc), 0x3ff);
  t.equal(pageWordIndex(2 ** 51 + 0xff8), 0x3fe);
  t.equal(pageWordIndex(2 ** 52 - 8), 0x3fe);
  t.equal(pageWordIndex(0x1_0000_1004), 1);
});

t.test('property: reads always match a plain model across colliding pages', async (t) => {
  const base = 2 ** 44;
  // Four pages in one slot, two in another, plus an unbacked page in the first slot.
  const pages = [0, ALIAS, 2 * ALIAS, 3 * ALIAS, 0x1000, ALIAS + 0x1000, 5 * ALIAS];
  const op = fc.record({
    write: fc.boolean(),
    page: fc.integer({ min: 0, max: pages.length - 1 }),
    word: fc.integer({ min: 0, max: 511 }),
    lo: fc.nat({ max: 0xffff_ffff }),
    hi: fc.nat({ max: 0xffff_ffff }),
  });
  fc.assert(
    fc.property(fc.array(op, { maxLength: 60 }), (ops) => {
      const m = new PhysMem(SPARSE);
      m.addRegion(base, 4 * ALIAS);
      const model = new Map<number, [number, number]>();
      const out: U64 = { lo: 0, hi: 0 };
      for (const o of ops) {
        const pa = base + pages[o.page]! + o.word * 8;
        const ram = pages[o.page]! < 4 * ALIAS;
        if (o.write) {
          if (m.write64(pa, o.lo, o.hi) !== ram) return false;
          if (ram) model.set(pa, [o.lo, o.hi]);
        } else {
          if (m.read64(pa, out) !== ram) return false;
          const want = model.get(pa) ?? [0, 0];
          if (out.lo !== want[0] || out.hi !== want[1]) return false;
        }
      }
      return true;
    }),
    { numRuns: 300 },
  );
  t.pass('300 random read/write sequences agree with the model');
});
