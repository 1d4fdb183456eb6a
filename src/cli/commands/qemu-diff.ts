/**
 * `s2emu qemu-diff [--seed N] [--count M]`: the live differential test against QEMU. Generates M random stage-2
 * cases with the shared oracle's generator (`<shared>/oracle/gen.mjs`, deterministic per seed), has QEMU 7.2 answer
 * them (`<shared>/oracle/run.mjs`, which boots `qemu-system-aarch64`), and checks every answer against the model
 * exactly as `s2emu check` does: zero mismatches are allowed outside the documented divergences
 * (docs/divergences.md). `<shared>` is `../shared` beside the package root, or `$S2EMU_SHARED`.
 */

import { spawn } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { accessSync, closeSync, constants, existsSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runCase, tally } from '../../check/fixture-run.js';
import { formatIssue, parseFixture } from '../../check/fixture-schema.js';
import { ExitCode, parseCommandArgs, usageError, type CliIo, type Command } from '../command.js';
import { printCaseReport, printTotals, summarize } from './check.js';

/** Default number of generated cases. */
export const DEFAULT_COUNT = 2000;

const USAGE = `usage: s2emu qemu-diff [--seed N] [--count M] [--granule 4k|16k|64k|mixed] [--keep] [--verbose] [--json]

Generates M random cases (default ${DEFAULT_COUNT}) with <shared>/oracle/gen.mjs (seed N, random when omitted; it is
printed first), runs them in QEMU with <shared>/oracle/run.mjs and checks every answer against the model. <shared> is
../shared beside the package root, or $S2EMU_SHARED; QEMU is $QEMU or qemu-system-aarch64 on $PATH.
  --keep     keep the generated cases and QEMU's answers (their directory is printed)
  --verbose  also print the divergent (documented) queries
  --json     print the JSON summary of "s2emu check --json" instead of text
Exit status: 0 no mismatch outside the documented divergences, 1 mismatches, 2 QEMU or the oracle unavailable.`;

/** The package root: the nearest ancestor of this module holding s2emu's package.json. */
export function packageRoot(from: string = dirname(fileURLToPath(import.meta.url))): string | null {
  let dir = from;
  for (;;) {
    const p = join(dir, 'package.json');
    if (existsSync(p)) {
      try {
        if ((JSON.parse(readFileSync(p, 'utf8')) as { name?: unknown }).name === 's2emu') return dir;
      } catch {
        // An unreadable package.json is not ours; keep looking upwards.
      }
    }
    const up = dirname(dir);
    if (up === dir) return null;
    dir = up;
  }
}

/** The shared directory (oracle, fixtures, references): `$S2EMU_SHARED`, else `../shared` beside the package root. */
export function sharedDir(env: CliIo['env'], cwd: string): string | null {
  const e = env['S2EMU_SHARED'];
  if (e !== undefined && e !== '') return resolve(cwd, e);
  const root = packageRoot();
  return root === null ? null : resolve(root, '..', 'shared');
}

/** The QEMU binary run.mjs will use, or null when it cannot be found. */
export function findQemu(env: CliIo['env']): string | null {
  const q = env['QEMU'];
  const candidates = q !== undefined && q !== '' ? [q] : (env['PATH'] ?? '').split(delimiter).filter((d) => d !== '').map((d) => join(d, 'qemu-system-aarch64'));
  for (const c of candidates) {
    try {
      accessSync(c, constants.X_OK);
      return c;
    } catch {
      // not there; try the next directory
    }
  }
  return null;
}

/** Runs `node script args…` with stdout into `outFile`; resolves to the exit code and the tail of stderr. */
function runNode(script: string, args: readonly string[], outFile: string, env: CliIo['env']): Promise<{ code: number; stderr: string }> {
  return new Promise((res) => {
    const fd = openSync(outFile, 'w');
    const child = spawn(process.execPath, [script, ...args], { stdio: ['ignore', fd, 'pipe'], env: { ...env } });
    let stderr = '';
    child.stderr?.on('data', (b: Buffer) => {
      stderr = (stderr + b.toString('utf8')).slice(-4000);
    });
    child.on('error', (e) => {
      closeSync(fd);
      res({ code: -1, stderr: e.message });
    });
    child.on('close', (code) => {
      closeSync(fd);
      res({ code: code ?? -1, stderr });
    });
  });
}

interface DiffArgs {
  seed?: string;
  count?: string;
  granule?: string;
  keep?: boolean;
  verbose?: boolean;
  json?: boolean;
}

