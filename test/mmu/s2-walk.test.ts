import t from 'tap';
import { s2Block, s2Invalid, s2Page, s2Table, S2MemAttr, type Desc, type S2LeafFields } from '../../src/arch/desc-codec.js';
import {
  ARMV8_0_PA40_FEATURES,
  ARMV8_4_PA48_FEATURES,
  QEMU_MAX_FEATURES,
  type CpuFeatures,
} from '../../src/arch/features.js';
import { FaultType, faultStatusCode } from '../../src/arch/fault.js';
import { blockAllowed, levelShift, type Granule } from '../../src/arch/granule.js';
import { hcr, type HcrFields } from '../../src/arch/hcr.js';
import { vtcr, type VtcrFields } from '../../src/arch/vtcr.js';
import { vttbr } from '../../src/arch/vttbr.js';
import { PhysMem } from '../../src/mem/phys-mem.js';
import { makeS2Config, type S2Config } from '../../src/mmu/s2-config.js';
import { AccessKind, WalkFlag, s2NeedsHwUpdate, s2PermFault, s2Walk } from '../../src/mmu/s2-walk.js';
import { NO_LEAF, WalkResult } from '../../src/mmu/walk-result.js';
import { WalkTrace } from '../../src/mmu/walk-trace.js';
import { S2Tree } from './helpers/s2-tree.js';

const RAM = 0x4000_0000;
const BASE = 0x4800_0000;
const ARENA = 0x4900_0000;

interface Setup {
  mem: PhysMem;
  cfg: S2Config;
  tree: S2Tree;
  out: WalkResult;
}

function setup(
  v: VtcrFields,
  feat: CpuFeatures = QEMU_MAX_FEATURES,
  h: HcrFields = { vm: true, rw: true },
  base = BASE,
  addr52 = false,
): Setup {
  const mem = new PhysMem();
  mem.addRegion(RAM, 0x4000_0000);
  const cfg = makeS2Config(vtcr(v), vttbr({ baddr: base, vmid: 5, addr52 }), hcr(h), feat);
  const tree = new S2Tree(
    mem,
    { granule: v.tg0 as Granule, ias: 64 - v.t0sz, startLevel: cfg.startLevel, base, ds: cfg.ds, pa52: cfg.pa52 },
    ARENA,
  );
  return { mem, cfg, tree, out: new WalkResult() };
}

/** A 48-bit IPA configuration per granule that starts at the lowest level without DS. */
const CFG48: Record<Granule, VtcrFields> = {
  '4k': { t0sz: 16, sl0: 2, tg0: '4k', ps: 5 }, // start L0
  '16k': { t0sz: 16, sl0: 2, tg0: '16k', ps: 5 }, // start L1, 2 concatenated tables
  '64k': { t0sz: 16, sl0: 2, tg0: '64k', ps: 5 }, // start L1
};
const START48: Record<Granule, number> = { '4k': 0, '16k': 1, '64k': 1 };
const GRANULES: Granule[] = ['4k', '16k', '64k'];
const OA = 0x5000_0000;

function walk(s: Setup, ipa: number, access: AccessKind = AccessKind.READ, flags = 0): FaultType {
  return s2Walk(s.mem, s.cfg, ipa, access, flags, s.out, null);
}

