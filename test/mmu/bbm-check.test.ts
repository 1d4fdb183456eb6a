import t from 'tap';
import fc from 'fast-check';
import { s2Block, s2Invalid, s2Page, s2Table, S2MemAttr, type Desc } from '../../src/arch/desc-codec.js';
import { ARMV8_4_PA48_FEATURES } from '../../src/arch/features.js';
import { FaultType } from '../../src/arch/fault.js';
import { hcr } from '../../src/arch/hcr.js';
import { vtcr } from '../../src/arch/vtcr.js';
import { vttbr } from '../../src/arch/vttbr.js';
import { PhysMem } from '../../src/mem/phys-mem.js';
import { BbmChecker, BbmViolationKind, bbmReason, type DescLocation } from '../../src/mmu/bbm-check.js';
import { S2Mmu } from '../../src/mmu/s2-mmu.js';
import { AccessKind } from '../../src/mmu/s2-walk.js';
import { Tlb } from '../../src/mmu/tlb.js';
import { WalkResult } from '../../src/mmu/walk-result.js';
import { S2Tree } from './helpers/s2-tree.js';

const RAM = 0x4000_0000;
const ROOT = 0x4800_0000;
const ARENA = 0x4810_0000;
const VMID = 5;
const IPA = 0x1234_5000; // mapped by a page at level 3
const BLOCK_IPA = 0x4000_0000; // mapped by a 2 MiB block at level 2
const EMPTY_TABLE_IPA = 0x5000_0000; // a level-2 entry pointing at an empty level-3 table
const OA = 0x5000_0000;

interface Fx {
  mem: PhysMem;
  tlb: Tlb;
  checker: BbmChecker;
  mmu: S2Mmu;
  tree: S2Tree;
  pagePa: number;
  blockPa: number;
  tablePa: number;
  emptyTablePa: number;
}

/** A 3-level 4K stage 2 (IAS 39, start level 1) with one page, one block, a table with a page and an empty table. */
function fixture(): Fx {
  const mem = new PhysMem();
  mem.addRegion(RAM, 0x1000_0000);
  const tlb = new Tlb();
  const checker = new BbmChecker(mem, tlb);
  const mmu = new S2Mmu(mem, ARMV8_4_PA48_FEATURES, { tlb, checker });
  const tree = new S2Tree(mem, { granule: '4k', ias: 39, startLevel: 1, base: ROOT }, ARENA);
  const pagePa = tree.set(IPA, 3, s2Page({ oa: OA }));
  const blockPa = tree.set(BLOCK_IPA, 2, s2Block({ oa: 0x4a00_0000, level: 2 }));
  const emptyTable = tree.allocTable();
  const emptyTablePa = tree.set(EMPTY_TABLE_IPA, 2, s2Table({ nlta: emptyTable }));
  const tablePa = tree.entryPa(tree.read(tree.entryPa(ROOT, 1, IPA)).lo & 0xffff_f000, 2, IPA);
  mmu.setRegs(vtcr({ t0sz: 25, sl0: 1, tg0: '4k', ps: 2 }), vttbr({ baddr: ROOT, vmid: VMID }), hcr({ vm: true, rw: true }));
  return { mem, tlb, checker, mmu, tree, pagePa, blockPa, tablePa, emptyTablePa };
}

function write(fx: Fx, pa: number, d: Desc): void {
  fx.mem.writeDesc(pa, d.lo, d.hi);
}

/** `__kvm_tlb_flush_vmid_ipa()` (nvhe/tlb.c): DSB; IPAS2E1IS; DSB; VMALLE1IS; DSB; ISB. */
function flushVmidIpa(tlb: Tlb, vmid: number, ipa: number, level: number): void {
  tlb.dsb();
  tlb.ipas2e1is(vmid, ipa, level);
  tlb.dsb();
  tlb.vmalle1is(vmid);
  tlb.dsb();
  tlb.isb();
}

const kinds = (c: BbmChecker): string[] => c.violations.map((v) => v.kind);

