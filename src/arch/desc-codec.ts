/**
 * Stage-2 VMSAv8-64 descriptors: hot accessors over the two 32-bit halves, output-address extraction for every
 * granule and OA format (Arm ARM D8.3; ASL `LeafBase`, `NextTableBase`; reference arm-s2.md §3.3–3.5), and a
 * `Desc = {lo, hi}` builder/decoder layer for tests, fixtures and dumps (`s2Page`, `s2Block`, `s2Table`,
 * `decodeS2Desc`).
 *
 * Output-address formats (where OA[51:48] lives):
 *
 *   format   OA[51:50]   OA[49:48]    OA[47:lsb]   used when
 *   OA48     —           —            desc[47:lsb] 4K/16K with DS=0; 64K without FEAT_LPA
 *   DS       desc[9:8]   desc[49:48]  desc[47:lsb] 4K/16K with effective DS=1 (FEAT_LPA2)
 *   LPA64K   desc[15:12] (OA[51:48])  desc[47:lsb] 64K on a PE with FEAT_LPA (PAMax = 52)
 *
 * The same formats give a table descriptor's next-level table address with lsb = G.
 */

import { assert } from './assert.js';
import { TWO_32, mask32 } from './bits.js';
import {
  DESC_TYPE_LO,
  DESC_VALID_LO,
  OA_47_32_HI,
  OA_49_48_HI,
  S2_AF_LO,
  S2_CONT_HI,
  S2_DBM_HI,
  S2_FNXS_LO,
  S2_NT_LO,
} from './desc.js';
import { Granule, blockAllowed, granuleShift, levelShift } from './granule.js';

/** Where a descriptor keeps OA[51:48] (see the file header). */
export const OaFormat = { OA48: 0, DS: 1, LPA64K: 2 } as const;
/** An output-address format. */
export type OaFormat = (typeof OaFormat)[keyof typeof OaFormat];

/**
 * The address a descriptor holds, aligned to 2^`lsb`: a leaf's output address (lsb = the leaf's
 * `TranslationSize`) or a table's next-level address (lsb = G). Bits below `lsb` (RES0 in a block) are dropped.
 * Hot: no allocation, no bitwise op on values ≥ 2^32.
 */
export function s2DescAddr(lo: number, hi: number, lsb: number, fmt: OaFormat): number {
  let aLo = 0;
  let aHi = hi & OA_47_32_HI;
  if (lsb < 32) {
    aLo = ((lo >>> lsb) << lsb) >>> 0;
  } else if (lsb > 32) {
    const s = lsb - 32;
    aHi = (aHi >>> s) << s;
  }
  if (fmt === OaFormat.DS) {
    // OA[51:50] = desc[9:8] → hi-half bits 19:18; OA[49:48] = desc[49:48] in place.
    aHi |= (((lo >>> 8) & 3) << 18) | (hi & OA_49_48_HI);
  } else if (fmt === OaFormat.LPA64K) {
    aHi |= ((lo >>> 12) & 0xf) << 16;
  }
  return aHi * TWO_32 + aLo;
}

/** The OA format a configuration uses: DS for 4K/16K with effective DS, LPA64K for 64K with PAMax 52. */
export function oaFormatOf(g: Granule, ds: boolean, pa52: boolean): OaFormat {
  if (g === Granule.G64K) return pa52 ? OaFormat.LPA64K : OaFormat.OA48;
  return ds ? OaFormat.DS : OaFormat.OA48;
}

