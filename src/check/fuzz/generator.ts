/**
 * The fuzzer's step generator: from a seeded {@link Prng} and the live machine, the next scenario {@link Step} —
 * valid and hostile host hypercalls (unknown and pre-finalise ids, pfns inside and outside RAM, pages owned by the
 * hypervisor or a guest, unaligned and huge values, bogus handles, garbage in every register, memcaches whose pages
 * the host does not own), guest accesses and guest hypercalls, host accesses, VM create/destroy, vCPU load/put in
 * any order, and host memory events (munmap, NUMA balancing, compaction), over several VMs and vCPUs.
 *
 * The generator only reads the machine (which VMs exist, which vCPU is loaded where, the PAs of host structs); every
 * choice comes from the PRNG, so a seed always gives the same sequence. Steps are self-contained scenario steps
 * (VM handles and struct pfns are symbolic), so any subsequence is still a scenario the shrinker can try.
 */

import { PAGE_SIZE } from '../../arch/addr.js';
import { HOST_VCPU, KVM_HOST_SMCCC_BASE } from '../../arch/smccc.js';
import type { Kvm } from '../../host/kvm.js';
import type { Machine } from '../../system.js';
import type { ArgSpec, ScenarioMachine, Step } from '../scenario-schema.js';
import type { ExecWorld, VmRecord } from './exec.js';
import type { Prng } from './prng.js';

/** A step before it gets its index. */
type Draft = Step extends infer S ? (S extends unknown ? Omit<S, 'index'> : never) : never;

/** Campaign shape: how many VMs may live at once and how many vCPUs each has at most. */
export interface GenConfig {
  /** VMs alive at most (1…8). */
  readonly vms: number;
  /** vCPUs per VM at most (1…4). */
  readonly vcpus: number;
}

/** RAM base of the fuzz machine. */
export const FUZZ_RAM_BASE = 0x4000_0000;
/** First PA of the VM backing slots. */
const SLOT_BASE = 0x4200_0000;
/** Bytes per VM backing slot (the largest guest memory). */
const SLOT_SIZE = 0x10_0000;
/** Backing slots (more than VMs, so a freed slot is not always reused at once). */
const SLOTS = 16;
/** Spare host pages (never VM backing, low in RAM where the host allocator, which hands out the top first, rarely reaches). */
const SPARE_BASE = 0x4100_0000;
const SPARE_PAGES = 256;
/** A second, small RAM region above a gap, so that pfns between them are not memory. */
const RAM2_BASE = 0x8000_0000;

/** The machine every fuzz campaign runs on: two RAM regions with a hole between them, `cpus` CPUs. */
export function fuzzMachine(cpus: number, profile: string): ScenarioMachine {
  return {
    ram: [
      { base: FUZZ_RAM_BASE, size: 64 * 2 ** 20 },
      { base: RAM2_BASE, size: 16 * 2 ** 20 },
    ],
    cpus,
    paBits: 40,
    profile,
    hypPool: null,
    tlb: true,
  };
}

/** Kernel names of the memory-management hypercalls the generator aims at most. */
const MEM_HCALLS = [
  '__pkvm_host_share_hyp',
  '__pkvm_host_unshare_hyp',
  '__pkvm_host_reclaim_page',
  '__pkvm_host_map_guest',
] as const;

/** Hypercalls that take a handle first. */
const HANDLE_HCALLS = ['__pkvm_teardown_vm', '__pkvm_vcpu_load', '__pkvm_init_vcpu'] as const;

/** Guest services (`GuestHcall` names) the guest hypercall action uses. */
const GUEST_FNS = ['MEM_SHARE', 'MEM_UNSHARE', 'HYP_MEMINFO'] as const;

/** Kinds of action, with their weights (per mille-ish; zero-weight kinds are skipped). */
const Action = {
  VM_CREATE: 0,
  VM_DESTROY: 1,
  VCPU_LOAD: 2,
  VCPU_PUT: 3,
  GUEST_ACCESS: 4,
  HANDLE_EXIT: 5,
  GUEST_HVC: 6,
  HOST_ACCESS: 7,
  HOST_EVENT: 8,
  HVC_MEM: 9,
  HVC_HOSTILE: 10,
  MEMCACHE_TOPUP: 11,
  HOSTILE_MEMCACHE: 12,
  MAP_GUEST: 13,
} as const;
type Action = (typeof Action)[keyof typeof Action];

