/**
 * Test builders for EL2: a small machine (RAM, optional MMIO, a shared TLB, per-CPU MMUs) with a booted `Hyp`,
 * and host-side helpers that prepare memory the way the host kernel does (structs shared with EL2, memcaches).
 * Everything goes through the public EL2 API and the hypercall interface; nothing is mocked.
 */

import { PAGE_SIZE } from '../../../src/arch/addr.js';
import { ARMV8_0_PA40_FEATURES } from '../../../src/arch/features.js';
import { RegFile } from '../../../src/arch/regs.js';
import {
  type AbiProfileName,
  type Hcall2022,
  hcallFuncId,
  type HcallUp616,
  HOST_KVM,
  HOST_VCPU,
  hypVcpuSize,
  hypVmSize,
} from '../../../src/arch/smccc.js';
import { PhysMem, RegionKind } from '../../../src/mem/phys-mem.js';
import { S2Mmu } from '../../../src/mmu/s2-mmu.js';
import { Tlb } from '../../../src/mmu/tlb.js';
import type { GuestRunner } from '../../../src/el2/guest-runner.js';
import type { Hyp } from '../../../src/el2/hyp.js';
import { createHyp } from '../../../src/el2/setup.js';
import { hostHvc } from '../../../src/el2/trap.js';
import { kvmPgtableStage2PgdSize } from '../../../src/pgtable/stage2.js';

/** RAM base of the test machine. */
export const RAM_BASE = 0x4000_0000;
/** RAM size of the test machine (64 MiB). */
export const RAM_SIZE = 64 << 20;
/** An MMIO region below RAM. */
export const MMIO_BASE = 0x0900_0000;
/** Carve-out pages for the hypervisor. */
export const CARVEOUT_PAGES = 1024;
/** Carve-out base: the top of RAM. */
export const CARVEOUT_BASE = RAM_BASE + RAM_SIZE - CARVEOUT_PAGES * PAGE_SIZE;

/** A booted test machine. */
export interface TestMachine {
  readonly mem: PhysMem;
  readonly tlb: Tlb;
  readonly hyp: Hyp;
  /** Next free host page (a bump allocator over RAM below the carve-out). */
  nextPa: number;
}

/** Boots a machine with `nrCpus` CPUs. */
export function bootMachine(
  opts: { nrCpus?: number; runner?: GuestRunner; finalize?: boolean; profile?: AbiProfileName } = {},
): TestMachine {
  const mem = new PhysMem();
  mem.addRegion(RAM_BASE, RAM_SIZE, RegionKind.RAM);
  mem.addRegion(MMIO_BASE, 0x1000_0000 - MMIO_BASE, RegionKind.MMIO);
  const tlb = new Tlb();
  const nrCpus = opts.nrCpus ?? 2;
  const mmus: S2Mmu[] = [];
  for (let i = 0; i < nrCpus; i++) mmus.push(new S2Mmu(mem, ARMV8_0_PA40_FEATURES, { tlb }));
  const hyp = createHyp({
    mem,
    features: ARMV8_0_PA40_FEATURES,
    tlb,
    nrCpus,
    carveout: { base: CARVEOUT_BASE, nrPages: CARVEOUT_PAGES },
    mmus,
    runner: opts.runner ?? null,
    profile: opts.profile ?? 'pkvm-2022',
  });
  const m: TestMachine = { mem, tlb, hyp, nextPa: RAM_BASE };
  if (opts.finalize !== false) for (let c = 0; c < nrCpus; c++) hvc(m, c, '__pkvm_prot_finalize');
  return m;
}

/** Allocates `n` contiguous host pages (never reused). */
export function allocHostPages(m: TestMachine, n = 1): number {
  const pa = m.nextPa;
  m.nextPa += n * PAGE_SIZE;
  return pa;
}

/** Issues a host hypercall by kernel name (of the machine's profile) on `cpu`; returns {x0, x1} as signed numbers. */
export function hvc(m: TestMachine, cpu: number, name: Hcall2022 | HcallUp616, ...args: number[]): { x0: number; x1: number } {
  const regs = m.hyp.cpus[cpu]!.regs;
  const id = hcallFuncId(m.hyp.profile, name);
  if (id === null) throw new Error(`${name} is not in profile ${m.hyp.profile.name}`);
  regs.setU(0, id);
  for (let i = 0; i < args.length; i++) regs.setU(i + 1, args[i]!);
  hostHvc(m.hyp, cpu, 0);
  return { x0: regs.signed(0), x1: regs.signed(1) };
}

