import t from 'tap';
import { PAGE_SIZE } from '../../src/arch/addr.js';
import { DESC_TYPE_LO, DESC_VALID_LO, S2_AF_LO, S2AP_R_LO, S2AP_W_LO, SW0_HI, SW1_HI } from '../../src/arch/desc.js';
import { checkInvariants, hostViewOf, type InvariantView, type TableRef } from '../../src/check/invariants.js';
import { PageState, PkvmId } from '../../src/el2/page-state.js';
import { HypPageFlag, HypVmemmap } from '../../src/el2/vmemmap.js';
import { PhysMem } from '../../src/mem/phys-mem.js';

const RAM = 0x4000_0000;
const RAM_PAGES = 4096; // 16 MiB

/** A tiny table builder: tables come from a bump allocator at the top of RAM, refcounts kept as EL2 keeps them. */
class World {
  readonly mem = new PhysMem();
  readonly vm = new HypVmemmap(RAM / PAGE_SIZE, RAM_PAGES);
  private next = RAM + (RAM_PAGES - 1) * PAGE_SIZE;
  pinned = new Set<number>();
  mc: number[] = [];
  warns: string[] = [];
  readonly host: TableRef;
  readonly hyp: TableRef;
  readonly guest: TableRef;
  constructor() {
    this.mem.addRegion(RAM, RAM_PAGES * PAGE_SIZE);
    this.host = { iaBits: 40, startLevel: 1, pgd: this.alloc(2) };
    this.hyp = { iaBits: 48, startLevel: 0, pgd: this.alloc(1) };
    this.guest = { iaBits: 40, startLevel: 1, pgd: this.alloc(2) };
  }
  alloc(n = 1): number {
    this.next -= (n - 1) * PAGE_SIZE;
    const pa = this.next;
    this.next -= PAGE_SIZE;
    for (let i = 0; i < n; i++) this.vm.refcount[(pa + i * PAGE_SIZE) / PAGE_SIZE - this.vm.basePfn] = 1;
    return pa;
  }
  private rc(pa: number, d: number): void {
    this.vm.refcount[Math.floor(pa / PAGE_SIZE) - this.vm.basePfn]! += d;
  }
  /** Installs a level-3 entry for `ia`, creating tables; keeps refcounts = 1 + counted entries. */
  set(tbl: TableRef, ia: number, lo: number, hi: number): void {
    let table = tbl.pgd;
    for (let level = tbl.startLevel; level < 3; level++) {
      const shift = 12 + 9 * (3 - level);
      const span = level === tbl.startLevel ? 2 ** (tbl.iaBits - shift) : 512;
      const ptep = table + (Math.floor(ia / 2 ** shift) % span) * 8;
      const e = { lo: 0, hi: 0 };
      this.mem.read64(ptep, e);
      if (e.lo === 0 && e.hi === 0) {
        const child = this.alloc();
        this.mem.write64(ptep, (child | DESC_VALID_LO | DESC_TYPE_LO) >>> 0, 0);
        this.rc(ptep, 1);
        table = child;
      } else table = (e.lo & 0xffff_f000) >>> 0;
    }
    const ptep = table + (Math.floor(ia / PAGE_SIZE) % 512) * 8;
    const e = { lo: 0, hi: 0 };
    this.mem.read64(ptep, e);
    const was = e.lo !== 0 || e.hi !== 0;
    const now = lo !== 0 || hi !== 0;
    this.mem.write64(ptep, lo, hi);
    if (was !== now) this.rc(ptep, now ? 1 : -1);
  }
  leaf(pa: number, state: number): { lo: number; hi: number } {
    const sw = state === PageState.SHARED_OWNED ? SW0_HI : state === PageState.SHARED_BORROWED ? SW1_HI : 0;
    return { lo: (pa | DESC_VALID_LO | DESC_TYPE_LO | S2AP_R_LO | S2AP_W_LO | S2_AF_LO) >>> 0, hi: sw };
  }
  hostState(pa: number, state: number): void {
    const l = this.leaf(pa, state);
    this.set(this.host, pa, l.lo, l.hi);
  }
  hostAnnotate(pa: number, owner: number): void {
    this.set(this.host, pa, owner << 2, 0);
  }
  hypMap(pa: number, state: number): void {
    const l = this.leaf(pa, state);
    this.set(this.hyp, 0x8000_0000_0000 + pa, l.lo, l.hi);
  }
  guestMap(ipa: number, pa: number, state: number): void {
    const l = this.leaf(pa, state);
    this.set(this.guest, ipa, l.lo, l.hi);
  }
  view(): InvariantView {
    return {
      mem: this.mem,
      hostS2: this.host,
      hypS1: this.hyp,
      guests: [{ name: 'g', pgt: this.guest }],
      vmemmap: this.vm,
      memcachePages: () => this.mc,
      isPinned: (pa) => this.pinned.has(pa),
      warnings: () => this.warns,
      bbmViolations: () => [],
    };
  }
}

const P = (n: number): number => RAM + n * PAGE_SIZE;

