/**
 * The host kernel's own loads and stores to RAM (its linear map). Every access first passes the host stage-2 check
 * through the {@link HostMemPort}; a refused access is an oops (the abort EL2 injects into a kernel access, V1
 * 81/89) and the store does not happen. In the model the kernel's linear map is the identity (`__va(pa) == pa`).
 */

import type { PhysMem, U64 } from '../mem/phys-mem.js';
import type { KernelLog } from './klog.js';
import type { HostMemPort } from './ports.js';

/** Host kernel access to physical memory, checked by the host stage-2. */
export class HostRam {
  /** Physical memory. */
  readonly mem: PhysMem;
  /** The host stage-2 check. */
  readonly port: HostMemPort;
  /** Where refused accesses are reported. */
  readonly log: KernelLog;

  /**
   * @param mem physical memory.
   * @param port the host stage-2 check (EL2's host-abort handler).
   * @param log the kernel log that records oopses.
   */
  constructor(mem: PhysMem, port: HostMemPort, log: KernelLog) {
    this.mem = mem;
    this.port = port;
    this.log = log;
  }

  /** Checks one access; records an oops when EL2 refuses it. */
  private check(cpu: number, pa: number, write: boolean): boolean {
    if (this.port.access(cpu, pa, write)) return true;
    this.log.oops(`Unable to handle kernel ${write ? 'write to' : 'read from'} PA 0x${pa.toString(16)} (cpu ${cpu})`);
    return false;
  }

  /**
   * Stores a 64-bit word.
   * @returns false when the host stage-2 refused the store (an oops was recorded) or `pa` is not RAM.
   */
  write64(cpu: number, pa: number, lo: number, hi: number): boolean {
    return this.check(cpu, pa, true) && this.mem.write64(pa, lo, hi);
  }

  /**
   * Loads a 64-bit word into `out`.
   * @returns false (and `out` zeroed) when the load was refused or `pa` is not RAM.
   */
  read64(cpu: number, pa: number, out: U64): boolean {
    if (!this.check(cpu, pa, false)) {
      out.lo = 0;
      out.hi = 0;
      return false;
    }
    return this.mem.read64(pa, out);
  }

  /**
   * `copy_highpage()`: copies the 4 KiB page at `src` to `dst` (migration, copy-on-write).
   * @returns false when either access was refused.
   */
  copyPage(cpu: number, dst: number, src: number): boolean {
    if (!this.check(cpu, src, false) || !this.check(cpu, dst, true)) return false;
    const from = this.mem.pageForRead(src);
    const to = this.mem.pageForWrite(dst);
    if (from === null || to === null) return false;
    to.set(from);
    return true;
  }

  /**
   * `clear_page()`: zeroes the 4 KiB page at `pa`.
   * @returns false when the store was refused.
   */
  zeroPage(cpu: number, pa: number): boolean {
    if (!this.check(cpu, pa, true)) return false;
    this.mem.zero(pa, 4096);
    return true;
  }
}
