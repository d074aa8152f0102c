// `demo --new-subject` end to end on the tiny random bundle, with the real parts: simulate (Python), serve --record,
// calibrate, simulate, live decoding. Asserts the recording, the new bundle (new person added, old ones and the input
// bundle unchanged), every test trial decoded, the summary's `calibration`, JSON-only stdout, and step reuse on a rerun.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT, tinyBundle } from '../inference/tinyBundle.js';

let work: string;
let bundle: string;

before(() => {
  work = mkdtempSync(join(tmpdir(), 'msx-newsubj-'));
  bundle = join(work, 'tiny'); // a private copy: other checkouts' test runs remove tiny bundles of other versions
  cpSync(tinyBundle(), bundle, { recursive: true });
});
after(() => rmSync(work, { recursive: true, force: true }));

function demo(args: string[]): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [join(ROOT, 'bin', 'mindsemantix.mjs'), 'demo', ...args], {
    encoding: 'utf8',
    cwd: ROOT,
    timeout: 240_000,
  });
  return { code: r.status ?? 1, stdout: r.stdout, stderr: r.stderr };
}

interface Line {
  type: string;
  run?: string;
  caption?: string | null;
  error?: string;
  decoded?: number;
  trials?: number;
  baseline?: Record<string, unknown>;
  calibration?: Record<string, unknown>;
  metrics?: Record<string, number>;
}

test('demo --new-subject simulates, records, calibrates and decodes a new person live', () => {
  const dir = join(work, 'ns');
  const manifestBefore = readFileSync(join(bundle, 'manifest.json'), 'utf8');
  const args = [
    '--new-subject',
    '--models',
    bundle,
    '--work',
    dir,
    '--calibration-runs',
    '1',
    '--calibration-trials',
    '62',
    '--test-runs',
    '1',
    '--test-trials',
    '5',
    '--once',
    '--json',
    '--port',
    '0',
    '--speed',
    'max',
    '--no-meteor',
  ];
  const r = demo(args);
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Line); // JSON lines only
  const trials = lines.filter((l) => l.type === 'trial');
  const summary = lines[lines.length - 1];
  assert.equal(summary.type, 'summary');
  assert.equal(lines.length, trials.length + 1);
  assert.equal(trials.length, 5);
  assert.ok(
    trials.every((t) => typeof t.caption === 'string' && !t.error),
    JSON.stringify(trials),
  );
  assert.equal(summary.decoded, 5);
  assert.ok(summary.baseline, 'the ridge baseline beside the model');
  const cal = summary.calibration as { subject: string; trials: number; voxels: number; seconds: number };
  assert.equal(cal.subject, 'sim21');
  assert.ok(cal.trials >= 50 && cal.trials <= 62 && cal.voxels > 100 && cal.seconds > 0, JSON.stringify(cal));

  // progress: one line per step with its duration, and the unknown person shown as not calibrated while recording
  for (const n of [1, 2, 3, 4]) assert.match(r.stderr, new RegExp(`demo: \\[${n}/4\\] .*: done in \\d+\\.\\d s`));
  assert.match(r.stderr, /sub-sim21 is not calibrated yet/);

  // the recording (BIDS, from serve --record) is what calibrate read
  const func = join(dir, 'calibration-recording', 'sub-sim21');
  assert.ok(existsSync(func));
  const m = JSON.parse(readFileSync(join(dir, 'bundle', 'manifest.json'), 'utf8')) as {
    subjects: Record<string, unknown>;
    calibration: Record<string, { session: string; trials: number }>;
  };
  assert.equal(m.calibration.sim21.session, join(dir, 'calibration-recording'));
  const old = JSON.parse(manifestBefore) as { subjects: Record<string, unknown> };
  assert.deepEqual(Object.keys(m.subjects).sort(), [...Object.keys(old.subjects), 'sim21'].sort());
  for (const s of Object.keys(old.subjects)) assert.deepEqual(m.subjects[s], old.subjects[s]);
  assert.equal(readFileSync(join(bundle, 'manifest.json'), 'utf8'), manifestBefore, 'the input bundle is untouched');
  assert.ok(!readdirSync(bundle).some((f) => f.includes('sim21')));

  // a rerun reuses every finished step and decodes again
  const again = demo(args);
  assert.equal(again.code, 0, again.stderr);
  assert.equal((again.stderr.match(/: reused from /g) ?? []).length, 4, again.stderr);
  const s2 = JSON.parse(again.stdout.trim().split('\n').pop()!) as Line;
  assert.equal(s2.decoded, 5);
  assert.deepEqual(s2.calibration, summary.calibration);
});

test('demo --new-subject: a person the bundle already has, --session with it, or too few calibration trials is one sentence', () => {
  const known = demo([
    '--new-subject',
    'sim01',
    '--models',
    bundle,
    '--work',
    join(work, 'known'),
    '--once',
    '--json',
    '--port',
    '0',
  ]);
  assert.equal(known.code, 2);
  assert.match(
    known.stderr.trim().split('\n').pop()!,
    /sub-sim01 is already in the bundle .*pass a new person's id such as sim21/,
  );
  const both = demo(['--new-subject', '--session', 'data/demo', '--models', bundle]);
  assert.equal(both.code, 2);
  assert.match(both.stderr, /--session and --new-subject exclude each other/);
  assert.equal(known.stdout, '');
  const few = demo([
    '--new-subject',
    '--models',
    bundle,
    '--work',
    join(work, 'few'),
    '--calibration-runs',
    '1',
    '--calibration-trials',
    '20',
    '--once',
    '--json',
  ]);
  assert.equal(few.code, 2);
  assert.match(
    few.stderr.trim().split('\n').pop()!,
    /1 × 20 calibration trials is too few .*raise --calibration-runs or --calibration-trials/,
  );
  assert.ok(!existsSync(join(work, 'few')), 'nothing simulated');
});
