/**
 * The composition root: builds one machine — RAM, CPUs (one `S2Mmu` each over a shared `Tlb`, the break-before-make
 * checker attached), the hypervisor at EL2 (`Hyp` over its carve-out, ABI profile `pkvm-2022` by default), the host
 * kernel with KVM at EL1 (wired to EL2 only through the `HvcConduit` and `HostMemPort` ports) and the guest vCPUs
 * (`GuestCpus`, the `GuestRunner` EL2 runs for `__kvm_vcpu_run`) — and offers the API a kernel developer's test
 * drives: create VMs, run guest accesses (with the host handling stage-2 exits as KVM_RUN does, or reporting the
 * first exit), issue raw hypercalls, read page states and descriptors, dump a guest stage-2, check invariants.
 *
 * Only this file, `check/` and `cli/` import across layers (DESIGN.md §2). Errors follow DESIGN.md §4: what the
 * host, the guest or EL2 refuse comes back as an errno or an exit, never as a throw; a throw here means the caller
 * misused the API (an unknown VM name, a configuration {@link validateMachineConfig} would have refused).
 */

import { PAGE_SIZE } from './arch/addr.js';
import { assert } from './arch/assert.js';
import { u64ToBigInt } from './arch/bits.js';
import { Err, type Ret } from './arch/errno.js';
import { ARMV8_0_PA40_FEATURES, paRangeOf, type CpuFeatures } from './arch/features.js';
import { RegFile } from './arch/regs.js';
import { GuestHcall, SmcccRet, hcallFuncId, hcallName, KVM_HOST_SMCCC_BASE, PROFILES, type AbiProfileName, type HcallProfile } from './arch/smccc.js';
import { checkInvariants as checkGhost, walkTable, type InvariantReport } from './check/invariants.js';
import { handleHostHcall } from './el2/hcall.js';
import type { Hyp } from './el2/hyp.js';
import { handleHostMemAbort, HostAbortResult } from './el2/mem-protect.js';
import { PageState, pageStateName, PkvmId } from './el2/page-state.js';
import { createHyp, hostS2PgtablePages } from './el2/setup.js';
import { GuestCpus } from './guest/vcpu.js';
import { kvmArchVcpuIoctlRun, KvmExit, KvmRun } from './host/arm.js';
import { migratePage, MigrateReason } from './host/gup.js';
import { KvmHost, type Kvm, type KvmVcpu } from './host/kvm.js';
import { GuestAbortInfo, GuestAbortResult, AbortOutcome, kvmHandleGuestAbort, readGuestAbort } from './host/mmu.js';
import type { HostMemPort, HvcConduit } from './host/ports.js';
import { Mm, VmaKind } from './host/vmm-mem.js';
import { FLAT_MAX_BYTES, PhysMem, type U64 } from './mem/phys-mem.js';
import { BbmChecker } from './mmu/bbm-check.js';
import { S2Mmu } from './mmu/s2-mmu.js';
import { AccessKind } from './mmu/s2-walk.js';
import { Tlb } from './mmu/tlb.js';
import { WalkResult } from './mmu/walk-result.js';
import { dumpStage2 as linuxDump } from './pgtable/dump.js';
import { newLeafOut } from './pgtable/types.js';
import { kvmPgtableGetLeaf } from './pgtable/walk.js';

/** A machine description. Addresses and sizes are bytes, page aligned. */
export interface MachineConfig {
  /** RAM regions. */
  readonly ram: readonly { readonly base: number; readonly size: number }[];
  /** Physical CPUs; default 2. */
  readonly cpus?: number;
  /** Physical address bits (PARange) of every CPU: 32, 36, 40, 42, 44 or 48; default 40. Also the guests' IPA size. */
  readonly paBits?: number;
  /** Hypercall ABI profile; default `pkvm-2022`. */
  readonly profile?: string;
  /** The hypervisor's carve-out; default {@link defaultHypPool}. */
  readonly hypPool?: { readonly base: number; readonly pages: number } | null;
  /** The stage-2 TLB is on (default) or off (capacity 0: every access walks). */
  readonly tlb?: boolean;
  /**
   * Entries the TLB holds when on; default {@link DEFAULT_TLB_ENTRIES}. `Infinity` never evicts (every translation
   * ever used stays cached, which maximises the chance of exposing a missing TLBI but grows with the guests).
   */
  readonly tlbEntries?: number;
  /** Receives every hypercall and exit as it happens (tracing); default none. */
  readonly onEvent?: (e: TraceEvent) => void;
  /**
   * RAM regions of up to 4 GiB are backed flat (default true: faster walks and accesses, about a millisecond to
   * create and release per GiB-sized region); false backs them sparsely (cheapest for many short-lived machines).
   * Behaviour is identical either way (`PhysMem`, src/mem/phys-mem.ts).
   */
  readonly flatRam?: boolean;
}

/** One traced machine event. */
export type TraceEvent =
  | { readonly ev: 'hvc'; readonly cpu: number; readonly fn: string; readonly args: readonly string[]; readonly x0: string; readonly x1: string }
  | { readonly ev: 'host_abort'; readonly cpu: number; readonly pa: string; readonly result: 'mapped' | 'retry' | 'injected' }
  | { readonly ev: 'kvm'; readonly vm: string; readonly step: string };

/** A hypercall's result registers x0…x3, as halves. */
export interface HvcResult {
  readonly x0: U64;
  readonly x1: U64;
  readonly x2: U64;
  readonly x3: U64;
}

/** What {@link Machine.createVm} needs. */
export interface VmSpec {
  /** A name for the VM, unique in the machine. */
  readonly name: string;
  /** Guest memory in bytes (page multiple). */
  readonly memory: number;
  /** IPA where guest memory starts. */
  readonly ipaBase: number;
  /** PA of the host pages backing guest memory (the VMM maps them at a fixed layout). */
  readonly backingPa: number;
  /** vCPUs. */
  readonly vcpus: number;
  /** A protected VM (pages donated) rather than a non-protected one (pages shared). */
  readonly protected: boolean;
}

