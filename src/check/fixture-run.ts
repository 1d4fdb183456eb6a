/**
 * Runs validated oracle fixture cases (`../shared/oracle/FORMAT.md`) through the model and compares every field.
 *
 * The machine is the oracle's: QEMU `virt` RAM `[0x4000_0000, 0xC000_0000)` (everything else unbacked, so a walk
 * there takes a synchronous external abort), `HCR_EL2 = RW | VM` unless the case says otherwise, EL1 stage 1 off
 * (VA = IPA; an IPA at or above 2^PAMax is a stage-1 Address size fault), CPU features from the case's `source`
 * ID registers (QEMU 7.2 `-cpu max` when absent). Queries run in order on shared memory, each with a cold TLB (the
 * model walks every time), so a hardware AF/dirty update of query n is seen by query n+1; queries the oracle did
 * not perform (`skipped`, `unmeasured`) are not run, as they had no effect there either.
 *
 * Query answers are computed in the fixture's own terms: `at` mode → `atS12E1` (PAR_EL1, or the EL2 Data Abort an
 * external abort on the walk raises); `access` mode → `deliverStage2Abort` for `LDR X1, [X0]` / `STR X1, [X0]` /
 * an instruction fetch (ESR_EL2, FAR_EL2, HPFAR_EL2). ELR values in fixtures are addresses inside the oracle's own
 * code and are not compared (there is no such code in the model).
 */

import { parseHex64, u64ToShortHex } from '../arch/bits.js';
import { decodeS2Desc, type S2DescDecoded } from '../arch/desc-codec.js';
import { EsrEc, esrDataAbort, esrInsnAbort } from '../arch/esr.js';
import { decodeCpuFeatures, QEMU_MAX_FEATURES, type CpuFeatures } from '../arch/features.js';
import { FaultType, faultStatusCode } from '../arch/fault.js';
import { HCR_RW_LO, HCR_VM_LO } from '../arch/hcr.js';
import { PhysMem } from '../mem/phys-mem.js';
import { AbortAccess, AbortContext, El2ExceptionState, deliverStage2Abort, insnLdrStrX } from '../mmu/abort.js';
import { AtResult, atS12E1 } from '../mmu/at.js';
import { decodeS2Config, S2Config } from '../mmu/s2-config.js';
import { AccessKind, WalkFlag, s2Walk } from '../mmu/s2-walk.js';
import { NO_LEAF, WalkResult } from '../mmu/walk-result.js';
import { WalkTrace } from '../mmu/walk-trace.js';
import { AT_DIRTY, explainMemoryMismatch, explainMismatch, isAtDirtyWord, type Divergence, type Outcome } from './divergence.js';
import type { ExpectValue, FixtureCase, FixtureQuery } from './fixture-schema.js';

/** RAM of the oracle machine (QEMU virt, `-m 2G`). */
export const ORACLE_RAM = { base: 0x4000_0000, size: 0x8000_0000 } as const;
/** HCR_EL2 of the oracle machine: RW | VM. */
export const ORACLE_HCR = { lo: (HCR_RW_LO | HCR_VM_LO) >>> 0, hi: 0 } as const;
/** The register the oracle's `ldr`/`str` stubs transfer (SRT in ESR_EL2). */
export const ORACLE_STUB_RT = 1;
/**
 * Index (offset / 0x80) of the EL1 vector an exception taken from EL1h to EL1 enters: "current EL with SP_ELx,
 * synchronous" at VBAR_EL1 + 0x200 (Arm ARM D1.10.2). The oracle reports it as `el1_vector`.
 */
export const EL1_VECTOR_CURRENT_SPX_SYNC = 4;

/** Fills the fields of a fault QEMU takes to EL1 (stage 1 is off, HCR_EL2.TEA = 0): ESR_EL1, FAR_EL1, vector. */
function el1Fault(o: Record<string, ExpectValue>, q: FixtureQuery, fsc: number): void {
  const exec = q.access === 'exec';
  const write = q.access === 'write';
  faultFields(o, fsc, 1, false, exec ? null : write);
  o['esr_el1'] = hex(exec ? esrInsnAbort(EsrEc.IABT_CUR, false, fsc) : esrDataAbort(EsrEc.DABT_CUR, 0, false, false, write, fsc), 0);
  o['far_el1'] = hex(q.ipa.lo, q.ipa.hi);
  if (exec) o['elr_el1'] = hex(q.ipa.lo, q.ipa.hi);
  o['el1_vector'] = EL1_VECTOR_CURRENT_SPX_SYNC;
}

