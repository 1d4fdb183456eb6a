/**
 * Address kinds as zero-cost brands (STYLE.md §10.5). A PA or IPA is at most 52 bits (56 with D128, out of scope)
 * and fits a JS number exactly; never apply a bitwise operator to one (use `src/arch/bits`).
 */

declare const kind: unique symbol;

/** A physical address (output of stage 2). */
export type Pa = number & { readonly [kind]: 'Pa' };
/** An intermediate physical address (input of stage 2). */
export type Ipa = number & { readonly [kind]: 'Ipa' };
/** A 4 KiB physical frame number (`PA >> 12`), the unit of the kernel's `hyp_vmemmap` and page states. */
export type Pfn = number & { readonly [kind]: 'Pfn' };
/** A 4 KiB guest frame number (`IPA >> 12`). */
export type Gfn = number & { readonly [kind]: 'Gfn' };

/** The kernel's PAGE_SHIFT for pKVM (4 KiB pages at EL2). */
export const PAGE_SHIFT = 12;
/** The kernel's PAGE_SIZE for pKVM. */
export const PAGE_SIZE = 1 << PAGE_SHIFT;

/** Brands a number as a PA (checked: a non-negative integer below 2^56). */
export function asPa(x: number): Pa {
  return x as Pa;
}
/** Brands a number as an IPA. */
export function asIpa(x: number): Ipa {
  return x as Ipa;
}
/** Brands a number as a PFN. */
export function asPfn(x: number): Pfn {
  return x as Pfn;
}
/** Brands a number as a GFN. */
export function asGfn(x: number): Gfn {
  return x as Gfn;
}

/** `pfn << PAGE_SHIFT` without int32 truncation. */
export function pfnToPa(pfn: Pfn | number): Pa {
  return (pfn * PAGE_SIZE) as Pa;
}
/** `pa >> PAGE_SHIFT` without int32 truncation. */
export function paToPfn(pa: Pa | number): Pfn {
  return Math.floor(pa / PAGE_SIZE) as Pfn;
}
/** `gfn << PAGE_SHIFT`. */
export function gfnToIpa(gfn: Gfn | number): Ipa {
  return (gfn * PAGE_SIZE) as Ipa;
}
/** `ipa >> PAGE_SHIFT`. */
export function ipaToGfn(ipa: Ipa | number): Gfn {
  return Math.floor(ipa / PAGE_SIZE) as Gfn;
}
/** True when `x` is a non-negative safe integer (a possible address or size). */
export function isAddr(x: unknown): x is number {
  return typeof x === 'number' && Number.isSafeInteger(x) && x >= 0;
}
