/**
 * Turns typed scenario steps (`check/scenario-schema.ts` {@link Step}) back into the JSON of a scenario file, so a
 * fuzzer reproducer is an ordinary scenario that `s2emu run` replays. The inverse of `parseScenario()` for the step
 * kinds the fuzzer generates: `parseScenario(JSON.stringify(scenarioJson(m, stepsJson)))` gives the same steps.
 */

import { u64ToBigInt } from '../../arch/bits.js';
import { errnoName } from '../../arch/errno.js';
import { assertNever } from '../../arch/assert.js';
import type { ArgSpec, ScenarioMachine, Step } from '../scenario-schema.js';

/** A JSON object of a scenario file. */
export type JsonObject = Record<string, unknown>;

const hex = (x: number): string => '0x' + x.toString(16);

/** An argument as the scenario writes it. */
export function argJson(a: ArgSpec): string {
  switch (a.kind) {
    case 'value':
      return '0x' + u64ToBigInt(a.v.lo >>> 0, a.v.hi >>> 0).toString(16);
    case 'handle':
      return `handle:${a.vm}`;
    case 'pfn':
      return `pfn:${hex(a.pa)}`;
    default: {
      // Host struct references: `kvm_pfn:<vm>`, `vcpu_pfn:<vm>:<i>` (and the PA forms where the format has them).
      const ref = a as { readonly kind: string; readonly vm: string; readonly vcpu?: number };
      return ref.vcpu === undefined ? `${ref.kind}:${ref.vm}` : `${ref.kind}:${ref.vm}:${ref.vcpu}`;
    }
  }
}

/** An `ok`/`error` expectation with its errno. */
export function okErrJson(ret: number): JsonObject {
  return ret === 0 ? { result: 'ok' } : { result: 'error', errno: errnoName(ret) };
}

/**
 * The JSON of one step (the kind key first, as the format requires), with `expect` when given. A step's own
 * `expect` is not copied: the caller states what the replay must observe.
 */
export function stepJson(st: Step, expect?: JsonObject): JsonObject {
  const o: JsonObject = stepBody(st);
  if (st.comment !== undefined) o.comment = st.comment;
  if (expect !== undefined) o.expect = expect;
  return o;
}

function stepBody(st: Step): JsonObject {
  switch (st.kind) {
    case 'hvc':
      return { hvc: st.fn, cpu: st.cpu, args: st.args.map(argJson) };
    case 'vm_create':
      return {
        vm_create: st.name,
        memory: hex(st.memory),
        ipa_base: hex(st.ipaBase),
        backing_pa: hex(st.backingPa),
        vcpus: st.vcpus,
        protected: st.protected,
      };
    case 'vm_destroy':
      return { vm_destroy: st.name };
    case 'vcpu_load':
      return { vcpu_load: st.name, vcpu: st.vcpu, cpu: st.cpu };
    case 'vcpu_put':
      return { vcpu_put: st.name, cpu: st.cpu };
    case 'memcache_topup':
      return { memcache_topup: st.name, vcpu: st.vcpu, pages: st.pages };
    case 'guest_access': {
      const o: JsonObject = { guest_access: st.name, vcpu: st.vcpu };
      if (st.cpu !== null) o.cpu = st.cpu;
      o.ipa = hex(st.ipa);
      o.access = st.access;
      if (!st.handle) o.handle = false;
      if (st.value !== null) o.value = hex(st.value);
      return o;
    }
    case 'handle_exit': {
      const o: JsonObject = { handle_exit: st.name, vcpu: st.vcpu };
      if (st.cpu !== null) o.cpu = st.cpu;
      return o;
    }
    case 'guest_hvc': {
      const o: JsonObject = { guest_hvc: st.name, vcpu: st.vcpu };
      if (st.cpu !== null) o.cpu = st.cpu;
      o.fn = st.fn;
      o.args = st.args.map(argJson);
      return o;
    }
    case 'host_access': {
      const o: JsonObject = { host_access: hex(st.pa), cpu: st.cpu, access: st.access };
      if (st.value !== null) o.value = hex(st.value);
      return o;
    }
    case 'host_event':
      return { host_event: st.event, vm: st.vm, ipa: hex(st.ipa), pages: st.pages };
    case 'expect_page':
      return { expect_page: hex(st.pa) };
    case 'expect_vm':
      return { expect_vm: st.name };
    case 'set': {
      const o: JsonObject = {};
      if (st.memlockLimit !== undefined) o.memlock_limit = st.memlockLimit;
      if (st.hostAllocLimit !== undefined) o.host_alloc_limit = st.hostAllocLimit;
      if (st.autoTopup !== undefined) o.auto_topup = st.autoTopup;
      if (st.checkInvariants !== undefined) o.check_invariants = st.checkInvariants;
      return { set: o };
    }
    case 'check_invariants':
      return { check_invariants: true };
    default:
      return assertNever(st, 'step');
  }
}

/** The `machine` object of a scenario file. */
export function machineJson(m: ScenarioMachine): JsonObject {
  const o: JsonObject = {
    ram: m.ram.map((r) => ({ base: hex(r.base), size: hex(r.size) })),
    cpus: m.cpus,
    pa_bits: m.paBits,
    profile: m.profile,
  };
  if (m.hypPool !== null) o.hyp_pool = { base: hex(m.hypPool.base), pages: m.hypPool.pages };
  o.tlb = m.tlb;
  return o;
}
