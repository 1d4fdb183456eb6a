import t from 'tap';
import fc from 'fast-check';
import { PAGE_SIZE } from '../src/arch/addr.js';
import { SW1_HI } from '../src/arch/desc.js';
import { Err } from '../src/arch/errno.js';
import { EsrEc, esrEc, esrFsc, esrWnR } from '../src/arch/esr.js';
import { decodeFaultStatusCode, FaultType } from '../src/arch/fault.js';
import { GuestHcall, SmcccRet } from '../src/arch/smccc.js';
import { runDemo } from '../src/cli/commands/demo.js';
import type { CliIo } from '../src/cli/command.js';
import { WalkFlags } from '../src/pgtable/types.js';
import { kvmPgtableWalk, type Walker } from '../src/pgtable/walk.js';
import { createMachine, DEFAULT_TLB_ENTRIES, defaultHypPool, validateMachineConfig, type Machine, type MachineConfig } from '../src/system.js';

const RAM = { base: 0x4000_0000, size: 256 * 2 ** 20 };
const BACKING = 0x4800_0000;
const cfg = (over: Partial<MachineConfig> = {}): MachineConfig => ({ ram: [RAM], ...over });
const np = { name: 'g', memory: 1 << 20, ipaBase: 0, backingPa: BACKING, vcpus: 2, protected: false };

function clean(m: Machine): string[] {
  return m.checkInvariants().violations.slice();
}

t.test('validateMachineConfig names what is wrong', async (t) => {
  t.same(validateMachineConfig(cfg()), []);
  t.match(validateMachineConfig(cfg({ paBits: 39 })).join(), /pa_bits: expected one of 32, 36, 40, 42, 44, 48, got 39/);
  t.match(validateMachineConfig(cfg({ cpus: 0 })).join(), /cpus: expected 1…64/);
  t.match(validateMachineConfig(cfg({ tlbEntries: 0 })).join(), /tlb_entries: expected a positive integer or Infinity/);
  t.same(validateMachineConfig(cfg({ tlbEntries: Infinity })), []);
  t.match(validateMachineConfig(cfg({ profile: 'android14' })).join(), /profile: expected one of pkvm-2022/);
  t.match(validateMachineConfig({ ram: [RAM, { base: 0x4100_0000, size: 4096 }] }).join(), /overlaps/);
  t.match(validateMachineConfig(cfg({ hypPool: { base: RAM.base, pages: 10 } })).join(), /hyp_pool: expected at least \d+ pages/);
  t.match(validateMachineConfig(cfg({ hypPool: { base: 0x1000, pages: 4096 } })).join(), /inside one RAM region/);
  t.match(validateMachineConfig(cfg({ paBits: 32, ram: [{ base: 0xffff_0000, size: 0x2_0000 }] })).join(), /beyond pa_bits/);
});

t.test('the default hyp pool sits at the top of the highest RAM region', async (t) => {
  const hp = defaultHypPool([RAM, { base: 0x8000_0000, size: 2 ** 26 }]);
  t.equal(hp.base + hp.pages * PAGE_SIZE, 0x8000_0000 + 2 ** 26);
  t.ok(hp.pages > 1024);
});

t.test('boot: every CPU finalised, the carve-out owned by EL2, invariants hold', async (t) => {
  const m = createMachine(cfg({ cpus: 3 }));
  t.equal(m.tlb.capacity, DEFAULT_TLB_ENTRIES);
  t.equal(createMachine(cfg({ tlb: false })).tlb.capacity, 0);
  for (let c = 0; c < 3; c++) {
    const r = m.hvc(c, '__pkvm_prot_finalize');
    t.equal(r.x0.lo, SmcccRet.SUCCESS);
    t.equal(r.x1.lo | 0, Err.EPERM, `CPU ${c} already finalised`);
  }
  const top = RAM.base + RAM.size - PAGE_SIZE;
  t.match(m.pageView(top), { host: 'NOPAGE', hyp: 'OWNED', owner: 'hyp' });
  t.match(m.pageView(RAM.base + 0x10_0000), { host: 'OWNED', hyp: 'NOPAGE', owner: 'host' });
  t.same(clean(m), []);
  t.equal(m.hostRamRanges.reduce((a, r) => a + r.size, 0), RAM.size - m.hyp.carveoutPages * PAGE_SIZE);
});

