/**
 * The fuzz campaign: generates steps from a seed ({@link StepGenerator}), applies each to a {@link Session} with the
 * oracles after every step, and on the first failure shrinks the sequence ({@link shrink}) and writes the reproducer
 * scenario ({@link writeReproducer}). `s2emu fuzz` and the tests drive it through {@link runFuzz}.
 */

import { cpuUsage } from 'node:process';
import { type Bug, injectedBug } from '../../arch/inject.js';
import type { ScenarioMachine, Step } from '../scenario-schema.js';
import { Coverage, type CoverageReport } from './coverage.js';
import { fuzzMachine, StepGenerator } from './generator.js';
import { Prng } from './prng.js';
import { writeReproducer, type Reproducer } from './reproducer.js';
import { Session, type Failure } from './session.js';
import { shrink, type ShrinkStats } from './shrink.js';

/** Options of a campaign. */
export interface FuzzOptions {
  readonly seed: number;
  readonly steps: number;
  /** ABI profile of the machine. */
  readonly profile?: string;
  /** VMs alive at most (default 3). */
  readonly vms?: number;
  /** vCPUs per VM at most (default 2). */
  readonly vcpus?: number;
  /** Planted bug (default: the current selection, normally none). */
  readonly inject?: Bug;
  /** Full invariant recomputation every N steps (default 5000; 0 never). The incremental check runs every step. */
  readonly fullEvery?: number;
  /** Record coverage. */
  readonly coverage?: boolean;
  /** Shrink a failing sequence (default true). */
  readonly shrink?: boolean;
  /** Wall-clock budget of the shrinker in ms (default 20000). */
  readonly shrinkBudgetMs?: number;
  /** Directory for the reproducer; null: do not write one. */
  readonly outDir?: string | null;
  /** Called about every `progressEveryMs` with the campaign's progress. */
  readonly onProgress?: (p: FuzzProgress) => void;
  readonly progressEveryMs?: number;
  /** Clock in ms (tests pass a fake); default `performance.now`. */
  readonly now?: () => number;
  /** CPU time of this process in ms (user + system); default `process.cpuUsage()`. */
  readonly cpuNow?: () => number;
}

/** Progress of a running campaign. */
export interface FuzzProgress {
  readonly steps: number;
  readonly total: number;
  readonly stepsPerSecond: number;
  readonly vmsAlive: number;
  /** Host-view page counts over all RAM (OWNED, SHARED_OWNED, SHARED_BORROWED, NOPAGE). */
  readonly pages: Readonly<Record<string, number>>;
  readonly violations: number;
}

/** The outcome of a campaign. */
export interface FuzzResult {
  readonly seed: number;
  /** Steps executed (up to and including the failing one). */
  readonly steps: number;
  readonly violations: number;
  readonly stepsPerSecond: number;
  /** Steps per second of CPU time (the figure that does not depend on other load on the machine). */
  readonly stepsPerCpuSecond: number;
  readonly elapsedMs: number;
  readonly inject: Bug;
  readonly machine: ScenarioMachine;
  readonly failure: Failure | null;
  /** The shrunk failing sequence, when there was a failure. */
  readonly minimal: readonly Step[] | null;
  readonly shrinkStats: ShrinkStats | null;
  readonly reproducer: Reproducer | null;
  readonly coverage: CoverageReport | null;
}

