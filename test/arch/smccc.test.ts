import t from 'tap';
import {
  GuestHcall,
  HCALLS_PKVM_2022,
  hcallFuncId,
  hcallName,
  hypVmSize,
  hypVcpuSize,
  KVM_HOST_SMCCC_BASE,
  kvmHostSmcccId,
  PROFILE_PKVM_2022,
  SMCCC_OWNER_VENDOR_HYP,
  smcccCallVal,
} from '../../src/arch/smccc.js';

t.test('smcccCallVal', (t) => {
  t.test('forms fast SMC64 vendor-hyp ids as 0xC600_0000 + n (ARM_SMCCC_CALL_VAL)', (t) => {
    t.equal(smcccCallVal(true, true, SMCCC_OWNER_VENDOR_HYP, 0), KVM_HOST_SMCCC_BASE);
    t.equal(smcccCallVal(true, true, SMCCC_OWNER_VENDOR_HYP, 3), GuestHcall.MEM_SHARE);
    t.equal(smcccCallVal(false, false, 0, 0xffff), 0xffff);
    t.equal(smcccCallVal(true, false, 0x3f, 0), 0xbf00_0000);
    t.end();
  });
  t.test('truncates the owner and function fields to their widths', (t) => {
    t.equal(smcccCallVal(false, false, 0x40, 0x1_0001), 1);
    t.end();
  });
  t.end();
});

t.test('pkvm-2022 profile', (t) => {
  t.test('uses the CORE numbering of pkvm.md §3.4 (a\')', (t) => {
    t.equal(HCALLS_PKVM_2022.__pkvm_prot_finalize, 12);
    t.equal(HCALLS_PKVM_2022.__pkvm_host_share_hyp, 13);
    t.equal(HCALLS_PKVM_2022.__pkvm_host_unshare_hyp, 14);
    t.equal(HCALLS_PKVM_2022.__pkvm_host_reclaim_page, 15);
    t.equal(HCALLS_PKVM_2022.__pkvm_host_map_guest, 16);
    t.equal(HCALLS_PKVM_2022.__pkvm_init_vm, 22);
    t.equal(HCALLS_PKVM_2022.__pkvm_init_vcpu, 23);
    t.equal(HCALLS_PKVM_2022.__pkvm_teardown_vm, 24);
    t.equal(HCALLS_PKVM_2022.__pkvm_vcpu_load, 25);
    t.equal(HCALLS_PKVM_2022.__pkvm_vcpu_put, 26);
    t.equal(HCALLS_PKVM_2022.__kvm_tlb_flush_vmid, 10);
    t.end();
  });
  t.test('is dense: names[n] inverts ids', (t) => {
    const names = PROFILE_PKVM_2022.names;
    t.equal(names.length, 28);
    for (let n = 0; n < names.length; n++) t.equal(PROFILE_PKVM_2022.ids[names[n]!], n);
    t.equal(PROFILE_PKVM_2022.minPostInit, HCALLS_PKVM_2022.__pkvm_prot_finalize);
    t.end();
  });
  t.test('hcallFuncId and hcallName convert both ways and reject unknowns', (t) => {
    t.equal(hcallFuncId(PROFILE_PKVM_2022, '__pkvm_host_map_guest'), kvmHostSmcccId(16));
    t.equal(hcallFuncId(PROFILE_PKVM_2022, '__pkvm_host_share_guest'), null);
    t.equal(hcallFuncId(PROFILE_PKVM_2022, 'toString'), null);
    t.equal(hcallName(PROFILE_PKVM_2022, 15), '__pkvm_host_reclaim_page');
    t.equal(hcallName(PROFILE_PKVM_2022, 28), null);
    t.equal(hcallName(PROFILE_PKVM_2022, -1), null);
    t.end();
  });
  t.end();
});

t.test('guest hypercall ids are 0xC600_0002/3/4', (t) => {
  t.equal(GuestHcall.HYP_MEMINFO, kvmHostSmcccId(2));
  t.equal(GuestHcall.MEM_SHARE, kvmHostSmcccId(3));
  t.equal(GuestHcall.MEM_UNSHARE, kvmHostSmcccId(4));
  t.end();
});

t.test('hyp struct sizes are page aligned and grow with the vCPU count', (t) => {
  t.equal(hypVmSize(1) % 4096, 0);
  t.equal(hypVcpuSize() % 4096, 0);
  t.ok(hypVmSize(1024) > hypVmSize(1));
  t.end();
});
