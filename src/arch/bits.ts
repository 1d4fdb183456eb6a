/**
 * 64-bit values as two 32-bit halves.
 *
 * This module plays the part the (non-existent) `arraybuffer-bits` package would: everything s2emu keeps in typed
 * arrays is a pair `lo` = bits[31:0], `hi` = bits[63:32], little-endian as in Arm memory. JavaScript bitwise
 * operators work on int32, so every helper here normalises with `>>> 0` and never applies a bitwise operator to a
 * value that may reach 2^32 (DESIGN.md §3). BigInt conversions exist for the edges only (CLI, fixtures, printing).
 */

/** 2^32 as a number; the weight of the high half. */
export const TWO_32 = 0x1_0000_0000;

/** Bits [31:0] of a non-negative integer below 2^53, as an unsigned 32-bit number. */
export function lo32(x: number): number {
  return x >>> 0;
}

/** Bits [52:32] of a non-negative integer below 2^53. */
export function hi32(x: number): number {
  return Math.floor(x / TWO_32) >>> 0;
}

/**
 * Joins two halves into one number. Exact only while `hi < 2^21` (the value stays below 2^53); callers use it for
 * addresses (≤ 52 bits), never for whole descriptors.
 */
export function join(lo: number, hi: number): number {
  return (hi >>> 0) * TWO_32 + (lo >>> 0);
}

/** A mask of `n` low bits (0 ≤ n ≤ 32) as an unsigned 32-bit number. */
export function mask32(n: number): number {
  return n >= 32 ? 0xffff_ffff : ((1 << n) >>> 0) - 1;
}

/** Bits [msb:lsb] (inclusive, within one 32-bit half) of `v`, shifted down. */
export function field(v: number, msb: number, lsb: number): number {
  return (v >>> lsb) & mask32(msb - lsb + 1);
}

/** `v` with bits [msb:lsb] replaced by `x` (truncated to the field width), unsigned. */
export function setField(v: number, msb: number, lsb: number, x: number): number {
  const m = (mask32(msb - lsb + 1) << lsb) >>> 0;
  return ((v & ~m) | ((x << lsb) & m)) >>> 0;
}

/**
 * Bits [msb:lsb] of a non-negative integer `x` below 2^53 (for example an address), for any 0 ≤ lsb ≤ msb ≤ 52,
 * computed with division so that no int32 truncation happens.
 */
export function bitsOf(x: number, msb: number, lsb: number): number {
  const shifted = Math.floor(x / 2 ** lsb);
  const width = msb - lsb + 1;
  return width >= 53 ? shifted : shifted % 2 ** width;
}

/** 2^s − 1 for s = 0…31, as int32 (non-negative): the low-bit masks of {@link alignDown}'s 32-bit path. */
const LOW_MASK = new Int32Array(32);
/** 2^s for s = 0…63: the sizes of {@link alignDown}'s general path (a table read, not a pow() call). */
const POW2_64 = new Float64Array(64);
for (let s = 0; s < 64; s++) {
  if (s < 32) LOW_MASK[s] = 2 ** s - 1;
  POW2_64[s] = 2 ** s;
}

/** 2^shift: from the table for 0 ≤ shift < 64, else computed. */
function pow2(shift: number): number {
  return shift >= 0 && shift < 64 ? POW2_64[shift]! : 2 ** shift; // JUSTIFY: bounds checked.
}

/**
 * Rounds a non-negative integer below 2^53 down to a multiple of 2^shift. Values below 2^32 with shift < 32 take a
 * bitwise path (`(x >>> 0) === x` holds only for integers in [0, 2^32), where `x & (2^shift − 1)` is exactly
 * `x mod 2^shift`); the rest use the remainder, as before.
 */
export function alignDown(x: number, shift: number): number {
  if (shift >= 0 && shift < 32 && (x >>> 0) === x) return x - (x & LOW_MASK[shift]!); // JUSTIFY: shift < 32.
  return x - (x % pow2(shift));
}

/** True when a non-negative integer below 2^53 is a multiple of 2^shift (same two paths as {@link alignDown}). */
export function isAligned(x: number, shift: number): boolean {
  if (shift >= 0 && shift < 32 && (x >>> 0) === x) return (x & LOW_MASK[shift]!) === 0; // JUSTIFY: shift < 32.
  return x % pow2(shift) === 0;
}

/** Reads the 64-bit word at word index `w` (`u32[w]` = lo, `u32[w+1]` = hi) as a BigInt. Edges only. */
export function u64ToBigInt(lo: number, hi: number): bigint {
  return (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);
}

/** Splits a BigInt in [0, 2^64) into halves. Edges only; throws a RangeError outside that range. */
export function bigIntToU64(v: bigint): { lo: number; hi: number } {
  if (v < 0n || v >= 1n << 64n) throw new RangeError(`value ${v} does not fit in 64 bits`);
  return { lo: Number(v & 0xffff_ffffn), hi: Number(v >> 32n) };
}

/** Formats two halves as `0x` + 16 hex digits, grouped `0x0000_0040_0000_07c3` when `grouped`. */
export function u64ToHex(lo: number, hi: number, grouped = false): string {
  const s = (hi >>> 0).toString(16).padStart(8, '0') + (lo >>> 0).toString(16).padStart(8, '0');
  if (!grouped) return '0x' + s;
  return '0x' + s.slice(0, 4) + '_' + s.slice(4, 8) + '_' + s.slice(8, 12) + '_' + s.slice(12);
}

/** Formats halves as minimal lower-case hex (`0x0`, `0x40000fc3`), the oracle's output style. */
export function u64ToShortHex(lo: number, hi: number): string {
  return '0x' + u64ToBigInt(lo, hi).toString(16);
}

/**
 * Parses `0x…` hex (underscores allowed, at most 64 bits) into halves. Returns `null` for anything else, so edge
 * validators can report where the input is wrong.
 */
export function parseHex64(s: string): { lo: number; hi: number } | null {
  if (typeof s !== 'string') return null;
  const m = /^0x([0-9a-fA-F_]+)$/.exec(s);
  if (m === null) return null;
  const digits = m[1]!.replace(/_/g, ''); // JUSTIFY: the regex has one capture group.
  if (digits.length === 0 || /^_|_$/.test(m[1]!)) return null; // JUSTIFY: as above.
  const v = BigInt('0x' + digits);
  if (v >= 1n << 64n) return null;
  return bigIntToU64(v);
}
