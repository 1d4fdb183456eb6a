/**
 * `s2emu fuzz --seed N --steps M [--profile P] [--vms K] [--vcpus V] [--inject KIND] [--coverage] [--json]`: random
 * steps mixing valid and hostile host hypercalls, guest accesses and hypercalls, host accesses, VM lifecycle and host
 * memory events, with the ghost-state invariants and the isolation oracles after every step (`check/fuzz/`). On a
 * failure the step sequence is shrunk and written as a scenario file that `s2emu run` replays to the same failure.
 *
 * Exit status: 0 no violation (and, with `--require-coverage`, every reachable combination exercised), 1 a violation
 * (or missing coverage), 2 bad arguments.
 */

import { resolve } from 'node:path';
import { Bug, BUG_KINDS, parseBug } from '../../arch/inject.js';
import { PROFILES } from '../../arch/smccc.js';
import { progressLine } from '../../check/fuzz/progress.js';
import { runFuzz, type FuzzResult } from '../../check/fuzz/runner.js';
import { ExitCode, parseCommandArgs, usageError, type CliIo, type Command } from '../command.js';

const USAGE = `usage: s2emu fuzz [--seed N|random] [--steps M] [--profile P] [--vms K] [--vcpus V] [--inject KIND]
                  [--coverage] [--require-coverage] [--json] [--out DIR] [--no-shrink] [--full-every N]

Runs M random steps (valid and hostile host hypercalls, guest accesses and hypercalls, host accesses, VM
create/destroy, vCPU load/put, munmap/NUMA/compaction events) on a fresh machine, checking the ghost-state
invariants and the isolation oracles after every step. The same seed always gives the same run.
  --seed N|random     PRNG seed (integer 0…2^53-1, or "random": chosen and printed); default random
  --steps M           steps to run (1…100000000, default 10000)
  --profile P         hypercall ABI profile (${Object.keys(PROFILES).join(', ')}; default pkvm-2022)
  --vms K             VMs alive at most (1…8, default 3)
  --vcpus V           vCPUs per VM at most (1…4, default 2)
  --inject KIND       plant a known bug: ${BUG_KINDS.join(', ')}
  --coverage          report (hypercall x page state x outcome) and descriptor-transition coverage
  --require-coverage  like --coverage, and exit 1 when a reachable combination was not exercised
  --json              print one JSON summary instead of text
  --out DIR           where a reproducer is written (default ./fuzz-out)
  --no-shrink         write the failing sequence as found
  --full-every N      full invariant recomputation every N steps (default 5000, 0 never; incremental every step)
A progress bar is drawn on standard error when it is a terminal (S2EMU_PROGRESS=1 or 0 forces it on or off).
Exit status: 0 no violation, 1 a violation (reproducer written) or missing coverage, 2 bad arguments.`;

interface FuzzFlags {
  seed?: string;
  steps?: string;
  profile?: string;
  vms?: string;
  vcpus?: string;
  inject?: string;
  coverage?: boolean;
  'require-coverage'?: boolean;
  json?: boolean;
  out?: string;
  'no-shrink'?: boolean;
  'full-every'?: string;
}

/** A decimal integer in [min, max], or null. */
function intArg(s: string | undefined, dflt: number, min: number, max: number): number | null {
  if (s === undefined) return dflt;
  if (!/^[0-9]+$/.test(s)) return null;
  const n = Number(s);
  return Number.isSafeInteger(n) && n >= min && n <= max ? n : null;
}

