// `s2emu check`: exit 0/1/2, mismatch report with trace, divergent lines, JSON summary, final "N passed, N failed".
import t from 'tap';
import { mkdtempSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runCli } from '../../src/cli/main.js';
import { ExitCode } from '../../src/cli/command.js';
import { captureIo } from './_io.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const tmp = mkdtempSync(join(tmpdir(), 's2emu-cli-test-'));
t.teardown(() => void 0);

function lastLine(s: string): string {
  const lines = s.trimEnd().split('\n');
  return lines[lines.length - 1]!;
}

t.test('the shared sanity fixture passes: exit 0 and "18 passed, 0 failed"', async (t) => {
  const io = captureIo(ROOT);
  t.equal(await runCli(['check', 'fixtures/qemu/oracle-sanity.json'], io), ExitCode.OK);
  t.equal(lastLine(io.stdout), '18 passed, 0 failed');
  t.equal(io.stderr, '');
});

t.test('a directory is searched; divergent queries are reported with their rule and do not fail', async (t) => {
  const io = captureIo(ROOT);
  t.equal(await runCli(['check', 'fixtures/qemu-divergent'], io), ExitCode.OK);
  t.match(io.stdout, /^divergent fixtures\/qemu-divergent\/gen-seed-1\.json gen-seed1-\d+ q\d+ .*: ipa-larger-than-ps \(rule: ASL/m);
  t.match(lastLine(io.stdout), /^\d+ passed, 0 failed$/);
  const quiet = captureIo(ROOT);
  await runCli(['check', '--quiet', 'fixtures/qemu-divergent'], quiet);
  t.notMatch(quiet.stdout, /^divergent fixtures/m);
});

t.test('--no-divergences turns them into failures (exit 1), each with a trace', async (t) => {
  const io = captureIo(ROOT);
  t.equal(await runCli(['check', '--no-divergences', 'fixtures/qemu-divergent'], io), ExitCode.MISMATCH);
  t.match(io.stdout, /^FAIL .*\n  fault\.type: expected "translation", got /m);
  t.match(io.stdout, /^  L\d  @0x[0-9a-f]+ = 0x[0-9a-f_]{19}  /m);
  t.match(lastLine(io.stdout), /^\d+ passed, [1-9]\d* failed$/);
});

t.test('a mismatch exits 1 and names field, expected and actual', async (t) => {
  const src = JSON.parse(readFileSync(join(ROOT, 'fixtures/qemu/oracle-sanity.json'), 'utf8'));
  const c = Array.isArray(src) ? src[0] : src;
  const i = c.expect.findIndex((e: { par_el1?: string }) => e.par_el1 !== undefined);
  c.expect[i].par_el1 = '0xdead';
  const f = join(tmp, 'bad.json');
  writeFileSync(f, JSON.stringify(c));
  const io = captureIo(tmp);
  t.equal(await runCli(['check', 'bad.json'], io), ExitCode.MISMATCH);
  t.match(io.stdout, new RegExp(`FAIL bad\\.json ${c.name} q${i} `));
  t.match(io.stdout, /  par_el1: expected "0xdead", got "0x[0-9a-f]+"/);
  t.equal(lastLine(io.stdout), '17 passed, 1 failed');
});

t.test('bad input exits 2 with file, JSON path and expectation — never a stack trace', async (t) => {
  writeFileSync(join(tmp, 'broken.json'), '[{"name": "x", "regs": {"vtcr_el2": "zz", "vttbr_el2": "0x0"}, "queries": [], "expect": []}]');
  const io = captureIo(tmp);
  t.equal(await runCli(['check', 'broken.json'], io), ExitCode.BAD_INPUT);
  t.match(io.stderr, /^broken\.json: \$\[0\]\.regs\.vtcr_el2: expected a 64-bit hex string "0x…", got string "zz"$/m);
  t.notMatch(io.stderr, /    at /);
  const missing = captureIo(tmp);
  t.equal(await runCli(['check', 'nope.json'], missing), ExitCode.BAD_INPUT);
  t.match(missing.stderr, /nope\.json: \$: expected a readable file or directory/);
  const noArgs = captureIo(tmp);
  t.equal(await runCli(['check'], noArgs), ExitCode.BAD_INPUT);
  const badOpt = captureIo(tmp);
  t.equal(await runCli(['check', '--frob', 'x'], badOpt), ExitCode.BAD_INPUT);
  t.match(badOpt.stderr, /--frob/);
});

t.test('--json prints a machine summary', async (t) => {
  const io = captureIo(ROOT);
  t.equal(await runCli(['check', '--json', 'fixtures/arch'], io), ExitCode.OK);
  const s = JSON.parse(io.stdout);
  t.match(s, { failed: 0, divergent: 0, unmeasured: 0, failures: [] });
  t.ok(s.passed >= 30);
  t.ok(s.files >= 9);
});