/** The generator's bookkeeping of one VM. */
interface GenVm {
  readonly rec: VmRecord;
  readonly slot: number;
  kvm: Kvm | null;
}

/** Generates the steps of one campaign. */
export class StepGenerator {
  private readonly rnd: Prng;
  private readonly cfg: GenConfig;
  private readonly m: Machine;
  private readonly w: ExecWorld;
  private readonly vms: GenVm[] = [];
  private readonly slotUsed: boolean[] = new Array<boolean>(SLOTS).fill(false);
  private readonly pending: Step[] = [];
  private nextName = 0;
  private index = 0;
  private readonly weights = new Array<number>(14).fill(0);
  private readonly hcallNames: readonly string[];
  private readonly minPostInit: number;

  /** @param w the executor's world, updated as the runner executes the generated steps. */
  constructor(rnd: Prng, cfg: GenConfig, m: Machine, w: ExecWorld) {
    this.rnd = rnd;
    this.cfg = cfg;
    this.m = m;
    this.w = w;
    this.hcallNames = m.profile.names;
    this.minPostInit = m.profile.minPostInit;
  }

  /** The next step. */
  next(): Step {
    const queued = this.pending.shift();
    if (queued !== undefined) return { ...queued, index: this.index++ };
    this.refresh();
    const live = this.vms;
    const wts = this.weights;
    const nLive = live.length;
    wts[Action.VM_CREATE] = nLive < this.cfg.vms ? (nLive === 0 ? 100 : 3) : 0;
    wts[Action.VM_DESTROY] = nLive > 0 ? 1 : 0;
    wts[Action.VCPU_LOAD] = nLive > 0 ? 4 : 0;
    wts[Action.VCPU_PUT] = nLive > 0 ? 4 : 0;
    wts[Action.GUEST_ACCESS] = nLive > 0 ? 30 : 0;
    wts[Action.HANDLE_EXIT] = nLive > 0 ? 2 : 0;
    wts[Action.GUEST_HVC] = nLive > 0 ? 6 : 0;
    wts[Action.HOST_ACCESS] = 14;
    wts[Action.HOST_EVENT] = nLive > 0 ? 2 : 0;
    wts[Action.HVC_MEM] = 14;
    wts[Action.HVC_HOSTILE] = 6;
    wts[Action.MEMCACHE_TOPUP] = nLive > 0 ? 2 : 0;
    wts[Action.HOSTILE_MEMCACHE] = nLive > 0 ? 1 : 0;
    wts[Action.MAP_GUEST] = nLive > 0 ? 6 : 0;
    const a = this.rnd.weighted(wts) as Action;
    return { ...this.make(a), index: this.index++ } as Step;
  }

  /** Drops VMs the world saw destroyed or failing; finds the host `struct kvm` of new ones. */
  private refresh(): void {
    for (let i = 0; i < this.vms.length; i++) {
      const v = this.vms[i]!; // JUSTIFY: i < length.
      const seen = this.w.vms.get(v.rec.name);
      if (seen === undefined || !seen.created || seen.destroyed) {
        this.slotUsed[v.slot] = false;
        this.vms.splice(i--, 1);
        continue;
      }
      if (v.kvm === null) {
        const h = this.m.vmHandle(v.rec.name);
        v.kvm = this.m.host.vms.find((k) => k.handle === h && !k.destroyed) ?? null;
      }
    }
  }