/** True when bits[1:0] mark a valid descriptor (bit 0). */
export function s2DescIsValid(lo: number): boolean {
  return (lo & DESC_VALID_LO) !== 0;
}
/** True for bits[1:0] = 0b11 (a table below level 3, a page at level 3). */
export function s2DescIsTableOrPage(lo: number): boolean {
  return (lo & 3) === 3;
}
/** MemAttr[3:0] (bits[5:2]). */
export function s2DescMemAttr(lo: number): number {
  return (lo >>> 2) & 0xf;
}
/** S2AP[1:0] (bits[7:6]): bit 0 read, bit 1 write. */
export function s2DescS2ap(lo: number): number {
  return (lo >>> 6) & 3;
}
/** SH[1:0] (bits[9:8]); OA[51:50] instead when DS=1. */
export function s2DescSh(lo: number): number {
  return (lo >>> 8) & 3;
}
/** AF (bit 10). */
export function s2DescAf(lo: number): boolean {
  return (lo & S2_AF_LO) !== 0;
}
/** DBM (bit 51). */
export function s2DescDbm(hi: number): boolean {
  return (hi & S2_DBM_HI) !== 0;
}
/** Contiguous (bit 52). */
export function s2DescCont(hi: number): boolean {
  return (hi & S2_CONT_HI) !== 0;
}
/** XN[1:0] (bits[54:53]). */
export function s2DescXn(hi: number): number {
  return (hi >>> (53 - 32)) & 3;
}
/** Software bits[58:55]. */
export function s2DescSw(hi: number): number {
  return (hi >>> (55 - 32)) & 0xf;
}
/** PBHA bits[62:59]. */
export function s2DescPbha(hi: number): number {
  return (hi >>> (59 - 32)) & 0xf;
}

/**
 * Whether a stage-2 MemAttr makes the stage-2 memory type Device (ASL `S2DecodeMemAttrs`,
 * `S2ApplyFWBMemAttrs`; arm-s2.md §9.1, §9.3). FWB=0: MemAttr[3:2] = 0b00. FWB=1: MemAttr[2] = 0 (0b0xx), and —
 * following QEMU's `combined_attrs_fwb`, the choice for the reserved encodings (arm-s2.md §11 #8) — MemAttr[2:0] =
 * 0b100 or MemAttr[3] = 1 (descriptor bit 5) also give Device-nGnRnE. FWB 0b101/0b111 defer to stage 1 and are not
 * Device at stage 2.
 */
export function s2MemAttrIsDevice(memAttr: number, fwb: boolean): boolean {
  if (!fwb) return (memAttr & 0xc) === 0;
  return (memAttr & 0x4) === 0 || (memAttr & 0xf) === 0x4 || (memAttr & 0x8) !== 0;
}

// ---------------------------------------------------------------------------------------------------------------
// Builder / decoder layer (tests, fixtures, dumps). Not for hot paths.

/** A 64-bit descriptor as halves. Tests, fixtures and dumps only. */
export interface Desc {
  readonly lo: number;
  readonly hi: number;
}

/** S2AP[1:0] by name: NONE 00, RO 01 (read), WO 10 (write), RW 11. */
export const S2ApName = { NONE: 0, RO: 1, WO: 2, RW: 3 } as const;
/** A named S2AP value. */
export type S2ApName = keyof typeof S2ApName;

/** Common stage-2 MemAttr values (FWB=0 encodings unless named FWB_; arm-s2.md §9.4, asm/memory.h MT_S2_*). */
export const S2MemAttr = {
  DEVICE_nGnRnE: 0x0,
  DEVICE_nGnRE: 0x1,
  NORMAL_NC: 0x5,
  NORMAL_WB: 0xf,
  FWB_DEVICE_nGnRE: 0x1,
  FWB_NORMAL_NC: 0x5,
  FWB_NORMAL: 0x6,
  FWB_USE_S1: 0x7,
} as const;

/** Address format options shared by the builders: granule, DS (4K/16K) or FEAT_LPA (64K). */
export interface DescFormat {
  granule?: Granule;
  /** Effective DS=1 (4K/16K): OA[51:50] in bits[9:8], OA[49:48] in bits[49:48], no SH field. */
  ds?: boolean;
  /** 64K on a FEAT_LPA PE: OA[51:48] in bits[15:12]. Default true for 64K. */
  lpa?: boolean;
}

/** Attribute fields of a stage-2 block or page descriptor. */
export interface S2LeafAttrs {
  memAttr?: number;
  ap?: S2ApName;
  /** SH[1:0]; must be 0 with DS (those bits hold OA[51:50]). */
  sh?: number;
  af?: boolean;
  fnxs?: boolean;
  /** nT (bit 16), blocks only. */
  nT?: boolean;
  dbm?: boolean;
  cont?: boolean;
  /** XN[1:0] (bits[54:53]). */
  xn?: number;
  /** Software bits[58:55]. */
  sw?: number;
  /** PBHA bits[62:59]. */
  pbha?: number;
  /** Bit 63 (ignored by the PE). */
  ign63?: boolean;
}

