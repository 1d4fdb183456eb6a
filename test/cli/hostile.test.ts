// Hostile files and arguments (issue 4 §3): every user-facing input is validated at the edge. Each case asserts exit
// status 2, a message naming the file, the JSON path and what was expected, no stack trace, and no output file left
// behind in the working directory.
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import t, { type Test } from 'tap';
import { BUG_KINDS } from '../../src/arch/inject.js';
import { runCli } from '../../src/cli/main.js';
import { ExitCode } from '../../src/cli/command.js';
import { captureIo } from './_io.js';

const HOSTILE = resolve(import.meta.dirname, '../../fixtures/hostile');

/** Runs `argv` in a fresh empty directory; returns the exit status, the streams and the files left there. */
async function hostile(argv: string[]): Promise<{ code: number; stdout: string; stderr: string; left: string[] }> {
  const dir = mkdtempSync(join(tmpdir(), 's2emu-hostile-'));
  try {
    const io = captureIo(dir);
    const code = await runCli(argv, io);
    return { code, stdout: io.stdout, stderr: io.stderr, left: readdirSync(dir) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function noStack(t: Test, s: string): void {
  t.notMatch(s, /\n\s+at [^\n]+:\d+:\d+/, 'no stack trace');
  t.notMatch(s, /InvariantError|TypeError|RangeError/, 'no exception name');
}

/** Scenario files for `s2emu run`: file → the JSON path and what was expected, as the message must say. */
const RUN_CASES: Record<string, RegExp> = {
  'malformed-json': /: not valid JSON: /,
  truncated: /: not valid JSON: Unterminated string/,
  'empty-file': /: not valid JSON: Unexpected end of JSON input/,
  'not-an-object': /: \$: expected an object, got an array/,
  'missing-machine': /: \$: missing required key "machine"/,
  'missing-steps': /: \$: missing required key "steps"/,
  'ram-not-array': /\$\.machine\.ram: expected an array, got "64M"/,
  'ram-empty': /\$\.machine\.ram: expected at least 1 item/,
  'ram-size-zero': /\$\.machine\.ram\[0\]: expected a non-empty, 4 KiB-aligned base and size/,
  'ram-size-negative': /\$\.machine\.ram\[0\]\.size: expected a size: .*got -4096/,
  'ram-unaligned-base': /\$\.machine\.ram\[0\]: expected a non-empty, 4 KiB-aligned/,
  'ram-unaligned-size': /\$\.machine\.ram\[0\]: expected a non-empty, 4 KiB-aligned/,
  'ram-overlap': /\$\.machine\.ram\[1\]: overlaps machine\.ram\[0\]/,
  'ram-hex-too-wide': /\$\.machine\.ram\[0\]\.base: expected a value below 2\^53/,
  'ram-beyond-pa-bits': /\$\.machine: ram: region 0x10000000000 ends beyond pa_bits \(40\)/,
  'ram-base-string-decimal': /\$\.machine\.ram\[0\]\.base: expected a hex string/,
  'size-suffix-bogus': /\$\.machine\.ram\[0\]\.size: expected a size: .*got "64T"/,
  'cpus-zero': /\$\.machine\.cpus: expected a number ≥ 1, got 0/,
  'cpus-absurd': /\$\.machine\.cpus: expected a number ≤ 64, got 100000/,
  'cpus-wrong-type': /\$\.machine\.cpus: expected an integer/,
  'pa-bits-reserved': /\$\.machine\.pa_bits: expected one of 32, 36, 40, 42, 44, 48, got 39/,
  // PARange 52 is a VTCR_EL2.PS encoding this machine (no FEAT_LPA) reserves.
  'pa-bits-52-reserved': /\$\.machine\.pa_bits: expected one of 32, 36, 40, 42, 44, 48, got 52/,
  'profile-unknown': /\$\.machine: profile: expected one of pkvm-2022/,
  'hyp-pool-too-small': /\$\.machine: hyp_pool: expected at least \d+ pages/,
  'hyp-pool-outside-ram': /\$\.machine: hyp_pool: expected a page-aligned range inside one RAM region/,
  'unknown-machine-key': /\$\.machine\.ram_mb: unknown key "ram_mb"/,
  'steps-not-array': /\$\.steps: expected an array, got an object/,
  'step-unknown-kind': /\$\.steps\[0\]: expected an object with exactly one kind key/,
  'step-kind-not-first': /\$\.steps\[0\]\.comment: the first key must name the step kind/,
  'hvc-unknown-name': /\$\.steps\[0\]\.hvc: expected a hypercall name of profile pkvm-2022/,
  'hvc-too-many-args': /\$\.steps\[0\]\.args: expected at most 7 item/,
  'hvc-arg-hex-too-wide': /\$\.steps\[0\]\.args\[0\]: expected an argument/,
  'hvc-arg-negative': /\$\.steps\[0\]\.args\[0\]: expected an argument/,
  'hvc-cpu-out-of-range': /\$\.steps\[0\]\.cpu: expected a CPU index below machine\.cpus \(2\), got 7/,
  'vm-undefined': /\$\.steps\[0\]\.vm_destroy: VM "ghost" is not created by an earlier vm_create step/,
  'vm-defined-twice': /\$\.steps\[1\]\.vm_create: VM "g" is already defined/,
  'vm-memory-negative': /\$\.steps\[0\]\.memory: expected a size/,
  'vm-vcpus-absurd': /\$\.steps\[0\]\.vcpus: expected a number ≤ 64, got 1000000/,
  'vm-missing-backing': /\$\.steps\[0\]: missing required key "backing_pa"/,
  'guest-access-bad-enum': /\$\.steps\[1\]\.access: expected one of "read", "write", "exec", got "jump"/,
  'guest-access-ipa-too-wide': /\$\.steps\[1\]\.ipa: expected a value below 2\^53/,
  'expect-errno-bogus': /\$\.steps\[1\]\.expect\.errno: expected an errno name like "-EPERM"/,
  'memcache-pages-absurd': /\$\.steps\[1\]\.pages: expected a number ≤ 4096, got 99999999/,
  'host-event-pages-zero': /\$\.steps\[1\]\.pages: expected a number ≥ 1, got 0/,
  'set-empty': /\$\.steps\[0\]\.set: expected at least 1 key/,
  'expect-page-bad-state': /\$\.steps\[0\]\.host: expected one of "OWNED".*got "BORROWED"/,
};

/** Oracle fixtures for `s2emu check`. */
const CHECK_CASES: Record<string, RegExp> = {
  'malformed-json': /: \$: expected valid JSON: /,
  truncated: /: \$: expected valid JSON: Unterminated string/,
  'not-a-case': /: \$: expected a case object/,
  'missing-regs': /: \$\.regs: expected an object \{ "vtcr_el2", "vttbr_el2" \}, got nothing/,
  'vtcr-not-hex': /: \$\.regs\.vtcr_el2: expected a 64-bit hex string/,
  'vtcr-too-wide': /: \$\.regs\.vtcr_el2: expected a 64-bit hex string .*"0x1_0000_0000_0000_0000"/,
  'vttbr-number': /: \$\.regs\.vttbr_el2: expected a 64-bit hex string .*got number 12345/,
  'memory-pa-unaligned': /: \$\.memory\[0\]\.pa: expected an 8-byte aligned address/,
  'memory-u64-empty': /: \$\.memory\[0\]\.u64: expected a hex string or a non-empty array/,
  'memory-u64-too-wide': /: \$\.memory\[0\]\.u64\[0\]: expected a 64-bit hex string/,
  'query-access-bogus': /: \$\.queries\[0\]\.access: expected "read", "write" or "exec", got string "jump"/,
  'query-mode-bogus': /: \$\.queries\[0\]\.mode: expected "at" or "access"/,
  'query-ipa-negative': /: \$\.queries\[0\]\.ipa: expected a 64-bit hex string .*got number -16/,
  'queries-absurd-count': /: \$\.expect: expected an array with one entry per query/,
  'expect-unknown-key': /: \$\.queries\[0\]\.expect: expected no such field/,
};

/** Arguments: argv → what the message must say. */
const ARG_CASES: [string[], RegExp][] = [
  [['fuzz', '--steps', '0'], /--steps: expected an integer 1…100000000, got "0"/],
  [['fuzz', '--steps', '1e9'], /--steps: expected an integer 1…100000000, got "1e9"/],
  [['fuzz', '--seed', 'abc'], /--seed: expected an integer 0…2\^53-1 or "random", got "abc"/],
  [['fuzz', '--seed', '99999999999999999999'], /--seed: expected an integer 0…2\^53-1/],
  [['fuzz', '--vms', '9'], /--vms: expected an integer 1…8, got "9"/],
  [['fuzz', '--vcpus', '0'], /--vcpus: expected an integer 1…4, got "0"/],
  [['fuzz', '--inject', 'nope'], new RegExp(`--inject: expected one of ${BUG_KINDS[0]}.*got "nope"`)],
  [['fuzz', '--profile', 'pkvm-1999'], /--profile: expected one of pkvm-2022.*got "pkvm-1999"/],
  [['fuzz', '--full-every', 'x'], /--full-every: expected an integer 0…100000000, got "x"/],
  [['fuzz', 'extra'], /unexpected argument "extra"/],
  [['fuzz', '--bogus'], /Unknown option '--bogus'/],
  [['run'], /expected at least one scenario file/],
  [['run', '--tlb', 'maybe', 'x.json'], /--tlb: expected "on" or "off", got "maybe"/],
  [['run', 'no-such-file.json'], /no-such-file\.json: \$: expected a readable file/],
  [['run', '--inject', 'bogus', 'x.json'], /--inject: expected one of .*got "bogus"/],
  [['decode', '0x1_0000_0000_0000_0000_0', '--granule', '4k', '--level', '3'], /expected the descriptor as hex "0x…" \(at most 64 bits\)/],
  [['decode', '0x3', '--granule', '8k', '--level', '3'], /expected --granule 4k, 16k or 64k, got "8k"/],
  [['decode', '0x3', '--granule', '4k', '--level', '7'], /expected --level between 0 and 3 for 4k, got "7"/],
  [['walk', 'no-such.json', '--ipa', '0x0'], /no-such\.json: \$: expected a readable file/],
  [['walk', resolve(import.meta.dirname, '../../fixtures/arch/fwb.json'), '--ipa', '0x0', '--case', 'nope'], /fwb\.json: \$: no case named "nope" \(cases: /],
];

t.test('hostile scenario files: s2emu run exits 2 naming file, JSON path and what was expected', async (t) => {
  for (const [name, re] of Object.entries(RUN_CASES)) {
    const file = join(HOSTILE, 'run', `${name}.json`);
    const r = await hostile(['run', file]);
    t.equal(r.code, ExitCode.BAD_INPUT, `${name}: exit 2`);
    t.match(r.stderr, file, `${name}: names the file`);
    t.match(r.stderr, re, `${name}: says where and what was expected`);
    t.equal(r.stdout, '', `${name}: no partial output`);
    noStack(t, r.stderr);
    t.same(r.left, [], `${name}: no file left behind`);
  }
});

t.test('hostile oracle fixtures: s2emu check exits 2 naming file, JSON path and what was expected', async (t) => {
  for (const [name, re] of Object.entries(CHECK_CASES)) {
    const file = join(HOSTILE, 'check', `${name}.json`);
    const r = await hostile(['check', file]);
    t.equal(r.code, ExitCode.BAD_INPUT, `${name}: exit 2`);
    t.match(r.stdout + r.stderr, file, `${name}: names the file`);
    t.match(r.stdout + r.stderr, re, `${name}: says where and what was expected`);
    noStack(t, r.stdout + r.stderr);
    t.same(r.left, [], `${name}: no file left behind`);
  }
  // The same files are refused by `s2emu walk` too.
  const r = await hostile(['walk', join(HOSTILE, 'check', 'truncated.json'), '--ipa', '0x0']);
  t.equal(r.code, ExitCode.BAD_INPUT);
  t.match(r.stdout + r.stderr, /truncated\.json: \$: expected valid JSON/);
});

t.test('hostile arguments: exit 2 with a message naming the option and what was expected', async (t) => {
  for (const [argv, re] of ARG_CASES) {
    const r = await hostile(argv);
    t.equal(r.code, ExitCode.BAD_INPUT, `${argv.join(' ')}: exit 2`);
    t.match(r.stdout + r.stderr, re, `${argv.join(' ')}: message`);
    noStack(t, r.stderr);
    t.same(r.left, [], `${argv.join(' ')}: no fuzz-out directory or other file left behind`);
  }
});

t.test('at least 40 hostile cases', async (t) => {
  t.ok(Object.keys(RUN_CASES).length + Object.keys(CHECK_CASES).length + ARG_CASES.length >= 40);
  // Every hostile file on disk has a case (none silently unchecked).
  for (const sub of ['run', 'check'] as const) {
    const table = sub === 'run' ? RUN_CASES : CHECK_CASES;
    for (const f of readdirSync(join(HOSTILE, sub))) t.ok(Object.prototype.hasOwnProperty.call(table, f.replace(/\.json$/, '')), `${sub}/${f} is tested`);
  }
});
