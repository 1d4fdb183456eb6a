/**
 * Text formatting shared by the CLI commands: descriptors (decoded fields with Arm names), walk-trace steps and
 * fixture mismatches. Edge code: allocates freely.
 */

import { u64ToHex } from '../arch/bits.js';
import type { S2DescDecoded } from '../arch/desc-codec.js';
import type { TraceStep } from '../check/fixture-run.js';

const hexN = (n: number): string => '0x' + n.toString(16);

const MEMATTR_FWB0 = ['Device-nGnRnE', 'Device-nGnRE', 'Device-nGRE', 'Device-GRE'];
const CACHE = ['reserved', 'NC', 'WT', 'WB'];

/** Name of a stage-2 MemAttr[3:0] with HCR_EL2.FWB = 0 (arm-s2.md §9.1). */
export function memAttrName(memAttr: number): string {
  const outer = (memAttr >>> 2) & 3;
  const inner = memAttr & 3;
  if (outer === 0) return MEMATTR_FWB0[inner]!; // JUSTIFY: inner in 0..3.
  if (inner === 0) return 'reserved';
  return `Normal o${CACHE[outer]} i${CACHE[inner]}`;
}

const S2AP_NAMES = ['none', 'RO', 'WO', 'RW'];
const SH_NAMES = ['NSH', 'reserved', 'OSH', 'ISH'];
const XN_NAMES = ['exec EL1+EL0', 'no exec EL1 (XNX)', 'no exec', 'no exec EL0 (XNX)'];

/** One line with a descriptor's decoded fields (`page oa=0x50001000 MemAttr=0xf(Normal oWB iWB) S2AP=RW …`). */
export function describeDesc(d: S2DescDecoded): string {
  if (d.kind === 'invalid') {
    const why = (d.typeBits & 1) === 0 ? 'valid=0' : d.typeBits === 1 ? 'block type where no block is allowed' : 'reserved type';
    return `invalid (${why})`;
  }
  if (d.kind === 'table') return `table next=${hexN(d.addr)}${d.restLo !== 0 || d.restHi !== 0 ? ` other-bits=${u64ToHex(d.restLo, d.restHi)}` : ''}`;
  const parts = [
    `${d.kind} oa=${hexN(d.addr)}`,
    `MemAttr=${hexN(d.memAttr)}(${memAttrName(d.memAttr)})`,
    `S2AP=${S2AP_NAMES[d.s2ap]}`,
    `SH=${SH_NAMES[d.sh]}`,
    `AF=${d.af ? 1 : 0}`,
    `XN=${d.xn.toString(2).padStart(2, '0')}(${XN_NAMES[d.xn]})`,
  ];
  if (d.dbm) parts.push('DBM=1');
  if (d.cont) parts.push('Contiguous=1');
  if (d.fnxs) parts.push('FnXS=1');
  if (d.nT) parts.push('nT=1');
  if (d.sw !== 0) parts.push(`SW=${hexN(d.sw)}`);
  if (d.pbha !== 0) parts.push(`PBHA=${hexN(d.pbha)}`);
  if (d.restLo !== 0 || d.restHi !== 0) parts.push(`other-bits=${u64ToHex(d.restLo, d.restHi)}`);
  return parts.join(' ');
}

/** Every decoded field, one per line (the `decode` command). */
export function describeDescLong(d: S2DescDecoded): string[] {
  const lines = [`kind      ${d.kind}`, `type      0b${d.typeBits.toString(2).padStart(2, '0')} (bits[1:0])`];
  if (d.kind === 'table') lines.push(`NLTA      ${hexN(d.addr)}`);
  if (d.kind === 'block' || d.kind === 'page') {
    lines.push(
      `OA        ${hexN(d.addr)}`,
      `MemAttr   0b${d.memAttr.toString(2).padStart(4, '0')} (bits[5:2]; FWB=0: ${memAttrName(d.memAttr)})`,
      `S2AP      0b${d.s2ap.toString(2).padStart(2, '0')} (bits[7:6]: ${S2AP_NAMES[d.s2ap]})`,
      `SH        0b${d.sh.toString(2).padStart(2, '0')} (bits[9:8]: ${SH_NAMES[d.sh]})`,
      `AF        ${d.af ? 1 : 0} (bit[10])`,
      `FnXS      ${d.fnxs ? 1 : 0} (bit[11])`,
      `nT        ${d.nT ? 1 : 0} (bit[16])`,
      `DBM       ${d.dbm ? 1 : 0} (bit[51])`,
      `Contig    ${d.cont ? 1 : 0} (bit[52])`,
      `XN        0b${d.xn.toString(2).padStart(2, '0')} (bits[54:53]: ${XN_NAMES[d.xn]})`,
      `SW        0x${d.sw.toString(16)} (bits[58:55])`,
      `PBHA      0x${d.pbha.toString(16)} (bits[62:59])`,
    );
  }
  lines.push(`other     ${u64ToHex(d.restLo, d.restHi, true)} (bits not in any field above)`);
  return lines;
}

/** One walk step: `L2 @0x48001008 = 0x0000_0000_4800_2003 table next=0x48002000`. */
export function formatTraceStep(s: TraceStep): string {
  const lvl = s.level < 0 ? `L${s.level}` : `L${s.level} `;
  return `${lvl} @${hexN(s.descPa)} = ${u64ToHex(s.lo, s.hi, true)}  ${describeDesc(s.decoded)}`;
}

/** A value as printed in mismatch lines. */
export function showValue(v: unknown): string {
  return v === undefined ? '(absent)' : JSON.stringify(v);
}