/** Fields of a leaf: output address plus attributes. */
export interface S2LeafFields extends S2LeafAttrs, DescFormat {
  oa: number;
}

function fmtOf(f: DescFormat): OaFormat {
  const g = f.granule ?? Granule.G4K;
  return oaFormatOf(g, f.ds === true, f.lpa !== false);
}

function checkField(v: number, bits: number, name: string): number {
  assert(Number.isInteger(v) && v >= 0 && v < 2 ** bits, `${name} = ${v} does not fit ${bits} bits`);
  return v;
}

/** Encodes `addr` (aligned to 2^lsb) in format `fmt` into halves ORed into `out`. Throws on misuse. */
function encodeAddr(addr: number, lsb: number, fmt: OaFormat): { lo: number; hi: number } {
  const top = fmt === OaFormat.OA48 ? 48 : 52;
  assert(Number.isSafeInteger(addr) && addr >= 0 && addr < 2 ** top, `address ${addr} does not fit ${top} bits`);
  assert(addr % 2 ** lsb === 0, `address 0x${addr.toString(16)} is not aligned to 2^${lsb}`);
  const aLo = addr >>> 0;
  const aHi = Math.floor(addr / TWO_32);
  let lo = aLo;
  let hi = aHi & OA_47_32_HI;
  if (fmt === OaFormat.DS) {
    lo |= ((aHi >>> 18) & 3) << 8;
    hi |= aHi & OA_49_48_HI;
  } else if (fmt === OaFormat.LPA64K) {
    lo |= ((aHi >>> 16) & 0xf) << 12;
  }
  return { lo: lo >>> 0, hi: hi >>> 0 };
}

function leaf(f: S2LeafFields, lsb: number, block: boolean): Desc {
  const fmt = fmtOf(f);
  const a = encodeAddr(f.oa, lsb, fmt);
  let lo = a.lo | DESC_VALID_LO | (block ? 0 : DESC_TYPE_LO);
  let hi = a.hi;
  lo |= checkField(f.memAttr ?? S2MemAttr.NORMAL_WB, 4, 'MemAttr') << 2;
  lo |= S2ApName[f.ap ?? 'RW'] << 6;
  const sh = checkField(f.sh ?? 0, 2, 'SH');
  assert(fmt !== OaFormat.DS || sh === 0, 'SH must be 0 with DS (bits[9:8] are OA[51:50])');
  lo |= sh << 8;
  if (f.af !== false) lo |= S2_AF_LO;
  if (f.fnxs === true) lo |= S2_FNXS_LO;
  if (f.nT === true) {
    assert(block, 'nT exists only in block descriptors (bit 16 is OA[16] in a page)');
    lo |= S2_NT_LO;
  }
  if (f.dbm === true) hi |= S2_DBM_HI;
  if (f.cont === true) hi |= S2_CONT_HI;
  hi |= checkField(f.xn ?? 0, 2, 'XN') << (53 - 32);
  hi |= checkField(f.sw ?? 0, 4, 'SW') << (55 - 32);
  hi |= checkField(f.pbha ?? 0, 4, 'PBHA') << (59 - 32);
  if (f.ign63 === true) hi |= 0x8000_0000;
  return { lo: lo >>> 0, hi: hi >>> 0 };
}

/**
 * A stage-2 page descriptor (level 3, bits[1:0] = 0b11). Defaults: AF=1, S2AP=RW, MemAttr Normal WB, SH=0, XN=00.
 * Throws {@link InvariantError} for an OA that is unaligned or does not fit the format (API misuse).
 */
export function s2Page(f: S2LeafFields): Desc {
  return leaf(f, granuleShift(f.granule ?? Granule.G4K), false);
}

/**
 * A stage-2 block descriptor at `level` (bits[1:0] = 0b01). The builder does not check whether a block is allowed
 * at that level (tests need the illegal ones); `oa` must be aligned to the block size.
 */
