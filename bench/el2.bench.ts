/**
 * EL2 benchmarks: the whole machine of `src/system.ts` (guest vCPU → S2Mmu → EL2 → host KVM → EL2), measured the
 * way a kernel developer uses it.
 *
 *   benchmark              what one operation is                                             target
 *   fault-roundtrip        a guest load of an unmapped page: stage-2 fault → host pkvm_mem_abort (topup, account,
 *                          pin) → __pkvm_host_map_guest → retry succeeds; 256 faults per KVM_RUN     ≥ 1 M/s
 *   hvc-dispatch           a host hypercall that does nothing (__kvm_timer_set_cntvoff) through
 *                          kvm_call_hyp_nvhe, the HVC conduit and handle_host_hcall                  ≥ 10 M/s
 *   share-unshare-hyp      __pkvm_host_share_hyp + __pkvm_host_unshare_hyp of one host page
 *   teardown-reclaim-1GiB  (one-shot, printed after the suite) teardown of a fully faulted 1 GiB guest:
 *                          __pkvm_teardown_vm + 262,144 × (reclaim, unaccount, unpin)               ≤ 0.5 s
 *   heap per page          (one-shot, with `node --expose-gc`) heap + ArrayBuffer growth per mapped guest page of
 *                          the 1 GiB guest (table and memcache pages live in the flat RAM array; with sparse RAM
 *                          they are netted out), default (bounded) TLB; also with the TLB off          ≤ 64 B
 *
 * Verdicts use CPU time per operation (`cpuNsPerOp` of the harness; teardown timed with `process.cpuUsage`): the
 * benchmark machine is shared, and wall time there measures the neighbours as much as the model.
 *
 * What `fault-roundtrip` times, and what it does not. Each call (256 operations) queues 256 guest loads of the next
 * 256 unmapped pages of a 2 GiB guest and runs one KVM_RUN: timed are the queueing, the KVM_RUN with its 256 round
 * trips (each: the guest's faulting load and stage-2 walk, the exit to EL2 and the host, `pkvm_mem_abort` with the
 * memcache top-up, memlock accounting, pin and `__pkvm_host_map_guest`, the re-entry and the successful load; a
 * new level-3 table every 512 pages, as a real guest would need), and the garbage collection this produces.
 * Not timed: replacing the guest once its pages run out (teardown of the old guest, creation of a new one), which
 * is no part of a round trip. That happens in the `prepare()` hook the harness calls outside its timed regions
 * (`bench/run.ts`), whenever fewer than {@link RECYCLE_MARGIN} unmapped pages remain; with `node --expose-gc` it
 * then also collects the old guest's garbage, untimed. Should a benchmark.js cycle still run the guest out, the
 * call recycles inline, inside the timed region; the report counts those inline recycles and their time (they
 * should be 0), and the untimed ones.
 */

import { performance } from 'node:perf_hooks';
import { createMachine, DEFAULT_TLB_ENTRIES, type Machine } from '../src/system.js';
import type { GuestVcpu } from '../src/guest/vcpu.js';
import { KvmRun, kvmArchVcpuIoctlRun } from '../src/host/arm.js';
import type { KvmVcpu } from '../src/host/kvm.js';
import type { BenchRecord, BenchRegistry } from './run.js';

const GiB = 2 ** 30;
const PAGE = 4096;
const RAM_BASE = 0x4000_0000;
/** Faults per benchmark call of fault-roundtrip (one KVM_RUN). */
const BATCH = 256;
/**
 * `fault-roundtrip` replaces its guest, untimed, when fewer unmapped pages than this remain (a quarter of the guest:
 * one benchmark.js cycle maps about 50 ms of faults, and a chunk of the CPU-time run 16 calls).
 */
const RECYCLE_MARGIN = 131_072;

/** A machine with `guestBytes` of guest memory backed 256 MiB above the RAM base, memlock unlimited. */
function machineFor(guestBytes: number, tlb = true): Machine {
  const m = createMachine({ ram: [{ base: RAM_BASE, size: guestBytes + GiB / 2 }], cpus: 2, paBits: 40, tlb });
  m.setMemlockLimit(Infinity);
  return m;
}

/** CPU milliseconds (user + system) since `c0`. */
function cpuMs(c0: NodeJS.CpuUsage): number {
  const c = process.cpuUsage(c0);
  return (c.user + c.system) / 1000;
}

interface FaultState {
  m: Machine;
  vcpu: KvmVcpu;
  gv: GuestVcpu;
  next: number;
  pages: number;
  /** Untimed recycles (in `prepare()`) and their wall time. */
  recycles: number;
  recycleMs: number;
  /** Recycles inside the timed function (a cycle that ran the guest out), and their wall time. */
  inlineRecycles: number;
  inlineRecycleMs: number;
  faults: number;
  generation: number;
}

/** Tears the guest down and creates the next one; returns the wall milliseconds it took. */
function recycle(st: FaultState): number {
  const t = performance.now();
  st.m.destroyVm(`f${st.generation}`);
  st.generation++;
  newGuest(st);
  return performance.now() - t;
}

