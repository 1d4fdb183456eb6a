/**
 * The hyp memcache protocol (reference pkvm.md §5): `struct kvm_hyp_memcache` is {head PA, nr_pages}, with the
 * free pages linked through their first 64-bit word. The host keeps one per vCPU (in its `struct kvm_vcpu`, layout
 * in `arch/smccc.ts` {@link HOST_VCPU}) and one teardown memcache per VM ({@link HOST_KVM}); EL2 keeps one per hyp
 * vCPU ({@link HypMemcache}).
 *
 * Mirrors `push_hyp_memcache()`, `pop_hyp_memcache()`, `__topup_hyp_memcache()` (arch/arm64/include/asm/kvm_host.h)
 * and `refill_memcache()` / `admit_host_page()` (arch/arm64/kvm/hyp/nvhe/mm.c, 2022 series).
 */

import { PAGE_SIZE } from '../arch/addr.js';
import { Err, type Ret } from '../arch/errno.js';
import { Bug, injected } from '../arch/inject.js';
import { HOST_VCPU } from '../arch/smccc.js';
import type { PhysMem, U64 } from '../mem/phys-mem.js';

/** An EL2-side `struct kvm_hyp_memcache`. */
export class HypMemcache {
  /** PA of the first page (0 when empty). */
  head = 0;
  /** Pages on the list. */
  nrPages = 0;
}

/** A {head, nr_pages} pair read from host memory (a copy EL2 works on, so the host cannot change it mid-way). */
export interface MemcacheCopy {
  head: number;
  nrPages: number;
}

const tmp: U64 = { lo: 0, hi: 0 };

/** Reads a 64-bit host field as a number; values above 2^53 saturate (host garbage, only compared and counted). */
export function readU64(mem: PhysMem, pa: number): number {
  mem.read64(pa, tmp);
  return tmp.hi >= 0x20_0000 ? Number.MAX_SAFE_INTEGER : tmp.hi * 0x1_0000_0000 + tmp.lo;
}

/** Writes a non-negative integer below 2^53 as a 64-bit field. */
export function writeU64(mem: PhysMem, pa: number, v: number): void {
  mem.write64(pa, v >>> 0, Math.floor(v / 0x1_0000_0000) >>> 0);
}

/**
 * Pushes the page at `pa` onto a memcache: its first word gets the old head. Mirrors `push_hyp_memcache()`.
 * @param mc the memcache (EL2's own, or a copy of a host one).
 */
export function pushHypMemcache(mem: PhysMem, mc: MemcacheCopy, pa: number): void {
  writeU64(mem, pa, mc.head);
  mc.head = pa;
  mc.nrPages++;
}

/**
 * Pops a page. Mirrors `pop_hyp_memcache()`.
 * @returns the page's PA (page aligned: the model rounds a host-supplied link down as `hyp_phys_to_pfn` does), or
 * -1 when empty.
 */
export function popHypMemcache(mem: PhysMem, mc: MemcacheCopy): number {
  if (mc.nrPages === 0) return -1;
  const pa = Math.floor(mc.head / PAGE_SIZE) * PAGE_SIZE;
  mc.head = readU64(mem, pa);
  mc.nrPages--;
  return pa;
}

/** Reads the host memcache embedded at `pa` (head, nr_pages) into `out`. */
export function readHostMemcache(mem: PhysMem, pa: number, out: MemcacheCopy): void {
  out.head = readU64(mem, pa);
  out.nrPages = readU64(mem, pa + 8);
}

/** Writes `mc` back to the host memcache embedded at `pa`. */
export function writeHostMemcache(mem: PhysMem, pa: number, mc: MemcacheCopy): void {
  writeU64(mem, pa, mc.head);
  writeU64(mem, pa + 8, mc.nrPages);
}

/** The working copy of the host memcache during a refill (one at a time: hypercalls do not nest). */
const hostCopy: MemcacheCopy = { head: 0, nrPages: 0 };

/** Donates one host page to EL2; 0 on success (the caller passes `hostDonateHyp`). */
export type AdmitFn = (pfn: number) => Ret;

/**
 * Moves pages from the host vCPU's memcache into EL2's until EL2 holds `minPages`: each page is first donated
 * host→hyp (which checks that the host owns it), and only then popped, so a page the host does not own stops the
 * refill with -ENOMEM and is never touched. The host struct is copied first and written back at the end.
 *
 * Mirrors `refill_memcache()` / `admit_host_page()` (arch/arm64/kvm/hyp/nvhe/mm.c) as called by
 * `pkvm_refill_memcache()` (arch/arm64/kvm/hyp/nvhe/hyp-main.c, 2022 series).
 * @param hostVcpuPa PA of the host `struct kvm_vcpu` (pinned by EL2, so readable).
 * @returns 0, or -ENOMEM when the host ran out of pages or offered one it does not own (pages admitted so far stay).
 */
export function refillMemcache(
  mem: PhysMem,
  mc: HypMemcache,
  minPages: number,
  hostVcpuPa: number,
  admit: AdmitFn,
): Ret {
  // Nothing to move: the kernel copies the host struct and writes the same values back, which changes nothing.
  if (mc.nrPages >= minPages) return 0;
  const host = hostCopy;
  readHostMemcache(mem, hostVcpuPa + HOST_VCPU.MC_HEAD, host);
  let ret: Ret = 0;
  while (mc.nrPages < minPages) {
    if (host.nrPages === 0 || (!injected(Bug.MEMCACHE_NO_OWNERSHIP_CHECK) && admit(Math.floor(host.head / PAGE_SIZE)) !== 0)) {
      ret = Err.ENOMEM;
      break;
    }
    pushHypMemcache(mem, mc, popHypMemcache(mem, host));
  }
  writeHostMemcache(mem, hostVcpuPa + HOST_VCPU.MC_HEAD, host);
  return ret;
}
