/**
 * Executes one scenario {@link Step} against a {@link Machine} the way `s2emu run` does (`check/scenario-run.ts`),
 * without the expectation bookkeeping, filling a reusable {@link Outcome}. It also knows which steps are meaningful
 * in a sequence — a VM name must come from an earlier successful `vm_create`, a vCPU index must exist — so that the
 * shrinker can drop steps freely: a step that has become meaningless is reported `valid = false` and never reaches
 * the machine (the machine's API asserts on such misuse, and an assertion there is an emulator-API error, not a
 * finding).
 */

import { PAGE_SIZE } from '../../arch/addr.js';
import { assertNever } from '../../arch/assert.js';
import type { U64 } from '../../mem/phys-mem.js';
import type { HvcResult, Machine } from '../../system.js';
import type { ArgSpec, Step } from '../scenario-schema.js';

/** What the executor knows of one VM of the sequence. */
export interface VmRecord {
  readonly name: string;
  readonly vcpus: number;
  readonly memory: number;
  readonly ipaBase: number;
  readonly backingPa: number;
  readonly protected: boolean;
  /** `vm_create` succeeded. */
  created: boolean;
  /** `vm_destroy` succeeded. */
  destroyed: boolean;
}

/** The VMs of a sequence, by name. */
export class ExecWorld {
  /** Every VM named by a `vm_create` so far (also the failed ones, so a name is never reused). */
  readonly vms = new Map<string, VmRecord>();

  /** The VM `name` when it was created and not destroyed, else null. */
  live(name: string): VmRecord | null {
    const r = this.vms.get(name);
    return r !== undefined && r.created && !r.destroyed ? r : null;
  }

  /** The VM `name` when it was created (destroyed or not), else null. */
  known(name: string): VmRecord | null {
    const r = this.vms.get(name);
    return r !== undefined && r.created ? r : null;
  }
}

/** The result of one step, overwritten by each {@link execStep}. */
export class Outcome {
  /** The step made sense in its sequence and ran. */
  valid = true;
  /** 0 or the errno of an ok/error step (`vm_create`, `vm_destroy`, `vcpu_*`, `memcache_topup`, `host_event`, …). */
  ret = 0;
  /** `ok` / `error` / `exit` / `abort`, as the step kind reports it. */
  result = 'ok';
  /** The value a read returned. */
  value = 0;
  /** x0 and x1 after a hypercall, as halves. */
  x0lo = 0;
  x0hi = 0;
  x1lo = 0;
  x1hi = 0;

  /** Resets the fields before a step. */
  reset(): void {
    this.valid = true;
    this.ret = 0;
    this.result = 'ok';
    this.value = 0;
    this.x0lo = 0;
    this.x0hi = 0;
    this.x1lo = 0;
    this.x1hi = 0;
  }
}

function resolveArgs(m: Machine, w: ExecWorld, args: readonly ArgSpec[]): U64[] | null {
  const out: U64[] = [];
  for (const a of args) {
    switch (a.kind) {
      case 'value':
        out.push({ lo: a.v.lo >>> 0, hi: a.v.hi >>> 0 });
        break;
      case 'handle':
        if (w.known(a.vm) === null) return null;
        out.push({ lo: m.vmHandle(a.vm) >>> 0, hi: 0 });
        break;
      case 'pfn':
        out.push({ lo: Math.floor(a.pa / PAGE_SIZE) >>> 0, hi: 0 });
        break;
      default: {
        // Host struct references (`kvm_pfn:<vm>`, `vcpu_pfn:<vm>:<i>` and their PA forms where the format has them).
        const ref = a as { readonly kind: string; readonly vm: string; readonly vcpu?: number };
        const r = w.known(ref.vm);
        if (r === null || (ref.vcpu !== undefined && ref.vcpu >= r.vcpus)) return null;
        const pa = ref.vcpu === undefined ? m.hostKvmPa(ref.vm) : m.hostVcpuPa(ref.vm, ref.vcpu);
        out.push(ref.kind.endsWith('_pfn') ? { lo: Math.floor(pa / PAGE_SIZE) >>> 0, hi: 0 } : { lo: pa >>> 0, hi: Math.floor(pa / 2 ** 32) >>> 0 });
        break;
      }
    }
  }
  return out;
}

function regsOut(out: Outcome, r: HvcResult): void {
  out.x0lo = r.x0.lo >>> 0;
  out.x0hi = r.x0.hi >>> 0;
  out.x1lo = r.x1.lo >>> 0;
  out.x1hi = r.x1.hi >>> 0;
}

function okErr(out: Outcome, ret: number): void {
  out.ret = ret;
  out.result = ret === 0 ? 'ok' : 'error';
}

/** True when `cpu` names a CPU of the machine. */
function cpuOk(m: Machine, cpu: number | null): boolean {
  return cpu === null || (Number.isInteger(cpu) && cpu >= 0 && cpu < m.cpus);
}

