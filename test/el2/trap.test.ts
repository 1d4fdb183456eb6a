import t from 'tap';
import { PAGE_SIZE } from '../../src/arch/addr.js';
import { ESR_S1PTW_LO, EsrEc, esrEc } from '../../src/arch/esr.js';
import { FaultType } from '../../src/arch/fault.js';
import { hpfarToIpa } from '../../src/arch/hpfar.js';
import { RegFile } from '../../src/arch/regs.js';
import { ArmException, GuestExit, GuestHcall, HOST_S2_MMU, HOST_VCPU, SmcccRet } from '../../src/arch/smccc.js';
import type { GuestRunner } from '../../src/el2/guest-runner.js';
import { hostDonateHyp, HostAbortResult } from '../../src/el2/mem-protect.js';
import { PageState } from '../../src/el2/page-state.js';
import { hostAccess, hostTrap } from '../../src/el2/trap.js';
import { AbortAccess, AbortContext, deliverHvc, deliverStage2Abort, type El2ExceptionState } from '../../src/mmu/abort.js';
import { AccessKind } from '../../src/mmu/s2-walk.js';
import type { S2Mmu } from '../../src/mmu/s2-mmu.js';
import { WalkResult } from '../../src/mmu/walk-result.js';
import { newLeafOut } from '../../src/pgtable/types.js';
import {
  allocHostPages,
  bootMachine,
  CARVEOUT_BASE,
  createVm,
  get64,
  hvc,
  hvcRet,
  MMIO_BASE,
  RAM_BASE,
  topupHostMemcache,
} from './helpers/machine.js';

t.test('host accesses through the host stage-2', (t) => {
  t.test('are unrestricted before __pkvm_prot_finalize', (t) => {
    const m = bootMachine({ finalize: false });
    t.ok(hostAccess(m.hyp, 0, CARVEOUT_BASE, true));
    t.end();
  });
  t.test('map host memory lazily with the largest uniform block (2 MiB here) and MMIO as RW', (t) => {
    const m = bootMachine();
    const leaf = newLeafOut();
    t.ok(hostAccess(m.hyp, 0, RAM_BASE + 0x123_4560, false));
    m.hyp.hostLeaf(RAM_BASE + 0x123_4000, leaf);
    t.equal(leaf.level, 2, 'RAM: 2 MiB block (1 GiB does not fit the 64 MiB region)');
    t.ok(hostAccess(m.hyp, 0, MMIO_BASE + 0x40, true));
    m.hyp.hostLeaf(MMIO_BASE, leaf);
    t.equal(leaf.level, 1, 'MMIO gap [0, RAM) holds a whole 1 GiB window');
    t.equal(m.hyp.hostAborts, 2);
    t.ok(hostAccess(m.hyp, 1, RAM_BASE + 0x123_4560, true), 'second CPU hits the same mapping');
    t.equal(m.hyp.hostAborts, 2, 'no new abort');
    t.same(m.hyp.warnings, []);
    t.end();
  });
  t.test('refuse a page the host gave away: an abort is injected into the host (EC current EL, S1PTW marker)', (t) => {
    const m = bootMachine();
    const pa = CARVEOUT_BASE + 7 * PAGE_SIZE;
    t.notOk(hostAccess(m.hyp, 0, pa + 8, true));
    const c = m.hyp.cpus[0]!;
    t.equal(c.injectedAborts, 1);
    t.equal(esrEc(c.injectedEsr), EsrEc.DABT_CUR);
    t.ok((c.injectedEsr & ESR_S1PTW_LO) !== 0);
    t.equal(c.injectedFar, pa + 8);
    t.same(m.hyp.warnings, []);
    t.end();
  });
  t.test('a page donated after the host touched it faults again (stale block and TLB entry invalidated)', (t) => {
    const m = bootMachine();
    const pa = allocHostPages(m);
    t.ok(hostAccess(m.hyp, 0, pa, true), 'block mapped and cached');
    t.equal(hostDonateHyp(m.hyp, pa / PAGE_SIZE, 1), 0);
    t.notOk(hostAccess(m.hyp, 0, pa, false), 'refused after the donation');
    t.ok(hostAccess(m.hyp, 0, pa + PAGE_SIZE, false), 'the rest of the old block re-faults and is mapped again');
    t.same(m.hyp.warnings, []);
    t.end();
  });
  t.test('fail without an EL2 decision for a PA beyond PARange and for a fetch from MMIO (endless -EAGAIN)', (t) => {
    const m = bootMachine();
    t.notOk(hostAccess(m.hyp, 0, 2 ** 40, false));
    t.notOk(hostAccess(m.hyp, 0, MMIO_BASE, false, true));
    t.equal(m.hyp.cpus[0]!.injectedAborts, 0, 'nothing injected');
    t.ok(hostAccess(m.hyp, 0, MMIO_BASE, false), 'a load from the same MMIO page works');
    t.same(m.hyp.warnings, []);
    t.end();
  });
  t.test('hostTrap dispatches an exception already in the CPU\'s EL2 registers', (t) => {
    const m = bootMachine();
    const c = m.hyp.cpus[1]!;
    const ctx = new AbortContext();
    ctx.access = AbortAccess.WRITE;
    const w = new WalkResult();
    w.fault = FaultType.TRANSLATION;
    w.level = 1;
    w.ipa = CARVEOUT_BASE;
    ctx.vaLo = CARVEOUT_BASE >>> 0;
    deliverStage2Abort(w, ctx, c.exc);
    t.equal(hostTrap(m.hyp, 1), HostAbortResult.INJECTED);
    t.equal(c.injectedAborts, 1);
    t.end();
  });
  t.test('allow shared pages and pages a pVM shared back', (t) => {
    const m = bootMachine();
    const pa = allocHostPages(m);
    t.equal(hvc(m, 0, '__pkvm_host_share_hyp', pa / PAGE_SIZE).x1, 0);
    t.ok(hostAccess(m.hyp, 0, pa, true));
    t.end();
  });
  t.end();
});

