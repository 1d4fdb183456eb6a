/**
 * Physical memory: sparse, page-granular typed-array backing over declared regions (DESIGN.md §2, §3).
 *
 * A region is RAM or MMIO with a base and size. RAM is backed lazily by 4 KiB `Uint32Array` pages, created on first
 * write (reads of untouched RAM see zeroes without allocating), so a 52-bit space with a few hundred MiB touched
 * costs only what is touched. Addresses outside every region are unbacked: a walk that reads one takes a
 * synchronous external abort. 64-bit words are little-endian: `u32[w]` = bits[31:0], `u32[w+1]` = bits[63:32].
 *
 * Two store paths exist on purpose: {@link PhysMem.write64} is a plain data store (guest data, zeroing), and
 * {@link PhysMem.writeDesc} is the model's descriptor-write API, reported to an optional
 * {@link DescWriteObserver} (the break-before-make checker of `mmu/`).
 */

import { assert } from '../arch/assert.js';

/** Backing page size (bytes) of the sparse store, independent of the translation granule. */
export const BACKING_PAGE_SHIFT = 12;
const BACKING_PAGE_SIZE = 1 << BACKING_PAGE_SHIFT;
const WORDS_PER_PAGE = BACKING_PAGE_SIZE >>> 2;
const CHUNK_PAGES = 1 << 16; // 256 MiB of RAM per chunk of the page index

/** Kind of a physical region. */
export const RegionKind = { RAM: 'ram', MMIO: 'mmio' } as const;
/** Kind of a physical region. */
export type RegionKind = (typeof RegionKind)[keyof typeof RegionKind];

/** A declared physical region. */
export interface Region {
  readonly base: number;
  readonly size: number;
  readonly end: number;
  readonly kind: RegionKind;
  /** Lazily created page index: chunk → page → backing. `undefined` pages read as zero. */
  readonly chunks: (Array<Uint32Array | undefined> | undefined)[];
}

/** A preallocated out-object for 64-bit reads. */
export interface U64 {
  lo: number;
  hi: number;
}

/** Receives every descriptor store made through {@link PhysMem.writeDesc}, before it takes effect. */
export interface DescWriteObserver {
  onDescWrite(pa: number, oldLo: number, oldHi: number, newLo: number, newHi: number): void;
}

const ZERO_PAGE = new Uint32Array(WORDS_PER_PAGE);

/** Sparse physical memory. */
export class PhysMem {
  private readonly regions: Region[] = [];
  private last: Region | null = null;
  private touched = 0;
  /** Observer of descriptor writes (the BBM checker), or null. */
  observer: DescWriteObserver | null = null;

  /**
   * Declares a region. Throws {@link InvariantError} if it overlaps another, is empty or is not 4 KiB aligned: the
   * composition root validates user input before calling this.
   */
  addRegion(base: number, size: number, kind: RegionKind = RegionKind.RAM): Region {
    assert(Number.isSafeInteger(base) && base >= 0 && base % BACKING_PAGE_SIZE === 0, `region base ${base} not page aligned`);
    assert(Number.isSafeInteger(size) && size > 0 && size % BACKING_PAGE_SIZE === 0, `region size ${size} invalid`);
    const end = base + size;
    for (const r of this.regions) assert(end <= r.base || base >= r.end, `region ${base.toString(16)} overlaps ${r.base.toString(16)}`);
    const r: Region = { base, size, end, kind, chunks: [] };
    this.regions.push(r);
    this.regions.sort((a, b) => a.base - b.base);
    return r;
  }

  /** The declared regions, sorted by base. */
  get regionList(): readonly Region[] {
    return this.regions;
  }

  /** The region containing `pa`, or null. */
  regionOf(pa: number): Region | null {
    const l = this.last;
    if (l !== null && pa >= l.base && pa < l.end) return l;
    const rs = this.regions;
    for (let i = 0; i < rs.length; i++) {
      const r = rs[i]!; // JUSTIFY: i < length.
      if (pa >= r.base && pa < r.end) {
        this.last = r;
        return r;
      }
    }
    return null;
  }

  /** True when `pa` is in a RAM region. */
  isRam(pa: number): boolean {
    const r = this.regionOf(pa);
    return r !== null && r.kind === RegionKind.RAM;
  }

  /** Number of 4 KiB backing pages allocated so far. */
  get touchedPages(): number {
    return this.touched;
  }

  /** The backing page for reading `pa`: the shared zero page when untouched, null when not RAM. */
  pageForRead(pa: number): Uint32Array | null {
    const r = this.regionOf(pa);
    if (r === null || r.kind !== RegionKind.RAM) return null;
    const idx = Math.floor((pa - r.base) / BACKING_PAGE_SIZE);
    const chunk = r.chunks[Math.floor(idx / CHUNK_PAGES)];
    if (chunk === undefined) return ZERO_PAGE;
    return chunk[idx % CHUNK_PAGES] ?? ZERO_PAGE;
  }

