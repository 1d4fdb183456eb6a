/**
 * Transition coverage of a fuzz campaign (issue 4 §4): which (hypercall × page state before × outcome) combinations
 * of the memory-management hypercalls were exercised, and which descriptor transitions the break-before-make checker
 * saw (old entry class → new entry class, where a class is zero, the BBM `LOCKED` marker, an owner annotation, a
 * valid leaf or a table), each out of the combinations the model can reach. The reachable lists are derived from
 * the handlers' checks (el2/mem-protect.ts, el2/hcall.ts) and from the page-table library's write sequences
 * (pgtable/stage2.ts: every change goes break → make except software-bit and attribute updates in place).
 */

import { PAGE_SIZE } from '../../arch/addr.js';
import { errnoName } from '../../arch/errno.js';
import { KVM_HOST_SMCCC_BASE } from '../../arch/smccc.js';
import { PageState, pageStateName } from '../../el2/page-state.js';
import { HypPageFlag } from '../../el2/vmemmap.js';
import type { Machine } from '../../system.js';
import type { Step } from '../scenario-schema.js';
import type { ExecWorld, Outcome } from './exec.js';

/**
 * Reachable (hypercall | page state of the pfn argument before the call | outcome) triples. `not-memory` is a pfn
 * outside RAM (the 2022 engine sees it as NOPAGE to the host: -EPERM; past the IPA size: -ERANGE); `+pending` marks a page a torn-down guest released; `no-vcpu` a map request with no vCPU loaded on
 * the CPU.
 */
export const REACHABLE_HCALL: readonly string[] = [
  '__pkvm_host_share_hyp|OWNED|0',
  '__pkvm_host_share_hyp|SHARED_OWNED|-EPERM',
  '__pkvm_host_share_hyp|NOPAGE|-EPERM',
  '__pkvm_host_share_hyp|not-memory|-EPERM',
  '__pkvm_host_share_hyp|not-memory|-ERANGE',
  '__pkvm_host_unshare_hyp|SHARED_OWNED|0',
  '__pkvm_host_unshare_hyp|SHARED_OWNED|-EBUSY',
  '__pkvm_host_unshare_hyp|OWNED|-EPERM',
  '__pkvm_host_unshare_hyp|NOPAGE|-EPERM',
  '__pkvm_host_unshare_hyp|SHARED_OWNED|-EPERM',
  '__pkvm_host_unshare_hyp|not-memory|-EPERM',
  '__pkvm_host_reclaim_page|OWNED|0',
  '__pkvm_host_reclaim_page|NOPAGE+pending|0',
  '__pkvm_host_reclaim_page|SHARED_OWNED+pending|0',
  '__pkvm_host_reclaim_page|not-memory|-EPERM',
  '__pkvm_host_reclaim_page|NOPAGE|-EPERM',
  '__pkvm_host_reclaim_page|SHARED_OWNED|-EPERM',
  '__pkvm_host_map_guest|no-vcpu|-EINVAL',
  '__pkvm_host_map_guest|OWNED|0',
  '__pkvm_host_map_guest|SHARED_OWNED|-EPERM',
  '__pkvm_host_map_guest|NOPAGE|-EPERM',
  '__pkvm_host_map_guest|OWNED|-ENOMEM',
  '__pkvm_host_map_guest|not-memory|-EPERM',
  '__pkvm_host_map_guest|NOPAGE+pending|-EPERM',
  'unknown|-|NOT_SUPPORTED',
  'pre-finalise|-|NOT_SUPPORTED',
];

/** Descriptor classes for the transition table. */
const DESC_CLASSES = ['zero', 'locked', 'annotation', 'leaf', 'table'] as const;

/**
 * Reachable descriptor transitions (old → new). Every map, set-owner and table split breaks first (→ locked) and
 * then makes (locked →); unmap clears valid leaves, tables and annotations; software-bit and attribute updates
 * rewrite a leaf in place.
 */
export const REACHABLE_BBM: readonly string[] = [
  'zero→locked',
  'leaf→locked',
  'annotation→locked',
  'locked→leaf',
  'locked→annotation',
  'locked→table',
  'locked→zero',
  'leaf→leaf',
];

const MEM_CALLS = new Set(['__pkvm_host_share_hyp', '__pkvm_host_unshare_hyp', '__pkvm_host_reclaim_page', '__pkvm_host_map_guest']);

/** Precondition recorded before a hypercall runs. */
export interface CovPre {
  readonly fn: string;
  readonly state: string;
}

/** Coverage counters of one campaign. */
export class Coverage {
  /** Hypercall triples seen, with counts. */
  readonly hcalls = new Map<string, number>();
  /** Descriptor transitions seen, with counts. */
  readonly bbmTransitions = new Map<string, number>();
  /** Break-before-make checker violation kinds seen. */
  readonly bbmViolations = new Map<string, number>();
  private bbmSeen = 0;