/** An environment fake of the guest layer: a queue of accesses and HVCs per vCPU, run through the real MMU. */
class ScriptedGuest implements GuestRunner {
  readonly ops: ({ ipa: number; write: boolean } | { hvc: number[] })[] = [];
  readonly gregs = new RegFile();
  private readonly ctx = new AbortContext();
  private readonly walk = new WalkResult();
  run(_h: number, _i: number, mmu: S2Mmu, exc: El2ExceptionState): number {
    while (this.ops.length > 0) {
      const op = this.ops[0]!;
      if ('hvc' in op) {
        this.ops.shift();
        op.hvc.forEach((v, i) => this.gregs.setU(i, v));
        deliverHvc(0, this.ctx, exc);
        return GuestExit.HVC;
      }
      if (mmu.translate(op.ipa, op.write ? AccessKind.WRITE : AccessKind.READ, 0, this.walk) !== FaultType.NONE) {
        this.ctx.access = op.write ? AbortAccess.WRITE : AbortAccess.READ;
        this.ctx.vaLo = op.ipa >>> 0;
        this.ctx.vaHi = 0;
        deliverStage2Abort(this.walk, this.ctx, exc);
        return GuestExit.S2_ABORT;
      }
      this.ops.shift();
    }
    return GuestExit.COMPLETED;
  }
  regs(): RegFile {
    return this.gregs;
  }
}

t.test('__kvm_vcpu_run', (t) => {
  t.test('reports a stage-2 abort to the host (ESR/FAR/HPFAR in the host vCPU) and completes after the map', (t) => {
    const guest = new ScriptedGuest();
    const m = bootMachine({ runner: guest });
    const vm = createVm(m);
    const hv = vm.vcpuPas[0]!;
    t.equal(hvcRet(m, 0, '__kvm_vcpu_run', hv), -22, 'no loaded vCPU: -EINVAL');
    hvc(m, 0, '__pkvm_vcpu_load', vm.handle, 0);
    t.equal(hvcRet(m, 0, '__kvm_vcpu_run', hv + PAGE_SIZE), -22, 'x1 not the loaded vCPU: -EINVAL');
    guest.ops.push({ ipa: 0x8000_1008, write: true });
    t.equal(hvcRet(m, 0, '__kvm_vcpu_run', hv), ArmException.TRAP);
    t.equal(esrEc(get64(m, hv + HOST_VCPU.FAULT_ESR)), EsrEc.DABT_LOW);
    t.equal(get64(m, hv + HOST_VCPU.FAULT_FAR), 0x8000_1008);
    const hp = get64(m, hv + HOST_VCPU.FAULT_HPFAR);
    t.equal(hpfarToIpa(hp >>> 0, Math.floor(hp / 2 ** 32)), 0x8000_1000);
    topupHostMemcache(m, hv + HOST_VCPU.MC_HEAD, 2);
    t.equal(hvcRet(m, 0, '__pkvm_host_map_guest', allocHostPages(m) / PAGE_SIZE, 0x8000_1000 / PAGE_SIZE), 0);
    t.equal(hvcRet(m, 0, '__kvm_vcpu_run', hv), ArmException.IRQ, 'guest completed');
    t.equal(guest.ops.length, 0);
    t.ok(hostAccess(m.hyp, 0, allocHostPages(m), true), 'host stage-2 restored after the run');
    t.same(m.hyp.warnings, []);
    t.end();
  });
  t.test('handles a protected guest\'s MEM_SHARE / HYP_MEMINFO at EL2 and continues', (t) => {
    const guest = new ScriptedGuest();
    const m = bootMachine({ runner: guest });
    const vm = createVm(m, { protected: true });
    hvc(m, 0, '__pkvm_vcpu_load', vm.handle, 0);
    topupHostMemcache(m, vm.vcpuPas[0]! + HOST_VCPU.MC_HEAD, 2);
    const pa = allocHostPages(m);
    t.equal(hvcRet(m, 0, '__pkvm_host_map_guest', pa / PAGE_SIZE, 0x20), 0);
    t.notOk(hostAccess(m.hyp, 0, pa, false), 'donated page refused to the host');
    const hv = vm.vcpuPas[0]!;
    guest.ops.push({ hvc: [GuestHcall.HYP_MEMINFO, 0, 0, 0] });
    t.equal(hvcRet(m, 0, '__kvm_vcpu_run', hv), ArmException.IRQ);
    t.equal(guest.gregs.u(0), PAGE_SIZE, 'MEMINFO returns the granule');
    guest.ops.push({ hvc: [GuestHcall.MEM_SHARE, 0x20 * PAGE_SIZE, 0, 0] });
    t.equal(hvcRet(m, 0, '__kvm_vcpu_run', hv), ArmException.IRQ);
    t.equal(guest.gregs.signed(0), SmcccRet.SUCCESS);
    t.equal(m.hyp.hostState(pa), PageState.SHARED_BORROWED);
    t.ok(hostAccess(m.hyp, 0, pa, true), 'shared page accessible to the host');
    guest.ops.push({ hvc: [GuestHcall.MEM_SHARE, 0x20 * PAGE_SIZE, 0, 0] });
    hvcRet(m, 0, '__kvm_vcpu_run', hv);
    t.equal(guest.gregs.signed(0), SmcccRet.INVALID_PARAMETER, 'sharing twice fails');
    guest.ops.push({ hvc: [GuestHcall.MEM_UNSHARE, 0x20 * PAGE_SIZE, 1, 0] });
    hvcRet(m, 0, '__kvm_vcpu_run', hv);
    t.equal(guest.gregs.signed(0), SmcccRet.INVALID_PARAMETER, 'non-zero unused argument');
    guest.ops.push({ hvc: [GuestHcall.MEM_UNSHARE, 0x20 * PAGE_SIZE, 0, 0] });
    hvcRet(m, 0, '__kvm_vcpu_run', hv);
    t.equal(guest.gregs.signed(0), SmcccRet.SUCCESS);
    t.notOk(hostAccess(m.hyp, 0, pa, false), 'refused again after the unshare');
    t.same(m.hyp.warnings, []);
    t.end();
  });
  t.test('exits to the host on a non-protected guest\'s HVC', (t) => {
    const guest = new ScriptedGuest();
    const m = bootMachine({ runner: guest });
    const vm = createVm(m);
    hvc(m, 0, '__pkvm_vcpu_load', vm.handle, 0);
    guest.ops.push({ hvc: [GuestHcall.MEM_SHARE, 0, 0, 0] });
    t.equal(hvcRet(m, 0, '__kvm_vcpu_run', vm.vcpuPas[0]!), ArmException.TRAP);
    t.equal(esrEc(get64(m, vm.vcpuPas[0]! + HOST_VCPU.FAULT_ESR)), EsrEc.HVC64);
    t.end();
  });
  t.end();
});

