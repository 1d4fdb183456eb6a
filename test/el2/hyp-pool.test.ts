import fc from 'fast-check';
import t from 'tap';
import { PAGE_SIZE } from '../../src/arch/addr.js';
import { getOrder, HypPool } from '../../src/el2/hyp-pool.js';
import { HYP_NO_ORDER, HypVmemmap } from '../../src/el2/vmemmap.js';
import { PhysMem, RegionKind } from '../../src/mem/phys-mem.js';

const BASE_PFN = 0x40000;

function setup(nrPages: number, reserved = 0): { pool: HypPool; vm: HypVmemmap; mem: PhysMem } {
  const mem = new PhysMem();
  mem.addRegion(BASE_PFN * PAGE_SIZE, 1024 * PAGE_SIZE, RegionKind.RAM);
  const vm = new HypVmemmap(BASE_PFN, 1024);
  const pool = new HypPool(vm, mem, BASE_PFN, nrPages, reserved);
  return { pool, vm, mem };
}

t.test('getOrder', (t) => {
  t.equal(getOrder(1), 0);
  t.equal(getOrder(PAGE_SIZE), 0);
  t.equal(getOrder(PAGE_SIZE + 1), 1);
  t.equal(getOrder(16 * PAGE_SIZE), 4);
  t.end();
});

t.test('HypPool', (t) => {
  t.test('holds every non-reserved page after init, reserved pages keep refcount 1', (t) => {
    const { pool, vm } = setup(64, 3);
    t.equal(pool.freePages, 61);
    t.equal(vm.pageCount(BASE_PFN), 1);
    t.equal(vm.pageCount(BASE_PFN + 3), 0);
    t.end();
  });
  t.test('allocates zeroed blocks with refcount 1 on the head, aligned to their order', (t) => {
    const { pool, vm, mem } = setup(64);
    mem.fill32((BASE_PFN + 8) * PAGE_SIZE, 8 * PAGE_SIZE, 0xdead_beef);
    pool.putPage(pool.allocPages(0)); // exercise the free path once
    const pfn = pool.allocPages(3);
    t.equal((pfn - BASE_PFN) % 8, 0);
    t.equal(vm.pageCount(pfn), 1);
    t.equal(pool.freePages, 56);
    t.equal(mem.read32(pfn * PAGE_SIZE + 4), 0);
    t.end();
  });
  t.test('returns -1 when no block is large enough', (t) => {
    const { pool } = setup(4);
    t.equal(pool.allocPages(3), -1);
    for (let i = 0; i < 4; i++) t.not(pool.allocPages(0), -1);
    t.equal(pool.allocPages(0), -1);
    t.end();
  });
  t.test('zeroes pages when they are freed (hyp_put_page)', (t) => {
    const { pool, mem } = setup(8);
    const pfn = pool.allocPages(0);
    mem.write32(pfn * PAGE_SIZE, 0x1234);
    pool.putPage(pfn);
    t.equal(mem.read32(pfn * PAGE_SIZE), 0);
    t.end();
  });
  t.test('keeps a page with extra references until the last put', (t) => {
    const { pool } = setup(8);
    const pfn = pool.allocPages(0);
    pool.getPage(pfn);
    pool.putPage(pfn);
    t.equal(pool.freePages, 7);
    pool.putPage(pfn);
    t.equal(pool.freePages, 8);
    t.end();
  });
  t.test('splitPage makes every page of a block independently freeable', (t) => {
    const { pool, vm } = setup(16);
    const pfn = pool.allocPages(2);
    pool.splitPage(pfn);
    for (let i = 0; i < 4; i++) t.equal(vm.pageCount(pfn + i), 1);
    pool.putPage(pfn + 2);
    t.equal(pool.freePages, 13);
    t.end();
  });
  t.test('inserts an external page without coalescing it', (t) => {
    const { pool, vm } = setup(8);
    const ext = BASE_PFN + 100;
    vm.refcount[vm.idx(ext)] = 1;
    vm.order[vm.idx(ext)] = HYP_NO_ORDER;
    pool.putPage(ext);
    t.equal(pool.freePages, 9);
    t.end();
  });
  t.test('property: any alloc/free sequence conserves pages and coalesces back to the initial state', (t) => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.boolean(), fc.integer({ min: 0, max: 3 }), fc.nat()), { maxLength: 60 }), (ops) => {
        const { pool } = setup(64);
        const held: { pfn: number; order: number }[] = [];
        let inUse = 0;
        for (const [alloc, order, pick] of ops) {
          if (alloc || held.length === 0) {
            const pfn = pool.allocPages(order);
            if (pfn >= 0) {
              held.push({ pfn, order });
              inUse += 2 ** order;
            }
          } else {
            const [h] = held.splice(pick % held.length, 1);
            pool.putPage(h!.pfn);
            inUse -= 2 ** h!.order;
          }
          if (pool.freePages + inUse !== 64) return false;
        }
        for (const h of held) pool.putPage(h.pfn);
        return pool.freePages === 64 && pool.allocPages(5) === BASE_PFN;
      }),
      { numRuns: 200 },
    );
    t.end();
  });
  t.end();
});