t.test('every granule × level × descriptor type (arm-s2.md §3.1, §3.2)', async (t) => {
  for (const feat of [QEMU_MAX_FEATURES, ARMV8_4_PA48_FEATURES]) {
    for (const g of GRANULES) {
      for (let level = START48[g]; level <= 3; level++) {
        const sh = levelShift(g, level);
        const ipa = 2 ** 40 + 3 * 2 ** sh + 0x238; // inside entry 3 of its table at `level`
        const oa = level === 3 ? OA : 2 ** sh;
        const types: [string, Desc, FaultType][] = [
          ['invalid', s2Invalid(0xffff_fffe, 0xffff_ffff), FaultType.TRANSLATION],
          [
            'block',
            s2Block({ granule: g, level, oa }),
            level < 3 && blockAllowed(g, level, false, feat.paBits >= 52) ? FaultType.NONE : FaultType.TRANSLATION,
          ],
          ['table-or-page', level === 3 ? s2Page({ granule: g, oa }) : s2Table({ granule: g, nlta: ARENA + 0x80_0000 }), level === 3 ? FaultType.NONE : FaultType.TRANSLATION],
        ];
        for (const [name, d, want] of types) {
          const s = setup(CFG48[g], feat);
          s.tree.set(ipa, level, d);
          const got = walk(s, ipa);
          const label = `${g} L${level} ${name} PA${feat.paBits}`;
          t.equal(got, want, label);
          if (want === FaultType.NONE) {
            t.equal(s.out.pa, oa + (ipa % 2 ** sh), `${label} pa`);
            t.equal(s.out.leafLevel, level, `${label} leafLevel`);
            t.equal(s.out.leafShift, sh, `${label} leafShift`);
          } else {
            // A table descriptor at level < 3 points at an empty table: the fault is one level down.
            const wantLevel = name === 'table-or-page' ? level + 1 : level;
            t.equal(s.out.level, wantLevel, `${label} level`);
            t.equal(s.out.leafLevel, NO_LEAF, `${label} no leaf`);
          }
        }
      }
    }
  }
});

t.test('level 3 0b01 is reserved: translation fault at level 3 (arm-s2.md §4.5)', async (t) => {
  const s = setup(CFG48['4k']);
  const d = s2Page({ oa: OA });
  s.tree.set(0x1000, 3, { lo: d.lo & ~2, hi: d.hi });
  t.equal(walk(s, 0x1000), FaultType.TRANSLATION);
  t.equal(s.out.level, 3);
  t.equal(faultStatusCode(s.out.fault, s.out.level), 0x07);
});

t.test('leaf fields and descriptor location are reported', async (t) => {
  const s = setup(CFG48['4k']);
  const pa = s.tree.set(0x7000, 3, s2Page({ oa: OA, ap: 'RO', memAttr: S2MemAttr.NORMAL_NC, sh: 3, xn: 2, sw: 9, dbm: true, cont: true }));
  t.equal(walk(s, 0x7123), FaultType.NONE);
  const o = s.out;
  t.match(o, { pa: OA + 0x123, descPa: pa, memAttr: 5, s2ap: 1, sh: 3, xn: 2, sw: 9, dbm: true, cont: true, af: true, hwUpdated: false, ipa: 0x7123 });
});

t.test('stage 2 disabled: PA = IPA, no memory read', async (t) => {
  const s = setup(CFG48['4k'], QEMU_MAX_FEATURES, { vm: false, rw: true });
  const tr = new WalkTrace();
  t.equal(s2Walk(s.mem, s.cfg, 0x1234_5678, AccessKind.WRITE, 0, s.out, tr), FaultType.NONE);
  t.equal(s.out.pa, 0x1234_5678);
  t.equal(tr.n, 0);
  // HCR_EL2.DC also enables stage 2.
  const d = setup(CFG48['4k'], QEMU_MAX_FEATURES, { dc: true, rw: true });
  t.equal(walk(d, 0x1000), FaultType.TRANSLATION);
});

