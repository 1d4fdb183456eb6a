/**
 * The scenario runner: builds a {@link Machine} from a parsed {@link Scenario}, executes its steps in order, compares
 * each step's results with its `expect` (a step without one must succeed), checks the ghost-state invariants after
 * every hypercall (unless turned off; reported as one `invariants` check per step that issued any), and returns a
 * JSON-able trace plus the pass/fail totals. `s2emu run` prints what this returns.
 */

import { u64ToBigInt } from '../arch/bits.js';
import { errnoName } from '../arch/errno.js';
import { assertNever } from '../arch/assert.js';
import { createMachine, validateMachineConfig, type HvcResult, type Machine, type TraceEvent } from '../system.js';
import type { ArgSpec, RegExpects, Scenario, Step, U64Val } from './scenario-schema.js';

/** Options of {@link runScenario}. */
export interface RunOptions {
  /** Record the machine's events (hypercalls, exits, aborts) in each step's trace. Default false. */
  readonly trace?: boolean;
  /** Override the scenario's `machine.tlb`. */
  readonly tlb?: boolean;
  /** Check the invariants after every hypercall. Default true (a `set` step may change it). */
  readonly invariants?: boolean;
}

/** One comparison of an expectation. */
export interface Check {
  /** What was compared (`x1`, `result`, `host`, `invariants`…). */
  readonly what: string;
  /** Expected value, as text. */
  readonly expected: string;
  /** Actual value, as text. */
  readonly actual: string;
  /** Whether they agree. */
  readonly pass: boolean;
}

/** The trace of one step. */
export interface StepTrace {
  /** Index in `steps`. */
  readonly step: number;
  /** Step kind. */
  readonly kind: Step['kind'];
  /** The step's `comment`, if any. */
  readonly comment?: string;
  /** What the step produced (registers, result, errno, states…), as JSON-friendly text/numbers. */
  readonly result: Record<string, unknown>;
  /** Comparisons made. */
  readonly checks: Check[];
  /** Machine events during the step (only with `trace`). */
  readonly events?: TraceEvent[];
}

/** The outcome of a run. */
export interface RunReport {
  /** Scenario file. */
  readonly file: string;
  /** Scenario name. */
  readonly name: string;
  /** Per-step traces. */
  readonly steps: StepTrace[];
  /** Checks that passed. */
  readonly passed: number;
  /** Checks that failed. */
  readonly failed: number;
  /** Input problems found only once the machine exists (unknown hypercall name, profile…); non-empty ⇒ exit 2. */
  readonly inputErrors: string[];
}

const hexU64 = (v: U64Val): string => '0x' + u64ToBigInt(v.lo, v.hi).toString(16);

/** A register value as the scenario would write it: `SUCCESS`-style for x0, errno names for small negatives. */
function regText(v: U64Val, isX0: boolean): string {
  const signed = v.hi === 0xffff_ffff && v.lo >= 0x8000_0000 ? v.lo - 2 ** 32 : v.hi === 0 && v.lo < 0x8000_0000 ? v.lo : null;
  if (isX0 && signed !== null) {
    if (signed === 0) return 'SUCCESS';
    if (signed === -1) return 'NOT_SUPPORTED';
    if (signed === -2) return 'NOT_REQUIRED';
    if (signed === -3) return 'INVALID_PARAMETER';
  }
  if (signed !== null && signed <= 0 && signed >= -4095) return errnoName(signed);
  return hexU64(v);
}

function eqU64(a: U64Val, b: U64Val): boolean {
  return a.lo >>> 0 === b.lo >>> 0 && a.hi >>> 0 === b.hi >>> 0;
}

function checkRegs(checks: Check[], exp: RegExpects | null, got: HvcResult): void {
  if (exp === null) return;
  const regs = ['x0', 'x1', 'x2', 'x3'] as const;
  for (const r of regs) {
    const e = exp[r];
    if (e === undefined) continue;
    checks.push({ what: r, expected: regText(e, r === 'x0'), actual: regText(got[r], r === 'x0'), pass: eqU64(e, got[r]) });
  }
}