/**
 * Runs `st` on `m`, updating `w` and filling `out`. Sets `out.valid = false` (and runs nothing) when the step makes
 * no sense after the steps before it. Exceptions from the model propagate: the fuzz runner reports them.
 */
export function execStep(m: Machine, w: ExecWorld, st: Step, out: Outcome): void {
  out.reset();
  switch (st.kind) {
    case 'hvc': {
      if (!cpuOk(m, st.cpu) || m.resolveHcall(st.fn) === null) break;
      const a = resolveArgs(m, w, st.args);
      if (a === null) break;
      regsOut(out, m.hvc(st.cpu, st.fn, a));
      return;
    }
    case 'vm_create': {
      if (w.vms.has(st.name)) break;
      const r = m.createVm({ name: st.name, memory: st.memory, ipaBase: st.ipaBase, backingPa: st.backingPa, vcpus: st.vcpus, protected: st.protected });
      w.vms.set(st.name, {
        name: st.name,
        vcpus: st.vcpus,
        memory: st.memory,
        ipaBase: st.ipaBase,
        backingPa: st.backingPa,
        protected: st.protected,
        created: r.ret === 0,
        destroyed: false,
      });
      okErr(out, r.ret);
      return;
    }
    case 'vm_destroy': {
      const r = w.known(st.name);
      if (r === null) break;
      const ret = m.destroyVm(st.name);
      if (ret === 0) r.destroyed = true;
      okErr(out, ret);
      return;
    }
    case 'vcpu_load': {
      const r = w.known(st.name);
      if (r === null || st.vcpu >= r.vcpus || !cpuOk(m, st.cpu)) break;
      okErr(out, m.vcpuLoad(st.name, st.vcpu, st.cpu));
      return;
    }
    case 'vcpu_put': {
      if (w.known(st.name) === null || !cpuOk(m, st.cpu)) break;
      okErr(out, m.vcpuPut(st.name, st.cpu));
      return;
    }
    case 'memcache_topup': {
      const r = w.live(st.name);
      if (r === null || st.vcpu >= r.vcpus) break;
      okErr(out, m.memcacheTopup(st.name, st.vcpu, st.pages));
      return;
    }
    case 'guest_access': {
      const r = w.live(st.name);
      if (r === null || st.vcpu >= r.vcpus || !cpuOk(m, st.cpu) || st.ipa % 8 !== 0) break;
      const g = m.guestAccess(st.name, st.vcpu, st.ipa, st.access, {
        handle: st.handle,
        ...(st.cpu !== null ? { cpu: st.cpu } : {}),
        ...(st.value !== null ? { value: st.value } : {}),
      });
      out.result = g.result;
      out.ret = g.errno;
      out.value = g.value;
      return;
    }
    case 'handle_exit': {
      const r = w.live(st.name);
      if (r === null || st.vcpu >= r.vcpus || !cpuOk(m, st.cpu)) break;
      okErr(out, m.handleExit(st.name, st.vcpu, st.cpu ?? undefined));
      return;
    }
    case 'guest_hvc': {
      const r = w.live(st.name);
      if (r === null || st.vcpu >= r.vcpus || !cpuOk(m, st.cpu) || m.resolveGuestHcall(st.fn) === null) break;
      const a = resolveArgs(m, w, st.args);
      // The guest layer takes arguments below 2^53 (a JS integer); wider garbage is a host-hypercall matter.
      if (a === null || a.length > 3 || a.some((x) => x.hi >= 0x20_0000)) break;
      regsOut(out, m.guestHvc(st.name, st.vcpu, st.fn, a, st.cpu ?? undefined));
      return;
    }
    case 'host_access': {
      if (!cpuOk(m, st.cpu) || st.pa % 8 !== 0) break;
      const h = m.hostAccess(st.cpu, st.pa, st.access, st.value ?? 0);
      out.result = h.result;
      out.value = h.value;
      return;
    }
    case 'host_event': {
      const r = w.live(st.vm);
      if (r === null || st.ipa < r.ipaBase || st.ipa % PAGE_SIZE !== 0 || st.ipa + st.pages * PAGE_SIZE > r.ipaBase + r.memory) break;
      const e = m.hostEvent(st.event, st.vm, st.ipa, st.pages);
      okErr(out, e.ret);
      return;
    }
    case 'expect_page':
    case 'expect_vm':
    case 'check_invariants':
      return;
    case 'set':
      if (st.memlockLimit !== undefined) m.setMemlockLimit(st.memlockLimit);
      if (st.hostAllocLimit !== undefined) m.setHostAllocLimit(st.hostAllocLimit);
      return;
    default:
      return assertNever(st, 'step');
  }
  out.valid = false;
}