t.test('configuration faults, ASL order (arm-s2.md §1.8)', async (t) => {
  // T0SZ below the ASL minimum for PAMax 48 (QEMU would accept 16 → divergence #1): translation L0.
  const small = setup({ t0sz: 15, sl0: 2, tg0: '4k', ps: 5 }, ARMV8_4_PA48_FEATURES);
  t.equal(walk(small, 0), FaultType.TRANSLATION);
  t.equal(small.out.level, 0);
  // PAMax 40: T0SZ 24 is the minimum, 23 faults even with a consistent SL0.
  t.equal(walk(setup({ t0sz: 24, sl0: 1, tg0: '4k', ps: 2 }, ARMV8_0_PA40_FEATURES), 0), FaultType.TRANSLATION, 'T0SZ 24, SL0=1: L1 with 40 bits is fine, but the walk reads an empty table');
  t.equal(walk(setup({ t0sz: 23, sl0: 1, tg0: '4k', ps: 2 }, ARMV8_0_PA40_FEATURES), 0), FaultType.TRANSLATION);
  // Translation fault vs address-size fault precedence: T0SZ fault wins over a base beyond OAS.
  const both = setup({ t0sz: 40, sl0: 0, tg0: '4k', ps: 0 }, ARMV8_0_PA40_FEATURES, { vm: true, rw: true }, BASE);
  t.equal(walk(both, 0), FaultType.TRANSLATION, 'T0SZ 40 > 39 without TTST');
  // Base beyond OAS (PS = 32 bits, base at 2^32 + …): address size L0 — but an IPA beyond IAS is a translation first.
  const mem = new PhysMem();
  mem.addRegion(RAM, 0x4000_0000);
  const cfg = makeS2Config(vtcr({ t0sz: 32, sl0: 1, tg0: '4k', ps: 0 }), vttbr({ baddr: 2 ** 33 }), hcr({ vm: true, rw: true }), QEMU_MAX_FEATURES);
  const out = new WalkResult();
  t.equal(s2Walk(mem, cfg, 0x1000, AccessKind.READ, 0, out, null), FaultType.ADDRESS_SIZE);
  t.equal(out.level, 0);
  t.equal(faultStatusCode(out.fault, out.level), 0x00);
  t.equal(s2Walk(mem, cfg, 2 ** 32, AccessKind.READ, 0, out, null), FaultType.TRANSLATION, 'IPA range checked before the base');
});

t.test('IPA range: bits at or above IAS give a level-0 translation fault', async (t) => {
  const s = setup({ t0sz: 24, sl0: 1, tg0: '4k', ps: 2 });
  s.tree.set(2 ** 40 - 0x1000, 3, s2Page({ oa: OA }));
  t.equal(walk(s, 2 ** 40 - 0x1000), FaultType.NONE);
  t.equal(walk(s, 2 ** 40), FaultType.TRANSLATION);
  t.equal(s.out.level, 0);
  t.equal(walk(s, -1), FaultType.TRANSLATION);
  t.equal(walk(s, 2 ** 53), FaultType.TRANSLATION);
});

t.test('SEA on a descriptor read outside RAM, at the level being read', async (t) => {
  const s = setup(CFG48['4k']);
  // L0 entry → L1 table in unbacked PA space (below OAS).
  s.tree.set(0x1000, 0, s2Table({ nlta: 0x10_0000_0000 }));
  t.equal(walk(s, 0x1000), FaultType.SEA_WALK);
  t.equal(s.out.level, 1);
  t.equal(faultStatusCode(s.out.fault, s.out.level), 0x15);
});

t.test('next-level table at or above OAS: address size at the table descriptor level (§4.3)', async (t) => {
  const s = setup({ t0sz: 24, sl0: 1, tg0: '4k', ps: 2 }); // OAS 40
  s.tree.set(0x1000, 1, s2Table({ nlta: 2 ** 40 }));
  t.equal(walk(s, 0x1000), FaultType.ADDRESS_SIZE);
  t.equal(s.out.level, 1);
  s.tree.set(0x1000, 1, s2Table({ nlta: 2 ** 40 - 0x1000 }));
  t.equal(walk(s, 0x1000), FaultType.SEA_WALK, 'just below OAS is walked (unbacked)');
});

t.test('output address at or above OAS: address size at the leaf level', async (t) => {
  const s = setup({ t0sz: 24, sl0: 1, tg0: '4k', ps: 2 }); // OAS 40
  s.tree.set(0x20_0000, 2, s2Block({ level: 2, oa: 2 ** 40 }));
  t.equal(walk(s, 0x20_0000), FaultType.ADDRESS_SIZE);
  t.equal(s.out.level, 2);
  t.equal(s.out.leafLevel, 2);
  // PS beyond PAMax is clamped, not a fault: PS=52 on a PA40 PE behaves as 40.
  const c = setup({ t0sz: 24, sl0: 1, tg0: '4k', ps: 6 }, ARMV8_0_PA40_FEATURES);
  c.tree.set(0x20_0000, 2, s2Block({ level: 2, oa: 2 ** 40 }));
  t.equal(walk(c, 0x20_0000), FaultType.ADDRESS_SIZE);
  c.tree.set(0x20_0000, 2, s2Block({ level: 2, oa: 2 ** 39 }));
  t.equal(walk(c, 0x20_0000), FaultType.NONE);
});

