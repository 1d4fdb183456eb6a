import t from 'tap';
import fc from 'fast-check';
import { s2Block, s2Page } from '../../src/arch/desc-codec.js';
import { S2_AF_LO, S2AP_W_LO } from '../../src/arch/desc.js';
import { ARMV8_4_PA48_FEATURES } from '../../src/arch/features.js';
import { FaultType } from '../../src/arch/fault.js';
import { hcr } from '../../src/arch/hcr.js';
import { vtcr, type VtcrFields } from '../../src/arch/vtcr.js';
import { vttbr } from '../../src/arch/vttbr.js';
import { PhysMem } from '../../src/mem/phys-mem.js';
import { S2Mmu } from '../../src/mmu/s2-mmu.js';
import { AccessKind, WalkFlag, s2Walk } from '../../src/mmu/s2-walk.js';
import { Tlb } from '../../src/mmu/tlb.js';
import { WalkResult } from '../../src/mmu/walk-result.js';
import { S2Tree } from './helpers/s2-tree.js';

const RAM = 0x4000_0000;
const ROOT = 0x4800_0000;
const ARENA = 0x4810_0000;
const VMID = 7;

interface Fx {
  mem: PhysMem;
  mmu: S2Mmu;
  tree: S2Tree;
  tlb: Tlb;
}

function fixture(v: Partial<VtcrFields> = {}, capacity = Infinity): Fx {
  const mem = new PhysMem();
  mem.addRegion(RAM, 0x1000_0000);
  const tlb = new Tlb({ capacity });
  const mmu = new S2Mmu(mem, ARMV8_4_PA48_FEATURES, { tlb });
  const tree = new S2Tree(mem, { granule: '4k', ias: 39, startLevel: 1, base: ROOT }, ARENA);
  mmu.setRegs(vtcr({ t0sz: 25, sl0: 1, tg0: '4k', ps: 2, ...v }), vttbr({ baddr: ROOT, vmid: VMID }), hcr({ vm: true, rw: true }));
  return { mem, mmu, tree, tlb };
}

