// The incremental invariant check finds what the full recomputation (check/invariants.ts) finds: after every step of
// random campaigns the two agree on whether anything is violated, and after each of a menu of corruptions of the
// tables (state bits, owner annotations, output addresses, refcounts, hyp entries, vanished guest leaves) both
// report a violation.
import t from 'tap';
import { PAGE_SIZE } from '../../src/arch/addr.js';
import { SW0_HI, SW1_HI } from '../../src/arch/desc.js';
import { ExecWorld, Outcome, execStep } from '../../src/check/fuzz/exec.js';
import { fuzzMachine, StepGenerator } from '../../src/check/fuzz/generator.js';
import { IncrementalInvariants } from '../../src/check/fuzz/incremental.js';
import { Prng } from '../../src/check/fuzz/prng.js';
import { dropHostContract } from '../../src/check/fuzz/session.js';
import type { TableRef } from '../../src/check/invariants.js';
import type { Step } from '../../src/check/scenario-schema.js';
import { PageState } from '../../src/el2/page-state.js';
import { HypPageFlag } from '../../src/el2/vmemmap.js';
import { createMachine, type Machine } from '../../src/system.js';

interface Rig {
  m: Machine;
  inc: IncrementalInvariants;
  gen: StepGenerator;
  w: ExecWorld;
  out: Outcome;
}

function rig(seed: number): Rig {
  const sm = fuzzMachine(2, 'pkvm-2022');
  const m = createMachine({ ram: sm.ram, cpus: sm.cpus, paBits: sm.paBits, profile: sm.profile, tlb: true });
  const inc = new IncrementalInvariants(m);
  const w = new ExecWorld();
  const gen = new StepGenerator(new Prng(seed), { vms: 3, vcpus: 2 }, m, w);
  return { m, inc, gen, w, out: new Outcome() };
}

function incremental(r: Rig): string[] {
  const msgs: string[] = [];
  r.inc.check(msgs);
  dropHostContract(msgs);
  return msgs;
}

function full(r: Rig): string[] {
  const v = r.m.checkInvariants().violations.slice();
  dropHostContract(v);
  return v;
}

/** The address of the entry translating `ia` in `t` at the deepest level reached (4 KiB granule). */
function ptepOf(r: Rig, t: TableRef, ia: number): { ptep: number; level: number } | null {
  let table = t.pgd;
  const c = { lo: 0, hi: 0 };
  for (let level = t.startLevel; level <= 3; level++) {
    const shift = 12 + 9 * (3 - level);
    const span = level === t.startLevel ? 2 ** Math.max(0, t.iaBits - shift) : 512;
    const ptep = table + (Math.floor(ia / 2 ** shift) % span) * 8;
    r.m.mem.read64(ptep, c);
    if ((c.lo & 3) !== 3 || level === 3) return { ptep, level };
    table = (c.hi & 0xffff) * 2 ** 32 + ((c.lo & 0xffff_f000) >>> 0);
  }
  return null;
}

/** A valid guest leaf (ptep, value) of any live VM, or null. */
function someGuestLeaf(r: Rig): { ptep: number; lo: number; hi: number; prot: boolean } | null {
  const c = { lo: 0, hi: 0 };
  for (const vm of r.m.hyp.liveVms()) {
    for (let ipa = 0; ipa < 2 ** 31; ipa += ipa < 0x20_0000 ? PAGE_SIZE : 0x3fe0_0000) {
      const p = ptepOf(r, vm.pgt, ipa);
      if (p === null || p.level !== 3) continue;
      r.m.mem.read64(p.ptep, c);
      if ((c.lo & 1) !== 0) return { ptep: p.ptep, lo: c.lo, hi: c.hi, prot: vm.isProtected };
    }
  }
  return null;
}

t.test('after every step of random campaigns, incremental and full checks agree (and hold)', async (t) => {
  for (const seed of [11, 12]) {
    const r = rig(seed);
    let agreed = 0;
    for (let i = 0; i < 300; i++) {
      execStep(r.m, r.w, r.gen.next(), r.out);
      const a = incremental(r);
      const b = full(r);
      if ((a.length > 0) !== (b.length > 0)) t.fail(`seed ${seed} step ${i}: incremental ${JSON.stringify(a)} vs full ${JSON.stringify(b)}`);
      else agreed++;
      if (b.length > 0) break;
    }
    t.equal(agreed, 300, `seed ${seed}: 300 steps, both clean`);
  }
});

type Corruption = (r: Rig) => boolean;