/** One descriptor read of a walk, decoded for printing. */
export interface TraceStep {
  readonly level: number;
  readonly descPa: number;
  readonly lo: number;
  readonly hi: number;
  readonly decoded: S2DescDecoded;
}

/** A field that differs. */
export interface FieldMismatch {
  readonly key: string;
  readonly expected: ExpectValue;
  /** `undefined` when the model produced no such field. */
  readonly actual: ExpectValue | undefined;
}

/** How one query (or a case's `memory_after`) came out. */
export type Verdict = 'pass' | 'fail' | 'divergent' | 'unmeasured';

/** The result of one query. */
export interface QueryReport {
  readonly index: number;
  readonly query: FixtureQuery;
  readonly verdict: Verdict;
  /** The model's answer, flattened like the fixture (empty for unmeasured queries). */
  readonly model: Outcome;
  readonly mismatches: readonly FieldMismatch[];
  readonly divergence: Divergence | null;
  /** The walk's descriptor reads (kept for mismatches, and always when `keepTraces`). */
  readonly trace: readonly TraceStep[];
  /** Why a query was not measured, or its notes. */
  readonly note: string;
}

/** A `memory_after` word that differs. */
export interface MemoryMismatch {
  readonly pa: number;
  /** The documented divergence that explains it, or null (a failure). */
  readonly divergence: Divergence | null;
  /** Expected final value (`null`: the oracle saw no change). */
  readonly expected: string | null;
  /** The model's final value (`null`: the model made no change). */
  readonly actual: string | null;
}

/** The result of one case. */
export interface CaseReport {
  readonly fixture: FixtureCase;
  readonly queries: readonly QueryReport[];
  readonly memoryVerdict: Exclude<Verdict, 'unmeasured'>;
  readonly memoryMismatches: readonly MemoryMismatch[];
  readonly memoryDivergence: Divergence | null;
}

/** Options of {@link runCase}. */
export interface RunOptions {
  /** Keep walk traces of passing queries too (the `walk` command). */
  readonly keepTraces?: boolean;
  /** Apply the documented-divergence predicate to tagged cases (default true). */
  readonly divergences?: boolean;
}

/** CPU features of a case: from its `source` ID registers, or QEMU 7.2 `-cpu max`. */
export function caseFeatures(c: FixtureCase): CpuFeatures {
  const s = c.source;
  if (s === null) return QEMU_MAX_FEATURES;
  return decodeCpuFeatures(s.mmfr0.lo, s.mmfr0.hi, s.mmfr1.lo, s.mmfr1.hi, s.mmfr2.lo, s.mmfr2.hi);
}

/** A fresh memory with the oracle's RAM and the case's words loaded. */
export function loadCaseMemory(c: FixtureCase): PhysMem {
  const mem = new PhysMem();
  mem.addRegion(ORACLE_RAM.base, ORACLE_RAM.size);
  for (const w of c.memory) mem.write64(w.pa, w.lo, w.hi);
  return mem;
}

/** The decoded stage-2 configuration of a case. */
export function caseConfig(c: FixtureCase, feat: CpuFeatures): S2Config {
  const cfg = new S2Config();
  const hcr = c.hcr ?? ORACLE_HCR;
  decodeS2Config(c.vtcr.lo, c.vtcr.hi, c.vttbr.lo, c.vttbr.hi, hcr.lo, hcr.hi, feat, cfg);
  return cfg;
}

const hex = (lo: number, hi: number): string => u64ToShortHex(lo, hi);