  private make(a: Action): Draft {
    const r = this.rnd;
    switch (a) {
      case Action.VM_CREATE:
        return this.vmCreate();
      case Action.VM_DESTROY: {
        const v = r.pick(this.vms);
        // Teardown with a loaded vCPU is refused (-EBUSY): put them first most of the time.
        if (r.chance(0.8)) this.putAll(v);
        return { kind: 'vm_destroy', name: v.rec.name, expect: null };
      }
      case Action.VCPU_LOAD: {
        const v = r.pick(this.vms);
        return { kind: 'vcpu_load', name: v.rec.name, vcpu: r.below(v.rec.vcpus), cpu: r.below(this.m.cpus), expect: null };
      }
      case Action.VCPU_PUT: {
        const v = r.pick(this.vms);
        return { kind: 'vcpu_put', name: v.rec.name, cpu: r.below(this.m.cpus), expect: null };
      }
      case Action.GUEST_ACCESS: {
        const v = r.pick(this.vms);
        const acc = r.weighted([5, 5, 1]);
        return {
          kind: 'guest_access',
          name: v.rec.name,
          vcpu: r.below(v.rec.vcpus),
          cpu: r.chance(0.2) ? r.below(this.m.cpus) : null,
          ipa: this.guestIpa(v.rec),
          access: acc === 0 ? 'read' : acc === 1 ? 'write' : 'exec',
          handle: r.chance(0.9),
          value: acc === 1 ? r.u32() : null,
          expect: null,
        };
      }
      case Action.HANDLE_EXIT: {
        const v = r.pick(this.vms);
        return { kind: 'handle_exit', name: v.rec.name, vcpu: r.below(v.rec.vcpus), cpu: null, expect: null };
      }
      case Action.GUEST_HVC: {
        const v = r.pick(this.vms);
        const fn = r.chance(0.9) ? r.pick(GUEST_FNS) : '0x' + (r.chance(0.5) ? 0xc600_0000 + r.below(64) : r.u32()).toString(16);
        const args: ArgSpec[] = [val(this.guestIpa(v.rec))];
        if (r.chance(0.1)) args.push(val(r.below(2 ** 21)));
        return { kind: 'guest_hvc', name: v.rec.name, vcpu: r.below(v.rec.vcpus), cpu: null, fn, args, expect: null };
      }
      case Action.HOST_ACCESS: {
        const pa = this.interestingPa();
        // Stores into the host's struct kvm / kvm_vcpu would corrupt the host kernel's own memcache lists (host
        // self-harm, not an EL2 matter): the hostile-memcache action does that on purpose and restores them.
        const write = r.chance(0.4) && !this.isHostStruct(pa);
        return { kind: 'host_access', pa, cpu: r.below(this.m.cpus), access: write ? 'write' : 'read', value: write ? r.u32() : null, expect: null };
      }
      case Action.HOST_EVENT: {
        const v = r.pick(this.vms);
        const pages = v.rec.memory / PAGE_SIZE;
        const first = r.below(pages);
        const n = 1 + r.below(Math.min(4, pages - first));
        const ev = r.weighted([1, 3, 3]);
        return { kind: 'host_event', event: ev === 0 ? 'munmap' : ev === 1 ? 'numa_balance' : 'compaction', vm: v.rec.name, ipa: v.rec.ipaBase + first * PAGE_SIZE, pages: n, expect: null };
      }
      case Action.HVC_MEM: {
        const fn = r.pick(MEM_HCALLS);
        const map = fn === '__pkvm_host_map_guest';
        // Spare pages are where raw map requests land (see mapPfn): after a teardown they wait for a reclaim the
        // host kernel does not know to issue.
        const pfn = r.chance(0.25) ? { kind: 'pfn' as const, pa: SPARE_BASE + r.below(SPARE_PAGES) * PAGE_SIZE } : this.pfnArg();
        return { kind: 'hvc', fn, cpu: r.below(this.m.cpus), args: [map ? this.mapPfn(pfn) : pfn, ...(map ? [this.gfnArg()] : [])], expect: null };
      }
      case Action.HVC_HOSTILE:
        return this.hostileHvc();
      case Action.MEMCACHE_TOPUP: {
        const v = r.pick(this.vms);
        return { kind: 'memcache_topup', name: v.rec.name, vcpu: r.below(v.rec.vcpus), pages: r.chance(0.8) ? r.range(1, 8) : r.below(64), expect: null };
      }
      case Action.HOSTILE_MEMCACHE:
        return this.hostileMemcache();
      case Action.MAP_GUEST:
        return this.mapGuest();
      default:
        return a satisfies never;
    }
  }

  private vmCreate(): Draft {
    const r = this.rnd;
    const free: number[] = [];
    for (let i = 0; i < SLOTS; i++) if (!this.slotUsed[i]) free.push(i);
    const slot = r.pick(free);
    const name = `vm${this.nextName++}`;
    const memory = r.range(16, SLOT_SIZE / PAGE_SIZE) * PAGE_SIZE;
    const vcpus = r.range(1, this.cfg.vcpus);
    const prot = r.chance(0.5);
    const ipaBase = r.pick([0, 0x10_0000, 0x4000_0000]);
    this.slotUsed[slot] = true;
    const rec: VmRecord = { name, vcpus, memory, ipaBase, backingPa: SLOT_BASE + slot * SLOT_SIZE, protected: prot, created: false, destroyed: false };
    // The world records the VM when the runner executes the step; `refresh` follows its outcome.
    this.vms.push({ rec, slot, kvm: null });
    return { kind: 'vm_create', name, memory, ipaBase, backingPa: rec.backingPa, vcpus, protected: prot, expect: null };
  }

