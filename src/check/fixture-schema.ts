/**
 * Validation of stage-2 oracle fixtures (`../shared/oracle/FORMAT.md`) at the edge (DESIGN.md §4): a JSON value —
 * one case or an array of cases — becomes typed {@link FixtureCase}s, or a list of {@link FixtureIssue}s each naming
 * the file, the JSON path (`$[3].queries[2].ipa`) and what was expected. Nothing here throws on file input.
 *
 * Beyond FORMAT.md, hand-written Arm-correct fixtures (`fixtures/arch/`) may give `regs.hcr_el2` (default
 * `RW | VM`, the oracle's machine) and a query `el` (0 or 1, default 1: EL0 fetches are what FEAT_XNX tells apart).
 * `comment`, `notes` and `rule` fields are accepted anywhere a case, query or expect entry is; other unknown fields of
 * a query or an expect entry are refused so that a misspelt expectation cannot pass silently.
 */

import { parseHex64 } from '../arch/bits.js';

/** A 64-bit value as halves. */
export interface Hex64 {
  readonly lo: number;
  readonly hi: number;
}

/** Access kinds of a fixture query. */
export type FixtureAccess = 'read' | 'write' | 'exec';
/** Query modes: an AT instruction, or a real access from EL1/EL0. */
export type FixtureMode = 'at' | 'access';

/** One query, validated. */
export interface FixtureQuery {
  /** The IPA (equal to the VA: EL1 stage 1 is off). */
  readonly ipa: Hex64;
  readonly access: FixtureAccess;
  readonly mode: FixtureMode;
  /** Exception level of the access (1 unless a hand-written fixture says 0). */
  readonly el: 0 | 1;
}

/** Scalar values an expectation compares, after flattening (`fault.level` → -1..3 or null). */
export type ExpectValue = string | number | boolean | null;

/** One expectation, validated. `unmeasured` covers FORMAT.md's `skipped` and `unmeasured` entries. */
export type FixtureExpect =
  | { readonly kind: 'unmeasured'; readonly why: string }
  | {
      readonly kind: 'result';
      /**
       * Every compared field, flattened with dotted keys (`ok`, `pa`, `par_el1`, `fault.type`, `fault.level`, …).
       * Hex values are normalised to the oracle's minimal lower-case form (`0x0` … `0xa01`).
       */
      readonly fields: Readonly<Record<string, ExpectValue>>;
    };

/** A word of `memory` or `memory_after`. */
export interface FixtureWord {
  readonly pa: number;
  readonly lo: number;
  readonly hi: number;
}

/** ID registers the case was measured with (`source`), or null when the case does not say. */
export interface FixtureSource {
  readonly oracle: string | null;
  readonly mmfr0: Hex64;
  readonly mmfr1: Hex64;
  readonly mmfr2: Hex64;
}

/** One validated case. */
export interface FixtureCase {
  readonly file: string;
  /** JSON path of the case in its file (`$` or `$[12]`). */
  readonly path: string;
  readonly name: string;
  readonly vtcr: Hex64;
  readonly vttbr: Hex64;
  /** HCR_EL2, or null for the oracle's `RW | VM`. */
  readonly hcr: Hex64 | null;
  /** Words in file order (later entries override earlier ones). */
  readonly memory: readonly FixtureWord[];
  readonly queries: readonly FixtureQuery[];
  readonly expect: readonly FixtureExpect[];
  readonly memoryAfter: readonly FixtureWord[];
  readonly source: FixtureSource | null;
  /** `gen.tags`: the generator's marks for known QEMU-vs-Arm differences. */
  readonly tags: readonly string[];
  /** Per-query `notes`/`comment`/`rule` text, for printing (empty string when none). */
  readonly queryNotes: readonly string[];
}

/** One problem with a fixture file. */
export interface FixtureIssue {
  readonly file: string;
  readonly path: string;
  readonly message: string;
}

/** The result of validating a file: cases, or issues (never both empty-and-wrong). */
export type FixtureParse =
  | { readonly ok: true; readonly cases: readonly FixtureCase[] }
  | { readonly ok: false; readonly issues: readonly FixtureIssue[] };

