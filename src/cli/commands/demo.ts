/**
 * `s2emu demo` (what `npm start` runs): boots a machine, creates a 2-vCPU non-protected guest with 64 MiB whose
 * vCPUs touch every page (stage-2 fault → host `pkvm_mem_abort` → pin → `__pkvm_host_map_guest` → retry), shows a
 * protected guest's page being refused to the host, tears both down (reclaim, unpin, unaccount), checks the
 * ghost-state invariants and prints a summary and the guest stage-2 in the Linux `stage2_page_tables` format.
 */

import { performance } from 'node:perf_hooks';
import { errnoName } from '../../arch/errno.js';
import { createMachine, type Machine } from '../../system.js';
import { ExitCode, parseCommandArgs, usageError, type CliIo, type Command } from '../command.js';

const USAGE = `usage: s2emu demo [--mib N] [--no-dump]

Boots a machine (2 CPUs, 512 MiB of RAM at 0x40000000, pKVM profile pkvm-2022), runs a 2-vCPU guest that touches
all of its memory, shows a protected guest's page refused to the host, tears everything down and prints a summary
and the guest stage-2 dump.
  --mib N     guest memory in MiB (1…256, default 64)
  --no-dump   do not print the stage-2 dump
Exit status: 0 when every step behaved as pKVM specifies and the invariants hold, 1 otherwise.`;

const RAM_BASE = 0x4000_0000;
const RAM_SIZE = 512 * 2 ** 20;
const GUEST_BACKING = 0x4800_0000;
const PVM_BACKING = 0x5800_0000;
const PAGE = 4096;

interface DemoFlags {
  mib?: string;
  'no-dump'?: boolean;
}

/** Touches every page of a guest, alternating vCPUs; returns the number of accesses that did not complete. */
function touchAll(m: Machine, name: string, bytes: number, vcpus: number): number {
  let bad = 0;
  for (let off = 0, i = 0; off < bytes; off += PAGE, i++) {
    const r = m.guestAccess(name, i % vcpus, off, i % 2 === 0 ? 'write' : 'read', { value: off });
    if (r.result !== 'ok') bad++;
  }
  return bad;
}

