/**
 * The walker's descriptor reads through the memory's flat window (PhysMem): tables spread over several flat regions,
 * a region straddling the 4 GiB boundary (two windows), sparse regions and unbacked table addresses must give
 * exactly what the same tables give in an all-sparse memory (every result field and every trace step).
 */
import t from 'tap';
import { s2Page, s2Table } from '../../src/arch/desc-codec.js';
import { QEMU_MAX_FEATURES } from '../../src/arch/features.js';
import { FaultType } from '../../src/arch/fault.js';
import { granuleShift, type Granule } from '../../src/arch/granule.js';
import { hcr } from '../../src/arch/hcr.js';
import { vtcr, type VtcrFields } from '../../src/arch/vtcr.js';
import { vttbr } from '../../src/arch/vttbr.js';
import { PhysMem } from '../../src/mem/phys-mem.js';
import { makeS2Config } from '../../src/mmu/s2-config.js';
import { AccessKind, s2Walk } from '../../src/mmu/s2-walk.js';
import { WalkResult } from '../../src/mmu/walk-result.js';
import { WalkTrace } from '../../src/mmu/walk-trace.js';
import { S2Tree } from './helpers/s2-tree.js';

const MiB = 2 ** 20;
/** Root and first tables: 16 MiB at 1 GiB. */
const R1 = { base: 0x4000_0000, size: 16 * MiB };
/** 4 MiB straddling 4 GiB: tables allocated across the boundary land in two 4 GiB blocks of one region. */
const R2 = { base: 2 ** 32 - 2 * MiB, size: 4 * MiB };
/** 32 MiB at 8 GiB. */
const R3 = { base: 2 ** 33, size: 32 * MiB };
/** Unbacked: a table descriptor pointing here takes an SEA on the next read. */
const HOLE = 2 ** 34;

/** Memory kinds: every region flat; R2 flat and the others sparse; all sparse (the reference). */
const KINDS = { flat: 2 ** 32, mixed: 8 * MiB, sparse: 0 } as const;

const CFGS: { granule: Granule; v: VtcrFields }[] = [
  { granule: '4k', v: { t0sz: 16, sl0: 2, tg0: '4k', ps: 5 } }, // 48-bit OA, start level 0
  { granule: '16k', v: { t0sz: 16, sl0: 2, tg0: '16k', ps: 5 } }, // start level 1, two concatenated tables
  { granule: '64k', v: { t0sz: 12, sl0: 2, tg0: '64k', ps: 6 } }, // 52-bit OA (FEAT_LPA): the general NLTA path
];

function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1_103_515_245) + 12_345) >>> 0;
    return s / 2 ** 32;
  };
}

for (const { granule, v } of CFGS) {
  t.test(`${granule}: flat, mixed and sparse memories walk identically`, async (t) => {
    const G = granuleShift(granule);
    const ias = 64 - v.t0sz;
    const pa52 = v.ps === 6;
    const build = (flatMaxBytes: number): { mem: PhysMem; cfg: ReturnType<typeof makeS2Config> } => {
      const mem = new PhysMem({ flatMaxBytes });
      for (const r of [R1, R2, R3]) mem.addRegion(r.base, r.size);
      const cfg = makeS2Config(vtcr(v), vttbr({ baddr: R1.base, vmid: 3 }), hcr({ vm: true, rw: true }), QEMU_MAX_FEATURES);
      t.equal(cfg.fault, FaultType.NONE);
      const geo = { granule, ias, startLevel: cfg.startLevel, base: R1.base, pa52 };
      // Three table arenas: after the root in R1, across the 4 GiB boundary in R2, and in R3.
      const trees = [
        new S2Tree(mem, geo, R1.base + 2 ** G * 16),
        new S2Tree(mem, geo, 2 ** 32 - 3 * 2 ** G),
        new S2Tree(mem, geo, R3.base),
      ];
      const rand = lcg(0xc0ffee);
      for (let k = 0; k < 120; k++) {
        const ipa = Math.floor(rand() * 2 ** (ias - G)) * 2 ** G;
        const tree = trees[k % 3]!;
        tree.set(ipa, 3, s2Page({ oa: Math.floor(rand() * 2 ** 20) * 2 ** G, granule, lpa: pa52, ap: 'RW' }));
      }
      // One level-1 table descriptor to an unbacked address.
      const bad = s2Table({ nlta: HOLE, granule, lpa: pa52 });
      trees[0]!.set(2 ** (ias - 1), cfg.startLevel + 1 < 3 ? cfg.startLevel + 1 : cfg.startLevel, bad);
      return { mem, cfg };
    };
    const mems = { flat: build(KINDS.flat), mixed: build(KINDS.mixed), sparse: build(KINDS.sparse) };
    t.ok(mems.flat.mem.regionList.every((r) => r.flat !== null), 'flat: all regions flat');
    t.same(mems.mixed.mem.regionList.map((r) => r.flat !== null), [false, true, false], 'mixed: only R2 flat');
    // Walk the mapped IPAs (re-drawn from the same sequence), their neighbours and the unbacked branch.
    const rand = lcg(0xc0ffee);
    const ipas: number[] = [2 ** (ias - 1), 2 ** (ias - 1) + 2 ** G * 5];
    for (let k = 0; k < 120; k++) {
      const ipa = Math.floor(rand() * 2 ** (ias - G)) * 2 ** G;
      rand();
      ipas.push(ipa + 8 * (k % 7), ipa + 2 ** G);
    }
    const seen = new Set<string>();
    let windowMoves = 0;
    for (const ipa of ipas) {
      const got: Record<string, string> = {};
      for (const [name, { mem, cfg }] of Object.entries(mems)) {
        const out = new WalkResult();
        const trace = new WalkTrace();
        const winBefore = mem.winHi * 2 ** 32 + mem.winLo;
        s2Walk(mem, cfg, ipa, AccessKind.READ, 0, out, trace);
        if (name === 'flat' && mem.winHi * 2 ** 32 + mem.winLo !== winBefore) windowMoves++;
        got[name] = JSON.stringify({ out, trace });
        seen.add(FaultType.NONE === out.fault ? 'ok' : `fault ${out.fault}`);
      }
      if (got.flat !== got.sparse || got.mixed !== got.sparse) {
        t.fail(`IPA 0x${ipa.toString(16)}: flat ${got.flat}\nmixed ${got.mixed}\nsparse ${got.sparse}`);
        return;
      }
    }
    t.ok(seen.has('ok') && seen.has(`fault ${FaultType.TRANSLATION}`) && seen.has(`fault ${FaultType.SEA_WALK}`), `outcomes ${[...seen].join(', ')}`);
    t.ok(windowMoves > 10, `the window moved between regions and 4 GiB blocks (${windowMoves} times)`);
  });
}