t.test('raw hypercalls: by name, by raw id, unknown ids', async (t) => {
  const m = createMachine(cfg());
  const pfn = 0x4e00_0000 / PAGE_SIZE;
  t.equal(m.hvc(0, '__pkvm_host_share_hyp', [pfn]).x1.lo, 0);
  t.equal(m.hvc(0, m.resolveHcall('__pkvm_host_unshare_hyp') as number, [{ lo: pfn, hi: 0 }]).x1.lo, 0);
  t.equal(m.hvc(1, '0xc60000ff').x0.lo | 0, SmcccRet.NOT_SUPPORTED);
  t.equal(m.resolveHcall('__pkvm_nonexistent'), null);
  t.equal(m.resolveGuestHcall('MEM_SHARE'), GuestHcall.MEM_SHARE);
  t.equal(m.resolveGuestHcall('0xc6000004'), GuestHcall.MEM_UNSHARE);
  t.throws(() => m.hvc(9, '__pkvm_prot_finalize'), /no CPU 9/);
  const st = m.stats();
  t.equal(st.hvcs.__pkvm_host_share_hyp, 1);
  t.equal(st.hvcs.__pkvm_prot_finalize, 2);
  t.equal(st.hvcs['0xc60000ff'], 1);
});

t.test('a non-protected guest faults, shares and reads back; the stage-2 dump shows the page', async (t) => {
  const m = createMachine(cfg());
  const c = m.createVm(np);
  t.same(c, { ret: 0, handle: 0x1000 });
  const w = m.guestAccess('g', 1, 0x2000, 'write', { value: 0x1234_5678_9a });
  t.match(w, { result: 'ok', exits: 1, errno: 0 });
  const r = m.guestAccess('g', 0, 0x2000, 'read');
  t.match(r, { result: 'ok', exits: 0, value: 0x1234_5678_9a });
  t.same(m.pageView(BACKING + 0x2000), { host: 'SHARED_OWNED', hyp: 'NOPAGE', guests: { g: 'SHARED_BORROWED' }, pinned: true, owner: 'host' });
  const d = m.guestDesc('g', 0x2000);
  t.ok(d !== null && (d.lo & 1) === 1 && d.level === 3 && (d.hi & SW1_HI) !== 0, 'valid level-3 leaf with the SHARED_BORROWED bit');
  t.equal(m.guestDesc('g', 0x3000)?.lo ?? 0, 0, 'neighbour not mapped');
  t.match(m.dumpStage2('g'), /0x0000000000002000-0x0000000000003000\s+4K 3\s+R W/);
  t.same(m.vmView('g'), { exists: true, handle: 0x1000, pinnedPages: 1, lockedPages: 1, mappedPages: 1 });
  t.same(clean(m), []);
});

t.test('handle: false reports the first exit with its syndrome, and handleExit completes it', async (t) => {
  const m = createMachine(cfg());
  m.createVm(np);
  const ipa = 0x5000;
  const e = m.guestAccess('g', 0, ipa, 'write', { handle: false, value: 7 });
  t.equal(e.result, 'exit');
  t.equal(esrEc(e.esrEl2), EsrEc.DABT_LOW);
  t.ok(esrWnR(e.esrEl2), 'WnR for a store');
  t.equal(decodeFaultStatusCode(esrFsc(e.esrEl2)).type, FaultType.TRANSLATION);
  t.equal(e.hpfarEl2, ipa / 256, 'HPFAR_EL2.FIPA = IPA[47:12] at bit 4');
  t.equal(m.pageView(BACKING + ipa).pinned, false, 'nothing pinned before the host handles it');
  t.equal(m.handleExit('g', 0), 0);
  t.equal(m.handleExit('g', 0), Err.EINVAL, 'no exit pending any more');
  t.equal(m.pageView(BACKING + ipa).guests.g, 'SHARED_BORROWED');
  t.match(m.guestAccess('g', 0, ipa, 'read'), { result: 'ok', value: 7, exits: 0 });
  t.same(clean(m), []);
});