export function s2Block(f: S2LeafFields & { level: number }): Desc {
  return leaf(f, levelShift(f.granule ?? Granule.G4K, f.level), true);
}

/** Fields of a table descriptor. `ignored` holds bits the PE ignores (bits[11:2] minus DS bits, [58:52], [63:59]). */
export interface S2TableFields extends DescFormat {
  nlta: number;
  /** Ignored bits [58:52] (bits 52..58 of the descriptor, as a 7-bit value). */
  ignHi?: number;
}

/** A stage-2 table descriptor pointing at `nlta` (aligned to the granule). Stage-2 tables carry no attributes. */
export function s2Table(f: S2TableFields): Desc {
  const fmt = fmtOf(f);
  const a = encodeAddr(f.nlta, granuleShift(f.granule ?? Granule.G4K), fmt);
  const hi = a.hi | (checkField(f.ignHi ?? 0, 7, 'ignHi') << (52 - 32));
  return { lo: (a.lo | 3) >>> 0, hi: hi >>> 0 };
}

/** An invalid descriptor (bit 0 clear); `bits` are the ignored bits[63:1] software may use (as halves). */
export function s2Invalid(lo = 0, hi = 0): Desc {
  return { lo: (lo & ~1) >>> 0, hi: hi >>> 0 };
}

/** What a descriptor is at a level (ASL `DecodeDescriptorType`, arm-s2.md §3.2). */
export const S2DescKind = { INVALID: 'invalid', BLOCK: 'block', PAGE: 'page', TABLE: 'table' } as const;
/** A descriptor kind. */
export type S2DescKind = (typeof S2DescKind)[keyof typeof S2DescKind];

/** A decoded stage-2 descriptor. Every bit lands in exactly one field, so {@link encodeS2Desc} inverts it. */
export interface S2DescDecoded {
  kind: S2DescKind;
  /** bits[1:0]. An INVALID `0b01` (a block where none is allowed, or at level 3) keeps its type bits here. */
  typeBits: number;
  /** Leaf OA or table NLTA (0 for INVALID). */
  addr: number;
  memAttr: number;
  s2ap: number;
  sh: number;
  af: boolean;
  fnxs: boolean;
  nT: boolean;
  dbm: boolean;
  cont: boolean;
  xn: number;
  sw: number;
  pbha: number;
  /** Every remaining bit (RES0/ignored bits, all of an invalid descriptor's bits[63:2]) as halves. */
  restLo: number;
  restHi: number;
}

/** Context a descriptor is decoded in. */
export interface DescContext {
  granule: Granule;
  level: number;
  /** Effective DS. */
  ds: boolean;
  /** The PE has 52-bit PAs (FEAT_LPA): 64K blocks at level 1 and the LPA64K OA format. */
  pa52: boolean;
}

function addrMask(lsb: number, fmt: OaFormat): { lo: number; hi: number } {
  // Bits that encode the address, as halves: [47:lsb] plus the 52-bit parts.
  let lo = lsb < 32 ? (~mask32(lsb) >>> 0) : 0;
  let hi = lsb > 32 ? (OA_47_32_HI & ~mask32(lsb - 32)) >>> 0 : OA_47_32_HI;
  if (fmt === OaFormat.DS) {
    lo |= 0x300;
    hi |= OA_49_48_HI;
  } else if (fmt === OaFormat.LPA64K) {
    lo |= 0xf000;
  }
  return { lo: lo >>> 0, hi: hi >>> 0 };
}

const LEAF_ATTR_LO = 0x3c | 0xc0 | 0x300 | S2_AF_LO | S2_FNXS_LO; // bits [11:2]
const LEAF_ATTR_HI = (S2_DBM_HI | S2_CONT_HI | (3 << 21) | (0xf << 23) | (0xf << 27)) >>> 0; // [62:51] minus 50