/** Runs a campaign. Never throws for model failures (they are the result); throws only on its own misuse. */
export function runFuzz(o: FuzzOptions): FuzzResult {
  const now = o.now ?? (() => performance.now());
  const vms = o.vms ?? 3;
  const vcpus = o.vcpus ?? 2;
  const cpus = Math.max(2, Math.min(4, vcpus));
  const machine = fuzzMachine(cpus, o.profile ?? 'pkvm-2022');
  const inject = o.inject ?? injectedBug();
  const coverage = o.coverage === true ? new Coverage() : null;
  const fullEvery = o.fullEvery ?? 5000;
  const sess = new Session(machine, { inject, fullEvery, coverage });
  const gen = new StepGenerator(new Prng(o.seed), { vms, vcpus }, sess.m, sess.world);
  let steps = 0;
  const cpuNow = o.cpuNow ?? cpuMs;
  const c0 = cpuNow();
  const t0 = now();
  let lastProgress = t0;
  const every = o.progressEveryMs ?? 250;
  let failure: Failure | null = null;
  try {
    if (sess.bootViolations !== null) {
      const msg = sess.bootViolations[0] as string;
      failure = { kind: 'invariant', at: -1, message: msg, messages: sess.bootViolations, expect: null, probes: [{ check_invariants: true }] };
    }
    for (let i = 0; i < o.steps && failure === null; i++) {
      // Steps are not kept: on a failure they are generated again from the seed (see regenerate).
      failure = sess.apply(gen.next());
      steps++;
      if (failure === null && i === o.steps - 1 && fullEvery > 0) {
        const full = sess.fullCheck();
        if (full.length > 0) failure = { kind: 'invariant', at: i, message: full[0] as string, messages: full, expect: null, probes: [{ check_invariants: true }] };
      }
      if (o.onProgress !== undefined && (i & 255) === 0) {
        const t = now();
        if (t - lastProgress >= every) {
          lastProgress = t;
          o.onProgress(progressOf(sess, i + 1, o.steps, t - t0, 0));
        }
      }
    }
  } finally {
    sess.close();
  }
  const elapsedMs = now() - t0;
  const cpuElapsed = cpuNow() - c0;
  const stepsPerSecond = elapsedMs > 0 ? Math.round((steps * 1000) / elapsedMs) : 0;
  const stepsPerCpuSecond = cpuElapsed > 0 ? Math.round((steps * 1000) / cpuElapsed) : 0;
  if (o.onProgress !== undefined) o.onProgress(progressOf(null, steps, o.steps, elapsedMs, failure === null ? 0 : 1));
  let minimal: Step[] | null = null;
  let shrinkStats: ShrinkStats | null = null;
  let reproducer: Reproducer | null = null;
  if (failure !== null) {
    // A failure at boot (at = -1) reproduces with no step at all.
    const upTo = regenerate(machine, o.seed, { vms, vcpus }, inject, failure.at + 1);
    if (o.shrink !== false && upTo.length > 1) {
      const s = shrink(machine, upTo, failure, { inject, fullEvery, budgetMs: o.shrinkBudgetMs ?? 20_000, now });
      minimal = s.steps;
      shrinkStats = s.stats;
      failure = s.failure;
    } else minimal = upTo;
    if (o.outDir !== undefined && o.outDir !== null) {
      reproducer = writeReproducer({ dir: o.outDir, seed: o.seed, machine, steps: minimal, inject, fullEvery, totalSteps: steps });
    }
  }
  return {
    seed: o.seed,
    steps,
    violations: failure === null ? 0 : 1,
    stepsPerSecond,
    stepsPerCpuSecond,
    elapsedMs,
    inject,
    machine,
    failure,
    minimal,
    shrinkStats,
    reproducer,
    coverage: coverage === null ? null : coverage.report(),
  };
}

/**
 * The first `n` steps of the campaign of `seed`, generated again on a fresh machine (generation is deterministic),
 * so that a long campaign does not keep every step it ran.
 */
function regenerate(machine: ScenarioMachine, seed: number, cfg: { vms: number; vcpus: number }, inject: Bug, n: number): Step[] {
  const sess = new Session(machine, { inject, fullEvery: 0, coverage: null });
  const gen = new StepGenerator(new Prng(seed), cfg, sess.m, sess.world);
  const out: Step[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const st = gen.next();
      out.push(st);
      // The steps before the failing one passed the first time; the failing one may fail again here.
      if (sess.apply(st) !== null) break;
    }
  } finally {
    sess.close();
  }
  return out;
}

function progressOf(sess: Session | null, steps: number, total: number, ms: number, violations: number): FuzzProgress {
  const pages: Record<string, number> = {};
  let vmsAlive = 0;
  if (sess !== null) {
    vmsAlive = sess.m.hyp.liveVms().length;
    Object.assign(pages, sess.m.hyp.countHostStates());
  }
  return { steps, total, stepsPerSecond: ms > 0 ? Math.round((steps * 1000) / ms) : 0, vmsAlive, pages, violations };
}

/** CPU time (user + system) of this process in ms (a measurement, like `performance.now`; no I/O). */
function cpuMs(): number {
  const u = cpuUsage();
  return (u.user + u.system) / 1000;
}
