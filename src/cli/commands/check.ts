/**
 * `s2emu check <file|dir>...`: runs oracle fixtures (`../shared/oracle/FORMAT.md`) through the model and compares
 * every field of `expect` and `memory_after`. Each mismatch is printed with the walk trace; a mismatch on a case that
 * a documented QEMU-vs-Arm divergence explains (`check/divergence.ts`, docs/divergences.md) is printed as
 * `divergent (rule …)` and does not fail. The last line is `N passed, N failed` (one per measured query).
 */

import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { runCase, tally, type CaseReport, type QueryReport, type RunTotals } from '../../check/fixture-run.js';
import { formatIssue, parseFixture, type FixtureCase, type FixtureIssue } from '../../check/fixture-schema.js';
import { ExitCode, parseCommandArgs, usageError, type CliIo, type Command } from '../command.js';
import { formatTraceStep, showValue } from '../format.js';

const USAGE = `usage: s2emu check [--json] [--quiet] [--no-divergences] <file|dir>...

Checks oracle fixtures (one case or an array per file; directories are searched for *.json). Prints each mismatch
with its walk trace and ends with "N passed, N failed" (one per measured query; skipped/unmeasured queries are not
counted). Mismatches a documented QEMU-vs-Arm divergence explains are reported as "divergent (rule …)" and pass.
  --json            print one JSON summary instead of text
  --quiet           print only failures and the summary (no divergent lines)
  --no-divergences  treat every mismatch as a failure
Exit status: 0 all pass, 1 any mismatch, 2 bad input.`;

/** Loads and validates fixture files; directories are expanded to their *.json files (sorted, recursive). */
export function loadFixtures(paths: readonly string[], cwd: string): { cases: FixtureCase[]; issues: FixtureIssue[]; files: string[] } {
  const files: string[] = [];
  const issues: FixtureIssue[] = [];
  const walk = (abs: string, shown: string): void => {
    let st;
    try {
      st = statSync(abs);
    } catch {
      issues.push({ file: shown, path: '$', message: 'expected a readable file or directory, got nothing (no such path)' });
      return;
    }
    if (st.isDirectory()) {
      for (const e of readdirSync(abs).sort()) {
        const a = join(abs, e);
        if (e.endsWith('.json') || statSync(a).isDirectory()) walk(a, join(shown, e));
      }
    } else files.push(shown);
  };
  for (const p of paths) walk(resolve(cwd, p), p);
  const cases: FixtureCase[] = [];
  for (const f of files) {
    let text: string;
    try {
      text = readFileSync(resolve(cwd, f), 'utf8');
    } catch (e) {
      issues.push({ file: f, path: '$', message: `expected a readable file: ${(e as Error).message}` });
      continue;
    }
    const r = parseFixture(f, text); // the path as the user gave it, so messages name what they typed
    if (r.ok) cases.push(...r.cases);
    else issues.push(...r.issues);
  }
  return { cases, issues, files };
}

function ipaHex(q: QueryReport): string {
  return '0x' + ((BigInt(q.query.ipa.hi) << 32n) | BigInt(q.query.ipa.lo)).toString(16);
}

function queryLabel(r: CaseReport, q: QueryReport): string {
  const el = q.query.el === 0 ? ' EL0' : '';
  return `${r.fixture.file} ${r.fixture.name} q${q.index} (${q.query.mode} ${q.query.access}${el} ipa=${ipaHex(q)}; ${r.fixture.path}.queries[${q.index}])`;
}

/** Prints the text report of one case: failures in full, divergent queries as one line each. */
export function printCaseReport(r: CaseReport, io: CliIo, quiet: boolean): void {
  for (const q of r.queries) {
    if (q.verdict === 'fail') {
      io.out(`FAIL ${queryLabel(r, q)}\n`);
      for (const m of q.mismatches) io.out(`  ${m.key}: expected ${showValue(m.expected)}, got ${showValue(m.actual)}\n`);
      if (q.note !== '') io.out(`  note: ${q.note}\n`);
      if (r.fixture.tags.length > 0) io.out(`  tags: ${r.fixture.tags.join(', ')}\n`);
      if (q.trace.length === 0) io.out('  walk: no descriptor read\n');
      for (const s of q.trace) io.out(`  ${formatTraceStep(s)}\n`);
    } else if (q.verdict === 'divergent' && !quiet && q.divergence !== null) {
      io.out(`divergent ${queryLabel(r, q)}: ${q.divergence.id} (rule: ${q.divergence.armRule})\n`);
    }
  }
  if (r.memoryVerdict === 'fail' || (r.memoryVerdict === 'divergent' && !quiet)) {
    const tag = r.memoryVerdict === 'fail' ? 'FAIL' : 'divergent';
    io.out(`${tag} ${r.fixture.file} ${r.fixture.name} memory_after (${r.fixture.path}.memory_after)\n`);
    for (const w of r.memoryMismatches) {
      const why = w.divergence === null ? '' : ` — ${w.divergence.id} (rule: ${w.divergence.armRule})`;
      io.out(`  @0x${w.pa.toString(16)}: expected ${w.expected ?? 'unchanged'}, got ${w.actual ?? 'unchanged'}${why}\n`);
    }
  }
}

