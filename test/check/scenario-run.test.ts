import t from 'tap';
import fc from 'fast-check';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseScenario, type Scenario } from '../../src/check/scenario-schema.js';
import { runScenario } from '../../src/check/scenario-run.js';
import { runRun } from '../../src/cli/commands/run.js';
import { ExitCode, type CliIo } from '../../src/cli/command.js';

const machine = { ram: [{ base: '0x40000000', size: '256M' }], cpus: 2 };
const SP = '0x4e000000';

function scenario(steps: unknown[], m: unknown = machine): Scenario {
  const r = parseScenario(JSON.stringify({ name: 't', machine: m, steps }), 't.json');
  if (!r.ok) throw new Error(r.errors.join('\n'));
  return r.scenario;
}

function io(): CliIo & { text: () => string; errText: () => string } {
  let out = '';
  let err = '';
  const dir = mkdtempSync(join(tmpdir(), 's2emu-run-'));
  return { out: (s) => void (out += s), err: (s) => void (err += s), env: {}, cwd: dir, text: () => out, errText: () => err };
}

t.test('passing and failing expectations are counted; invariants are checks too', async (t) => {
  const rep = runScenario(
    scenario([
      { hvc: '__pkvm_host_share_hyp', args: [`pfn:${SP}`], expect: { x0: 'SUCCESS', x1: '0' } },
      { hvc: '__pkvm_host_share_hyp', args: [`pfn:${SP}`], expect: { x1: '0' } },
      { expect_page: SP, host: 'SHARED_OWNED', hyp: 'OWNED' },
      { check_invariants: true },
    ]),
  );
  t.same(rep.inputErrors, []);
  t.equal(rep.failed, 2, 'the second share is -EPERM, and hyp is SHARED_BORROWED');
  const second = rep.steps[1]!;
  t.same(second.checks.find((c) => c.what === 'x1'), { what: 'x1', expected: '0', actual: '-EPERM', pass: false });
  t.ok(second.checks.some((c) => c.what === 'invariants' && c.pass), 'invariants checked after the hypercall');
  t.same(rep.steps[2]!.checks.find((c) => c.what === 'hyp'), { what: 'hyp', expected: 'OWNED', actual: 'SHARED_BORROWED', pass: false });
  t.ok((rep.steps[3]!.result.pages_checked as number) > 1, 'the carve-out and the shared page were examined');
  t.equal(rep.passed + rep.failed, rep.steps.reduce((a, s) => a + s.checks.length, 0));
});

t.test('a step without expect must succeed', async (t) => {
  const rep = runScenario(
    scenario([
      { vm_create: 'g', memory: '1M', backing_pa: '0x48000000' },
      { vm_destroy: 'g' },
      { vm_destroy: 'g' },
    ]),
  );
  t.equal(rep.failed, 1);
  t.match(rep.steps[2]!.checks[0], { what: 'result', expected: 'ok', actual: 'error', pass: false });
  t.equal(rep.steps[2]!.result.errno, '-ENOENT');
});

t.test('steps on a VM whose creation failed fail instead of throwing', async (t) => {
  const rep = runScenario(
    scenario([
      { vm_create: 'g', memory: '1M', backing_pa: '0x10000000', expect: { result: 'error', errno: '-ENOMEM' } },
      { guest_access: 'g', ipa: '0x0', access: 'read' },
      { hvc: '__pkvm_teardown_vm', args: ['handle:g'] },
      { expect_page: '0x48000000', guests: { g: 'NOPAGE' } },
    ]),
  );
  t.equal(rep.failed, 3);
  t.same(rep.steps[1]!.checks, [{ what: 'vm', expected: 'created', actual: 'VM "g" does not exist (its vm_create failed)', pass: false }]);
});