t.test('translate', async (t) => {
  t.test('a miss walks and fills; the next access hits without walking', async (t) => {
    const fx = fixture();
    fx.tree.set(0x20_3000, 3, s2Page({ oa: 0x4a00_0000 }));
    const out = new WalkResult();
    t.equal(fx.mmu.translate(0x20_3010, AccessKind.READ, 0, out), FaultType.NONE);
    t.equal(out.pa, 0x4a00_0010);
    t.equal(fx.mmu.walks, 1);
    t.equal(fx.mmu.translate(0x20_3ff8, AccessKind.WRITE, 0, out), FaultType.NONE);
    t.equal(out.pa, 0x4a00_0ff8);
    t.equal(fx.mmu.walks, 1);
    t.equal(fx.mmu.tlbHits, 1);
    t.equal(fx.tlb.size, 1);
  });
  t.test('a hit returns what the walk returns', async (t) => {
    const fx = fixture();
    fx.tree.set(0x4000_0000, 2, s2Block({ oa: 0x4c00_0000, level: 2, ap: 'RO', xn: 2, sw: 5, memAttr: 0x5 }));
    const walked = new WalkResult();
    const hit = new WalkResult();
    fx.mmu.translate(0x4000_1234, AccessKind.READ, 0, walked);
    fx.mmu.translate(0x4000_1234, AccessKind.READ, 0, hit);
    t.equal(fx.mmu.tlbHits, 1);
    t.same({ ...hit, hwUpdated: false }, { ...walked, hwUpdated: false });
  });
  t.test('TLB off: every access walks', async (t) => {
    const fx = fixture({}, 0);
    fx.tree.set(0x1000, 3, s2Page({ oa: 0x4a00_0000 }));
    const out = new WalkResult();
    for (let k = 0; k < 3; k++) fx.mmu.translate(0x1000, AccessKind.READ, 0, out);
    t.equal(fx.mmu.walks, 3);
    t.equal(fx.mmu.tlbHits, 0);
  });
  t.test('a Permission fault comes from the cached leaf at its level', async (t) => {
    const fx = fixture();
    fx.tree.set(0x1000, 3, s2Page({ oa: 0x4a00_0000, ap: 'RO', xn: 2 }));
    const out = new WalkResult();
    fx.mmu.translate(0x1000, AccessKind.READ, 0, out);
    t.equal(fx.mmu.translate(0x1000, AccessKind.WRITE, 0, out), FaultType.PERMISSION);
    t.equal(out.level, 3);
    t.equal(out.fault, FaultType.PERMISSION);
    t.equal(fx.mmu.translate(0x1000, AccessKind.EXEC, WalkFlag.S1PTW, out), FaultType.PERMISSION);
    t.equal(out.s1ptw, true);
    t.equal(fx.mmu.walks, 1);
  });
  t.test('faults are not cached', async (t) => {
    const fx = fixture();
    const out = new WalkResult();
    t.equal(fx.mmu.translate(0x1000, AccessKind.READ, 0, out), FaultType.TRANSLATION);
    t.equal(fx.tlb.size, 0);
  });
  t.test('HA: an AF=0 leaf is walked (AF set in memory) and then cached', async (t) => {
    const fx = fixture({ ha: true });
    const pa = fx.tree.set(0x1000, 3, s2Page({ oa: 0x4a00_0000, af: false }));
    const out = new WalkResult();
    t.equal(fx.mmu.translate(0x1000, AccessKind.READ, 0, out), FaultType.NONE);
    t.not(fx.mem.read64Lo(pa) & S2_AF_LO, 0);
    fx.mmu.translate(0x1000, AccessKind.READ, 0, out);
    t.equal(fx.mmu.walks, 1);
  });
  t.test('HD: a write to a cached writable-clean leaf re-walks so the dirty state is set', async (t) => {
    const fx = fixture({ ha: true, hd: true });
    const pa = fx.tree.set(0x1000, 3, s2Page({ oa: 0x4a00_0000, ap: 'RO', dbm: true }));
    const out = new WalkResult();
    fx.mmu.translate(0x1000, AccessKind.READ, 0, out);
    t.equal(fx.mem.read64Lo(pa) & S2AP_W_LO, 0, 'a read leaves it clean');
    t.equal(fx.mmu.translate(0x1000, AccessKind.WRITE, 0, out), FaultType.NONE);
    t.equal(fx.mmu.walks, 2);
    t.not(fx.mem.read64Lo(pa) & S2AP_W_LO, 0, 'dirty now');
    fx.mmu.translate(0x1000, AccessKind.WRITE, 0, out);
    t.equal(fx.mmu.walks, 2, 'the refilled entry is dirty: no more walks');
  });
  t.test('NO_UPDATE probes do not fill the TLB', async (t) => {
    const fx = fixture();
    fx.tree.set(0x1000, 3, s2Page({ oa: 0x4a00_0000 }));
    fx.mmu.translate(0x1000, AccessKind.READ, WalkFlag.NO_UPDATE, new WalkResult());
    t.equal(fx.tlb.size, 0);
  });
  t.test('entries are tagged with the VMID of VTTBR_EL2', async (t) => {
    const fx = fixture();
    fx.tree.set(0x1000, 3, s2Page({ oa: 0x4a00_0000 }));
    const out = new WalkResult();
    fx.mmu.translate(0x1000, AccessKind.READ, 0, out);
    fx.mmu.setVttbr(vttbr({ baddr: ROOT, vmid: VMID + 1 }).lo, vttbr({ baddr: ROOT, vmid: VMID + 1 }).hi);
    t.equal(fx.mmu.vmid, VMID + 1);
    fx.mmu.translate(0x1000, AccessKind.READ, 0, out);
    t.equal(fx.mmu.walks, 2);
    t.equal(fx.tlb.countVmid(VMID), 1);
    t.equal(fx.tlb.countVmid(VMID + 1), 1);
  });
  t.test('a cached permission answer is not reused under another configuration (HCR_EL2.FWB)', async (t) => {
    // MemAttr 0b1000 is Normal with FWB=0 but Device with FWB=1 (only MemAttr[2:0] count), and fetches from Device fault.
    const fx = fixture();
    fx.tree.set(0x1000, 3, s2Page({ oa: 0x4a00_0000, memAttr: 0b1000 }));
    const out = new WalkResult();
    t.equal(fx.mmu.translate(0x1000, AccessKind.EXEC, 0, out), FaultType.NONE);
    t.equal(fx.mmu.translate(0x1000, AccessKind.EXEC, 0, out), FaultType.NONE, 'a hit');
    const h = hcr({ vm: true, rw: true, fwb: true });
    fx.mmu.setHcr(h.lo, h.hi);
    t.equal(fx.mmu.translate(0x1000, AccessKind.EXEC, 0, out), FaultType.PERMISSION);
    t.equal(fx.mmu.walks, 1, 'decided from the cached leaf, under the new configuration');
  });
  t.test('stage 2 off: PA = IPA and nothing is cached', async (t) => {
    const fx = fixture();
    fx.mmu.setHcr(0, 0);
    const out = new WalkResult();
    t.equal(fx.mmu.translate(0x1234_5678, AccessKind.WRITE, 0, out), FaultType.NONE);
    t.equal(out.pa, 0x1234_5678);
    t.equal(fx.tlb.size, 0);
  });
  t.test('a configuration fault is reported by the walker, never from the TLB', async (t) => {
    const fx = fixture();
    fx.tree.set(0x1000, 3, s2Page({ oa: 0x4a00_0000 }));
    fx.mmu.translate(0x1000, AccessKind.READ, 0, new WalkResult());
    const bad = vtcr({ t0sz: 25, sl0: 3, tg0: '4k', ps: 2 });
    fx.mmu.setVtcr(bad.lo, bad.hi);
    const out = new WalkResult();
    t.equal(fx.mmu.translate(0x1000, AccessKind.READ, 0, out), FaultType.TRANSLATION);
    t.equal(out.level, 0);
  });
});