/** The oracle's decoding of a fault status code into `fault.type`/`level`/`detail` (FORMAT.md "Decoding"). */
export function fscOutcome(fsc: number): { type: string; level: number | null; detail: string | null } {
  const f = fsc & 0x3f;
  if (f <= 3) return { type: 'address_size', level: f, detail: null };
  if (f === 0x29) return { type: 'address_size', level: -1, detail: null };
  if (f >= 4 && f <= 7) return { type: 'translation', level: f - 4, detail: null };
  if (f === 0x2b) return { type: 'translation', level: -1, detail: null };
  if (f >= 8 && f <= 11) return { type: 'access_flag', level: f - 8, detail: null };
  if (f >= 12 && f <= 15) return { type: 'permission', level: f - 12, detail: null };
  if (f === 0x10) return { type: 'other', level: null, detail: 'sync_external_abort' };
  if (f === 0x13) return { type: 'other', level: -1, detail: 'sync_external_abort_on_walk' };
  if (f >= 0x14 && f <= 0x17) return { type: 'other', level: f - 0x14, detail: 'sync_external_abort_on_walk' };
  if (f === 0x21) return { type: 'other', level: null, detail: 'alignment' };
  if (f === 0x30) return { type: 'other', level: null, detail: 'tlb_conflict' };
  if (f === 0x31) return { type: 'other', level: null, detail: 'unsupported_atomic_hw_update' };
  return { type: 'other', level: null, detail: 'fsc_' + f.toString(16) };
}

function faultFields(o: Record<string, ExpectValue>, fsc: number, stage: number, s1ptw: boolean, wnr: boolean | null): void {
  const d = fscOutcome(fsc);
  o['ok'] = false;
  o['fault.type'] = d.type;
  o['fault.level'] = d.level;
  o['fault.stage'] = stage;
  o['fault.s1ptw'] = s1ptw;
  o['fault.fsc'] = '0x' + (fsc & 0x3f).toString(16);
  if (wnr !== null) o['fault.wnr'] = wnr;
  if (d.detail !== null) o['fault.detail'] = d.detail;
}

/** Per-run scratch objects (one set per case run; the query loop allocates only its outputs). */
class Machine {
  readonly walk = new WalkResult();
  readonly trace = new WalkTrace();
  readonly at = new AtResult();
  readonly ctx = new AbortContext();
  readonly exc = new El2ExceptionState();
  constructor(
    readonly mem: PhysMem,
    readonly cfg: S2Config,
    readonly feat: CpuFeatures,
  ) {}
}

function atQuery(m: Machine, q: FixtureQuery): Record<string, ExpectValue> {
  const o: Record<string, ExpectValue> = {};
  const r = m.at;
  atS12E1(m.mem, m.cfg, m.feat.paBits, q.ipa.lo, q.ipa.hi, q.access === 'write', m.walk, m.trace, r);
  if (r.exception) {
    faultFields(o, r.esrLo & 0x3f, 2, m.walk.s1ptw, true);
    o['at_exception'] = true;
    o['esr_el2'] = hex(r.esrLo, 0);
    o['far_el2'] = hex(r.farLo, r.farHi);
    return o;
  }
  o['par_el1'] = hex(r.parLo, r.parHi);
  if ((r.parLo & 1) === 0) {
    o['ok'] = true;
    o['pa'] = '0x' + m.walk.pa.toString(16);
    return o;
  }
  faultFields(o, (r.parLo >>> 1) & 0x3f, r.stage1 ? 1 : 2, (r.parLo & 0x100) !== 0, null);
  return o;
}

function accessQuery(m: Machine, q: FixtureQuery): Record<string, ExpectValue> {
  const o: Record<string, ExpectValue> = {};
  const write = q.access === 'write';
  const exec = q.access === 'exec';
  if (q.ipa.hi >>> 0 >= 2 ** (m.feat.paBits - 32)) {
    // Stage 1 (off) rejects an address beyond PAMax: an Address size fault, level 0, taken to EL1 (FORMAT.md).
    el1Fault(o, q, faultStatusCode(FaultType.ADDRESS_SIZE, 0));
    return o;
  }
  const ipa = (q.ipa.hi >>> 0) * 0x1_0000_0000 + (q.ipa.lo >>> 0);
  const kind = exec ? AccessKind.EXEC : write ? AccessKind.WRITE : AccessKind.READ;
  const fault = s2Walk(m.mem, m.cfg, ipa, kind, q.el === 0 ? WalkFlag.EL0 : 0, m.walk, m.trace);
  if (fault === FaultType.NONE) {
    if (!m.mem.isRam(m.walk.pa)) {
      // The access itself reaches unbacked PA space: a synchronous External abort that is not a stage-2 fault,
      // routed to EL1 because HCR_EL2.TEA = 0 (Arm ARM D1.12 "Routing of synchronous External aborts").
      el1Fault(o, q, faultStatusCode(FaultType.SEA, 0));
      return o;
    }
    o['ok'] = true;
    // The stub stores x1 = 0 (FORMAT.md); the data arena is RAM, so a translated write lands there.
    if (write) m.mem.write64(m.walk.pa - (m.walk.pa % 8), 0, 0);
    return o;
  }
  const ctx = m.ctx;
  ctx.access = exec ? AbortAccess.EXEC : write ? AbortAccess.WRITE : AbortAccess.READ;
  ctx.insn = insnLdrStrX(ORACLE_STUB_RT);
  ctx.vaLo = q.ipa.lo;
  ctx.vaHi = q.ipa.hi;
  ctx.pcLo = exec ? q.ipa.lo : 0;
  ctx.pcHi = exec ? q.ipa.hi : 0;
  deliverStage2Abort(m.walk, ctx, m.exc);
  faultFields(o, m.exc.esrLo & 0x3f, 2, m.walk.s1ptw, exec ? null : write);
  o['esr_el2'] = hex(m.exc.esrLo, m.exc.esrHi);
  o['far_el2'] = hex(m.exc.farLo, m.exc.farHi);
  o['hpfar_el2'] = hex(m.exc.hpfarLo, m.exc.hpfarHi);
  return o;
}