function newGuest(st: FaultState): void {
  const r = st.m.createVm({ name: `f${st.generation}`, memory: st.pages * PAGE, ipaBase: 0, backingPa: RAM_BASE + GiB / 4, vcpus: 1, protected: false });
  if (r.ret !== 0) throw new Error(`fault-roundtrip: create VM ${r.ret}`);
  st.vcpu = st.m.host.vms[st.m.host.vms.length - 1]!.vcpus[0]!;
  st.gv = st.m.guests.vcpu(r.handle, 0);
  st.next = 0;
}

/** Faults the next `n` pages of a guest in one KVM_RUN; returns the pages faulted. */
function faultBatch(gv: GuestVcpu, vcpu: KvmVcpu, run: KvmRun, first: number, n: number): void {
  for (let i = 0; i < n; i++) gv.queueLoad((first + i) * PAGE, 8, 0);
  if (kvmArchVcpuIoctlRun(vcpu, 0, run) !== 0 || gv.pending !== 0) throw new Error(`fault batch: ${run.ret} ${run.exitReason}`);
}

let faultState: FaultState | null = null;
let wantOneShots = false;

/** Registers the EL2 benchmarks. */
export function register(reg: BenchRegistry): void {
  wantOneShots = reg.wants('teardown-reclaim-1GiB');
  if (reg.wants('fault-roundtrip')) {
    const pages = (2 * GiB) / PAGE;
    const m = machineFor(2 * GiB);
    const st: FaultState = {
      m, vcpu: null as unknown as KvmVcpu, gv: null as unknown as GuestVcpu, next: 0, pages,
      recycles: 0, recycleMs: 0, inlineRecycles: 0, inlineRecycleMs: 0, faults: 0, generation: 0,
    };
    newGuest(st);
    faultState = st;
    const run = new KvmRun();
    reg.add(
      'fault-roundtrip',
      () => {
        if (st.next + BATCH > st.pages) {
          // Fallback, timed: the untimed prepare() left too few pages for this cycle.
          st.inlineRecycleMs += recycle(st);
          st.inlineRecycles++;
        }
        faultBatch(st.gv, st.vcpu, run, st.next, BATCH);
        st.next += BATCH;
        st.faults += BATCH;
      },
      BATCH,
      () => {
        if (st.pages - st.next >= RECYCLE_MARGIN) return;
        st.recycleMs += recycle(st);
        st.recycles++;
        // The torn-down guest's garbage is recycling's too: collect it here when the process allows it.
        const gc = (globalThis as { gc?: () => void }).gc;
        if (gc !== undefined) gc();
      },
    );
  }
  if (reg.wants('hvc-dispatch')) {
    const m = machineFor(GiB / 4);
    const hyp = m.host.hyp;
    reg.add(
      'hvc-dispatch',
      () => {
        for (let i = 0; i < 1000; i++) hyp.call(0, '__kvm_timer_set_cntvoff', 0, 0);
      },
      1000,
    );
  }
  if (reg.wants('share-unshare-hyp')) {
    const m = machineFor(GiB / 4);
    const hyp = m.host.hyp;
    const pfn = (RAM_BASE + GiB / 8) / PAGE;
    reg.add(
      'share-unshare-hyp',
      () => {
        for (let i = 0; i < 100; i++) {
          if (hyp.call(0, '__pkvm_host_share_hyp', pfn) !== 0 || hyp.call(0, '__pkvm_host_unshare_hyp', pfn) !== 0) throw new Error('share/unshare');
        }
      },
      100,
    );
  }
}

/** Heap plus ArrayBuffer bytes after a full GC (needs `--expose-gc`), or NaN without it. */
function heapBytes(): number {
  const g = (globalThis as { gc?: () => void }).gc;
  if (g === undefined) return NaN;
  g();
  g();
  const u = process.memoryUsage();
  return u.heapUsed + u.arrayBuffers;
}

/** A fully faulted guest of `bytes`: the machine, and the wall/CPU time and heap growth of faulting it. */
function faultedGuest(bytes: number, tlb: boolean): { m: Machine; faultMs: number; faultCpuMs: number; heapPerPage: number; backing: number } {
  const pages = bytes / PAGE;
  const m = machineFor(bytes, tlb);
  const r = m.createVm({ name: 'big', memory: bytes, ipaBase: 0, backingPa: RAM_BASE + GiB / 4, vcpus: 1, protected: false });
  if (r.ret !== 0) throw new Error(`one-shot: create VM ${r.ret}`);
  const vcpu = m.host.vms[0]!.vcpus[0]!;
  const gv = m.guests.vcpu(r.handle, 0);
  const run = new KvmRun();
  faultBatch(gv, vcpu, run, 0, BATCH); // the first tables exist before the baseline
  const touched0 = m.mem.touchedPages;
  const heap0 = heapBytes();
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  for (let p = BATCH; p < pages; p += BATCH) faultBatch(gv, vcpu, run, p, BATCH);
  const faultCpuMs = cpuMs(c0);
  const faultMs = performance.now() - t0;
  const heap1 = heapBytes();
  const backing = (m.mem.touchedPages - touched0) * PAGE;
  // Flat RAM (createMachine's default) holds table and memcache pages in the region's array, allocated before the
  // baseline: the heap growth is then the per-page state alone. Sparse RAM allocates them one by one: net them out.
  const flat = m.mem.regionList.some((reg) => reg.flat !== null);
  return { m, faultMs, faultCpuMs, heapPerPage: (heap1 - heap0 - (flat ? 0 : backing)) / (pages - BATCH), backing: flat ? 0 : backing };
}

