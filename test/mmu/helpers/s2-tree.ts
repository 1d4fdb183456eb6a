/**
 * Test helper: builds stage-2 table trees in a PhysMem from descriptor builders, computing indices independently of
 * the walker (from the granule geometry and the IAS only).
 */
import { s2DescAddr, s2Table, oaFormatOf, type Desc } from '../../../src/arch/desc-codec.js';
import { granuleShift, levelShift, type Granule } from '../../../src/arch/granule.js';
import type { PhysMem } from '../../../src/mem/phys-mem.js';

export interface TreeGeometry {
  granule: Granule;
  ias: number;
  startLevel: number;
  base: number;
  ds?: boolean;
  pa52?: boolean;
}

export class S2Tree {
  private next: number;
  constructor(
    readonly mem: PhysMem,
    readonly geo: TreeGeometry,
    arena: number,
  ) {
    this.next = arena;
  }

  /** Allocates a zeroed, granule-aligned table page. */
  allocTable(): number {
    const g = 2 ** granuleShift(this.geo.granule);
    const a = Math.ceil(this.next / g) * g;
    this.next = a + g;
    return a;
  }

  /** PA of the entry for `ipa` in the table at `level` whose base is `table`. */
  entryPa(table: number, level: number, ipa: number): number {
    const { granule, ias, startLevel } = this.geo;
    const sh = levelShift(granule, level);
    const bits = level === startLevel ? ias - sh : granuleShift(granule) - 3;
    return table + (Math.floor(ipa / 2 ** sh) % 2 ** bits) * 8;
  }

  /** Writes `d` as the entry for `ipa` at `level`, creating tables on the way. Returns the entry's PA. */
  set(ipa: number, level: number, d: Desc): number {
    const { granule, startLevel, base } = this.geo;
    const fmt = oaFormatOf(granule, this.geo.ds === true, this.geo.pa52 === true);
    let table = base;
    for (let l = startLevel; l < level; l++) {
      const e = this.entryPa(table, l, ipa);
      const w = { lo: 0, hi: 0 };
      this.mem.read64(e, w);
      if ((w.lo & 3) === 3) {
        table = s2DescAddr(w.lo, w.hi, granuleShift(granule), fmt);
      } else {
        const t = this.allocTable();
        const td = s2Table({ nlta: t, granule, ds: this.geo.ds === true, lpa: this.geo.pa52 === true });
        this.mem.write64(e, td.lo, td.hi);
        table = t;
      }
    }
    const e = this.entryPa(table, level, ipa);
    this.mem.write64(e, d.lo, d.hi);
    return e;
  }

  /** Reads the word at `pa` as a Desc. */
  read(pa: number): Desc {
    const w = { lo: 0, hi: 0 };
    this.mem.read64(pa, w);
    return { lo: w.lo, hi: w.hi };
  }
}
