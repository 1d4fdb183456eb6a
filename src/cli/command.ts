/**
 * The contract between `main.ts` and the subcommands in `commands/`: a command is a name, a one-line summary, a
 * usage text and a function from arguments to an exit status, writing only through the {@link CliIo} it is given
 * (so tests run commands in-process and capture the output; only `main.ts` touches `process`).
 *
 * Exit statuses (DESIGN.md §4): 0 success, 1 a check found mismatches, 2 bad input (usage, unreadable or invalid
 * file — the message names the file, the JSON path and what was expected).
 */

import { parseArgs, type ParseArgsConfig } from 'node:util';

/** Exit statuses of every command. */
export const ExitCode = { OK: 0, MISMATCH: 1, BAD_INPUT: 2 } as const;
/** An exit status. */
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

/** Where a command writes, and what it may read of its environment. */
export interface CliIo {
  /** Writes to standard output (the text includes its own newlines). */
  readonly out: (text: string) => void;
  /** Writes to standard error. */
  readonly err: (text: string) => void;
  /** Environment variables (`S2EMU_SHARED`, `QEMU`, …). */
  readonly env: Readonly<Record<string, string | undefined>>;
  /** Directory relative paths are resolved against. */
  readonly cwd: string;
  /** Standard error is a terminal (progress lines); absent means no. */
  readonly isTTY?: boolean;
}

/** One subcommand of `s2emu`. */
export interface Command {
  /** The word after `s2emu`. */
  readonly name: string;
  /** One line for `s2emu --help`. */
  readonly summary: string;
  /** Full usage text for `s2emu <name> --help` and usage errors. */
  readonly usage: string;
  /** Runs the command; resolves to its exit status. Never throws on user input. */
  readonly run: (argv: readonly string[], io: CliIo) => Promise<ExitCode> | ExitCode;
}

/** Options/positionals parsed by {@link parseCommandArgs}, or the usage error. */
export type ParsedArgs<T> =
  | { readonly ok: true; readonly values: T; readonly positionals: string[] }
  | { readonly ok: false; readonly message: string };

/**
 * `node:util.parseArgs` (strict) without exceptions: an unknown option or a missing value becomes a message the
 * command prints with its usage (exit 2).
 */
export function parseCommandArgs<T>(argv: readonly string[], options: NonNullable<ParseArgsConfig['options']>): ParsedArgs<T> {
  try {
    const r = parseArgs({ args: [...argv], options, strict: true, allowPositionals: true });
    return { ok: true, values: r.values as T, positionals: r.positionals };
  } catch (e) {
    // JUSTIFY: parseArgs throws TypeError with a readable message for every usage error.
    return { ok: false, message: (e as Error).message };
  }
}

/** Prints a usage error and returns exit status 2. */
export function usageError(io: CliIo, cmd: Pick<Command, 'name' | 'usage'>, message: string): ExitCode {
  io.err(`s2emu ${cmd.name}: ${message}\n${cmd.usage}\n`);
  return ExitCode.BAD_INPUT;
}
