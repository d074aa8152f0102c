#!/usr/bin/env node
// Runs every check `npm test` promises: lint, typecheck (the build already ran), TS tests, Python tests.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const only = process.argv.slice(2);
const results = [];
function stage(name, cmd, argv, env = {}) {
  if (only.length && !only.includes(name)) return;
  process.stderr.write(`\n=== ${name}: ${cmd} ${argv.join(' ')}\n`);
  const t0 = Date.now();
  const r = spawnSync(cmd, argv, { cwd: root, stdio: 'inherit', env: { ...process.env, ...env } });
  results.push({ name, ok: r.status === 0, s: (Date.now() - t0) / 1000 });
}
stage('lint', join(root, 'node_modules', '.bin', 'eslint'), ['.']);
stage('typecheck', join(root, 'node_modules', '.bin', 'tsc'), ['-p', 'tsconfig.json', '--noEmit']);
stage('ts', process.execPath, ['--test', '--test-concurrency=2', '--test-reporter=spec', 'dist/test/']);
const py = join(root, '.venv', 'bin', 'python');
if (existsSync(py) && existsSync(join(root, 'models', 'tests'))) {
  stage('python', py, ['-m', 'pytest', '-q', 'models/tests'], { HF_HUB_OFFLINE: '1', TRANSFORMERS_OFFLINE: '1' });
}
process.stderr.write('\n=== summary\n');
for (const r of results) process.stderr.write(`${r.ok ? 'ok  ' : 'FAIL'} ${r.name} (${r.s.toFixed(1)} s)\n`);
process.exit(results.every((r) => r.ok) ? 0 : 1);