/** Outcome of a guest access. */
export interface GuestAccessResult {
  /** `ok`: the access completed; `exit`: reported the first stage-2 exit (handle = false); `error`: KVM_RUN failed. */
  readonly result: 'ok' | 'exit' | 'error';
  /** ESR_EL2 of the last stage-2 exit (0 when none). */
  readonly esrEl2: number;
  /** FAR_EL2 of the last stage-2 exit. */
  readonly farEl2: number;
  /** HPFAR_EL2 of the last stage-2 exit. */
  readonly hpfarEl2: number;
  /** KVM_RUN's return value (0 or a negative errno). */
  readonly errno: number;
  /** Value loaded (read), or 0. */
  readonly value: number;
  /** Stage-2 exits the host handled during the access. */
  readonly exits: number;
  /** Why KVM_RUN returned (`idle` = the guest completed). */
  readonly exitReason: string;
}

/** The states of one physical page as each component sees it. */
export interface PageView {
  readonly host: 'OWNED' | 'SHARED_OWNED' | 'SHARED_BORROWED' | 'NOPAGE';
  readonly hyp: 'OWNED' | 'SHARED_OWNED' | 'SHARED_BORROWED' | 'NOPAGE';
  /** Guest name → view, for each guest that maps the page. */
  readonly guests: Record<string, 'OWNED' | 'SHARED_OWNED' | 'SHARED_BORROWED' | 'NOPAGE'>;
  /** The host kernel holds a pin on the page. */
  readonly pinned: boolean;
  /** Who owns it (pkvm.md §1.6); `none` for a page released by a torn-down guest and not yet reclaimed. */
  readonly owner: 'host' | 'hyp' | 'guest' | 'none';
}

/** A VM as the host and EL2 see it. */
export interface VmView {
  readonly exists: boolean;
  readonly handle: number;
  readonly pinnedPages: number;
  readonly lockedPages: number;
  readonly mappedPages: number;
}

/** Counters for summaries. */
export interface MachineStats {
  /** Guest stage-2 aborts the host handled. */
  readonly faults: number;
  /** Host hypercalls by kernel name (raw ids as hex). */
  readonly hvcs: Record<string, number>;
  /** Pages pinned by the host (total pins taken). */
  readonly pinned: number;
  /** Pages reclaimed at teardown. */
  readonly reclaimed: number;
  /** Host stage-2 aborts EL2 handled. */
  readonly hostAborts: number;
}

/**
 * Default TLB size: 65,536 entries — far more than hardware holds (a few thousand), so stale entries survive long
 * enough to expose a missing TLBI, while the memory stays bounded however much guests touch.
 */
export const DEFAULT_TLB_ENTRIES = 65_536;

/** Valid PARange sizes (ID_AA64MMFR0_EL1.PARange encodings 0…5). */
export const PA_BITS = [32, 36, 40, 42, 44, 48] as const;

/** x1…x4 of a host context as hex, for traces. */
function hvcArgs(x: Uint32Array): string[] {
  const out: string[] = [];
  for (let i = 1; i <= 4; i++) out.push('0x' + u64ToBigInt(x[2 * i]!, x[2 * i + 1]!).toString(16)); // JUSTIFY: i ≤ 4 < 31.
  return out;
}

/** Where the VMM maps VM number `i`'s memory (one 256 GiB window each, below 2^48). */
function hvaBase(i: number): number {
  return (i + 1) * 2 ** 38;
}

/**
 * The default hypervisor carve-out: the host stage-2 worst case (`host_s2_pgtable_pages()`) plus 1024 pages for
 * `hpool`, at the top of the highest RAM region (as `kvm_hyp_reserve()` carves it from memblock's top).
 */
export function defaultHypPool(ram: readonly { readonly base: number; readonly size: number }[]): { base: number; pages: number } {
  const mem = new PhysMem();
  for (const r of ram) mem.addRegion(r.base, r.size);
  const pages = hostS2PgtablePages(mem) + 1024;
  const top = ram.reduce((a, r) => (r.base + r.size > a.base + a.size ? r : a));
  return { base: top.base + top.size - pages * PAGE_SIZE, pages };
}

/** Checks a configuration; returns messages (empty when valid). Never throws. */
export function validateMachineConfig(cfg: MachineConfig): string[] {
  const errs: string[] = [];
  const cpus = cfg.cpus ?? 2;
  if (!Number.isInteger(cpus) || cpus < 1 || cpus > 64) errs.push(`cpus: expected 1…64, got ${cpus}`);
  const paBits = cfg.paBits ?? 40;
  if (!(PA_BITS as readonly number[]).includes(paBits)) errs.push(`pa_bits: expected one of ${PA_BITS.join(', ')}, got ${paBits}`);
  const profile = cfg.profile ?? 'pkvm-2022';
  if (!Object.prototype.hasOwnProperty.call(PROFILES, profile)) errs.push(`profile: expected one of ${Object.keys(PROFILES).join(', ')}, got "${profile}"`);
  if (cfg.ram.length === 0) errs.push('ram: expected at least one region');
  const te = cfg.tlbEntries ?? DEFAULT_TLB_ENTRIES;
  if (te !== Infinity && (!Number.isSafeInteger(te) || te < 1)) errs.push(`tlb_entries: expected a positive integer or Infinity, got ${te}`);
  const sorted = [...cfg.ram].sort((a, b) => a.base - b.base);
  for (let i = 0; i < sorted.length; i++) {
    const r = sorted[i]!; // JUSTIFY: i < length.
    if (!Number.isSafeInteger(r.base) || !Number.isSafeInteger(r.size) || r.base % PAGE_SIZE !== 0 || r.size % PAGE_SIZE !== 0 || r.size <= 0) {
      errs.push(`ram: region 0x${r.base.toString(16)} is not a non-empty page-aligned range`);
    }
    if (r.base + r.size > 2 ** paBits) errs.push(`ram: region 0x${r.base.toString(16)} ends beyond pa_bits (${paBits})`);
    const next = sorted[i + 1];
    if (next !== undefined && r.base + r.size > next.base) errs.push(`ram: region 0x${next.base.toString(16)} overlaps 0x${r.base.toString(16)}`);
  }
  if (errs.length > 0) return errs;
  const mem = new PhysMem();
  for (const r of cfg.ram) mem.addRegion(r.base, r.size);
  const need = hostS2PgtablePages(mem) + 16;
  const hp = cfg.hypPool ?? defaultHypPool(cfg.ram);
  const reg = mem.regionOf(hp.base);
  if (hp.base % PAGE_SIZE !== 0 || reg === null || hp.base + hp.pages * PAGE_SIZE > reg.end) {
    errs.push(`hyp_pool: expected a page-aligned range inside one RAM region, got 0x${hp.base.toString(16)} + ${hp.pages} pages`);
  } else if (hp.pages < need + 64) {
    errs.push(`hyp_pool: expected at least ${need + 64} pages (host stage-2 pool ${need} + hpool), got ${hp.pages}`);
  }
  return errs;
}