/** A consistent world: one page of each row of pkvm.md §1.6. */
function consistent(): World {
  const w = new World();
  w.hostAnnotate(P(1), PkvmId.HYP); // donated to hyp
  w.hypMap(P(1), PageState.OWNED);
  w.hostState(P(2), PageState.SHARED_OWNED); // shared host → hyp
  w.hypMap(P(2), PageState.SHARED_BORROWED);
  w.vm.refcount[P(2) / PAGE_SIZE - w.vm.basePfn] = 1; // pinned by hyp_pin_shared_mem
  w.hostState(P(3), PageState.SHARED_OWNED); // np-guest page
  w.guestMap(0x1000, P(3), PageState.SHARED_BORROWED);
  w.pinned.add(P(3));
  w.hostAnnotate(P(4), PkvmId.GUEST); // protected-guest page
  w.guestMap(0x2000, P(4), PageState.OWNED);
  w.pinned.add(P(4));
  w.hostState(P(5), PageState.SHARED_BORROWED); // pVM shared back
  w.guestMap(0x3000, P(5), PageState.SHARED_OWNED);
  w.pinned.add(P(5));
  w.hostAnnotate(P(6), PkvmId.HYP); // a memcache page
  w.hypMap(P(6), PageState.OWNED);
  w.mc.push(P(6));
  w.hostState(P(7), PageState.OWNED); // ordinary, already idmapped
  w.hostAnnotate(P(8), PkvmId.GUEST); // released by a dead guest
  w.vm.flags[P(8) / PAGE_SIZE - w.vm.basePfn] = HypPageFlag.PENDING_RECLAIM | HypPageFlag.NEED_POISONING;
  w.hostState(P(13), PageState.SHARED_BORROWED); // a pVM's shared-back page, released by its teardown
  w.vm.flags[P(13) / PAGE_SIZE - w.vm.basePfn] = HypPageFlag.PENDING_RECLAIM;
  return w;
}

t.test('a consistent state has no violations', async (t) => {
  const r = checkInvariants(consistent().view());
  t.same(r.violations, []);
  t.equal(r.pages, 8); // P1–P6, P8 and P13; P7 is a default host mapping
});

t.test('host view decoding follows pkvm.md §1.4', async (t) => {
  const w = consistent();
  t.same(hostViewOf(w.mem, w.host, P(1)), { state: PageState.NOPAGE, owner: PkvmId.HYP });
  t.same(hostViewOf(w.mem, w.host, P(2)), { state: PageState.SHARED_OWNED, owner: -1 });
  t.same(hostViewOf(w.mem, w.host, P(100)), { state: PageState.OWNED, owner: -1 });
});

const breakages: [string, (w: World) => void, RegExp][] = [
  ['a guest maps a hyp-owned page', (w) => { w.guestMap(0x9000, P(1), PageState.SHARED_BORROWED); w.pinned.add(P(1)); }, /hyp-owned page mapped by a guest/],
  ['two owners', (w) => w.hypMap(P(7), PageState.OWNED), /page 0x40007000: 2 owners/],
  ['SHARED_OWNED without a borrower', (w) => w.hostState(P(9), PageState.SHARED_OWNED), /1 SHARED_OWNED view\(s\) but 0 SHARED_BORROWED/],
  ['a borrower without an owner', (w) => w.hypMap(P(10), PageState.SHARED_BORROWED), /0 SHARED_OWNED view\(s\) but 1 SHARED_BORROWED/],
  ['an unpinned guest page', (w) => w.pinned.delete(P(4)), /maps PA 0x40004000, which the host has not pinned/],
  ['a wrong table refcount', (w) => { w.vm.refcount[w.guest.pgd / PAGE_SIZE - w.vm.basePfn]! += 1; }, /refcount 2, expected 1 \+ 0 counted|refcount \d+, expected 1 \+ \d+ counted/],
  ['a host-owned memcache page', (w) => w.mc.push(P(7)), /memcache page not hyp-owned/],
  ['a guest-owned page without host annotation', (w) => { w.guestMap(0xa000, P(11), PageState.OWNED); w.pinned.add(P(11)); }, /guest g owns it but the host is not annotated GUEST/],
  ['a hypervisor warning', (w) => w.warns.push('WARN_ON(map)'), /hypervisor warning: WARN_ON\(map\)/],
  ['a pending-reclaim page still mapped', (w) => { w.guestMap(0xb000, P(8), PageState.OWNED); w.pinned.add(P(8)); }, /pending reclaim but still mapped/],
  ['a pending-reclaim page the host owns again', (w) => w.hostState(P(13), PageState.OWNED), /page 0x4000d000: pending reclaim with an unexpected host view/],
  ['a shared-back page pending reclaim marked for poisoning', (w) => { w.vm.flags[P(13) / PAGE_SIZE - w.vm.basePfn] = HypPageFlag.PENDING_RECLAIM | HypPageFlag.NEED_POISONING; }, /page 0x4000d000: pending reclaim with an unexpected host view \(host SHARED_BORROWED/],
  ['a reference on a host-owned page', (w) => { w.vm.refcount[P(7) / PAGE_SIZE - w.vm.basePfn] = 1; }, /page 0x40007000: hyp_page refcount 1 on a page neither hyp-owned nor shared with EL2/],
  ['an annotation nobody backs', (w) => w.hostAnnotate(P(12), PkvmId.HYP), /host annotation says hyp owns it/],
];

for (const [name, brk, re] of breakages) {
  t.test(`detects ${name}`, async (t) => {
    const w = consistent();
    brk(w);
    const r = checkInvariants(w.view());
    t.match(r.violations.join('\n'), re);
  });
}
