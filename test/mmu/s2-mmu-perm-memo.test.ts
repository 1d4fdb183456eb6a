// Differential test of the fill-time permission-mask memo of S2Mmu (permMask against permMaskOf, the unmemoised
// computation), and of the world-switch shortcut that skips BbmChecker.addRoot while the checker's roots are
// unchanged.
import t from 'tap';
import { ARMV8_0_PA40_FEATURES, ARMV8_4_PA48_FEATURES, QEMU_MAX_FEATURES, type CpuFeatures } from '../../src/arch/features.js';
import { hcr } from '../../src/arch/hcr.js';
import { vtcr } from '../../src/arch/vtcr.js';
import { vttbr } from '../../src/arch/vttbr.js';
import { PhysMem } from '../../src/mem/phys-mem.js';
import { BbmChecker } from '../../src/mmu/bbm-check.js';
import { S2Mmu } from '../../src/mmu/s2-mmu.js';
import { Tlb } from '../../src/mmu/tlb.js';

const RAM = 0x4000_0000;
const ROOT = 0x4800_0000;

/** A small deterministic PRNG (xorshift32). */
function prng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
}

interface PermApi {
  permMask(lo: number, hi: number): number;
  permMaskOf(lo: number, hi: number): number;
}

t.test('permMask memo agrees with the direct computation', async (t) => {
  const feats: CpuFeatures[] = [ARMV8_0_PA40_FEATURES, ARMV8_4_PA48_FEATURES, QEMU_MAX_FEATURES];
  const rnd = prng(0x5eed);
  let checked = 0;
  let mismatches = 0;
  for (const f of feats) {
    const mem = new PhysMem();
    mem.addRegion(RAM, 0x1000_0000);
    const mmu = new S2Mmu(mem, f, { tlb: new Tlb() });
    const api = mmu as unknown as PermApi;
    for (const ha of [false, true]) {
      for (const hd of [false, true]) {
        for (const fwb of [false, true]) {
          for (const ptw of [false, true]) {
            mmu.setRegs(
              vtcr({ t0sz: 25, sl0: 1, tg0: '4k', ps: 2, ha, hd }),
              vttbr({ baddr: ROOT, vmid: 3 }),
              hcr({ vm: true, rw: true, fwb, ptw }),
            );
            // Random leaves, then runs that keep the permission bits and change everything else (OA, SW, SH, …),
            // so that the memo is hit with values it must treat alike, and misses with values it must not.
            let lo = 0;
            let hi = 0;
            for (let k = 0; k < 4000; k++) {
              if (k % 4 === 0) {
                lo = (rnd() | 1) >>> 0;
                hi = rnd() >>> 0;
              } else {
                const keepLo = 0x3c | 0xc0 | 0x400;
                const keepHi = (1 << 19) | (1 << 21) | (1 << 22);
                lo = ((lo & keepLo) | (rnd() & ~keepLo) | 1) >>> 0;
                hi = ((hi & keepHi) | (rnd() & ~keepHi)) >>> 0;
              }
              if (api.permMask(lo, hi) !== api.permMaskOf(lo, hi)) mismatches++;
              checked++;
            }
          }
        }
      }
    }
  }
  t.equal(mismatches, 0, `${checked} descriptors under 48 configurations`);
});

t.test('a world switch skips addRoot only while the roots are unchanged', async (t) => {
  const mem = new PhysMem();
  mem.addRegion(RAM, 0x1000_0000);
  const tlb = new Tlb();
  const checker = new BbmChecker(mem, tlb);
  const mmu = new S2Mmu(mem, ARMV8_0_PA40_FEATURES, { tlb, checker });
  const host = [vtcr({ t0sz: 24, sl0: 1, tg0: '4k', ps: 2 }), vttbr({ baddr: ROOT, vmid: 0 }), hcr({ vm: true, rw: true })] as const;
  const guest = [vtcr({ t0sz: 24, sl0: 1, tg0: '4k', ps: 2 }), vttbr({ baddr: ROOT + 0x10_0000, vmid: 1 }), hcr({ vm: true, rw: true })] as const;
  let calls = 0;
  const add = checker.addRoot.bind(checker);
  checker.addRoot = (cfg) => {
    calls++;
    add(cfg);
  };
  mmu.setRegs(...host);
  mmu.setRegs(...guest);
  t.equal(calls, 2, 'each new configuration is registered');
  // One more round may register a configuration again (the roots changed after it was registered): a no-op.
  mmu.setRegs(...host);
  mmu.setRegs(...guest);
  const e = checker.rootsEpoch;
  const c = calls;
  for (let k = 0; k < 10; k++) {
    mmu.setRegs(...host);
    mmu.setRegs(...guest);
  }
  t.equal(calls, c, 'switching between registered configurations does not register them again');
  t.equal(checker.rootsEpoch, e);
  checker.removeRoot(1, ROOT + 0x10_0000);
  mmu.setRegs(...host);
  mmu.setRegs(...guest);
  t.equal(calls, c + 2, 'after a root was removed, both are registered again');
  t.not(checker.rootsEpoch, e, 'the removed root was added back');
  t.equal(checker.locate(ROOT + 0x10_0000, { vmid: -1, ipa: -1, size: 0, level: -1 }), true, 'the guest root is known again');
  // Another MMU sharing the checker registers its own configurations on its first switch to each.
  const mmu2 = new S2Mmu(mem, ARMV8_0_PA40_FEATURES, { tlb, checker });
  const c2 = calls;
  mmu2.setRegs(...host);
  mmu2.setRegs(...guest);
  t.equal(calls, c2 + 2, 'a second MMU registers on its first switch');
});
