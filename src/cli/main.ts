#!/usr/bin/env node
/**
 * The `s2emu` command: dispatches to the subcommands in the static table below. Each command lives in
 * `commands/<name>.ts` and exports one {@link Command}; adding a command is one import and one table line. This is
 * the only module that touches `process` (arguments, streams, exit status).
 */

import { realpathSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { ExitCode, type CliIo, type Command } from './command.js';
import { checkCommand } from './commands/check.js';
import { decodeCommand } from './commands/decode.js';
import { demoCommand } from './commands/demo.js';
import { fuzzCommand } from './commands/fuzz.js';
import { qemuDiffCommand } from './commands/qemu-diff.js';
import { runCommand } from './commands/run.js';
import { walkCommand } from './commands/walk.js';

/** Every subcommand, in the order `s2emu --help` lists them. */
export const COMMANDS: readonly Command[] = [
  checkCommand,
  decodeCommand,
  walkCommand,
  qemuDiffCommand,
  runCommand,
  demoCommand,
  fuzzCommand,
];

/** The top-level help text. */
export function helpText(commands: readonly Command[] = COMMANDS): string {
  const w = Math.max(...commands.map((c) => c.name.length));
  const lines = commands.map((c) => `  ${c.name.padEnd(w)}  ${c.summary}`);
  return `usage: s2emu <command> [options]\n\ncommands:\n${lines.join('\n')}\n\nRun 's2emu <command> --help' for a command's options.\n`;
}

/**
 * Runs `s2emu` with `argv` (the words after the program name) and resolves to the exit status.
 *
 * @returns 0 success, 1 mismatches, 2 usage or input error
 */
export async function runCli(argv: readonly string[], io: CliIo, commands: readonly Command[] = COMMANDS): Promise<ExitCode> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    (name === undefined ? io.err : io.out)(helpText(commands));
    return name === undefined ? ExitCode.BAD_INPUT : ExitCode.OK;
  }
  const cmd = commands.find((c) => c.name === name);
  if (cmd === undefined) {
    io.err(`s2emu: unknown command '${name}'\n${helpText(commands)}`);
    return ExitCode.BAD_INPUT;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    io.out(cmd.usage + '\n');
    return ExitCode.OK;
  }
  return cmd.run(rest, io);
}

/** The process-backed {@link CliIo}. */
export function processIo(): CliIo {
  return {
    out: (s) => void process.stdout.write(s),
    err: (s) => void process.stderr.write(s),
    env: process.env,
    cwd: process.cwd(),
    isTTY: process.stderr.isTTY === true,
  };
}

/** True when this module is the program (also through the npm `bin` symlink), not an import. */
function invokedDirectly(): boolean {
  const script = process.argv[1];
  if (script === undefined) return false;
  try {
    return import.meta.url === pathToFileURL(realpathSync(script)).href;
  } catch {
    return false;
  }
}

if (invokedDirectly()) {
  // `s2emu check … | head` closes the pipe early: stop quietly instead of reporting an EPIPE stack.
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw e;
  });
  runCli(process.argv.slice(2), processIo()).then(
    (code) => {
      process.exitCode = code;
    },
    (e: unknown) => {
      // An exception here is an emulator bug (InvariantError) or an I/O failure; report it and fail loudly.
      process.stderr.write(`s2emu: internal error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
      process.exitCode = 70;
    },
  );
}