t.test('pre-finalise TLB hypercalls invalidate the VMID named by the host s2 mmu struct', (t) => {
  const guest = new ScriptedGuest();
  const m = bootMachine({ runner: guest, finalize: false });
  const vm = createVm(m);
  const hv = vm.vcpuPas[0]!;
  hvc(m, 0, '__pkvm_vcpu_load', vm.handle, 0);
  topupHostMemcache(m, hv + HOST_VCPU.MC_HEAD, 2);
  t.equal(hvcRet(m, 0, '__pkvm_host_map_guest', allocHostPages(m) / PAGE_SIZE, 0x30), 0);
  const vmid = m.hyp.vmByHandle(vm.handle)!.vmid;
  const fill = (): void => {
    guest.ops.push({ ipa: 0x30 * PAGE_SIZE, write: false });
    hvcRet(m, 0, '__kvm_vcpu_run', hv);
  };
  const s2mmu = allocHostPages(m);
  m.mem.write64(s2mmu + HOST_S2_MMU.VMID, vmid, 0);
  fill();
  t.ok(m.tlb.countVmid(vmid) > 0, 'guest access cached');
  hvc(m, 0, '__kvm_tlb_flush_vmid', s2mmu);
  t.equal(m.tlb.countVmid(vmid), 0, '__kvm_tlb_flush_vmid');
  fill();
  hvc(m, 0, '__kvm_tlb_flush_vmid_ipa', s2mmu, 0x30 * PAGE_SIZE, 3);
  t.equal(m.tlb.countVmid(vmid), 0, '__kvm_tlb_flush_vmid_ipa');
  fill();
  const before = m.tlb.countVmid(vmid);
  hvc(m, 0, '__kvm_flush_cpu_context', s2mmu);
  // TLBI VMALLE1 removes only the combined stage 1+2 copies; stage-2-only copies survive (arm-s2.md §8.1).
  t.ok(m.tlb.countVmid(vmid) <= before, '__kvm_flush_cpu_context');
  hvc(m, 0, '__kvm_tlb_flush_vmid', s2mmu);
  fill();
  hvc(m, 0, '__kvm_flush_vm_context');
  t.equal(m.tlb.countVmid(vmid), 0, '__kvm_flush_vm_context');
  fill();
  hvc(m, 0, '__kvm_tlb_flush_vmid', MMIO_BASE);
  t.ok(m.tlb.countVmid(vmid) > 0, 'an unreadable struct pointer does nothing');
  t.same(m.hyp.warnings, []);
  t.end();
});
