/**
 * `s2emu run SCENARIO.json... [--trace] [--tlb on|off] [--no-invariants]`: runs scenarios (format:
 * `fixtures/scenario.schema.json`) on a fresh machine each and prints a JSON trace of every step with its results
 * and checks, one JSON object per line, then `N passed, N failed` over the expectations.
 *
 * Exit status: 0 every expectation held, 1 any failed, 2 bad input (unreadable file, invalid JSON or schema, a
 * hypercall name the profile lacks; the message names the file, the JSON path and what was expected).
 */

import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseScenario } from '../../check/scenario-schema.js';
import { runScenario } from '../../check/scenario-run.js';
import { Bug, BUG_KINDS, parseBug, setInjectedBug } from '../../arch/inject.js';
import { ExitCode, parseCommandArgs, usageError, type CliIo, type Command } from '../command.js';

const USAGE = `usage: s2emu run [--trace] [--tlb on|off] [--no-invariants] [--summary] [--inject KIND] SCENARIO.json|DIR...

Runs each scenario (directories: every *.json in them, sorted) on a fresh machine and prints one JSON line per step (its results and the expectations
checked), then "N passed, N failed" over every expectation of every scenario.
  --trace          add the machine's events to each step: every hypercall (name, arguments, x0, x1) and host abort
  --tlb on|off     override machine.tlb (off: every access walks; results must not change)
  --no-invariants  do not check the ghost-state invariants after every hypercall
  --summary        print only failed checks and the totals, not the per-step trace
  --inject KIND    plant a known bug (as s2emu fuzz --inject) to replay a fuzzer reproducer
Format: fixtures/scenario.schema.json. A scenario is {"machine": {"ram": [{"base", "size"}], "cpus", "pa_bits",
"profile", "hyp_pool", "tlb"}, "steps": [...]}; each step's first key names its kind: hvc, vm_create, vm_destroy,
vcpu_load, vcpu_put, memcache_topup, guest_access, handle_exit, guest_hvc, host_access, host_event, expect_page,
expect_vm, set, check_invariants. Examples: fixtures/scenarios/.
Exit status: 0 all expectations hold, 1 any fails, 2 bad input.`;

interface RunFlags {
  trace?: boolean;
  tlb?: string;
  'no-invariants'?: boolean;
  summary?: boolean;
  inject?: string;
}

/** Runs scenario files; see the module comment. */
export function runRun(argv: readonly string[], io: CliIo): ExitCode {
  const p = parseCommandArgs<RunFlags>(argv, {
    trace: { type: 'boolean' },
    tlb: { type: 'string' },
    'no-invariants': { type: 'boolean' },
    summary: { type: 'boolean' },
    inject: { type: 'string' },
  });
  if (!p.ok) return usageError(io, runCommand, p.message);
  if (p.positionals.length === 0) return usageError(io, runCommand, 'expected at least one scenario file');
  const bug = p.values.inject === undefined ? Bug.NONE : parseBug(p.values.inject);
  if (bug === null) return usageError(io, runCommand, `--inject: expected one of ${BUG_KINDS.join(', ')}, got "${p.values.inject}"`);
  const tlbFlag = p.values.tlb;
  if (tlbFlag !== undefined && tlbFlag !== 'on' && tlbFlag !== 'off') return usageError(io, runCommand, `--tlb: expected "on" or "off", got "${tlbFlag}"`);

  const parsed = [];
  const errors: string[] = [];
  const files: string[] = [];
  for (const f of p.positionals) {
    let isDir = false;
    try {
      isDir = statSync(resolve(io.cwd, f)).isDirectory();
    } catch {
      // not a directory: reported as an unreadable file below
    }
    if (isDir) for (const e of readdirSync(resolve(io.cwd, f)).sort()) if (e.endsWith('.json')) files.push(join(f, e));
    if (!isDir) files.push(f);
  }
  for (const f of files) {
    let text: string;
    try {
      text = readFileSync(resolve(io.cwd, f), 'utf8');
    } catch (e) {
      errors.push(`${f}: $: expected a readable file: ${(e as Error).message}`);
      continue;
    }
    const r = parseScenario(text, f);
    if (r.ok) parsed.push(r.scenario);
    else errors.push(...r.errors);
  }
  if (errors.length > 0) {
    io.err(errors.map((e) => `s2emu run: ${e}`).join('\n') + '\n');
    return ExitCode.BAD_INPUT;
  }

  let passed = 0;
  let failed = 0;
  for (const s of parsed) {
    // A fuzzer reproducer of a planted bug (`s2emu fuzz --inject`) replays with the same bug planted.
    const prevBug = setInjectedBug(bug);
    const rep = runScenario(s, {
      trace: p.values.trace === true,
      ...(tlbFlag !== undefined ? { tlb: tlbFlag === 'on' } : {}),
      invariants: p.values['no-invariants'] !== true,
    });
    setInjectedBug(prevBug);
    if (rep.inputErrors.length > 0) {
      io.err(rep.inputErrors.map((e) => `s2emu run: ${e}`).join('\n') + '\n');
      return ExitCode.BAD_INPUT;
    }
    passed += rep.passed;
    failed += rep.failed;
    if (p.values.summary === true) {
      for (const st of rep.steps) {
        for (const c of st.checks) {
          if (!c.pass) io.out(`FAIL ${s.file} $.steps[${st.step}] (${st.kind}) ${c.what}: expected ${c.expected}, got ${c.actual}\n`);
        }
      }
    } else {
      io.out(JSON.stringify({ scenario: s.name, file: s.file }) + '\n');
      for (const st of rep.steps) io.out(JSON.stringify(st) + '\n');
      io.out(JSON.stringify({ scenario: s.name, passed: rep.passed, failed: rep.failed }) + '\n');
    }
  }
  io.out(`${passed} passed, ${failed} failed\n`);
  return failed > 0 ? ExitCode.MISMATCH : ExitCode.OK;
}

/** The `run` subcommand. */
export const runCommand: Command = {
  name: 'run',
  summary: 'run pKVM scenarios (JSON steps with expectations) and print a JSON trace',
  usage: USAGE,
  run: runRun,
};
