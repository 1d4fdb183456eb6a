// pin_user_pages() semantics (mm/gup.c) and the migration paths a long-term pin blocks (pkvm.md §6.4).
import t from 'tap';
import { PAGE_SIZE } from '../../src/arch/addr.js';
import { Err } from '../../src/arch/errno.js';
import { FOLL_HWPOISON, FOLL_LONGTERM, FOLL_WRITE, GupStats, MigrateReason, migratePage, pinUserPages, unpinUserPages } from '../../src/host/gup.js';
import { PG_DIRTY } from '../../src/host/host-pages.js';
import { VmaKind } from '../../src/host/vmm-mem.js';
import { GUEST_HVA, hostFixture } from './_machine.js';

const LONGTERM_W = FOLL_LONGTERM | FOLL_WRITE | FOLL_HWPOISON;

t.test('pinning faults pages in and raises their pin count', async (t) => {
  const fx = hostFixture();
  const out = new Float64Array(3);
  t.equal(pinUserPages(fx.mm, fx.host.ram, 0, GUEST_HVA, 3, LONGTERM_W, out, fx.host.gup), 3);
  t.equal(fx.host.gup.faultIns, 3);
  for (let i = 0; i < 3; i++) {
    t.equal(out[i], fx.mm.paOf(GUEST_HVA + i * PAGE_SIZE));
    t.equal(fx.host.pages.pinCount[fx.host.pages.indexOf(out[i]!)], 1);
  }
  t.equal(pinUserPages(fx.mm, fx.host.ram, 0, GUEST_HVA, 1, LONGTERM_W, out, fx.host.gup), 1);
  t.equal(fx.host.pages.pinCount[fx.host.pages.indexOf(out[0]!)], 2, 'pins stack');
});

t.test('errors: -EFAULT unmapped or read-only with FOLL_WRITE; -EHWPOISON only with FOLL_HWPOISON; partial counts', async (t) => {
  const fx = hostFixture({ guestPages: 4 });
  const out = new Float64Array(8);
  const g = new GupStats();
  t.equal(pinUserPages(fx.mm, fx.host.ram, 0, 0x1000, 1, LONGTERM_W, out, g), Err.EFAULT);
  t.equal(pinUserPages(fx.mm, fx.host.ram, 0, GUEST_HVA + 2 * PAGE_SIZE, 4, LONGTERM_W, out, g), 2, 'stops at the end of the VMA');
  fx.mm.mmap(0x1000_0000, PAGE_SIZE, VmaKind.ANON, { writable: false });
  t.equal(pinUserPages(fx.mm, fx.host.ram, 0, 0x1000_0000, 1, FOLL_WRITE, out, g), Err.EFAULT);
  t.equal(pinUserPages(fx.mm, fx.host.ram, 0, 0x1000_0000, 1, 0, out, g), 1);
  fx.mm.poison(GUEST_HVA);
  t.equal(pinUserPages(fx.mm, fx.host.ram, 0, GUEST_HVA, 1, LONGTERM_W, out, g), Err.EHWPOISON);
  t.equal(pinUserPages(fx.mm, fx.host.ram, 0, GUEST_HVA, 1, FOLL_WRITE, out, g), Err.EFAULT);
  while (fx.host.pages.allocPage() >= 0);
  t.equal(pinUserPages(fx.mm, fx.host.ram, 0, GUEST_HVA + PAGE_SIZE, 1, LONGTERM_W, out, g), Err.ENOMEM);
});

