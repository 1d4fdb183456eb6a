import t from 'tap';
import {
  ARMV8_0_PA40_FEATURES,
  ARMV8_4_PA48_FEATURES,
  QEMU_MAX_FEATURES,
  type CpuFeatures,
} from '../../src/arch/features.js';
import { FaultType } from '../../src/arch/fault.js';
import type { Granule } from '../../src/arch/granule.js';
import { OaFormat } from '../../src/arch/desc-codec.js';
import { hcr } from '../../src/arch/hcr.js';
import { vtcr, type VtcrFields } from '../../src/arch/vtcr.js';
import { vttbr } from '../../src/arch/vttbr.js';
import { S2Config, decodeS2Config, makeS2Config, s2StartEntryAddr } from '../../src/mmu/s2-config.js';

const H = hcr({ vm: true, rw: true });
const BASE = { baddr: 0x4800_0000 };

function cfgOf(v: VtcrFields, feat: CpuFeatures = QEMU_MAX_FEATURES, base = BASE, h = H): S2Config {
  return makeS2Config(vtcr(v), vttbr(base), h, feat);
}

t.test('start level, concatenation and table size (arm-s2.md §1.6, §1.7 worked examples)', async (t) => {
  const rows: [Granule, number, number, number, number, number][] = [
    // granule, IAS, SL0, start level, tsize, concatenated tables
    ['4k', 40, 1, 1, 13, 2],
    ['4k', 48, 2, 0, 12, 1],
    ['4k', 43, 1, 1, 16, 16],
    ['16k', 40, 1, 2, 18, 16],
    ['64k', 42, 1, 2, 16, 1],
    ['64k', 48, 2, 1, 9, 1],
    ['4k', 30, 0, 2, 12, 1],
    ['4k', 20, 3, 3, 11, 1],
  ];
  for (const [g, ias, sl0, start, tsize, concat] of rows) {
    const c = cfgOf({ t0sz: 64 - ias, sl0, tg0: g, ps: 5 });
    t.equal(c.fault, FaultType.NONE, `${g} IAS ${ias} valid`);
    t.equal(c.startLevel, start, `${g} IAS ${ias} start level`);
    t.equal(c.tsize, tsize, `${g} IAS ${ias} tsize`);
    t.equal(c.concatTables, concat, `${g} IAS ${ias} concatenated tables`);
    t.equal(c.levelEntries[start + 1], 2 ** (tsize - 3), 'start-level entries');
  }
  // 4K IAS 44 from level 1 would need 32 tables: inconsistent.
  t.equal(cfgOf({ t0sz: 20, sl0: 1, tg0: '4k', ps: 5 }).fault, FaultType.TRANSLATION);
});