t.test('52-bit output: 4K DS with start level −1 (FEAT_LPA2)', async (t) => {
  const v: VtcrFields = { t0sz: 12, sl0: 0, sl2: true, ds: true, tg0: '4k', ps: 6, sh0: 3 };
  const s = setup(v);
  t.equal(s.cfg.startLevel, -1);
  const oa = 2 ** 51 + 2 ** 49 + 2 ** 48 + 0x1234_5000;
  const ipa = 2 ** 51 + 0xabc_d000;
  s.tree.set(ipa, 3, s2Page({ oa, ds: true }));
  const tr = new WalkTrace();
  t.equal(s2Walk(s.mem, s.cfg, ipa + 0x10, AccessKind.READ, 0, s.out, tr), FaultType.NONE);
  t.equal(s.out.pa, oa + 0x10);
  t.equal(s.out.sh, 3, 'SH comes from VTCR_EL2.SH0 with DS');
  t.equal(tr.n, 5);
  t.same(Array.from(tr.level.slice(0, 5)), [-1, 0, 1, 2, 3]);
  // A block at level −1 is never allowed: translation fault, FSC 0x2B.
  s.tree.set(2 ** 50, -1, s2Block({ granule: '4k', level: 0, oa: 0, ds: true }));
  t.equal(walk(s, 2 ** 50), FaultType.TRANSLATION);
  t.equal(s.out.level, -1);
  t.equal(faultStatusCode(s.out.fault, s.out.level), 0x2b);
  // Level-0 block with DS (512 GiB).
  s.tree.set(2 ** 49, 0, s2Block({ level: 0, oa: 2 ** 50, ds: true }));
  t.equal(walk(s, 2 ** 49 + 0x123), FaultType.NONE);
  t.equal(s.out.pa, 2 ** 50 + 0x123);
});

t.test('52-bit OA bits with OAS 48 give an address-size fault (ASL, QEMU ignores them: §11 #4)', async (t) => {
  const ds = setup({ t0sz: 16, sl0: 2, ds: true, tg0: '4k', ps: 5 });
  ds.tree.set(0x1000, 3, s2Page({ oa: 2 ** 50 + OA, ds: true }));
  t.equal(walk(ds, 0x1000), FaultType.ADDRESS_SIZE);
  t.equal(ds.out.level, 3);
  const lpa = setup({ t0sz: 16, sl0: 2, tg0: '64k', ps: 5 });
  lpa.tree.set(0x1_0000, 3, s2Page({ granule: '64k', oa: 2 ** 48 + OA }));
  t.equal(walk(lpa, 0x1_0000), FaultType.ADDRESS_SIZE);
  const lpa52 = setup({ t0sz: 12, sl0: 2, tg0: '64k', ps: 6 });
  lpa52.tree.set(2 ** 51, 3, s2Page({ granule: '64k', oa: 2 ** 48 + OA }));
  t.equal(walk(lpa52, 2 ** 51 + 8), FaultType.NONE);
  t.equal(lpa52.out.pa, 2 ** 48 + OA + 8);
  // Without FEAT_LPA, bits[15:12] of a 64K descriptor are RES0 and ignored.
  const old = setup({ t0sz: 16, sl0: 2, tg0: '64k', ps: 5 }, ARMV8_4_PA48_FEATURES);
  const d = s2Page({ granule: '64k', oa: OA, lpa: false });
  old.tree.set(0x1_0000, 3, { lo: d.lo | 0xf000, hi: d.hi });
  t.equal(walk(old, 0x1_0000), FaultType.NONE);
  t.equal(old.out.pa, OA);
});