/** The table arena of the oracle machine (FORMAT.md "Memory"). */
export const TABLE_ARENA = { base: 0x4800_0000, end: 0x5000_0000 } as const;
/** The data arena of the oracle machine. */
export const DATA_ARENA = { base: 0x5000_0000, end: 0x6000_0000 } as const;

const NOTE_KEYS = new Set(['comment', 'notes', 'note', 'rule', 'arm_rule']);
const QUERY_KEYS = new Set(['ipa', 'access', 'mode', 'el']);
const HEX_EXPECT_KEYS = ['pa', 'par_el1', 'esr_el2', 'far_el2', 'hpfar_el2', 'elr_el2', 'esr_el1', 'far_el1', 'elr_el1'];
const EXPECT_KEYS = new Set([...HEX_EXPECT_KEYS, 'ok', 'fault', 'at_exception', 'exec_note', 'el1_vector', 'skipped', 'unmeasured']);
const FAULT_KEYS = new Set(['type', 'level', 'stage', 's1ptw', 'fsc', 'wnr', 'detail']);
const FAULT_TYPES = ['translation', 'access_flag', 'permission', 'address_size', 'other'];

/** Formats a JSON path step. */
function step(path: string, key: string | number): string {
  if (typeof key === 'number') return `${path}[${key}]`;
  return /^[A-Za-z_][A-Za-z0-9_]*$/.test(key) ? `${path}.${key}` : `${path}[${JSON.stringify(key)}]`;
}

