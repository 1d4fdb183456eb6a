// The s2emu entry and its commands in-process: dispatch and help (main), check, decode and walk.
import t from 'tap';
import { COMMANDS, helpText, runCli } from '../../src/cli/main.js';
import { ExitCode, parseCommandArgs, type Command } from '../../src/cli/command.js';
import { captureIo } from './_io.js';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { u64ToHex } from '../../src/arch/bits.js';
import { S2MemAttr, s2Page, s2Table } from '../../src/arch/desc-codec.js';

// --- The s2emu entry: static command table, help, unknown commands, exit statuses (0 ok, 1 mismatch, 2 bad input).
t.test('help lists every command; no command is a usage error', async (t) => {
  const io = captureIo('/');
  t.equal(await runCli(['--help'], io), ExitCode.OK);
  for (const c of COMMANDS) t.match(io.stdout, c.name);
  const io2 = captureIo('/');
  t.equal(await runCli([], io2), ExitCode.BAD_INPUT);
  t.match(io2.stderr, /usage: s2emu <command>/);
});

t.test('unknown command → 2 with the list', async (t) => {
  const io = captureIo('/');
  t.equal(await runCli(['frobnicate'], io), ExitCode.BAD_INPUT);
  t.match(io.stderr, /unknown command 'frobnicate'/);
});

t.test('<command> --help prints its usage', async (t) => {
  const io = captureIo('/');
  t.equal(await runCli(['decode', '--help'], io), ExitCode.OK);
  t.match(io.stdout, /usage: s2emu decode/);
});

t.test('a command table can be extended with one entry (as run/demo will be)', async (t) => {
  const extra: Command = { name: 'hello', summary: 'says hello', usage: 'usage: s2emu hello', run: (_a, io) => (io.out('hi\n'), ExitCode.OK) };
  const io = captureIo('/');
  t.equal(await runCli(['hello'], io, [...COMMANDS, extra]), ExitCode.OK);
  t.equal(io.stdout, 'hi\n');
  t.match(helpText([...COMMANDS, extra]), /hello\s+says hello/);
});

t.test('parseCommandArgs reports unknown options instead of throwing', async (t) => {
  const r = parseCommandArgs(['--nope'], { json: { type: 'boolean' } });
  t.notOk(r.ok);
  t.match(!r.ok && r.message, /--nope/);
});

// --- `s2emu check`: exit 0/1/2, mismatch report with trace, divergent lines, JSON summary, final "N passed, N failed".
const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const tmp = mkdtempSync(join(tmpdir(), 's2emu-cli-test-'));
t.teardown(() => rmSync(tmp, { recursive: true, force: true }));

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

// --- `s2emu decode` and `s2emu walk`.

t.test('decode prints every field of a page descriptor', async (t) => {
  const d = s2Page({ oa: 0x5010_6000, ap: 'RO', af: true, dbm: true, xn: 0b10, memAttr: S2MemAttr.NORMAL_WB, sh: 3, sw: 0b0101 });
  const io = captureIo(ROOT);
  t.equal(await runCli(['decode', u64ToHex(d.lo, d.hi), '--granule', '4k', '--level', '3'], io), ExitCode.OK);
  t.match(io.stdout, /kind\s+page/);
  t.match(io.stdout, /OA\s+0x50106000/);
  t.match(io.stdout, /S2AP\s+0b01 \(bits\[7:6\]: RO\)/);
  t.match(io.stdout, /DBM\s+1/);
  t.match(io.stdout, /XN\s+0b10/);
  t.match(io.stdout, /SW\s+0x5/);
  t.match(io.stdout, /MemAttr\s+0b1111 .*Normal oWB iWB/);
});

t.test('decode: a table descriptor, an invalid one, and DS / 52-bit forms', async (t) => {
  const tab = s2Table({ nlta: 0x4810_1000 });
  const io = captureIo(ROOT);
  t.equal(await runCli(['decode', u64ToHex(tab.lo, tab.hi), '--level', '1'], io), ExitCode.OK);
  t.match(io.stdout, /NLTA\s+0x48101000/);
  const io2 = captureIo(ROOT);
  t.equal(await runCli(['decode', '0x7fd', '--granule', '4k', '--level', '0'], io2), ExitCode.OK);
  t.match(io2.stdout, /kind\s+invalid/, 'a block at 4K level 0 without DS');
  const io3 = captureIo(ROOT);
  t.equal(await runCli(['decode', '0x7fd', '--granule', '4k', '--level', '0', '--ds'], io3), ExitCode.OK);
  t.match(io3.stdout, /kind\s+block/, 'allowed with DS');
  const io4 = captureIo(ROOT);
  t.equal(await runCli(['decode', '0x5002a7ff', '--granule', '64k', '--level', '3', '--pa52'], io4), ExitCode.OK);
  t.match(io4.stdout, /OA\s+0xa000050020000/);
});

