// The model against the QEMU 7.2 oracle fixtures, and the Arm side of every documented divergence
// (DESIGN.md §5: "a test on each side of it").
import t from 'tap';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseFixture, validateFixture, type FixtureCase } from '../../src/check/fixture-schema.js';
import { runCase, tally, fscOutcome, type CaseReport } from '../../src/check/fixture-run.js';
import { AT_DIRTY, DIVERGENCES } from '../../src/check/divergence.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const FIX = join(ROOT, 'fixtures');

function load(rel: string): FixtureCase[] {
  const dir = join(FIX, rel);
  const out: FixtureCase[] = [];
  for (const f of readdirSync(dir).filter((x) => x.endsWith('.json')).sort()) {
    const r = parseFixture(join(rel, f), readFileSync(join(dir, f), 'utf8'));
    if (!r.ok) throw new Error(`fixture ${f} invalid: ${JSON.stringify(r.issues[0])}`);
    out.push(...r.cases);
  }
  return out;
}

const qemu = load('qemu');
const divergent = load('qemu-divergent');
const arch = load('arch');
const qemuReports = qemu.map((c) => runCase(c));
const divReports = divergent.map((c) => runCase(c));

function explainedIds(reports: readonly CaseReport[]): Set<string> {
  const s = new Set<string>();
  for (const r of reports) {
    for (const q of r.queries) if (q.divergence !== null) s.add(q.divergence.id);
    for (const w of r.memoryMismatches) if (w.divergence !== null) s.add(w.divergence.id);
  }
  return s;
}

t.test('every shared QEMU fixture query passes (7,164 generated + 18 sanity)', async (t) => {
  const totals = tally(qemuReports);
  const queries = qemu.reduce((n, c) => n + c.queries.length, 0);
  t.equal(queries, 7164 + 18);
  t.equal(totals.failed, 0, 'no failures');
  t.equal(totals.passed + totals.unmeasured, queries, 'every measured query passed');
  t.equal(totals.unmeasured, 3, 'the three queries the oracle skipped');
  for (const r of qemuReports) {
    for (const q of r.queries) if (q.verdict === 'fail') t.fail(`${r.fixture.name} q${q.index}: ${JSON.stringify(q.mismatches)}`);
    if (r.memoryVerdict === 'fail') t.fail(`${r.fixture.name} memory_after: ${JSON.stringify(r.memoryMismatches)}`);
  }
});

t.test('fixtures/qemu* are verbatim copies of ../shared/fixtures (when shared/ is present)', async (t) => {
  const shared = join(ROOT, '..', 'shared', 'fixtures');
  if (!existsSync(shared)) return t.skip('no ../shared beside the package');
  for (const sub of ['qemu', 'qemu-divergent']) {
    for (const f of readdirSync(join(shared, sub)).filter((x) => x.endsWith('.json'))) {
      t.ok(readFileSync(join(FIX, sub, f)).equals(readFileSync(join(shared, sub, f))), `${sub}/${f}`);
    }
  }
});

t.test('untagged QEMU fixtures differ from the model only by the untagged divergences', async (t) => {
  const ids = explainedIds(qemuReports);
  const untagged = new Set([...DIVERGENCES.filter((d) => d.tags.length === 0).map((d) => d.id), AT_DIRTY.id]);
  for (const id of ids) t.ok(untagged.has(id), `${id} is an untagged divergence`);
});

t.test('every tagged-divergent query is either equal or explained by its documented divergence', async (t) => {
  const totals = tally(divReports);
  t.equal(totals.failed, 0);
  t.ok(totals.divergent > 100, `${totals.divergent} divergent queries`);
  const strict = tally(divergent.map((c) => runCase(c, { divergences: false })));
  t.ok(strict.failed >= totals.divergent, 'without the divergence list the same queries fail');
});

t.test('each documented divergence: the QEMU side is observed in the fixtures, the Arm side passes in fixtures/arch', async (t) => {
  const seen = explainedIds([...qemuReports, ...divReports]);
  const archByFile = new Map<string, FixtureCase[]>();
  for (const c of arch) archByFile.set(c.file, [...(archByFile.get(c.file) ?? []), c]);
  for (const d of [...DIVERGENCES, AT_DIRTY]) {
    t.ok(seen.has(d.id), `${d.id}: QEMU side seen in fixtures/qemu*`);
    const cases = archByFile.get(join('arch', `${d.id === AT_DIRTY.id ? 'at-dirty-state' : d.id}.json`)) ?? [];
    t.ok(cases.length > 0, `${d.id}: fixtures/arch/${d.id}.json exists`);
    for (const c of cases) {
      const r = runCase(c, { divergences: false });
      const bad = r.queries.filter((q) => q.verdict === 'fail');
      t.equal(bad.length, 0, `${c.name}: Arm expectations hold (${JSON.stringify(bad.map((q) => q.mismatches))})`);
      t.equal(r.memoryVerdict, 'pass', `${c.name}: memory_after`);
    }
  }
});

t.test('all hand-written Arm fixtures pass and cite a rule per query', async (t) => {
  const totals = tally(arch.map((c) => runCase(c, { divergences: false })));
  t.equal(totals.failed, 0);
  t.ok(totals.passed >= 30);
  for (const c of arch) c.queryNotes.forEach((n, i) => t.ok(n.length > 20, `${c.name} q${i} has a note`));
});

function tamper(c: FixtureCase, qi: number, key: string, value: string | number | boolean | null): FixtureCase {
  const expect = c.expect.map((e, i) => (i === qi && e.kind === 'result' ? { kind: 'result' as const, fields: { ...e.fields, [key]: value } } : e));
  return { ...c, expect };
}

