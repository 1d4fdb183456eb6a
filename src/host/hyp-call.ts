/**
 * The host's hypercall wrapper, `kvm_call_hyp_nvhe()` (arch/arm64/include/asm/kvm_host.h): an SMCCC 1.1 `HVC #0`
 * with `KVM_HOST_SMCCC_FUNC(f)` in x0 and the arguments in x1…, then `WARN_ON(res.a0 != SMCCC_RET_SUCCESS)` and the
 * result from x1. The function id comes from the ABI profile's table (`arch/smccc.ts`), so the same host code runs
 * against any kernel's numbering.
 */

import { RegFile } from '../arch/regs.js';
import { hcallFuncId, type HcallProfile } from '../arch/smccc.js';
import { Err } from '../arch/errno.js';
import type { KernelLog } from './klog.js';
import type { HvcConduit } from './ports.js';

/** Entries of the most-recently-used name cache of {@link HypCaller.call} (a power of two). */
const MRU = 4;

/** Issues host hypercalls through an {@link HvcConduit}. */
export class HypCaller {
  private readonly conduit: HvcConduit;
  private readonly log: KernelLog;
  /** The ABI profile whose numbering is used. */
  readonly profile: HcallProfile;
  /** The register file the host fills for each call (x0…x7); holds x0/x1 of the last call afterwards. */
  readonly regs = new RegFile();
  private readonly idByName: Record<string, number> = {};
  /**
   * Calls issued, by kernel name. Each property is a read-only view (an enumerable getter) of a slot of
   * {@link HypCaller.tally}, which `call` increments without a by-name store.
   */
  readonly counts: Record<string, number> = {};
  /** The counters behind {@link HypCaller.counts}, by slot (one per profile name). */
  private readonly tally: Float64Array;
  /**
   * Most-recently-used names (`mruName[k]`), with their function ids and counter slots: `call` compares the name it
   * is given with these (callers pass string literals, so the comparison is by identity) before the by-name lookup.
   */
  private readonly mruName: string[] = [];
  private readonly mruId = new Float64Array(MRU);
  private readonly mruSlot = new Int32Array(MRU);
  private readonly slotByName: Record<string, number> = {};
  private mruNext = 0;

  /**
   * @param conduit the HVC path to EL2.
   * @param profile the hypercall numbering.
   * @param log the kernel log (for the `WARN_ON` on a refused call).
   */
  constructor(conduit: HvcConduit, profile: HcallProfile, log: KernelLog) {
    this.conduit = conduit;
    this.profile = profile;
    this.log = log;
    const names: string[] = [];
    for (const name of profile.names) {
      if (name === undefined) continue;
      const id = hcallFuncId(profile, name);
      if (id !== null) {
        this.idByName[name] = id;
        if (this.slotByName[name] === undefined) {
          this.slotByName[name] = names.length;
          names.push(name);
        }
      }
    }
    const tally = new Float64Array(names.length);
    this.tally = tally;
    for (let k = 0; k < names.length; k++) {
      Object.defineProperty(this.counts, names[k]!, { enumerable: true, get: () => tally[k]! }); // JUSTIFY: k < length.
    }
  }

  /** True when the profile has a hypercall named `fn` (the kernel source selecting its wrappers at build time). */
  has(fn: string): boolean {
    return this.idByName[fn] !== undefined;
  }

  /**
   * `kvm_call_hyp_nvhe(fn, a1, a2, a3, a4)`: non-negative integer arguments below 2^53 (PAs, pfns, handles,
   * indices), unused ones 0.
   *
   * Mirrors `kvm_call_hyp_nvhe()` (arch/arm64/include/asm/kvm_host.h): x0 other than SMCCC_RET_SUCCESS is a
   * `WARN_ON`. The 2022 macro then returns the stale x1; the model returns -EOPNOTSUPP instead, as newer trees do,
   * so that a refused call can never be mistaken for a result.
   * @param cpu physical CPU issuing the HVC.
   * @param fn kernel name of the hypercall; one the profile lacks is a `WARN_ON` and -EOPNOTSUPP (no HVC issued).
   * @returns x1 truncated to `int`, as the kernel's callers read it (an errno, 0, or a handle).
   */
  call(cpu: number, fn: string, a1 = 0, a2 = 0, a3 = 0, a4 = 0): number {
    const mru = this.mruName;
    let k = 0;
    const n = mru.length;
    while (k < n && mru[k] !== fn) k++;
    let id: number;
    let slot: number;
    if (k < n) {
      id = this.mruId[k]!; // JUSTIFY: k < MRU.
      slot = this.mruSlot[k]!;
    } else {
      const byName = this.idByName[fn];
      if (byName === undefined) {
        // A kernel built for this ABI has no such call; the host paths select by profile so they never get here.
        // Reaching it is a WARN with the failure value of the wrapper, not a crash of the model.
        this.log.warnOn(true, `kvm_call_hyp_nvhe(${fn}): not in profile ${this.profile.name}`);
        return Err.EOPNOTSUPP;
      }
      id = byName;
      slot = this.slotByName[fn]!; // JUSTIFY: set with idByName.
      // Append, then replace the least recently added entry (round robin).
      const at = n < MRU ? n : this.mruNext;
      if (n === MRU) this.mruNext = (at + 1) & (MRU - 1);
      mru[at] = fn;
      this.mruId[at] = id;
      this.mruSlot[at] = slot;
    }
    const r = this.regs;
    r.set(0, id, 0);
    r.setU(1, a1);
    r.setU(2, a2);
    r.setU(3, a3);
    r.setU(4, a4);
    r.set(5, 0, 0);
    r.set(6, 0, 0);
    r.set(7, 0, 0);
    this.tally[slot]!++; // JUSTIFY: slot < tally.length (one per profile name).
    this.conduit.hvc(cpu, r);
    if (r.lo(0) !== 0 || r.hi(0) !== 0) {
      // The message is built only on the failure path: this is the hypercall hot path.
      this.log.warnOn(true, `kvm_call_hyp_nvhe(${fn}): x0 = ${r.signed(0)}`);
      return Err.EOPNOTSUPP;
    }
    return r.lo(1) | 0;
  }
}