t.test('locate finds the VMID, IPA range and level of a descriptor', async (t) => {
  const fx = fixture();
  const loc: DescLocation = { vmid: -1, ipa: -1, size: 0, level: -1 };
  t.ok(fx.checker.locate(fx.pagePa, loc));
  t.same(loc, { vmid: VMID, ipa: IPA, size: 0x1000, level: 3 });
  t.ok(fx.checker.locate(fx.blockPa, loc));
  t.same(loc, { vmid: VMID, ipa: BLOCK_IPA, size: 0x20_0000, level: 2 });
  t.notOk(fx.checker.locate(RAM + 0x100, loc), 'a word no root reaches');
});

t.test('the Linux sequence is clean', async (t) => {
  t.test('break → DSB → IPAS2E1IS → DSB → VMALLE1IS → DSB → ISB → make (new OA)', async (t) => {
    const fx = fixture();
    write(fx, fx.pagePa, s2Invalid());
    flushVmidIpa(fx.tlb, VMID, IPA, 3);
    write(fx, fx.pagePa, s2Page({ oa: OA + 0x1000 }));
    t.same(fx.checker.violations, []);
    t.equal(fx.checker.checkQuiescent(), 0);
    t.equal(fx.checker.pendingBreaks, 0);
  });
  t.test('with the pKVM locked marker (invalid, bit 10 set) as the break', async (t) => {
    const fx = fixture();
    write(fx, fx.blockPa, s2Invalid(1 << 10));
    flushVmidIpa(fx.tlb, VMID, BLOCK_IPA + 0x1000, 2);
    write(fx, fx.blockPa, s2Block({ oa: 0x4c00_0000, level: 2 }));
    t.same(fx.checker.violations, []);
  });
  t.test('unmap (break, TLBI, no make) leaves nothing outstanding', async (t) => {
    const fx = fixture();
    write(fx, fx.pagePa, s2Invalid());
    flushVmidIpa(fx.tlb, VMID, IPA, 3);
    t.equal(fx.checker.checkQuiescent(), 0);
  });
  t.test('VMALLS12E1IS or ALLE1IS covers a break alone', async (t) => {
    for (const full of ['vmalls12', 'alle1'] as const) {
      const fx = fixture();
      write(fx, fx.pagePa, s2Invalid());
      fx.tlb.dsb();
      if (full === 'vmalls12') fx.tlb.vmalls12e1is(VMID);
      else fx.tlb.alle1is();
      fx.tlb.dsb();
      write(fx, fx.pagePa, s2Page({ oa: OA + 0x2000 }));
      t.same(kinds(fx.checker), [], full);
    }
  });
  t.test('permission, AF and software-bit changes need no BBM', async (t) => {
    const fx = fixture();
    write(fx, fx.pagePa, s2Page({ oa: OA, ap: 'RO' }));
    write(fx, fx.pagePa, s2Page({ oa: OA, ap: 'RO', af: false }));
    write(fx, fx.pagePa, s2Page({ oa: OA, ap: 'RW', sw: 0b11, xn: 2, dbm: true }));
    t.same(fx.checker.violations, []);
  });
  t.test('replacing an empty table by a block after a by-IPA TLBI at the table level', async (t) => {
    const fx = fixture();
    write(fx, fx.emptyTablePa, s2Invalid());
    flushVmidIpa(fx.tlb, VMID, EMPTY_TABLE_IPA, 2);
    write(fx, fx.emptyTablePa, s2Block({ oa: 0x4e00_0000, level: 2 }));
    t.same(fx.checker.violations, []);
  });
  t.test('writes to descriptors no root reaches are not checked', async (t) => {
    const fx = fixture();
    const pa = ARENA + 0x80_0000;
    write(fx, pa, s2Page({ oa: OA }));
    write(fx, pa, s2Page({ oa: OA + 0x1000 }));
    write(fx, pa, s2Invalid());
    t.same(fx.checker.violations, []);
    t.equal(fx.checker.checkQuiescent(), 0);
  });
});