  private putAll(v: GenVm): void {
    const k = v.kvm;
    if (k === null) return;
    for (const c of k.vcpus) if (c.loadedOn >= 0) this.pending.push({ kind: 'vcpu_put', name: v.rec.name, cpu: c.loadedOn, expect: null, index: 0 });
    if (this.pending.length > 0) {
      // Keep the destroy after the puts.
      this.pending.push({ kind: 'vm_destroy', name: v.rec.name, expect: null, index: 0 });
    }
  }

  /** An IPA for a guest access: mostly inside guest memory, sometimes just outside or far away (MMIO). */
  private guestIpa(v: VmRecord): number {
    const r = this.rnd;
    const pages = v.memory / PAGE_SIZE;
    // A few hot pages, so that pages are revisited after state changes.
    const page = r.chance(0.6) ? r.below(Math.min(8, pages)) : r.below(pages);
    const off = r.below(PAGE_SIZE / 8) * 8;
    if (r.chance(0.95)) return v.ipaBase + page * PAGE_SIZE + off;
    return r.chance(0.5) ? v.ipaBase + v.memory + off : r.below(2 ** 28) * 8;
  }

  /** A host physical address: a guest's backing, host RAM, the hyp carve-out, a host struct, or no memory. */
  private interestingPa(): number {
    const r = this.rnd;
    const off = r.below(PAGE_SIZE / 8) * 8;
    switch (r.weighted([8, 3, 2, 2, 1])) {
      case 0: {
        if (this.vms.length === 0) return FUZZ_RAM_BASE + r.below(16 * 256) * PAGE_SIZE + off;
        const v = r.pick(this.vms).rec;
        return v.backingPa + r.below(Math.min(8, v.memory / PAGE_SIZE)) * PAGE_SIZE + off;
      }
      case 1:
        return FUZZ_RAM_BASE + r.below(64 * 256) * PAGE_SIZE + off;
      case 2: {
        const hyp = this.m.hyp;
        return (hyp.carveoutPfn + r.below(hyp.carveoutPages)) * PAGE_SIZE + off;
      }
      case 3: {
        const v = this.vms.length > 0 ? r.pick(this.vms) : null;
        if (v === null || v.kvm === null) return FUZZ_RAM_BASE + off;
        return r.chance(0.5) ? v.kvm.structPa + off : this.m.hostVcpuPa(v.rec.name, r.below(v.rec.vcpus)) + off;
      }
      default:
        return r.chance(0.5) ? 0x6000_0000 + r.below(1024) * PAGE_SIZE : r.below(2 ** 20) * PAGE_SIZE;
    }
  }

  /** A pfn argument: mostly meaningful pages (symbolic for host structs), sometimes garbage. */
  private pfnArg(): ArgSpec {
    const r = this.rnd;
    const c = r.weighted([12, 2, 2, 2]);
    if (c === 0) {
      const pa = this.interestingPa();
      return { kind: 'pfn', pa: pa - (pa % PAGE_SIZE) };
    }
    if (c === 1 && this.vms.length > 0) {
      const v = r.pick(this.vms).rec;
      return r.chance(0.5) ? { kind: 'kvm_pfn', vm: v.name } : { kind: 'vcpu_pfn', vm: v.name, vcpu: r.below(v.vcpus) };
    }
    if (c === 2) return { kind: 'value', v: { lo: r.u32(), hi: r.chance(0.5) ? r.u32() : 0 } };
    return val(r.below(2 ** 20));
  }

  /** A gfn argument: inside a guest's memory, or garbage. */
  private gfnArg(): ArgSpec {
    const r = this.rnd;
    if (this.vms.length > 0 && r.chance(0.85)) {
      const v = r.pick(this.vms).rec;
      return val(Math.floor(this.guestIpa(v) / PAGE_SIZE));
    }
    return r.chance(0.5) ? val(r.below(2 ** 28)) : { kind: 'value', v: { lo: r.u32(), hi: r.u32() } };
  }

