import t from 'tap';
import { readdirSync, readFileSync } from 'node:fs';
import { parseScenario } from '../src/check/scenario-schema.js';
import { runScenario, type RunReport } from '../src/check/scenario-run.js';

const dir = new URL('../fixtures/scenarios/', import.meta.url);
const files = readdirSync(dir).filter((f) => f.endsWith('.json')).sort();

t.test('there are at least 30 scenarios', async (t) => {
  t.ok(files.length >= 30, `${files.length} scenarios`);
});

/** Failed checks of a run, one line each. */
function failures(r: RunReport): string[] {
  const out = [...r.inputErrors];
  for (const s of r.steps) for (const c of s.checks) if (!c.pass) out.push(`step ${s.step} (${s.kind}) ${c.what}: expected ${c.expected}, got ${c.actual}`);
  return out;
}

for (const f of files) {
  t.test(f, async (t) => {
    const parsed = parseScenario(readFileSync(new URL(f, dir), 'utf8'), f);
    t.ok(parsed.ok, parsed.ok ? 'parses' : parsed.errors.join('\n'));
    if (!parsed.ok) return;
    const on = runScenario(parsed.scenario, { tlb: true, invariants: true });
    const off = runScenario(parsed.scenario, { tlb: false, invariants: true });
    t.same(failures(on), [], 'TLB on: every expectation holds, invariants after every hypercall');
    t.same(failures(off), [], 'TLB off: every expectation holds');
    t.ok(on.passed > 0, 'the scenario checks something');
    // Any difference between the runs means a stale TLB entry was used: a missing TLBI.
    t.same(
      on.steps.map((s) => s.result),
      off.steps.map((s) => s.result),
      'TLB on and off give identical results',
    );
  });
}
