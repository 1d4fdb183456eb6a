/**
 * The hypervisor's stage-1 table (`kvm_pgtable_hyp_*`, arch/arm64/kvm/hyp/pgtable.c): EL2 leaf attributes
 * (`hyp_set_prot_attr`), SW bits carrying the hyp page state, map/unmap/destroy with refcounts and EL2 TLBIs.
 */
import t from 'tap';
import { Err } from '../../src/arch/errno.js';
import { DESC_TYPE_LO, DESC_VALID_LO, S2_AF_LO, SW0_HI, SW1_HI } from '../../src/arch/desc.js';
import { PhysMem } from '../../src/mem/phys-mem.js';
import {
  KVM_PTE_LEAF_ATTR_HI_S1_XN,
  KVM_PTE_LEAF_ATTR_LO_S1_AP_RO,
  KVM_PTE_LEAF_ATTR_LO_S1_AP_RW,
  MT_DEVICE_nGnRE,
  MT_NORMAL,
  hypSetProtAttr,
  kvmPgtableHypDestroy,
  kvmPgtableHypInit,
  kvmPgtableHypMap,
  kvmPgtableHypPteProt,
  kvmPgtableHypUnmap,
} from '../../src/pgtable/hyp.js';
import { newKvmPgtable, warningList, type Halves } from '../../src/pgtable/stage2.js';
import { PgtPagePool } from '../../src/pgtable/test-pool.js';
import type { HypTlbMaintenance } from '../../src/pgtable/tlb-ops.js';
import { TLBI_TTL_UNKNOWN } from '../../src/pgtable/tlb-ops.js';
import { PAGE_HYP, PAGE_HYP_DEVICE, PAGE_HYP_EXEC, PAGE_HYP_RO, newLeafOut } from '../../src/pgtable/types.js';
import { kvmPgtableGetLeaf } from '../../src/pgtable/walk.js';
import { kvmPteToPhys } from '../../src/pgtable/pte.js';
import { prot } from './helpers/env.js';

class RecordingHypTlb implements HypTlbMaintenance {
  readonly ops: string[] = [];
  vae2is(va: number, level: number): void {
    this.ops.push(`vae2is(0x${va.toString(16)},${level})`);
  }
  vale2is(va: number, level: number): void {
    this.ops.push(`vale2is(0x${va.toString(16)},${level})`);
  }
  dsb(): void {
    this.ops.push('dsb');
  }
  isb(): void {
    this.ops.push('isb');
  }
}

const VA = 0x8000_0000_0000; // a hyp VA in a 48-bit space
const K4 = 0x1000;

function hypEnv(poolPages = 64) {
  const mem = new PhysMem();
  mem.addRegion(0x4000_0000, 0x4000_0000);
  const pool = new PgtPagePool(mem, 0x7000_0000, poolPages);
  const warnings: string[] = [];
  const pgt = newKvmPgtable(mem, pool, warningList(warnings));
  const tlb = new RecordingHypTlb();
  pgt.hypTlb = tlb;
  return { mem, pool, pgt, warnings, tlb };
}

t.test('init: start level from va_bits; -EINVAL and -ENOMEM', async (t) => {
  for (const [va, start] of [
    [48, 0],
    [39, 1],
    [30, 2],
  ] as const) {
    const e = hypEnv();
    t.equal(kvmPgtableHypInit(e.pgt, va), 0);
    t.equal(e.pgt.startLevel, start, `va_bits ${va}`);
    t.equal(e.pool.usedPages, 1, 'one pgd page');
  }
  t.equal(kvmPgtableHypInit(hypEnv().pgt, 52), Err.EINVAL, 'level -1 (LPA2) not modelled');
  t.equal(kvmPgtableHypInit(hypEnv(0).pgt, 48), Err.ENOMEM);
});

t.test('hyp_set_prot_attr: AP, XN, AttrIndx, SH, AF, SW; refused combinations', async (t) => {
  const out: Halves = { lo: 0, hi: 0 };
  const cases: Array<[string, number, number, number, boolean]> = [
    ['PAGE_HYP', PAGE_HYP, KVM_PTE_LEAF_ATTR_LO_S1_AP_RW, MT_NORMAL, true],
    ['PAGE_HYP_EXEC', PAGE_HYP_EXEC, KVM_PTE_LEAF_ATTR_LO_S1_AP_RO, MT_NORMAL, false],
    ['PAGE_HYP_RO', PAGE_HYP_RO, KVM_PTE_LEAF_ATTR_LO_S1_AP_RO, MT_NORMAL, true],
    ['PAGE_HYP_DEVICE', PAGE_HYP_DEVICE, KVM_PTE_LEAF_ATTR_LO_S1_AP_RW, MT_DEVICE_nGnRE, true],
  ];
  for (const [name, p, ap, attrIdx, xn] of cases) {
    t.equal(hypSetProtAttr(p, 0, out), 0, name);
    t.same(out, { lo: (attrIdx << 2) | (ap << 6) | (3 << 8) | S2_AF_LO, hi: xn ? KVM_PTE_LEAF_ATTR_HI_S1_XN : 0 }, name);
  }
  t.equal(hypSetProtAttr(prot('RWX').lo, 0, out), Err.EINVAL, 'W+X');
  t.equal(hypSetProtAttr(prot('W').lo, 0, out), Err.EINVAL, 'no R');
  t.equal(hypSetProtAttr(prot('RX', { device: true }).lo, 0, out), Err.EINVAL, 'X device');
  const sw = prot('RW', { sw1: true });
  t.equal(hypSetProtAttr(sw.lo, sw.hi, out), 0);
  t.equal(out.hi & SW1_HI, SW1_HI, 'SW1 (SHARED_BORROWED) copied');
});

