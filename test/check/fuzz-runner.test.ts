// The fuzz campaign: deterministic from the seed, clean on the unmodified model with every hypercall x state x
// outcome combination and every descriptor transition reached, generated steps round-trip through the scenario
// format, and `s2emu fuzz` prints the JSON summary and exits 0.
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { Bug } from '../../src/arch/inject.js';
import { ExecWorld, Outcome } from '../../src/check/fuzz/exec.js';
import { fuzzMachine, StepGenerator } from '../../src/check/fuzz/generator.js';
import { Prng } from '../../src/check/fuzz/prng.js';
import { progressLine } from '../../src/check/fuzz/progress.js';
import { runFuzz, type FuzzProgress } from '../../src/check/fuzz/runner.js';
import { Session } from '../../src/check/fuzz/session.js';
import { machineJson, stepJson } from '../../src/check/fuzz/step-json.js';
import { parseScenario, type Step } from '../../src/check/scenario-schema.js';
import { runCli } from '../../src/cli/main.js';
import { captureIo } from '../cli/_io.js';

function generate(seed: number, n: number): { steps: Step[]; outcomes: string[] } {
  const s = new Session(fuzzMachine(2, 'pkvm-2022'), { inject: Bug.NONE, fullEvery: 0, coverage: null });
  const gen = new StepGenerator(new Prng(seed), { vms: 3, vcpus: 2 }, s.m, s.world);
  const steps: Step[] = [];
  const outcomes: string[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const st = gen.next();
      steps.push(st);
      const f = s.apply(st);
      if (f !== null) throw new Error(`seed ${seed} step ${i}: ${f.message}`);
      const o = s.out;
      outcomes.push(`${o.result} ${o.ret} ${o.value} ${o.x0lo}:${o.x0hi} ${o.x1lo}:${o.x1hi}`);
    }
  } finally {
    s.close();
  }
  return { steps, outcomes };
}

t.test('a seed gives the same steps and the same outcomes; another seed does not', async (t) => {
  const a = generate(5, 400);
  const b = generate(5, 400);
  const c = generate(6, 400);
  t.same(a.steps, b.steps);
  t.same(a.outcomes, b.outcomes);
  t.notSame(a.steps, c.steps);
  const kinds = new Set(a.steps.map((s) => s.kind));
  for (const k of ['vm_create', 'guest_access', 'host_access', 'hvc', 'vcpu_load', 'vcpu_put', 'guest_hvc'] as const) t.ok(kinds.has(k), `generates ${k}`);
});

t.test('generated steps round-trip through the scenario format', async (t) => {
  const { steps } = generate(9, 300);
  const doc = { machine: machineJson(fuzzMachine(2, 'pkvm-2022')), steps: steps.map((s) => stepJson(s)) };
  const p = parseScenario(JSON.stringify(doc), 'roundtrip.json');
  if (!p.ok) {
    t.fail(p.errors.join('\n'));
    return;
  }
  t.same(
    p.scenario.steps.map((s) => ({ ...s, expect: null })),
    steps.map((s, i) => ({ ...s, index: i, expect: null })),
  );
});

t.test('a clean campaign: no violation, full coverage, the JSON fields', async (t) => {
  const r = runFuzz({ seed: 1, steps: 10_000, coverage: true, outDir: null });
  t.equal(r.violations, 0, r.failure?.message ?? 'no failure');
  t.equal(r.steps, 10_000);
  t.ok(r.stepsPerSecond > 0);
  t.ok(r.coverage !== null);
  const c = r.coverage!;
  t.comment(`coverage: hypercall x page state x outcome ${c.hcalls.reached}/${c.hcalls.reachable}, descriptor transitions ${c.bbm.reached}/${c.bbm.reachable}`);
  t.same(r.coverage!.hcalls.missing, [], 'every reachable hypercall x state x outcome');
  t.same(r.coverage!.bbm.missing, [], 'every reachable descriptor transition');
  t.same(r.coverage!.bbm.violations, {}, 'no break-before-make violation');
});

t.test('s2emu fuzz --json: summary, exit 0, nothing written', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 's2emu-fuzz-'));
  try {
    const io = captureIo(dir);
    const code = await runCli(['fuzz', '--seed', '3', '--steps', '2000', '--json'], io);
    t.equal(code, 0);
    const j = JSON.parse(io.stdout) as Record<string, unknown>;
    t.equal(j.seed, 3);
    t.equal(j.steps, 2000);
    t.equal(j.violations, 0);
    t.type(j.stepsPerSecond, 'number');
    t.notOk('reproducer' in j);
    t.same(readdirSync(dir), []);
    // Text mode names the seed (the CI log must show it) and, with --coverage, the coverage lines.
    const io2 = captureIo(dir);
    t.equal(await runCli(['fuzz', '--seed', 'random', '--steps', '500', '--coverage'], io2), 0);
    t.match(io2.stdout, /^s2emu fuzz: seed \d+, 500 steps/);
    t.match(io2.stdout, /coverage: hypercall x page state x outcome \d+\/\d+, descriptor transitions \d+\/\d+/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

t.test('executor: steps that lost their meaning are skipped, not run', async (t) => {
  const s = new Session(fuzzMachine(2, 'pkvm-2022'), { inject: Bug.NONE, fullEvery: 0, coverage: null });
  try {
    const w: ExecWorld = s.world;
    const o: Outcome = s.out;
    t.equal(s.apply({ index: 0, kind: 'vm_destroy', name: 'ghost', expect: null }), null);
    t.equal(o.valid, false);
    t.equal(s.apply({ index: 1, kind: 'guest_access', name: 'ghost', vcpu: 0, cpu: null, ipa: 0, access: 'read', handle: true, value: null, expect: null }), null);
    t.equal(o.valid, false);
    t.equal(s.skipped, 2);
    t.equal(w.vms.size, 0);
  } finally {
    s.close();
  }
});

t.test('progress: reported while running, drawn as one line with every field', async (t) => {
  const seen: FuzzProgress[] = [];
  runFuzz({ seed: 2, steps: 3000, outDir: null, onProgress: (p) => seen.push(p), progressEveryMs: 0 });
  t.ok(seen.length >= 2, `${seen.length} progress reports`);
  const mid = seen[0]!;
  t.ok(mid.steps > 0 && mid.steps <= 3000 && mid.total === 3000);
  t.ok(mid.pages.OWNED! > 0, 'pages by host state');
  const line = progressLine(mid);
  t.match(line, /^\r\[#*\.*\] \d+\/3000 steps {2}\d+ steps\/s {2}VMs \d+ {2}pages O \d+ SO \d+ SB \d+ NP \d+ {2}violations 0/);
  t.equal(seen[seen.length - 1]!.steps, 3000, 'a final report');
  // On the CLI the line goes to standard error only when asked (TTY or S2EMU_PROGRESS=1), never with --json.
  const dir = mkdtempSync(join(tmpdir(), 's2emu-fuzz-'));
  try {
    const io = captureIo(dir, { S2EMU_PROGRESS: '1' });
    t.equal(await runCli(['fuzz', '--seed', '2', '--steps', '300'], io), 0);
    t.match(io.stderr, /\r\[[#.]+\] \d+\/300 steps/);
    const quiet = captureIo(dir);
    t.equal(await runCli(['fuzz', '--seed', '2', '--steps', '300'], quiet), 0);
    t.equal(quiet.stderr, '');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