/** A short description of a JSON value for messages. */
function describe(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'null';
  if (Array.isArray(v)) return `an array of ${v.length}`;
  if (typeof v === 'object') return 'an object';
  const s = JSON.stringify(v);
  return `${typeof v} ${s.length > 40 ? s.slice(0, 37) + '...' : s}`;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Normalises a 64-bit hex value to the oracle's minimal form. */
export function normHex(v: Hex64): string {
  return '0x' + ((BigInt(v.hi >>> 0) << 32n) | BigInt(v.lo >>> 0)).toString(16);
}

class Ctx {
  readonly issues: FixtureIssue[] = [];
  constructor(readonly file: string) {}
  bad(path: string, expected: string, got: unknown): void {
    this.issues.push({ file: this.file, path, message: `expected ${expected}, got ${describe(got)}` });
  }
  hex(v: unknown, path: string, what = 'a 64-bit hex string "0x…"'): Hex64 | null {
    const r = typeof v === 'string' ? parseHex64(v) : null;
    if (r === null) this.bad(path, what, v);
    return r;
  }
}

/** An address below 2^53 from a hex string, or null (with an issue). */
function addr(ctx: Ctx, v: unknown, path: string): number | null {
  const h = ctx.hex(v, path, 'an address as a hex string "0x…"');
  if (h === null) return null;
  if (h.hi >= 0x20_0000) {
    ctx.bad(path, 'an address below 2^53', v);
    return null;
  }
  return h.hi * 0x1_0000_0000 + h.lo;
}

function wordsOf(ctx: Ctx, v: unknown, path: string, out: FixtureWord[], checkArena: boolean): void {
  if (!Array.isArray(v)) {
    ctx.bad(path, 'an array of { "pa": "0x…", "u64": "0x…" | ["0x…", …] }', v);
    return;
  }
  v.forEach((ent, i) => {
    const p = step(path, i);
    if (!isObject(ent)) {
      ctx.bad(p, 'an object { "pa", "u64" }', ent);
      return;
    }
    const pa = addr(ctx, ent['pa'], step(p, 'pa'));
    const raw = ent['u64'];
    const list = typeof raw === 'string' ? [raw] : raw;
    if (!Array.isArray(list) || list.length === 0) {
      ctx.bad(step(p, 'u64'), 'a hex string or a non-empty array of hex strings', raw);
      return;
    }
    if (pa === null) return;
    if (pa % 8 !== 0) {
      ctx.bad(step(p, 'pa'), 'an 8-byte aligned address', ent['pa']);
      return;
    }
    const end = pa + 8 * list.length;
    const inTable = pa >= TABLE_ARENA.base && end <= TABLE_ARENA.end;
    const inData = pa >= DATA_ARENA.base && end <= DATA_ARENA.end;
    if (checkArena && !inTable && !inData) {
      ctx.bad(step(p, 'pa'), 'words inside the table arena [0x48000000, 0x50000000) or the data arena [0x50000000, 0x60000000)', ent['pa']);
      return;
    }
    list.forEach((w, j) => {
      const h = ctx.hex(w, typeof raw === 'string' ? step(p, 'u64') : step(step(p, 'u64'), j));
      if (h !== null) out.push({ pa: pa + 8 * j, lo: h.lo, hi: h.hi });
    });
  });
}

function noteOf(o: Record<string, unknown>): string {
  const parts: string[] = [];
  for (const k of NOTE_KEYS) {
    const v = o[k];
    if (typeof v === 'string') parts.push(v);
  }
  return parts.join(' ');
}

function query(ctx: Ctx, v: unknown, path: string): { q: FixtureQuery; note: string } | null {
  if (!isObject(v)) {
    ctx.bad(path, 'a query object { "ipa", "access", "mode" }', v);
    return null;
  }
  for (const k of Object.keys(v)) {
    if (!QUERY_KEYS.has(k) && !NOTE_KEYS.has(k)) ctx.bad(step(path, k), 'no such field (a query has ipa, access, mode, el)', v[k]);
  }
  const ipa = ctx.hex(v['ipa'], step(path, 'ipa'));
  const access = v['access'];
  if (access !== 'read' && access !== 'write' && access !== 'exec') ctx.bad(step(path, 'access'), '"read", "write" or "exec"', access);
  const mode = v['mode'];
  if (mode !== 'at' && mode !== 'access') ctx.bad(step(path, 'mode'), '"at" or "access"', mode);
  const el = v['el'] === undefined ? 1 : v['el'];
  if (el !== 0 && el !== 1) ctx.bad(step(path, 'el'), '0 or 1', el);
  if (ipa === null || (access !== 'read' && access !== 'write' && access !== 'exec') || (mode !== 'at' && mode !== 'access') || (el !== 0 && el !== 1)) return null;
  return { q: { ipa, access, mode, el }, note: noteOf(v) };
}

function fault(ctx: Ctx, v: unknown, path: string, fields: Record<string, ExpectValue>): void {
  if (!isObject(v)) {
    ctx.bad(path, 'a fault object { "type", "level", "stage", "s1ptw", "fsc" }', v);
    return;
  }
  for (const k of Object.keys(v)) {
    if (!FAULT_KEYS.has(k) && !NOTE_KEYS.has(k)) ctx.bad(step(path, k), 'no such field (a fault has type, level, stage, s1ptw, fsc, wnr, detail)', v[k]);
  }
  const type = v['type'];
  if (typeof type !== 'string' || !FAULT_TYPES.includes(type)) ctx.bad(step(path, 'type'), `one of ${FAULT_TYPES.join(', ')}`, type);
  else fields['fault.type'] = type;
  const level = v['level'];
  if (level !== null && !(typeof level === 'number' && Number.isInteger(level) && level >= -1 && level <= 3)) {
    ctx.bad(step(path, 'level'), 'an integer -1..3 or null', level);
  } else fields['fault.level'] = level;
  const stage = v['stage'];
  if (stage !== 1 && stage !== 2) ctx.bad(step(path, 'stage'), '1 or 2', stage);
  else fields['fault.stage'] = stage;
  for (const k of ['s1ptw', 'wnr']) {
    const b = v[k];
    if (b === undefined && k === 'wnr') continue;
    if (typeof b !== 'boolean') ctx.bad(step(path, k), 'true or false', b);
    else fields[`fault.${k}`] = b;
  }
  const fsc = ctx.hex(v['fsc'], step(path, 'fsc'), 'a fault status code as a hex string "0x.."');
  if (fsc !== null) {
    if (fsc.hi !== 0 || fsc.lo > 0x3f) ctx.bad(step(path, 'fsc'), 'a 6-bit fault status code', v['fsc']);
    else fields['fault.fsc'] = normHex(fsc);
  }
  const detail = v['detail'];
  if (detail !== undefined) {
    if (typeof detail !== 'string') ctx.bad(step(path, 'detail'), 'a string', detail);
    else fields['fault.detail'] = detail;
  }
}

function expectEntry(ctx: Ctx, v: unknown, path: string): FixtureExpect | null {
  if (!isObject(v)) {
    ctx.bad(path, 'an expect object ({ "ok": … } or { "skipped"/"unmeasured": "why" })', v);
    return null;
  }
  for (const k of Object.keys(v)) {
    if (!EXPECT_KEYS.has(k) && !NOTE_KEYS.has(k)) ctx.bad(step(path, k), `no such field (an expect entry has ${[...EXPECT_KEYS].join(', ')})`, v[k]);
  }
  for (const k of ['skipped', 'unmeasured']) {
    if (v[k] === undefined) continue;
    if (typeof v[k] !== 'string') {
      ctx.bad(step(path, k), 'a string saying why', v[k]);
      return null;
    }
    return { kind: 'unmeasured', why: `${k}: ${v[k]}` };
  }
  const fields: Record<string, ExpectValue> = {};
  const ok = v['ok'];
  if (typeof ok !== 'boolean') {
    ctx.bad(step(path, 'ok'), 'true or false (or a "skipped"/"unmeasured" reason)', ok);
    return null;
  }
  fields['ok'] = ok;
  if (!ok) fault(ctx, v['fault'], step(path, 'fault'), fields);
  else if (v['fault'] !== undefined) ctx.bad(step(path, 'fault'), 'no fault when ok is true', v['fault']);
  for (const k of HEX_EXPECT_KEYS) {
    if (v[k] === undefined) continue;
    const h = ctx.hex(v[k], step(path, k));
    if (h !== null) fields[k] = normHex(h);
  }
  if (v['at_exception'] !== undefined) {
    if (typeof v['at_exception'] !== 'boolean') ctx.bad(step(path, 'at_exception'), 'true or false', v['at_exception']);
    else fields['at_exception'] = v['at_exception'];
  }
  if (v['el1_vector'] !== undefined) {
    const n = v['el1_vector'];
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > 15) ctx.bad(step(path, 'el1_vector'), 'an EL1 vector index 0..15', n);
    else fields['el1_vector'] = n;
  }
  if (v['exec_note'] !== undefined && typeof v['exec_note'] !== 'string') ctx.bad(step(path, 'exec_note'), 'a string', v['exec_note']);
  return { kind: 'result', fields };
}