/** One VM of the machine. */
interface VmRec {
  readonly spec: VmSpec;
  readonly kvm: Kvm;
  readonly mm: Mm;
  readonly hva: number;
  readonly handle: number;
  /** PAs of the host `struct kvm` and `struct kvm_vcpu` pages (kept after teardown, for symbolic arguments). */
  readonly kvmPa: number;
  readonly vcpuPas: readonly number[];
  /** A stage-2 exit reported with `handle: false`, waiting for {@link Machine.handleExit}, per vCPU. */
  readonly pendingExit: (GuestAbortInfo | null)[];
  destroyed: boolean;
}

const READ = 'read';

/**
 * A machine: see the module comment. Build it with {@link createMachine}.
 */
export class Machine {
  /** Physical memory. */
  readonly mem: PhysMem;
  /** CPU features of every CPU. */
  readonly features: CpuFeatures;
  /** The shared stage-2 TLB. */
  readonly tlb: Tlb;
  /** The break-before-make checker (memory observer and TLB listener). */
  readonly checker: BbmChecker;
  /** Each CPU's stage-2 MMU. */
  readonly mmus: readonly S2Mmu[];
  /** The guest vCPUs. */
  readonly guests = new GuestCpus();
  /** The hypervisor. */
  readonly hyp: Hyp;
  /** The host kernel. */
  readonly host: KvmHost;
  /** The ABI profile. */
  readonly profile: HcallProfile;
  /** Number of CPUs. */
  readonly cpus: number;
  /** Host hypercalls issued (all paths). */
  hvcCount = 0;
  /** Invariant violations found by the per-hypercall check ({@link Machine.checkEveryHvc}), drained by the caller. */
  readonly hvcViolations: string[] = [];
  /** Check the invariants after every hypercall (tests, `s2emu run`); default false. */
  checkEveryHvc = false;

  private readonly vms = new Map<string, VmRec>();
  private vmCount = 0;
  private readonly onEvent: ((e: TraceEvent) => void) | null;
  /** Hypercalls by function number (the profiles number theirs below 256). */
  private readonly hvcByFn = new Uint32Array(256);
  private readonly hvcRaw = new Map<number, number>();
  private readonly kvmRun = new KvmRun();
  private readonly abortInfo = new GuestAbortInfo();
  private readonly abortResult = new GuestAbortResult();
  private readonly walk = new WalkResult();
  private readonly cell: U64 = { lo: 0, hi: 0 };
  private memlockLimit: number | null = null;
  private readonly balloon: number[] = [];
  private warnSeen = 0;
  private bbmSeen = 0;
  private readonly hostRam: readonly { base: number; size: number }[];

  /** @internal use {@link createMachine}. */
  constructor(cfg: MachineConfig) {
    const errs = validateMachineConfig(cfg);
    assert(errs.length === 0, `createMachine: ${errs.join('; ')}`);
    this.cpus = cfg.cpus ?? 2;
    const paBits = cfg.paBits ?? 40;
    this.onEvent = cfg.onEvent ?? null;
    this.mem = new PhysMem({ flatMaxBytes: cfg.flatRam === false ? 0 : FLAT_MAX_BYTES });
    for (const r of cfg.ram) this.mem.addRegion(r.base, r.size);
    this.features = { ...ARMV8_0_PA40_FEATURES, paBits, paRange: paRangeOf(paBits) };
    this.tlb = new Tlb({ capacity: cfg.tlb === false ? 0 : (cfg.tlbEntries ?? DEFAULT_TLB_ENTRIES) });
    this.checker = new BbmChecker(this.mem, this.tlb);
    const mmus: S2Mmu[] = [];
    for (let i = 0; i < this.cpus; i++) mmus.push(new S2Mmu(this.mem, this.features, { tlb: this.tlb, checker: this.checker }));
    this.mmus = mmus;
    const hp = cfg.hypPool ?? defaultHypPool(cfg.ram);
    this.hyp = createHyp({
      mem: this.mem,
      features: this.features,
      tlb: this.tlb,
      nrCpus: this.cpus,
      carveout: { base: hp.base, nrPages: hp.pages },
      mmus,
      runner: this.guests,
      profile: (cfg.profile ?? 'pkvm-2022') as AbiProfileName,
    });
    this.profile = this.hyp.profile;
    const hostRam: { base: number; size: number }[] = [];
    const cEnd = hp.base + hp.pages * PAGE_SIZE;
    for (const r of cfg.ram) {
      const end = r.base + r.size;
      if (end <= hp.base || r.base >= cEnd) hostRam.push({ base: r.base, size: r.size });
      else {
        if (r.base < hp.base) hostRam.push({ base: r.base, size: hp.base - r.base });
        if (end > cEnd) hostRam.push({ base: cEnd, size: end - cEnd });
      }
    }
    this.hostRam = hostRam;
    const conduit: HvcConduit = { hvc: (cpu, regs) => this.hvcEntry(cpu, regs) };
    const port: HostMemPort = { access: (cpu, pa, write) => this.hostStage2Access(cpu, pa, write) };
    this.host = new KvmHost({ mem: this.mem, port, conduit, profile: this.profile, ram: hostRam, ipaBits: paBits });
    // Boot: every CPU enables its host stage-2 (`__pkvm_prot_finalize`, arch/arm64/kvm/arm.c `do_pkvm_init()`).
    for (let c = 0; c < this.cpus; c++) {
      const r = this.host.hyp.call(c, '__pkvm_prot_finalize');
      assert(r === 0, `boot: __pkvm_prot_finalize on CPU ${c} returned ${r}`);
    }
  }

