/**
 * Hypercalls a protected guest makes to EL2 (the KVM vendor-hyp services of pkvm.md §2.4): HYP_MEMINFO, MEM_SHARE
 * and MEM_UNSHARE, handled at EL2 on the guest's HVC exit without involving the host.
 *
 * Mirrors `kvm_handle_pvm_hvc64()` / `pkvm_memshare_call()` / `pkvm_memunshare_call()`
 * (arch/arm64/kvm/hyp/nvhe/pkvm.c, V1 84/89). Unused argument registers must be zero, else
 * SMCCC_RET_INVALID_PARAMETER; a failed transition is also reported as INVALID_PARAMETER (the A14 conversion of
 * -EFAULT into a stage-2 fault exit is not modelled: the guest must touch the page before sharing it).
 */

import { PAGE_SIZE } from '../arch/addr.js';
import type { RegFile } from '../arch/regs.js';
import { GuestHcall, SmcccRet } from '../arch/smccc.js';
import type { Hyp } from './hyp.js';
import { guestShareHost, guestUnshareHost } from './mem-protect.js';
import type { HypVcpu } from './vm.js';

/** True when x`from`…x3 are all zero. */
function argsZero(regs: RegFile, from: number): boolean {
  for (let n = from; n <= 3; n++) if (regs.lo(n) !== 0 || regs.hi(n) !== 0) return false;
  return true;
}

/**
 * Handles a protected guest's HVC at EL2; the result goes into the guest's x0 (and x1…x3 for MEMINFO).
 * Mirrors `kvm_handle_pvm_hvc64()` (arch/arm64/kvm/hyp/nvhe/pkvm.c).
 * @returns true when handled at EL2 (the guest continues), false when the call must go to the host.
 */
export function handleGuestHvc(hyp: Hyp, vcpu: HypVcpu, regs: RegFile): boolean {
  const id = regs.hi(0) === 0 ? regs.lo(0) : -1;
  switch (id) {
    case GuestHcall.HYP_MEMINFO:
      if (!argsZero(regs, 1)) regs.setSigned(0, SmcccRet.INVALID_PARAMETER);
      else regs.setU(0, PAGE_SIZE);
      return true;
    case GuestHcall.MEM_SHARE:
    case GuestHcall.MEM_UNSHARE: {
      const ipa = regs.u(1);
      if (!argsZero(regs, 2) || !Number.isSafeInteger(ipa) || ipa % PAGE_SIZE !== 0) {
        regs.setSigned(0, SmcccRet.INVALID_PARAMETER);
        return true;
      }
      const ret = id === GuestHcall.MEM_SHARE ? guestShareHost(hyp, vcpu, ipa) : guestUnshareHost(hyp, vcpu, ipa);
      regs.setSigned(0, ret === 0 ? SmcccRet.SUCCESS : SmcccRet.INVALID_PARAMETER);
      return true;
    }
    default:
      return false;
  }
}