function source(ctx: Ctx, v: unknown, path: string): FixtureSource | null {
  if (v === undefined) return null;
  if (!isObject(v)) {
    ctx.bad(path, 'an object with id_aa64mmfr0_el1, id_aa64mmfr1_el1, id_aa64mmfr2_el1', v);
    return null;
  }
  const m0 = ctx.hex(v['id_aa64mmfr0_el1'], step(path, 'id_aa64mmfr0_el1'));
  const m1 = ctx.hex(v['id_aa64mmfr1_el1'], step(path, 'id_aa64mmfr1_el1'));
  const m2 = ctx.hex(v['id_aa64mmfr2_el1'], step(path, 'id_aa64mmfr2_el1'));
  const oracle = typeof v['oracle'] === 'string' ? v['oracle'] : null;
  if (m0 === null || m1 === null || m2 === null) return null;
  return { oracle, mmfr0: m0, mmfr1: m1, mmfr2: m2 };
}

function oneCase(ctx: Ctx, v: unknown, path: string, names: Map<string, string>, requireExpect: boolean): FixtureCase | null {
  if (!isObject(v)) {
    ctx.bad(path, 'a case object { "name", "regs", "memory", "queries", "expect", … }', v);
    return null;
  }
  const before = ctx.issues.length;
  const name = v['name'];
  if (typeof name !== 'string' || name.length === 0) ctx.bad(step(path, 'name'), 'a non-empty string', name);
  else if (names.has(name)) ctx.bad(step(path, 'name'), `a unique name (also used at ${names.get(name)})`, name);
  else names.set(name, path);
  const regs = v['regs'];
  let vtcr: Hex64 | null = null;
  let vttbr: Hex64 | null = null;
  let hcr: Hex64 | null = null;
  if (!isObject(regs)) ctx.bad(step(path, 'regs'), 'an object { "vtcr_el2", "vttbr_el2" }', regs);
  else {
    vtcr = ctx.hex(regs['vtcr_el2'], step(step(path, 'regs'), 'vtcr_el2'));
    vttbr = ctx.hex(regs['vttbr_el2'], step(step(path, 'regs'), 'vttbr_el2'));
    if (regs['hcr_el2'] !== undefined) hcr = ctx.hex(regs['hcr_el2'], step(step(path, 'regs'), 'hcr_el2'));
  }
  const memory: FixtureWord[] = [];
  wordsOf(ctx, v['memory'] ?? [], step(path, 'memory'), memory, true);
  const qs = v['queries'];
  const queries: FixtureQuery[] = [];
  const queryNotes: string[] = [];
  if (!Array.isArray(qs)) ctx.bad(step(path, 'queries'), 'an array of queries', qs);
  else
    qs.forEach((q, i) => {
      const r = query(ctx, q, step(step(path, 'queries'), i));
      if (r !== null) {
        queries.push(r.q);
        queryNotes.push(r.note);
      }
    });
  const ex = v['expect'];
  const expect: FixtureExpect[] = [];
  if (ex === undefined && !requireExpect) {
    // A generator case without answers: walkable, not checkable.
  } else if (!Array.isArray(ex)) ctx.bad(step(path, 'expect'), 'an array with one entry per query (run the case through oracle/run.mjs)', ex);
  else {
    if (Array.isArray(qs) && ex.length !== qs.length) ctx.bad(step(path, 'expect'), `${qs.length} entries (one per query)`, ex);
    ex.forEach((e, i) => {
      const r = expectEntry(ctx, e, step(step(path, 'expect'), i));
      if (r !== null) expect.push(r);
    });
  }
  const memoryAfter: FixtureWord[] = [];
  wordsOf(ctx, v['memory_after'] ?? [], step(path, 'memory_after'), memoryAfter, false);
  const src = source(ctx, v['source'], step(path, 'source'));
  const gen = v['gen'];
  let tags: string[] = [];
  if (isObject(gen) && gen['tags'] !== undefined) {
    const t = gen['tags'];
    if (!Array.isArray(t) || !t.every((x) => typeof x === 'string')) ctx.bad(step(step(path, 'gen'), 'tags'), 'an array of strings', t);
    else tags = t as string[];
  }
  if (ctx.issues.length !== before || vtcr === null || vttbr === null || typeof name !== 'string') return null;
  return { file: ctx.file, path, name, vtcr, vttbr, hcr, memory, queries, expect, memoryAfter, source: src, tags, queryNotes };
}

