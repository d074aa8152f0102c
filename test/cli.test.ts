import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';

const bin = new URL('../../bin/mindsemantix.mjs', import.meta.url).pathname;

test('unknown command prints one clear line and exits non-zero', () => {
  const r = spawnSync(process.execPath, [bin, 'frobnicate'], { encoding: 'utf8' });
  assert.equal(r.status, 2);
  assert.match(r.stderr.trim(), /^mindsemantix: unknown command "frobnicate"; run `mindsemantix --help`/);
  assert.equal(r.stderr.trim().split('\n').length, 1);
});

test('--help lists every contract command', () => {
  const r = spawnSync(process.execPath, [bin, '--help'], { encoding: 'utf8' });
  assert.equal(r.status, 0);
  for (const c of ['serve', 'bridge', 'replay', 'demo', 'simulate', 'convert', 'eval'])
    assert.match(r.stdout, new RegExp(`\\b${c}\\b`));
});

test('serve and demo refuse an unknown --lm-precision with the choices', () => {
  for (const cmd of ['serve', 'demo']) {
    const r = spawnSync(process.execPath, [bin, cmd, '--lm-precision', 'fp8'], { encoding: 'utf8' });
    assert.equal(r.status, 2);
    assert.match(r.stderr, new RegExp(`${cmd}: --lm-precision must be one of auto, fp32, int8 \\(got "fp8"\\)`));
  }
});