t.test('each violation kind is caught', async (t) => {
  t.test('no-break: a valid → valid change of output address', async (t) => {
    const fx = fixture();
    const oldD = s2Page({ oa: OA });
    const newD = s2Page({ oa: OA + 0x1000 });
    write(fx, fx.pagePa, newD);
    t.same(kinds(fx.checker), [BbmViolationKind.NO_BREAK]);
    const v = fx.checker.violations[0]!;
    t.equal(v.pa, fx.pagePa);
    t.same([v.oldLo, v.oldHi, v.newLo, v.newHi], [oldD.lo, oldD.hi, newD.lo, newD.hi]);
    t.same([v.vmid, v.ipa, v.level], [VMID, IPA, 3]);
    t.match(v.message, /output address/);
  });
  t.test('no-break: memory attributes', async (t) => {
    const fx = fixture();
    write(fx, fx.pagePa, s2Page({ oa: OA, memAttr: S2MemAttr.DEVICE_nGnRE }));
    t.same(kinds(fx.checker), [BbmViolationKind.NO_BREAK]);
    t.match(fx.checker.violations[0]!.message, /memory attributes/);
  });
  t.test('no-break: a block replaced by a table (size change)', async (t) => {
    const fx = fixture();
    write(fx, fx.blockPa, s2Table({ nlta: ARENA + 0x90_0000 }));
    t.same(kinds(fx.checker), [BbmViolationKind.NO_BREAK]);
    t.match(fx.checker.violations[0]!.message, /size change/);
  });
  t.test('no-break: a table pointed elsewhere', async (t) => {
    const fx = fixture();
    write(fx, fx.tablePa, s2Table({ nlta: ARENA + 0x90_0000 }));
    t.same(kinds(fx.checker), [BbmViolationKind.NO_BREAK]);
  });

  // Each row drops or reorders one step of the Linux sequence; every one must be a make-before-invalidate.
  const rows: [string, (tlb: Tlb) => void, RegExp][] = [
    ['no TLBI at all', (tlb) => tlb.dsb(), /no completed TLBI IPAS2E1IS/],
    ['no DSB between the break and the TLBI', (tlb) => {
      tlb.ipas2e1is(VMID, IPA, 3); tlb.dsb(); tlb.vmalle1is(VMID); tlb.dsb();
    }, /no completed TLBI IPAS2E1IS/],
    ['no VMALLE1IS', (tlb) => {
      tlb.dsb(); tlb.ipas2e1is(VMID, IPA, 3); tlb.dsb(); tlb.isb();
    }, /VMALLE1IS/],
    ['VMALLE1IS before the stage-2 TLBI completed', (tlb) => {
      tlb.dsb(); tlb.ipas2e1is(VMID, IPA, 3); tlb.vmalle1is(VMID); tlb.dsb();
    }, /VMALLE1IS/],
    ['no final DSB', (tlb) => {
      tlb.dsb(); tlb.ipas2e1is(VMID, IPA, 3); tlb.dsb(); tlb.vmalle1is(VMID); tlb.isb();
    }, /VMALLE1IS/],
    ['TLBI of another VMID', (tlb) => flushVmidIpa(tlb, VMID + 1, IPA, 3), /no completed TLBI IPAS2E1IS/],
    ['TLBI of another IPA', (tlb) => flushVmidIpa(tlb, VMID, IPA + 0x1000, 3), /no completed TLBI IPAS2E1IS/],
    ['a wrong TTL level hint', (tlb) => flushVmidIpa(tlb, VMID, IPA, 2), /no completed TLBI IPAS2E1IS/],
    ['VMALLS12E1IS with no DSB after it', (tlb) => {
      tlb.dsb(); tlb.vmalls12e1is(VMID);
    }, /no completed TLBI IPAS2E1IS/],
  ];
  for (const [name, seq, why] of rows) {
    t.test(`make-before-invalidate: ${name}`, async (t) => {
      const fx = fixture();
      write(fx, fx.pagePa, s2Invalid());
      seq(fx.tlb);
      write(fx, fx.pagePa, s2Page({ oa: OA + 0x1000 }));
      t.same(kinds(fx.checker), [BbmViolationKind.MAKE_BEFORE_INVALIDATE]);
      t.match(fx.checker.violations[0]!.message, why);
      t.equal(fx.checker.violations[0]!.pa, fx.pagePa);
    });
  }
  t.test('make-before-invalidate: a table with live leaves covered only by a by-IPA TLBI', async (t) => {
    const fx = fixture();
    write(fx, fx.tablePa, s2Invalid());
    flushVmidIpa(fx.tlb, VMID, IPA, 2);
    write(fx, fx.tablePa, s2Block({ oa: 0x4e00_0000, level: 2 }));
    t.same(kinds(fx.checker), [BbmViolationKind.MAKE_BEFORE_INVALIDATE]);
    t.match(fx.checker.violations[0]!.message, /VMALLS12E1IS/);
  });
  t.test('the same table change is clean with VMALLS12E1IS (__kvm_tlb_flush_vmid)', async (t) => {
    const fx = fixture();
    write(fx, fx.tablePa, s2Invalid());
    fx.tlb.dsb();
    fx.tlb.vmalls12e1is(VMID);
    fx.tlb.dsb();
    fx.tlb.isb();
    write(fx, fx.tablePa, s2Block({ oa: 0x4e00_0000, level: 2 }));
    t.same(fx.checker.violations, []);
  });
  t.test('make-before-invalidate: IPAS2LE1IS does not cover a table descriptor', async (t) => {
    const fx = fixture();
    write(fx, fx.emptyTablePa, s2Invalid());
    fx.tlb.dsb();
    fx.tlb.ipas2le1is(VMID, EMPTY_TABLE_IPA, 2);
    fx.tlb.dsb();
    fx.tlb.vmalle1is(VMID);
    fx.tlb.dsb();
    write(fx, fx.emptyTablePa, s2Block({ oa: 0x4e00_0000, level: 2 }));
    t.same(kinds(fx.checker), [BbmViolationKind.MAKE_BEFORE_INVALIDATE]);
  });
  t.test('a re-make of the very same translation after a break needs no TLBI', async (t) => {
    const fx = fixture();
    write(fx, fx.pagePa, s2Invalid());
    write(fx, fx.pagePa, s2Page({ oa: OA, ap: 'RO' }));
    t.same(fx.checker.violations, []);
  });
  t.test('missing-tlbi: an unmap never invalidated, at a quiescent point', async (t) => {
    const fx = fixture();
    write(fx, fx.pagePa, s2Invalid());
    fx.tlb.dsb();
    t.equal(fx.checker.checkQuiescent(), 1);
    t.same(kinds(fx.checker), [BbmViolationKind.MISSING_TLBI]);
    t.same([fx.checker.violations[0]!.pa, fx.checker.violations[0]!.ipa], [fx.pagePa, IPA]);
    t.equal(fx.checker.checkQuiescent(), 0, 'reported once');
  });
  t.test('stale-hit: the TLB still translates an unmapped page', async (t) => {
    const fx = fixture();
    const out = new WalkResult();
    t.equal(fx.mmu.translate(IPA, AccessKind.READ, 0, out), FaultType.NONE);
    write(fx, fx.pagePa, s2Invalid());
    t.equal(fx.mmu.translate(IPA + 8, AccessKind.READ, 0, out), FaultType.NONE, 'served by the stale entry');
    t.equal(out.pa, OA + 8);
    fx.mmu.translate(IPA + 16, AccessKind.READ, 0, out);
    t.same(kinds(fx.checker), [BbmViolationKind.STALE_HIT], 'reported once per stale value');
    t.equal(fx.checker.violations[0]!.pa, fx.pagePa);
    t.equal(fx.checker.violations[0]!.ipa, IPA + 8);
  });
  t.test('after the Linux unmap sequence the access faults and nothing is stale', async (t) => {
    const fx = fixture();
    const out = new WalkResult();
    fx.mmu.translate(IPA, AccessKind.READ, 0, out);
    write(fx, fx.pagePa, s2Invalid());
    flushVmidIpa(fx.tlb, VMID, IPA, 3);
    t.equal(fx.mmu.translate(IPA, AccessKind.READ, 0, out), FaultType.TRANSLATION);
    t.same(fx.checker.violations, []);
  });
  t.test('stale-hit: an OA changed without BBM is still served from the old entry', async (t) => {
    const fx = fixture();
    const out = new WalkResult();
    fx.mmu.translate(BLOCK_IPA, AccessKind.READ, 0, out);
    write(fx, fx.blockPa, s2Block({ oa: 0x4c00_0000, level: 2 }));
    fx.mmu.translate(BLOCK_IPA, AccessKind.READ, 0, out);
    t.same(kinds(fx.checker), [BbmViolationKind.NO_BREAK, BbmViolationKind.STALE_HIT]);
  });
  t.test('stale-permission: write protection without TLBI', async (t) => {
    const fx = fixture();
    const out = new WalkResult();
    fx.mmu.translate(IPA, AccessKind.WRITE, 0, out);
    write(fx, fx.pagePa, s2Page({ oa: OA, ap: 'RO' }));
    t.same(fx.checker.violations, [], 'the permission change itself is allowed');
    t.equal(fx.mmu.translate(IPA, AccessKind.WRITE, 0, out), FaultType.NONE);
    t.same(kinds(fx.checker), [BbmViolationKind.STALE_PERMISSION]);
    fx.checker.clear();
    t.equal(fx.mmu.translate(IPA, AccessKind.READ, 0, out), FaultType.NONE);
    t.same(fx.checker.violations, [], 'a read is still allowed by memory: not stale');
  });
});