  /** The precondition of an `hvc` step: the kernel name and the host state of its pfn argument. */
  before(m: Machine, st: Step, w: ExecWorld): CovPre | null {
    if (st.kind !== 'hvc') return null;
    const id = m.resolveHcall(st.fn);
    if (id === null) return null;
    const idx = id - KVM_HOST_SMCCC_BASE;
    const names = m.profile.names;
    const fn = idx >= 0 && idx < names.length ? (idx < m.profile.minPostInit ? 'pre-finalise' : names[idx]!) : 'unknown'; // JUSTIFY: idx < length.
    if (!MEM_CALLS.has(fn)) return { fn, state: '-' };
    if (fn === '__pkvm_host_map_guest' && m.hyp.cpus[st.cpu]?.loadedVcpu == null) return { fn, state: 'no-vcpu' };
    const a = st.args[0];
    let pfn = -1;
    if (a !== undefined && a.kind === 'value') pfn = a.v.hi === 0 ? a.v.lo : -1;
    else if (a !== undefined && a.kind === 'pfn') pfn = Math.floor(a.pa / PAGE_SIZE);
    else if (a !== undefined && 'vm' in a && w.known(a.vm) !== null) pfn = Math.floor(m.hostKvmPa(a.vm) / PAGE_SIZE);
    if (pfn < 0 || !m.mem.isRam(pfn * PAGE_SIZE)) return { fn, state: 'not-memory' };
    const pa = pfn * PAGE_SIZE;
    const s = m.hyp.hostState(pa);
    const pending = (m.hyp.pageFlags(pa) & HypPageFlag.PENDING_RECLAIM) !== 0 && s !== PageState.OWNED;
    return { fn, state: pageStateName(s) + (pending ? '+pending' : '') };
  }

  /** Records the outcome of an `hvc` step. */
  after(_m: Machine, st: Step, out: Outcome, pre: CovPre | null): void {
    if (st.kind !== 'hvc' || pre === null) return;
    let outcome: string;
    if (out.x0hi === 0xffff_ffff && out.x0lo === 0xffff_ffff) outcome = 'NOT_SUPPORTED';
    else if (out.x1hi === 0xffff_ffff && out.x1lo >= 0xffff_f001) outcome = errnoName(out.x1lo - 2 ** 32);
    else outcome = out.x1lo === 0 && out.x1hi === 0 ? '0' : 'value';
    const k = `${pre.fn}|${pre.state}|${outcome}`;
    this.hcalls.set(k, (this.hcalls.get(k) ?? 0) + 1);
  }

  /** Records a descriptor transition (called by the descriptor observer). */
  transition(oldLo: number, oldHi: number, newLo: number, newHi: number, level: number): void {
    const k = `${DESC_CLASSES[descClass(oldLo, oldHi, level)]}→${DESC_CLASSES[descClass(newLo, newHi, level)]}`;
    this.bbmTransitions.set(k, (this.bbmTransitions.get(k) ?? 0) + 1);
  }

  /** Records the break-before-make checker's new violations by kind. */
  bbm(m: Machine): void {
    const v = m.checker.violations;
    for (; this.bbmSeen < v.length; this.bbmSeen++) {
      const k = v[this.bbmSeen]!.kind; // JUSTIFY: index < length.
      this.bbmViolations.set(k, (this.bbmViolations.get(k) ?? 0) + 1);
    }
  }

  /** The report: reached and missing reachable combinations, and what else was seen. */
  report(): CoverageReport {
    const hMissing = REACHABLE_HCALL.filter((k) => !this.hcalls.has(k));
    const bMissing = REACHABLE_BBM.filter((k) => !this.bbmTransitions.has(k));
    return {
      hcalls: { reached: REACHABLE_HCALL.length - hMissing.length, reachable: REACHABLE_HCALL.length, missing: hMissing, seen: Object.fromEntries([...this.hcalls].sort()) },
      bbm: {
        reached: REACHABLE_BBM.length - bMissing.length,
        reachable: REACHABLE_BBM.length,
        missing: bMissing,
        seen: Object.fromEntries([...this.bbmTransitions].sort()),
        violations: Object.fromEntries(this.bbmViolations),
      },
    };
  }
}

/** What {@link Coverage.report} returns (JSON-ready). */
export interface CoverageReport {
  readonly hcalls: { reached: number; reachable: number; missing: string[]; seen: Record<string, number> };
  readonly bbm: { reached: number; reachable: number; missing: string[]; seen: Record<string, number>; violations: Record<string, number> };
}

/** 0 zero, 1 locked (invalid with bit 10), 2 owner annotation (other invalid), 3 leaf, 4 table. */
function descClass(lo: number, hi: number, level: number): number {
  if (lo === 0 && hi === 0) return 0;
  if ((lo & 1) === 0) return (lo & 0x400) !== 0 ? 1 : 2;
  return level < 3 && (lo & 2) !== 0 ? 4 : 3;
}