/** `s2emu qemu-diff`. */
export const qemuDiffCommand: Command = {
  name: 'qemu-diff',
  summary: 'live differential test: random cases through QEMU and the model',
  usage: USAGE,
  async run(argv, io) {
    const a = parseCommandArgs<DiffArgs>(argv, {
      seed: { type: 'string' },
      count: { type: 'string' },
      granule: { type: 'string' },
      keep: { type: 'boolean' },
      verbose: { type: 'boolean' },
      json: { type: 'boolean' },
    });
    if (!a.ok) return usageError(io, this, a.message);
    if (a.positionals.length > 0) return usageError(io, this, `unexpected argument ${JSON.stringify(a.positionals[0])}`);
    const seed = a.values.seed === undefined ? randomInt(1, 2 ** 31 - 1) : Number(a.values.seed);
    if (!Number.isSafeInteger(seed) || seed < 0) return usageError(io, this, `expected --seed as a non-negative integer, got ${JSON.stringify(a.values.seed)}`);
    const count = a.values.count === undefined ? DEFAULT_COUNT : Number(a.values.count);
    if (!Number.isSafeInteger(count) || count < 1) return usageError(io, this, `expected --count as a positive integer, got ${JSON.stringify(a.values.count)}`);
    const granule = a.values.granule ?? 'mixed';
    if (!['4k', '16k', '64k', 'mixed'].includes(granule)) return usageError(io, this, `expected --granule 4k, 16k, 64k or mixed, got ${JSON.stringify(granule)}`);
    const say = a.values.json === true ? io.err : io.out;
    say(`qemu-diff: seed ${seed}, ${count} cases (rerun with --seed ${seed})\n`);

    const shared = sharedDir(io.env, io.cwd);
    const gen = shared === null ? null : join(shared, 'oracle', 'gen.mjs');
    const run = shared === null ? null : join(shared, 'oracle', 'run.mjs');
    if (gen === null || run === null || !existsSync(gen) || !existsSync(run)) {
      io.err(`qemu-diff: the oracle was not found (looked for ${gen ?? '<package root>/../shared/oracle/gen.mjs'}); set S2EMU_SHARED to the shared directory\n`);
      return ExitCode.BAD_INPUT;
    }
    if (findQemu(io.env) === null) {
      io.err('qemu-diff: qemu-system-aarch64 not found (set QEMU, or: apt-get install qemu-system-arm gcc-aarch64-linux-gnu make)\n');
      return ExitCode.BAD_INPUT;
    }
    const dir = mkdtempSync(join(tmpdir(), 's2emu-qemu-diff-'));
    try {
      const casesFile = join(dir, 'cases.json');
      const resultsFile = join(dir, 'results.json');
      const t0 = Date.now();
      const g = await runNode(gen, ['--seed', String(seed), '--count', String(count), '--granule', granule], casesFile, io.env);
      if (g.code !== 0) {
        io.err(`qemu-diff: gen.mjs failed (exit ${g.code}): ${g.stderr.trim()}\n`);
        return ExitCode.BAD_INPUT;
      }
      const r = await runNode(run, [casesFile, '--quiet'], resultsFile, io.env);
      if (r.code !== 0) {
        io.err(`qemu-diff: run.mjs failed (exit ${r.code}): ${r.stderr.trim()}\n`);
        return ExitCode.BAD_INPUT;
      }
      const t1 = Date.now();
      const parsed = parseFixture(resultsFile, readFileSync(resultsFile, 'utf8'));
      if (!parsed.ok) {
        for (const i of parsed.issues.slice(0, 20)) io.err(formatIssue(i) + '\n');
        io.err('qemu-diff: the oracle produced results the checker cannot read\n');
        return ExitCode.BAD_INPUT;
      }
      const reports = parsed.cases.map((c) => runCase(c));
      const totals = tally(reports);
      const t2 = Date.now();
      const broken = parsed.cases.filter((c) => c.expect.every((e) => e.kind === 'unmeasured')).length;
      if (a.values.json === true) io.out(JSON.stringify({ seed, ...summarize(1, reports, totals) }, null, 2) + '\n');
      else {
        for (const rep of reports) printCaseReport(rep, io, a.values.verbose !== true);
        io.out(`qemu-diff: QEMU answered ${parsed.cases.length} cases in ${((t1 - t0) / 1000).toFixed(1)} s, model checked them in ${((t2 - t1) / 1000).toFixed(1)} s${broken > 0 ? `; ${broken} cases got no answer (oracle_error)` : ''}\n`);
        if (a.values.keep === true) io.out(`qemu-diff: kept ${casesFile} and ${resultsFile}\n`);
        io.out(`qemu-diff: seed ${seed}\n`);
        printTotals(io, reports, totals);
      }
      return totals.failed === 0 ? ExitCode.OK : ExitCode.MISMATCH;
    } finally {
      if (a.values.keep !== true) rmSync(dir, { recursive: true, force: true });
    }
  },
};
