// `npm start -- --json` must print only JSON on stdout on the first run too: the bootstrap's installers (npm, pip, the
// LM export, the simulator) log to stderr through runInstaller.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

const root = new URL('../../../', import.meta.url).pathname;

test("the bootstrap's installers log to stderr and leave stdout empty", () => {
  const lib = join(root, 'scripts', 'bootstrapRun.mjs');
  const noisy = "process.stdout.write('Collecting torch==2.13.0\\n'); process.stderr.write('pip warning\\n')";
  const driver = `import { runInstaller } from ${JSON.stringify(lib)};
runInstaller(process.execPath, ['-e', ${JSON.stringify(noisy)}], { cwd: ${JSON.stringify(root)} });`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', driver], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, '');
  assert.match(r.stderr, /Collecting torch==2\.13\.0/);
  assert.match(r.stderr, /pip warning/);
});

test('a failing installer exits non-zero with one line saying what failed', () => {
  const lib = join(root, 'scripts', 'bootstrapRun.mjs');
  const driver = `import { runInstaller } from ${JSON.stringify(lib)};
runInstaller(process.execPath, ['-e', 'process.exit(3)'], { cwd: ${JSON.stringify(root)}, hint: 'Check the network.' });`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', driver], { encoding: 'utf8' });
  assert.equal(r.status, 1);
  assert.equal(r.stdout, '');
  assert.match(r.stderr, /\[bootstrap\] failed: .* \(exit 3\)\. Check the network\./);
});