t.test('bbmReason (arm-s2.md §8.2)', async (t) => {
  const p = s2Page({ oa: OA });
  const reason = (d: Desc, level = 3): string | null => bbmReason(p.lo, p.hi, d.lo, d.hi, level);
  t.equal(reason(s2Page({ oa: OA })), null);
  t.equal(reason(s2Page({ oa: OA, ap: 'NONE', xn: 3, af: false, dbm: true, sw: 15, pbha: 15, ign63: true })), null);
  t.match(reason(s2Page({ oa: OA, sh: 3 })), /shareability/);
  t.match(reason(s2Page({ oa: OA, memAttr: S2MemAttr.NORMAL_NC })), /memory attributes/);
  t.match(reason(s2Page({ oa: OA, fnxs: true })), /memory attributes/);
  t.match(reason(s2Page({ oa: OA, cont: true })), /contiguous/);
  t.match(reason(s2Page({ oa: 0x1_0000_0000 })), /output address/);
  const tb = s2Table({ nlta: ARENA });
  t.equal(bbmReason(tb.lo, tb.hi, tb.lo, (tb.hi | (0x7f << 20)) >>> 0, 2), null, 'ignored table bits');
  const tb2 = s2Table({ nlta: ARENA + 0x1000 });
  t.match(bbmReason(tb.lo, tb.hi, tb2.lo, tb2.hi, 2), /table address/);
  const blk = s2Block({ oa: 0x4000_0000, level: 2 });
  t.match(bbmReason(tb.lo, tb.hi, blk.lo, blk.hi, 2), /table replaced by a block/);
});