function captureTrace(m: Machine): TraceStep[] {
  const t = m.trace;
  const steps: TraceStep[] = [];
  for (let i = 0; i < t.n; i++) {
    const level = t.level[i]!; // JUSTIFY: i < n ≤ MAX_WALK_STEPS.
    const lo = t.lo[i]!;
    const hi = t.hi[i]!;
    steps.push({ level, descPa: t.descPa[i]!, lo, hi, decoded: decodeS2Desc(lo, hi, { granule: m.cfg.granule, level, ds: m.cfg.ds, pa52: m.cfg.pa52 }) });
  }
  return steps;
}

/** Compares a normalised value (hex strings compare by value). */
function same(expected: ExpectValue, actual: ExpectValue | undefined): boolean {
  if (actual === undefined) return false;
  if (typeof expected === 'string' && typeof actual === 'string' && expected.startsWith('0x') && actual.startsWith('0x')) {
    const a = parseHex64(expected);
    const b = parseHex64(actual);
    return a !== null && b !== null && a.lo === b.lo && a.hi === b.hi;
  }
  return expected === actual;
}

/** Fields the model reproduces only where they do not name the oracle's own code (ELR of a data access). */
const NOT_COMPARED = new Set(['elr_el2', 'elr_el1']);

/**
 * Runs one case: loads memory, decodes the configuration, runs each query in order on shared memory and compares
 * every expected field and `memory_after`.
 */
