/**
 * `s2emu walk <fixture> --ipa <hex> [--access read|write|exec] [--case NAME] [--el0]`: loads a fixture case's
 * memory and registers into the oracle machine (`check/fixture-run.ts`) and prints the stage-2 walk of one IPA —
 * per level the descriptor address, raw value and decoded fields — then the outcome as a real access reports it
 * (ESR_EL2/FAR_EL2/HPFAR_EL2) and, for read/write, as `AT S12E1R/W` reports it (PAR_EL1).
 */

import { parseHex64, u64ToShortHex } from '../../arch/bits.js';
import { decodeS2Desc } from '../../arch/desc-codec.js';
import { FaultType, faultStatusCode, faultTypeName } from '../../arch/fault.js';
import { caseConfig, caseFeatures, loadCaseMemory, ORACLE_STUB_RT, type TraceStep } from '../../check/fixture-run.js';
import { formatIssue, parseFixture } from '../../check/fixture-schema.js';
import { AbortAccess, AbortContext, El2ExceptionState, deliverStage2Abort, insnLdrStrX } from '../../mmu/abort.js';
import { AtResult, atS12E1 } from '../../mmu/at.js';
import { AccessKind, WalkFlag, s2Walk } from '../../mmu/s2-walk.js';
import { WalkResult } from '../../mmu/walk-result.js';
import { WalkTrace } from '../../mmu/walk-trace.js';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { ExitCode, parseCommandArgs, usageError, type Command } from '../command.js';
import { formatTraceStep } from '../format.js';

const USAGE = `usage: s2emu walk <fixture.json> --ipa <hex> [--access read|write|exec] [--case NAME] [--el0]

Prints the stage-2 walk of one IPA through a fixture case's tables (the case's memory, VTCR_EL2, VTTBR_EL2 and
CPU features; the oracle machine's RAM and HCR_EL2). --case picks a case in a file holding several.
  --access  read (default), write or exec
  --el0     the access comes from EL0 (FEAT_XNX execute permission)`;

interface WalkArgs {
  ipa?: string;
  access?: string;
  case?: string;
  el0?: boolean;
}

const hex = (n: number): string => '0x' + n.toString(16);

