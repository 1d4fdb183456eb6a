/**
 * A per-step record of a stage-2 walk for the CLI trace and tests: which level read which descriptor at which PA
 * (ASL `AArch64.S2Walk`, one entry per `FetchDescriptor`). Typed arrays, filled without allocation.
 */

/** Most descriptor reads one walk can make: levels −1, 0, 1, 2, 3. */
export const MAX_WALK_STEPS = 5;

/** The descriptors one walk read, in order. */
export class WalkTrace {
  /** Number of valid steps. */
  n = 0;
  /** Level of each step. */
  readonly level = new Int8Array(MAX_WALK_STEPS);
  /** PA of each descriptor read. */
  readonly descPa = new Float64Array(MAX_WALK_STEPS);
  /** Bits[31:0] of each descriptor as read (before any hardware update). */
  readonly lo = new Uint32Array(MAX_WALK_STEPS);
  /** Bits[63:32] of each descriptor as read. */
  readonly hi = new Uint32Array(MAX_WALK_STEPS);

  /** Empties the trace. */
  reset(): void {
    this.n = 0;
  }

  /** Appends one step. The walker never makes more than {@link MAX_WALK_STEPS}. */
  push(level: number, descPa: number, lo: number, hi: number): void {
    const i = this.n;
    this.level[i] = level;
    this.descPa[i] = descPa;
    this.lo[i] = lo;
    this.hi[i] = hi;
    this.n = i + 1;
  }
}