t.test('map: pages and blocks, prot round trip, SW-only change in place, conflicting remap refused', async (t) => {
  const e = hypEnv();
  kvmPgtableHypInit(e.pgt, 48);
  const owned = prot('RW');
  const borrowed = prot('RW', { sw1: true });
  t.equal(kvmPgtableHypMap(e.pgt, VA, K4, 0x4000_0000, owned.lo, owned.hi), 0);
  t.equal(kvmPgtableHypMap(e.pgt, VA + 0x20_0000, 0x20_0000, 0x4020_0000, borrowed.lo, borrowed.hi), 0);
  const l = newLeafOut();
  kvmPgtableGetLeaf(e.pgt, VA, l);
  t.equal(l.level, 3);
  t.equal(l.lo & (DESC_TYPE_LO | DESC_VALID_LO), DESC_TYPE_LO | DESC_VALID_LO);
  kvmPgtableGetLeaf(e.pgt, VA + 0x20_1000, l);
  t.equal(l.level, 2, 'a 2M block');
  t.equal(kvmPteToPhys(l.lo, l.hi, '4k'), 0x4020_0000);
  const back: Halves = { lo: 0, hi: 0 };
  kvmPgtableHypPteProt(l.lo, l.hi, back);
  t.same(back, borrowed, 'state bits read back through prot');
  kvmPgtableHypPteProt(0, SW0_HI, back);
  t.same(back, { lo: 0, hi: SW0_HI }, 'invalid PTE reports only its SW bits');

  const writes: number[][] = [];
  e.mem.observer = { onDescWrite: (pa, ol, oh, nl, nh) => writes.push([pa, ol, oh, nl, nh]) };
  t.equal(kvmPgtableHypMap(e.pgt, VA, K4, 0x4000_0000, owned.lo, owned.hi), 0, 'same mapping');
  t.equal(writes.length, 0, 'nothing written');
  const shared = prot('RW', { sw0: true });
  t.equal(kvmPgtableHypMap(e.pgt, VA, K4, 0x4000_0000, shared.lo, shared.hi), 0);
  t.equal(writes.length, 1, 'SW bits updated in place');
  t.equal(kvmPgtableHypMap(e.pgt, VA, K4, 0x5000_0000, owned.lo, owned.hi), Err.EINVAL);
  t.equal(e.warnings.length, 2, 'remap WARN, then the last-level WARN');
});

t.test('unmap: bytes unmapped, EL2 TLBIs, tables freed; stops at an invalid entry or an oversize block', async (t) => {
  const e = hypEnv();
  kvmPgtableHypInit(e.pgt, 48);
  const p = prot('RW');
  kvmPgtableHypMap(e.pgt, VA, 2 * K4, 0x4000_0000, p.lo, p.hi);
  e.tlb.ops.length = 0;
  t.equal(kvmPgtableHypUnmap(e.pgt, VA, 2 * K4), 2 * K4);
  t.same(e.tlb.ops.slice(0, 4), [`dsb`, `vale2is(0x${VA.toString(16)},3)`, 'dsb', 'isb']);
  t.ok(e.tlb.ops.includes(`vae2is(0x${VA.toString(16)},${TLBI_TTL_UNKNOWN})`), 'table entries invalidated');
  t.equal(e.pool.usedPages, 1, 'only the pgd is left');
  kvmPgtableHypMap(e.pgt, VA, K4, 0x4000_0000, p.lo, p.hi);
  t.equal(kvmPgtableHypUnmap(e.pgt, VA, 3 * K4), K4, 'stops at the first invalid entry');
  // The walk above stopped early, so VA's empty L3 table stays: a 2M map there fills it with pages (the hyp map
  // walker has no TABLE_PRE to replace tables by blocks). A fresh 2M window gets a block.
  kvmPgtableHypMap(e.pgt, VA, 0x20_0000, 0x4000_0000, p.lo, p.hi);
  t.equal(kvmPgtableHypUnmap(e.pgt, VA + K4, K4), K4, 'pages under the kept table');
  kvmPgtableHypMap(e.pgt, VA + 0x4000_0000, 0x20_0000, 0x4000_0000, p.lo, p.hi);
  t.equal(kvmPgtableHypUnmap(e.pgt, VA + 0x4000_0000, K4), 0, 'a block reaching past the range is not split');
  t.same(e.warnings, []);
});

t.test('destroy returns every page', async (t) => {
  const e = hypEnv();
  kvmPgtableHypInit(e.pgt, 48);
  const p = prot('RX');
  kvmPgtableHypMap(e.pgt, VA, 0x40_3000, 0x4000_0000, p.lo, p.hi);
  t.ok(e.pool.usedPages > 1);
  kvmPgtableHypDestroy(e.pgt);
  t.equal(e.pool.usedPages, 0);
  t.equal(e.pgt.pgd, -1);
});
