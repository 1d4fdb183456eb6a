/**
 * `s2emu decode <hex> --granule 4k --level 3 [--ds] [--pa52]`: prints one stage-2 descriptor's fields (Arm ARM D8.3;
 * reference arm-s2.md §3), decoded by `arch/desc-codec.ts` exactly as the walker reads them.
 */

import { parseHex64, u64ToHex } from '../../arch/bits.js';
import { decodeS2Desc } from '../../arch/desc-codec.js';
import { Granule, minLevel } from '../../arch/granule.js';
import { ExitCode, parseCommandArgs, usageError, type Command } from '../command.js';
import { describeDescLong } from '../format.js';

const USAGE = `usage: s2emu decode <hex> --granule 4k|16k|64k --level N [--ds] [--pa52]

Prints the fields of one stage-2 descriptor read at lookup level N (-1..3).
  --ds     VTCR_EL2.DS = 1 (FEAT_LPA2: OA[51:50] in bits[9:8], OA[49:48] in bits[49:48])
  --pa52   the PE has 52-bit PAs (64K: OA[51:48] in bits[15:12], level-1 blocks)`;

interface DecodeArgs {
  granule?: string;
  level?: string;
  ds?: boolean;
  pa52?: boolean;
}

/** `s2emu decode`. */
export const decodeCommand: Command = {
  name: 'decode',
  summary: "print one stage-2 descriptor's fields",
  usage: USAGE,
  run(argv, io) {
    const a = parseCommandArgs<DecodeArgs>(argv, {
      granule: { type: 'string' },
      level: { type: 'string' },
      ds: { type: 'boolean' },
      pa52: { type: 'boolean' },
    });
    if (!a.ok) return usageError(io, this, a.message);
    if (a.positionals.length !== 1) return usageError(io, this, 'expected exactly one descriptor value');
    const raw = a.positionals[0]!; // JUSTIFY: length checked.
    const v = parseHex64(raw);
    if (v === null) return usageError(io, this, `expected the descriptor as hex "0x…" (at most 64 bits), got ${JSON.stringify(raw)}`);
    const g = a.values.granule ?? '4k';
    if (g !== Granule.G4K && g !== Granule.G16K && g !== Granule.G64K) return usageError(io, this, `expected --granule 4k, 16k or 64k, got ${JSON.stringify(g)}`);
    const ds = a.values.ds === true;
    if (ds && g === Granule.G64K) return usageError(io, this, '--ds applies to the 4k and 16k granules only');
    const levelText = a.values.level;
    if (levelText === undefined) return usageError(io, this, 'expected --level N');
    const level = Number(levelText);
    const lo = minLevel(g, ds);
    if (!Number.isInteger(level) || level < lo || level > 3) return usageError(io, this, `expected --level between ${lo} and 3 for ${g}${ds ? ' with DS' : ''}, got ${JSON.stringify(levelText)}`);
    const d = decodeS2Desc(v.lo, v.hi, { granule: g, level, ds, pa52: a.values.pa52 === true });
    io.out(`${u64ToHex(v.lo, v.hi, true)}  (${g}, level ${level}${ds ? ', DS' : ''}${a.values.pa52 === true ? ', 52-bit PA' : ''})\n`);
    for (const line of describeDescLong(d)) io.out(`  ${line}\n`);
    return ExitCode.OK;
  },
};
