/**
 * Stage-2 VMSAv8-64 descriptor bit positions (Arm ARM D8.3; reference arm-s2.md §3.3–3.5), as masks on the two
 * 32-bit halves of a descriptor. `_LO` masks apply to bits[31:0], `_HI` masks to bits[63:32]; the comment gives the
 * architectural bit.
 *
 *   63   62:59 58:55 54:53 52   51  50  49:48     47:G     16  15:12      11    10  9:8    7:6   5:2     1    0
 *   ign  PBHA  SW    XN   Cont DBM 0   OA[49:48] OA[47:G] nT  OA[51:48]  FnXS  AF  SH/    S2AP  MemAttr type valid
 *                                      (DS)                   (64K LPA)              OA[51:50](DS)
 */

/** bit[0]: valid. */
export const DESC_VALID_LO = 1 << 0;
/** bit[1]: table (levels < 3) or page (level 3) when set; block when clear. */
export const DESC_TYPE_LO = 1 << 1;
/** bits[1:0] mask. */
export const DESC_TYPE_MASK_LO = 0b11;
/** bits[5:2]: MemAttr[3:0]. */
export const S2_MEMATTR_SHIFT = 2;
/** bits[5:2] mask. */
export const S2_MEMATTR_LO = 0xf << 2;
/** bit[6]: S2AP[0], read allowed. */
export const S2AP_R_LO = 1 << 6;
/** bit[7]: S2AP[1], write allowed. */
export const S2AP_W_LO = 1 << 7;
/** bits[7:6] shift. */
export const S2AP_SHIFT = 6;
/** bits[9:8]: SH[1:0], or OA[51:50] / NLTA[51:50] with DS=1. */
export const S2_SH_SHIFT = 8;
/** bits[9:8] mask. */
export const S2_SH_LO = 0b11 << 8;
/** bit[10]: access flag. */
export const S2_AF_LO = 1 << 10;
/** bit[11]: FnXS (FEAT_XS). */
export const S2_FNXS_LO = 1 << 11;
/** bits[15:12]: OA[51:48] / NLTA[51:48] with the 64K granule and FEAT_LPA. */
export const OA_51_48_SHIFT = 12;
/** bits[15:12] mask. */
export const OA_51_48_LO = 0xf << 12;
/** bit[16]: nT (FEAT_BBM), block descriptors. */
export const S2_NT_LO = 1 << 16;
/** bits[47:32] of an output/next-level address, in the high half. */
export const OA_47_32_HI = 0xffff;
/** bits[49:48]: OA[49:48] with DS=1. */
export const OA_49_48_HI = 0b11 << (48 - 32);
/** bit[51]: DBM (FEAT_HAFDBS). */
export const S2_DBM_HI = 1 << (51 - 32);
/** bit[52]: Contiguous. */
export const S2_CONT_HI = 1 << (52 - 32);
/** bit[53]: XN[0] (FEAT_XNX). */
export const S2_XN0_HI = 1 << (53 - 32);
/** bit[54]: XN[1] (XN without FEAT_XNX). */
export const S2_XN_HI = 1 << (54 - 32);
/** bits[54:53]: XN[1:0] shift within the high half. */
export const S2_XN_SHIFT_HI = 53 - 32;
/** bits[58:55]: software bits. */
export const S2_SW_SHIFT_HI = 55 - 32;
/** bits[58:55] mask. */
export const S2_SW_HI = 0xf << (55 - 32);
/** bit[55]: KVM_PGTABLE_PROT_SW0. */
export const SW0_HI = 1 << (55 - 32);
/** bit[56]: KVM_PGTABLE_PROT_SW1. */
export const SW1_HI = 1 << (56 - 32);
/** bit[57]: KVM_PGTABLE_PROT_SW2. */
export const SW2_HI = 1 << (57 - 32);
/** bit[58]: KVM_PGTABLE_PROT_SW3. */
export const SW3_HI = 1 << (58 - 32);
/** bits[62:59]: PBHA. */
export const S2_PBHA_SHIFT_HI = 59 - 32;
/** bits[62:59] mask. */
export const S2_PBHA_HI = 0xf << (59 - 32);
