// The built program (dist/src/cli/main.js, built by `pretest`): exit statuses and output of a real process.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const MAIN = join(ROOT, 'dist', 'src', 'cli', 'main.js');

function s2emu(args: string[], cwd = ROOT) {
  return spawnSync(process.execPath, [MAIN, ...args], { cwd, encoding: 'utf8' });
}

t.test('dist is built (npm test runs the build first)', async (t) => {
  t.ok(existsSync(MAIN), `${MAIN} exists`);
});

t.test('check on the sanity fixture: exit 0, last line "18 passed, 0 failed"', { skip: !existsSync(MAIN) }, async (t) => {
  const r = s2emu(['check', 'fixtures/qemu/oracle-sanity.json']);
  t.equal(r.status, 0);
  t.match(r.stdout, /\n18 passed, 0 failed\n$/);
});

t.test('bad input: exit 2, message with path, no stack trace', { skip: !existsSync(MAIN) }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 's2emu-spawn-'));
  writeFileSync(join(dir, 'x.json'), '{"name":"a","regs":{},"queries":[],"expect":[]}');
  const r = s2emu(['check', 'x.json'], dir);
  t.equal(r.status, 2);
  t.match(r.stderr, /x\.json: \$\.regs\.vtcr_el2: expected a 64-bit hex string/);
  t.notMatch(r.stderr, /\n\s+at /);
});
