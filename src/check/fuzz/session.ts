/**
 * One fuzzing session: a fresh {@link Machine} plus the oracles run after every step —
 *
 * - the ghost-state invariants (incrementally after each step, {@link IncrementalInvariants}; the full recomputation
 *   of `check/invariants.ts` every `fullEvery` steps and at the end), hypervisor warnings and break-before-make
 *   violations included;
 * - isolation: a host load or store that succeeds on a page the host's stage-2 says it does not own (NOPAGE); a
 *   guest access that succeeds where the guest's stage-2 maps nothing, or that read or wrote another page than the
 *   one mapped (a stale TLB entry); a page a protected guest wrote that reaches the host without being poisoned;
 * - any exception escaping the model (caught here, and only here, to be reported).
 *
 * Both the campaign (generated steps) and the shrinker's replays (given steps) run through {@link Session.apply}.
 */

import { PAGE_SIZE } from '../../arch/addr.js';
import { errnoName } from '../../arch/errno.js';
import { setInjectedBug, type Bug } from '../../arch/inject.js';
import { PageState } from '../../el2/page-state.js';
import type { U64 } from '../../mem/phys-mem.js';
import { newLeafOut } from '../../pgtable/types.js';
import { createMachine, type Machine } from '../../system.js';
import { hostViewOf } from '../invariants.js';
import type { ScenarioMachine, Step } from '../scenario-schema.js';
import { Coverage } from './coverage.js';
import { ExecWorld, Outcome, execStep, type VmRecord } from './exec.js';
import { IncrementalInvariants } from './incremental.js';
import type { JsonObject } from './step-json.js';

/** What kind of oracle failed. */
export const FailureKind = {
  INVARIANT: 'invariant',
  HOST_ISOLATION: 'host-isolation',
  GUEST_ISOLATION: 'guest-isolation',
  POISON: 'poison',
  EXCEPTION: 'exception',
} as const;
/** A kind of failure. */
export type FailureKind = (typeof FailureKind)[keyof typeof FailureKind];

/** A failure found after a step. */
export interface Failure {
  readonly kind: FailureKind;
  /** Position of the failing step in the sequence executed. */
  readonly at: number;
  /** First message (one line). */
  readonly message: string;
  /** Every message (invariants may report several). */
  readonly messages: readonly string[];
  /** What a replay must observe at the failing step for `s2emu run` to flag it, when an expectation can say it. */
  readonly expect: JsonObject | null;
  /** Steps to append after the failing one so that `s2emu run` sees the failure (probes, `check_invariants`). */
  readonly probes: readonly JsonObject[];
}

/** Options of a session. */
export interface SessionOptions {
  /** The planted bug (restored by {@link Session.close}). */
  readonly inject: Bug;
  /** Run the full invariant check every this many steps (0: never; the incremental check runs after every step). */
  readonly fullEvery: number;
  /** Record coverage. */
  readonly coverage: Coverage | null;
}

/** A secret a protected guest wrote into a page it owns: where, so its return to the host can be checked. */
interface Secret {
  readonly word: number;
}

const hex = (x: number): string => '0x' + x.toString(16);