t.test('16K DS: level-0 start and level-1 blocks', async (t) => {
  const s = setup({ t0sz: 12, sl0: 3, ds: true, tg0: '16k', ps: 6 });
  t.equal(s.cfg.startLevel, 0);
  t.equal(s.cfg.fault, FaultType.NONE);
  s.tree.set(2 ** 51 + 2 ** 36, 1, s2Block({ granule: '16k', level: 1, oa: 2 ** 51, ds: true }));
  t.equal(walk(s, 2 ** 51 + 2 ** 36 + 0x4444), FaultType.NONE);
  t.equal(s.out.pa, 2 ** 51 + 0x4444);
});

t.test('52-bit table base in VTTBR (BADDR[51:48] in bits[5:2], at least 64-byte aligned)', async (t) => {
  const mem = new PhysMem();
  const hiRam = 2 ** 50;
  mem.addRegion(hiRam, 0x100_0000);
  // IAS 50 from level −1: a 4-entry (32-byte) initial table, but the 52-bit form aligns to 64 bytes (§1.7, §11 #5).
  const v = vtcr({ t0sz: 14, sl0: 0, sl2: true, ds: true, tg0: '4k', ps: 6 });
  const h = hcr({ vm: true, rw: true });
  const cfg = makeS2Config(v, vttbr({ baddr: hiRam + 0x40, addr52: true }), h, QEMU_MAX_FEATURES);
  t.equal(cfg.tsize, 6);
  t.equal(cfg.baseAddr, hiRam + 0x40);
  const low = makeS2Config(v, { lo: vttbr({ baddr: hiRam + 0x40, addr52: true }).lo | 0x20, hi: vttbr({ baddr: hiRam, addr52: true }).hi }, h, QEMU_MAX_FEATURES);
  t.equal(low.baseAddr, 2 ** 51 + hiRam + 0x40, 'bit 5 is BADDR[51] in the 52-bit form, not A[5]');
  const tree = new S2Tree(mem, { granule: '4k', ias: 50, startLevel: -1, base: cfg.baseAddr, ds: true }, hiRam + 0x10_0000);
  tree.set(0x5000, 3, s2Page({ oa: 0x9000, ds: true }));
  const out = new WalkResult();
  t.equal(s2Walk(mem, cfg, 0x5000, AccessKind.READ, 0, out, null), FaultType.NONE);
  t.equal(out.pa, 0x9000);
  t.equal(out.descPa >= hiRam, true);
});

t.test('access flag: fault without HA, hardware update with HA (arm-s2.md §4.7)', async (t) => {
  const noHa = setup(CFG48['4k']);
  noHa.tree.set(0x1000, 3, s2Page({ oa: OA, af: false }));
  t.equal(walk(noHa, 0x1000), FaultType.ACCESS_FLAG);
  t.equal(noHa.out.level, 3);
  t.equal(faultStatusCode(noHa.out.fault, 3), 0x0b);

  const ha = setup({ ...CFG48['4k'], ha: true });
  const writes: number[] = [];
  ha.mem.observer = { onDescWrite: (pa) => void writes.push(pa) };
  const p = ha.tree.set(0x1000, 3, s2Page({ oa: OA, af: false, ap: 'RO' }));
  // A faulting access does not set AF.
  t.equal(walk(ha, 0x1000, AccessKind.WRITE), FaultType.PERMISSION);
  t.equal(ha.tree.read(p).lo & 0x400, 0);
  // A probe neither.
  t.equal(walk(ha, 0x1000, AccessKind.READ, WalkFlag.NO_UPDATE), FaultType.NONE);
  t.equal(ha.tree.read(p).lo & 0x400, 0);
  t.equal(ha.out.hwUpdated, false);
  // A real read sets it, with a plain store (not the descriptor-write API).
  t.equal(walk(ha, 0x1000), FaultType.NONE);
  t.equal(ha.tree.read(p).lo & 0x400, 0x400);
  t.equal(ha.out.hwUpdated, true);
  t.equal(ha.out.descLo, ha.tree.read(p).lo);
  t.same(writes, []);
  // AT also sets AF with HA.
  const at = setup({ ...CFG48['4k'], ha: true });
  const q = at.tree.set(0x1000, 3, s2Page({ oa: OA, af: false }));
  t.equal(walk(at, 0x1000, AccessKind.READ, WalkFlag.AT), FaultType.NONE);
  t.equal(at.tree.read(q).lo & 0x400, 0x400);
  // HA on a PE without FEAT_HAFDBS is ignored.
  const nofeat = setup({ t0sz: 24, sl0: 1, tg0: '4k', ps: 2, ha: true }, ARMV8_0_PA40_FEATURES);
  nofeat.tree.set(0x1000, 3, s2Page({ oa: OA, af: false }));
  t.equal(walk(nofeat, 0x1000), FaultType.ACCESS_FLAG);
});