t.test('a protected guest: donation, host abort, guest share, teardown poisons', async (t) => {
  const m = createMachine(cfg());
  m.createVm({ ...np, protected: true });
  t.match(m.guestAccess('g', 0, 0, 'write', { value: 0xfeed }), { result: 'ok' });
  t.match(m.pageView(BACKING), { host: 'NOPAGE', guests: { g: 'OWNED' }, owner: 'guest', pinned: true });
  t.same(m.hostAccess(0, BACKING, 'read'), { result: 'abort', value: 0 });
  t.equal(m.guestHvc('g', 0, 'MEM_SHARE', [0]).x0.lo, SmcccRet.SUCCESS);
  t.same(m.hostAccess(1, BACKING, 'read'), { result: 'ok', value: 0xfeed });
  t.equal(m.guestHvc('g', 0, 'MEM_UNSHARE', [0]).x0.lo, SmcccRet.SUCCESS);
  t.equal(m.destroyVm('g'), 0);
  t.equal(m.destroyVm('g'), Err.ENOENT);
  t.same(m.hostAccess(0, BACKING, 'read'), { result: 'ok', value: 0 });
  t.match(m.pageView(BACKING), { host: 'OWNED', pinned: false, owner: 'host' });
  t.match(m.guestAccess('g', 0, 0, 'read'), { result: 'error', errno: Err.ENOENT });
  t.equal(m.dumpStage2('g'), '');
  t.same(clean(m), []);
  t.ok(m.stats().reclaimed >= 1);
});

t.test('refusals are errno values, not throws', async (t) => {
  const m = createMachine(cfg());
  const top = RAM.base + RAM.size - 16 * PAGE_SIZE;
  t.equal(m.createVm({ ...np, backingPa: top }).ret, Err.ENOMEM, 'backing inside the hyp carve-out');
  t.equal(m.createVm({ ...np, backingPa: 0x1000_0000 }).ret, Err.ENOMEM, 'backing outside RAM');
  t.equal(m.createVm({ ...np, memory: 100 }).ret, Err.EINVAL);
  t.equal(m.createVm(np).ret, 0, 'the refused attempts left nothing behind');
  t.equal(m.vcpuPut('g', 1), Err.EINVAL, 'no vCPU of g loaded on CPU 1');
  m.setHostAllocLimit(0);
  t.match(m.guestAccess('g', 0, 0x1000, 'read'), { result: 'error', errno: Err.ENOMEM });
  t.ok(m.setHostAllocLimit(1 << 20) > 1000, 'the balloon gives its pages back');
  t.match(m.guestAccess('g', 0, 0x1000, 'read'), { result: 'ok' });
  t.throws(() => m.vmView('nope'), /no VM named "nope"/);
  t.same(clean(m), []);
});

t.test('host events under a pin leave the guest mapping intact', async (t) => {
  const m = createMachine(cfg());
  m.createVm(np);
  m.guestAccess('g', 0, 0, 'write', { value: 3 });
  t.same(m.hostEvent('numa_balance', 'g', 0, 1), { ret: 0, migrated: 0, guestMapped: true });
  t.same(m.hostEvent('compaction', 'g', 0x1000, 1), { ret: 0, migrated: 1, guestMapped: false }, 'an unpinned page moves');
  t.same(m.hostEvent('munmap', 'g', 0, 1), { ret: 0, migrated: 0, guestMapped: true });
  t.match(m.guestAccess('g', 0, 0, 'read'), { result: 'ok', value: 3, exits: 0 });
  t.equal(m.destroyVm('g'), 0);
  t.same(clean(m), []);
});

