/**
 * Physical memory: sparse, page-granular typed-array backing over declared regions (DESIGN.md §2, §3).
 *
 * A region is RAM or MMIO with a base and size. Addresses outside every region are unbacked: a walk that reads one
 * takes a synchronous external abort. 64-bit words are little-endian: `u32[w]` = bits[31:0], `u32[w+1]` =
 * bits[63:32]. RAM has two backings, with the same behaviour:
 * - **flat** (opt-in, `flatMaxBytes`; `createMachine` opts in): a RAM region of at most that size is one zero-filled
 *   `Uint32Array`.
 *   The engine allocates it with `calloc`, so the operating system maps its pages on first write: untouched RAM
 *   costs address space, not memory. A word is then one subtraction and one load away, with no lookup, which is what
 *   the walker's descriptor reads need (bench/README.md, "flat RAM"). Word reads of a page never written return
 *   zero without touching it (a first read would cost an OS page fault, ~1 µs, per page: guests read fresh pages).
 * - **sparse** (the default): other regions are backed lazily by 4 KiB pages created on
 *   first write (reads of untouched RAM see zeroes without allocating), so a 52-bit space with a few hundred MiB
 *   touched costs only what is touched.
 * {@link PhysMem.touchedPages} counts the 4 KiB pages written at least once in either backing.
 *
 * Why flat is not the default: creating and releasing a flat region of GiBs costs about a millisecond (the mapping,
 * and the engine's garbage collection, which counts typed arrays as external memory), where a sparse one costs
 * nothing. That is right for one long-lived machine (the walk is ~30% faster) and wrong for thousands of short-lived
 * memories (one per fixture query, per property-test run): the test suite ran twice as long with flat by default.
 *
 * Two store paths exist on purpose: {@link PhysMem.write64} is a plain data store (guest data, zeroing), and
 * {@link PhysMem.writeDesc} is the model's descriptor-write API, reported to an optional
 * {@link DescWriteObserver} (the break-before-make checker of `mmu/`).
 */

import { assert } from '../arch/assert.js';
import { TWO_32 } from '../arch/bits.js';

/** Backing page size (bytes) of the sparse store, independent of the translation granule. */
export const BACKING_PAGE_SHIFT = 12;
const BACKING_PAGE_SIZE = 1 << BACKING_PAGE_SHIFT;
const WORDS_PER_PAGE = BACKING_PAGE_SIZE >>> 2;
const CHUNK_PAGES = 1 << 16; // 256 MiB of RAM per chunk of the page index
/** 2^-12: `pa * INV_PAGE` is `pa / 4096` exactly (a power-of-two scaling of an integer below 2^53). */
const INV_PAGE = 1 / BACKING_PAGE_SIZE;
/** Entries of the direct-mapped read cache (PFN → backing page); a power of two. */
const RCACHE_SIZE = 1024;
const RCACHE_MASK = RCACHE_SIZE - 1;
/**
 * Default upper bound on the size of a RAM region backed flat (4 GiB: word offsets stay below 2^32, so a word index
 * is `offset >>> 2`). Larger regions are sparse.
 */
export const FLAT_MAX_BYTES = 2 ** 32;
const EMPTY_U32 = new Uint32Array(0);
const EMPTY_U8 = new Uint8Array(0);

/** Options of a {@link PhysMem}. */
export interface PhysMemOptions {
  /**
   * RAM regions of at most this many bytes are backed flat; at most {@link FLAT_MAX_BYTES}. Default 0: every region
   * sparse (see the module comment for why).
   */
  readonly flatMaxBytes?: number;
}

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
  /** Sparse backing: lazily created page index, chunk → page → backing. `undefined` pages read as zero. */
  readonly chunks: (Array<Uint32Array | undefined> | undefined)[];
  /** Flat backing (the whole region, word `(pa − base) / 4`), or null for a sparse or MMIO region. */
  readonly flat: Uint32Array | null;
  /** With a flat backing: 1 for each 4 KiB page written at least once (for `touchedPages` and `zero`). */
  readonly written: Uint8Array | null;
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

/**
 * Index, in the backing page {@link PhysMem.pageForRead} returns for `pa`, of the 32-bit word holding byte `pa`
 * (pages are 4 KiB aligned, so it is pa[11:2]). For a 64-bit word, bits[31:0] are at this index and bits[63:32]
 * at the next.
 */
