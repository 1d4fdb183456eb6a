/**
 * Benchmark harness (STYLE.md §10.13): runs every registered `bench/*.bench.ts` module on benchmark.js 2.1.4 and
 * prints `name  ops/sec ±rme% (samples)  ns/op  (cpu ns/op)`; `--json FILE` also writes
 * `[{name, hz, rme, samples, nsPerOp, cpuNsPerOp}]`,
 * `--filter REGEX` runs only the benchmarks whose name matches.
 *
 *   npm run bench                                   (builds, then node dist/bench/run.js)
 *   node dist/bench/run.js --filter '^walk' --json bench-results.json
 *
 * Adding a module: write `bench/<area>.bench.ts` exporting `register(reg: BenchRegistry): void`, and add it to
 * {@link MODULES} below (static imports keep the compiled output self-contained).
 *
 * What is timed. benchmark.js times cycles of N calls of the benchmark function; the CPU-time run times calls of it
 * with `process.cpuUsage()`. A benchmark may give a `prepare()` hook ({@link BenchRegistry.add}): untimed work that
 * keeps its state ready (for example, replacing a guest whose pages are nearly all mapped). The harness calls it
 * outside every timed region: at the benchmark's start and after each benchmark.js cycle (its `onStart` and
 * `onCycle` events, which run between the timed loops), and in the CPU-time run between chunks of
 * {@link PREPARE_CHUNK} calls, each chunk timed on its own and the chunks summed. Benchmarks without the hook are
 * timed as one loop, as before.
 */

import { writeFileSync } from 'node:fs';
import Benchmark from 'benchmark';
import * as el2Bench from './el2.bench.js';
import * as mmuBench from './mmu.bench.js';

/** What a benchmark module gives the harness. */
export interface BenchModule {
  /** Adds the module's benchmarks (set-up work for a benchmark should be skipped when `reg.wants(name)` is false). */
  register(reg: BenchRegistry): void;
  /** Optional summary printed after the run (ratios, targets), from every record measured. */
  report?(records: readonly BenchRecord[]): string;
}

/** One measured benchmark as written to `--json`. */
export interface BenchRecord {
  readonly name: string;
  /** Operations per second (benchmark calls per second × operations per call). */
  readonly hz: number;
  /** Relative margin of error, percent. */
  readonly rme: number;
  /** Number of samples taken. */
  readonly samples: number;
  /** Nanoseconds per operation (1e9 / hz), wall clock as benchmark.js measures it. */
  readonly nsPerOp: number;
  /**
   * Nanoseconds of this process's CPU time per operation, from a separate timed run after the benchmark
   * (`process.cpuUsage`). Less sensitive than wall time to other processes on a shared machine.
   */
  readonly cpuNsPerOp: number;
}

/** The registration interface modules see: a filter-aware front of a `Benchmark.Suite`. */
export class BenchRegistry {
  private readonly suite: Benchmark.Suite;
  private readonly filter: RegExp | null;
  /** Operations per benchmark call, by benchmark name. */
  readonly opsPerCall = new Map<string, number>();
  /** The benchmark functions, by name (for the CPU-time run). */
  readonly fns = new Map<string, () => void>();
  /** The untimed `prepare()` hooks, by benchmark name (only benchmarks that gave one). */
  readonly prepares = new Map<string, () => void>();

  /** Wraps `suite`; `filter` selects benchmarks by name (null: all). */
  constructor(suite: Benchmark.Suite, filter: RegExp | null) {
    this.suite = suite;
    this.filter = filter;
  }

  /** Whether the benchmark `name` will run (modules skip expensive set-up otherwise). */
  wants(name: string): boolean {
    return this.filter === null || this.filter.test(name);
  }

  /**
   * Adds a benchmark. `fn` performs `opsPerCall` operations per call (an inner loop amortises the call overhead of
   * very short operations); the reported rate is per operation.
   * @param prepare optional untimed hook, called before every timed run of calls (see the file header). It must
   *   leave enough state for at least one benchmark.js cycle and for {@link PREPARE_CHUNK} calls; `fn` must still
   *   cope (and should say so in its report) when a cycle runs longer than the hook planned for.
   */
  add(name: string, fn: () => void, opsPerCall = 1, prepare?: () => void): void {
    if (!this.wants(name)) return;
    this.opsPerCall.set(name, opsPerCall);
    this.fns.set(name, fn);
    if (prepare === undefined) {
      this.suite.add(name, fn, { minSamples: 20 });
      return;
    }
    this.prepares.set(name, prepare);
    // benchmark.js emits `start` once before the first cycle and `cycle` after each timed cycle, outside its timer.
    this.suite.add(name, fn, { minSamples: 20, onStart: () => prepare(), onCycle: () => prepare() });
  }
}

