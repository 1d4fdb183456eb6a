/**
 * pKVM page states and component ids, 2022-series encodings (reference pkvm.md §1.2–§1.4; STYLE.md §3).
 *
 * A component's view of a page is one of four states. The three stored states live in the two software bits of a
 * valid leaf (host stage-2, hyp stage-1, guest stage-2); NOPAGE is a meta-state only ever returned by a decoder:
 *
 *   SW1 SW0 (bits 56:55)   state
 *    0   0                 OWNED            exclusive owner, mapped
 *    0   1                 SHARED_OWNED     owner that has shared the page
 *    1   0                 SHARED_BORROWED  borrower of a share
 *    1   1                 (reserved, never written)
 *    –   –                 NOPAGE           meta: not accessible to this component
 *
 * Mirrors `enum pkvm_page_state`, `pkvm_mkstate()` and `pkvm_getstate()`
 * (arch/arm64/kvm/hyp/include/nvhe/mem_protect.h, 2022 series). The values of this object are the SW field
 * (bits 56:55 shifted down), and NOPAGE is 4, outside the field, as the V1 enum places it after the reserved value.
 */

import { SW0_HI, SW1_HI } from '../arch/desc.js';

/** A component's view of a page. */
export const PageState = {
  OWNED: 0,
  SHARED_OWNED: 1,
  SHARED_BORROWED: 2,
  NOPAGE: 4,
} as const;
/** A component's view of a page. */
export type PageState = (typeof PageState)[keyof typeof PageState];

/** `PKVM_PAGE_STATE_PROT_MASK` = SW0|SW1 on the high half of a PTE or prot. */
export const PKVM_PAGE_STATE_PROT_MASK_HI = (SW0_HI | SW1_HI) >>> 0;

/** Bit position of SW0 within the high half. */
const STATE_SHIFT_HI = 55 - 32;

/**
 * A prot (high half) with its state bits replaced by `state`. Mirrors `pkvm_mkstate()`.
 * @param protHi the high half of a `kvm_pgtable_prot`.
 * @param state a stored state (NOPAGE cannot be stored; passing it is an emulator bug caught by the caller).
 */
export function pkvmMkstateHi(protHi: number, state: PageState): number {
  return ((protHi & ~PKVM_PAGE_STATE_PROT_MASK_HI) | ((state & 3) << STATE_SHIFT_HI)) >>> 0;
}

/** The stored state of a valid leaf or prot, from its high half. Mirrors `pkvm_getstate()`. */
export function pkvmGetstateHi(hi: number): PageState {
  const s = (hi & PKVM_PAGE_STATE_PROT_MASK_HI) >>> STATE_SHIFT_HI;
  // The reserved value 3 is never written by EL2; if it were found it decodes as NOPAGE (nobody may use the page).
  return s === 3 ? PageState.NOPAGE : (s as PageState);
}

/** The name of a state, for messages and dumps. */
export function pageStateName(s: PageState): 'OWNED' | 'SHARED_OWNED' | 'SHARED_BORROWED' | 'NOPAGE' {
  switch (s) {
    case PageState.OWNED:
      return 'OWNED';
    case PageState.SHARED_OWNED:
      return 'SHARED_OWNED';
    case PageState.SHARED_BORROWED:
      return 'SHARED_BORROWED';
    case PageState.NOPAGE:
      return 'NOPAGE';
  }
}

/**
 * The components that can own a page; the numeric value is also the owner id written into an invalid host stage-2
 * PTE (bits 9:2) and the order in which their locks must be taken. Mirrors `enum pkvm_component_id`
 * (arch/arm64/kvm/hyp/include/nvhe/mem_protect.h, V1 39/89: `PKVM_ID_HOST`, `PKVM_ID_HYP`, `PKVM_ID_GUEST`).
 */
export const PkvmId = {
  HOST: 0,
  HYP: 1,
  GUEST: 2,
} as const;
/** A component id. */
export type PkvmId = (typeof PkvmId)[keyof typeof PkvmId];