export function runCase(c: FixtureCase, opts: RunOptions = {}): CaseReport {
  const feat = caseFeatures(c);
  const mem = loadCaseMemory(c);
  const m = new Machine(mem, caseConfig(c, feat), feat);
  const useDiv = opts.divergences !== false;
  const queries: QueryReport[] = [];
  const explained = new Set<string>();
  const atWriteLeaves = new Set<number>();
  c.queries.forEach((q, i) => {
    const e = c.expect[i];
    if (e === undefined || e.kind === 'unmeasured') {
      queries.push({ index: i, query: q, verdict: 'unmeasured', model: {}, mismatches: [], divergence: null, trace: [], note: e === undefined ? 'no expectation' : e.why });
      return;
    }
    if (q.mode === 'at' && q.access === 'exec') {
      const mm = [{ key: 'mode', expected: 'an AT form for exec', actual: 'none exists (FORMAT.md: answered "skipped")' }];
      queries.push({ index: i, query: q, verdict: 'fail', model: {}, mismatches: mm, divergence: null, trace: [], note: '' });
      return;
    }
    m.trace.reset();
    const model = q.mode === 'at' ? atQuery(m, q) : accessQuery(m, q);
    const mismatches: FieldMismatch[] = [];
    for (const [key, expected] of Object.entries(e.fields)) {
      if (NOT_COMPARED.has(key) && model[key] === undefined) continue;
      if (!same(expected, model[key])) mismatches.push({ key, expected, actual: model[key] });
    }
    const leaf = m.walk.leafLevel !== NO_LEAF;
    if (q.mode === 'at' && q.access === 'write' && model['ok'] === true && leaf) atWriteLeaves.add(m.walk.descPa);
    let verdict: Verdict = mismatches.length === 0 ? 'pass' : 'fail';
    let divergence: Divergence | null = null;
    if (verdict === 'fail' && useDiv) {
      divergence = explainMismatch({
        tags: c.tags,
        qemu: e.fields,
        model,
        access: q.access,
        mode: q.mode,
        leafMemAttr: leaf ? m.walk.memAttr : null,
        fwb: m.cfg.fwb,
        beyondPaMax: q.ipa.hi >>> 0 >= 2 ** (feat.paBits - 32),
      });
      if (divergence !== null) {
        verdict = 'divergent';
        explained.add(divergence.id);
      }
    }
    const keep = verdict !== 'pass' || opts.keepTraces === true;
    queries.push({ index: i, query: q, verdict, model, mismatches, divergence, trace: keep ? captureTrace(m) : [], note: c.queryNotes[i] ?? '' });
  });
  const caseDiv = useDiv ? explainMemoryMismatch(explained) : null;
  const memoryMismatches = compareMemory(c, mem, (pa, model, qemu) => {
    if (!useDiv) return null;
    if (qemu !== null && isAtDirtyWord(BigInt(model), BigInt(qemu), atWriteLeaves.has(pa))) return AT_DIRTY;
    return caseDiv;
  });
  let memoryVerdict: Exclude<Verdict, 'unmeasured'> = 'pass';
  let memoryDivergence: Divergence | null = null;
  if (memoryMismatches.length > 0) {
    const unexplained = memoryMismatches.some((w) => w.divergence === null);
    memoryVerdict = unexplained ? 'fail' : 'divergent';
    if (!unexplained) memoryDivergence = memoryMismatches[0]!.divergence; // JUSTIFY: length > 0.
  }
  return { fixture: c, queries, memoryVerdict, memoryMismatches, memoryDivergence };
}

/** Words of `memory` whose final value differs from the expectation (`memory_after` lists every changed word). */
function compareMemory(
  c: FixtureCase,
  mem: PhysMem,
  explain: (pa: number, model: string, qemu: string | null) => Divergence | null,
): MemoryMismatch[] {
  const initial = new Map<number, string>();
  for (const w of c.memory) initial.set(w.pa, hex(w.lo, w.hi));
  const expected = new Map<number, string>();
  for (const w of c.memoryAfter) expected.set(w.pa, hex(w.lo, w.hi));
  const out: MemoryMismatch[] = [];
  const scratch = { lo: 0, hi: 0 };
  const pas = new Set<number>([...initial.keys(), ...expected.keys()]);
  for (const pa of [...pas].sort((a, b) => a - b)) {
    mem.read64(pa, scratch);
    const now = hex(scratch.lo, scratch.hi);
    const changed = initial.has(pa) ? now !== initial.get(pa) : now !== '0x0';
    const exp = expected.get(pa) ?? null;
    if (exp !== null ? exp !== now : changed) out.push({ pa, divergence: explain(pa, now, exp), expected: exp, actual: changed ? now : null });
  }
  return out;
}

/** Totals over case reports; a case's `memory_after` result counts against its last measured query. */
export interface RunTotals {
  passed: number;
  failed: number;
  divergent: number;
  unmeasured: number;
}

/**
 * Counts one verdict per measured query; a divergent query counts as passed (and in `divergent`). A failing
 * `memory_after` turns the case's last measured query into a failure (a divergent one into a divergence), so the
 * count stays one per query.
 */
export function tally(reports: readonly CaseReport[]): RunTotals {
  const t: RunTotals = { passed: 0, failed: 0, divergent: 0, unmeasured: 0 };
  for (const r of reports) {
    const verdicts = r.queries.map((q) => q.verdict);
    let last = -1;
    for (let i = 0; i < verdicts.length; i++) if (verdicts[i] !== 'unmeasured') last = i;
    if (last < 0 && r.memoryVerdict === 'fail') t.failed++;
    if (last >= 0 && r.memoryVerdict !== 'pass') {
      if (r.memoryVerdict === 'fail') verdicts[last] = 'fail';
      else if (verdicts[last] === 'pass') verdicts[last] = 'divergent';
    }
    for (const v of verdicts) {
      if (v === 'unmeasured') t.unmeasured++;
      else if (v === 'fail') t.failed++;
      else {
        t.passed++;
        if (v === 'divergent') t.divergent++;
      }
    }
  }
  return t;
}