t.test('at', async (t) => {
  t.test('walks the tables as they are now, without using or filling the TLB', async (t) => {
    const fx = fixture();
    const pa = fx.tree.set(0x1000, 3, s2Page({ oa: 0x4a00_0000 }));
    const out = new WalkResult();
    fx.mmu.translate(0x1000, AccessKind.READ, 0, out);
    const moved = s2Page({ oa: 0x4b00_0000 });
    fx.mem.write64(pa, moved.lo, moved.hi);
    t.equal(fx.mmu.at(0x1000, false, out), FaultType.NONE);
    t.equal(out.pa, 0x4b00_0000);
    fx.mmu.translate(0x1000, AccessKind.READ, 0, out);
    t.equal(out.pa, 0x4a00_0000, 'the access still uses the (stale) TLB entry');
    t.equal(fx.tlb.size, 1);
    fx.tlb.alle1is();
    fx.mmu.at(0x2000, false, out);
    fx.mmu.at(0x1000, true, out);
    t.equal(fx.tlb.size, 0);
  });
  t.test('AT W on a writable-clean leaf does not set the dirty state', async (t) => {
    const fx = fixture({ ha: true, hd: true });
    const pa = fx.tree.set(0x1000, 3, s2Page({ oa: 0x4a00_0000, ap: 'RO', dbm: true }));
    t.equal(fx.mmu.at(0x1000, true, new WalkResult()), FaultType.NONE);
    t.equal(fx.mem.read64Lo(pa) & S2AP_W_LO, 0);
  });
});

t.test('property: with unchanged tables, TLB on and TLB off give the same results as a bare walk', async (t) => {
  const leaf = fc.record({
    slot: fc.integer({ min: 0, max: 63 }),
    level: fc.constantFrom(2, 3),
    ap: fc.constantFrom('NONE' as const, 'RO' as const, 'WO' as const, 'RW' as const),
    xn: fc.integer({ min: 0, max: 3 }),
    af: fc.boolean(),
    dbm: fc.boolean(),
  });
  const access = fc.record({
    slot: fc.integer({ min: 0, max: 63 }),
    off: fc.integer({ min: 0, max: 0x1f_fff8 }),
    kind: fc.constantFrom(AccessKind.READ, AccessKind.WRITE, AccessKind.EXEC),
    el0: fc.boolean(),
  });
  fc.assert(
    fc.property(fc.array(leaf, { maxLength: 24 }), fc.array(access, { minLength: 1, maxLength: 40 }), fc.boolean(), (leaves, accesses, ha) => {
      const on = fixture({ ha, hd: ha }, Infinity);
      const off = fixture({ ha, hd: ha }, 0);
      for (const fx of [on, off]) {
        for (const l of leaves) {
          // slot → a 2 MiB region; level 3 leaves map its first page only.
          const ipa = l.slot * 0x20_0000;
          const oa = 0x4a00_0000 + (l.slot % 16) * 0x20_0000;
          const attrs = { ap: l.ap, xn: l.xn, af: l.af, dbm: l.dbm };
          if (l.level === 2) fx.tree.set(ipa, 2, s2Block({ oa, level: 2, ...attrs }));
          else fx.tree.set(ipa, 3, s2Page({ oa, ...attrs }));
        }
      }
      const a = new WalkResult();
      const b = new WalkResult();
      for (const x of accesses) {
        const ipa = x.slot * 0x20_0000 + x.off;
        const flags = x.el0 ? WalkFlag.EL0 : 0;
        const fa = on.mmu.translate(ipa, x.kind, flags, a);
        const fb = off.mmu.translate(ipa, x.kind, flags, b);
        if (fa !== fb) return false;
        if (fa === FaultType.NONE && a.pa !== b.pa) return false;
        if (fa !== FaultType.NONE && a.level !== b.level) return false;
      }
      // Memory (AF/dirty updates) must end identical as well.
      for (const l of leaves) {
        const ipa = l.slot * 0x20_0000;
        const ra = new WalkResult();
        const rb = new WalkResult();
        s2Walk(on.mem, on.mmu.cfg, ipa, AccessKind.READ, WalkFlag.NO_UPDATE, ra, null);
        s2Walk(off.mem, off.mmu.cfg, ipa, AccessKind.READ, WalkFlag.NO_UPDATE, rb, null);
        if (ra.descLo !== rb.descLo || ra.descHi !== rb.descHi) return false;
      }
      on.tlb.checkInvariants();
      return true;
    }),
    { numRuns: 150 },
  );
  t.pass('150 random trees and access sequences agreed');
});