/** `s2emu walk`. */
export const walkCommand: Command = {
  name: 'walk',
  summary: 'print the stage-2 walk of one IPA through a fixture case',
  usage: USAGE,
  run(argv, io) {
    const a = parseCommandArgs<WalkArgs>(argv, {
      ipa: { type: 'string' },
      access: { type: 'string' },
      case: { type: 'string' },
      el0: { type: 'boolean' },
    });
    if (!a.ok) return usageError(io, this, a.message);
    if (a.positionals.length !== 1) return usageError(io, this, 'expected exactly one fixture file');
    const file = a.positionals[0]!; // JUSTIFY: length checked.
    if (a.values.ipa === undefined) return usageError(io, this, 'expected --ipa <hex>');
    const ipaHalves = parseHex64(a.values.ipa);
    if (ipaHalves === null) return usageError(io, this, `expected --ipa as hex "0x…", got ${JSON.stringify(a.values.ipa)}`);
    const access = a.values.access ?? 'read';
    if (access !== 'read' && access !== 'write' && access !== 'exec') return usageError(io, this, `expected --access read, write or exec, got ${JSON.stringify(access)}`);
    let text: string;
    try {
      text = readFileSync(resolve(io.cwd, file), 'utf8');
    } catch (e) {
      io.err(`${file}: $: expected a readable file: ${(e as Error).message}\n`);
      return ExitCode.BAD_INPUT;
    }
    const parsed = parseFixture(file, text, { requireExpect: false });
    if (!parsed.ok) {
      for (const i of parsed.issues.slice(0, 50)) io.err(formatIssue(i) + '\n');
      return ExitCode.BAD_INPUT;
    }
    const name = a.values.case;
    const c = name === undefined ? (parsed.cases.length === 1 ? parsed.cases[0] : undefined) : parsed.cases.find((x) => x.name === name);
    if (c === undefined) {
      const names = parsed.cases.slice(0, 20).map((x) => x.name).join(', ');
      const why = name === undefined ? `the file holds ${parsed.cases.length} cases; pick one with --case NAME` : `no case named ${JSON.stringify(name)}`;
      io.err(`${file}: $: ${why} (cases: ${names}${parsed.cases.length > 20 ? ', …' : ''})\n`);
      return ExitCode.BAD_INPUT;
    }

    const feat = caseFeatures(c);
    const mem = loadCaseMemory(c);
    const cfg = caseConfig(c, feat);
    io.out(`case ${c.name} (${file} ${c.path})\n`);
    io.out(
      `config: VTCR_EL2=${u64ToShortHex(c.vtcr.lo, c.vtcr.hi)} VTTBR_EL2=${u64ToShortHex(c.vttbr.lo, c.vttbr.hi)} → granule ${cfg.granule}, IAS ${cfg.ias} bits, ` +
        `start level ${cfg.startLevel} (${cfg.concatTables} table${cfg.concatTables > 1 ? 's' : ''}), base ${hex(cfg.baseAddr)}, OAS ${cfg.oas} bits` +
        `${cfg.ds ? ', DS' : ''}${cfg.ha ? ', HA' : ''}${cfg.hd ? ', HD' : ''}${cfg.fwb ? ', FWB' : ''}` +
        `${cfg.fault !== FaultType.NONE ? `; configuration fault: ${faultTypeName(cfg.fault)} level ${cfg.faultLevel}` : ''}\n`,
    );
    const ipaText = u64ToShortHex(ipaHalves.lo, ipaHalves.hi);
    if (ipaHalves.hi >>> 0 >= 2 ** (feat.paBits - 32)) {
      io.out(`walk: ${access} ipa=${ipaText}: at or above 2^${feat.paBits} (PAMax): stage-1 (off) address size fault, level 0, taken to EL1; no stage-2 walk\n`);
      return ExitCode.OK;
    }
    const ipa = ipaHalves.hi * 0x1_0000_0000 + ipaHalves.lo;
    const kind = access === 'exec' ? AccessKind.EXEC : access === 'write' ? AccessKind.WRITE : AccessKind.READ;
    const walk = new WalkResult();
    const trace = new WalkTrace();
    const flags = WalkFlag.NO_UPDATE | (a.values.el0 === true ? WalkFlag.EL0 : 0);
    const fault = s2Walk(mem, cfg, ipa, kind, flags, walk, trace);
    io.out(`walk: ${access}${a.values.el0 === true ? ' from EL0' : ''} ipa=${ipaText}\n`);
    if (trace.n === 0) io.out('  (no descriptor read)\n');
    for (let i = 0; i < trace.n; i++) {
      const level = trace.level[i]!; // JUSTIFY: i < n.
      const step: TraceStep = {
        level,
        descPa: trace.descPa[i]!,
        lo: trace.lo[i]!,
        hi: trace.hi[i]!,
        decoded: decodeS2Desc(trace.lo[i]!, trace.hi[i]!, { granule: cfg.granule, level, ds: cfg.ds, pa52: cfg.pa52 }),
      };
      io.out(`  ${formatTraceStep(step)}\n`);
    }
    if (fault === FaultType.NONE) {
      io.out(`result: PA ${hex(walk.pa)}${walk.leafLevel <= 3 ? ` (leaf at level ${walk.leafLevel}, ${2 ** walk.leafShift} bytes)` : ''}\n`);
    } else {
      const fsc = faultStatusCode(fault, walk.level);
      io.out(`result: ${faultTypeName(fault) === 'other' ? 'external abort on the walk' : faultTypeName(fault)} fault, level ${walk.level} (FSC 0x${fsc.toString(16).padStart(2, '0')})\n`);
      const ctx = new AbortContext();
      ctx.access = kind === AccessKind.EXEC ? AbortAccess.EXEC : kind === AccessKind.WRITE ? AbortAccess.WRITE : AbortAccess.READ;
      ctx.insn = insnLdrStrX(ORACLE_STUB_RT);
      ctx.vaLo = ipaHalves.lo;
      ctx.vaHi = ipaHalves.hi;
      const exc = new El2ExceptionState();
      deliverStage2Abort(walk, ctx, exc);
      const insn = kind === AccessKind.EXEC ? 'an instruction fetch' : kind === AccessKind.WRITE ? 'STR X1, [X0]' : 'LDR X1, [X0]';
      io.out(
        `  as ${insn} from EL1: ESR_EL2=${u64ToShortHex(exc.esrLo, exc.esrHi)} FAR_EL2=${u64ToShortHex(exc.farLo, exc.farHi)} ` +
          `HPFAR_EL2=${u64ToShortHex(exc.hpfarLo, exc.hpfarHi)}${exc.hpfarValid ? '' : ' (HPFAR UNKNOWN architecturally; the IPA is written)'}\n`,
      );
    }
    if (kind !== AccessKind.EXEC) {
      const at = new AtResult();
      atS12E1(mem, cfg, feat.paBits, ipaHalves.lo, ipaHalves.hi, kind === AccessKind.WRITE, new WalkResult(), null, at);
      const form = kind === AccessKind.WRITE ? 'AT S12E1W' : 'AT S12E1R';
      if (at.exception) io.out(`  as ${form}: synchronous Data Abort at EL2, ESR_EL2=${u64ToShortHex(at.esrLo, 0)} FAR_EL2=${u64ToShortHex(at.farLo, at.farHi)}\n`);
      else io.out(`  as ${form}: PAR_EL1=${u64ToShortHex(at.parLo, at.parHi)}\n`);
    }
    return ExitCode.OK;
  },
};
