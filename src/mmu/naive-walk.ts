/**
 * A deliberately simple stage-2 walker written with BigInt, the way a JavaScript developer would first write it
 * from the Arm ARM (D8.3; ASL `AArch64.S2Walk`; reference arm-s2.md §1.5–§1.7, §3, §4, §5). It exists as the
 * independent reference in differential property tests of `s2-walk.ts` and as the `walk-bigint-baseline` of the
 * benchmarks. It shares no code with the real walker beyond `PhysMem` and the feature record.
 *
 * Scope: 4K/16K/64K granules with 48-bit descriptors (no DS, no FEAT_LPA formats), configurations valid for the
 * PE, translation / address-size / access-flag / permission outcomes, HA/HD updates. It allocates freely.
 */

import type { CpuFeatures } from '../arch/features.js';
import type { PhysMem } from '../mem/phys-mem.js';

/** Outcome names of the naive walker (the oracle's fault names plus `sea_walk` and `none`). */
export type NaiveFault = 'none' | 'translation' | 'address_size' | 'access_flag' | 'permission' | 'sea_walk';

/** What {@link naiveS2Walk} returns. */
export interface NaiveWalkOutcome {
  fault: NaiveFault;
  level: number;
  pa: bigint;
}

const PS_BITS = [32, 36, 40, 42, 44, 48, 52, 52];

function bits(v: bigint, hi: number, lo: number): bigint {
  return (v >> BigInt(lo)) & ((1n << BigInt(hi - lo + 1)) - 1n);
}

/**
 * Walks `ipa` through the stage-2 tables VTCR_EL2/VTTBR_EL2 describe, with BigInt arithmetic throughout.
 *
 * @param access `read`, `write` or `exec`.
 * @param el0 the access comes from EL0 (XNX).
 * @param at an AT instruction: no dirty-state update.
 */
export function naiveS2Walk(
  mem: PhysMem,
  vtcr: bigint,
  vttbr: bigint,
  feat: CpuFeatures,
  ipa: bigint,
  access: 'read' | 'write' | 'exec',
  el0 = false,
  at = false,
): NaiveWalkOutcome {
  const t0sz = Number(bits(vtcr, 5, 0));
  const sl0 = Number(bits(vtcr, 7, 6));
  const tg0 = Number(bits(vtcr, 15, 14));
  const ps = Number(bits(vtcr, 18, 16));
  const ha = feat.hafdbs >= 1 && bits(vtcr, 21, 21) === 1n;
  const hd = ha && feat.hafdbs >= 2 && bits(vtcr, 22, 22) === 1n;
  const granuleBits = tg0 === 0 ? 12 : tg0 === 2 ? 14 : 16;
  const stride = granuleBits - 3;
  const startLevel = granuleBits === 12 ? [2, 1, 0, 3][sl0]! : 3 - sl0; // JUSTIFY: sl0 is 2 bits.
  const ias = 64 - t0sz;
  const oas = Math.min(PS_BITS[ps]!, feat.paBits, 48); // JUSTIFY: ps is 3 bits.

  if (ipa >= 1n << BigInt(ias)) return { fault: 'translation', level: 0, pa: 0n };

  const levelsAfterStart = 3 - startLevel;
  const startShift = levelsAfterStart * stride + granuleBits;
  const tableSizeLog2 = ias - startShift + 3;
  let table = bits(vttbr, 47, 1) << 1n;
  table = (table >> BigInt(tableSizeLog2)) << BigInt(tableSizeLog2);
  if (table >= 1n << BigInt(oas)) return { fault: 'address_size', level: 0, pa: 0n };

  let level = startLevel;
  while (true) {
    const shift = granuleBits + (3 - level) * stride;
    const indexBits = level === startLevel ? ias - shift : stride;
    const index = (ipa >> BigInt(shift)) & ((1n << BigInt(indexBits)) - 1n);
    const descAddr = table + index * 8n;
    const word = { lo: 0, hi: 0 };
    if (!mem.read64(Number(descAddr), word)) return { fault: 'sea_walk', level, pa: 0n };
    const desc = (BigInt(word.hi) << 32n) | BigInt(word.lo);
    if ((desc & 1n) === 0n) return { fault: 'translation', level, pa: 0n };
    const isTableOrPage = (desc & 2n) !== 0n;
    if (isTableOrPage && level < 3) {
      const next = bits(desc, 47, granuleBits) << BigInt(granuleBits);
      if (next >= 1n << BigInt(oas)) return { fault: 'address_size', level, pa: 0n };
      table = next;
      level++;
      continue;
    }
    if (!isTableOrPage) {
      let blockOk = false;
      if (granuleBits === 12) blockOk = level === 1 || level === 2;
      if (granuleBits === 14) blockOk = level === 2;
      if (granuleBits === 16) blockOk = level === 2 || (level === 1 && feat.paBits >= 52);
      if (!blockOk) return { fault: 'translation', level, pa: 0n };
    }
    const oa = bits(desc, 47, shift) << BigInt(shift);
    const pa = oa | (ipa & ((1n << BigInt(shift)) - 1n));
    if (pa >= 1n << BigInt(oas)) return { fault: 'address_size', level, pa: 0n };
    const af = (desc & (1n << 10n)) !== 0n;
    if (!af && !ha) return { fault: 'access_flag', level, pa: 0n };
    const canRead = (desc & (1n << 6n)) !== 0n;
    const dbm = (desc & (1n << 51n)) !== 0n;
    const canWrite = (desc & (1n << 7n)) !== 0n || (hd && dbm);
    const memAttr = bits(desc, 5, 2);
    const device = (memAttr & 0b1100n) === 0n;
    const xn = Number(bits(desc, 54, 53));
    let allowed: boolean;
    if (access === 'read') allowed = canRead;
    else if (access === 'write') allowed = canWrite;
    else if (device) allowed = false;
    else if (!feat.xnx) allowed = (xn & 2) === 0;
    else allowed = el0 ? xn === 0 || xn === 1 : xn === 0 || xn === 3;
    if (!allowed) return { fault: 'permission', level, pa: 0n };
    let updated = desc;
    if (ha) updated |= 1n << 10n;
    if (access === 'write' && !at && hd && dbm) updated |= 1n << 7n;
    if (updated !== desc) mem.write64(Number(descAddr), Number(updated & 0xffff_ffffn), Number(updated >> 32n));
    return { fault: 'none', level, pa };
  }
}