t.test('SL0/SL2 validity against PAMax, TTST and DS (ASL S2InvalidSL, arm-s2.md §1.5)', async (t) => {
  const pa44: CpuFeatures = { ...ARMV8_4_PA48_FEATURES, paBits: 44, paRange: 4 };
  const pa42: CpuFeatures = { ...ARMV8_4_PA48_FEATURES, paBits: 42, paRange: 3 };
  const lpa2pa48: CpuFeatures = { ...QEMU_MAX_FEATURES, paBits: 48, paRange: 5 };
  const noTtst: CpuFeatures = { ...QEMU_MAX_FEATURES, ttst: false };
  // [label, vtcr, features, valid]
  const rows: [string, VtcrFields, CpuFeatures, boolean][] = [
    ['4K SL0=10 (L0) with PAMax 44', { t0sz: 20, sl0: 2, tg0: '4k', ps: 4 }, pa44, true],
    ['4K SL0=10 (L0) with PAMax 42', { t0sz: 22, sl0: 2, tg0: '4k', ps: 3 }, pa42, false],
    ['4K SL0=11 (L3) with TTST', { t0sz: 40, sl0: 3, tg0: '4k', ps: 5 }, QEMU_MAX_FEATURES, true],
    ['4K SL0=11 (L3) without TTST', { t0sz: 39, sl0: 3, tg0: '4k', ps: 5 }, noTtst, false],
    ['4K SL2 + SL0=00 (L−1) with PAMax 52', { t0sz: 12, sl0: 0, sl2: true, ds: true, tg0: '4k', ps: 6 }, QEMU_MAX_FEATURES, true],
    ['4K SL2 + SL0=01', { t0sz: 12, sl0: 1, sl2: true, ds: true, tg0: '4k', ps: 6 }, QEMU_MAX_FEATURES, false],
    ['4K SL2 with PAMax 48 (QEMU does not check: §11 #2)', { t0sz: 16, sl0: 0, sl2: true, ds: true, tg0: '4k', ps: 5 }, lpa2pa48, false],
    ['16K SL0=11 (L0) with DS', { t0sz: 12, sl0: 3, ds: true, tg0: '16k', ps: 6 }, QEMU_MAX_FEATURES, true],
    ['16K SL0=11 without DS', { t0sz: 16, sl0: 3, tg0: '16k', ps: 5 }, QEMU_MAX_FEATURES, false],
    ['16K SL0=11 with DS, PAMax 48 (§11 #3)', { t0sz: 16, sl0: 3, ds: true, tg0: '16k', ps: 5 }, lpa2pa48, false],
    ['16K SL0=10 (L1) with PAMax 42', { t0sz: 22, sl0: 2, tg0: '16k', ps: 3 }, pa42, true],
    ['16K SL0=10 (L1) with PAMax 40', { t0sz: 24, sl0: 2, tg0: '16k', ps: 2 }, ARMV8_0_PA40_FEATURES, false],
    ['64K SL0=11 reserved', { t0sz: 16, sl0: 3, tg0: '64k', ps: 5 }, QEMU_MAX_FEATURES, false],
    ['64K SL0=10 (L1) with PAMax 44', { t0sz: 20, sl0: 2, tg0: '64k', ps: 4 }, pa44, true],
    ['64K SL0=10 (L1) with PAMax 42', { t0sz: 22, sl0: 2, tg0: '64k', ps: 3 }, pa42, false],
  ];
  for (const [label, v, feat, valid] of rows) {
    const c = cfgOf(v, feat);
    t.equal(c.fault, valid ? FaultType.NONE : FaultType.TRANSLATION, label);
    t.equal(c.faultLevel, 0);
  }
});

t.test('T0SZ limits (ASL S2MinTxSZ / MaxTxSZ, arm-s2.md §1.4)', async (t) => {
  // [label, granule, t0sz, sl0, features, hcr.rw, valid]
  const rows: [string, Granule, number, number, CpuFeatures, boolean, boolean][] = [
    ['PAMax 48: T0SZ 16 ok', '4k', 16, 2, ARMV8_4_PA48_FEATURES, true, true],
    ['PAMax 48: T0SZ 15 faults', '4k', 15, 2, ARMV8_4_PA48_FEATURES, true, false],
    ['PAMax 40: T0SZ 24 ok', '4k', 24, 1, ARMV8_0_PA40_FEATURES, true, true],
    ['PAMax 40: T0SZ 22 faults (QEMU accepts: §11 #1)', '4k', 22, 1, ARMV8_0_PA40_FEATURES, true, false],
    ['PAMax 52, 4K DS=0: min 16', '4k', 15, 2, QEMU_MAX_FEATURES, true, false],
    ['PAMax 52, 64K: min 12', '64k', 12, 2, QEMU_MAX_FEATURES, true, true],
    ['max 39 without TTST', '4k', 40, 0, ARMV8_0_PA40_FEATURES, true, false],
    ['max 48 with TTST (4K)', '4k', 48, 3, QEMU_MAX_FEATURES, true, true],
    ['49 above TTST max (4K)', '4k', 49, 3, QEMU_MAX_FEATURES, true, false],
    ['max 47 with TTST (64K)', '64k', 47, 0, QEMU_MAX_FEATURES, true, true],
    ['48 above TTST max (64K)', '64k', 48, 0, QEMU_MAX_FEATURES, true, false],
    ['AArch32 EL1: a 40-bit IPA is always allowed', '4k', 24, 1, { ...ARMV8_0_PA40_FEATURES, paBits: 36, paRange: 1 }, false, true],
    ['AArch64 EL1 with PAMax 36: T0SZ 24 faults', '4k', 24, 1, { ...ARMV8_0_PA40_FEATURES, paBits: 36, paRange: 1 }, true, false],
  ];
  for (const [label, g, t0sz, sl0, feat, rw, valid] of rows) {
    const c = cfgOf({ t0sz, sl0, tg0: g, ps: 5 }, feat, BASE, hcr({ vm: true, rw }));
    t.equal(c.fault, valid ? FaultType.NONE : FaultType.TRANSLATION, label);
  }
});

