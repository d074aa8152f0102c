#!/usr/bin/env node
// Runs every check `npm test` promises: lint, typecheck (the build already ran), dependency rules, TS tests, Python tests.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const only = process.argv.slice(2);
const results = [];
function stage(name, cmd, argv, env = {}, always = false) {
  if (!always && only.length && !only.includes(name)) return;
  process.stderr.write(`\n=== ${name}: ${cmd} ${argv.join(' ')}\n`);
  const t0 = Date.now();
  const r = spawnSync(cmd, argv, { cwd: root, stdio: 'inherit', env: { ...process.env, ...env } });
  results.push({ name, ok: r.status === 0, s: (Date.now() - t0) / 1000 });
}
stage('lint', join(root, 'node_modules', '.bin', 'eslint'), ['.']);
// One formatting for TS/JS (.prettierrc.json); \`npx prettier --write .\` fixes what this reports.
stage('format', join(root, 'node_modules', '.bin', 'prettier'), ['--check', '--log-level', 'warn', '.']);
stage('typecheck', join(root, 'node_modules', '.bin', 'tsc'), ['-p', 'tsconfig.json', '--noEmit']);
// One-way imports between folders (rules in .dependency-cruiser.cjs, layers in docs/ARCHITECTURE.md).
stage('deps', join(root, 'node_modules', '.bin', 'depcruise'), [
  '--config',
  '.dependency-cruiser.cjs',
  'src',
  'streams',
]);
// Failures also go to a file so the summary, the part of a CI log that is always shown, can name them.
const failDir = mkdtempSync(join(tmpdir(), 'msx-test-'));
const tsArgs = (failFile, files) => [
  '--test',
  '--test-concurrency=2',
  '--test-reporter=spec',
  '--test-reporter-destination=stdout',
  `--test-reporter=${join(root, 'scripts', 'failureReporter.mjs')}`,
  `--test-reporter-destination=${failFile}`,
  ...files,
];
const readFailures = (f) =>
  existsSync(f)
    ? readFileSync(f, 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l))
    : [];
stage('ts', process.execPath, tsArgs(join(failDir, 'failures.jsonl'), ['dist/test/']));
const failures = readFailures(join(failDir, 'failures.jsonl'));
// A file whose tests failed runs once more, alone with its kind: a failure that does not repeat is reported as flaky
// (by name, in the summary) instead of failing the build; one that repeats fails it.
let flaky = [];
const tsResult = results.find((r) => r.name === 'ts');
const failedFiles = [...new Set(failures.map((f) => f.file).filter(Boolean))];
if (tsResult && !tsResult.ok && failedFiles.length && failedFiles.length <= 5) {
  stage('ts-rerun', process.execPath, tsArgs(join(failDir, 'rerun.jsonl'), failedFiles), {}, true);
  const rerun = results.pop();
  if (rerun.ok && readFailures(join(failDir, 'rerun.jsonl')).length === 0) {
    tsResult.ok = true;
    flaky = failures;
  }
  tsResult.s += rerun.s;
}
rmSync(failDir, { recursive: true, force: true });
const py = join(root, '.venv', 'bin', 'python');
if (existsSync(py) && existsSync(join(root, 'models', 'tests'))) {
  // The Python side's linter (rules in models/pyproject.toml: pyflakes + pycodestyle errors).
  stage('lint-python', join(root, '.venv', 'bin', 'ruff'), ['check', '--config', 'models/pyproject.toml', 'models']);
  stage('python', py, ['-m', 'pytest', '-q', 'models/tests'], { HF_HUB_OFFLINE: '1', TRANSFORMERS_OFFLINE: '1' });
}
process.stderr.write('\n=== summary\n');
for (const r of results) process.stderr.write(`${r.ok ? 'ok  ' : 'FAIL'} ${r.name} (${r.s.toFixed(1)} s)\n`);
for (const f of failures) {
  const file = f.file.replace(/^file:\/\//, '').replace(`${root}/`, '');
  const how = flaky.includes(f) ? 'FLAKY (failed, then passed when its file ran again)' : 'failed';
  process.stderr.write(`  ${how}: ${file} › ${f.name}\n    ${f.message.replace(/\n/g, '\n    ')}\n`);
}
process.exit(results.length && results.every((r) => r.ok) ? 0 : 1);
