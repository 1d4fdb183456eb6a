import t from 'tap';
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { Err } from '../../src/arch/errno.js';
import { SmcccRet } from '../../src/arch/smccc.js';
import { formatPath, validateJson } from '../../src/check/json-path.js';
import { parseRegValue, parseScenario, parseSize, SCENARIO_DEFAULTS, SCENARIO_SCHEMA, STEP_KINDS } from '../../src/check/scenario-schema.js';

const machine = { ram: [{ base: '0x40000000', size: '256M' }] };
const scen = (steps: unknown[], m: unknown = machine): string => JSON.stringify({ machine: m, steps });

t.test('fixtures/scenario.schema.json is the exported schema', async (t) => {
  // Regenerate with: JSON.stringify(SCENARIO_SCHEMA, null, 2) + '\n'.
  const file = JSON.parse(readFileSync(new URL('../../fixtures/scenario.schema.json', import.meta.url), 'utf8'));
  t.same(file, SCENARIO_SCHEMA);
});

t.test('every step kind has a schema branch whose first required key is the kind', async (t) => {
  const defs = SCENARIO_SCHEMA.$defs!;
  for (const k of STEP_KINDS) t.equal(defs[`step_${k}`]?.required?.[0], k, k);
  t.equal(defs.step!.oneOf!.length, STEP_KINDS.length);
});

t.test('formatPath', async (t) => {
  t.equal(formatPath([]), '$');
  t.equal(formatPath(['steps', 3, 'expect', 'x0']), '$.steps[3].expect.x0');
  t.equal(formatPath(['guests', 'my vm']), '$.guests["my vm"]');
});

t.test('a minimal scenario parses with the documented defaults', async (t) => {
  const r = parseScenario(scen([]), 'a.json');
  t.ok(r.ok);
  if (!r.ok) return;
  t.equal(r.scenario.machine.cpus, SCENARIO_DEFAULTS.cpus);
  t.equal(r.scenario.machine.profile, SCENARIO_DEFAULTS.profile);
  t.equal(r.scenario.machine.paBits, SCENARIO_DEFAULTS.paBits);
  t.same(r.scenario.machine.ram, [{ base: 0x4000_0000, size: 256 * 2 ** 20 }]);
  t.equal(r.scenario.machine.hypPool, null);
});

t.test('steps parse into typed values', async (t) => {
  const r = parseScenario(
    scen([
      { vm_create: 'g', memory: '64M', backing_pa: '0x48000000', vcpus: 2, protected: true, expect: { handle: '0x1000' } },
      { hvc: '__pkvm_host_share_hyp', cpu: 1, args: ['0x40100', 'handle:g', 'pfn:0x40100000'], expect: { x0: 'SUCCESS', x1: '-EPERM' } },
      { guest_access: 'g', vcpu: 1, ipa: '0x1000', access: 'write', handle: false, expect: { result: 'exit', esr_el2: '0x93c08007' } },
      { expect_page: '0x48000000', host: 'NOPAGE', guests: { g: 'OWNED' }, pinned: true },
      { set: { memlock_limit: '4K' } },
      { check_invariants: true },
    ]),
    'b.json',
  );
  t.ok(r.ok, r.ok ? '' : r.errors.join('\n'));
  if (!r.ok) return;
  const [c, h, g, p, s] = r.scenario.steps;
  t.match(h, { kind: 'hvc', fn: '__pkvm_host_share_hyp', cpu: 1 });
  if (h?.kind === 'hvc') {
    t.same(h.args, [{ kind: 'value', v: { lo: 0x40100, hi: 0 } }, { kind: 'handle', vm: 'g' }, { kind: 'pfn', pa: 0x4010_0000 }]);
    t.same(h.expect?.x0, { lo: SmcccRet.SUCCESS, hi: 0 });
    t.same(h.expect?.x1, { lo: Err.EPERM >>> 0, hi: 0xffff_ffff });
  }
  t.match(c, { kind: 'vm_create', memory: 64 * 2 ** 20, backingPa: 0x4800_0000, vcpus: 2, protected: true, expect: { handle: 0x1000 } });
  t.match(g, { kind: 'guest_access', vcpu: 1, ipa: 0x1000, access: 'write', handle: false, expect: { result: 'exit', esrEl2: 0x93c0_8007 } });
  t.match(p, { kind: 'expect_page', pa: 0x4800_0000, host: 'NOPAGE', pinned: true });
  t.match(s, { kind: 'set', memlockLimit: 4096 });
});