t.test('input only the machine can judge becomes input errors', async (t) => {
  const rep = runScenario(scenario([{ hvc: '__pkvm_nope' }, { vm_create: 'g', memory: '1M', backing_pa: '0x48000000' }, { guest_hvc: 'g', fn: 'NOPE' }]));
  t.equal(rep.inputErrors.length, 2);
  t.match(rep.inputErrors[0], /t\.json: \$\.steps\[0\]\.hvc: expected a hypercall name of profile pkvm-2022/);
  t.match(rep.inputErrors[1], /\$\.steps\[2\]\.fn: expected a guest service/);
  t.equal(rep.steps.length, 0, 'nothing ran');
  const bad = runScenario(scenario([], { ...machine, profile: 'android14' }));
  t.match(bad.inputErrors.join(), /\$\.machine: profile: expected one of pkvm-2022/);
  const small = runScenario(scenario([], { ...machine, hyp_pool: { base: '0x40000000', pages: 4 } }));
  t.match(small.inputErrors.join(), /hyp_pool: expected at least/);
});

t.test('trace events and set knobs', async (t) => {
  const rep = runScenario(
    scenario([
      { set: { check_invariants: false, memlock_limit: '4K' } },
      { vm_create: 'g', memory: '1M', backing_pa: '0x48000000' },
      { guest_access: 'g', ipa: '0x0', access: 'read' },
      { guest_access: 'g', ipa: '0x1000', access: 'read', expect: { result: 'error', errno: '-ENOMEM' } },
    ]),
    { trace: true },
  );
  t.equal(rep.failed, 0);
  t.same(rep.steps[0]!.result, { memlock_limit: 4096, check_invariants: false });
  t.notOk(rep.steps[2]!.checks.some((c) => c.what === 'invariants'), 'invariants off after set');
  const names = (rep.steps[2]!.events ?? []).map((e) => (e.ev === 'hvc' ? e.fn : e.ev));
  t.ok(names.includes('__pkvm_host_map_guest') && names.includes('__kvm_vcpu_run'), names.join(','));
  const kvmSteps = (rep.steps[3]!.events ?? []).flatMap((e) => (e.ev === 'kvm' ? [e.step] : []));
  t.ok(kvmSteps.includes('account_locked_vm +1') || kvmSteps.some((x) => /account_locked_vm/.test(x)), kvmSteps.join(','));
});

t.test('s2emu run: exit statuses and output', async (t) => {
  const ok = io();
  const good = join(ok.cwd, 'good.json');
  writeFileSync(good, JSON.stringify({ machine, steps: [{ hvc: '__pkvm_host_share_hyp', args: [`pfn:${SP}`], expect: { x1: '0' } }] }));
  t.equal(runRun([good], ok), ExitCode.OK);
  const lines = ok.text().trim().split('\n');
  t.equal(lines.at(-1), '2 passed, 0 failed');
  t.match(JSON.parse(lines[1]!), { step: 0, kind: 'hvc', result: { x0: 'SUCCESS', x1: '0' } });

  const dirRun = io();
  t.equal(runRun([ok.cwd], dirRun), ExitCode.OK, 'a directory runs every scenario in it');
  t.match(dirRun.text(), /good\.json/);

  const fail = io();
  const failing = join(fail.cwd, 'fail.json');
  writeFileSync(failing, JSON.stringify({ machine, steps: [{ hvc: '__pkvm_host_unshare_hyp', args: [`pfn:${SP}`], expect: { x1: '0' } }] }));
  t.equal(runRun(['--summary', '--tlb', 'off', failing], fail), ExitCode.MISMATCH);
  t.match(fail.text(), /FAIL .*fail\.json \$\.steps\[0\] \(hvc\) x1: expected 0, got -EPERM/);
  t.match(fail.text(), /1 passed, 1 failed\n$/);

  const bad = io();
  const invalid = join(bad.cwd, 'bad.json');
  writeFileSync(invalid, JSON.stringify({ machine, steps: [{ hvc: 'x', expect: { x1: 'EWHAT' } }] }));
  t.equal(runRun([invalid], bad), ExitCode.BAD_INPUT);
  t.match(bad.errText(), /bad\.json: \$\.steps\[0\]\.expect\.x1: expected a register value/);
  t.notMatch(bad.errText(), /at .*\.ts:\d+/, 'no stack trace');
  t.equal(runRun([join(bad.cwd, 'missing.json')], bad), ExitCode.BAD_INPUT);
  t.match(bad.errText(), /missing\.json: \$: expected a readable file/);
  t.equal(runRun(['--tlb', 'maybe', good], bad), ExitCode.BAD_INPUT);
  t.equal(runRun([], bad), ExitCode.BAD_INPUT);
  t.equal(runRun(['--bogus', good], bad), ExitCode.BAD_INPUT);
});