  /** `__pkvm_host_map_guest` on the CPU where a vCPU is loaded (else on any CPU: -EINVAL). */
  private mapGuest(): Draft {
    const r = this.rnd;
    const v = r.pick(this.vms);
    let cpu = r.below(this.m.cpus);
    const k = v.kvm;
    if (k !== null) {
      const loaded = k.vcpus.find((c) => c.loadedOn >= 0);
      if (loaded !== undefined) cpu = loaded.loadedOn;
      else if (r.chance(0.7)) {
        this.pending.push({ kind: 'hvc', fn: '__pkvm_host_map_guest', cpu, args: [this.backingPfn(v), val(Math.floor(this.guestIpa(v.rec) / PAGE_SIZE))], expect: null, index: 0 });
        return { kind: 'vcpu_load', name: v.rec.name, vcpu: r.below(v.rec.vcpus), cpu, expect: null };
      }
    }
    return { kind: 'hvc', fn: '__pkvm_host_map_guest', cpu, args: [this.backingPfn(v), val(Math.floor(this.guestIpa(v.rec) / PAGE_SIZE))], expect: null };
  }

  /** A pfn of some VM's backing memory (often a different VM's, or one already in use). */
  private backingPfn(v: GenVm): ArgSpec {
    const r = this.rnd;
    const u = r.chance(0.7) ? v : r.pick(this.vms);
    const pages = u.rec.memory / PAGE_SIZE;
    return this.mapPfn({ kind: 'pfn', pa: u.rec.backingPa + r.below(Math.min(8, pages)) * PAGE_SIZE });
  }

  /**
   * The pfn of a raw `__pkvm_host_map_guest`: a page the host owns but has not pinned for a guest yet (a VMM page
   * not faulted in) is replaced by a spare host page. Mapping such a page behind host KVM's back corrupts only the
   * host kernel's own bookkeeping (its VMM later frees a page a guest maps), which the host model does not survive;
   * EL2's answer (success: the host owns the page) is the same for the spare page. Pages the host does not own
   * (donated, shared, hyp) are kept: EL2 must refuse them.
   */
  private mapPfn(a: ArgSpec): ArgSpec {
    if (a.kind !== 'pfn' || a.pa < SLOT_BASE || a.pa >= SLOT_BASE + SLOTS * SLOT_SIZE) return a;
    if (this.m.hyp.hostState(a.pa) !== 0 /* OWNED */) return a;
    return { kind: 'pfn', pa: SPARE_BASE + this.rnd.below(SPARE_PAGES) * PAGE_SIZE };
  }

  private isHostStruct(pa: number): boolean {
    const page = pa - (pa % PAGE_SIZE);
    for (const k of this.m.host.vms) {
      if (k.structPa - (k.structPa % PAGE_SIZE) === page) return true;
      for (const c of k.vcpus) if (c.structPa - (c.structPa % PAGE_SIZE) === page) return true;
    }
    return false;
  }

  /** The host points a vCPU's memcache at a page it does not own, then asks EL2 to use it. */
  private hostileMemcache(): Draft {
    const r = this.rnd;
    const v = r.pick(this.vms);
    const vcpu = r.below(v.rec.vcpus);
    const structPa = this.m.hostVcpuPa(v.rec.name, vcpu);
    const hyp = this.m.hyp;
    // A page the host does not own (EL2 must refuse to admit it): the hyp carve-out, a host struct EL2 pinned
    // (shared), or a guest page already donated or shared. A VMM page the host still owns would be admitted, which
    // is correct and only hurts the host.
    let victim = (hyp.carveoutPfn + r.below(hyp.carveoutPages)) * PAGE_SIZE;
    const c = r.below(3);
    if (c === 1 && v.kvm !== null) victim = v.kvm.structPa - (v.kvm.structPa % PAGE_SIZE);
    else if (c === 2) {
      const u = this.vms[r.below(this.vms.length)]!.rec; // JUSTIFY: index below length.
      const pa = u.backingPa + r.below(Math.min(8, u.memory / PAGE_SIZE)) * PAGE_SIZE;
      if (hyp.hostState(pa) !== 0 /* OWNED */) victim = pa;
    }
    const cpu = r.below(this.m.cpus);
    // The host kernel's own list is restored afterwards: host KVM trusts it (a corrupted one crashes the host, not
    // EL2), and what is under test is EL2's admission of what the host offered.
    const c8 = { lo: 0, hi: 0 };
    this.m.mem.read64(structPa + HOST_VCPU.MC_HEAD, c8);
    const head = c8.hi * 2 ** 32 + c8.lo;
    this.m.mem.read64(structPa + HOST_VCPU.MC_NR, c8);
    const nr = c8.lo;
    this.pending.push({ kind: 'host_access', pa: structPa + HOST_VCPU.MC_NR, cpu, access: 'write', value: r.range(1, 4), expect: null, index: 0 });
    this.pending.push({ kind: 'vcpu_load', name: v.rec.name, vcpu, cpu, expect: null, index: 0 });
    this.pending.push({ kind: 'hvc', fn: '__pkvm_host_map_guest', cpu, args: [this.backingPfn(v), val(Math.floor(this.guestIpa(v.rec) / PAGE_SIZE))], expect: null, index: 0 });
    this.pending.push({ kind: 'host_access', pa: structPa + HOST_VCPU.MC_HEAD, cpu, access: 'write', value: head, expect: null, index: 0 });
    this.pending.push({ kind: 'host_access', pa: structPa + HOST_VCPU.MC_NR, cpu, access: 'write', value: nr, expect: null, index: 0 });
    return { kind: 'host_access', pa: structPa + HOST_VCPU.MC_HEAD, cpu, access: 'write', value: victim, expect: null };
  }

