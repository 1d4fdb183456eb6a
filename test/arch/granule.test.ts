import t from 'tap';
import {
  granuleShift, granuleStride, levelShift, levelSize, entriesPerTable, levelIndex, blockAllowed, minLevel,
  type Granule,
} from '../../src/arch/granule.js';

const GRANULES: Granule[] = ['4k', '16k', '64k'];

t.test('level geometry (Arm ARM D8.2, arm-s2.md §3.1)', async (t) => {
  t.same(GRANULES.map(granuleShift), [12, 14, 16]);
  t.same(GRANULES.map(granuleStride), [9, 11, 13]);
  t.same(GRANULES.map(entriesPerTable), [512, 2048, 8192]);
  // Leaf sizes per level.
  t.same([0, 1, 2, 3].map((l) => levelShift('4k', l)), [39, 30, 21, 12]);
  t.equal(levelShift('4k', -1), 48);
  t.same([1, 2, 3].map((l) => levelShift('16k', l)), [36, 25, 14]);
  t.same([1, 2, 3].map((l) => levelShift('64k', l)), [42, 29, 16]);
  t.equal(levelSize('4k', 2), 2 * 1024 * 1024);
  t.equal(levelSize('64k', 2), 512 * 1024 * 1024);
});

t.test('levelIndex picks IPA[shift+S-1:shift]', async (t) => {
  t.equal(levelIndex('4k', 3, 0x1234_5000), 0x145);
  t.equal(levelIndex('4k', 0, 2 ** 47 + 2 ** 39), 257);
  t.equal(levelIndex('64k', 2, 2 ** 41 + 2 ** 29 * 3), 4096 + 3);
});

t.test('blockAllowed (ASL BlockDescSupported)', async (t) => {
  const rows: [Granule, number, boolean, boolean, boolean][] = [
    ['4k', -1, true, true, false], ['4k', 0, false, true, false], ['4k', 0, true, true, true],
    ['4k', 1, false, false, true], ['4k', 2, false, false, true], ['4k', 3, false, false, false],
    ['16k', 0, true, true, false], ['16k', 1, false, true, false], ['16k', 1, true, true, true],
    ['16k', 2, false, false, true], ['16k', 3, true, true, false],
    ['64k', 1, false, false, false], ['64k', 1, false, true, true], ['64k', 2, false, false, true],
    ['64k', 3, false, true, false],
  ];
  for (const [g, l, ds, pa52, want] of rows) t.equal(blockAllowed(g, l, ds, pa52), want, `${g} L${l} ds=${ds} pa52=${pa52}`);
  t.equal(minLevel('4k', true), -1);
  t.equal(minLevel('4k', false), 0);
  t.equal(minLevel('16k', false), 0);
  t.equal(minLevel('64k', false), 1);
});