/** Reduces a message to its shape (numbers elided), to tell whether two failures are the same. */
export function failureSignature(f: Pick<Failure, 'kind' | 'message'>): string {
  return f.kind + ':' + f.message.replace(/0x[0-9a-f]+/gi, '#').replace(/[0-9]+/g, '#').replace(/\bvm#/g, 'vm');
}

/**
 * Removes the one invariant that is the host kernel's contract rather than EL2's: "every guest leaf is backed by a
 * page the host has pinned". The fuzzer plays a hostile host that issues `__pkvm_host_map_guest` on pages it never
 * pinned; EL2 has no way to know about host pins, and isolation does not depend on them.
 */
export function dropHostContract(msgs: string[]): void {
  for (let i = 0; i < msgs.length; i++) if (msgs[i]!.endsWith('which the host has not pinned')) msgs.splice(i--, 1); // JUSTIFY: i < length.
}

/** A machine with oracles. */
export class Session {
  /** The machine. */
  readonly m: Machine;
  /** The executor's view of the VMs. */
  readonly world = new ExecWorld();
  /** The outcome of the last step. */
  readonly out = new Outcome();
  /** Steps applied. */
  steps = 0;
  /** Steps that made no sense in their sequence (replays only). */
  skipped = 0;
  private readonly inc: IncrementalInvariants;
  private readonly opts: SessionOptions;
  private readonly prevBug: Bug;
  private readonly secrets = new Map<number, Secret>();
  private readonly msgs: string[] = [];
  private readonly leaf = newLeafOut();
  private readonly cell: U64 = { lo: 0, hi: 0 };
  private queued = false;

  /** Builds the machine of `machine` and plants `opts.inject`. */
  constructor(machine: ScenarioMachine, opts: SessionOptions) {
    this.opts = opts;
    this.prevBug = setInjectedBug(opts.inject);
    this.m = createMachine({ ram: machine.ram, cpus: machine.cpus, paBits: machine.paBits, profile: machine.profile, hypPool: machine.hypPool, tlb: machine.tlb });
    this.inc = new IncrementalInvariants(this.m);
    this.inc.transitions = opts.coverage;
    // The boot state is checked once, in full: it is what every later incremental check builds on.
    const boot = this.m.checkInvariants().violations;
    const msgs: string[] = [];
    this.inc.check(msgs);
    if (boot.length > 0 || msgs.length > 0) this.bootViolations = [...boot, ...msgs];
  }

  /** Violations already present after boot (a model bug independent of any step), or null. */
  readonly bootViolations: readonly string[] | null = null;

  /** Restores the bug selection that was in force before the session. */
  close(): void {
    setInjectedBug(this.prevBug);
  }

  /** Runs one step and the oracles. @returns the failure, or null. */
  apply(st: Step): Failure | null {
    const m = this.m;
    const at = this.steps++;
    let hostBefore: PageState = PageState.OWNED;
    if (st.kind === 'host_access') hostBefore = m.hyp.hostState(st.pa - (st.pa % PAGE_SIZE));
    // A vCPU with queued work (an exit reported and not handled) runs that first: its value checks do not apply.
    this.queued = st.kind === 'guest_access' && this.world.live(st.name) !== null && st.vcpu < (this.world.live(st.name) as VmRecord).vcpus && m.guests.vcpu(m.vmHandle(st.name), st.vcpu).pending > 0;
    const cov = this.opts.coverage;
    const covPre = cov !== null && st.kind === 'hvc' ? cov.before(m, st, this.world) : null;
    const out = this.out;
    try {
      execStep(m, this.world, st, out);
    } catch (e) {
      const err = e instanceof Error ? e : new Error(String(e));
      const where = (err.stack ?? '').split('\n').slice(1, 3).map((l) => l.trim()).join(' ← ');
      const message = `${err.name}: ${err.message}${where !== '' ? ` (at ${where})` : ''}`;
      return { kind: FailureKind.EXCEPTION, at, message, messages: [message], expect: null, probes: [] };
    }
    if (!out.valid) {
      this.skipped++;
      return null;
    }
    if (cov !== null) cov.after(m, st, out, covPre);
    let f: Failure | null = null;
    if (st.kind === 'host_access') f = this.hostOracle(st, at, hostBefore);
    else if (st.kind === 'guest_access') f = this.guestOracle(st, at);
    if (f !== null) return f;

    const msgs = this.msgs;
    msgs.length = 0;
    this.inc.check(msgs, st.kind === 'vm_create' || st.kind === 'vm_destroy' || st.kind === 'hvc', st.kind !== 'host_access' && st.kind !== 'host_event');
    if (msgs.length === 0 && this.opts.fullEvery > 0 && this.steps % this.opts.fullEvery === 0) msgs.push(...this.fullCheck());
    dropHostContract(msgs);
    if (msgs.length > 0) {
      return { kind: FailureKind.INVARIANT, at, message: msgs[0]!, messages: msgs.slice(), expect: null, probes: [{ check_invariants: true }] }; // JUSTIFY: length > 0.
    }
    f = this.poisonOracle(at);
    if (cov !== null) cov.bbm(m);
    // Host-side logs grow with every refused access; the oracles do not read them.
    m.host.log.oopses.length = 0;
    return f;
  }

  /** The full recomputation of `check/invariants.ts` (without the host-contract rule, see {@link dropHostContract}). */
  fullCheck(): string[] {
    const v = this.m.checkInvariants().violations.slice();
    dropHostContract(v);
    return v;
  }

  private hostOracle(st: Extract<Step, { kind: 'host_access' }>, at: number, before: PageState): Failure | null {
    if (this.out.result !== 'ok' || before !== PageState.NOPAGE) return null;
    const message = `host ${st.access} of PA ${hex(st.pa)} succeeded, but the host stage-2 says the host does not own the page (NOPAGE)`;
    return { kind: FailureKind.HOST_ISOLATION, at, message, messages: [message], expect: { result: 'abort' }, probes: [{ check_invariants: true }] };
  }

  private guestOracle(st: Extract<Step, { kind: 'guest_access' }>, at: number): Failure | null {
    const m = this.m;
    const out = this.out;
    if (out.result !== 'ok') return null;
    const handle = m.vmHandle(st.name);
    const leaf = this.leaf;
    if (!m.hyp.guestLeaf(handle, st.ipa, leaf) || (leaf.lo & 1) === 0) {
      const message = `guest ${st.name} ${st.access} at IPA ${hex(st.ipa)} succeeded, but its stage-2 maps nothing there`;
      return { kind: FailureKind.GUEST_ISOLATION, at, message, messages: [message], expect: null, probes: [{ check_invariants: true }] };
    }
    // A fetch leaves no value to compare.
    if (st.access === 'exec') return null;
    const size = 2 ** (12 + 9 * (3 - leaf.level));
    const oa = (leaf.hi & 0xffff) * 2 ** 32 + ((leaf.lo & 0xffff_f000) >>> 0);
    const pa = oa - (oa % size) + (st.ipa % size);
    const c = this.cell;
    m.mem.read64(pa, c);
    const inMem = c.hi * 2 ** 32 + c.lo;
    const expected = st.access === 'read' ? out.value : (st.value ?? 0);
    if (inMem !== expected && !this.queued) {
      const message = `guest ${st.name} ${st.access} at IPA ${hex(st.ipa)} ${st.access === 'read' ? `returned ${hex(out.value)}` : `stored ${hex(expected)}`}, but the page its stage-2 maps (PA ${hex(pa)}) holds ${hex(inMem)}: the access reached another page`;
      return {
        kind: FailureKind.GUEST_ISOLATION,
        at,
        message,
        messages: [message],
        expect: st.access === 'read' ? { result: 'ok', value: hex(inMem) } : null,
        probes: [{ check_invariants: true }],
      };
    }
    // A protected guest's data in a page it owns: it must not reach the host unpoisoned.
    if (st.access === 'write' && expected !== 0 && leaf.level === 3 && ((leaf.hi >>> (55 - 32)) & 3) === PageState.OWNED) {
      const rec = this.world.live(st.name);
      if (rec !== null && rec.protected) this.secrets.set(pa - (pa % PAGE_SIZE), { word: (pa % PAGE_SIZE) / 8 });
    }
    return null;
  }

  private poisonOracle(at: number): Failure | null {
    if (this.secrets.size === 0) return null;
    const m = this.m;
    const checked = this.inc.lastChecked;
    for (let i = 0; i < checked.length; i++) {
      const pa = checked[i]! * PAGE_SIZE; // JUSTIFY: i < length.
      const s = this.secrets.get(pa);
      if (s === undefined) continue;
      const h = hostViewOf(m.mem, m.hyp.hostPgt, pa).state;
      if (h === PageState.NOPAGE) continue;
      this.secrets.delete(pa);
      // Shared back by the guest itself (host SHARED_BORROWED): its contents are the guest's to show.
      if (h !== PageState.OWNED) continue;
      const c = this.cell;
      for (let w = 0; w < PAGE_SIZE / 8; w++) {
        m.mem.read64(pa + w * 8, c);
        if (c.lo === 0 && c.hi === 0) continue;
        const addr = pa + w * 8;
        const message = `page ${hex(pa)} went back to the host (OWNED) still holding a protected guest's data (${hex(c.hi * 2 ** 32 + c.lo)} at ${hex(addr)}): not poisoned`;
        return {
          kind: FailureKind.POISON,
          at,
          message,
          messages: [message],
          expect: null,
          probes: [{ host_access: hex(addr), cpu: 0, access: 'read', expect: { result: 'ok', value: '0x0' } }, { check_invariants: true }],
        };
      }
    }
    return null;
  }
}

/** The expectation a replay of `st` must meet to pass, from its recorded outcome (reproducer writing). */
export function observedExpect(st: Step, out: Outcome): JsonObject | undefined {
  switch (st.kind) {
    case 'vm_create':
    case 'vm_destroy':
    case 'vcpu_load':
    case 'vcpu_put':
    case 'memcache_topup':
    case 'handle_exit':
    case 'host_event':
      return out.ret === 0 ? { result: 'ok' } : { result: 'error', errno: errnoName(out.ret) };
    case 'guest_access':
      return { result: out.result };
    case 'host_access':
      return { result: out.result };
    default:
      return undefined;
  }
}