/** Runs the fuzzer; see the module comment. */
export function runFuzzCommand(argv: readonly string[], io: CliIo): ExitCode {
  const p = parseCommandArgs<FuzzFlags>(argv, {
    seed: { type: 'string' },
    steps: { type: 'string' },
    profile: { type: 'string' },
    vms: { type: 'string' },
    vcpus: { type: 'string' },
    inject: { type: 'string' },
    coverage: { type: 'boolean' },
    'require-coverage': { type: 'boolean' },
    json: { type: 'boolean' },
    out: { type: 'string' },
    'no-shrink': { type: 'boolean' },
    'full-every': { type: 'string' },
  });
  if (!p.ok) return usageError(io, fuzzCommand, p.message);
  const v = p.values;
  if (p.positionals.length > 0) return usageError(io, fuzzCommand, `unexpected argument "${p.positionals[0]}"`);
  let seed: number | null;
  if (v.seed === undefined || v.seed === 'random') seed = Math.floor(Math.random() * 2 ** 32);
  else seed = intArg(v.seed, 0, 0, Number.MAX_SAFE_INTEGER);
  if (seed === null) return usageError(io, fuzzCommand, `--seed: expected an integer 0…2^53-1 or "random", got "${v.seed}"`);
  const steps = intArg(v.steps, 10_000, 1, 100_000_000);
  if (steps === null) return usageError(io, fuzzCommand, `--steps: expected an integer 1…100000000, got "${v.steps}"`);
  const vms = intArg(v.vms, 3, 1, 8);
  if (vms === null) return usageError(io, fuzzCommand, `--vms: expected an integer 1…8, got "${v.vms}"`);
  const vcpus = intArg(v.vcpus, 2, 1, 4);
  if (vcpus === null) return usageError(io, fuzzCommand, `--vcpus: expected an integer 1…4, got "${v.vcpus}"`);
  const fullEvery = intArg(v['full-every'], 5000, 0, 100_000_000);
  if (fullEvery === null) return usageError(io, fuzzCommand, `--full-every: expected an integer 0…100000000, got "${v['full-every']}"`);
  const profile = v.profile ?? 'pkvm-2022';
  if (!Object.prototype.hasOwnProperty.call(PROFILES, profile)) {
    return usageError(io, fuzzCommand, `--profile: expected one of ${Object.keys(PROFILES).join(', ')}, got "${profile}"`);
  }
  let inject: Bug = Bug.NONE;
  if (v.inject !== undefined) {
    const b = parseBug(v.inject);
    if (b === null) return usageError(io, fuzzCommand, `--inject: expected one of ${BUG_KINDS.join(', ')}, got "${v.inject}"`);
    inject = b;
  }
  const wantCoverage = v.coverage === true || v['require-coverage'] === true;
  // S2EMU_PROGRESS=1 / 0 forces the progress line on / off (e.g. under a terminal multiplexer that is not a TTY).
  const force = io.env.S2EMU_PROGRESS;
  const tty = v.json !== true && (force === '1' || (force !== '0' && io.isTTY === true));
  if (!v.json) io.out(`s2emu fuzz: seed ${seed}, ${steps} steps, profile ${profile}, up to ${vms} VMs x ${vcpus} vCPUs${inject !== Bug.NONE ? `, injected bug ${inject}` : ''}\n`);
  const r = runFuzz({
    seed,
    steps,
    profile,
    vms,
    vcpus,
    inject,
    fullEvery,
    coverage: wantCoverage,
    shrink: v['no-shrink'] !== true,
    outDir: resolve(io.cwd, v.out ?? 'fuzz-out'),
    ...(tty ? { onProgress: (pr) => io.err(progressLine(pr)), progressEveryMs: 500 } : {}),
  });
  if (tty) io.err('\n');
  const missing = r.coverage === null ? 0 : r.coverage.hcalls.missing.length + r.coverage.bbm.missing.length;
  if (v.json === true) io.out(JSON.stringify(summary(r)) + '\n');
  else printText(io, r);
  if (r.violations > 0) return ExitCode.MISMATCH;
  return v['require-coverage'] === true && missing > 0 ? ExitCode.MISMATCH : ExitCode.OK;
}

function summary(r: FuzzResult): Record<string, unknown> {
  return {
    seed: r.seed,
    steps: r.steps,
    violations: r.violations,
    stepsPerSecond: r.stepsPerSecond,
    stepsPerCpuSecond: r.stepsPerCpuSecond,
    elapsedMs: Math.round(r.elapsedMs),
    inject: r.inject,
    ...(r.failure !== null ? { failure: { kind: r.failure.kind, message: r.failure.message } } : {}),
    ...(r.shrinkStats !== null ? { shrink: r.shrinkStats } : {}),
    ...(r.reproducer !== null ? { reproducer: r.reproducer.path, explanation: r.reproducer.explanation } : {}),
    ...(r.coverage !== null ? { coverage: r.coverage } : {}),
  };
}

function printText(io: CliIo, r: FuzzResult): void {
  io.out(`${r.steps} steps in ${(r.elapsedMs / 1000).toFixed(1)} s (${r.stepsPerSecond} steps/s; ${r.stepsPerCpuSecond} per CPU second), ${r.violations} violation${r.violations === 1 ? '' : 's'}\n`);
  if (r.coverage !== null) {
    const c = r.coverage;
    io.out(`coverage: hypercall x page state x outcome ${c.hcalls.reached}/${c.hcalls.reachable}, descriptor transitions ${c.bbm.reached}/${c.bbm.reachable}\n`);
    for (const k of c.hcalls.missing) io.out(`  not exercised: ${k}\n`);
    for (const k of c.bbm.missing) io.out(`  not exercised: ${k}\n`);
  }
  if (r.failure !== null) {
    io.out(`FAIL ${r.failure.kind}: ${r.failure.message}\n`);
    if (r.shrinkStats !== null) io.out(`shrunk ${r.shrinkStats.from} steps to ${r.shrinkStats.to} (${r.shrinkStats.candidates} replays, ${r.shrinkStats.ms} ms)\n`);
    if (r.reproducer !== null) io.out(`reproducer: ${r.reproducer.path}\n${r.reproducer.explanation}\n`);
  }
}

/** The `fuzz` subcommand. */
export const fuzzCommand: Command = {
  name: 'fuzz',
  summary: 'random valid and hostile steps with invariants and isolation oracles after each; shrinks failures',
  usage: USAGE,
  run: runFuzzCommand,
};