const CORRUPTIONS: Record<string, Corruption> = {
  'guest leaf state bits rewritten': (r) => {
    const l = someGuestLeaf(r);
    if (l === null) return false;
    const state = (l.hi & (SW0_HI | SW1_HI)) === 0 ? SW1_HI : 0; // OWNED ↔ SHARED_BORROWED
    r.m.mem.writeDesc(l.ptep, l.lo, ((l.hi & ~(SW0_HI | SW1_HI)) | state) >>> 0);
    return true;
  },
  'guest leaf pointed at a hyp page': (r) => {
    const l = someGuestLeaf(r);
    if (l === null) return false;
    const pa = (r.m.hyp.carveoutPfn + 3) * PAGE_SIZE;
    r.m.mem.writeDesc(l.ptep, ((l.lo & 0xfff) | pa) >>> 0, l.hi);
    return true;
  },
  'guest leaf vanished': (r) => {
    const l = someGuestLeaf(r);
    if (l === null) return false;
    r.m.mem.writeDesc(l.ptep, 0, 0);
    return true;
  },
  'host page annotated as hyp-owned': (r) => {
    const pa = 0x4100_0000 + 5 * PAGE_SIZE;
    r.m.hostAccess(0, pa, 'read'); // make sure the idmap reaches the page
    const p = ptepOf(r, r.m.hyp.hostPgt, pa);
    if (p === null) return false;
    r.m.mem.writeDesc(p.ptep, 1 << 2, 0); // owner id HYP in bits[9:2]
    return true;
  },
  'table refcount off by one': (r) => {
    const vm = r.m.hyp.liveVms()[0];
    if (vm === undefined) return false;
    const vmm = r.m.hyp.vmemmap;
    const pfn = vm.pgt.pgd / PAGE_SIZE;
    vmm.refcount[pfn - vmm.basePfn]!++;
    // A refcount bug comes with the entry write it miscounts: re-store an entry of that table.
    const c = { lo: 0, hi: 0 };
    r.m.mem.read64(vm.pgt.pgd, c);
    r.m.mem.writeDesc(vm.pgt.pgd, c.lo, c.hi);
    return true;
  },
  'hyp stage-1 entry left invalid but non-zero': (r) => {
    const pa = (r.m.hyp.carveoutPfn + 7) * PAGE_SIZE;
    if (r.m.hyp.hypState(pa) !== PageState.OWNED) return false;
    const p = ptepOf(r, r.m.hyp.hypPgt, pa);
    if (p === null) return false;
    r.m.mem.writeDesc(p.ptep, 0x400, 0);
    return true;
  },
};

t.test('each corruption is found by both checks', async (t) => {
  let seed = 100;
  for (const [name, corrupt] of Object.entries(CORRUPTIONS)) {
    let done = 0;
    for (let trial = 0; trial < 6 && done < 2; trial++) {
      const r = rig(seed++);
      for (let i = 0; i < 150; i++) execStep(r.m, r.w, r.gen.next(), r.out);
      t.same(incremental(r), [], `${name}: clean before`);
      full(r);
      if (!corrupt(r)) continue;
      const a = incremental(r);
      const b = full(r);
      t.ok(a.length > 0, `${name}: incremental finds it (${a[0] ?? 'nothing'})`);
      t.ok(b.length > 0, `${name}: full finds it (${b[0] ?? 'nothing'})`);
      done++;
    }
    t.equal(done, 2, `${name}: two trials ran`);
  }
});

/** The steps of fuzz seed 97591068 as its shrinker left them (7 of 31,897), in the fuzzer's own machine. */
function sharedBackUnpinned(page: number): Step[] {
  const g = 'g';
  const access = (vcpu: number, ipa: number, access: 'read' | 'write', value: number | null): Step =>
    ({ kind: 'guest_access', name: g, vcpu, cpu: null, ipa, access, handle: true, value, expect: null, index: 0 });
  return [
    { kind: 'vm_create', name: g, memory: 0xf_0000, ipaBase: 0, backingPa: 0x42d0_0000, vcpus: 2, protected: true, expect: null, index: 0 },
    access(1, 0x8_4430, 'write', 0x5608_08d4),
    access(0, 0x78b8, 'read', null),
    { kind: 'vcpu_load', name: g, vcpu: 0, cpu: 1, expect: null, index: 0 },
    // A hostile host donates a page it never pinned, so its teardown reclaim loop will not take it back.
    { kind: 'hvc', fn: '__pkvm_host_map_guest', cpu: 1, args: [{ kind: 'pfn', pa: page }, { kind: 'value', v: { lo: 4, hi: 0 } }], expect: null, index: 0 },
    { kind: 'guest_hvc', name: g, vcpu: 0, cpu: null, fn: 'MEM_SHARE', args: [{ kind: 'value', v: { lo: 4 * PAGE_SIZE, hi: 0 } }], expect: null, index: 0 },
    { kind: 'vm_destroy', name: g, expect: null, index: 0 },
  ];
}

t.test('a shared-back page left pending reclaim by teardown (host SHARED_BORROWED) is consistent for both checks', async (t) => {
  const r = rig(1);
  const page = 0x4108_b000;
  for (const st of sharedBackUnpinned(page)) {
    execStep(r.m, r.w, st, r.out);
    const a = incremental(r);
    const b = full(r);
    t.same(a, [], `incremental after ${st.kind}`);
    t.same(b, [], `full after ${st.kind}`);
  }
  t.equal(r.m.pageView(page).host, 'SHARED_BORROWED', 'teardown left the host view alone');
  const flags = r.m.hyp.pageFlags(page);
  t.equal(flags, HypPageFlag.PENDING_RECLAIM, 'pending reclaim, not marked for poisoning');
  // NEED_POISONING belongs to guest-owned (donated) pages only; on a page the host could already read it is wrong.
  const x = r.m.hyp.vmemmap.idx(page / PAGE_SIZE);
  r.m.hyp.vmemmap.flags[x] = flags | HypPageFlag.NEED_POISONING;
  t.match(full(r).join('\n'), /page 0x4108b000: pending reclaim with an unexpected host view \(host SHARED_BORROWED/);
});