t.test('dirty state: DBM with HA+HD (arm-s2.md §4.7, §7.2)', async (t) => {
  const rows: { name: string; v: Partial<VtcrFields>; flags: number; want: FaultType; dirty: boolean }[] = [
    { name: 'HA+HD write sets S2AP[1]', v: { ha: true, hd: true }, flags: 0, want: FaultType.NONE, dirty: true },
    { name: 'AT write: permitted, not dirtied', v: { ha: true, hd: true }, flags: WalkFlag.AT, want: FaultType.NONE, dirty: false },
    { name: 'probe: permitted, not dirtied', v: { ha: true, hd: true }, flags: WalkFlag.NO_UPDATE, want: FaultType.NONE, dirty: false },
    { name: 'HD without HA has no effect', v: { hd: true }, flags: 0, want: FaultType.PERMISSION, dirty: false },
    { name: 'DBM without HD is ignored', v: { ha: true }, flags: 0, want: FaultType.PERMISSION, dirty: false },
  ];
  for (const r of rows) {
    const s = setup({ ...CFG48['4k'], ...r.v });
    const p = s.tree.set(0x1000, 3, s2Page({ oa: OA, ap: 'RO', dbm: true }));
    t.equal(walk(s, 0x1000, AccessKind.WRITE, r.flags), r.want, r.name);
    t.equal((s.tree.read(p).lo & 0x80) !== 0, r.dirty, `${r.name}: S2AP[1] in memory`);
  }
  // From S2AP=00 a write gives S2AP=10 (write-only), as QEMU does.
  const s = setup({ ...CFG48['4k'], ha: true, hd: true });
  const p = s.tree.set(0x1000, 3, s2Page({ oa: OA, ap: 'NONE', dbm: true }));
  t.equal(walk(s, 0x1000, AccessKind.WRITE), FaultType.NONE);
  t.equal((s.tree.read(p).lo >>> 6) & 3, 2);
  t.equal(s.out.s2ap, 2);
  // HD needs HAFDBS level 2.
  const lvl1: CpuFeatures = { ...QEMU_MAX_FEATURES, hafdbs: 1 };
  const l1 = setup({ ...CFG48['4k'], ha: true, hd: true }, lvl1);
  l1.tree.set(0x1000, 3, s2Page({ oa: OA, ap: 'RO', dbm: true }));
  t.equal(walk(l1, 0x1000, AccessKind.WRITE), FaultType.PERMISSION);
});

t.test('S2AP: read and write permissions for every encoding (arm-s2.md §5.1)', async (t) => {
  const aps = ['NONE', 'RO', 'WO', 'RW'] as const;
  for (const ap of aps) {
    const s = setup(CFG48['4k']);
    s.tree.set(0x1000, 3, s2Page({ oa: OA, ap }));
    const r = ap === 'RO' || ap === 'RW';
    const w = ap === 'WO' || ap === 'RW';
    t.equal(walk(s, 0x1000, AccessKind.READ), r ? FaultType.NONE : FaultType.PERMISSION, `${ap} read`);
    t.equal(walk(s, 0x1000, AccessKind.WRITE), w ? FaultType.NONE : FaultType.PERMISSION, `${ap} write`);
    t.equal(walk(s, 0x1000, AccessKind.EXEC), FaultType.NONE, `${ap} exec needs no read permission`);
    if (!w) t.equal(faultStatusCode(s2Walk(s.mem, s.cfg, 0x1000, AccessKind.WRITE, 0, s.out, null), s.out.level), 0x0f);
  }
});