t.test('decode: usage errors exit 2', async (t) => {
  for (const argv of [
    ['decode'],
    ['decode', 'xyz', '--level', '3'],
    ['decode', '0x1', '--level', '4'],
    ['decode', '0x1', '--level', '-1'],
    ['decode', '0x1', '--granule', '8k', '--level', '3'],
    ['decode', '0x1', '--granule', '64k', '--level', '3', '--ds'],
    ['decode', '0x1'],
  ]) {
    const io = captureIo(ROOT);
    t.equal(await runCli(argv, io), ExitCode.BAD_INPUT, argv.join(' '));
    t.match(io.stderr, /^s2emu decode: /);
  }
});

t.test('walk prints each level with address, raw value and fields, then the syndromes', async (t) => {
  const io = captureIo(ROOT);
  t.equal(await runCli(['walk', 'fixtures/arch/xnx-el0.json', '--ipa', '0x40002000', '--access', 'exec', '--el0'], io), ExitCode.OK);
  t.match(io.stdout, /config: .*granule 4k, IAS 39 bits, start level 1/);
  t.match(io.stdout, /L1  @0x48100008 = 0x0000_0000_4810_1003  table next=0x48101000/);
  t.match(io.stdout, /L3  @0x48102010 = 0x0040_0000_5010_27ff  page oa=0x50102000 .*XN=10/);
  t.match(io.stdout, /result: permission fault, level 3 \(FSC 0x0f\)/);
  t.match(io.stdout, /ESR_EL2=0x8200000f FAR_EL2=0x40002000 HPFAR_EL2=0x400020/);
  const ok = captureIo(ROOT);
  t.equal(await runCli(['walk', 'fixtures/arch/xnx-el0.json', '--ipa', '0x40000010'], ok), ExitCode.OK);
  t.match(ok.stdout, /result: PA 0x50100010 \(leaf at level 3, 4096 bytes\)/);
  t.match(ok.stdout, /as AT S12E1R: PAR_EL1=0x50100b00/);
});

t.test('walk: --case picks a case; errors exit 2', async (t) => {
  const io = captureIo(ROOT);
  t.equal(await runCli(['walk', 'fixtures/qemu/gen-seed-1.json', '--ipa', '0x1000'], io), ExitCode.BAD_INPUT);
  t.match(io.stderr, /holds 885 cases; pick one with --case NAME/);
  const io2 = captureIo(ROOT);
  t.equal(await runCli(['walk', 'fixtures/qemu/gen-seed-1.json', '--case', 'gen-seed1-0000', '--ipa', '0x1f0cc52c0'], io2), ExitCode.OK);
  t.match(io2.stdout, /configuration fault: address_size level 0|result: address_size fault, level 0/);
  const io3 = captureIo(ROOT);
  t.equal(await runCli(['walk', 'fixtures/arch/fwb.json', '--ipa', '0x10000000000001'], io3), ExitCode.OK);
  t.match(io3.stdout, /at or above 2\^52 \(PAMax\)/);
  for (const argv of [
    ['walk', 'fixtures/arch/fwb.json'],
    ['walk', 'fixtures/arch/fwb.json', '--ipa', 'zz'],
    ['walk', 'fixtures/arch/fwb.json', '--ipa', '0x0', '--access', 'fetch'],
    ['walk', 'nope.json', '--ipa', '0x0'],
    ['walk', 'fixtures/arch/fwb.json', '--ipa', '0x0', '--case', 'nope'],
  ]) {
    const e = captureIo(ROOT);
    t.equal(await runCli(argv, e), ExitCode.BAD_INPUT, argv.join(' '));
  }
});

t.test('walk: an external abort on the walk shows the AT exception', async (t) => {
  const io = captureIo(ROOT);
  t.equal(await runCli(['walk', 'fixtures/qemu/gen-seed-1.json', '--case', 'gen-seed1-0086', '--ipa', '0x29e7810720', '--access', 'read'], io), ExitCode.OK);
  t.match(io.stdout, /external abort on the walk/);
  t.match(io.stdout, /as AT S12E1R: synchronous Data Abort at EL2, ESR_EL2=0x96000157/);
});