/** Counts of divergent queries/words per divergence id. */
export function divergenceCounts(reports: readonly CaseReport[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const r of reports) {
    for (const q of r.queries) if (q.divergence !== null) counts[q.divergence.id] = (counts[q.divergence.id] ?? 0) + 1;
    for (const w of r.memoryMismatches) if (w.divergence !== null) counts[w.divergence.id + ' (memory_after)'] = (counts[w.divergence.id + ' (memory_after)'] ?? 0) + 1;
  }
  return counts;
}

/** The machine-readable summary printed by `--json` (and returned to `qemu-diff`). */
export interface CheckSummary {
  readonly files: number;
  readonly cases: number;
  readonly passed: number;
  readonly failed: number;
  readonly divergent: number;
  readonly unmeasured: number;
  readonly divergences: Record<string, number>;
  readonly failures: readonly { file: string; case: string; query: number | 'memory_after'; mismatches: unknown }[];
}

/** Builds the JSON summary of a run. */
export function summarize(files: number, reports: readonly CaseReport[], totals: RunTotals): CheckSummary {
  const failures: CheckSummary['failures'][number][] = [];
  for (const r of reports) {
    for (const q of r.queries) if (q.verdict === 'fail') failures.push({ file: r.fixture.file, case: r.fixture.name, query: q.index, mismatches: q.mismatches });
    if (r.memoryVerdict === 'fail') failures.push({ file: r.fixture.file, case: r.fixture.name, query: 'memory_after', mismatches: r.memoryMismatches.filter((w) => w.divergence === null) });
  }
  return { files, cases: reports.length, ...totals, divergences: divergenceCounts(reports), failures };
}

/** Prints the closing lines of a text report; the last one is exactly `N passed, N failed`. */
export function printTotals(io: CliIo, reports: readonly CaseReport[], t: RunTotals): void {
  const counts = divergenceCounts(reports);
  for (const [id, n] of Object.entries(counts)) io.out(`  ${n} divergent: ${id}\n`);
  io.out(`${t.divergent} divergent (documented QEMU-vs-Arm differences, counted as passed), ${t.unmeasured} not measured (not counted)\n`);
  io.out(`${t.passed} passed, ${t.failed} failed\n`);
}

interface CheckArgs {
  json?: boolean;
  quiet?: boolean;
  'no-divergences'?: boolean;
}

/** `s2emu check`. */
export const checkCommand: Command = {
  name: 'check',
  summary: 'check oracle fixtures (QEMU or hand-written) against the model',
  usage: USAGE,
  run(argv, io) {
    const a = parseCommandArgs<CheckArgs>(argv, {
      json: { type: 'boolean' },
      quiet: { type: 'boolean' },
      'no-divergences': { type: 'boolean' },
    });
    if (!a.ok) return usageError(io, this, a.message);
    if (a.positionals.length === 0) return usageError(io, this, 'expected at least one fixture file or directory');
    const { cases, issues, files } = loadFixtures(a.positionals, io.cwd);
    if (issues.length > 0) {
      for (const i of issues.slice(0, 50)) io.err(formatIssue(i) + '\n');
      if (issues.length > 50) io.err(`... and ${issues.length - 50} more problems\n`);
      return ExitCode.BAD_INPUT;
    }
    if (cases.length === 0) return usageError(io, this, `no fixture files found in ${a.positionals.join(' ')}`);
    const reports = cases.map((c) => runCase(c, { divergences: a.values['no-divergences'] !== true }));
    const totals = tally(reports);
    if (a.values.json === true) io.out(JSON.stringify(summarize(files.length, reports, totals), null, 2) + '\n');
    else {
      for (const r of reports) printCaseReport(r, io, a.values.quiet === true);
      printTotals(io, reports, totals);
    }
    return totals.failed === 0 ? ExitCode.OK : ExitCode.MISMATCH;
  },
};