  /** The name of the ABI profile. */
  get profileName(): string {
    return this.profile.name;
  }

  // ---- Ports ------------------------------------------------------------------------------------------------

  /** `HVC #0` from the host on `cpu`: the host context is copied in, EL2 dispatches, x0…x3 are copied back. */
  private hvcEntry(cpu: number, regs: RegFile): void {
    const hc = this.hyp.cpus[cpu]!; // JUSTIFY: host CPUs are 0…cpus−1, validated at construction.
    const hx = hc.regs.x;
    const rx = regs.x;
    // x0…x7 in, x0…x3 out. Unrolled: V8 runs these straight-line copies about twice as fast as a loop, and this is
    // the per-hypercall cost of the model (hvc-dispatch benchmark).
    const idLo = rx[0]!; // JUSTIFY: RegFile.x has 62 elements; every index below is < 16.
    const idHi = rx[1]!;
    const args = this.onEvent !== null ? hvcArgs(rx) : null;
    hx[0] = idLo;
    hx[1] = idHi;
    hx[2] = rx[2]!;
    hx[3] = rx[3]!;
    hx[4] = rx[4]!;
    hx[5] = rx[5]!;
    hx[6] = rx[6]!;
    hx[7] = rx[7]!;
    hx[8] = rx[8]!;
    hx[9] = rx[9]!;
    hx[10] = rx[10]!;
    hx[11] = rx[11]!;
    hx[12] = rx[12]!;
    hx[13] = rx[13]!;
    hx[14] = rx[14]!;
    hx[15] = rx[15]!;
    handleHostHcall(this.hyp, hc);
    rx[0] = hx[0]!;
    rx[1] = hx[1]!;
    rx[2] = hx[2]!;
    rx[3] = hx[3]!;
    rx[4] = hx[4]!;
    rx[5] = hx[5]!;
    rx[6] = hx[6]!;
    rx[7] = hx[7]!;
    this.hvcCount++;
    const fn = idHi === 0 ? idLo - KVM_HOST_SMCCC_BASE : -1;
    if (fn >= 0 && fn < 256) this.hvcByFn[fn]++;
    else this.hvcRaw.set(idLo, (this.hvcRaw.get(idLo) ?? 0) + 1);
    if (args !== null) this.traceHvc(cpu, idLo, args, regs);
    if (this.checkEveryHvc) {
      const r = this.checkInvariants();
      for (const v of r.violations) if (this.hvcViolations.length < 100) this.hvcViolations.push(v);
    }
  }

  private traceHvc(cpu: number, idLo: number, args: string[], regs: RegFile): void {
    this.flushHostTrace(); // the host's steps leading to this call come first
    const fn = idLo - KVM_HOST_SMCCC_BASE;
    const name = (fn >= 0 && hcallName(this.profile, fn)) || '0x' + (idLo >>> 0).toString(16);
    (this.onEvent as (e: TraceEvent) => void)({
      ev: 'hvc',
      cpu,
      fn: name,
      args,
      x0: '0x' + u64ToBigInt(regs.lo(0), regs.hi(0)).toString(16),
      x1: '0x' + u64ToBigInt(regs.lo(1), regs.hi(1)).toString(16),
    });
  }

  /**
   * A host access checked by the host stage-2 on `cpu`'s MMU: a translation or permission fault traps to EL2's
   * `handle_host_mem_abort`, which idmaps the page (retry) or injects an abort (refused).
   */
  private hostStage2Access(cpu: number, pa: number, write: boolean): boolean {
    const mmu = this.mmus[cpu]!; // JUSTIFY: host CPUs are 0…cpus−1.
    const access = write ? AccessKind.WRITE : AccessKind.READ;
    for (let attempt = 0; attempt < 4; attempt++) {
      if (mmu.translatePa(pa, access, 0, this.walk) === 0) return true;
      const r = handleHostMemAbort(this.hyp, pa);
      if (this.onEvent !== null) {
        this.onEvent({ ev: 'host_abort', cpu, pa: '0x' + pa.toString(16), result: r === HostAbortResult.MAPPED ? 'mapped' : r === HostAbortResult.RETRY ? 'retry' : 'injected' });
      }
      if (r === HostAbortResult.INJECTED) return false;
    }
    return false;
  }

  // ---- Hypercalls -------------------------------------------------------------------------------------------

  /** The x0 of a hypercall given by kernel name (of the profile) or raw id (`0xc600000d`), or null. */
  resolveHcall(fn: string): number | null {
    if (/^0x[0-9a-fA-F]{1,8}$/.test(fn)) return Number(fn) >>> 0;
    return hcallFuncId(this.profile, fn);
  }

  /** The x0 of a guest service (`HYP_MEMINFO`, `MEM_SHARE`, `MEM_UNSHARE`) or raw id, or null. */
  resolveGuestHcall(fn: string): number | null {
    if (/^0x[0-9a-fA-F]{1,8}$/.test(fn)) return Number(fn) >>> 0;
    return Object.prototype.hasOwnProperty.call(GuestHcall, fn) ? GuestHcall[fn as keyof typeof GuestHcall] : null;
  }

  /**
   * Issues a raw host hypercall on `cpu` (`HVC #0` with x0 = the id, x1… = `args`).
   * @param fn kernel name of the profile, raw id string, or the id as a number.
   * @param args up to 7 arguments, as numbers (< 2^53) or halves.
   */
  hvc(cpu: number, fn: string | number, args: readonly (number | U64)[] = []): HvcResult {
    assert(Number.isInteger(cpu) && cpu >= 0 && cpu < this.cpus, `hvc: no CPU ${cpu}`);
    const id = typeof fn === 'number' ? fn >>> 0 : this.resolveHcall(fn);
    assert(id !== null, `hvc: unknown hypercall ${String(fn)}`);
    assert(args.length <= 7, 'hvc: at most 7 arguments');
    const regs = new RegFile();
    regs.set(0, id, 0);
    args.forEach((a, i) => (typeof a === 'number' ? regs.setU(i + 1, a) : regs.set(i + 1, a.lo >>> 0, a.hi >>> 0)));
    this.hvcEntry(cpu, regs);
    const h = (n: number): U64 => ({ lo: regs.lo(n), hi: regs.hi(n) });
    return { x0: h(0), x1: h(1), x2: h(2), x3: h(3) };
  }

