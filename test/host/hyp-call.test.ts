// kvm_call_hyp_nvhe(): x0 = KVM_HOST_SMCCC_FUNC(name) from the profile, args in x1…, WARN on x0 != SUCCESS,
// result from x1 as an int.
import t from 'tap';
import { Err } from '../../src/arch/errno.js';
import type { RegFile } from '../../src/arch/regs.js';
import { assert } from '../../src/arch/assert.js';
import { PROFILE_PKVM_2022, PROFILE_UPSTREAM_6_16, SmcccRet, kvmHostSmcccId } from '../../src/arch/smccc.js';
import { HypCaller } from '../../src/host/hyp-call.js';
import { KernelLog } from '../../src/host/klog.js';

t.test('formats the id and arguments and returns x1 as int', async (t) => {
  const seen: number[][] = [];
  const log = new KernelLog();
  const h = new HypCaller(
    {
      hvc(cpu: number, r: RegFile) {
        seen.push([cpu, r.lo(0), r.u(1), r.u(2), r.u(3), r.u(4)]);
        r.setSigned(0, SmcccRet.SUCCESS);
        r.setSigned(1, Err.EPERM);
      },
    },
    PROFILE_PKVM_2022,
    log,
  );
  t.equal(h.call(3, '__pkvm_host_map_guest', 0x12_3456_7890, 0x8_0000, 0, 7), Err.EPERM);
  t.same(seen, [[3, kvmHostSmcccId(16), 0x12_3456_7890, 0x8_0000, 0, 7]]);
  t.equal(h.counts['__pkvm_host_map_guest'], 1);
  t.same(log.warnings, []);
});

t.test('x0 != SUCCESS is a WARN and -EOPNOTSUPP', async (t) => {
  const log = new KernelLog();
  const h = new HypCaller({ hvc: (_c: number, r: RegFile) => r.setSigned(0, SmcccRet.NOT_SUPPORTED) }, PROFILE_PKVM_2022, log);
  t.equal(h.call(0, '__pkvm_prot_finalize'), Err.EOPNOTSUPP);
  t.equal(log.warnings.length, 1);
});

t.test('a handle in x1 comes back positive; a name the profile lacks is a WARN and -EOPNOTSUPP, no HVC', async (t) => {
  let hvcs = 0;
  const log = new KernelLog();
  const h = new HypCaller({ hvc: (_c: number, r: RegFile) => (hvcs++, r.setSigned(0, 0), r.setU(1, 0x1003)) }, PROFILE_PKVM_2022, log);
  t.equal(h.call(0, '__pkvm_init_vm', 1, 2, 3), 0x1003);
  t.ok(h.has('__pkvm_host_map_guest'));
  t.notOk(h.has('__pkvm_host_share_guest'));
  t.equal(h.call(0, '__pkvm_host_share_guest'), Err.EOPNOTSUPP);
  t.equal(hvcs, 1, 'no HVC issued for the unknown name');
  t.equal(log.warnings.length, 1);
  t.match(log.warnings[0], /__pkvm_host_share_guest.*not in profile pkvm-2022/);
  const up = new HypCaller({ hvc: () => assert(false, 'no HVC expected') }, PROFILE_UPSTREAM_6_16, new KernelLog());
  t.equal(up.call(0, '__pkvm_host_map_guest', 1, 2), Err.EOPNOTSUPP);
  t.equal(up.call(0, '__pkvm_host_reclaim_page', 1), Err.EOPNOTSUPP);
});