/** Issues a host hypercall and returns x1, asserting x0 = SUCCESS. */
export function hvcRet(m: TestMachine, cpu: number, name: Hcall2022 | HcallUp616, ...args: number[]): number {
  const r = hvc(m, cpu, name, ...args);
  if (r.x0 !== 0) throw new Error(`${name}: x0 = ${r.x0}`);
  return r.x1;
}

/** A copy of a register file's x0/x1 (for "untouched" checks). */
export function snapshot(regs: RegFile): number[] {
  return [regs.lo(0), regs.hi(0), regs.lo(1), regs.hi(1)];
}

/** Writes a 64-bit host field. */
export function put64(m: TestMachine, pa: number, v: number): void {
  m.mem.write64(pa, v >>> 0, Math.floor(v / 2 ** 32) >>> 0);
}

/** Reads a 64-bit field as a number. */
export function get64(m: TestMachine, pa: number): number {
  return m.mem.read64Hi(pa) * 2 ** 32 + m.mem.read64Lo(pa);
}

/** The host's VM setup: a shared `struct kvm`, donated VM area and pgd, `__pkvm_init_vm`; returns the handle. */
export interface TestVm {
  readonly handle: number;
  readonly kvmPa: number;
  readonly vcpuPas: number[];
}

/** Creates a VM with `nrVcpus` vCPUs through the hypercalls, as the host does (pkvm.md §4.2, §4.4). */
export function createVm(m: TestMachine, opts: { nrVcpus?: number; protected?: boolean; cpu?: number } = {}): TestVm {
  const cpu = opts.cpu ?? 0;
  const nr = opts.nrVcpus ?? 1;
  const kvmPa = allocHostPages(m);
  put64(m, kvmPa + HOST_KVM.CREATED_VCPUS, nr);
  put64(m, kvmPa + HOST_KVM.PROTECTED, opts.protected === true ? 1 : 0);
  if (hvcRet(m, cpu, '__pkvm_host_share_hyp', kvmPa / PAGE_SIZE) !== 0) throw new Error('share kvm');
  const vmPa = allocHostPages(m, hypVmSize(nr) / PAGE_SIZE);
  const pgdSize = kvmPgtableStage2PgdSize(m.hyp.hostVtcrLo);
  // alloc_pages_exact() gives a block aligned to its power-of-two size; the VM pool needs that to hand out the pgd.
  while (m.nextPa % pgdSize !== 0) m.nextPa += PAGE_SIZE;
  const pgdPa = allocHostPages(m, pgdSize / PAGE_SIZE);
  const handle = hvcRet(m, cpu, '__pkvm_init_vm', kvmPa, vmPa, pgdPa);
  if (handle < 0) throw new Error(`init_vm ${handle}`);
  const vcpuPas: number[] = [];
  for (let i = 0; i < nr; i++) {
    const hv = allocHostPages(m);
    put64(m, hv + HOST_VCPU.VCPU_IDX, i);
    if (hvcRet(m, cpu, '__pkvm_host_share_hyp', hv / PAGE_SIZE) !== 0) throw new Error('share vcpu');
    const area = allocHostPages(m, hypVcpuSize() / PAGE_SIZE);
    const r = hvcRet(m, cpu, '__pkvm_init_vcpu', handle, hv, area);
    if (r !== 0) throw new Error(`init_vcpu ${r}`);
    vcpuPas.push(hv);
  }
  return { handle, kvmPa, vcpuPas };
}

/** Pushes `n` fresh host pages onto the host memcache embedded in a host struct at `mcPa` (head, nr). */
export function topupHostMemcache(m: TestMachine, mcPa: number, n: number): number[] {
  const pages: number[] = [];
  for (let i = 0; i < n; i++) {
    const p = allocHostPages(m);
    put64(m, p, get64(m, mcPa));
    put64(m, mcPa, p);
    put64(m, mcPa + 8, get64(m, mcPa + 8) + 1);
    pages.push(p);
  }
  return pages;
}
