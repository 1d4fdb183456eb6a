// The VMM's mm: VMAs with per-page typed-array state, munmap splitting, memslots mapping IPA ranges to HVAs.
import t from 'tap';
import { PAGE_SIZE } from '../../src/arch/addr.js';
import { Err } from '../../src/arch/errno.js';
import { HostPages, PG_MAPPED, PG_SWAPBACKED } from '../../src/host/host-pages.js';
import { PkvmMmuNotifier } from '../../src/host/mmu-notifier.js';
import { KVM_MEM_READONLY, Memslots, Mm, VmaKind } from '../../src/host/vmm-mem.js';

const RAM = 0x4000_0000;
const HVA = 0x10_0000_0000;

function mm(pages = 64): Mm {
  return new Mm(new HostPages([{ base: RAM, size: pages * PAGE_SIZE }]));
}

t.test('mmap validates and refuses overlaps', async (t) => {
  const m = mm();
  t.equal(m.mmap(HVA + 1, PAGE_SIZE, VmaKind.ANON), Err.EINVAL);
  t.equal(m.mmap(HVA, 0, VmaKind.ANON), Err.EINVAL);
  t.equal(m.mmap(HVA, 4 * PAGE_SIZE, VmaKind.ANON), 0);
  t.equal(m.mmap(HVA + 3 * PAGE_SIZE, PAGE_SIZE, VmaKind.ANON), Err.EEXIST);
  t.equal(m.findVma(HVA + 3 * PAGE_SIZE)?.start, HVA);
  t.equal(m.findVma(HVA + 4 * PAGE_SIZE), null);
});

t.test('a fixed backing claims its pages, with the right struct page flags per kind', async (t) => {
  const m = mm();
  t.equal(m.mmap(HVA, 2 * PAGE_SIZE, VmaKind.FILE, { backingPa: RAM + 8 * PAGE_SIZE }), 0);
  t.equal(m.paOf(HVA + PAGE_SIZE), RAM + 9 * PAGE_SIZE);
  const f = m.pages.flags[9]!;
  t.ok(f & PG_MAPPED);
  t.notOk(f & PG_SWAPBACKED, 'page cache is not swap-backed');
  t.equal(m.mmap(HVA + 0x10_0000, 2 * PAGE_SIZE, VmaKind.ANON, { backingPa: RAM + 9 * PAGE_SIZE }), Err.ENOMEM);
  t.notOk(m.pages.isAllocated(RAM + 10 * PAGE_SIZE), 'a failed claim releases what it took');
  t.equal(m.mmap(HVA + 0x10_0000, PAGE_SIZE, VmaKind.ANON, { backingPa: RAM + 1 }), Err.EINVAL);
});

t.test('munmap splits VMAs, frees unpinned pages and notifies', async (t) => {
  const m = mm();
  const n = new PkvmMmuNotifier();
  m.notifiers.push(n);
  m.mmap(HVA, 4 * PAGE_SIZE, VmaKind.ANON);
  const v = m.findVma(HVA)!;
  for (let i = 0; i < 4; i++) m.faultIn(v, i);
  const pa1 = m.paOf(HVA + PAGE_SIZE);
  const pa2 = m.paOf(HVA + 2 * PAGE_SIZE);
  m.pages.pinCount[m.pages.indexOf(pa2)] = 1;
  t.equal(m.munmap(HVA + PAGE_SIZE, 2 * PAGE_SIZE), 0);
  t.equal(m.vmas.length, 2);
  t.same(m.vmas.map((x) => [x.start, x.end]), [[HVA, HVA + PAGE_SIZE], [HVA + 3 * PAGE_SIZE, HVA + 4 * PAGE_SIZE]]);
  t.equal(m.paOf(HVA + PAGE_SIZE), -1);
  t.notOk(m.pages.isAllocated(pa1));
  t.ok(m.pages.isAllocated(pa2), 'pinned page survives munmap');
  t.equal(n.counts.unmap, 1);
  t.equal(n.pages, 2);
  t.equal(m.munmap(HVA, 3), Err.EINVAL);
});

t.test('faultIn returns -ENOMEM when the host is out of pages', async (t) => {
  const m = mm(1);
  m.mmap(HVA, 2 * PAGE_SIZE, VmaKind.ANON);
  const v = m.findVma(HVA)!;
  t.equal(m.faultIn(v, 0), RAM);
  t.equal(m.faultIn(v, 0), RAM, 'already populated');
  t.equal(m.faultIn(v, 1), Err.ENOMEM);
  t.equal(m.poison(0), Err.EFAULT);
});

t.test('memslots: lookup, HVA translation, read-only flag, overlap and delete', async (t) => {
  const s = new Memslots();
  t.equal(s.set(0, 0x8000_0000, 16 * PAGE_SIZE, HVA), 0);
  t.equal(s.set(1, 0x8000_f000, PAGE_SIZE, HVA), Err.EEXIST);
  t.equal(s.set(1, 0x9000_0000, PAGE_SIZE, HVA + 0x1000_0000, KVM_MEM_READONLY), 0);
  t.equal(s.set(2, 0x123, PAGE_SIZE, HVA), Err.EINVAL);
  const slot = s.find(0x8000_3000 / PAGE_SIZE);
  t.equal(s.hvaOf(slot, 0x8000_3000 / PAGE_SIZE), HVA + 3 * PAGE_SIZE);
  t.notOk(s.isReadonly(slot));
  t.ok(s.isReadonly(s.find(0x9000_0000 / PAGE_SIZE)));
  t.equal(s.find(0x7000_0000 / PAGE_SIZE), -1);
  t.equal(s.set(0, 0, 0, 0), 0, 'size 0 deletes');
  t.equal(s.count, 1);
  t.equal(s.set(1, 0xa000_0000, PAGE_SIZE, HVA), 0, 'replacing a slot moves it');
  t.equal(s.find(0x9000_0000 / PAGE_SIZE), -1);
});
