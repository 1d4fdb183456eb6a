/**
 * The shrinker: reduces a failing step sequence to a small one that fails the same way (same oracle, same message
 * up to numbers), by delta debugging over the step list (Zeller and Hildebrandt's ddmin: remove chunks of halving
 * size while the failure persists, down to single steps), then by simplifying arguments (garbage hypercall
 * arguments → 0, explicit CPUs → default, unhandled accesses → handled). Every candidate is replayed on a fresh
 * {@link Session}; steps that lost their meaning (a VM whose creation was removed) are skipped by the executor.
 */

import type { Bug } from '../../arch/inject.js';
import type { ArgSpec, ScenarioMachine, Step } from '../scenario-schema.js';
import { failureSignature, Session, type Failure } from './session.js';

/** Options of {@link shrink}. */
export interface ShrinkOptions {
  readonly inject: Bug;
  readonly fullEvery: number;
  /** Stop trying new candidates after this many ms. */
  readonly budgetMs: number;
  readonly now: () => number;
}

/** What the shrinker did. */
export interface ShrinkStats {
  readonly from: number;
  readonly to: number;
  readonly candidates: number;
  readonly ms: number;
}

/** Replays `steps` on a fresh machine; returns the first failure (its `at` indexes `steps`), or null. */
export function replay(machine: ScenarioMachine, steps: readonly Step[], inject: Bug, fullEvery: number): Failure | null {
  const s = new Session(machine, { inject, fullEvery, coverage: null });
  try {
    for (let i = 0; i < steps.length; i++) {
      const f = s.apply(steps[i]!); // JUSTIFY: i < length.
      if (f !== null) return { ...f, at: i };
    }
    if (fullEvery > 0) {
      const full = s.fullCheck();
      if (full.length > 0) return { kind: 'invariant', at: steps.length - 1, message: full[0]!, messages: full, expect: null, probes: [{ check_invariants: true }] }; // JUSTIFY: length > 0.
    }
    return null;
  } finally {
    s.close();
  }
}

/** Shrinks `steps` (which fail with `failure`). @returns the smallest failing sequence found, renumbered. */
export function shrink(machine: ScenarioMachine, steps: readonly Step[], failure: Failure, o: ShrinkOptions): { steps: Step[]; failure: Failure; stats: ShrinkStats } {
  const t0 = o.now();
  const want = failureSignature(failure);
  let candidates = 0;
  let best: Step[] = steps.slice();
  let bestFailure = failure;
  const test = (cand: Step[]): boolean => {
    if (o.now() - t0 > o.budgetMs) return false;
    candidates++;
    const f = replay(machine, cand, o.inject, o.fullEvery);
    if (f === null || failureSignature(f) !== want) return false;
    // Keep only what leads up to the failure.
    best = cand.slice(0, f.at + 1);
    bestFailure = f;
    return true;
  };

  // ddmin over the list.
  let n = 2;
  while (best.length >= 2 && o.now() - t0 <= o.budgetMs) {
    const chunk = Math.ceil(best.length / n);
    let reduced = false;
    for (let start = 0; start < best.length; start += chunk) {
      // Never drop the failing step itself (the last).
      const end = Math.min(start + chunk, best.length - 1);
      if (end <= start) continue;
      const cand = best.slice(0, start).concat(best.slice(end));
      if (test(cand)) {
        reduced = true;
        n = Math.max(n - 1, 2);
        break;
      }
    }
    if (!reduced) {
      if (chunk <= 1) break;
      n = Math.min(n * 2, best.length);
    }
  }

  // Simplify arguments, one step at a time.
  for (let i = 0; i < best.length && o.now() - t0 <= o.budgetMs; i++) {
    for (const simpler of simplifications(best[i]!)) { // JUSTIFY: i < length.
      const cand = best.slice();
      cand[i] = simpler;
      if (test(cand)) break;
    }
  }
  const out = best.map((s, i) => ({ ...s, index: i }) as Step);
  return { steps: out, failure: { ...bestFailure, at: out.length - 1 }, stats: { from: steps.length, to: out.length, candidates, ms: Math.round(o.now() - t0) } };
}

const ZERO: ArgSpec = { kind: 'value', v: { lo: 0, hi: 0 } };

/** Simpler variants of a step, simplest first. */
function simplifications(st: Step): Step[] {
  const out: Step[] = [];
  switch (st.kind) {
    case 'hvc': {
      const garbage = st.args.some((a) => a.kind === 'value' && a.v.hi !== 0);
      if (st.args.length > 0 && garbage) out.push({ ...st, args: st.args.map((a) => (a.kind === 'value' && a.v.hi !== 0 ? ZERO : a)) });
      if (st.args.length > 1) out.push({ ...st, args: st.args.slice(0, 1) });
      if (st.cpu !== 0) out.push({ ...st, cpu: 0 });
      break;
    }
    case 'guest_access':
      if (st.cpu !== null) out.push({ ...st, cpu: null });
      if (!st.handle) out.push({ ...st, handle: true });
      break;
    case 'vm_create':
      if (st.vcpus > 1) out.push({ ...st, vcpus: 1 });
      break;
    default:
      break;
  }
  return out;
}
