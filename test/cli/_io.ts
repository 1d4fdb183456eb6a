// Test helper: a CliIo that captures output.
import type { CliIo } from '../../src/cli/command.js';

export interface Captured extends CliIo {
  stdout: string;
  stderr: string;
}

export function captureIo(cwd: string, env: Record<string, string | undefined> = {}): Captured {
  const io = {
    stdout: '',
    stderr: '',
    env,
    cwd,
    out: (s: string) => {
      io.stdout += s;
    },
    err: (s: string) => {
      io.stderr += s;
    },
  };
  return io;
}
