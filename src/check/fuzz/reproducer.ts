/**
 * Writes a fuzzer failure as a scenario file that `s2emu run` replays to the same failure: the fuzz machine, the
 * shrunk steps with the outcomes they had (so that every step before the failing one passes), the failing step with
 * the expectation its oracle implies, and probe steps after it (`check_invariants`, a host read of a page that should
 * have been poisoned). The file is written to a temporary name and renamed, so a partial file is never left behind.
 */

import { mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Bug } from '../../arch/inject.js';
import type { ScenarioMachine, Step } from '../scenario-schema.js';
import { FailureKind, observedExpect, Session, type Failure } from './session.js';
import { machineJson, stepJson, type JsonObject } from './step-json.js';

/** A written reproducer. */
export interface Reproducer {
  /** Path of the scenario file. */
  readonly path: string;
  /** One paragraph: what failed, at which step, why it matters, how to replay. */
  readonly explanation: string;
  /** The scenario document. */
  readonly scenario: JsonObject;
}

/** What {@link writeReproducer} needs. */
export interface ReproducerInput {
  readonly dir: string;
  readonly seed: number;
  readonly machine: ScenarioMachine;
  readonly steps: readonly Step[];
  readonly inject: Bug;
  readonly fullEvery: number;
  /** Steps the campaign ran before the failure. */
  readonly totalSteps: number;
}

const WHY: Record<FailureKind, string> = {
  [FailureKind.INVARIANT]: 'the ghost state no longer matches a consistent combination of pkvm.md §1.6 (or EL2 warned, or the break-before-make checker saw an unsafe descriptor update)',
  [FailureKind.HOST_ISOLATION]: 'the host read or wrote memory it does not own, which pKVM exists to prevent',
  [FailureKind.GUEST_ISOLATION]: "a guest reached memory its stage-2 does not map (a stale translation), breaking the guest's isolation",
  [FailureKind.POISON]: "a protected guest's data reached the host: reclaimed guest pages must be zeroed first (pkvm.md §9.7)",
  [FailureKind.EXCEPTION]: 'an exception escaped the model, which must turn every input into an errno, a fault or a warning',
};

/** Builds the scenario of a failing sequence: replays it once more to record each step's outcome. */
export function reproducerScenario(inp: Omit<ReproducerInput, 'dir'>): { scenario: JsonObject; failure: Failure | null } {
  const sess = new Session(inp.machine, { inject: inp.inject, fullEvery: inp.fullEvery, coverage: null });
  const steps: JsonObject[] = [];
  const rawMaps: number[] = [];
  let failure: Failure | null = null;
  try {
    for (let i = 0; i < inp.steps.length && failure === null; i++) {
      const st = inp.steps[i]!; // JUSTIFY: i < length.
      failure = sess.apply(st);
      if (!sess.out.valid) continue;
      if (st.kind === 'hvc' && st.fn === '__pkvm_host_map_guest' && sess.out.x1lo === 0 && sess.out.x1hi === 0 && sess.out.x0lo === 0) rawMaps.push(steps.length);
      if (failure !== null) {
        steps.push(stepJson(st, failure.expect ?? observedExpect(st, sess.out)));
        steps.push(...failure.probes);
      } else steps.push(stepJson(st, observedExpect(st, sess.out)));
    }
  } catch (e) {
    // The exception kind: the replay throws at the same step; keep what was recorded.
    void e;
  } finally {
    sess.close();
  }
  if (failure === null && sess.bootViolations !== null) {
    const msgs = sess.bootViolations;
    failure = { kind: FailureKind.INVARIANT, at: -1, message: msgs[0] ?? '', messages: msgs, expect: null, probes: [{ check_invariants: true }] };
  }
  if (failure === null || failure.at < 0) steps.push({ check_invariants: true });
  const name = `fuzz-seed-${inp.seed}${inp.inject !== Bug.NONE ? `-inject-${inp.inject}` : ''}`;
  let description = explain(inp, failure);
  if (rawMaps.length > 0) {
    description +=
      ` Note: step${rawMaps.length > 1 ? 's' : ''} ${rawMaps.join(', ')} map${rawMaps.length > 1 ? '' : 's'} a page into a guest with a raw __pkvm_host_map_guest the host kernel never pinned, as a hostile host may;` +
      ' s2emu run also reports the host-kernel rule "…which the host has not pinned" there, which the fuzzer does not count as an EL2 failure.';
  }
  const scenario: JsonObject = { name, description, machine: machineJson(inp.machine), steps };
  return { scenario, failure };
}

function explain(inp: Omit<ReproducerInput, 'dir'>, f: Failure | null): string {
  const injected = inp.inject === Bug.NONE ? '' : ` Planted bug: ${inp.inject} (s2emu fuzz --inject ${inp.inject}); replay with: s2emu run --inject ${inp.inject} <this file>.`;
  if (f === null) return `Fuzz seed ${inp.seed}: the failure did not reproduce when this file was written.${injected}`;
  const where = f.at < 0 ? 'right after boot, before any step' : 'at the last step';
  return (
    `Fuzz seed ${inp.seed}, ${inp.totalSteps} steps, shrunk to ${inp.steps.length}: ${f.kind} failure ${where} — ${f.message}. ` +
    `This matters because ${WHY[f.kind]}.${injected}`
  );
}

/** Writes the reproducer of `inp` into `inp.dir` (created if needed) atomically and returns its path. */
export function writeReproducer(inp: ReproducerInput): Reproducer {
  const { scenario } = reproducerScenario(inp);
  mkdirSync(inp.dir, { recursive: true });
  const path = join(inp.dir, `${scenario.name as string}.json`);
  const tmp = `${path}.tmp-${Math.random().toString(36).slice(2)}`;
  try {
    writeFileSync(tmp, JSON.stringify(scenario, null, 2) + '\n');
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
  return { path, explanation: scenario.description as string, scenario };
}
