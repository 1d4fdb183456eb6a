import t from 'tap';
import { PAGE_SIZE } from '../../src/arch/addr.js';
import { Err } from '../../src/arch/errno.js';
import { HOST_VCPU } from '../../src/arch/smccc.js';
import { hostDonateHyp } from '../../src/el2/mem-protect.js';
import { HypMemcache, popHypMemcache, pushHypMemcache, refillMemcache } from '../../src/el2/memcache.js';
import { PageState } from '../../src/el2/page-state.js';
import { allocHostPages, bootMachine, CARVEOUT_BASE, get64, put64, type TestMachine } from './helpers/machine.js';

/** Builds a host memcache at `mcPa` whose list, from the head, is `pages`. */
function hostList(m: TestMachine, mcPa: number, pages: number[]): void {
  for (let i = 0; i < pages.length; i++) put64(m, pages[i]!, i + 1 < pages.length ? pages[i + 1]! : 0);
  put64(m, mcPa, pages[0] ?? 0);
  put64(m, mcPa + 8, pages.length);
}

t.test('push/pop thread pages through their first word (LIFO)', (t) => {
  const m = bootMachine();
  const mc = new HypMemcache();
  const a = allocHostPages(m);
  const b = allocHostPages(m);
  pushHypMemcache(m.mem, mc, a);
  pushHypMemcache(m.mem, mc, b);
  t.equal(get64(m, b), a, 'b links to a');
  t.equal(popHypMemcache(m.mem, mc), b);
  t.equal(popHypMemcache(m.mem, mc), a);
  t.equal(popHypMemcache(m.mem, mc), -1);
  t.equal(mc.nrPages, 0);
  t.end();
});

t.test('refillMemcache', (t) => {
  t.test('admits host pages by donation until the minimum and writes the host struct back', (t) => {
    const m = bootMachine();
    const vcpu = allocHostPages(m);
    const pages = [allocHostPages(m), allocHostPages(m), allocHostPages(m)];
    hostList(m, vcpu + HOST_VCPU.MC_HEAD, pages);
    const mc = new HypMemcache();
    t.equal(refillMemcache(m.mem, mc, 2, vcpu, (p) => hostDonateHyp(m.hyp, p, 1)), 0);
    t.equal(mc.nrPages, 2);
    t.equal(m.hyp.hostState(pages[0]!), PageState.NOPAGE);
    t.equal(m.hyp.hypState(pages[1]!), PageState.OWNED);
    t.equal(m.hyp.hostState(pages[2]!), PageState.OWNED, 'third page left with the host');
    t.equal(get64(m, vcpu + HOST_VCPU.MC_HEAD), pages[2]);
    t.equal(get64(m, vcpu + HOST_VCPU.MC_NR), 1);
    t.same(m.hyp.warnings, []);
    t.end();
  });
  t.test('stops with -ENOMEM at the first page the host does not own, keeping what was admitted', (t) => {
    const m = bootMachine();
    const vcpu = allocHostPages(m);
    const good = allocHostPages(m);
    const bad = CARVEOUT_BASE + 5 * PAGE_SIZE; // a hypervisor page
    const after = allocHostPages(m);
    hostList(m, vcpu + HOST_VCPU.MC_HEAD, [good, bad, after]);
    const mc = new HypMemcache();
    t.equal(refillMemcache(m.mem, mc, 3, vcpu, (p) => hostDonateHyp(m.hyp, p, 1)), Err.ENOMEM);
    t.equal(mc.nrPages, 1);
    t.equal(mc.head, good);
    t.equal(get64(m, vcpu + HOST_VCPU.MC_HEAD), bad, 'host head now the refused page');
    t.equal(get64(m, vcpu + HOST_VCPU.MC_NR), 2);
    t.equal(m.hyp.hostState(after), PageState.OWNED, 'page after the bad one untouched');
    t.same(m.hyp.warnings, []);
    t.end();
  });
  t.test('returns -ENOMEM when the host offers too few pages', (t) => {
    const m = bootMachine();
    const vcpu = allocHostPages(m);
    hostList(m, vcpu + HOST_VCPU.MC_HEAD, [allocHostPages(m)]);
    const mc = new HypMemcache();
    t.equal(refillMemcache(m.mem, mc, 2, vcpu, (p) => hostDonateHyp(m.hyp, p, 1)), Err.ENOMEM);
    t.equal(mc.nrPages, 1);
    t.end();
  });
  t.test('survives a host nr_pages of 2^64 − 1 and a garbage head', (t) => {
    const m = bootMachine();
    const vcpu = allocHostPages(m);
    m.mem.write64(vcpu + HOST_VCPU.MC_HEAD, 0xffff_f123, 0xffff_ffff);
    m.mem.write64(vcpu + HOST_VCPU.MC_NR, 0xffff_ffff, 0xffff_ffff);
    const mc = new HypMemcache();
    t.equal(refillMemcache(m.mem, mc, 2, vcpu, (p) => hostDonateHyp(m.hyp, p, 1)), Err.ENOMEM);
    t.equal(mc.nrPages, 0);
    t.end();
  });
  t.end();
});