t.test('no schema-valid scenario makes the runner throw', async (t) => {
  const hex = (max: number) => fc.integer({ min: 0, max }).map((n) => '0x' + n.toString(16));
  const pa = fc.oneof(hex(0x7fff_ffff), fc.constantFrom('0x48000000', '0x4e000000', '0x4ffff000', '0x0')).map((s) => '0x' + (Number(s) - (Number(s) % 8)).toString(16));
  const ipa = fc.integer({ min: 0, max: 0x40_0000 }).map((n) => '0x' + (n * 8).toString(16));
  const vmName = fc.constantFrom('a', 'b');
  const arg = fc.oneof(hex(0xffff_ffff), fc.constantFrom('handle:a', 'kvm_pfn:b', 'vcpu_pfn:a:0', 'pfn:0x48000000'));
  const step = fc.oneof(
    fc.record({ hvc: fc.constantFrom('__pkvm_host_share_hyp', '__pkvm_host_unshare_hyp', '__pkvm_host_reclaim_page', '__pkvm_host_map_guest', '__pkvm_teardown_vm', '__pkvm_vcpu_load', '__pkvm_vcpu_put', '__kvm_vcpu_run', '__pkvm_init_vm', '__pkvm_init_vcpu', '0xc6000123'), cpu: fc.integer({ min: 0, max: 1 }), args: fc.array(arg, { maxLength: 4 }) }),
    fc.record({ guest_access: vmName, vcpu: fc.constant(0), ipa, access: fc.constantFrom('read', 'write', 'exec'), handle: fc.boolean() }),
    fc.record({ handle_exit: vmName, vcpu: fc.constant(0) }),
    fc.record({ guest_hvc: vmName, vcpu: fc.constant(0), fn: fc.constantFrom('MEM_SHARE', 'MEM_UNSHARE', 'HYP_MEMINFO', '0xc6000009'), args: fc.array(hex(0x40_0000), { maxLength: 3 }) }),
    fc.record({ host_access: pa, cpu: fc.integer({ min: 0, max: 1 }), access: fc.constantFrom('read', 'write') }),
    fc.record({ host_event: fc.constantFrom('munmap', 'numa_balance', 'compaction'), vm: vmName, ipa, pages: fc.integer({ min: 1, max: 4 }) }),
    fc.record({ vcpu_load: vmName, vcpu: fc.constant(0), cpu: fc.integer({ min: 0, max: 1 }) }),
    fc.record({ vcpu_put: vmName, cpu: fc.integer({ min: 0, max: 1 }) }),
    fc.record({ memcache_topup: vmName, vcpu: fc.constant(0), pages: fc.integer({ min: 0, max: 8 }) }),
    fc.record({ vm_destroy: vmName }),
    fc.record({ expect_page: pa, host: fc.constant('OWNED') }),
    fc.record({ set: fc.record({ memlock_limit: fc.constantFrom('4K', '1M'), host_alloc_limit: fc.integer({ min: 0, max: 64 }) }) }),
  );
  const creates = fc.tuple(fc.boolean(), fc.boolean(), fc.constantFrom('0x48000000', '0x4ff00000', '0x10000000')).map(([pa, pb, backing]) => [
    { vm_create: 'a', memory: '1M', ipa_base: '0x0', backing_pa: backing, vcpus: 1, protected: pa, expect: { result: backing === '0x48000000' ? 'ok' : 'error' } },
    { vm_create: 'b', memory: '64K', ipa_base: '0x100000', backing_pa: '0x48800000', vcpus: 1, protected: pb },
  ]);
  fc.assert(
    fc.property(creates, fc.array(step, { maxLength: 12 }), (vms, steps) => {
      const r = parseScenario(JSON.stringify({ machine, steps: [...vms, ...steps] }), 'fuzz.json');
      if (!r.ok) return true; // refused at the edge, with messages: fine
      const rep = runScenario(r.scenario, { tlb: steps.length % 2 === 0 });
      return rep.steps.length === r.scenario.steps.length || rep.inputErrors.length > 0;
    }),
    { numRuns: 40 },
  );
  t.pass();
});
