// Test helper: a small 4K stage-2 machine (IAS 32 bits, start level 1, PS 40 bits) built with the descriptor builders.
import { makeS2Config, type S2Config } from '../../src/mmu/s2-config.js';
import { vtcr } from '../../src/arch/vtcr.js';
import { vttbr } from '../../src/arch/vttbr.js';
import { hcr } from '../../src/arch/hcr.js';
import { QEMU_MAX_FEATURES } from '../../src/arch/features.js';
import { PhysMem } from '../../src/mem/phys-mem.js';
import type { Desc } from '../../src/arch/desc-codec.js';

export const RAM = { base: 0x4000_0000, size: 0x8000_0000 };
export const L1 = 0x4800_0000;
export const L2 = 0x4800_1000;
export const L3 = 0x4800_2000;

export interface Machine {
  mem: PhysMem;
  cfg: S2Config;
  put(pa: number, d: Desc): void;
  get(pa: number): Desc;
}

export function machine(opts: { ha?: boolean; hd?: boolean; fwb?: boolean } = {}): Machine {
  const mem = new PhysMem();
  mem.addRegion(RAM.base, RAM.size);
  const cfg = makeS2Config(
    vtcr({ t0sz: 32, sl0: 1, tg0: '4k', ps: 2, ha: opts.ha === true, hd: opts.hd === true }),
    vttbr({ baddr: L1 }),
    hcr({ vm: true, rw: true, fwb: opts.fwb === true }),
    QEMU_MAX_FEATURES,
  );
  return {
    mem,
    cfg,
    put: (pa, d) => void mem.write64(pa, d.lo, d.hi),
    get: (pa) => {
      const o = { lo: 0, hi: 0 };
      mem.read64(pa, o);
      return o;
    },
  };
}

/** IPA of L1 index i1, L2 index i2, L3 index i3 (4K). */
export function ipaOf(i1: number, i2: number, i3: number, off = 0): number {
  return i1 * 2 ** 30 + i2 * 2 ** 21 + i3 * 2 ** 12 + off;
}