/**
 * The one-shot measurements: fault a 1 GiB guest (default TLB), tear it down (wall and CPU time), and the heap growth
 * per mapped page with the default TLB and with the TLB off (a 256 MiB guest: the per-page state alone).
 */
function oneShots(): string {
  const pages = GiB / PAGE;
  const big = faultedGuest(GiB, true);
  const m = big.m;
  const mapped = m.vmView('big').mappedPages;
  const t1 = performance.now();
  const c1 = process.cpuUsage();
  const ret = m.destroyVm('big');
  const tearCpuS = cpuMs(c1) / 1000;
  const tearS = (performance.now() - t1) / 1000;
  const inv = m.checkInvariants();
  const lines = [
    `teardown-reclaim-1GiB    ${tearS.toFixed(3)} s wall, ${tearCpuS.toFixed(3)} s CPU for ${mapped.toLocaleString('en-US')} pages (ret ${ret}; target ≤ 0.5 s: ${tearCpuS <= 0.5 ? 'met' : 'NOT met'})`,
    `fault 1 GiB              ${(big.faultMs / 1000).toFixed(2)} s wall, ${(big.faultCpuMs / 1000).toFixed(2)} s CPU (${Math.round((pages - BATCH) / (big.faultCpuMs / 1000)).toLocaleString('en-US')} faults per CPU second)`,
    `invariants after         ${inv.violations.length === 0 ? 'hold' : inv.violations.slice(0, 3).join('; ')}`,
  ];
  if (Number.isNaN(big.heapPerPage)) lines.push('heap per mapped page     (run node --expose-gc dist/bench/run.js for this figure)');
  else {
    const off = faultedGuest(GiB / 4, false);
    const verdict = (b: number): string => (b <= 64 ? 'met' : 'NOT met');
    lines.push(`heap per mapped page     ${big.heapPerPage.toFixed(1)} B with the default ${DEFAULT_TLB_ENTRIES.toLocaleString('en-US')}-entry TLB (target ≤ 64 B: ${verdict(big.heapPerPage)}); ${off.heapPerPage.toFixed(1)} B with the TLB off (${verdict(off.heapPerPage)})`);
    if (big.backing > 0) lines.push(`                         (net of ${(big.backing / 2 ** 20).toFixed(1)} MiB of table and memcache pages per GiB)`);
    else lines.push('                         (flat RAM: table and memcache pages are in the RAM array, not in the growth)');
  }
  return lines.join('\n') + '\n';
}

/** Targets and the one-shot measurements. Verdicts use CPU time per operation (the machine is shared). */
export function report(records: readonly BenchRecord[]): string {
  const out: string[] = [];
  const get = (n: string): BenchRecord | undefined => records.find((r) => r.name === n);
  const rate = (r: BenchRecord): string => {
    const cpuHz = r.cpuNsPerOp > 0 ? 1e9 / r.cpuNsPerOp : 0;
    return `${Math.round(r.hz).toLocaleString('en-US')}/s wall, ${Math.round(cpuHz).toLocaleString('en-US')}/s per CPU second`;
  };
  const met = (r: BenchRecord, target: number): string => (r.cpuNsPerOp > 0 && 1e9 / r.cpuNsPerOp >= target ? 'met' : 'NOT met');
  const f = get('fault-roundtrip');
  if (f !== undefined) {
    out.push(`fault-roundtrip          ${rate(f)} (target ≥ 1,000,000/s: ${met(f, 1e6)})`);
    const st = faultState;
    if (st !== null) {
      out.push(`  guest recycling (teardown + create), over ${st.faults.toLocaleString('en-US')} faults: ${st.recycles} untimed (${st.recycleMs.toFixed(0)} ms), ` +
        `${st.inlineRecycles} inside the timed function (${st.inlineRecycleMs.toFixed(0)} ms)`);
    }
  }
  const h = get('hvc-dispatch');
  if (h !== undefined) out.push(`hvc-dispatch             ${rate(h)} (target ≥ 10,000,000/s: ${met(h, 1e7)})`);
  const s = get('share-unshare-hyp');
  if (s !== undefined) out.push(`share-unshare-hyp        ${rate(s)}`);
  if (wantOneShots) out.push(oneShots().trimEnd());
  return out.length === 0 ? '' : '\nEL2 targets (verdicts on CPU time)\n' + out.join('\n') + '\n';
}
