/**
 * The fourth error tier of DESIGN.md §4: an emulator invariant broke or our own API was misused. These throw; no
 * input a host, guest or file can give may reach them (the kernel's `BUG()`).
 */

/** An emulator bug or API misuse. Never caused by host, guest or file input. */
export class InvariantError extends Error {
  override readonly name = 'InvariantError';
}

/** Throws {@link InvariantError} with `msg` unless `cond` holds. */
export function assert(cond: unknown, msg: string): asserts cond {
  if (!cond) throw new InvariantError(msg);
}

/** Marks the end of an exhaustive switch over a closed set; reaching it is an emulator bug. */
export function assertNever(x: never, what = 'value'): never {
  throw new InvariantError(`unexpected ${what}: ${String(x)}`);
}
