/**
 * The AArch64 general-purpose register file x0–x30 as 32-bit halves, the form hypercall arguments and results
 * travel in (SMCCC: function id in x0, arguments in x1…x7, status in x0, result in x1). Negative results are written
 * as 64-bit two's complement (`lo = ret >>> 0`, `hi = 0xffffffff`), as the kernel's `cpu_reg(ctxt, 1) = ret` does
 * for an `int` return value.
 */

/** A register file of x0–x30 (`x[2n]` = bits[31:0], `x[2n+1]` = bits[63:32] of Xn). */
export class RegFile {
  /** Halves of x0..x30. */
  readonly x = new Uint32Array(62);

  /** Bits[31:0] of Xn. */
  lo(n: number): number {
    return this.x[2 * n]!; // JUSTIFY: callers pass 0 ≤ n ≤ 30.
  }

  /** Bits[63:32] of Xn. */
  hi(n: number): number {
    return this.x[2 * n + 1]!; // JUSTIFY: as above.
  }

  /** Sets Xn from halves. */
  set(n: number, lo: number, hi: number): void {
    this.x[2 * n] = lo;
    this.x[2 * n + 1] = hi;
  }

  /** Sets Xn to a non-negative integer below 2^53 (an address, a pfn, a handle). */
  setU(n: number, v: number): void {
    this.x[2 * n] = v >>> 0;
    this.x[2 * n + 1] = Math.floor(v / 0x1_0000_0000) >>> 0;
  }

  /** Sets Xn to a signed 32-bit result, sign-extended to 64 bits (errno in x1, SMCCC status in x0). */
  setSigned(n: number, v: number): void {
    this.x[2 * n] = v >>> 0;
    this.x[2 * n + 1] = v < 0 ? 0xffff_ffff : 0;
  }

  /** Xn as a non-negative number when it is below 2^53, else `NaN` (the caller treats it as out of range). */
  u(n: number): number {
    const hi = this.hi(n);
    return hi >= 0x20_0000 ? NaN : hi * 0x1_0000_0000 + this.lo(n);
  }

  /** Xn interpreted as a sign-extended 32-bit value when bits[63:31] are all equal, else `NaN`. */
  signed(n: number): number {
    const lo = this.lo(n);
    const hi = this.hi(n);
    if (hi === 0 && lo < 0x8000_0000) return lo;
    if (hi === 0xffff_ffff && lo >= 0x8000_0000) return lo - 0x1_0000_0000;
    return NaN;
  }

  /** Zeroes every register. */
  clear(): void {
    this.x.fill(0);
  }
}
