/**
 * The `stage2_page_tables` dump (arch/arm64/kvm/ptdump.c over arch/arm64/mm/ptdump.c `note_page()`): header,
 * coalesced runs of equal level and masked attributes, column widths, the attribute columns, and goldens for the
 * 4K, 16K and 64K granules (`UPDATE_GOLDEN=1` rewrites fixtures/golden/*.txt).
 */
import t from 'tap';
import { readFileSync, writeFileSync } from 'node:fs';
import { dumpStage2, dumpStage2Raw } from '../../src/pgtable/dump.js';
import { stage2Map, stage2SetOwner } from '../../src/pgtable/stage2.js';
import type { Granule } from '../../src/arch/granule.js';
import { makeEnv, prot, type Env } from './helpers/env.js';

const IPA = 0x8000_0000;
const PA = 0x4000_0000;

function map(env: Env, ipa: number, size: number, pa: number, p: { lo: number; hi: number }) {
  t.equal(stage2Map(env.pgt, ipa, size, pa, p.lo, p.hi, env.mc, 0), 0);
}

t.test('a 2M block, then 4K pages: exact lines, widths and columns', async (t) => {
  const env = makeEnv({ iaBits: 40 });
  map(env, IPA, 0x20_0000, PA, prot('RW'));
  map(env, IPA + 0x40_0000, 0x1000, PA, prot('RWX'));
  map(env, IPA + 0x40_1000, 0x1000, PA, prot('R', { device: true }));
  const lines = dumpStage2(env.pgt).split('\n');
  t.equal(lines[0], '---[ Guest IPA ]---');
  t.same(lines.slice(1, 4), [
    '0x0000000000000000-0x0000000080000000           2G 1',
    '0x0000000080000000-0x0000000080200000           2M 2   R W PXNUXN AF BLK',
    '0x0000000080200000-0x0000000080400000           2M 2',
  ]);
  t.same(lines.slice(4, 8), [
    '0x0000000080400000-0x0000000080401000           4K 3   R W px ux  AF    ',
    '0x0000000080401000-0x0000000080402000           4K 3   R   PXNUXN AF    ',
    '0x0000000080402000-0x0000000080600000        2040K 3',
    '0x0000000080600000-0x00000000c0000000        1018M 2',
  ]);
  t.notOk(lines.some((l) => l.includes('Guest IPA') && l !== lines[0]), 'one header only');
});

t.test('the final run is never printed; empty entries of one level coalesce (quirk)', async (t) => {
  const env = makeEnv({ iaBits: 40 });
  const text = dumpStage2(env.pgt);
  t.equal(text, '---[ Guest IPA ]---\n', 'an empty table prints only the header (the final run is never flushed)');
  map(env, 0, 0x1000, PA, prot('RW'));
  const lines = dumpStage2(env.pgt).split('\n');
  t.same(lines.slice(1, 4), [
    '0x0000000000000000-0x0000000000001000           4K 3   R W PXNUXN AF    ',
    '0x0000000000001000-0x0000000000200000        2044K 3',
    '0x0000000000200000-0x0000000040000000        1022M 2',
  ]);
  t.equal(lines[lines.length - 1], '', 'ends with a newline');
  t.notOk(lines.some((l) => l.startsWith('0x0000000040000000')), 'the last run [1G, 1T) is not printed (quirk)');
});

t.test('owner annotations and the LOCKED marker show as F runs only when masked bits are set', async (t) => {
  const env = makeEnv({ iaBits: 40 });
  t.equal(stage2SetOwner(env.pgt, IPA, 0x2000, env.mc, 1), 0); // bits[9:2] = 1: outside the mask
  t.equal(stage2SetOwner(env.pgt, IPA + 0x2000, 0x1000, env.mc, 0x30), 0); // bits 6, 7 (S2AP_R/W positions)
  const lines = dumpStage2(env.pgt).split('\n');
  t.ok(lines.includes('0x0000000080000000-0x0000000080002000           8K 3'), 'owner 1 prints as plain invalid');
  t.ok(lines.includes('0x0000000080002000-0x0000000080003000           4K 3 F R W px ux        '), 'owner 0x30');
});

t.test('dumpStage2Raw reads the same table from memory, pgd and geometry', async (t) => {
  const env = makeEnv({ iaBits: 40 });
  map(env, IPA, 0x40_0000, PA, prot('RWX'));
  t.equal(
    dumpStage2Raw(env.mem, env.pgt.pgd, { granule: '4k', iaBits: 40, startLevel: 1 }),
    dumpStage2(env.pgt),
  );
  t.equal(dumpStage2Raw(env.mem, env.pgt.pgd, { granule: '4k', iaBits: 30, startLevel: 3 }), '', 'start level 3');
});

/** The same replayed layout for every granule: pages, blocks, RO, X, device, SW bits, an annotation. */
function golden(granule: Granule, iaBits: number, block: number) {
  const env = makeEnv({ granule, iaBits, poolPages: 256 });
  const page = granule === '4k' ? 0x1000 : granule === '16k' ? 0x4000 : 0x1_0000;
  const base = 0x4000_0000;
  map(env, base, 2 * block, 0x4000_0000 + 0x4000_0000, prot('RWX')); // two blocks
  map(env, base + 2 * block, 3 * page, 0x5000_0000, prot('RW'));
  map(env, base + 2 * block + 3 * page, page, 0x5100_0000, prot('R'));
  map(env, base + 2 * block + 4 * page, 2 * page, 0x5200_0000, prot('RW', { sw0: true }));
  map(env, base + 3 * block, page, 0x6000_0000, prot('RW', { device: true }));
  t.equal(stage2SetOwner(env.pgt, base + 3 * block + 2 * page, page, env.mc, 0x10), 0);
  map(env, 0, page, 0x7000_0000, prot('RX'));
  return dumpStage2(env.pgt);
}

for (const [granule, iaBits, block] of [
  ['4k', 40, 0x20_0000],
  ['16k', 40, 0x200_0000],
  ['64k', 42, 0x2000_0000],
] as const) {
  t.test(`golden: ${granule} granule, ${iaBits}-bit IPA`, async (t) => {
    const text = golden(granule, iaBits, block);
    const file = new URL(`../../fixtures/golden/stage2-${granule}.txt`, import.meta.url);
    if (process.env.UPDATE_GOLDEN === '1') writeFileSync(file, text);
    t.equal(text, readFileSync(file, 'utf8'));
    const sizes = text.split('\n').filter((l) => l.startsWith('0x')).map((l) => l.slice(40, 50).trim());
    const pageName = granule === '4k' ? '4K' : granule === '16k' ? '16K' : '64K';
    t.ok(sizes.includes(pageName), `has a ${pageName} run`);
    t.ok(text.includes(' BLK'), 'has blocks');
  });
}
