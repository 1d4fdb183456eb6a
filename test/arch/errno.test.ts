import t from 'tap';
import { Err, errnoName, parseErrno } from '../../src/arch/errno.js';

t.test('errno values are Linux asm-generic values, negated', async (t) => {
  // Rule: the kernel's error codes are part of the ABI (errno-base.h, errno.h).
  t.equal(Err.EPERM, -1);
  t.equal(Err.ENOENT, -2);
  t.equal(Err.EIO, -5);
  t.equal(Err.E2BIG, -7);
  t.equal(Err.EAGAIN, -11);
  t.equal(Err.ENOMEM, -12);
  t.equal(Err.EFAULT, -14);
  t.equal(Err.EBUSY, -16);
  t.equal(Err.EEXIST, -17);
  t.equal(Err.EINVAL, -22);
  t.equal(Err.ERANGE, -34);
  t.equal(Err.EOPNOTSUPP, -95);
  t.equal(Err.EHWPOISON, -133);
});

t.test('errnoName and parseErrno', async (t) => {
  t.equal(errnoName(0), '0');
  t.equal(errnoName(-1), '-EPERM');
  t.equal(errnoName(-9999), '-9999');
  for (const [k, v] of Object.entries(Err)) {
    t.equal(parseErrno(`-${k}`), v);
    t.equal(parseErrno(k), v);
    t.equal(parseErrno(errnoName(v)), v, `round trip ${k}`);
  }
  t.equal(parseErrno('-12'), -12);
  t.equal(parseErrno('0'), 0);
  t.equal(parseErrno('-ENOTANERRNO'), null);
  t.equal(parseErrno('toString'), null, 'prototype names are not errnos');
});
