/**
 * Linux errno values, stored negated as the kernel returns them (`return -EPERM`), from
 * include/uapi/asm-generic/errno-base.h and errno.h. They are part of the pKVM ABI: a hypercall's result in x1.
 */
export const Err = {
  EPERM: -1,
  ENOENT: -2,
  EINTR: -4,
  EIO: -5,
  E2BIG: -7,
  EAGAIN: -11,
  ENOMEM: -12,
  EFAULT: -14,
  EBUSY: -16,
  EEXIST: -17,
  ENODEV: -19,
  EINVAL: -22,
  ENOSPC: -28,
  ERANGE: -34,
  ENOSYS: -38,
  EOPNOTSUPP: -95,
  EHWPOISON: -133,
} as const;

/** A negated errno value. */
export type Err = (typeof Err)[keyof typeof Err];

/** A kernel-style return: 0 on success or a negated errno. */
export type Ret = 0 | Err;

const NAMES = new Map<number, string>(Object.entries(Err).map(([k, v]) => [v, k]));

/** `-EPERM` for -1, `0` for 0, `-<n>` for an unknown value. */
export function errnoName(ret: number): string {
  if (ret === 0) return '0';
  const n = NAMES.get(ret);
  return n !== undefined ? `-${n}` : String(ret);
}

/** Parses `"-EPERM"` / `"EPERM"` / `"0"` / `"-1"` into a number, or `null` when it names no errno. */
export function parseErrno(s: string): number | null {
  const t = s.trim();
  if (/^-?\d+$/.test(t)) return Number(t);
  const name = t.startsWith('-') ? t.slice(1) : t;
  return Object.prototype.hasOwnProperty.call(Err, name) ? Err[name as keyof typeof Err] : null;
}