  // ---- VMs ----------------------------------------------------------------------------------------------------

  private rec(name: string): VmRec {
    const r = this.vms.get(name);
    assert(r !== undefined, `no VM named "${name}"`);
    return r;
  }

  private vcpuOf(name: string, idx: number): KvmVcpu {
    const v = this.rec(name).kvm.vcpus[idx];
    assert(v !== undefined, `VM "${name}" has no vCPU ${idx}`);
    return v;
  }

  /**
   * Creates a VM the way a VMM and KVM do: `mmap` the guest memory (backed at `backingPa`), `KVM_CREATE_VM`,
   * `KVM_CREATE_VCPU` × n (host structs shared with EL2), a memslot, then the hyp VM (`__pkvm_init_vm`,
   * `__pkvm_init_vcpu` × n), which KVM otherwise does on the first `KVM_RUN`.
   * @returns `ret` 0 and the handle, or the errno (nothing is left behind then).
   */
  createVm(spec: VmSpec, cpu = 0): { ret: number; handle: number } {
    assert(!this.vms.has(spec.name), `VM "${spec.name}" already exists`);
    // The VMM's fixed backing must be free host RAM (not the hyp carve-out, not already in use): -ENOMEM otherwise,
    // checked here so that a refused layout never reaches the allocator's unwind path.
    const hp = this.host.pages;
    if (!Number.isSafeInteger(spec.memory) || spec.memory <= 0 || spec.memory % PAGE_SIZE !== 0) return { ret: Err.EINVAL, handle: 0 };
    if (!Number.isSafeInteger(spec.backingPa) || spec.backingPa % PAGE_SIZE !== 0) return { ret: Err.EINVAL, handle: 0 };
    for (let pa = spec.backingPa; pa < spec.backingPa + spec.memory; pa += PAGE_SIZE) {
      if (hp.indexOf(pa) < 0 || hp.isAllocated(pa)) return { ret: Err.ENOMEM, handle: 0 };
    }
    const mm = new Mm(hp);
    if (this.memlockLimit !== null) mm.memlock.rlimitMemlock = this.memlockLimit;
    const hva = hvaBase(this.vmCount % 255);
    let ret: number = mm.mmap(hva, spec.memory, VmaKind.ANON, { backingPa: spec.backingPa });
    if (ret !== 0) return { ret, handle: 0 };
    const kvm = this.host.createVm(cpu, mm, spec.vcpus, spec.protected);
    if (typeof kvm === 'number') {
      mm.munmap(hva, spec.memory);
      return { ret: kvm, handle: 0 };
    }
    ret = kvm.memslots.set(0, spec.ipaBase, spec.memory, hva);
    if (ret === 0) ret = kvm.createHypVm(cpu);
    if (ret !== 0) {
      kvm.destroy(cpu);
      mm.munmap(hva, spec.memory);
      return { ret, handle: 0 };
    }
    this.vmCount++;
    if (this.onEvent !== null) kvm.trace = [];
    this.vms.set(spec.name, {
      spec,
      kvm,
      mm,
      hva,
      handle: kvm.handle,
      kvmPa: kvm.structPa,
      vcpuPas: kvm.vcpus.map((v) => v.structPa),
      pendingExit: new Array(spec.vcpus).fill(null),
      destroyed: false,
    });
    return { ret: 0, handle: kvm.handle };
  }

  /**
   * Destroys a VM: teardown at EL2, reclaim of every pinned page, unpin, unaccount, free the host structs, unmap
   * the VMM's memory. A loaded vCPU makes EL2 refuse with -EBUSY and nothing is released.
   */
  destroyVm(name: string, cpu = 0): Ret {
    const r = this.rec(name);
    if (r.destroyed) return Err.ENOENT;
    const hv = this.hyp.vmByHandle(r.handle);
    const vmid = hv?.vmid ?? -1;
    const pgd = hv?.pgt.pgd ?? -1;
    const ret = r.kvm.destroy(cpu);
    if (ret !== 0) return ret;
    r.destroyed = true;
    this.guests.removeVm(r.handle);
    if (vmid >= 0) this.checker.removeRoot(vmid, pgd);
    r.mm.munmap(r.hva, r.spec.memory);
    return 0;
  }

  /** `__pkvm_vcpu_load(handle, vcpu)` on `cpu`, as `kvm_arch_vcpu_load()` issues it. */
  vcpuLoad(name: string, vcpu: number, cpu: number): Ret {
    if (this.rec(name).destroyed) return Err.ENOENT;
    this.vcpuOf(name, vcpu).load(cpu);
    return 0;
  }

  /** `__pkvm_vcpu_put()` for the vCPU of `name` loaded on `cpu`; -EINVAL when none is. */
  vcpuPut(name: string, cpu: number): Ret {
    if (this.rec(name).destroyed) return Err.ENOENT;
    const v = this.rec(name).kvm.vcpus.find((x) => x.loadedOn === cpu);
    if (v === undefined) return Err.EINVAL;
    v.put();
    return 0;
  }

  /** Tops up a vCPU's hyp memcache to `pages` pages (`topup_hyp_memcache()`). */
  memcacheTopup(name: string, vcpu: number, pages: number, cpu = 0): Ret {
    if (this.rec(name).destroyed) return Err.ENOENT;
    return this.vcpuOf(name, vcpu).topupMemcache(cpu, pages);
  }

  /** True when `createVm` created a VM of this name (it may have been destroyed since). */
  hasVm(name: string): boolean {
    return this.vms.has(name);
  }

  /** Number of vCPUs a VM was created with. */
  vcpuCount(name: string): number {
    return this.rec(name).spec.vcpus;
  }

