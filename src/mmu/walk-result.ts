/**
 * The preallocated out-object of one stage-2 walk (Arm ARM D8.3 / ASL `AArch64.S2Walk` result, plus the fault
 * record `FaultRecord.{statuscode, level, s1ptw}`). Faults are values (DESIGN.md §3): `s2Walk` fills one of these
 * and returns the fault kind; nothing is allocated per walk.
 */

import { FaultType } from '../arch/fault.js';

/** `leafLevel` value when the walk found no leaf (config fault, invalid entry, table address fault, SEA). */
export const NO_LEAF = 9;

/** Result of one stage-2 walk. All fields are set in the constructor, in this order, and rewritten by `reset()`. */
export class WalkResult {
  /** `FaultType.NONE` on success, else the fault kind. */
  fault: FaultType = FaultType.NONE;
  /** Fault level (−1…3; 0 for configuration/base faults). Meaningless on success. */
  level = 0;
  /** The walk was the stage-2 translation of a stage-1 table walk (ESR.S1PTW). */
  s1ptw = false;
  /** The input IPA. */
  ipa = 0;
  /** Output PA (the IPA itself when stage 2 is disabled). Meaningful on success only. */
  pa = 0;
  /** Level of the leaf descriptor, or {@link NO_LEAF}. */
  leafLevel = NO_LEAF;
  /** log2 of the bytes the leaf maps (ASL `TranslationSize`; the contiguous hint is not folded in). */
  leafShift = 0;
  /** PA of the last descriptor read (the leaf, or the entry that faulted); −1 when none was read. */
  descPa = -1;
  /** Bits[31:0] of that descriptor as finally in memory (after a hardware AF/dirty update). */
  descLo = 0;
  /** Bits[63:32] of that descriptor. */
  descHi = 0;
  /** Leaf MemAttr[3:0] (descriptor bits[5:2]). */
  memAttr = 0;
  /** Leaf S2AP[1:0] as finally in memory (bit 0 read, bit 1 write). */
  s2ap = 0;
  /** Output shareability: leaf SH[1:0], or VTCR_EL2.SH0 when DS=1. */
  sh = 0;
  /** Leaf XN[1:0] (descriptor bits[54:53]). */
  xn = 0;
  /** Leaf access flag as finally in memory. */
  af = false;
  /** Leaf DBM bit. */
  dbm = false;
  /** Leaf software bits[58:55]. */
  sw = 0;
  /** Leaf contiguous hint (bit 52). */
  cont = false;
  /** The walk wrote the leaf back (hardware AF and/or dirty-state update). */
  hwUpdated = false;

  /** Restores the constructor state. */
  reset(): void {
    this.fault = FaultType.NONE;
    this.level = 0;
    this.s1ptw = false;
    this.ipa = 0;
    this.pa = 0;
    this.leafLevel = NO_LEAF;
    this.leafShift = 0;
    this.descPa = -1;
    this.descLo = 0;
    this.descHi = 0;
    this.memAttr = 0;
    this.s2ap = 0;
    this.sh = 0;
    this.xn = 0;
    this.af = false;
    this.dbm = false;
    this.sw = 0;
    this.cont = false;
    this.hwUpdated = false;
  }
}
