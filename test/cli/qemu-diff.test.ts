// `s2emu qemu-diff`: the pipeline gen.mjs → run.mjs → check, first with a stand-in oracle (no QEMU needed), then
// briefly against the real QEMU when it is installed.
import t from 'tap';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runCli } from '../../src/cli/main.js';
import { ExitCode } from '../../src/cli/command.js';
import { findQemu, packageRoot, sharedDir } from '../../src/cli/commands/qemu-diff.js';
import { captureIo } from './_io.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** A shared/ directory whose oracle answers with a recorded fixture instead of booting QEMU. */
function fakeShared(opts: { genExit?: number; results?: string } = {}): string {
  const dir = mkdtempSync(join(tmpdir(), 's2emu-fake-shared-'));
  mkdirSync(join(dir, 'oracle'));
  const results = join(dir, 'results.json');
  writeFileSync(results, opts.results ?? readFileSync(join(ROOT, 'fixtures/qemu/oracle-sanity.json'), 'utf8'));
  writeFileSync(join(dir, 'oracle', 'gen.mjs'), `process.stderr.write(process.argv.slice(2).join(' ')); process.stdout.write('[]'); process.exit(${opts.genExit ?? 0});\n`);
  writeFileSync(join(dir, 'oracle', 'run.mjs'), `import fs from 'node:fs'; process.stdout.write(fs.readFileSync(${JSON.stringify(results)}, 'utf8'));\n`);
  return dir;
}

function lastLine(s: string): string {
  const l = s.trimEnd().split('\n');
  return l[l.length - 1]!;
}

t.test('runs generator, oracle and checker; prints the seed first and "N passed, N failed" last', async (t) => {
  const io = captureIo(ROOT, { S2EMU_SHARED: fakeShared(), QEMU: process.execPath });
  t.equal(await runCli(['qemu-diff', '--seed', '5', '--count', '3'], io), ExitCode.OK);
  t.match(io.stdout.split('\n')[0], /^qemu-diff: seed 5, 3 cases/);
  t.equal(lastLine(io.stdout), '18 passed, 0 failed');
});

t.test('a mismatch from the oracle exits 1', async (t) => {
  const c = JSON.parse(readFileSync(join(ROOT, 'fixtures/qemu/oracle-sanity.json'), 'utf8'));
  const one = Array.isArray(c) ? c[0] : c;
  const i = one.expect.findIndex((e: { ok?: boolean }) => e.ok === true);
  one.expect[i] = { ok: false, fault: { type: 'translation', level: 3, stage: 2, s1ptw: false, fsc: '0x7' } };
  const io = captureIo(ROOT, { S2EMU_SHARED: fakeShared({ results: JSON.stringify([one]) }), QEMU: process.execPath });
  t.equal(await runCli(['qemu-diff', '--seed', '1', '--count', '1'], io), ExitCode.MISMATCH);
  t.match(io.stdout, /^FAIL /m);
  t.equal(lastLine(io.stdout), '17 passed, 1 failed');
});

t.test('--json prints the summary with the seed', async (t) => {
  const io = captureIo(ROOT, { S2EMU_SHARED: fakeShared(), QEMU: process.execPath });
  t.equal(await runCli(['qemu-diff', '--seed', '9', '--count', '1', '--json'], io), ExitCode.OK);
  t.match(JSON.parse(io.stdout), { seed: 9, passed: 18, failed: 0 });
  t.match(io.stderr, /seed 9/);
});

t.test('unavailable oracle or QEMU, failing generator, bad options: exit 2 with a message', async (t) => {
  const cases: [string[], Record<string, string>, RegExp][] = [
    [['qemu-diff', '--count', '1'], { S2EMU_SHARED: '/nonexistent', QEMU: process.execPath }, /the oracle was not found/],
    [['qemu-diff', '--count', '1'], { S2EMU_SHARED: fakeShared(), PATH: '' }, /qemu-system-aarch64 not found/],
    [['qemu-diff', '--count', '1'], { S2EMU_SHARED: fakeShared({ genExit: 3 }), QEMU: process.execPath }, /gen\.mjs failed \(exit 3\)/],
    [['qemu-diff', '--count', '1'], { S2EMU_SHARED: fakeShared({ results: '{"name": 1}' }), QEMU: process.execPath }, /cannot read/],
    [['qemu-diff', '--count', '0'], {}, /--count as a positive integer/],
    [['qemu-diff', '--seed', 'x'], {}, /--seed as a non-negative integer/],
    [['qemu-diff', '--granule', '8k'], {}, /--granule/],
    [['qemu-diff', 'extra'], {}, /unexpected argument/],
  ];
  for (const [argv, env, re] of cases) {
    const io = captureIo(ROOT, env);
    t.equal(await runCli(argv, io), ExitCode.BAD_INPUT, argv.join(' '));
    t.match(io.stderr, re);
  }
});

t.test('locating the package root, shared/ and QEMU', async (t) => {
  t.equal(packageRoot(join(ROOT, 'src', 'cli')), ROOT.replace(/\/$/, ''));
  t.equal(packageRoot('/'), null);
  t.equal(sharedDir({ S2EMU_SHARED: '/x/y' }, '/'), '/x/y');
  t.match(sharedDir({}, '/'), /shared$/);
  t.equal(findQemu({ QEMU: process.execPath }), process.execPath);
  t.equal(findQemu({ QEMU: '/nonexistent/qemu' }), null);
});

const qemu = findQemu(process.env);
const shared = sharedDir(process.env, ROOT);
t.test('live: 40 random cases through QEMU 7.2 agree with the model', { skip: qemu === null ? 'qemu-system-aarch64 not installed' : false, timeout: 120_000 }, async (t) => {
  const io = captureIo(ROOT, { ...process.env });
  const code = await runCli(['qemu-diff', '--seed', '20261125', '--count', '40'], io);
  t.equal(code, ExitCode.OK, io.stdout.split('\n').filter((l) => l.startsWith('FAIL')).join('\n') + io.stderr);
  t.match(lastLine(io.stdout), /^\d+ passed, 0 failed$/);
  t.ok(shared !== null);
});