  /** Unknown, pre-finalise and handle-taking hypercalls with garbage in every register. */
  private hostileHvc(): Draft {
    const r = this.rnd;
    const cpu = r.below(this.m.cpus);
    const garbage = (): ArgSpec => ({ kind: 'value', v: { lo: r.u32(), hi: r.chance(0.5) ? r.u32() : 0 } });
    const nArgs = r.below(8);
    const args: ArgSpec[] = [];
    switch (r.below(5)) {
      case 0: {
        // Unknown id: past the table, or with the high half set, or not a KVM id at all.
        const id = r.chance(0.5) ? KVM_HOST_SMCCC_BASE + this.hcallNames.length + r.below(0x100) : r.u32();
        for (let i = 0; i < nArgs; i++) args.push(garbage());
        return { kind: 'hvc', fn: '0x' + (id >>> 0).toString(16), cpu, args, expect: null };
      }
      case 1: {
        // Pre-finalise ids are closed once protected mode is initialised.
        const fn = this.hcallNames[r.below(this.minPostInit)]!; // JUSTIFY: minPostInit ≤ names.length.
        for (let i = 0; i < nArgs; i++) args.push(garbage());
        return { kind: 'hvc', fn, cpu, args, expect: null };
      }
      case 2: {
        const fn = r.pick(HANDLE_HCALLS);
        const v = this.vms.length > 0 && r.chance(0.3) ? r.pick(this.vms).rec : null;
        // Teardown of a live VM behind the host's back would leave host KVM inconsistent; bogus handles only.
        // (Bogus handles start past the last slot, 0x1000 + 255, so that they never name a live VM.)
        args.push(v !== null && fn !== '__pkvm_teardown_vm' ? { kind: 'handle', vm: v.name } : r.chance(0.5) ? val(0x1000 + 255 + r.below(300)) : garbage());
        for (let i = 1; i < nArgs; i++) args.push(r.chance(0.5) ? val(r.below(8)) : garbage());
        return { kind: 'hvc', fn, cpu, args, expect: null };
      }
      case 3: {
        // Any post-finalise call with garbage registers, except the ones that would desynchronise host KVM.
        const allowed = this.hcallNames.slice(this.minPostInit).filter((n) => !UNSAFE_RAW.has(n));
        const fn = r.pick(allowed);
        for (let i = 0; i < nArgs; i++) args.push(r.chance(0.5) ? this.pfnArg() : garbage());
        return { kind: 'hvc', fn, cpu, args, expect: null };
      }
      default: {
        // Memory calls with unaligned, huge or negative-looking counts and pfns.
        const fn = r.pick(MEM_HCALLS);
        args.push(r.chance(0.5) ? { kind: 'value', v: { lo: r.u32() | 0xfff, hi: 0xffff_ffff } } : garbage(), garbage(), garbage());
        return { kind: 'hvc', fn, cpu, args, expect: null };
      }
    }
  }
}

/**
 * Raw hypercalls the hostile generator leaves to the host KVM model: they change EL2's view of a VM or vCPU behind
 * the host kernel's back (teardown, init, load/put, run), which the real host never does to itself and which the
 * harness's host model does not survive. They are still issued with bogus handles (see `hostileHvc`).
 */
const UNSAFE_RAW = new Set<string>([
  '__pkvm_teardown_vm',
  '__pkvm_init_vm',
  '__pkvm_init_vcpu',
  '__pkvm_vcpu_load',
  '__pkvm_vcpu_put',
  '__kvm_vcpu_run',
]);

function val(n: number): ArgSpec {
  return { kind: 'value', v: { lo: n >>> 0, hi: Math.floor(n / 2 ** 32) >>> 0 } };
}
