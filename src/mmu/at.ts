/**
 * `AT S12E1R` / `AT S12E1W` executed at EL2 with EL1 stage 1 off (SCTLR_EL1.M = 0, the machine of the oracle and of
 * s2emu's guests): the stage-2 walk with address-translation semantics and its report in PAR_EL1 (Arm ARM C5.5 "AT
 * S12E1R, S12E1W", D8.14 "Address translation instructions"; reference arm-s2.md §7.1–§7.2). Mirrors QEMU's
 * `do_ats_write()` (target/arm/helper.c) for the parts the architecture fixes.
 *
 *   stage 1 (off)   VA = IPA; an IPA at or above 2^PAMax is a stage-1 Address size fault, level 0 (PAR.S = 0)
 *   stage 2 fault   PAR: F=1, FST, PTW = S1PTW, S=1 (no exception)
 *   stage 2 SEA     not reported in PAR: a synchronous Data Abort at EL2 (EC 0x25, CM=1, WnR=1), ESR/FAR below
 *   success         PAR: PA[51:12], NS=1, SH and ATTR of the combined stage-1 (Device-nGnRnE) + stage-2 attributes
 *
 * Hardware updates follow the walker's AT rule (`WalkFlag.AT`): the Access flag may be set with HA; the dirty state
 * is never set by AT (Arm; QEMU 7.2 does set it, arm-s2.md §11 #7).
 */

import { EsrEc, esrDataAbort } from '../arch/esr.js';
import { FaultType, faultStatusCode } from '../arch/fault.js';
import { Shareability, parFaultLo, parSuccessHi, parSuccessLo } from '../arch/par.js';
import type { PhysMem } from '../mem/phys-mem.js';
import type { S2Config } from './s2-config.js';
import { AccessKind, WalkFlag, s2Walk } from './s2-walk.js';
import type { WalkResult } from './walk-result.js';
import type { WalkTrace } from './walk-trace.js';

/** MAIR-format ATTR of Device-nGnRnE (the stage-1 result for data accesses with stage 1 off). */
export const ATTR_DEVICE_NGNRNE = 0x00;
/** MAIR-format ATTR of Normal, Inner and Outer Write-Back, Read/Write-Allocate, non-transient. */
export const ATTR_NORMAL_WB_RWA = 0xff;

/** What an AT instruction produced: a PAR_EL1 value, or a synchronous exception at EL2. */
export class AtResult {
  /** PAR_EL1 bits[31:0] (when {@link exception} is false). */
  parLo = 0;
  /** PAR_EL1 bits[63:32]. */
  parHi = 0;
  /** The AT took a synchronous Data Abort at EL2 instead of writing PAR_EL1 (external abort on the walk). */
  exception = false;
  /** ESR_EL2 bits[31:0] of that exception (bits[63:32] are 0). */
  esrLo = 0;
  /** FAR_EL2 bits[31:0]: the AT's input address. */
  farLo = 0;
  /** FAR_EL2 bits[63:32]. */
  farHi = 0;
  /** The fault was taken at stage 1 (IPA beyond PAMax), so no walk was made. */
  stage1 = false;
}

/**
 * ATTR of the combined attributes when stage 1 is off (data: Device-nGnRnE) and stage 2 maps with `memAttr`
 * (descriptor bits[5:2]). With FWB = 0 a stage-1 Device-nGnRnE always wins (ASL `S2CombineS1MemAttrs`: the more
 * restrictive Device type). With FWB = 1 (ASL `S2ApplyFWBMemAttrs`, arm-s2.md §9.3) only MemAttr[2:0] = 0b110 forces
 * Normal Write-Back; 0b0xx and 0b100 are Device, 0b101 and 0b111 take the stage-1 Device type; bit 5 set is Device.
 */
export function atAttrStage1Off(memAttr: number, fwb: boolean): number {
  if (!fwb) return ATTR_DEVICE_NGNRNE;
  if ((memAttr & 0b1000) !== 0) return ATTR_DEVICE_NGNRNE;
  return (memAttr & 0b111) === 0b110 ? ATTR_NORMAL_WB_RWA : ATTR_DEVICE_NGNRNE;
}

/**
 * Runs `AT S12E1R` (`write` false) or `AT S12E1W` (`write` true) on an IPA given as halves (it may exceed 2^53).
 *
 * @param mem physical memory holding the tables
 * @param cfg the decoded stage-2 configuration
 * @param paBits the PE's PAMax (the stage-1-off range check)
 * @param ipaLo IPA bits[31:0]
 * @param ipaHi IPA bits[63:32]
 * @param write W form (write permission is checked; no dirty-state update)
 * @param walk scratch walk result (holds the walk afterwards, for traces and tests)
 * @param trace walk trace or null
 * @param out receives PAR_EL1 or the exception
 * @remarks Mirrors `do_ats_write()` (QEMU target/arm/helper.c) with Arm's no-dirty-update rule.
 */
export function atS12E1(
  mem: PhysMem,
  cfg: S2Config,
  paBits: number,
  ipaLo: number,
  ipaHi: number,
  write: boolean,
  walk: WalkResult,
  trace: WalkTrace | null,
  out: AtResult,
): void {
  out.exception = false;
  out.esrLo = 0;
  out.farLo = 0;
  out.farHi = 0;
  out.parHi = 0;
  // Stage 1 off: the VA is the output; bits at or above PAMax make it a stage-1 address size fault (ASL
  // AArch64.S1DisabledOutput / AArch64.OAOutOfRange), taken before stage 2.
  if (ipaHi >>> 0 >= 2 ** (paBits - 32)) {
    out.stage1 = true;
    out.parLo = parFaultLo(faultStatusCode(FaultType.ADDRESS_SIZE, 0), false, false);
    return;
  }
  out.stage1 = false;
  const ipa = (ipaHi >>> 0) * 0x1_0000_0000 + (ipaLo >>> 0);
  const fault = s2Walk(mem, cfg, ipa, write ? AccessKind.WRITE : AccessKind.READ, WalkFlag.AT, walk, trace);
  if (fault === FaultType.NONE) {
    const attr = cfg.enabled ? atAttrStage1Off(walk.memAttr, cfg.fwb) : ATTR_DEVICE_NGNRNE;
    // Device results are Outer Shareable (the stage-1 Device-nGnRnE makes every stage-1-off result Device, or
    // Normal WB combined with a stage-1 OSH); PAR reports 0b10 either way.
    out.parLo = parSuccessLo(walk.pa, Shareability.OSH, true);
    out.parHi = parSuccessHi(walk.pa, attr);
    return;
  }
  const fsc = faultStatusCode(fault, walk.level);
  if (fault === FaultType.SEA_WALK) {
    // Arm and QEMU: an external abort on the walk is taken as a Data Abort, not reported in PAR (arm-s2.md §7.2).
    out.exception = true;
    out.esrLo = esrDataAbort(EsrEc.DABT_CUR, 0, true, walk.s1ptw, true, fsc);
    out.farLo = ipaLo >>> 0;
    out.farHi = ipaHi >>> 0;
    out.parLo = 0;
    return;
  }
  out.parLo = parFaultLo(fsc, walk.s1ptw, true);
}
