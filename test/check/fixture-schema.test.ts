// Fixture validation at the edge: every problem names the file, the JSON path and what was expected (DESIGN.md §4).
import t from 'tap';
import { formatIssue, parseFixture, validateFixture, normHex, DATA_ARENA } from '../../src/check/fixture-schema.js';

/** A minimal valid case (FORMAT.md), built field by field so tests can break one field at a time. */
function validCase(over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    name: 'c0',
    regs: { vtcr_el2: '0x80023559', vttbr_el2: '0x48100000' },
    memory: [{ pa: '0x48100008', u64: ['0x48101003'] }],
    queries: [
      { ipa: '0x40000000', access: 'read', mode: 'at' },
      { ipa: '0x40000000', access: 'exec', mode: 'access' },
    ],
    expect: [{ ok: true, pa: '0x50100000', par_el1: '0x50100b00' }, { skipped: 'no-stub-mapping' }],
    memory_after: [],
    ...over,
  };
}

function issuesOf(json: unknown): string[] {
  const r = validateFixture('f.json', json);
  return r.ok ? [] : r.issues.map(formatIssue);
}

t.test('a valid case parses into halves and flattened expectations', async (t) => {
  const r = validateFixture('f.json', validCase());
  t.ok(r.ok);
  if (!r.ok) return;
  const c = r.cases[0]!;
  t.equal(c.path, '$');
  t.same(c.vtcr, { lo: 0x80023559, hi: 0 });
  t.same(c.memory, [{ pa: 0x48100008, lo: 0x48101003, hi: 0 }]);
  t.same(c.expect[0], { kind: 'result', fields: { ok: true, pa: '0x50100000', par_el1: '0x50100b00' } });
  t.same(c.expect[1], { kind: 'unmeasured', why: 'skipped: no-stub-mapping' });
  t.equal(c.queries[1]!.el, 1, 'EL1 unless a hand-written fixture says otherwise');
});

t.test('an array of cases gets indexed paths; duplicate names are refused', async (t) => {
  const r = validateFixture('f.json', [validCase(), validCase({ name: 'c1' })]);
  t.ok(r.ok);
  t.same(r.ok && r.cases.map((c) => c.path), ['$[0]', '$[1]']);
  t.match(issuesOf([validCase(), validCase()]), [/f\.json: \$\[1\]\.name: expected a unique name \(also used at \$\[0\]\)/]);
});

t.test('each malformed field is reported with its JSON path and the expectation', async (t) => {
  const table: [string, Record<string, unknown>, RegExp][] = [
    ['bad hex', { regs: { vtcr_el2: '80023559', vttbr_el2: '0x0' } }, /\$\.regs\.vtcr_el2: expected a 64-bit hex string "0x…", got string "80023559"/],
    ['too wide', { regs: { vtcr_el2: '0x1_0000_0000_0000_0000', vttbr_el2: '0x0' } }, /\$\.regs\.vtcr_el2: expected a 64-bit hex/],
    ['bad access', { queries: [{ ipa: '0x0', access: 'fetch', mode: 'at' }], expect: [{ ok: true }] }, /\$\.queries\[0\]\.access: expected "read", "write" or "exec", got string "fetch"/],
    ['unknown query field', { queries: [{ ipa: '0x0', access: 'read', mode: 'at', size: 8 }], expect: [{ ok: true }] }, /\$\.queries\[0\]\.size: expected no such field/],
    ['expect length', { expect: [{ ok: true }] }, /\$\.expect: expected 2 entries \(one per query\), got an array of 1/],
    ['fault level', { expect: [{ ok: false, fault: { type: 'translation', level: 4, stage: 2, s1ptw: false, fsc: '0x7' } }, { ok: true }] }, /\$\.expect\[0\]\.fault\.level: expected an integer -1\.\.3 or null, got number 4/],
    ['fault type', { expect: [{ ok: false, fault: { type: 'oops', level: 1, stage: 2, s1ptw: false, fsc: '0x7' } }, { ok: true }] }, /\$\.expect\[0\]\.fault\.type: expected one of translation/],
    ['fsc width', { expect: [{ ok: false, fault: { type: 'other', level: null, stage: 2, s1ptw: false, fsc: '0x40' } }, { ok: true }] }, /fault\.fsc: expected a 6-bit fault status code/],
    ['typo in expect', { expect: [{ ok: true, par_el2: '0x0' }, { ok: true }] }, /\$\.expect\[0\]\.par_el2: expected no such field/],
    ['ok missing', { expect: [{ pa: '0x0' }, { ok: true }] }, /\$\.expect\[0\]\.ok: expected true or false/],
    ['word outside arenas', { memory: [{ pa: '0x40000000', u64: '0x1' }] }, /\$\.memory\[0\]\.pa: expected words inside the table arena/],
    ['unaligned word', { memory: [{ pa: '0x48100004', u64: '0x1' }] }, /\$\.memory\[0\]\.pa: expected an 8-byte aligned address/],
    ['bad word', { memory: [{ pa: '0x48100000', u64: ['0x1', 'zz'] }] }, /\$\.memory\[0\]\.u64\[1\]: expected a 64-bit hex string/],
    ['no expect', { expect: undefined }, /\$\.expect: expected an array with one entry per query/],
    ['bad tags', { gen: { tags: 'x' } }, /\$\.gen\.tags: expected an array of strings/],
    ['bad source', { source: { id_aa64mmfr0_el1: '0x1' } }, /\$\.source\.id_aa64mmfr1_el1: expected a 64-bit hex/],
    ['bad el', { queries: [{ ipa: '0x0', access: 'read', mode: 'at', el: 2 }, { ipa: '0x0', access: 'read', mode: 'at' }] }, /\$\.queries\[0\]\.el: expected 0 or 1, got number 2/],
  ];
  for (const [what, over, re] of table) t.match(issuesOf(validCase(over)), [re], what);
});

t.test('non-objects and empty files are refused at $', async (t) => {
  t.match(issuesOf([]), [/\$: expected a case object or a non-empty array of cases/]);
  t.match(issuesOf(42), [/\$: expected a case object/]);
  t.match(issuesOf([validCase(), 'x']), [/\$\[1\]: expected a case object/]);
});

t.test('parseFixture turns a JSON syntax error into an issue, never a throw', async (t) => {
  const r = parseFixture('broken.json', '{ "name": ');
  t.notOk(r.ok);
  t.match(!r.ok && formatIssue(r.issues[0]!), /^broken\.json: \$: expected valid JSON: /);
});

t.test('requireExpect: false accepts generator output without answers', async (t) => {
  const json = validCase({ expect: undefined });
  t.notOk(validateFixture('g.json', json).ok);
  const r = validateFixture('g.json', json, { requireExpect: false });
  t.ok(r.ok);
  t.same(r.ok && r.cases[0]!.expect, []);
});

t.test('memory_after words may lie anywhere; data-arena words are accepted in memory', async (t) => {
  const r = validateFixture('f.json', validCase({ memory: [{ pa: '0x' + DATA_ARENA.base.toString(16), u64: '0x5' }], memory_after: [{ pa: '0x40000000', u64: '0x0' }] }));
  t.ok(r.ok);
  t.equal(normHex({ lo: 0, hi: 1 }), '0x100000000');
});
