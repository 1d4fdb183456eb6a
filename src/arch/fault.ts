/**
 * Stage-2 fault kinds and their fault status codes (Arm ARM D8.14 / the FSC table for the long-descriptor format;
 * reference arm-s2.md §6.5, including the FEAT_LPA2 level −1 codes).
 *
 *   kind            level 0..3     level −1
 *   address size    0b0000LL       0b101001 (0x29)
 *   translation     0b0001LL       0b101011 (0x2B)
 *   access flag     0b0010LL       —
 *   permission      0b0011LL       —
 *   SEA on walk     0b0101LL       0b010011 (0x13)
 *
 * Linux's esr.h has 0x25 for address-size level −1; Arm's table says 0x29 (arm-s2.md §11 #14), which we follow.
 */

/** What a walk produced: no fault, or the kind of stage-2 fault. Faults are values (DESIGN.md §3). */
export const FaultType = {
  NONE: 0,
  TRANSLATION: 1,
  ADDRESS_SIZE: 2,
  ACCESS_FLAG: 3,
  PERMISSION: 4,
  /** Synchronous external abort on a translation-table walk (descriptor read from unbacked PA space). */
  SEA_WALK: 5,
  /** Synchronous external abort, not on a walk (the access itself hit unbacked PA space). */
  SEA: 6,
  ALIGNMENT: 7,
  TLB_CONFLICT: 8,
} as const;
/** What a walk produced. */
export type FaultType = (typeof FaultType)[keyof typeof FaultType];

/** Fault status code (ESR DFSC/IFSC, PAR_EL1.FST) for a fault kind at a level (ignored where none applies). */
export function faultStatusCode(type: FaultType, level: number): number {
  const ll = level & 3;
  switch (type) {
    case FaultType.NONE:
      return 0;
    case FaultType.ADDRESS_SIZE:
      return level === -1 ? 0x29 : 0x00 | ll;
    case FaultType.TRANSLATION:
      return level === -1 ? 0x2b : 0x04 | ll;
    case FaultType.ACCESS_FLAG:
      return 0x08 | ll;
    case FaultType.PERMISSION:
      return 0x0c | ll;
    case FaultType.SEA_WALK:
      return level === -1 ? 0x13 : 0x14 | ll;
    case FaultType.SEA:
      return 0x10;
    case FaultType.ALIGNMENT:
      return 0x21;
    case FaultType.TLB_CONFLICT:
      return 0x30;
  }
}

/** Decoded form of a fault status code; `level` is null where the code carries none. */
export interface DecodedFsc {
  readonly type: FaultType | 'other';
  readonly level: number | null;
}

/** Decodes a 6-bit fault status code (the inverse of {@link faultStatusCode}; unknown codes are `other`). */
export function decodeFaultStatusCode(fsc: number): DecodedFsc {
  const f = fsc & 0x3f;
  if (f === 0x29) return { type: FaultType.ADDRESS_SIZE, level: -1 };
  if (f === 0x2b) return { type: FaultType.TRANSLATION, level: -1 };
  if (f === 0x13) return { type: FaultType.SEA_WALK, level: -1 };
  if (f === 0x10) return { type: FaultType.SEA, level: null };
  if (f === 0x21) return { type: FaultType.ALIGNMENT, level: null };
  if (f === 0x30) return { type: FaultType.TLB_CONFLICT, level: null };
  const ll = f & 3;
  switch (f >>> 2) {
    case 0:
      return { type: FaultType.ADDRESS_SIZE, level: ll };
    case 1:
      return { type: FaultType.TRANSLATION, level: ll };
    case 2:
      return { type: FaultType.ACCESS_FLAG, level: ll };
    case 3:
      return { type: FaultType.PERMISSION, level: ll };
    case 5:
      return { type: FaultType.SEA_WALK, level: ll };
    default:
      return { type: 'other', level: null };
  }
}

/** The oracle fixture name of a fault kind (`../shared/oracle/FORMAT.md`). */
export function faultTypeName(type: FaultType | 'other'): 'translation' | 'address_size' | 'access_flag' | 'permission' | 'other' | 'none' {
  switch (type) {
    case FaultType.TRANSLATION:
      return 'translation';
    case FaultType.ADDRESS_SIZE:
      return 'address_size';
    case FaultType.ACCESS_FLAG:
      return 'access_flag';
    case FaultType.PERMISSION:
      return 'permission';
    case FaultType.NONE:
      return 'none';
    default:
      return 'other';
  }
}