t.test('XN[1:0] with and without FEAT_XNX, EL0 vs EL1 (arm-s2.md §5.2)', async (t) => {
  // [xn, EL1 allowed, EL0 allowed] with XNX.
  const xnx: [number, boolean, boolean][] = [
    [0, true, true],
    [1, false, true],
    [2, false, false],
    [3, true, false],
  ];
  for (const [xn, el1, el0] of xnx) {
    const s = setup(CFG48['4k']);
    s.tree.set(0x1000, 3, s2Page({ oa: OA, xn }));
    t.equal(walk(s, 0x1000, AccessKind.EXEC), el1 ? FaultType.NONE : FaultType.PERMISSION, `XNX xn=${xn} EL1`);
    t.equal(walk(s, 0x1000, AccessKind.EXEC, WalkFlag.EL0), el0 ? FaultType.NONE : FaultType.PERMISSION, `XNX xn=${xn} EL0`);
    t.equal(walk(s, 0x1000, AccessKind.READ), FaultType.NONE, 'XN does not affect data reads');
    const old = setup({ t0sz: 24, sl0: 1, tg0: '4k', ps: 2 }, ARMV8_0_PA40_FEATURES);
    old.tree.set(0x1000, 3, s2Page({ oa: OA, xn }));
    const allowed = (xn & 2) === 0;
    t.equal(walk(old, 0x1000, AccessKind.EXEC), allowed ? FaultType.NONE : FaultType.PERMISSION, `no XNX xn=${xn} EL1`);
    t.equal(walk(old, 0x1000, AccessKind.EXEC, WalkFlag.EL0), allowed ? FaultType.NONE : FaultType.PERMISSION, `no XNX xn=${xn} EL0`);
  }
});

t.test('instruction fetch from stage-2 Device memory is a permission fault (ASL; QEMU allows: §11 #6)', async (t) => {
  for (const [memAttr, fwb, device] of [
    [S2MemAttr.DEVICE_nGnRE, false, true],
    [S2MemAttr.NORMAL_WB, false, false],
    [S2MemAttr.NORMAL_NC, false, false],
    [S2MemAttr.FWB_DEVICE_nGnRE, true, true],
    [S2MemAttr.FWB_NORMAL, true, false],
    [S2MemAttr.FWB_USE_S1, true, false],
    [0x4, true, true], // FWB reserved 0b100 → Device-nGnRnE (QEMU's choice, §11 #8)
    [0xe, true, true], // FWB with bit 5 set → Device-nGnRnE
  ] as const) {
    const s = setup(CFG48['4k'], QEMU_MAX_FEATURES, { vm: true, rw: true, fwb });
    s.tree.set(0x1000, 3, s2Page({ oa: OA, memAttr }));
    t.equal(walk(s, 0x1000, AccessKind.EXEC), device ? FaultType.PERMISSION : FaultType.NONE, `MemAttr ${memAttr} FWB=${fwb}`);
    t.equal(walk(s, 0x1000, AccessKind.READ), FaultType.NONE, 'data reads from Device are fine');
  }
});

t.test('stage-1 walk accesses (S1PTW) and HCR_EL2.PTW (arm-s2.md §4.8)', async (t) => {
  const s = setup(CFG48['4k'], QEMU_MAX_FEATURES, { vm: true, rw: true, ptw: true });
  s.tree.set(0x1000, 3, s2Page({ oa: OA, memAttr: S2MemAttr.DEVICE_nGnRE }));
  t.equal(walk(s, 0x1000, AccessKind.READ, WalkFlag.S1PTW), FaultType.PERMISSION);
  t.equal(s.out.s1ptw, true);
  t.equal(walk(s, 0x1000, AccessKind.READ), FaultType.NONE, 'a plain read is not affected');
  const n = setup(CFG48['4k']);
  n.tree.set(0x1000, 3, s2Page({ oa: OA, memAttr: S2MemAttr.DEVICE_nGnRE }));
  t.equal(walk(n, 0x1000, AccessKind.READ, WalkFlag.S1PTW), FaultType.NONE, 'PTW=0: treated as Normal NC');
  t.equal(n.out.s1ptw, true);
  // A stage-1 hardware update (a TTW write) needs read as well as write permission.
  const wo = setup(CFG48['4k']);
  wo.tree.set(0x1000, 3, s2Page({ oa: OA, ap: 'WO' }));
  t.equal(walk(wo, 0x1000, AccessKind.WRITE), FaultType.NONE, 'a data write to a write-only page is fine');
  t.equal(walk(wo, 0x1000, AccessKind.WRITE, WalkFlag.S1PTW), FaultType.PERMISSION, 'a TTW write is not');
});