function cmp(checks: Check[], what: string, expected: unknown, actual: unknown, fmt: (x: never) => string = String): void {
  if (expected === undefined) return;
  const f = fmt as (x: unknown) => string;
  checks.push({ what, expected: f(expected), actual: f(actual), pass: expected === actual });
}

const hexNum = (x: number): string => '0x' + x.toString(16);
const errText = (x: number): string => errnoName(x);

/** Resolves symbolic hypercall arguments (`handle:<vm>`, `pfn:<pa>`) to halves. */
function resolveArgs(m: Machine, args: readonly ArgSpec[]): U64Val[] {
  return args.map((a): U64Val => {
    switch (a.kind) {
      case 'value':
        return a.v;
      case 'handle': {
        const h = m.vmHandle(a.vm);
        return { lo: h >>> 0, hi: 0 };
      }
      case 'pfn':
        return { lo: Math.floor(a.pa / 4096) >>> 0, hi: 0 };
      case 'kvm_pfn':
        return { lo: Math.floor(m.hostKvmPa(a.vm) / 4096) >>> 0, hi: 0 };
      case 'vcpu_pfn':
        return { lo: Math.floor(m.hostVcpuPa(a.vm, a.vcpu) / 4096) >>> 0, hi: 0 };
      default:
        return assertNever(a, 'argument');
    }
  });
}

function hvcResult(r: HvcResult): Record<string, unknown> {
  return { x0: regText(r.x0, true), x1: regText(r.x1, false), x2: hexU64(r.x2), x3: hexU64(r.x3) };
}

/** Checks input that only the built machine can judge (hypercall names of the profile, guest service names). */
function preflight(m: Machine, s: Scenario): string[] {
  const errs: string[] = [];
  for (const st of s.steps) {
    if (st.kind === 'hvc' && m.resolveHcall(st.fn) === null) {
      errs.push(`${s.file}: $.steps[${st.index}].hvc: expected a hypercall name of profile ${m.profileName} or a raw id like "0xc600000d", got ${JSON.stringify(st.fn)}`);
    }
    if (st.kind === 'guest_hvc' && m.resolveGuestHcall(st.fn) === null) {
      errs.push(`${s.file}: $.steps[${st.index}].fn: expected a guest service (HYP_MEMINFO, MEM_SHARE, MEM_UNSHARE) or a raw id, got ${JSON.stringify(st.fn)}`);
    }
  }
  return errs;
}

/**
 * Runs a scenario. Returns input errors (exit status 2) instead of throwing when the scenario asks for something
 * the machine cannot be built with; every other outcome is a check that passed or failed.
 */
export function runScenario(s: Scenario, opts: RunOptions = {}): RunReport {
  const cfg = {
    ram: s.machine.ram,
    cpus: s.machine.cpus,
    paBits: s.machine.paBits,
    profile: s.machine.profile,
    hypPool: s.machine.hypPool,
    tlb: opts.tlb ?? s.machine.tlb,
  };
  const cfgErrors = validateMachineConfig(cfg).map((e) => `${s.file}: $.machine: ${e}`);
  const report: RunReport = { file: s.file, name: s.name, steps: [], passed: 0, failed: 0, inputErrors: cfgErrors };
  if (cfgErrors.length > 0) return report;
  const events: TraceEvent[] = [];
  const m = createMachine({ ...cfg, ...(opts.trace === true ? { onEvent: (e: TraceEvent) => events.push(e) } : {}) });
  report.inputErrors.push(...preflight(m, s));
  if (report.inputErrors.length > 0) return report;

  let invariants = opts.invariants ?? true;
  let passed = 0;
  let failed = 0;
  for (const st of s.steps) {
    events.length = 0;
    m.checkEveryHvc = invariants;
    const hvcsBefore = m.hvcCount;
    const checks: Check[] = [];
    const missing = missingVm(m, st);
    const result = missing === null ? runStep(m, st, checks) : { error: missing };
    if (opts.trace === true) m.flushHostTrace();
    if (missing !== null) checks.push({ what: 'vm', expected: 'created', actual: missing, pass: false });
    if (st.kind === 'set' && st.checkInvariants !== undefined) invariants = st.checkInvariants;
    if (m.hvcCount !== hvcsBefore && m.checkEveryHvc) {
      // Checked after every hypercall of the step (Machine.checkEveryHvc); report them here.
      const v = m.hvcViolations.splice(0);
      checks.push({ what: 'invariants', expected: 'hold after every hypercall', actual: v.length === 0 ? 'hold after every hypercall' : v.join('; '), pass: v.length === 0 });
    }
    if (st.kind === 'check_invariants') {
      const inv = m.checkInvariants();
      checks.push({ what: 'invariants', expected: 'hold', actual: inv.violations.length === 0 ? 'hold' : inv.violations.join('; '), pass: inv.violations.length === 0 });
      result.pages_checked = inv.pages;
    }
    for (const c of checks) if (c.pass) passed++;
    else failed++;
    const tr: StepTrace = {
      step: st.index,
      kind: st.kind,
      ...(st.comment !== undefined ? { comment: st.comment } : {}),
      result,
      checks,
      ...(opts.trace === true ? { events: events.slice() } : {}),
    };
    report.steps.push(tr);
  }
  return { ...report, passed, failed };
}