  /** The backing page for writing `pa` (allocated on demand), or null when not RAM. */
  pageForWrite(pa: number): Uint32Array | null {
    const r = this.regionOf(pa);
    if (r === null || r.kind !== RegionKind.RAM) return null;
    const idx = Math.floor((pa - r.base) / BACKING_PAGE_SIZE);
    const ci = Math.floor(idx / CHUNK_PAGES);
    let chunk = r.chunks[ci];
    if (chunk === undefined) {
      // Pre-sized and filled so V8 keeps a fast holey-free element store; a sparse `[]` written at high indices
      // degrades to dictionary mode and made every descriptor read ~5x slower.
      chunk = new Array<Uint32Array | undefined>(CHUNK_PAGES).fill(undefined);
      r.chunks[ci] = chunk;
    }
    const pi = idx % CHUNK_PAGES;
    let page = chunk[pi];
    if (page === undefined) {
      page = new Uint32Array(WORDS_PER_PAGE);
      chunk[pi] = page;
      this.touched++;
    }
    return page;
  }

  /** Reads the aligned 64-bit word at `pa` into `out`. Returns false (and zeroes `out`) when `pa` is not RAM. */
  read64(pa: number, out: U64): boolean {
    const p = this.pageForRead(pa);
    if (p === null) {
      out.lo = 0;
      out.hi = 0;
      return false;
    }
    const w = (pa % BACKING_PAGE_SIZE) >>> 2;
    out.lo = p[w]!; // JUSTIFY: w < WORDS_PER_PAGE - 1 for an 8-byte aligned pa.
    out.hi = p[w + 1]!;
    return true;
  }

  /** Reads bits[31:0] of the aligned 64-bit word at `pa` (0 when not RAM). */
  read64Lo(pa: number): number {
    const p = this.pageForRead(pa);
    return p === null ? 0 : p[(pa % BACKING_PAGE_SIZE) >>> 2]!; // JUSTIFY: index within the page.
  }

  /** Reads bits[63:32] of the aligned 64-bit word at `pa` (0 when not RAM). */
  read64Hi(pa: number): number {
    const p = this.pageForRead(pa);
    return p === null ? 0 : p[((pa % BACKING_PAGE_SIZE) >>> 2) + 1]!; // JUSTIFY: index within the page.
  }

  /** Plain data store of an aligned 64-bit word. Returns false when `pa` is not RAM. */
  write64(pa: number, lo: number, hi: number): boolean {
    const p = this.pageForWrite(pa);
    if (p === null) return false;
    const w = (pa % BACKING_PAGE_SIZE) >>> 2;
    p[w] = lo;
    p[w + 1] = hi;
    return true;
  }

  /**
   * Descriptor store of an aligned 64-bit word: the model's descriptor-write API. The observer (if any) sees the
   * old and new values first. Returns false when `pa` is not RAM.
   */
  writeDesc(pa: number, lo: number, hi: number): boolean {
    const p = this.pageForWrite(pa);
    if (p === null) return false;
    const w = (pa % BACKING_PAGE_SIZE) >>> 2;
    const obs = this.observer;
    if (obs !== null) obs.onDescWrite(pa, p[w]!, p[w + 1]!, lo >>> 0, hi >>> 0); // JUSTIFY: index within the page.
    p[w] = lo;
    p[w + 1] = hi;
    return true;
  }

  /** Reads an aligned 32-bit word (0 when not RAM). */
  read32(pa: number): number {
    const p = this.pageForRead(pa);
    return p === null ? 0 : p[(pa % BACKING_PAGE_SIZE) >>> 2]!; // JUSTIFY: index within the page.
  }

  /** Writes an aligned 32-bit word. Returns false when `pa` is not RAM. */
  write32(pa: number, v: number): boolean {
    const p = this.pageForWrite(pa);
    if (p === null) return false;
    p[(pa % BACKING_PAGE_SIZE) >>> 2] = v;
    return true;
  }

  /** Reads one byte (0 when not RAM). */
  read8(pa: number): number {
    const off = pa % BACKING_PAGE_SIZE;
    return (this.read32(pa - (off & 3)) >>> ((off & 3) * 8)) & 0xff;
  }

  /** Writes one byte. Returns false when `pa` is not RAM. */
  write8(pa: number, v: number): boolean {
    const p = this.pageForWrite(pa);
    if (p === null) return false;
    const off = pa % BACKING_PAGE_SIZE;
    const w = off >>> 2;
    const sh = (off & 3) * 8;
    p[w] = (p[w]! & ~(0xff << sh)) | ((v & 0xff) << sh); // JUSTIFY: index within the page.
    return true;
  }

  /** Fills the 4 KiB-aligned range [pa, pa+size) with zeroes (no allocation for untouched pages). */
  zero(pa: number, size: number): void {
    for (let a = pa; a < pa + size; a += BACKING_PAGE_SIZE) {
      const r = this.regionOf(a);
      if (r === null || r.kind !== RegionKind.RAM) continue;
      const p = this.pageForRead(a);
      if (p !== null && p !== ZERO_PAGE) p.fill(0);
    }
  }

  /** Fills the 4 KiB-aligned range [pa, pa+size) with a 32-bit pattern (poisoning, test patterns). */
  fill32(pa: number, size: number, v: number): void {
    for (let a = pa; a < pa + size; a += BACKING_PAGE_SIZE) {
      const p = this.pageForWrite(a);
      if (p !== null) p.fill(v);
    }
  }
}
