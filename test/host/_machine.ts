/** Builders for host tests: RAM, the environment fakes, a KvmHost, a VMM mm with guest memory and one VM. */
import { PAGE_SIZE } from '../../src/arch/addr.js';
import { PROFILE_PKVM_2022 } from '../../src/arch/smccc.js';
import { PhysMem } from '../../src/mem/phys-mem.js';
import { Kvm, KvmHost } from '../../src/host/kvm.js';
import { Mm, VmaKind } from '../../src/host/vmm-mem.js';
import { FakeEl2, FakeHostS2 } from './_env.js';

export const HOST_RAM = 0x4000_0000;
export const GUEST_HVA = 0x7f00_0000_0000;
export const GUEST_IPA = 0x8000_0000;

export interface HostFixture {
  mem: PhysMem;
  el2: FakeEl2;
  s2: FakeHostS2;
  host: KvmHost;
  mm: Mm;
  kvm: Kvm;
}

/**
 * A host with `hostPages` pages of RAM, a VMM with `guestPages` pages of anonymous memory at GUEST_HVA in memslot 0
 * at GUEST_IPA, and one VM with `nrVcpus` vCPUs (40-bit IPA: 3 levels, 2 memcache pages, 2-page pgd).
 */
export function hostFixture(opts: { hostPages?: number; guestPages?: number; nrVcpus?: number; kind?: VmaKind } = {}): HostFixture {
  const hostPages = opts.hostPages ?? 256;
  const guestPages = opts.guestPages ?? 16;
  const mem = new PhysMem();
  mem.addRegion(HOST_RAM, hostPages * PAGE_SIZE);
  const el2 = new FakeEl2(mem);
  const s2 = new FakeHostS2();
  const host = new KvmHost({
    mem,
    port: s2,
    conduit: el2,
    profile: PROFILE_PKVM_2022,
    ram: [{ base: HOST_RAM, size: hostPages * PAGE_SIZE }],
    ipaBits: 40,
  });
  const mm = new Mm(host.pages);
  if (mm.mmap(GUEST_HVA, guestPages * PAGE_SIZE, opts.kind ?? VmaKind.ANON) !== 0) throw new Error('mmap');
  const kvm = host.createVm(0, mm, opts.nrVcpus ?? 1, false);
  if (typeof kvm === 'number') throw new Error(`createVm ${kvm}`);
  if (kvm.memslots.set(0, GUEST_IPA, guestPages * PAGE_SIZE, GUEST_HVA) !== 0) throw new Error('memslot');
  return { mem, el2, s2, host, mm, kvm };
}