/**
 * Why a step cannot run: it names a VM whose `vm_create` failed, or a vCPU the VM does not have. The parser already
 * refused names never created and vCPU indices beyond the declared count; a failed creation is only known now.
 */
function missingVm(m: Machine, st: Step): string | null {
  const names: string[] = [];
  if ('name' in st && st.kind !== 'vm_create') names.push(st.name);
  if (st.kind === 'host_event') names.push(st.vm);
  if (st.kind === 'hvc' || st.kind === 'guest_hvc') for (const a of st.args) if (a.kind !== 'value' && a.kind !== 'pfn') names.push(a.vm);
  for (const n of names) if (!m.hasVm(n)) return `VM "${n}" does not exist (its vm_create failed)`;
  if (st.kind === 'expect_page' && st.guests !== undefined) for (const n of Object.keys(st.guests)) if (!m.hasVm(n)) return `VM "${n}" does not exist (its vm_create failed)`;
  return null;
}

function runStep(m: Machine, st: Step, checks: Check[]): Record<string, unknown> {
  switch (st.kind) {
    case 'hvc': {
      const r = m.hvc(st.cpu, st.fn, resolveArgs(m, st.args));
      checkRegs(checks, st.expect, r);
      return hvcResult(r);
    }
    case 'vm_create': {
      const r = m.createVm({ name: st.name, memory: st.memory, ipaBase: st.ipaBase, backingPa: st.backingPa, vcpus: st.vcpus, protected: st.protected });
      const res = r.ret === 0 ? 'ok' : 'error';
      const e = st.expect ?? { result: 'ok' as const };
      cmp(checks, 'result', e.result, res);
      cmp(checks, 'errno', e.errno, r.ret, errText);
      cmp(checks, 'handle', 'handle' in e ? e.handle : undefined, r.handle, hexNum);
      return { result: res, errno: errnoName(r.ret), handle: hexNum(r.handle) };
    }
    case 'vm_destroy':
      return okErr(checks, st.expect, m.destroyVm(st.name));
    case 'vcpu_load':
      return okErr(checks, st.expect, m.vcpuLoad(st.name, st.vcpu, st.cpu));
    case 'vcpu_put':
      return okErr(checks, st.expect, m.vcpuPut(st.name, st.cpu));
    case 'memcache_topup':
      return okErr(checks, st.expect, m.memcacheTopup(st.name, st.vcpu, st.pages));
    case 'guest_access': {
      const r = m.guestAccess(st.name, st.vcpu, st.ipa, st.access, {
        handle: st.handle,
        ...(st.cpu !== null ? { cpu: st.cpu } : {}),
        ...(st.value !== null ? { value: st.value } : {}),
      });
      const e = st.expect ?? { result: 'ok' as const };
      cmp(checks, 'result', e.result, r.result);
      cmp(checks, 'esr_el2', e.esrEl2, r.esrEl2, hexNum);
      cmp(checks, 'hpfar_el2', e.hpfarEl2, r.hpfarEl2, hexNum);
      cmp(checks, 'far_el2', e.farEl2, r.farEl2, hexNum);
      cmp(checks, 'errno', e.errno, r.errno, errText);
      cmp(checks, 'value', e.value, r.value, hexNum);
      cmp(checks, 'exits', e.exits, r.exits);
      return {
        result: r.result,
        esr_el2: hexNum(r.esrEl2),
        far_el2: hexNum(r.farEl2),
        hpfar_el2: hexNum(r.hpfarEl2),
        errno: errnoName(r.errno),
        value: hexNum(r.value),
        exits: r.exits,
      };
    }
    case 'handle_exit':
      return okErr(checks, st.expect, m.handleExit(st.name, st.vcpu, st.cpu ?? undefined));
    case 'guest_hvc': {
      const r = m.guestHvc(st.name, st.vcpu, st.fn, resolveArgs(m, st.args), st.cpu ?? undefined);
      checkRegs(checks, st.expect, r);
      return hvcResult(r);
    }
    case 'host_access': {
      const r = m.hostAccess(st.cpu, st.pa, st.access, st.value ?? 0);
      const e = st.expect ?? { result: 'ok' as const };
      cmp(checks, 'result', e.result, r.result);
      if ('value' in e) cmp(checks, 'value', e.value, r.value, hexNum);
      return { result: r.result, value: hexNum(r.value) };
    }
    case 'host_event': {
      const r = m.hostEvent(st.event, st.vm, st.ipa, st.pages);
      const res = r.ret === 0 ? 'ok' : 'error';
      const e = st.expect ?? { result: 'ok' as const };
      cmp(checks, 'result', e.result, res);
      cmp(checks, 'errno', e.errno, r.ret, errText);
      if ('migrated' in e) cmp(checks, 'migrated', e.migrated, r.migrated);
      if ('guestMapped' in e) cmp(checks, 'guest_mapped', e.guestMapped, r.guestMapped);
      return { result: res, errno: errnoName(r.ret), migrated: r.migrated, guest_mapped: r.guestMapped };
    }
    case 'expect_page': {
      const v = m.pageView(st.pa);
      cmp(checks, 'host', st.host, v.host);
      cmp(checks, 'hyp', st.hyp, v.hyp);
      if (st.guests !== undefined) for (const [g, s] of Object.entries(st.guests)) cmp(checks, `guests.${g}`, s, v.guests[g] ?? 'NOPAGE');
      cmp(checks, 'pinned', st.pinned, v.pinned);
      cmp(checks, 'owner', st.owner, v.owner);
      return { host: v.host, hyp: v.hyp, guests: v.guests, pinned: v.pinned, owner: v.owner };
    }
    case 'expect_vm': {
      const v = m.vmView(st.name);
      cmp(checks, 'exists', st.exists, v.exists);
      cmp(checks, 'handle', st.handle, v.handle, hexNum);
      cmp(checks, 'pinned_pages', st.pinnedPages, v.pinnedPages);
      cmp(checks, 'locked_pages', st.lockedPages, v.lockedPages);
      cmp(checks, 'mapped_pages', st.mappedPages, v.mappedPages);
      return { exists: v.exists, handle: hexNum(v.handle), pinned_pages: v.pinnedPages, locked_pages: v.lockedPages, mapped_pages: v.mappedPages };
    }
    case 'set': {
      const out: Record<string, unknown> = {};
      if (st.memlockLimit !== undefined) out.memlock_limit = m.setMemlockLimit(st.memlockLimit);
      if (st.hostAllocLimit !== undefined) out.host_alloc_limit = m.setHostAllocLimit(st.hostAllocLimit);
      if (st.checkInvariants !== undefined) out.check_invariants = st.checkInvariants;
      return out;
    }
    case 'check_invariants':
      return {};
    default:
      return assertNever(st, 'step');
  }
}

function okErr(checks: Check[], e: { result?: 'ok' | 'error'; errno?: number } | null, ret: number): Record<string, unknown> {
  const res = ret === 0 ? 'ok' : 'error';
  const exp = e ?? { result: 'ok' as const };
  cmp(checks, 'result', exp.result, res);
  cmp(checks, 'errno', exp.errno, ret, errText);
  return { result: res, errno: errnoName(ret) };
}
