// The host side of struct kvm_hyp_memcache: pages linked through their first word, {head, nr_pages} in a host
// struct EL2 reads (pkvm.md §5.1–§5.2).
import t from 'tap';
import { PAGE_SIZE } from '../../src/arch/addr.js';
import { Err } from '../../src/arch/errno.js';
import { HostPages } from '../../src/host/host-pages.js';
import { HostRam } from '../../src/host/host-ram.js';
import { KernelLog } from '../../src/host/klog.js';
import { HostMemcache } from '../../src/host/memcache.js';
import { PhysMem } from '../../src/mem/phys-mem.js';
import { FakeHostS2 } from './_env.js';

const RAM = 0x4000_0000;

function setup(pages = 8) {
  const mem = new PhysMem();
  mem.addRegion(RAM, pages * PAGE_SIZE);
  const s2 = new FakeHostS2();
  const log = new KernelLog();
  const ram = new HostRam(mem, s2, log);
  const hp = new HostPages([{ base: RAM, size: pages * PAGE_SIZE }]);
  const structPa = hp.allocPage();
  return { mem, s2, log, ram, hp, mc: new HostMemcache(ram, structPa + 0x10), structPa };
}

t.test('push writes the old head into the page; pop follows the links', async (t) => {
  const { mem, mc, hp } = setup();
  const a = hp.allocPage();
  const b = hp.allocPage();
  t.ok(mc.push(0, a));
  t.ok(mc.push(0, b));
  t.equal(mc.head(0), b);
  t.equal(mc.nrPages(0), 2);
  t.equal(mem.read64Lo(b), a, 'the first word of each page links to the next');
  t.equal(mem.read64Lo(mc.fieldPa + 8), 2, 'nr_pages follows head');
  t.same([mc.pop(0), mc.pop(0), mc.pop(0)], [b, a, -1]);
});

t.test('top-up allocates up to the minimum and keeps partial progress on -ENOMEM', async (t) => {
  const { mc, hp } = setup(4);
  t.equal(mc.topup(0, 2, hp), 0);
  t.equal(mc.nrPages(0), 2);
  t.equal(mc.topup(0, 2, hp), 0, 'already enough');
  t.equal(mc.topup(0, 5, hp), Err.ENOMEM);
  t.equal(mc.nrPages(0), 3);
  t.equal(mc.free(0, hp), 3);
  t.equal(hp.freePages, 3);
});

t.test('a refused store is an oops and -EFAULT; the page goes back', async (t) => {
  const { mc, hp, s2, log, structPa } = setup();
  s2.deny.add(structPa / PAGE_SIZE);
  const free = hp.freePages;
  t.equal(mc.topup(0, 1, hp), Err.EFAULT);
  t.equal(hp.freePages, free);
  t.ok(log.oopses.length > 0);
});

t.test('freeing a page the host never allocated is warned, not trusted', async (t) => {
  const { mc, hp, log } = setup();
  mc.push(0, RAM + 7 * PAGE_SIZE);
  t.equal(mc.free(0, hp), 0);
  t.equal(log.warnings.length, 1);
});