t.test('random operation sequences keep the invariants after every hypercall, TLB on and off alike', async (t) => {
  type Op = { k: 'access'; vm: number; vcpu: number; page: number; w: boolean } | { k: 'share'; page: number } | { k: 'unshare'; page: number } | { k: 'destroy'; vm: number } | { k: 'mshare'; page: number };
  const op = fc.oneof(
    fc.record({ k: fc.constant('access' as const), vm: fc.integer({ min: 0, max: 1 }), vcpu: fc.integer({ min: 0, max: 1 }), page: fc.integer({ min: 0, max: 7 }), w: fc.boolean() }),
    fc.record({ k: fc.constant('share' as const), page: fc.integer({ min: 0, max: 3 }) }),
    fc.record({ k: fc.constant('unshare' as const), page: fc.integer({ min: 0, max: 3 }) }),
    fc.record({ k: fc.constant('mshare' as const), page: fc.integer({ min: 0, max: 7 }) }),
    fc.record({ k: fc.constant('destroy' as const), vm: fc.integer({ min: 0, max: 1 }) }),
  );
  const runOps = (ops: Op[], tlb: boolean): { results: unknown[]; violations: string[] } => {
    const m = createMachine(cfg({ tlb }));
    m.checkEveryHvc = true;
    m.createVm({ ...np, name: 'v0' });
    m.createVm({ ...np, name: 'v1', backingPa: BACKING + (1 << 22), protected: true });
    const results: unknown[] = [];
    const dead = [false, false];
    for (const o of ops) {
      if (o.k === 'access') {
        if (dead[o.vm]) continue;
        results.push(m.guestAccess(`v${o.vm}`, o.vcpu, o.page * PAGE_SIZE, o.w ? 'write' : 'read', { value: o.page + 1 }));
      } else if (o.k === 'share' || o.k === 'unshare') {
        const r = m.hvc(0, o.k === 'share' ? '__pkvm_host_share_hyp' : '__pkvm_host_unshare_hyp', [(0x4e00_0000 + o.page * PAGE_SIZE) / PAGE_SIZE]);
        results.push(r.x1.lo | 0);
      } else if (o.k === 'mshare') {
        if (dead[1]) continue;
        results.push(m.guestHvc('v1', 0, 'MEM_SHARE', [o.page * PAGE_SIZE]).x0.lo | 0);
      } else {
        if (dead[o.vm]) continue;
        results.push(m.destroyVm(`v${o.vm}`));
        dead[o.vm] = true;
      }
    }
    for (let v = 0; v < 2; v++) if (!dead[v]) results.push(m.destroyVm(`v${v}`));
    return { results, violations: [...m.hvcViolations, ...m.checkInvariants().violations] };
  };
  fc.assert(
    fc.property(fc.array(op, { maxLength: 24 }), (ops) => {
      const on = runOps(ops, true);
      const off = runOps(ops, false);
      if (on.violations.length > 0) throw new Error(on.violations.join('\n'));
      if (off.violations.length > 0) throw new Error(off.violations.join('\n'));
      if (JSON.stringify(on.results) !== JSON.stringify(off.results)) throw new Error('TLB on/off differ');
      return true;
    }),
    { numRuns: 25 },
  );
  t.pass();
});

t.test('s2emu demo (small) prints the summary and exits 0', async (t) => {
  let out = '';
  let err = '';
  const io: CliIo = { out: (s) => void (out += s), err: (s) => void (err += s), env: {}, cwd: process.cwd() };
  t.equal(runDemo(['--mib', '1'], io), 0, err);
  t.match(out, /guest touched 256 pages/);
  t.match(out, /host read → abort/);
  t.match(out, /invariants\s+: hold/);
  t.match(out, /__pkvm_host_map_guest\s+257/);
  t.match(out, /---\[ Guest IPA \]---/);
  t.equal(runDemo(['--mib', '0'], io), 2);
  t.equal(runDemo(['extra'], io), 2);
});

t.test('a missing TLBI shows as a TLB on/off difference and as a checker violation', async (t) => {
  // Simulates an EL2 bug: the guest leaf is cleared behind the hypervisor's back, with no TLB maintenance.
  const results: string[] = [];
  for (const tlb of [true, false]) {
    const m = createMachine(cfg({ tlb }));
    m.createVm(np);
    m.guestAccess('g', 0, 0x1000, 'write', { value: 1 });
    const hv = m.hyp.vmByHandle(m.vmHandle('g'))!;
    let ptep = -1;
    const walker: Walker<null> = {
      cb: (ctx) => {
        if ((ctx.oldLo & 1) !== 0) ptep = ctx.ptep;
        return 0;
      },
      arg: null,
      flags: WalkFlags.LEAF,
    };
    kvmPgtableWalk(hv.pgt, 0x1000, PAGE_SIZE, walker);
    t.ok(ptep > 0, 'leaf located');
    m.mem.write64(ptep, 0, 0);
    const r = m.guestAccess('g', 0, 0x1000, 'read', { handle: false });
    results.push(r.result);
    if (tlb) {
      const v = m.checkInvariants().violations.join('\n');
      t.match(v, /break-before-make: stale-hit/, 'the checker saw the stale TLB hit');
      t.match(v, /refcount 2, expected 1 \+ 0 counted entries/, 'the table refcount no longer matches');
      t.match(v, /page 0x48001000: 1 SHARED_OWNED view\(s\) but 0 SHARED_BORROWED/, 'the host still thinks it shares the page');
    }
  }
  t.same(results, ['ok', 'exit'], 'the stale TLB entry keeps serving the TLB-on run only');
});