export function pageWordIndex(pa: number): number {
  // JUSTIFY: `pa >>> 0` is ToUint32 (STYLE.md §10.4 rule 1, lo32), exact for pa < 2^53; bits[11:2] come from it.
  return ((pa >>> 0) & (BACKING_PAGE_SIZE - 1)) >>> 2;
}

/**
 * Physical memory over declared regions.
 *
 * **The window.** The flat region used last is the *window*: {@link PhysMem.win} with its base and size. Every access
 * first tries it (`pa − winBase` below `winBytes`: one subtraction, one compare, one load); on a miss the region
 * lookup runs and, for another flat region, moves the window there. The walker reads the window fields directly.
 *
 * **Sparse reads** go through a small direct-mapped cache, PFN → backing page (the shared zero page for untouched
 * RAM), in front of the region and page-index lookup. Only sparse RAM pages are cached; regions never overlap and are
 * never removed, so an entry stays right until its page is allocated, and {@link PhysMem.pageForWrite} refreshes the
 * entry then (a later write is visible to every reader, and the zero page is never written).
 */
export class PhysMem {
  private readonly regions: Region[] = [];
  private last: Region | null = null;
  private touched = 0;
  private readonly flatMax: number;
  /** Read-cache tags: the PFN (pa / 4096) held in each slot; NaN when empty (never equal to any PFN). */
  private readonly rcTag = new Float64Array(RCACHE_SIZE).fill(NaN);
  /** Read-cache data: the backing page of the PFN in the same slot (the zero page when untouched). */
  private readonly rcPage: Uint32Array[] = new Array<Uint32Array>(RCACHE_SIZE).fill(ZERO_PAGE);
  /** The window's flat backing (empty until a flat region is used). Read-only outside this class. */
  win: Uint32Array = EMPTY_U32;
  /** The window's written-page marks. Read-only outside this class. */
  winWritten: Uint8Array = EMPTY_U8;
  /** Base PA of the window. Read-only outside this class. */
  winBase = 0;
  /** Size of the window in bytes (0: no window, every access misses it). Read-only outside this class. */
  winBytes = 0;
  /**
   * The window as the walker reads it, in 32-bit halves: the part of the window inside one 4 GiB-aligned block,
   * PA[63:32] = `winHi`, PA[31:0] in [`winLo`, `winLo` + `winLen`) (`winLo` as an int32), at word `winOff` of
   * {@link PhysMem.win}. A descriptor address (hi, lo) is in it when `hi === winHi && ((lo − winLo) >>> 0) < winLen`,
   * and its word is `((lo − winLo) >>> 2) + winOff`: int32 arithmetic only. Read-only outside this class.
   */
  winHi = -1;
  /** See {@link PhysMem.winHi}. */
  winLo = 0;
  /** See {@link PhysMem.winHi}. */
  winLen = 0;
  /** See {@link PhysMem.winHi}. */
  winOff = 0;
  /** Observer of descriptor writes (the BBM checker), or null. */
  observer: DescWriteObserver | null = null;

  /** Empty memory; `opts.flatMaxBytes` bounds the flat-backed regions (default 0: all sparse). */
  constructor(opts: PhysMemOptions = {}) {
    const f = opts.flatMaxBytes ?? 0;
    assert(Number.isSafeInteger(f) && f >= 0 && f <= FLAT_MAX_BYTES, `flatMaxBytes ${f} outside [0, 2^32]`);
    this.flatMax = f;
  }