t.test('the index follows tables linked after the root was registered', async (t) => {
  const fx = fixture();
  const ipa = 0xc000_0000; // level-1 index 3: a fresh 1 GiB region
  const l2 = fx.tree.entryPa(ROOT, 1, ipa);
  const t2 = ARENA + 0xa0_0000;
  const t3 = ARENA + 0xa0_1000;
  write(fx, l2, s2Table({ nlta: t2 }));
  const l3 = t2 + (Math.floor(ipa / 0x20_0000) % 512) * 8;
  write(fx, l3, s2Table({ nlta: t3 }));
  const leaf = t3 + (Math.floor(ipa / 0x1000) % 512) * 8;
  write(fx, leaf, s2Page({ oa: OA }));
  write(fx, leaf, s2Page({ oa: OA + 0x1000 }));
  t.same(kinds(fx.checker), [BbmViolationKind.NO_BREAK]);
  t.equal(fx.checker.violations[0]!.ipa, ipa);
});

t.test('roots', async (t) => {
  t.test('a forgotten root no longer locates its descriptors', async (t) => {
    const fx = fixture();
    const loc: DescLocation = { vmid: -1, ipa: -1, size: 0, level: -1 };
    t.ok(fx.checker.locate(fx.pagePa, loc));
    fx.checker.removeRoot(VMID, ROOT);
    t.notOk(fx.checker.locate(fx.pagePa, loc));
    write(fx, fx.pagePa, s2Page({ oa: OA + 0x1000 }));
    t.same(fx.checker.violations, [], 'no obligation for an unreachable descriptor');
  });
  t.test('re-registering the loaded root is idempotent; a new VMID on the same tables takes precedence', async (t) => {
    const fx = fixture();
    const loc: DescLocation = { vmid: -1, ipa: -1, size: 0, level: -1 };
    fx.mmu.setRegs(vtcr({ t0sz: 25, sl0: 1, tg0: '4k', ps: 2 }), vttbr({ baddr: ROOT, vmid: VMID }), hcr({ vm: true, rw: true }));
    t.ok(fx.checker.locate(fx.pagePa, loc));
    t.equal(loc.vmid, VMID);
    fx.mmu.setVttbr(vttbr({ baddr: ROOT, vmid: 9 }).lo, vttbr({ baddr: ROOT, vmid: 9 }).hi);
    t.ok(fx.checker.locate(fx.pagePa, loc));
    t.equal(loc.vmid, 9);
  });
});