  /** The hyp VM handle of a VM. */
  vmHandle(name: string): number {
    return this.rec(name).handle;
  }

  /** PA of a VM's host `struct kvm` page (where it was, once the VM is destroyed). */
  hostKvmPa(name: string): number {
    return this.rec(name).kvmPa;
  }

  /** PA of a vCPU's host `struct kvm_vcpu` page (where it was, once the VM is destroyed). */
  hostVcpuPa(name: string, vcpu: number): number {
    const pa = this.rec(name).vcpuPas[vcpu];
    assert(pa !== undefined, `VM "${name}" has no vCPU ${vcpu}`);
    return pa;
  }

  /** Names of the live VMs. */
  vmNames(): string[] {
    const out: string[] = [];
    for (const [n, r] of this.vms) if (!r.destroyed) out.push(n);
    return out;
  }

  /** A VM's host and EL2 bookkeeping. */
  vmView(name: string): VmView {
    const r = this.rec(name);
    if (r.destroyed) return { exists: false, handle: r.handle, pinnedPages: r.kvm.pinned.count, lockedPages: r.mm.memlock.lockedVm, mappedPages: 0 };
    const hv = this.hyp.vmByHandle(r.handle);
    let mapped = 0;
    if (hv !== null) walkTable(this.mem, hv.pgt, (_ia, _l, lo) => void ((lo & 1) !== 0 && mapped++));
    return { exists: true, handle: r.handle, pinnedPages: r.kvm.pinned.count, lockedPages: r.mm.memlock.lockedVm, mappedPages: mapped };
  }

  // ---- Guest execution -----------------------------------------------------------------------------------------

  private defaultCpu(v: KvmVcpu): number {
    return v.loadedOn >= 0 ? v.loadedOn : v.idx % this.cpus;
  }

  /**
   * One guest access by a vCPU: a 64-bit load (`read`, into x0), store (`write`, of `value`) or instruction fetch
   * (`exec`) at `ipa`.
   *
   * With `handle` (default) the vCPU runs under `KVM_RUN` (`kvm_arch_vcpu_ioctl_run()`): each stage-2 exit goes to
   * the host's `kvm_handle_guest_abort()` → `pkvm_mem_abort()` and the access is retried. With `handle: false` the
   * vCPU runs once at EL2 and the first exit is reported (and kept for {@link Machine.handleExit}).
   *
   * As on hardware, an access whose `KVM_RUN` fails (say -ENOMEM) or whose exit is only reported stays the vCPU's
   * next instruction: the following run executes it first. Stops the harness cannot complete for the guest (MMIO,
   * an injected exception, a livelock) drop the queued accesses instead.
   */
  guestAccess(
    name: string,
    vcpu: number,
    ipa: number,
    access: 'read' | 'write' | 'exec',
    opts: { handle?: boolean; cpu?: number; value?: number } = {},
  ): GuestAccessResult {
    const r = this.rec(name);
    if (r.destroyed) return { result: 'error', esrEl2: 0, farEl2: 0, hpfarEl2: 0, errno: Err.ENOENT, value: 0, exits: 0, exitReason: KvmExit.ERROR };
    const v = this.vcpuOf(name, vcpu);
    const cpu = opts.cpu ?? this.defaultCpu(v);
    assert(cpu >= 0 && cpu < this.cpus, `guestAccess: no CPU ${cpu}`);
    const gv = this.guests.vcpu(r.handle, vcpu);
    let queued: boolean;
    if (access === READ) queued = gv.queueLoad(ipa, 8, 0);
    else if (access === 'write') {
      gv.regs.setU(0, opts.value ?? 0);
      queued = gv.queueStore(ipa, 8, 0);
    } else queued = gv.queueFetch(ipa);
    assert(queued, `guestAccess: IPA 0x${ipa.toString(16)} is not an aligned address`);
    if (opts.handle === false) return this.runOnce(r, v, cpu);
    const aborts = r.kvm.stats.guestAborts;
    const run = this.kvmRun;
    const ret = kvmArchVcpuIoctlRun(v, cpu, run);
    const done = ret === 0 && run.exitReason === KvmExit.IDLE && gv.pending === 0;
    if (!done && ret === 0) gv.clearQueue(); // an MMIO / livelock / injected stop: drop what the harness queued
    return {
      result: done ? 'ok' : 'error',
      esrEl2: run.esr,
      farEl2: 0,
      // HPFAR_EL2.FIPA = IPA[47:12] at bits[43:4]; KVM_RUN keeps the faulting IPA of its last stage-2 exit.
      hpfarEl2: r.kvm.stats.guestAborts !== aborts ? run.faultIpa / 256 : 0,
      errno: ret,
      value: access === READ && done ? gv.regs.u(0) : 0,
      exits: r.kvm.stats.guestAborts - aborts,
      exitReason: run.exitReason,
    };
  }

  /** Runs a vCPU once at EL2 (load, `__kvm_vcpu_run`, put) and reports the exit without handling it. */
  private runOnce(r: VmRec, v: KvmVcpu, cpu: number): GuestAccessResult {
    const wasLoaded = v.loadedOn;
    if (wasLoaded < 0) v.load(cpu);
    const code = this.host.hyp.call(v.loadedOn, '__kvm_vcpu_run', v.structPa);
    const gv = this.guests.vcpu(r.handle, v.idx);
    let res: GuestAccessResult;
    if (code === 2 /* ARM_EXCEPTION_TRAP */ && readGuestAbort(v, v.loadedOn, this.abortInfo)) {
      const info = new GuestAbortInfo();
      Object.assign(info, this.abortInfo);
      r.pendingExit[v.idx] = info;
      r.kvm.stats.guestAborts++;
      // HPFAR_EL2.FIPA = IPA[47:12] in bits[43:4] (Arm ARM D24.2.x): faultIpa / 2^8.
      res = { result: 'exit', esrEl2: info.esr, farEl2: info.farHi * 2 ** 32 + info.farLo, hpfarEl2: info.faultIpa / 256, errno: 0, value: 0, exits: 1, exitReason: 'exit' };
    } else {
      const done = code === 0 && gv.pending === 0;
      res = { result: done ? 'ok' : 'error', esrEl2: 0, farEl2: 0, hpfarEl2: 0, errno: code < 0 ? code : 0, value: done && gv.headKind === -1 ? gv.regs.u(0) : 0, exits: 0, exitReason: done ? KvmExit.IDLE : KvmExit.ERROR };
    }
    if (wasLoaded < 0) v.put();
    return res;
  }

