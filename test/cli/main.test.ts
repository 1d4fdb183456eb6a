// The s2emu entry: static command table, help, unknown commands, exit statuses (0 ok, 1 mismatch, 2 bad input).
import t from 'tap';
import { COMMANDS, helpText, runCli } from '../../src/cli/main.js';
import { ExitCode, parseCommandArgs, type Command } from '../../src/cli/command.js';
import { captureIo } from './_io.js';

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