t.test('property: the Linux sequence is always clean; a direct write or a skipped TLBI is flagged exactly when BBM is needed', async (t) => {
  const leafFields = fc.record({
    block: fc.boolean(),
    moveOa: fc.boolean(),
    memAttr: fc.constantFrom(S2MemAttr.NORMAL_WB, S2MemAttr.NORMAL_NC, S2MemAttr.DEVICE_nGnRE),
    ap: fc.constantFrom('NONE' as const, 'RO' as const, 'WO' as const, 'RW' as const),
    af: fc.boolean(),
    sh: fc.constantFrom(0, 2, 3),
    xn: fc.integer({ min: 0, max: 3 }),
    sw: fc.integer({ min: 0, max: 15 }),
    cont: fc.boolean(),
  });
  fc.assert(
    fc.property(leafFields, fc.constantFrom('linux' as const, 'direct' as const, 'no-tlbi' as const), (f, mode) => {
      const fx = fixture();
      const pa = f.block ? fx.blockPa : fx.pagePa;
      const ipa = f.block ? BLOCK_IPA : IPA;
      const level = f.block ? 2 : 3;
      const old = fx.tree.read(pa);
      const base = f.block ? 0x4a00_0000 : OA;
      const attrs = { memAttr: f.memAttr, ap: f.ap, af: f.af, sh: f.sh, xn: f.xn, sw: f.sw, cont: f.cont };
      const oa = f.moveOa ? base + (f.block ? 0x20_0000 : 0x1000) : base;
      const next = f.block ? s2Block({ oa, level: 2, ...attrs }) : s2Page({ oa, ...attrs });
      const needsBbm = bbmReason(old.lo, old.hi, next.lo, next.hi, level) !== null;
      if (mode === 'linux') {
        write(fx, pa, s2Invalid());
        flushVmidIpa(fx.tlb, VMID, ipa, level);
        write(fx, pa, next);
        return fx.checker.violations.length === 0 && fx.checker.checkQuiescent() === 0;
      }
      if (mode === 'direct') {
        write(fx, pa, next);
        return kinds(fx.checker).join() === (needsBbm ? BbmViolationKind.NO_BREAK : '');
      }
      write(fx, pa, s2Invalid());
      fx.tlb.dsb();
      write(fx, pa, next);
      return kinds(fx.checker).join() === (needsBbm ? BbmViolationKind.MAKE_BEFORE_INVALIDATE : '') && fx.checker.checkQuiescent() === 0;
    }),
    { numRuns: 200 },
  );
  t.pass('200 random descriptor changes');
});

t.test('a stale hit through a TLB shared by two PEs', async (t) => {
  const fx = fixture();
  const cpu1 = new S2Mmu(fx.mem, ARMV8_4_PA48_FEATURES, { tlb: fx.tlb, checker: fx.checker });
  cpu1.setRegs(vtcr({ t0sz: 25, sl0: 1, tg0: '4k', ps: 2 }), vttbr({ baddr: ROOT, vmid: VMID }), hcr({ vm: true, rw: true }));
  const out = new WalkResult();
  cpu1.translate(IPA, AccessKind.READ, 0, out); // PE 1 caches the page
  write(fx, fx.pagePa, s2Invalid()); // PE 0 unmaps it and forgets the TLBI
  t.equal(cpu1.translate(IPA, AccessKind.READ, 0, out), FaultType.NONE);
  t.same(kinds(fx.checker), [BbmViolationKind.STALE_HIT]);
  t.equal(fx.checker.checkQuiescent(), 1);
});
