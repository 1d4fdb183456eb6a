import t from 'tap';
import fc from 'fast-check';
import { FLAT_MAX_BYTES, PhysMem, RegionKind, pageWordIndex, type DescWriteObserver, type U64 } from '../../src/mem/phys-mem.js';

const MiB = 2 ** 20;

t.test('a RAM region within the limit is flat; larger regions and MMIO are not', async (t) => {
  const m = new PhysMem({ flatMaxBytes: 16 * MiB });
  const a = m.addRegion(0x4000_0000, 16 * MiB);
  const b = m.addRegion(0x8000_0000, 32 * MiB);
  const c = m.addRegion(0x9000_0000, MiB, RegionKind.MMIO);
  t.equal(a.flat?.length, (16 * MiB) / 4);
  t.equal(a.written?.length, (16 * MiB) / 4096);
  t.equal(b.flat, null, 'above the limit: sparse');
  t.equal(c.flat, null, 'MMIO has no backing');
  t.equal(new PhysMem().addRegion(0, 64 * MiB).flat, null, 'default: sparse');
  t.equal(new PhysMem({ flatMaxBytes: FLAT_MAX_BYTES }).addRegion(0, 64 * MiB).flat?.length, (64 * MiB) / 4);
  t.equal(FLAT_MAX_BYTES, 2 ** 32);
  t.throws(() => new PhysMem({ flatMaxBytes: 2 ** 33 }), 'a limit above 4 GiB is API misuse');
  t.throws(() => new PhysMem({ flatMaxBytes: -1 }));
});

t.test('the window follows the flat region last used; sparse and unbacked accesses leave it', async (t) => {
  const m = new PhysMem({ flatMaxBytes: 16 * MiB });
  m.addRegion(0x4000_0000, 16 * MiB);
  m.addRegion(0x5000_0000, 16 * MiB);
  m.addRegion(0x8000_0000, 32 * MiB);
  t.equal(m.winBytes, 0, 'no window before the first access');
  t.ok(m.write64(0x4000_0008, 1, 2));
  t.equal(m.winBase, 0x4000_0000);
  t.ok(m.write64(0x5000_0010, 3, 4));
  t.equal(m.winBase, 0x5000_0000);
  t.ok(m.write64(0x8000_0010, 5, 6), 'sparse region');
  t.notOk(m.write64(0x7000_0000, 7, 8), 'unbacked');
  t.equal(m.winBase, 0x5000_0000, 'still the last flat region');
  const out: U64 = { lo: 0, hi: 0 };
  t.ok(m.read64(0x4000_0008, out));
  t.same(out, { lo: 1, hi: 2 });
  t.equal(m.winBase, 0x4000_0000);
  t.equal(m.win[2], 1, 'the walker reads words at (pa − winBase) / 4');
  t.ok(m.selectWindow(0x5000_0000));
  t.notOk(m.selectWindow(0x8000_0000), 'sparse RAM is not a window');
  t.notOk(m.selectWindow(0x7000_0000));
  t.equal(m.winBase, 0x5000_0000);
  t.equal(m.touchedPages, 3);
});

t.test('flat pages: untouched reads are zero and allocate nothing; views are live', async (t) => {
  const m = new PhysMem({ flatMaxBytes: FLAT_MAX_BYTES });
  m.addRegion(0x4000_0000, MiB);
  const out: U64 = { lo: 7, hi: 7 };
  t.ok(m.read64(0x4000_2008, out));
  t.same(out, { lo: 0, hi: 0 });
  m.zero(0x4000_0000, MiB);
  t.equal(m.touchedPages, 0, 'zeroing untouched flat pages marks nothing');
  const view = m.pageForRead(0x4000_2000)!;
  t.ok(m.write64(0x4000_2008, 0x1234_5678, 0x9abc_def0));
  t.equal(view[pageWordIndex(0x4000_2008)], 0x1234_5678, 'a view taken before the write sees it');
  const w = m.pageForWrite(0x4000_3000)!;
  w[5] = 0xfeed;
  t.equal(m.read32(0x4000_3014), 0xfeed, 'writes through a view are seen by readers');
  t.equal(m.touchedPages, 2);
  m.zero(0x4000_2000, 0x2000);
  t.equal(m.read64Lo(0x4000_2008), 0);
  t.equal(m.read32(0x4000_3014), 0);
  m.fill32(0x4000_8000, 0x1000, 0xdead_beef);
  t.equal(m.read64Hi(0x4000_8ff8), 0xdead_beef);
  t.equal(m.touchedPages, 3);
  t.equal(m.pageForRead(0x4010_0000), null, 'past the end');
  t.equal(m.pageForWrite(0x3fff_f000), null, 'below the base');
});

