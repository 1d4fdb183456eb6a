/**
 * `createMachine`'s RAM backing (`flatRam`): a flat and a sparse machine driven through the same KVM path give the
 * same results, page states, stage-2 dumps, host views and invariants (src/mem/phys-mem.ts: two backings, one
 * behaviour).
 */
import t from 'tap';
import { createMachine, type Machine } from '../src/system.js';

const MiB = 2 ** 20;
const RAM = 0x4000_0000;

/** One deterministic workload; returns everything observable, as text. */
function drive(m: Machine): string {
  const log: unknown[] = [];
  log.push(m.createVm({ name: 'np', memory: 4 * MiB, ipaBase: 0, backingPa: RAM + 32 * MiB, vcpus: 2, protected: false }));
  log.push(m.createVm({ name: 'pvm', memory: 2 * MiB, ipaBase: 0x8000_0000, backingPa: RAM + 48 * MiB, vcpus: 1, protected: true }));
  let s = 12345;
  for (let k = 0; k < 60; k++) {
    s = (Math.imul(s, 1_103_515_245) + 12_345) >>> 0;
    const np = k % 3 !== 0;
    const page = s % (np ? 1024 : 512);
    const ipa = (np ? 0 : 0x8000_0000) + page * 4096 + ((s >>> 16) & 0x1f8);
    const access = (s >>> 8) % 3 === 0 ? 'write' : 'read';
    log.push(m.guestAccess(np ? 'np' : 'pvm', np ? k & 1 : 0, ipa, access, { value: s }));
    log.push(m.pageView((np ? RAM + 32 * MiB : RAM + 48 * MiB) + page * 4096));
  }
  log.push(m.guestAccess('pvm', 0, 0x8000_1008, 'write', { value: 0xfeed }), m.guestAccess('pvm', 0, 0x8000_1008, 'read'));
  log.push(m.hostAccess(0, RAM + 48 * MiB + 4096, 'read'), m.hostAccess(1, RAM + 32 * MiB + 8, 'read'));
  log.push(m.dumpStage2('np'), m.dumpStage2('pvm'), m.vmView('np'), m.vmView('pvm'));
  log.push(m.destroyVm('pvm'), m.destroyVm('np'), m.checkInvariants().violations, m.hyp.warnings);
  return JSON.stringify(log);
}

t.test('flat and sparse RAM give the same machine', async (t) => {
  const cfg = { ram: [{ base: RAM, size: 256 * MiB }], cpus: 2 } as const;
  const flat = createMachine(cfg);
  const sparse = createMachine({ ...cfg, flatRam: false });
  t.ok(flat.mem.regionList.every((r) => r.flat !== null), 'default: flat');
  t.ok(sparse.mem.regionList.every((r) => r.flat === null), 'flatRam: false: sparse');
  const a = drive(flat);
  const b = drive(sparse);
  t.equal(a, b);
  t.ok(a.includes('"result":"ok"') && a.includes('"result":"abort"'), 'the workload maps pages and is refused one');
  t.ok(a.includes(`"value":${0xfeed}`), 'a guest store is read back');
  t.equal(flat.mem.touchedPages, sparse.mem.touchedPages, 'the same pages written');
  t.ok(flat.mem.touchedPages > 0);
});