  /**
   * Lets the host handle the stage-2 exit a `handle: false` access reported (`kvm_handle_guest_abort()` with the
   * vCPU loaded on `cpu`), possibly long after other vCPUs ran (the -EAGAIN race of pkvm.md §9.1).
   * @returns 0 or the errno of the fault path; -EINVAL when no exit is pending.
   */
  handleExit(name: string, vcpu: number, cpu?: number): Ret {
    const r = this.rec(name);
    if (r.destroyed) return Err.ENOENT;
    const v = this.vcpuOf(name, vcpu);
    const info = r.pendingExit[vcpu];
    if (info === null || info === undefined) return Err.EINVAL;
    r.pendingExit[vcpu] = null;
    const c = cpu ?? this.defaultCpu(v);
    const wasLoaded = v.loadedOn;
    if (wasLoaded < 0) v.load(c);
    kvmHandleGuestAbort(v, v.loadedOn, info, this.abortResult);
    if (wasLoaded < 0) v.put();
    const out = this.abortResult;
    return out.outcome === AbortOutcome.ERROR ? (out.errno as Ret) : 0;
  }

  /**
   * A guest hypercall (`HVC #0` with x0 = the service id, x1… = `args`) run under `KVM_RUN`.
   * @returns the guest's x0…x3 afterwards.
   */
  guestHvc(name: string, vcpu: number, fn: string | number, args: readonly (number | U64)[] = [], cpu?: number): HvcResult {
    const r = this.rec(name);
    const zero: U64 = { lo: 0, hi: 0 };
    if (r.destroyed) return { x0: { lo: SmcccRet.NOT_SUPPORTED >>> 0, hi: 0xffff_ffff }, x1: zero, x2: zero, x3: zero };
    const v = this.vcpuOf(name, vcpu);
    const id = typeof fn === 'number' ? fn : this.resolveGuestHcall(fn);
    assert(id !== null, `guestHvc: unknown service ${String(fn)}`);
    const a = args.map((x) => (typeof x === 'number' ? x : x.hi * 2 ** 32 + x.lo));
    const gv = this.guests.vcpu(r.handle, vcpu);
    assert(gv.queueHvc(id, a[0] ?? 0, a[1] ?? 0, a[2] ?? 0), 'guestHvc: bad arguments');
    kvmArchVcpuIoctlRun(v, cpu ?? this.defaultCpu(v), this.kvmRun);
    if (this.kvmRun.exitReason !== KvmExit.IDLE) gv.clearQueue();
    const g = gv.regs;
    const h = (n: number): U64 => ({ lo: g.lo(n), hi: g.hi(n) });
    return { x0: h(0), x1: h(1), x2: h(2), x3: h(3) };
  }

  // ---- Host -------------------------------------------------------------------------------------------------

  /**
   * A host kernel load or store of 64 bits at `pa`, through the host stage-2.
   * @returns `abort` when EL2 refused it (an abort is injected into the host), else `ok` with the value read.
   */
  hostAccess(cpu: number, pa: number, access: 'read' | 'write', value = 0): { result: 'ok' | 'abort'; value: number } {
    assert(cpu >= 0 && cpu < this.cpus, `hostAccess: no CPU ${cpu}`);
    const c = this.cell;
    if (access === 'write') {
      const ok = this.host.ram.write64(cpu, pa, value >>> 0, Math.floor(value / 2 ** 32) >>> 0);
      return { result: ok ? 'ok' : 'abort', value: 0 };
    }
    const ok = this.host.ram.read64(cpu, pa, c);
    return { result: ok ? 'ok' : 'abort', value: ok ? c.hi * 2 ** 32 + c.lo : 0 };
  }

  /**
   * A core-mm event on guest memory backing [ipa, ipa + pages): `munmap` by the VMM, NUMA balancing or compaction
   * trying to migrate the pages. pKVM ignores the MMU notifiers; long-term pins keep the pages in place.
   * @returns `ret` (0, or an errno other than the pinned-page refusal), pages `migrated`, and whether the guest still
   *   maps every page of the range.
   */
  hostEvent(event: 'munmap' | 'numa_balance' | 'compaction', name: string, ipa: number, pages: number, cpu = 0): { ret: number; migrated: number; guestMapped: boolean } {
    const r = this.rec(name);
    const hva = r.hva + (ipa - r.spec.ipaBase);
    let ret = 0;
    let migrated = 0;
    if (event === 'munmap') ret = r.mm.munmap(hva, pages * PAGE_SIZE);
    else {
      const reason = event === 'numa_balance' ? MigrateReason.NUMA_BALANCE : MigrateReason.COMPACTION;
      for (let i = 0; i < pages; i++) {
        const m = migratePage(r.mm, this.host.ram, cpu, hva + i * PAGE_SIZE, reason, this.host.gup);
        if (m === 0) migrated++;
        else if (m !== Err.EBUSY && ret === 0) ret = m;
      }
    }
    let mapped = !r.destroyed;
    const leaf = newLeafOut();
    const hv = this.hyp.vmByHandle(r.handle);
    for (let i = 0; i < pages && mapped; i++) {
      mapped = hv !== null && kvmPgtableGetLeaf(hv.pgt, ipa + i * PAGE_SIZE, leaf) === 0 && (leaf.lo & 1) !== 0;
    }
    return { ret, migrated, guestMapped: mapped };
  }

  /**
   * Emits the host kernel's recorded fault-path and teardown steps (`pkvm_mem_abort`, reclaim…) of every VM as `kvm`
   * events, in order, and forgets them. Only recorded when the machine was built with `onEvent`.
   */
  flushHostTrace(): void {
    const emit = this.onEvent;
    if (emit === null) return;
    for (const [name, r] of this.vms) {
      const tr = r.kvm.trace;
      if (tr === null || tr.length === 0) continue;
      for (const step of tr) emit({ ev: 'kvm', vm: name, step });
      tr.length = 0;
    }
  }

