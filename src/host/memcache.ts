/**
 * The host side of `struct kvm_hyp_memcache` (arch/arm64/include/asm/kvm_host.h; pkvm.md §5.1–§5.2): a list of
 * free host pages linked through their first 64-bit word, with {head PA, nr_pages} stored in a host structure EL2
 * can read (the vCPU's `arch.pkvm_memcache`, or the VM's `arch.pkvm.teardown_mc`, at the offsets `arch/smccc.ts`
 * fixes). The host fills it (`topup_hyp_memcache`) and EL2 drains it; at teardown EL2 fills the teardown memcache
 * and the host frees it (`free_hyp_memcache`). Every host load and store goes through the host stage-2.
 */

import { Err, type Ret } from '../arch/errno.js';
import type { U64 } from '../mem/phys-mem.js';
import type { HostPages } from './host-pages.js';
import type { HostRam } from './host-ram.js';

/** A host memcache embedded at a fixed PA in a host structure shared with EL2. */
export class HostMemcache {
  private readonly ram: HostRam;
  /** PA of the `head` field; `nr_pages` follows at +8. */
  readonly fieldPa: number;
  private readonly tmp: U64 = { lo: 0, hi: 0 };

  /**
   * @param ram host RAM access.
   * @param fieldPa PA of the embedded `struct kvm_hyp_memcache` (its `head` field).
   */
  constructor(ram: HostRam, fieldPa: number) {
    this.ram = ram;
    this.fieldPa = fieldPa;
  }

  /** Reads a 64-bit field as a number (values above 2^53 saturate; only EL2 bugs could put them there). */
  private read(cpu: number, pa: number): number {
    const t = this.tmp;
    this.ram.read64(cpu, pa, t);
    return t.hi >= 0x20_0000 ? Number.MAX_SAFE_INTEGER : t.hi * 0x1_0000_0000 + t.lo;
  }

  private write(cpu: number, pa: number, v: number): boolean {
    return this.ram.write64(cpu, pa, v >>> 0, Math.floor(v / 0x1_0000_0000) >>> 0);
  }

  /** `mc->head`. */
  head(cpu: number): number {
    return this.read(cpu, this.fieldPa);
  }

  /** `mc->nr_pages`. */
  nrPages(cpu: number): number {
    return this.read(cpu, this.fieldPa + 8);
  }

  /**
   * Pushes the page at `pa`: its first word gets the old head. Mirrors `push_hyp_memcache()`.
   * @returns false when a store was refused by the host stage-2 (an oops was recorded).
   */
  push(cpu: number, pa: number): boolean {
    const head = this.head(cpu);
    const nr = this.nrPages(cpu);
    return this.write(cpu, pa, head) && this.write(cpu, this.fieldPa, pa) && this.write(cpu, this.fieldPa + 8, nr + 1);
  }

  /**
   * Pops the first page. Mirrors `pop_hyp_memcache()`.
   * @returns its PA, or -1 when the memcache is empty or a load was refused.
   */
  pop(cpu: number): number {
    const nr = this.nrPages(cpu);
    if (nr === 0) return -1;
    const pa = this.head(cpu);
    const t = this.tmp;
    if (!this.ram.read64(cpu, pa, t)) return -1;
    const next = t.hi * 0x1_0000_0000 + t.lo;
    if (!this.write(cpu, this.fieldPa, next) || !this.write(cpu, this.fieldPa + 8, nr - 1)) return -1;
    return pa;
  }

  /**
   * Allocates host pages and pushes them until the memcache holds `minPages`.
   *
   * Mirrors `topup_hyp_memcache()` / `__topup_hyp_memcache()` (arch/arm64/kvm/mmu.c, kvm_host.h): pages already
   * pushed stay on failure.
   * @returns 0; -ENOMEM when the allocator runs dry; -EFAULT when a store was refused (an oops was recorded).
   */
  topup(cpu: number, minPages: number, pages: HostPages): Ret {
    let nr = this.nrPages(cpu);
    while (nr < minPages) {
      const pa = pages.allocPage();
      if (pa < 0) return Err.ENOMEM;
      if (!this.push(cpu, pa)) {
        pages.freePage(pa);
        return Err.EFAULT;
      }
      nr++;
    }
    return 0;
  }

  /**
   * Pops every page and frees it to the host allocator. Mirrors `free_hyp_memcache()` (arch/arm64/kvm/pkvm.c).
   * @returns the number of pages freed.
   */
  free(cpu: number, pages: HostPages): number {
    let freed = 0;
    for (;;) {
      const pa = this.pop(cpu);
      if (pa < 0) return freed;
      // A page the host allocator never handed out would be an EL2 bug: report it, do not corrupt the allocator.
      if (!pages.isAllocated(pa)) {
        this.ram.log.warnOn(true, `free_hyp_memcache: 0x${pa.toString(16)} is not a host page`);
        continue;
      }
      pages.freePage(pa);
      freed++;
    }
  }
}
