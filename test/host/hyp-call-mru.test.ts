// HypCaller's name cache and counters: ids and counts stay right when more names are used than the cache holds,
// names the profile lacks are refused each time (also the empty name), and `counts` reads like a plain record.
import t from 'tap';
import type { RegFile } from '../../src/arch/regs.js';
import { PROFILE_PKVM_2022, SmcccRet, hcallFuncId } from '../../src/arch/smccc.js';
import { Err } from '../../src/arch/errno.js';
import { HypCaller } from '../../src/host/hyp-call.js';
import { KernelLog } from '../../src/host/klog.js';

t.test('ids and counts over more names than the cache holds', async (t) => {
  const ids: number[] = [];
  const log = new KernelLog();
  const h = new HypCaller(
    {
      hvc(_cpu: number, r: RegFile) {
        ids.push(r.lo(0));
        r.setSigned(0, SmcccRet.SUCCESS);
        r.setSigned(1, 0);
      },
    },
    PROFILE_PKVM_2022,
    log,
  );
  const names = ['__kvm_vcpu_run', '__pkvm_host_map_guest', '__pkvm_vcpu_load', '__pkvm_vcpu_put', '__kvm_timer_set_cntvoff', '__pkvm_host_share_hyp'];
  const want: Record<string, number> = {};
  const wantIds: number[] = [];
  // A deterministic mix that keeps evicting and re-adding cache entries.
  let x = 12345;
  let failed = 0;
  for (let k = 0; k < 2000; k++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    const n = names[(x >>> 16) % names.length]!;
    if (h.call(0, n) !== 0) failed++;
    want[n] = (want[n] ?? 0) + 1;
    wantIds.push(hcallFuncId(PROFILE_PKVM_2022, n)!);
    if (k % 97 === 0) {
      t.equal(h.call(0, ''), Err.EOPNOTSUPP, 'the empty name is refused');
      t.equal(h.call(0, '__no_such_call'), Err.EOPNOTSUPP, 'an unknown name is refused');
    }
  }
  t.equal(failed, 0, 'every call returned x1');
  t.same(ids, wantIds, 'every call carried its own function id');
  for (const n of names) t.equal(h.counts[n], want[n], `counts.${n}`);
  t.equal(h.counts['__pkvm_prot_finalize'], 0, 'an unused name counts 0');
  t.equal(Object.keys(h.counts).length, PROFILE_PKVM_2022.names.filter((n) => n !== undefined && hcallFuncId(PROFILE_PKVM_2022, n) !== null).length);
  const copy = JSON.parse(JSON.stringify(h.counts)) as Record<string, number>;
  t.equal(copy['__kvm_vcpu_run'], want['__kvm_vcpu_run'], 'counts serialise as a plain record');
  t.equal(log.warnings.length, 2 * 21, 'one WARN per refused call');
});