  /** Sets RLIMIT_MEMLOCK (bytes) of every VMM, present and future. @returns the limit. */
  setMemlockLimit(bytes: number): number {
    this.memlockLimit = bytes;
    for (const r of this.vms.values()) r.mm.memlock.rlimitMemlock = bytes;
    return bytes;
  }

  /**
   * Leaves only `pages` free pages to the host page allocator (the rest are held by a balloon), modelling memory
   * pressure: memcache top-ups and page-cache allocations then fail with -ENOMEM. @returns the free pages.
   */
  setHostAllocLimit(pages: number): number {
    const hp = this.host.pages;
    while (this.balloon.length > 0 && hp.freePages < pages) hp.freePage(this.balloon.pop() as number);
    while (hp.freePages > pages) {
      const pa = hp.allocPage();
      if (pa < 0) break;
      this.balloon.push(pa);
    }
    return hp.freePages;
  }

  // ---- Inspection ---------------------------------------------------------------------------------------------

  /** The states of the page at `pa` in each component, its pin and its owner. */
  pageView(pa: number): PageView {
    const hyp = this.hyp;
    const page = pa - (pa % PAGE_SIZE);
    const host = hyp.hostState(page);
    const hypS = hyp.hypState(page);
    const guests: Record<string, PageView['host']> = {};
    let guestOwns = false;
    for (const [n, r] of this.vms) {
      if (r.destroyed) continue;
      const p = r.kvm.pinned;
      for (let i = 0; i < p.count; i++) {
        if (p.paAt(i) !== page) continue;
        const s = hyp.guestState(r.handle, p.gfnAt(i) * PAGE_SIZE);
        guests[n] = pageStateName(s);
        if (s === PageState.OWNED || s === PageState.SHARED_OWNED) guestOwns = true;
      }
    }
    const idx = this.host.pages.indexOf(page);
    const pinned = idx >= 0 && this.host.pages.pinCount[idx]! > 0; // JUSTIFY: idx checked.
    let owner: PageView['owner'];
    if (host === PageState.OWNED || host === PageState.SHARED_OWNED) owner = 'host';
    else if (hypS === PageState.OWNED || hypS === PageState.SHARED_OWNED) owner = 'hyp';
    else if (guestOwns) owner = 'guest';
    else if (host === PageState.NOPAGE && hyp.hostOwner(page) === PkvmId.GUEST && (hyp.pageFlags(page) & 2) === 0) owner = 'guest';
    else owner = 'none';
    return { host: pageStateName(host), hyp: pageStateName(hypS), guests, pinned, owner };
  }

  /** The guest stage-2 descriptor covering `ipa` of VM `name` (`kvm_pgtable_get_leaf`), or null. */
  guestDesc(name: string, ipa: number): { lo: number; hi: number; level: number } | null {
    const r = this.rec(name);
    const out = newLeafOut();
    return !r.destroyed && this.hyp.guestLeaf(r.handle, ipa, out) ? { lo: out.lo, hi: out.hi, level: out.level } : null;
  }

  /** A guest stage-2 in the Linux `stage2_page_tables` debugfs format (`arch/arm64/kvm/ptdump.c`). */
  dumpStage2(name: string): string {
    const r = this.rec(name);
    const hv = r.destroyed ? null : this.hyp.vmByHandle(r.handle);
    return hv === null ? '' : linuxDump(hv.pgt);
  }

  /**
   * Recomputes the ghost state and checks the invariants of `check/invariants.ts`. Hypervisor warnings and BBM
   * violations are reported once (those recorded since the previous call).
   */
  checkInvariants(): InvariantReport {
    const hyp = this.hyp;
    this.checker.checkQuiescent();
    const warns = hyp.warnings.slice(this.warnSeen);
    this.warnSeen = hyp.warnings.length;
    const bbm = this.checker.violations.slice(this.bbmSeen).map((v) => `${v.kind}: ${v.message}`);
    this.bbmSeen = this.checker.violations.length;
    const names = new Map<number, string>();
    for (const [n, r] of this.vms) if (!r.destroyed) names.set(r.handle, n);
    const pages = this.host.pages;
    return checkGhost({
      mem: this.mem,
      hostS2: hyp.hostPgt,
      hypS1: hyp.hypPgt,
      guests: hyp.liveVms().map((vm) => ({ name: names.get(vm.handle) ?? '0x' + vm.handle.toString(16), pgt: vm.pgt })),
      vmemmap: hyp.vmemmap,
      memcachePages: () => hyp.memcachePages(),
      isPinned: (pa) => {
        const i = pages.indexOf(pa);
        return i >= 0 && pages.pinCount[i]! > 0; // JUSTIFY: i checked.
      },
      warnings: () => warns,
      bbmViolations: () => bbm,
    });
  }

  /** Counters for summaries. */
  stats(): MachineStats {
    const hvcs: Record<string, number> = {};
    this.hvcByFn.forEach((n, fn) => {
      if (n !== 0) hvcs[hcallName(this.profile, fn) ?? '0x' + (KVM_HOST_SMCCC_BASE + fn).toString(16)] = n;
    });
    for (const [id, n] of this.hvcRaw) hvcs['0x' + id.toString(16)] = n;
    let faults = 0;
    let reclaimed = 0;
    for (const k of this.host.vms) {
      faults += k.stats.guestAborts;
      reclaimed += k.stats.reclaimed;
    }
    return { faults, hvcs, pinned: this.host.gup.pins, reclaimed, hostAborts: this.hyp.hostAborts };
  }

  /** RAM the host kernel owns (all RAM minus the hypervisor's carve-out). */
  get hostRamRanges(): readonly { base: number; size: number }[] {
    return this.hostRam;
  }
}

/** Builds a machine. Throws `InvariantError` for a configuration {@link validateMachineConfig} refuses. */
export function createMachine(cfg: MachineConfig): Machine {
  return new Machine(cfg);
}


