import t from 'tap';
import fc from 'fast-check';
import { vttbr, vttbrBaddr, vttbrCnp, vttbrVmid } from '../../src/arch/vttbr.js';

t.test('VTTBR_EL2 layout (arm-s2.md §2)', async (t) => {
  t.same(vttbr({ baddr: 0x4800_0000, vmid: 0x1234, cnp: true }), { lo: 0x4800_0001, hi: 0x1234_0000 });
  const v = vttbr({ baddr: 0xabcd_4800_0000, vmid: 0xff01 });
  t.equal(vttbrVmid(v.hi, true), 0xff01);
  t.equal(vttbrVmid(v.hi, false), 0x01);
  t.equal(vttbrBaddr(v.lo, v.hi, false), 0xabcd_4800_0000);
  t.equal(vttbrCnp(vttbr({ baddr: 0, cnp: true }).lo), true);
  // 52-bit form: BADDR[51:48] in bits[5:2].
  const w = vttbr({ baddr: 2 ** 51 + 2 ** 48 + 0x40, addr52: true });
  t.equal(w.lo, 0x40 | (0b1001 << 2));
  t.equal(vttbrBaddr(w.lo, w.hi, true), 2 ** 51 + 2 ** 48 + 0x40);
  t.equal(vttbrBaddr(w.lo, w.hi, false), 0x40 | (0b1001 << 2), 'the 48-bit form reads bits[5:2] as address bits');
  t.throws(() => vttbr({ baddr: 0x20, addr52: true }));
  t.throws(() => vttbr({ baddr: 2 ** 48 }));
  t.throws(() => vttbr({ baddr: 0, vmid: 0x1_0000 }));
});

t.test('builder and accessors round-trip', async (t) => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 2 ** 46 - 1 }), fc.integer({ min: 0, max: 0xffff }), fc.boolean(), fc.boolean(), (b, vmid, cnp, addr52) => {
      const baddr = addr52 ? (b % 2 ** 46) * 64 : b * 2;
      const v = vttbr({ baddr, vmid, cnp, addr52 });
      return vttbrBaddr(v.lo, v.hi, addr52) === baddr && vttbrVmid(v.hi, true) === vmid && vttbrCnp(v.lo) === cnp;
    }),
  );
  t.pass();
});