t.test('bad input gives file + JSON path + what was expected, never a throw', async (t) => {
  const cases: [string, RegExp][] = [
    ['{', /^x\.json: not valid JSON/],
    [scen([{ hvc: 'x', expect: { x1: 'PERM' } }]), /x\.json: \$\.steps\[0\]\.expect\.x1: expected a register value/],
    [scen([{ vm_create: 'g', memory: '64M' }]), /\$\.steps\[0\]: missing required key "backing_pa"/],
    [scen([{ bogus: 1 }]), /\$\.steps\[0\]: expected an object with exactly one kind key/],
    [scen([{ cpu: 0, hvc: 'x' }]), /\$\.steps\[0\]\.cpu: the first key must name the step kind \("hvc"\)/],
    [scen([{ vm_destroy: 'nope' }]), /\$\.steps\[0\]\.vm_destroy: VM "nope" is not created/],
    [scen([{ hvc: 'x', cpu: 5 }]), /\$\.steps\[0\]\.cpu: expected a CPU index below machine\.cpus/],
    [scen([{ guest_access: 'g', ipa: '0x1000', access: 'fetch' }]), /\$\.steps\[0\]\.access: expected one of "read", "write", "exec"/],
    [scen([], { ram: [{ base: '0x1001', size: '4K' }] }), /\$\.machine\.ram\[0\]: expected a non-empty, 4 KiB-aligned/],
    [scen([], { ram: [{ base: 0, size: '8K' }, { base: '0x1000', size: '4K' }] }), /\$\.machine\.ram\[1\]: overlaps/],
    [scen([], { ram: [{ base: '0xffffffffffffff', size: '4K' }] }), /\$\.machine\.ram\[0\]\.base: expected a value below 2\^53/],
    [scen([{ expect_page: 12.5 }]), /\$\.steps\[0\]\.expect_page: expected a hex string/],
    [JSON.stringify({ machine, steps: [], extra: 1 }), /\$\.extra: unknown key "extra"/],
    [scen([{ vm_create: 'g', memory: '1M', backing_pa: '0x0', vcpus: 2 }, { guest_access: 'g', vcpu: 2, ipa: '0x0', access: 'read' }]), /\$\.steps\[1\]\.vcpu: expected a vCPU index below 2/],
    [scen([{ vm_create: 'g', memory: '1M', backing_pa: '0x0' }, { guest_access: 'g', ipa: '0x1004', access: 'read' }]), /\$\.steps\[1\]\.ipa: expected an IPA aligned to 8 bytes/],
    [scen([{ host_access: '0x1001' }]), /\$\.steps\[0\]\.host_access: expected a PA aligned to 8 bytes/],
    [scen([{ vm_create: 'g', memory: '1M', backing_pa: '0x0' }, { guest_hvc: 'g', fn: 'MEM_SHARE', args: ['0xffffffffffffffff'] }]), /\$\.steps\[1\]\.args\[0\]: expected a guest argument below 2\^53/],
    [scen([{ vm_create: 'g', memory: '1M', backing_pa: '0x0' }, { hvc: '__kvm_vcpu_run', args: ['vcpu_pfn:g:1'] }]), /\$\.steps\[1\]\.args\[0\]: VM "g" has no vCPU 1/],
  ];
  for (const [text, re] of cases) {
    const r = parseScenario(text, 'x.json');
    t.notOk(r.ok, text);
    if (!r.ok) t.match(r.errors.join('\n'), re, text);
  }
});

t.test('arbitrary JSON never makes the parser throw', async (t) => {
  fc.assert(
    fc.property(fc.jsonValue(), (v) => {
      const r = parseScenario(JSON.stringify({ machine, steps: [v] }), 'f.json');
      return typeof r.ok === 'boolean';
    }),
    { numRuns: 300 },
  );
  t.pass();
});

t.test('value parsers', async (t) => {
  t.equal(parseSize('64M'), 64 * 2 ** 20);
  t.equal(parseSize('0x1_0000'), 0x10000);
  t.equal(parseSize('0x20000000000000'), null);
  t.same(parseRegValue('NOT_SUPPORTED'), { lo: 0xffff_ffff, hi: 0xffff_ffff });
  t.same(parseRegValue('0xffffffffffffffff'), { lo: 0xffff_ffff, hi: 0xffff_ffff });
  t.same(parseRegValue('0'), { lo: 0, hi: 0 });
  t.equal(parseRegValue('EWHAT'), null);
  t.same(validateJson(5, { anyOf: [{ type: 'string' }], description: 'a name' }), [{ path: '$', message: 'expected a name, got 5' }]);
});