  /**
   * Declares a region. Throws {@link InvariantError} if it overlaps another, is empty or is not 4 KiB aligned: the
   * composition root validates user input before calling this. A RAM region within the flat limit is backed flat
   * when the engine can reserve it, else sparse.
   */
  addRegion(base: number, size: number, kind: RegionKind = RegionKind.RAM): Region {
    assert(Number.isSafeInteger(base) && base >= 0 && base % BACKING_PAGE_SIZE === 0, `region base ${base} not page aligned`);
    assert(Number.isSafeInteger(size) && size > 0 && size % BACKING_PAGE_SIZE === 0, `region size ${size} invalid`);
    const end = base + size;
    for (const r of this.regions) assert(end <= r.base || base >= r.end, `region ${base.toString(16)} overlaps ${r.base.toString(16)}`);
    let flat: Uint32Array | null = null;
    let written: Uint8Array | null = null;
    if (kind === RegionKind.RAM && size <= this.flatMax) {
      try {
        flat = new Uint32Array(size / 4);
        written = new Uint8Array(size / BACKING_PAGE_SIZE);
      } catch {
        // The engine could not reserve the range (an address-space limit): the sparse backing serves it.
        flat = null;
        written = null;
      }
    }
    const r: Region = { base, size, end, kind, chunks: [], flat, written };
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

  /** Number of 4 KiB pages of RAM written at least once (sparse: allocated). */
  get touchedPages(): number {
    return this.touched;
  }

  /**
   * Moves the window to the flat region containing `pa`. Returns false (window unchanged) when `pa` is in no flat
   * region: sparse RAM, MMIO or unbacked. The walker calls it when a descriptor address misses the window.
   */
  selectWindow(pa: number): boolean {
    const r = this.regionOf(pa);
    if (r === null || r.flat === null) return false;
    this.win = r.flat;
    this.winWritten = r.written!; // JUSTIFY: `written` is set together with `flat`.
    this.winBase = r.base;
    this.winBytes = r.size;
    // The halves view: the region's part in pa's 4 GiB block. JUSTIFY: `pa >>> 0` is lo32 (STYLE.md §10.4).
    const block = pa - (pa >>> 0);
    const start = Math.max(r.base, block);
    const end = Math.min(r.end, block + TWO_32);
    this.winHi = block / TWO_32;
    this.winLo = (start - block) | 0; // JUSTIFY: 0 ≤ start − block < 2^32, reinterpreted as int32.
    this.winLen = end - start;
    this.winOff = (start - r.base) / 4;
    return true;
  }

  /**
   * Marks the page of window offset `off` written (counting it the first time). `off` is in the window.
   */
  private markWritten(off: number): void {
    const pi = off >>> BACKING_PAGE_SHIFT; // JUSTIFY: off < winBytes ≤ 2^32.
    if (this.winWritten[pi] === 0) {
      this.winWritten[pi] = 1;
      this.touched++;
    }
  }

  /**
   * The backing page for reading `pa`: the shared zero page when untouched (sparse), a live view of the page (flat),
   * null when not RAM. The word holding byte `pa` is at index {@link pageWordIndex}(pa). A flat page's view is a new
   * object per call: hot paths use the word accessors, or the window as the walker does.
   */
  pageForRead(pa: number): Uint32Array | null {
    // JUSTIFY: `pa >>> 0` is lo32 (exact below 2^53): the slot is PFN[9:0] = pa[21:12], and `pa − pa[11:0]` is the
    // page base, exact, so `pfn` is pa / 4096 floored for an integer pa (a fractional pa never matches a tag).
    const lo = pa >>> 0;
    const slot = (lo >>> BACKING_PAGE_SHIFT) & RCACHE_MASK;
    const pfn = (pa - (lo & (BACKING_PAGE_SIZE - 1))) * INV_PAGE;
    if (this.rcTag[slot] === pfn) return this.rcPage[slot]!; // JUSTIFY: slot < RCACHE_SIZE.
    return this.pageForReadMiss(pa, slot);
  }

  /** Read-cache miss: the region and page-index lookup, caching a sparse RAM page (or the zero page) in `slot`. */
  private pageForReadMiss(pa: number, slot: number): Uint32Array | null {
    const pfn = Math.floor(pa * INV_PAGE);
    const r = this.regionOf(pa);
    if (r === null || r.kind !== RegionKind.RAM) return null;
    const idx = pfn - r.base * INV_PAGE; // exact: both are integers below 2^41
    if (r.flat !== null) return r.flat.subarray(idx * WORDS_PER_PAGE, (idx + 1) * WORDS_PER_PAGE);
    const chunk = r.chunks[Math.floor(idx / CHUNK_PAGES)];
    const page = chunk === undefined ? ZERO_PAGE : (chunk[idx % CHUNK_PAGES] ?? ZERO_PAGE);
    this.rcTag[slot] = pfn;
    this.rcPage[slot] = page;
    return page;
  }

  /**
   * The backing page for writing `pa` (allocated on demand, and counted as written), or null when not RAM. A flat
   * page's view is a new object per call (see {@link PhysMem.pageForRead}).
   */
  pageForWrite(pa: number): Uint32Array | null {
    const pfn = Math.floor(pa * INV_PAGE);
    // JUSTIFY: `pfn >>> 0` is ToUint32, exact modulo 2^32; its bits[9:0] are the slot pageForRead computes.
    const slot = (pfn >>> 0) & RCACHE_MASK;
    if (this.rcTag[slot] === pfn) {
      const cached = this.rcPage[slot]!; // JUSTIFY: slot < RCACHE_SIZE.
      if (cached !== ZERO_PAGE) return cached;
    }
    const r = this.regionOf(pa);
    if (r === null || r.kind !== RegionKind.RAM) return null;
    const idx = pfn - r.base * INV_PAGE;
    if (r.flat !== null) {
      const written = r.written!; // JUSTIFY: set together with `flat`.
      if (written[idx] === 0) {
        written[idx] = 1;
        this.touched++;
      }
      return r.flat.subarray(idx * WORDS_PER_PAGE, (idx + 1) * WORDS_PER_PAGE);
    }
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
    // The slot may hold this PFN's zero page: readers must see the new page from now on.
    this.rcTag[slot] = pfn;
    this.rcPage[slot] = page;
    return page;
  }

  /** Reads the aligned 64-bit word at `pa` into `out`. Returns false (and zeroes `out`) when `pa` is not RAM. */
  read64(pa: number, out: U64): boolean {
    const off = pa - this.winBase;
    if (off >= 0 && off < this.winBytes) {
      if (this.winWritten[off >>> BACKING_PAGE_SHIFT] === 0) {
        // Never written: zero, without touching the page (a first read would make the OS map it).
        out.lo = 0;
        out.hi = 0;
        return true;
      }
      const w = off >>> 2; // JUSTIFY: 0 ≤ off < 2^32.
      out.lo = this.win[w]!; // JUSTIFY: w + 1 < window words for an 8-byte aligned pa.
      out.hi = this.win[w + 1]!;
      return true;
    }
    if (this.selectWindow(pa)) return this.read64(pa, out);
    const p = this.pageForRead(pa);
    if (p === null) {
      out.lo = 0;
      out.hi = 0;
      return false;
    }
    const w = pageWordIndex(pa);
    out.lo = p[w]!; // JUSTIFY: w < WORDS_PER_PAGE - 1 for an 8-byte aligned pa.
    out.hi = p[w + 1]!;
    return true;
  }

  /** Reads bits[31:0] of the aligned 64-bit word at `pa` (0 when not RAM). */
  read64Lo(pa: number): number {
    return this.read32(pa);
  }

  /** Reads bits[63:32] of the aligned 64-bit word at `pa` (0 when not RAM). */
  read64Hi(pa: number): number {
    return this.read32(pa + 4);
  }

  /** Plain data store of an aligned 64-bit word. Returns false when `pa` is not RAM. */
  write64(pa: number, lo: number, hi: number): boolean {
    const off = pa - this.winBase;
    if (off >= 0 && off < this.winBytes) {
      this.markWritten(off);
      const w = off >>> 2; // JUSTIFY: 0 ≤ off < 2^32.
      this.win[w] = lo;
      this.win[w + 1] = hi;
      return true;
    }
    if (this.selectWindow(pa)) return this.write64(pa, lo, hi);
    const p = this.pageForWrite(pa);
    if (p === null) return false;
    const w = pageWordIndex(pa);
    p[w] = lo;
    p[w + 1] = hi;
    return true;
  }

  /**
   * Descriptor store of an aligned 64-bit word: the model's descriptor-write API. The observer (if any) sees the
   * old and new values first. Returns false when `pa` is not RAM.
   */
  writeDesc(pa: number, lo: number, hi: number): boolean {
    const off = pa - this.winBase;
    if (off >= 0 && off < this.winBytes) {
      const win = this.win;
      const w = off >>> 2; // JUSTIFY: 0 ≤ off < 2^32.
      const obs = this.observer;
      if (obs !== null) obs.onDescWrite(pa, win[w]!, win[w + 1]!, lo >>> 0, hi >>> 0); // JUSTIFY: in the window.
      this.markWritten(off);
      win[w] = lo;
      win[w + 1] = hi;
      return true;
    }
    if (this.selectWindow(pa)) return this.writeDesc(pa, lo, hi);
    const p = this.pageForWrite(pa);
    if (p === null) return false;
    const w = pageWordIndex(pa);
    const obs = this.observer;
    if (obs !== null) obs.onDescWrite(pa, p[w]!, p[w + 1]!, lo >>> 0, hi >>> 0); // JUSTIFY: index within the page.
    p[w] = lo;
    p[w + 1] = hi;
    return true;
  }

  /** Reads an aligned 32-bit word (0 when not RAM). */
  read32(pa: number): number {
    const off = pa - this.winBase;
    if (off >= 0 && off < this.winBytes) {
      // A never-written page reads as zero without being touched (see read64).
      return this.winWritten[off >>> BACKING_PAGE_SHIFT] === 0 ? 0 : this.win[off >>> 2]!; // JUSTIFY: in the window.
    }
    if (this.selectWindow(pa)) return this.read32(pa);
    const p = this.pageForRead(pa);
    return p === null ? 0 : p[pageWordIndex(pa)]!; // JUSTIFY: index within the page.
  }

  /** Writes an aligned 32-bit word. Returns false when `pa` is not RAM. */
  write32(pa: number, v: number): boolean {
    const off = pa - this.winBase;
    if (off >= 0 && off < this.winBytes) {
      this.markWritten(off);
      this.win[off >>> 2] = v; // JUSTIFY: 0 ≤ off < 2^32.
      return true;
    }
    if (this.selectWindow(pa)) return this.write32(pa, v);
    const p = this.pageForWrite(pa);
    if (p === null) return false;
    p[pageWordIndex(pa)] = v;
    return true;
  }

  /** Reads one byte (0 when not RAM). */
  read8(pa: number): number {
    const off = pa % BACKING_PAGE_SIZE;
    return (this.read32(pa - (off & 3)) >>> ((off & 3) * 8)) & 0xff;
  }

  /** Writes one byte. Returns false when `pa` is not RAM. */
  write8(pa: number, v: number): boolean {
    const off = pa % BACKING_PAGE_SIZE;
    const a = pa - (off & 3);
    if (!this.isRam(a)) return false;
    const sh = (off & 3) * 8;
    return this.write32(a, ((this.read32(a) & ~(0xff << sh)) | ((v & 0xff) << sh)) >>> 0);
  }

  /** Fills the 4 KiB-aligned range [pa, pa+size) with zeroes (no allocation, no write, for untouched pages). */
  zero(pa: number, size: number): void {
    for (let a = pa; a < pa + size; a += BACKING_PAGE_SIZE) {
      const r = this.regionOf(a);
      if (r === null || r.kind !== RegionKind.RAM) continue;
      if (r.flat !== null) {
        const idx = (a - r.base) * INV_PAGE;
        if (r.written![idx] !== 0) r.flat.fill(0, idx * WORDS_PER_PAGE, (idx + 1) * WORDS_PER_PAGE); // JUSTIFY: set with flat.
        continue;
      }
      const p = this.pageForRead(a);
      if (p !== null && p !== ZERO_PAGE) p.fill(0);
    }
  }

  /** Fills the 4 KiB-aligned range [pa, pa+size) with a 32-bit pattern (poisoning, test patterns). */
  fill32(pa: number, size: number, v: number): void {
    for (let a = pa; a < pa + size; a += BACKING_PAGE_SIZE) {
      const r = this.regionOf(a);
      if (r !== null && r.flat !== null) {
        const idx = (a - r.base) * INV_PAGE;
        const written = r.written!; // JUSTIFY: set with flat.
        if (written[idx] === 0) {
          written[idx] = 1;
          this.touched++;
        }
        r.flat.fill(v, idx * WORDS_PER_PAGE, (idx + 1) * WORDS_PER_PAGE);
        continue;
      }
      const p = this.pageForWrite(a);
      if (p !== null) p.fill(v);
    }
  }
}