t.test('unpin drops the count, marks dirty on request, and frees an unmapped page at zero', async (t) => {
  const fx = hostFixture();
  const out = new Float64Array(1);
  pinUserPages(fx.mm, fx.host.ram, 0, GUEST_HVA, 1, LONGTERM_W, out, fx.host.gup);
  const idx = fx.host.pages.indexOf(out[0]!);
  unpinUserPages(fx.mm, out, 1, true, fx.host.gup);
  t.equal(fx.host.pages.pinCount[idx], 0);
  t.ok(fx.host.pages.flags[idx]! & PG_DIRTY);
  t.ok(fx.host.pages.isAllocated(out[0]!), 'still mapped by the VMA');
  pinUserPages(fx.mm, fx.host.ram, 0, GUEST_HVA, 1, LONGTERM_W, out, fx.host.gup);
  fx.mm.munmap(GUEST_HVA, PAGE_SIZE);
  t.ok(fx.host.pages.isAllocated(out[0]!), 'pinned after munmap');
  unpinUserPages(fx.mm, out, 1, false, fx.host.gup);
  t.notOk(fx.host.pages.isAllocated(out[0]!));
  t.throws(() => unpinUserPages(fx.mm, out, 1, false, fx.host.gup), 'unpinning an unpinned page is an emulator bug');
});

for (const reason of [MigrateReason.NUMA_BALANCE, MigrateReason.COMPACTION, MigrateReason.KSM]) {
  t.test(`${reason}: fails on a pinned page (counted) after notifying; moves an unpinned one`, async (t) => {
    const fx = hostFixture();
    const out = new Float64Array(2);
    pinUserPages(fx.mm, fx.host.ram, 0, GUEST_HVA, 2, LONGTERM_W, out, fx.host.gup);
    unpinUserPages(fx.mm, out.subarray(1), 1, false, fx.host.gup);
    fx.mem.write64(out[1]!, 0x1234_5678, 0x9abc);
    const g = fx.host.gup;
    t.equal(migratePage(fx.mm, fx.host.ram, 0, GUEST_HVA, reason, g), Err.EBUSY);
    t.equal(g.failedPinned[reason], 1);
    t.equal(fx.mm.paOf(GUEST_HVA), out[0], 'the pinned page did not move');
    t.equal(fx.kvm.notifier.counts[reason], 1, 'the notifier fired anyway (and pKVM ignored it)');
    t.equal(migratePage(fx.mm, fx.host.ram, 0, GUEST_HVA + PAGE_SIZE, reason, g), 0);
    t.equal(g.succeeded[reason], 1);
    t.equal(g.attempts[reason], 2);
    if (reason !== MigrateReason.KSM) {
      const moved = fx.mm.paOf(GUEST_HVA + PAGE_SIZE);
      t.not(moved, out[1]);
      t.same([fx.mem.read64Lo(moved), fx.mem.read64Hi(moved)], [0x1234_5678, 0x9abc], 'data copied');
      t.notOk(fx.host.pages.isAllocated(out[1]!), 'old page freed');
    }
  });
}

t.test('a FOLL_WRITE pin of a KSM page breaks copy-on-write: a private copy is pinned', async (t) => {
  const fx = hostFixture();
  const out = new Float64Array(1);
  pinUserPages(fx.mm, fx.host.ram, 0, GUEST_HVA, 1, 0, out, fx.host.gup);
  unpinUserPages(fx.mm, out, 1, false, fx.host.gup);
  const ksm = out[0]!;
  fx.mem.write64(ksm, 77, 0);
  t.equal(migratePage(fx.mm, fx.host.ram, 0, GUEST_HVA, MigrateReason.KSM, fx.host.gup), 0);
  t.equal(pinUserPages(fx.mm, fx.host.ram, 0, GUEST_HVA, 1, LONGTERM_W, out, fx.host.gup), 1);
  t.not(out[0], ksm);
  t.equal(fx.mem.read64Lo(out[0]!), 77);
  t.equal(fx.host.gup.cowBreaks, 1);
});

t.test('migration of an unpopulated or unmapped address is -EFAULT', async (t) => {
  const fx = hostFixture();
  t.equal(migratePage(fx.mm, fx.host.ram, 0, GUEST_HVA, MigrateReason.COMPACTION, fx.host.gup), Err.EFAULT);
  t.equal(migratePage(fx.mm, fx.host.ram, 0, 0, MigrateReason.COMPACTION, fx.host.gup), Err.EFAULT);
});
