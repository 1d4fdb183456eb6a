// `s2emu decode` and `s2emu walk`.
import t from 'tap';
import { fileURLToPath } from 'node:url';
import { runCli } from '../../src/cli/main.js';
import { ExitCode } from '../../src/cli/command.js';
import { u64ToHex } from '../../src/arch/bits.js';
import { s2Page, s2Table, S2MemAttr } from '../../src/arch/desc-codec.js';
import { captureIo } from './_io.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

t.test('decode prints every field of a page descriptor', async (t) => {
  const d = s2Page({ oa: 0x5010_6000, ap: 'RO', af: true, dbm: true, xn: 0b10, memAttr: S2MemAttr.NORMAL_WB, sh: 3, sw: 0b0101 });
  const io = captureIo(ROOT);
  t.equal(await runCli(['decode', u64ToHex(d.lo, d.hi), '--granule', '4k', '--level', '3'], io), ExitCode.OK);
  t.match(io.stdout, /kind\s+page/);
  t.match(io.stdout, /OA\s+0x50106000/);
  t.match(io.stdout, /S2AP\s+0b01 \(bits\[7:6\]: RO\)/);
  t.match(io.stdout, /DBM\s+1/);
  t.match(io.stdout, /XN\s+0b10/);
  t.match(io.stdout, /SW\s+0x5/);
  t.match(io.stdout, /MemAttr\s+0b1111 .*Normal oWB iWB/);
});

t.test('decode: a table descriptor, an invalid one, and DS / 52-bit forms', async (t) => {
  const tab = s2Table({ nlta: 0x4810_1000 });
  const io = captureIo(ROOT);
  t.equal(await runCli(['decode', u64ToHex(tab.lo, tab.hi), '--level', '1'], io), ExitCode.OK);
  t.match(io.stdout, /NLTA\s+0x48101000/);
  const io2 = captureIo(ROOT);
  t.equal(await runCli(['decode', '0x7fd', '--granule', '4k', '--level', '0'], io2), ExitCode.OK);
  t.match(io2.stdout, /kind\s+invalid/, 'a block at 4K level 0 without DS');
  const io3 = captureIo(ROOT);
  t.equal(await runCli(['decode', '0x7fd', '--granule', '4k', '--level', '0', '--ds'], io3), ExitCode.OK);
  t.match(io3.stdout, /kind\s+block/, 'allowed with DS');
  const io4 = captureIo(ROOT);
  t.equal(await runCli(['decode', '0x5002a7ff', '--granule', '64k', '--level', '3', '--pa52'], io4), ExitCode.OK);
  t.match(io4.stdout, /OA\s+0xa000050020000/);
});

t.test('decode: usage errors exit 2', async (t) => {
  for (const argv of [
    ['decode'],
    ['decode', 'xyz', '--level', '3'],
    ['decode', '0x1', '--level', '4'],
    ['decode', '0x1', '--level', '-1'],
    ['decode', '0x1', '--granule', '8k', '--level', '3'],
    ['decode', '0x1', '--granule', '64k', '--level', '3', '--ds'],
    ['decode', '0x1'],
  ]) {
    const io = captureIo(ROOT);
    t.equal(await runCli(argv, io), ExitCode.BAD_INPUT, argv.join(' '));
    t.match(io.stderr, /^s2emu decode: /);
  }
});

t.test('walk prints each level with address, raw value and fields, then the syndromes', async (t) => {
  const io = captureIo(ROOT);
  t.equal(await runCli(['walk', 'fixtures/arch/xnx-el0.json', '--ipa', '0x40002000', '--access', 'exec', '--el0'], io), ExitCode.OK);
  t.match(io.stdout, /config: .*granule 4k, IAS 39 bits, start level 1/);
  t.match(io.stdout, /L1  @0x48100008 = 0x0000_0000_4810_1003  table next=0x48101000/);
  t.match(io.stdout, /L3  @0x48102010 = 0x0040_0000_5010_27ff  page oa=0x50102000 .*XN=10/);
  t.match(io.stdout, /result: permission fault, level 3 \(FSC 0x0f\)/);
  t.match(io.stdout, /ESR_EL2=0x8200000f FAR_EL2=0x40002000 HPFAR_EL2=0x400020/);
  const ok = captureIo(ROOT);
  t.equal(await runCli(['walk', 'fixtures/arch/xnx-el0.json', '--ipa', '0x40000010'], ok), ExitCode.OK);
  t.match(ok.stdout, /result: PA 0x50100010 \(leaf at level 3, 4096 bytes\)/);
  t.match(ok.stdout, /as AT S12E1R: PAR_EL1=0x50100b00/);
});

t.test('walk: --case picks a case; errors exit 2', async (t) => {
  const io = captureIo(ROOT);
  t.equal(await runCli(['walk', 'fixtures/qemu/gen-seed-1.json', '--ipa', '0x1000'], io), ExitCode.BAD_INPUT);
  t.match(io.stderr, /holds 885 cases; pick one with --case NAME/);
  const io2 = captureIo(ROOT);
  t.equal(await runCli(['walk', 'fixtures/qemu/gen-seed-1.json', '--case', 'gen-seed1-0000', '--ipa', '0x1f0cc52c0'], io2), ExitCode.OK);
  t.match(io2.stdout, /configuration fault: address_size level 0|result: address_size fault, level 0/);
  const io3 = captureIo(ROOT);
  t.equal(await runCli(['walk', 'fixtures/arch/fwb.json', '--ipa', '0x10000000000001'], io3), ExitCode.OK);
  t.match(io3.stdout, /at or above 2\^52 \(PAMax\)/);
  for (const argv of [
    ['walk', 'fixtures/arch/fwb.json'],
    ['walk', 'fixtures/arch/fwb.json', '--ipa', 'zz'],
    ['walk', 'fixtures/arch/fwb.json', '--ipa', '0x0', '--access', 'fetch'],
    ['walk', 'nope.json', '--ipa', '0x0'],
    ['walk', 'fixtures/arch/fwb.json', '--ipa', '0x0', '--case', 'nope'],
  ]) {
    const e = captureIo(ROOT);
    t.equal(await runCli(argv, e), ExitCode.BAD_INPUT, argv.join(' '));
  }
});

t.test('walk: an external abort on the walk shows the AT exception', async (t) => {
  const io = captureIo(ROOT);
  t.equal(await runCli(['walk', 'fixtures/qemu/gen-seed-1.json', '--case', 'gen-seed1-0086', '--ipa', '0x29e7810720', '--access', 'read'], io), ExitCode.OK);
  t.match(io.stdout, /external abort on the walk/);
  t.match(io.stdout, /as AT S12E1R: synchronous Data Abort at EL2, ESR_EL2=0x96000157/);
});