/** Runs the demo; see the module comment. */
export function runDemo(argv: readonly string[], io: CliIo): ExitCode {
  const p = parseCommandArgs<DemoFlags>(argv, { mib: { type: 'string' }, 'no-dump': { type: 'boolean' } });
  if (!p.ok) return usageError(io, demoCommand, p.message);
  if (p.positionals.length > 0) return usageError(io, demoCommand, `unexpected argument "${p.positionals[0]}"`);
  const mib = p.values.mib === undefined ? 64 : Number(p.values.mib);
  if (!Number.isInteger(mib) || mib < 1 || mib > 256) return usageError(io, demoCommand, `--mib: expected an integer 1…256, got "${p.values.mib}"`);
  const bytes = mib * 2 ** 20;
  const problems: string[] = [];
  const expect = (ok: boolean, what: string): void => {
    if (!ok) problems.push(what);
  };

  const t0 = performance.now();
  const m = createMachine({ ram: [{ base: RAM_BASE, size: RAM_SIZE }], cpus: 2, paBits: 40 });
  io.out(`booted: 2 CPUs, ${RAM_SIZE / 2 ** 20} MiB RAM at 0x${RAM_BASE.toString(16)}, profile ${m.profileName}, hyp carve-out ${m.hyp.carveoutPages} pages\n`);
  // A VMM backing a large guest runs with RLIMIT_MEMLOCK raised (ulimit -l unlimited) or CAP_IPC_LOCK.
  m.setMemlockLimit(Infinity);

  const g = m.createVm({ name: 'guest', memory: bytes, ipaBase: 0, backingPa: GUEST_BACKING, vcpus: 2, protected: false });
  if (g.ret !== 0) {
    io.err(`s2emu demo: creating the guest failed with ${errnoName(g.ret)}\n`);
    return ExitCode.MISMATCH;
  }
  io.out(`created guest: handle 0x${g.handle.toString(16)}, 2 vCPUs, ${mib} MiB at IPA 0 backed by PA 0x${GUEST_BACKING.toString(16)}\n`);
  const tTouch = performance.now();
  const bad = touchAll(m, 'guest', bytes, 2);
  const touchMs = performance.now() - tTouch;
  expect(bad === 0, `${bad} guest accesses failed`);
  const v = m.vmView('guest');
  io.out(`guest touched ${bytes / PAGE} pages in ${touchMs.toFixed(0)} ms: ${v.mappedPages} mapped, ${v.pinnedPages} pinned, ${v.lockedPages} locked\n`);
  expect(v.mappedPages === bytes / PAGE && v.pinnedPages === bytes / PAGE, 'every page mapped and pinned');
  const pg = m.pageView(GUEST_BACKING);
  io.out(`  PA 0x${GUEST_BACKING.toString(16)}: host ${pg.host}, guest ${pg.guests.guest ?? 'NOPAGE'}, pinned ${pg.pinned}\n`);
  const dump = m.dumpStage2('guest');

  const pv = m.createVm({ name: 'pvm', memory: 16 * PAGE, ipaBase: 0, backingPa: PVM_BACKING, vcpus: 1, protected: true });
  if (pv.ret !== 0) {
    io.err(`s2emu demo: creating the protected guest failed with ${errnoName(pv.ret)}\n`);
    return ExitCode.MISMATCH;
  }
  const pa = m.guestAccess('pvm', 0, 0, 'write', { value: 0x5ec2e7 });
  expect(pa.result === 'ok', 'protected guest write');
  const hostTry = m.hostAccess(0, PVM_BACKING, 'read');
  const pp = m.pageView(PVM_BACKING);
  io.out(`protected guest (handle 0x${pv.handle.toString(16)}) owns PA 0x${PVM_BACKING.toString(16)}: host ${pp.host}, guest ${pp.guests.pvm ?? 'NOPAGE'}; host read → ${hostTry.result}\n`);
  expect(hostTry.result === 'abort', 'host read of a donated page must abort');

  const inv1 = m.checkInvariants();
  expect(inv1.violations.length === 0, `invariants before teardown: ${inv1.violations.join('; ')}`);
  const tTear = performance.now();
  expect(m.destroyVm('guest') === 0, 'teardown guest');
  expect(m.destroyVm('pvm') === 0, 'teardown protected guest');
  const tearMs = performance.now() - tTear;
  const after = m.hostAccess(0, PVM_BACKING, 'read');
  io.out(`teardown + reclaim in ${tearMs.toFixed(0)} ms; the protected page reads back as 0x${after.value.toString(16)} (poisoned) with result ${after.result}\n`);
  expect(after.result === 'ok' && after.value === 0, 'reclaimed protected page must read as zero');
  const inv2 = m.checkInvariants();
  expect(inv2.violations.length === 0, `invariants after teardown: ${inv2.violations.join('; ')}`);

  const st = m.stats();
  const total = performance.now() - t0;
  io.out('\nsummary\n');
  io.out(`  guest stage-2 faults handled : ${st.faults}\n`);
  io.out(`  host stage-2 aborts          : ${st.hostAborts}\n`);
  io.out(`  pages pinned / reclaimed     : ${st.pinned} / ${st.reclaimed}\n`);
  io.out(`  invariants                   : ${inv1.violations.length + inv2.violations.length === 0 ? 'hold' : 'VIOLATED'}\n`);
  io.out(`  hypervisor warnings          : ${m.hyp.warnings.length}\n`);
  io.out(`  time                         : ${total.toFixed(0)} ms\n`);
  io.out('  hypercalls:\n');
  for (const [name, n] of Object.entries(st.hvcs).sort((a, b) => b[1] - a[1])) io.out(`    ${name.padEnd(28)} ${n}\n`);
  if (p.values['no-dump'] !== true) {
    io.out('\nguest stage-2 before teardown (/sys/kernel/debug/kvm/<pid>-<fd>/stage2_page_tables):\n');
    io.out(dump.endsWith('\n') || dump === '' ? dump : dump + '\n');
  }
  for (const pr of problems) io.err(`s2emu demo: unexpected: ${pr}\n`);
  return problems.length === 0 ? ExitCode.OK : ExitCode.MISMATCH;
}

/** The `demo` subcommand. */
export const demoCommand: Command = {
  name: 'demo',
  summary: 'boot, run a 2-vCPU guest through its faults, refuse a protected page, tear down; print a summary',
  usage: USAGE,
  run: runDemo,
};