/** One operation of the differential property. */
const op = fc.record({
  kind: fc.constantFrom('w64', 'desc', 'w32', 'w8', 'r64', 'r32', 'r8', 'zero', 'fill', 'view'),
  page: fc.integer({ min: 0, max: 9 }),
  word: fc.integer({ min: 0, max: 511 }),
  byte: fc.integer({ min: 0, max: 7 }),
  lo: fc.nat({ max: 0xffff_ffff }),
  hi: fc.nat({ max: 0xffff_ffff }),
});

t.test('property: flat and sparse backings behave identically (values, RAM-ness, touched pages, observer)', async (t) => {
  // Pages 0–3 in region A, 4–7 in region B (both flat in one memory), 8 MMIO, 9 unbacked.
  const A = 0x4000_0000;
  const B = 0x1_0000_0000 - 0x2000; // region B straddles the 4 GiB boundary
  const pageBase = [A, A + 0x1000, A + 0x2000, A + 0x3000, B, B + 0x1000, B + 0x2000, B + 0x3000, 0x9000_0000, 0xa000_0000];
  const build = (flatMaxBytes: number): { m: PhysMem; log: number[] } => {
    const m = new PhysMem({ flatMaxBytes });
    m.addRegion(A, 0x4000);
    m.addRegion(B, 0x4000);
    m.addRegion(0x9000_0000, 0x1000, RegionKind.MMIO);
    const log: number[] = [];
    const obs: DescWriteObserver = { onDescWrite: (pa, ol, oh, nl, nh) => void log.push(pa, ol, oh, nl, nh) };
    m.observer = obs;
    return { m, log };
  };
  fc.assert(
    fc.property(fc.array(op, { maxLength: 80 }), (ops) => {
      const f = build(FLAT_MAX_BYTES);
      const s = build(0);
      const of: U64 = { lo: 0, hi: 0 };
      const os: U64 = { lo: 0, hi: 0 };
      for (const o of ops) {
        const pa = pageBase[o.page]! + o.word * 8;
        const res = (m: PhysMem, out: U64): unknown => {
          switch (o.kind) {
            case 'w64':
              return m.write64(pa, o.lo, o.hi);
            case 'desc':
              return m.writeDesc(pa, o.lo, o.hi);
            case 'w32':
              return m.write32(pa + 4 * (o.byte & 1), o.lo);
            case 'w8':
              return m.write8(pa + o.byte, o.lo);
            case 'r64':
              return [m.read64(pa, out), out.lo, out.hi];
            case 'r32':
              return [m.read32(pa + 4 * (o.byte & 1)), m.read64Lo(pa), m.read64Hi(pa)];
            case 'r8':
              return m.read8(pa + o.byte);
            case 'zero':
              m.zero(pageBase[o.page]!, 0x1000);
              return null;
            case 'fill':
              m.fill32(pageBase[o.page]!, 0x1000, o.lo);
              return null;
            case 'view': {
              const p = m.pageForRead(pa);
              return p === null ? null : p[pageWordIndex(pa)];
            }
          }
        };
        const a = JSON.stringify(res(f.m, of));
        const b = JSON.stringify(res(s.m, os));
        if (a !== b) throw new Error(`${o.kind} at 0x${pa.toString(16)}: flat ${a}, sparse ${b}`);
        if (f.m.touchedPages !== s.m.touchedPages) throw new Error(`touched ${f.m.touchedPages} vs ${s.m.touchedPages}`);
      }
      return JSON.stringify(f.log) === JSON.stringify(s.log);
    }),
    { numRuns: 300 },
  );
  t.pass('300 random operation sequences agree');
});