/** Decodes a stage-2 descriptor read at `ctx.level` (pure; for tests, dumps and fixtures). */
export function decodeS2Desc(lo: number, hi: number, ctx: DescContext): S2DescDecoded {
  lo >>>= 0;
  hi >>>= 0;
  const fmt = oaFormatOf(ctx.granule, ctx.ds, ctx.pa52);
  const d: S2DescDecoded = {
    kind: S2DescKind.INVALID,
    typeBits: lo & 3,
    addr: 0,
    memAttr: 0,
    s2ap: 0,
    sh: 0,
    af: false,
    fnxs: false,
    nT: false,
    dbm: false,
    cont: false,
    xn: 0,
    sw: 0,
    pbha: 0,
    restLo: (lo & ~3) >>> 0,
    restHi: hi,
  };
  const t = lo & 3;
  const isTable = t === 3 && ctx.level < 3;
  const isPage = t === 3 && ctx.level === 3;
  const isBlock = t === 1 && blockAllowed(ctx.granule, ctx.level, ctx.ds, ctx.pa52);
  if (!isTable && !isPage && !isBlock) return d;
  if (isTable) {
    const m = addrMask(granuleShift(ctx.granule), fmt);
    d.kind = S2DescKind.TABLE;
    d.addr = s2DescAddr(lo, hi, granuleShift(ctx.granule), fmt);
    d.restLo = (lo & ~m.lo & ~3) >>> 0;
    d.restHi = (hi & ~m.hi) >>> 0;
    return d;
  }
  const lsb = levelShift(ctx.granule, ctx.level);
  const m = addrMask(lsb, fmt);
  d.kind = isPage ? S2DescKind.PAGE : S2DescKind.BLOCK;
  d.addr = s2DescAddr(lo, hi, lsb, fmt);
  d.memAttr = s2DescMemAttr(lo);
  d.s2ap = s2DescS2ap(lo);
  d.sh = fmt === OaFormat.DS ? 0 : s2DescSh(lo);
  d.af = s2DescAf(lo);
  d.fnxs = (lo & S2_FNXS_LO) !== 0;
  d.nT = (lo & S2_NT_LO) !== 0 && !isPage;
  d.dbm = s2DescDbm(hi);
  d.cont = s2DescCont(hi);
  d.xn = s2DescXn(hi);
  d.sw = s2DescSw(hi);
  d.pbha = s2DescPbha(hi);
  const usedLo = (m.lo | LEAF_ATTR_LO | 3 | (d.nT ? S2_NT_LO : 0)) >>> 0;
  const usedHi = (m.hi | LEAF_ATTR_HI) >>> 0;
  d.restLo = (lo & ~usedLo) >>> 0;
  d.restHi = (hi & ~usedHi) >>> 0;
  return d;
}

/** Re-encodes a decoded descriptor (exact inverse of {@link decodeS2Desc} in the same context). */
export function encodeS2Desc(d: S2DescDecoded, ctx: DescContext): Desc {
  const fmt = oaFormatOf(ctx.granule, ctx.ds, ctx.pa52);
  if (d.kind === S2DescKind.INVALID) return { lo: (d.restLo | d.typeBits) >>> 0, hi: d.restHi >>> 0 };
  if (d.kind === S2DescKind.TABLE) {
    const a = encodeAddr(d.addr, granuleShift(ctx.granule), fmt);
    return { lo: (a.lo | d.restLo | 3) >>> 0, hi: (a.hi | d.restHi) >>> 0 };
  }
  const lsb = levelShift(ctx.granule, ctx.level);
  const a = encodeAddr(d.addr, lsb, fmt);
  let lo = a.lo | d.restLo | d.typeBits | (d.memAttr << 2) | (d.s2ap << 6) | (d.sh << 8);
  if (d.af) lo |= S2_AF_LO;
  if (d.fnxs) lo |= S2_FNXS_LO;
  if (d.nT) lo |= S2_NT_LO;
  let hi = a.hi | d.restHi | (d.xn << 21) | (d.sw << 23) | (d.pbha << 27);
  if (d.dbm) hi |= S2_DBM_HI;
  if (d.cont) hi |= S2_CONT_HI;
  return { lo: lo >>> 0, hi: hi >>> 0 };
}

/** True when two descriptors are bit-identical. */
export function descEquals(a: Desc, b: Desc): boolean {
  return a.lo >>> 0 === b.lo >>> 0 && a.hi >>> 0 === b.hi >>> 0;
}