t.test('a wrong expectation fails, names the field and carries the walk trace', async (t) => {
  const c = qemu.find((x) => x.expect.some((e) => e.kind === 'result' && e.fields['esr_el2'] !== undefined))!;
  const qi = c.expect.findIndex((e) => e.kind === 'result' && e.fields['esr_el2'] !== undefined);
  const r = runCase(tamper(c, qi, 'esr_el2', '0x0'));
  const q = r.queries[qi]!;
  t.equal(q.verdict, 'fail');
  t.same(q.mismatches.map((m) => m.key), ['esr_el2']);
  t.ok(q.trace.length > 0 || c.name.length > 0);
  const totals = tally([r]);
  t.equal(totals.failed, 1);
});

function tiny(over: Record<string, unknown>): FixtureCase {
  const r = validateFixture('tiny.json', {
    name: 'tiny',
    regs: { vtcr_el2: '0x80023559', vttbr_el2: '0x48100000' },
    memory: [
      { pa: '0x48100008', u64: '0x48101003' },
      { pa: '0x48101000', u64: '0x48102003' },
      { pa: '0x48102000', u64: ['0x501003ff', '0x1000007ff'] },
      { pa: '0x50100000', u64: '0x1234' },
    ],
    queries: [],
    expect: [],
    ...over,
  });
  if (!r.ok) throw new Error(JSON.stringify(r.issues));
  return r.cases[0]!;
}

t.test('memory_after: hardware AF updates and the stub store are compared word by word', async (t) => {
  // HA is off here: the AF=0 page faults, nothing changes; a write through an RW page stores zero (FORMAT.md).
  const c = tiny({
    queries: [{ ipa: '0x40000000', access: 'write', mode: 'access' }],
    expect: [{ ok: false, fault: { type: 'access_flag', level: 3, stage: 2, s1ptw: false, fsc: '0xb', wnr: true }, esr_el2: '0x93c1804b', far_el2: '0x40000000', hpfar_el2: '0x400000' }],
  });
  const ok = runCase(c);
  t.equal(ok.queries[0]!.verdict, 'pass');
  t.equal(ok.memoryVerdict, 'pass');
  const claimed = runCase({ ...c, memoryAfter: [{ pa: 0x48102000, lo: 0x501007ff, hi: 0 }] });
  t.equal(claimed.memoryVerdict, 'fail', 'an AF update the model did not make');
  t.same(claimed.memoryMismatches.map((w) => [w.expected, w.actual]), [['0x501007ff', null]]);
  t.equal(tally([claimed]).failed, 1, 'counted against the last measured query');
  const store = tiny({
    memory: [
      { pa: '0x48100008', u64: '0x48101003' },
      { pa: '0x48101000', u64: '0x48102003' },
      { pa: '0x48102000', u64: '0x501007ff' },
      { pa: '0x50100008', u64: '0x1234' },
    ],
    queries: [{ ipa: '0x40000008', access: 'write', mode: 'access' }],
    expect: [{ ok: true }],
  });
  const s = runCase(store);
  t.equal(s.memoryVerdict, 'fail', 'the store of x1=0 changed a listed data word');
  t.same(s.memoryMismatches.map((w) => w.actual), ['0x0']);
});

t.test('an access whose output address is unbacked takes a synchronous External abort at EL1', async (t) => {
  const c = tiny({
    queries: [{ ipa: '0x40001000', access: 'exec', mode: 'access' }],
    expect: [{ ok: false, fault: { type: 'other', level: null, stage: 1, s1ptw: false, fsc: '0x10', detail: 'sync_external_abort' }, esr_el1: '0x86000010', far_el1: '0x40001000', elr_el1: '0x40001000', el1_vector: 4 }],
  });
  const r = runCase(c);
  t.equal(r.queries[0]!.verdict, 'pass', JSON.stringify(r.queries[0]!.mismatches));
});

t.test('an exec query in at mode has no AT form and fails; unmeasured queries are not run', async (t) => {
  const c = tiny({
    queries: [
      { ipa: '0x40000000', access: 'exec', mode: 'at' },
      { ipa: '0x40000000', access: 'read', mode: 'access' },
    ],
    expect: [{ ok: true }, { skipped: 'no-stub-mapping' }],
  });
  const r = runCase(c);
  t.same(r.queries.map((q) => q.verdict), ['fail', 'unmeasured']);
  t.same(tally([r]), { passed: 0, failed: 1, divergent: 0, unmeasured: 1 });
});

t.test('fscOutcome follows the oracle decoding table (FORMAT.md)', async (t) => {
  t.same(fscOutcome(0x2b), { type: 'translation', level: -1, detail: null });
  t.same(fscOutcome(0x29), { type: 'address_size', level: -1, detail: null });
  t.same(fscOutcome(0x13), { type: 'other', level: -1, detail: 'sync_external_abort_on_walk' });
  t.same(fscOutcome(0x15), { type: 'other', level: 1, detail: 'sync_external_abort_on_walk' });
  t.same(fscOutcome(0x21), { type: 'other', level: null, detail: 'alignment' });
  t.same(fscOutcome(0x30), { type: 'other', level: null, detail: 'tlb_conflict' });
  t.same(fscOutcome(0x31), { type: 'other', level: null, detail: 'unsupported_atomic_hw_update' });
  t.same(fscOutcome(0x3f), { type: 'other', level: null, detail: 'fsc_3f' });
  t.same(fscOutcome(0x0c), { type: 'permission', level: 0, detail: null });
});