t.test('effective granule: unimplemented or reserved TG0 → smallest implemented (QEMU sanitize_gran_size)', async (t) => {
  t.equal(cfgOf({ t0sz: 25, sl0: 1, tg0: 'reserved', ps: 5 }).granule, '4k');
  const only64: CpuFeatures = { ...QEMU_MAX_FEATURES, s2Gran4k: false, s2Gran16k: false };
  t.equal(cfgOf({ t0sz: 25, sl0: 1, tg0: '4k', ps: 5 }, only64).granule, '64k');
  const no4k: CpuFeatures = { ...QEMU_MAX_FEATURES, s2Gran4k: false };
  t.equal(cfgOf({ t0sz: 25, sl0: 1, tg0: '4k', ps: 5 }, no4k).granule, '16k');
  t.equal(cfgOf({ t0sz: 25, sl0: 1, tg0: '16k', ps: 5 }).granule, '16k');
  t.equal(cfgOf({ t0sz: 25, sl0: 1, tg0: '64k', ps: 5 }).gShift, 16);
});

t.test('effective DS, SL2, HA, HD, FWB, VMID', async (t) => {
  const ds64 = cfgOf({ t0sz: 16, sl0: 2, tg0: '64k', ps: 6, ds: true });
  t.equal(ds64.ds, false, 'DS is ignored with 64K');
  t.equal(ds64.oaFormat, OaFormat.LPA64K);
  t.equal(ds64.addr52, true, '64K with PS=52 and FEAT_LPA uses the 52-bit base form');
  const noLpa2 = cfgOf({ t0sz: 16, sl0: 2, tg0: '4k', ps: 5, ds: true, sl2: true }, ARMV8_4_PA48_FEATURES);
  t.equal(noLpa2.ds, false, 'DS is ignored without stage-2 LPA2');
  t.equal(noLpa2.sl2, false);
  t.equal(noLpa2.startLevel, 0);
  t.equal(noLpa2.oaFormat, OaFormat.OA48);
  const ds4 = cfgOf({ t0sz: 16, sl0: 2, tg0: '4k', ps: 5, ds: true, sh0: 2 });
  t.match(ds4, { ds: true, oaFormat: OaFormat.DS, addr52: true, oas: 48, sh0: 2 });
  t.equal(cfgOf({ t0sz: 16, sl0: 2, tg0: '4k', ps: 5, hd: true }).hd, false, 'HD needs HA');
  t.match(cfgOf({ t0sz: 16, sl0: 2, tg0: '4k', ps: 5, ha: true, hd: true }), { ha: true, hd: true });
  t.match(cfgOf({ t0sz: 24, sl0: 1, tg0: '4k', ps: 2, ha: true, hd: true }, ARMV8_0_PA40_FEATURES), { ha: false, hd: false });
  t.equal(cfgOf({ t0sz: 16, sl0: 2, tg0: '4k', ps: 5 }, QEMU_MAX_FEATURES, BASE, hcr({ vm: true, rw: true, fwb: true })).fwb, true);
  t.equal(cfgOf({ t0sz: 24, sl0: 1, tg0: '4k', ps: 2 }, ARMV8_0_PA40_FEATURES, BASE, hcr({ vm: true, rw: true, fwb: true })).fwb, false);
  const vb = { baddr: 0x4800_0000, vmid: 0xab12 };
  t.equal(cfgOf({ t0sz: 16, sl0: 2, tg0: '4k', ps: 5, vs: true }, QEMU_MAX_FEATURES, vb).vmid, 0xab12);
  t.equal(cfgOf({ t0sz: 16, sl0: 2, tg0: '4k', ps: 5 }, QEMU_MAX_FEATURES, vb).vmid, 0x12, 'VS=0: 8-bit VMID');
  t.equal(cfgOf({ t0sz: 24, sl0: 1, tg0: '4k', ps: 2, vs: true }, ARMV8_0_PA40_FEATURES, vb).vmid, 0x12, 'no FEAT_VMID16');
  t.equal(cfgOf({ t0sz: 16, sl0: 2, tg0: '4k', ps: 5 }, QEMU_MAX_FEATURES, BASE, hcr({ rw: true })).enabled, false);
});