/** The benchmark modules, in run order. */
export const MODULES: readonly BenchModule[] = [mmuBench, el2Bench];

interface Args {
  json: string | null;
  filter: RegExp | null;
}

function parseArgs(argv: readonly string[]): Args | string {
  const args: Args = { json: null, filter: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = argv[i + 1];
    if (a === '--json' && v !== undefined) {
      args.json = v;
      i++;
    } else if (a === '--filter' && v !== undefined) {
      try {
        args.filter = new RegExp(v);
      } catch {
        return `--filter: not a regular expression: ${v}`;
      }
      i++;
    } else {
      return `unknown or incomplete argument: ${a}`;
    }
  }
  return args;
}

function fmtHz(hz: number): string {
  return hz.toLocaleString('en-US', { maximumFractionDigits: hz < 100 ? 2 : 0 });
}

/** Calls of a benchmark with a `prepare()` hook per timed chunk of the CPU-time run. */
export const PREPARE_CHUNK = 16;

/**
 * CPU nanoseconds per operation of `fn` over about `seconds` of its measured rate `callsPerSec`. With a `prepare`
 * hook, the calls run in chunks of {@link PREPARE_CHUNK}, `prepare()` untimed before each chunk.
 */
function cpuNsPerOp(fn: () => void, callsPerSec: number, opsPerCall: number, prepare: (() => void) | undefined, seconds = 0.5): number {
  const calls = Math.max(1, Math.round(callsPerSec * seconds));
  if (prepare === undefined) {
    const t0 = process.cpuUsage();
    for (let k = 0; k < calls; k++) fn();
    const dt = process.cpuUsage(t0);
    return ((dt.user + dt.system) * 1000) / (calls * opsPerCall);
  }
  let us = 0;
  for (let done = 0; done < calls; ) {
    prepare();
    const chunk = Math.min(PREPARE_CHUNK, calls - done);
    const t0 = process.cpuUsage();
    for (let k = 0; k < chunk; k++) fn();
    const dt = process.cpuUsage(t0);
    us += dt.user + dt.system;
    done += chunk;
  }
  return (us * 1000) / (calls * opsPerCall);
}

function main(): void {
  const args = parseArgs(process.argv.slice(2));
  if (typeof args === 'string') {
    process.stderr.write(`bench: ${args}\nusage: node dist/bench/run.js [--filter REGEX] [--json FILE]\n`);
    process.exit(2);
  }
  const suite = new Benchmark.Suite('s2emu');
  const reg = new BenchRegistry(suite, args.filter);
  for (const m of MODULES) m.register(reg);
  const records: BenchRecord[] = [];
  let failed = false;
  suite.on('cycle', (ev: Benchmark.Event) => {
    const b = ev.target as unknown as Benchmark; // JUSTIFY: a suite's cycle event targets one of its benchmarks.
    const name = b.name ?? '?';
    if (b.error !== undefined) {
      failed = true;
      process.stdout.write(`${name.padEnd(24)} ERROR ${String(b.error)}\n`);
      return;
    }
    const ops = reg.opsPerCall.get(name) ?? 1;
    const hz = (b.hz ?? 0) * ops;
    const rme = b.stats?.rme ?? 0;
    const samples = b.stats?.sample.length ?? 0;
    const nsPerOp = hz > 0 ? 1e9 / hz : 0;
    const fn = reg.fns.get(name);
    const cpu = fn !== undefined && hz > 0 ? cpuNsPerOp(fn, hz / ops, ops, reg.prepares.get(name)) : 0;
    records.push({ name, hz, rme, samples, nsPerOp, cpuNsPerOp: cpu });
    process.stdout.write(
      `${name.padEnd(24)} ${fmtHz(hz).padStart(14)} ops/sec ±${rme.toFixed(2)}% (${samples} samples)  ` +
        `${nsPerOp.toFixed(1)} ns/op  (cpu ${cpu.toFixed(1)} ns/op)\n`,
    );
  });
  suite.on('complete', () => {
    if (args.json !== null) writeFileSync(args.json, JSON.stringify(records, null, 1) + '\n');
    for (const m of MODULES) if (m.report !== undefined) process.stdout.write(m.report(records));
    if (failed) process.exitCode = 1;
  });
  if (suite.length === 0) {
    process.stderr.write('bench: no benchmark matches the filter\n');
    process.exit(2);
  }
  suite.run({ async: false });
}

main();