/** Options of {@link validateFixture}. */
export interface ValidateOptions {
  /** Refuse cases without `expect` (default true; `walk` accepts generator output that has none). */
  readonly requireExpect?: boolean;
}

/**
 * Validates a parsed fixture file (one case or an array of cases).
 *
 * @param file the file name, used in every issue
 * @param json the value `JSON.parse` produced
 * @returns the cases, or every issue found (each with file, JSON path and what was expected)
 */
export function validateFixture(file: string, json: unknown, opts: ValidateOptions = {}): FixtureParse {
  const requireExpect = opts.requireExpect !== false;
  const ctx = new Ctx(file);
  const names = new Map<string, string>();
  const cases: FixtureCase[] = [];
  if (Array.isArray(json)) {
    if (json.length === 0) ctx.bad('$', 'a case object or a non-empty array of cases', json);
    json.forEach((c, i) => {
      const r = oneCase(ctx, c, `$[${i}]`, names, requireExpect);
      if (r !== null) cases.push(r);
    });
  } else {
    const r = oneCase(ctx, json, '$', names, requireExpect);
    if (r !== null) cases.push(r);
  }
  if (ctx.issues.length > 0) return { ok: false, issues: ctx.issues };
  return { ok: true, cases };
}

/**
 * Parses and validates fixture text. A JSON syntax error becomes one issue at `$` with the parser's position.
 */
export function parseFixture(file: string, text: string, opts: ValidateOptions = {}): FixtureParse {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    // JUSTIFY: JSON.parse only throws SyntaxError; its message carries the position.
    return { ok: false, issues: [{ file, path: '$', message: `expected valid JSON: ${(e as Error).message}` }] };
  }
  return validateFixture(file, json, opts);
}

/** Formats an issue as one line: `file: $.path: expected …, got …`. */
export function formatIssue(i: FixtureIssue): string {
  return `${i.file}: ${i.path}: ${i.message}`;
}