t.test('OAS: PS clamped to PAMax, and to 48 unless FEAT_LPA with 64K or LPA2 (ASL PhysicalAddressSize, §1.2)', async (t) => {
  const rows: [VtcrFields, CpuFeatures, number][] = [
    [{ t0sz: 24, sl0: 1, tg0: '4k', ps: 6 }, ARMV8_0_PA40_FEATURES, 40],
    [{ t0sz: 24, sl0: 1, tg0: '4k', ps: 7 }, ARMV8_4_PA48_FEATURES, 48],
    [{ t0sz: 24, sl0: 1, tg0: '4k', ps: 6 }, QEMU_MAX_FEATURES, 52], // FEAT_LPA2 present (QEMU caps at 48; no outcome differs)
    [{ t0sz: 24, sl0: 1, tg0: '4k', ps: 6 }, { ...QEMU_MAX_FEATURES, s2Lpa2Gran4k: false, s2Lpa2Gran16k: false }, 48],
    [{ t0sz: 24, sl0: 1, tg0: '4k', ps: 6, ds: true }, QEMU_MAX_FEATURES, 52],
    [{ t0sz: 24, sl0: 1, tg0: '64k', ps: 6 }, QEMU_MAX_FEATURES, 52],
    [{ t0sz: 24, sl0: 1, tg0: '4k', ps: 0 }, QEMU_MAX_FEATURES, 32],
    [{ t0sz: 24, sl0: 1, tg0: '4k', ps: 3 }, QEMU_MAX_FEATURES, 42],
  ];
  for (const [v, f, oas] of rows) {
    const c = cfgOf(v, f);
    t.equal(c.oas, oas, `PS=${v.ps} ${v.tg0} DS=${v.ds === true} PAMax ${f.paBits}`);
    t.equal(c.oasSize, 2 ** oas);
  }
});

t.test('table base: aligned down to the initial-table size; beyond OAS is an address-size fault', async (t) => {
  // 4K, IAS 40 from L1: 8 KiB of concatenated tables.
  const c = cfgOf({ t0sz: 24, sl0: 1, tg0: '4k', ps: 2 }, QEMU_MAX_FEATURES, { baddr: 0x4800_1ffe });
  t.equal(c.baseAddr, 0x4800_0000, 'misaligned BADDR bits are treated as zero (§11 #18)');
  t.equal(s2StartEntryAddr(c, 2 ** 39 + 2 ** 30), 0x4800_0000 + 513 * 8);
  const cnp = makeS2Config(vtcr({ t0sz: 24, sl0: 1, tg0: '4k', ps: 2 }), vttbr({ baddr: 0x4800_0000, cnp: true }), H, QEMU_MAX_FEATURES);
  t.equal(cnp.baseAddr, 0x4800_0000, 'CnP never contributes');
  const beyond = cfgOf({ t0sz: 32, sl0: 1, tg0: '4k', ps: 0 }, QEMU_MAX_FEATURES, { baddr: 2 ** 32 });
  t.equal(beyond.fault, FaultType.ADDRESS_SIZE);
  // DS with PS < 52: TTBR[5:2] are still BADDR[51:48], so they give an address-size fault (ASL; §2 edge case).
  const ds = makeS2Config(vtcr({ t0sz: 16, sl0: 2, tg0: '4k', ps: 5, ds: true }), vttbr({ baddr: 2 ** 48, addr52: true }), H, QEMU_MAX_FEATURES);
  t.equal(ds.fault, FaultType.ADDRESS_SIZE);
});

t.test('decodeS2Config refills a preallocated object completely', async (t) => {
  const c = new S2Config();
  const bad = vtcr({ t0sz: 63, sl0: 3, tg0: '64k', ps: 0 });
  const good = vtcr({ t0sz: 16, sl0: 2, tg0: '4k', ps: 5 });
  const b = vttbr(BASE);
  decodeS2Config(bad.lo, bad.hi, b.lo, b.hi, H.lo, H.hi, QEMU_MAX_FEATURES, c);
  t.equal(c.fault, FaultType.TRANSLATION);
  decodeS2Config(good.lo, good.hi, b.lo, b.hi, H.lo, H.hi, QEMU_MAX_FEATURES, c);
  t.same(c, makeS2Config(good, b, H, QEMU_MAX_FEATURES));
});