t.test('trace records each descriptor read', async (t) => {
  const s = setup(CFG48['4k']);
  const leaf = s.tree.set(0x40_1000, 3, s2Page({ oa: OA }));
  const tr = new WalkTrace();
  t.equal(s2Walk(s.mem, s.cfg, 0x40_1000, AccessKind.READ, 0, s.out, tr), FaultType.NONE);
  t.equal(tr.n, 4);
  t.same(Array.from(tr.level.slice(0, 4)), [0, 1, 2, 3]);
  t.equal(tr.descPa[0], BASE);
  t.equal(tr.descPa[3], leaf);
  t.equal(tr.lo[3], s2Page({ oa: OA }).lo);
  // Reused: reset on the next walk.
  t.equal(s2Walk(s.mem, s.cfg, 2 ** 47, AccessKind.READ, 0, s.out, tr), FaultType.TRANSLATION);
  t.equal(tr.n, 1);
});

t.test('concatenated start tables are indexed across their whole size', async (t) => {
  // 4K, IAS 40, start level 1: two concatenated level-1 tables (8 KiB).
  const s = setup({ t0sz: 24, sl0: 1, tg0: '4k', ps: 2 });
  t.equal(s.cfg.concatTables, 2);
  const ipa = 2 ** 39 + 0x20_0000;
  s.tree.set(ipa, 2, s2Block({ level: 2, oa: 0x20_0000 }));
  const tr = new WalkTrace();
  t.equal(s2Walk(s.mem, s.cfg, ipa, AccessKind.READ, 0, s.out, tr), FaultType.NONE);
  t.equal(tr.descPa[0], BASE + 512 * 8, 'entry 512 lives in the second table');
});

t.test('s2PermFault and s2NeedsHwUpdate on cached leaves', async (t) => {
  const s = setup({ ...CFG48['4k'], ha: true, hd: true });
  const clean = s2Page({ oa: OA, ap: 'RO', dbm: true });
  t.equal(s2PermFault(s.cfg, clean.lo, clean.hi, AccessKind.WRITE, 0), false, 'DBM makes it writable');
  t.equal(s2NeedsHwUpdate(s.cfg, clean.lo, clean.hi, AccessKind.WRITE, 0), true, 'but a walk must dirty it');
  t.equal(s2NeedsHwUpdate(s.cfg, clean.lo, clean.hi, AccessKind.WRITE, WalkFlag.AT), false);
  t.equal(s2NeedsHwUpdate(s.cfg, clean.lo, clean.hi, AccessKind.READ, 0), false);
  const young = s2Page({ oa: OA, af: false });
  t.equal(s2NeedsHwUpdate(s.cfg, young.lo, young.hi, AccessKind.READ, 0), true);
  const ro = s2Page({ oa: OA, ap: 'RO' });
  t.equal(s2PermFault(s.cfg, ro.lo, ro.hi, AccessKind.WRITE, 0), true);
  t.equal(s2PermFault(s.cfg, ro.lo, ro.hi, AccessKind.READ, 0), false);
  t.throws(() => s2PermFault(s.cfg, ro.lo, ro.hi, 7 as AccessKind, 0), 'an unknown access kind is API misuse');
});

t.test('block descriptor RES0 OA bits are ignored (arm-s2.md §3.5)', async (t) => {
  const s = setup(CFG48['4k']);
  const d = s2Block({ level: 2, oa: 0x20_0000 });
  s.tree.set(0x40_0000, 2, { lo: d.lo | 0x1f_f000, hi: d.hi });
  t.equal(walk(s, 0x40_0000 + 0x1234), FaultType.NONE);
  t.equal(s.out.pa, 0x20_0000 + 0x1234);
});
