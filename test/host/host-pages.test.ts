// The host page allocator hands out pages in ascending order, tracks struct page flags in typed arrays, and never
// reuses a hardware-poisoned page.
import t from 'tap';
import { PAGE_SIZE } from '../../src/arch/addr.js';
import { HostPages, PG_ALLOCATED, PG_HWPOISON } from '../../src/host/host-pages.js';

const A = 0x4000_0000;
const B = 0x1_0000_0000;

t.test('allocation is ascending across ranges; free pages are reused LIFO', async (t) => {
  const p = new HostPages([{ base: B, size: 2 * PAGE_SIZE }, { base: A, size: 2 * PAGE_SIZE }]);
  t.equal(p.nrPages, 4);
  t.same([p.allocPage(), p.allocPage(), p.allocPage()], [A, A + PAGE_SIZE, B]);
  p.freePage(A);
  t.equal(p.allocPage(), A);
  t.equal(p.allocPage(), B + PAGE_SIZE);
  t.equal(p.allocPage(), -1);
  t.equal(p.freePages, 0);
  t.equal(p.indexOf(B + PAGE_SIZE), 3);
  t.equal(p.paOf(3), B + PAGE_SIZE);
  t.equal(p.indexOf(0x1234_5000), -1);
});

t.test('claiming a specific page takes it off the free list', async (t) => {
  const p = new HostPages([{ base: A, size: 4 * PAGE_SIZE }]);
  t.ok(p.claimPage(A + PAGE_SIZE));
  t.notOk(p.claimPage(A + PAGE_SIZE), 'already allocated');
  t.notOk(p.claimPage(0x10_0000), 'not host RAM');
  t.equal(p.freePages, 3);
  t.same([p.allocPage(), p.allocPage(), p.allocPage(), p.allocPage()], [A, A + 2 * PAGE_SIZE, A + 3 * PAGE_SIZE, -1]);
  p.freePage(A + PAGE_SIZE);
  t.equal(p.allocPage(), A + PAGE_SIZE);
});

t.test('a poisoned page is never handed out again', async (t) => {
  const p = new HostPages([{ base: A, size: 2 * PAGE_SIZE }]);
  t.ok(p.markHwPoison(A));
  t.equal(p.freePages, 1);
  const x = p.allocPage();
  t.equal(x, A + PAGE_SIZE);
  p.markHwPoison(x);
  p.freePage(x);
  t.equal(p.flags[1], PG_HWPOISON);
  t.equal(p.allocPage(), -1);
  t.notOk(p.claimPage(A));
  t.notOk(p.markHwPoison(0));
});

t.test('freeing a free or pinned page is an emulator bug', async (t) => {
  const p = new HostPages([{ base: A, size: 2 * PAGE_SIZE }]);
  t.throws(() => p.freePage(A));
  const x = p.allocPage();
  p.pinCount[p.indexOf(x)] = 1;
  t.throws(() => p.freePage(x));
  t.equal(p.flags[0]! & PG_ALLOCATED, PG_ALLOCATED);
  t.throws(() => new HostPages([{ base: A + 1, size: PAGE_SIZE }]));
  t.throws(() => new HostPages([{ base: A, size: 2 * PAGE_SIZE }, { base: A + PAGE_SIZE, size: PAGE_SIZE }]));
});
