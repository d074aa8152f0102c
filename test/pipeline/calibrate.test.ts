// `calibrate` on the tiny random bundle: the bundle it writes (manifest, checksums, old subjects byte-identical, the
// input bundle untouched) decodes the new person in BrainDecoder and in serve; bad input is one sentence and no bundle;
// serve shows an unknown person as "not calibrated yet".
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { gzipSync } from 'node:zlib';
import { io as connect } from 'socket.io-client';
import { loadBundle } from '../../src/inference/bundle.js';
import { BrainDecoder } from '../../src/inference/decoder.js';
import { RidgeRetrieval } from '../../src/inference/baseline.js';
import { decodeNifti, encodeNifti1Volume } from '../../src/scanner/nifti.js';
import { startServer } from '../../src/server/index.js';
import { replaySession } from '../../src/replay/index.js';
import { createServePipeline } from '../../src/app/serve.js';
import type { DashSnapshot } from '../../src/sinks/dashboard/dashboard-state.js';
import { ROOT, tinyBundle } from '../inference/tinyBundle.js';
import { writeSyntheticSession, type SyntheticSession } from '../e2e/syntheticSession.js';

let work: string;
let bundle: string;
let mask: string;
let session: SyntheticSession;
let before0: Record<string, string>;

function hashTree(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else
        out[relative(dir, p)] = createHash('sha256').update(readFileSync(p)).digest('hex') + ':' + statSync(p).mtimeMs;
    }
  };
  walk(dir);
  return out;
}

function calibrate(args: string[]): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [join(ROOT, 'bin', 'mindsemantix.mjs'), 'calibrate', ...args], {
    encoding: 'utf8',
    cwd: ROOT,
  });
  return { code: r.status ?? 1, stdout: r.stdout, stderr: r.stderr };
}

/** A copy of the tiny bundle with something installed by the models/ code that installs real ones (`script`, run by
 * the project's Python with argv[1] = the copy and then `args`). */
function bundleWith(name: string, script: string, ...args: string[]): string {
  const dir = join(work, name);
  cpSync(bundle, dir, { recursive: true });
  const py = spawnSync(join(ROOT, '.venv', 'bin', 'python'), ['-c', script, dir, ...args], {
    encoding: 'utf8',
    env: { ...process.env, PYTHONPATH: join(ROOT, 'models') },
  });
  assert.equal(py.status, 0, py.stderr);
  return dir;
}

before(async () => {
  work = mkdtempSync(join(tmpdir(), 'msx-calibrate-'));
  // a private copy: other checkouts' test runs on this machine remove tiny bundles of other exporter versions
  bundle = join(work, 'tiny');
  cpSync(tinyBundle(), bundle, { recursive: true });
  mask = join(bundle, 'masks', 'sub-sim01_roi-mask.nii.gz');
  session = await writeSyntheticSession(join(work, 'cal'), mask, { subject: 'new01', trials: 60, seed: 5 });
  before0 = hashTree(bundle);
});
after(() => rmSync(work, { recursive: true, force: true }));

test('calibrate writes a complete checksummed bundle with the new person; old subjects and the input bundle are unchanged', async () => {
  const out = join(work, 'calibrated');
  const r = calibrate([
    '--session',
    session.dir,
    '--subject',
    'new01',
    '--models',
    bundle,
    '--out',
    out,
    '--mask',
    mask,
    '--json',
  ]);
  assert.equal(r.code, 0, r.stderr);
  const summary = JSON.parse(r.stdout) as {
    trials: number;
    trials_recorded: number;
    voxels: number;
    subjects: string[];
    heldout: { model: { top1: number } };
    seconds: number;
    mask: { source: string };
  };
  assert.equal(summary.trials_recorded, 60);
  assert.ok(summary.trials >= 55, `${summary.trials} usable trials`);
  assert.equal(summary.voxels, 100);
  assert.equal(summary.mask.source, 'given');
  assert.deepEqual(summary.subjects.sort(), ['new01', 'sim01', 'sim02']);
  assert.ok(summary.heldout.model.top1 >= 0 && summary.heldout.model.top1 <= 1 && summary.seconds > 0);
  assert.match(r.stderr, /\[#+\.*\] \d+\/\d+/, 'a progress bar on stderr');

  const b = await loadBundle(out); // every file against its sha256 (manifest files + lm/lm-manifest.json)
  const m = b.manifest;
  assert.deepEqual(m.subjects.new01, {
    voxels: 100,
    mask: 'masks/sub-new01_roi-mask.nii.gz',
    encoder: 'encoder-new01.onnx',
    baseline: 'baseline-new01.onnx',
  });
  for (const f of ['encoder-new01.onnx', 'baseline-new01.onnx', 'masks/sub-new01_roi-mask.nii.gz'])
    assert.ok(f in m.files, f);
  const cal = (m.calibration as Record<string, { trials: number; voxels: number; session: string; command: string }>)
    .new01;
  assert.equal(cal.trials, summary.trials);
  assert.equal(cal.session, session.dir);
  assert.match(cal.command, /^mindsemantix calibrate --session/);
  const inManifest = JSON.parse(readFileSync(join(bundle, 'manifest.json'), 'utf8')) as {
    files: Record<string, string>;
    subjects: Record<string, unknown>;
  };
  for (const [rel, sha] of Object.entries(inManifest.files))
    assert.equal(m.files[rel], sha, `${rel} keeps its checksum`);
  for (const s of ['sim01', 'sim02']) {
    assert.deepEqual(m.subjects[s], inManifest.subjects[s]);
    for (const f of [`encoder-${s}.onnx`, `baseline-${s}.onnx`, `masks/sub-${s}_roi-mask.nii.gz`]) {
      assert.ok(readFileSync(join(out, f)).equals(readFileSync(join(bundle, f))), `${f} byte-identical`);
    }
  }
  assert.deepEqual(hashTree(bundle), before0, 'the input bundle is untouched');

  const dec = await BrainDecoder.load(out, { verify: false, log: () => {} });
  try {
    const v = Float32Array.from({ length: 100 }, (_, i) => Math.sin(i));
    const c = await dec.caption('new01', v);
    assert.equal(typeof c.text, 'string');
    assert.ok(c.confidence > 0 && c.confidence <= 1);
    const ridge = await RidgeRetrieval.load(dec.bundle, dec.sessions);
    const p = await ridge!.predict('new01', v);
    assert.ok(p.caption.length > 0);
  } finally {
    await dec.release();
  }

  // serve --models NEW_BUNDLE decodes the person's run live
  const sp = createServePipeline({ log: () => {} });
  const srv = await startServer({ port: 0, log: () => {}, onHub: (hub) => sp.onHub(hub, { models: out }) });
  sp.attach(srv);
  const test4 = await writeSyntheticSession(join(work, 'live'), mask, { subject: 'new01', trials: 4, seed: 9 });
  try {
    const replay = await replaySession({ session: test4.dir, url: srv.url, speed: 'max' });
    await sp.ready;
    await sp.pipeline()!.whenDone(replay.runs);
    assert.equal(sp.pipeline()!.stats().trialsDecoded, 4);
  } finally {
    await sp.close();
    await srv.close();
  }

  // a second calibration of the same person needs --replace, and then drops the earlier fit's files
  const again = calibrate([
    '--session',
    session.dir,
    '--subject',
    'new01',
    '--models',
    out,
    '--out',
    join(work, 'again'),
    '--mask',
    mask,
    '--seed',
    '1',
    '--replace',
  ]);
  assert.equal(again.code, 0, again.stderr);
  const m2 = (await loadBundle(join(work, 'again'))).manifest;
  assert.deepEqual(Object.keys(m2.subjects).sort(), ['new01', 'sim01', 'sim02']);
  assert.notEqual(m2.files['encoder-new01.onnx'], m.files['encoder-new01.onnx'], 'the new fit replaced the old one');
});

test('with an anatomical prior in the bundle, calibrate builds the brain frame beside --mask and fits on synthetic trials', () => {
  // a prior over this bundle's embedding width
  const withPrior = bundleWith(
    'tiny-prior',
    `import json, sys, numpy as np
from pathlib import Path
from mindsemantix.anatomy_prior import AnatomyPrior, install
b = Path(sys.argv[1]); E = json.loads((b / "manifest.json").read_text())["dims"]["E"]
om, ph = AnatomyPrior.basis(0, 64)
install(b, AnatomyPrior(om, ph, np.random.default_rng(0).normal(size=(64, E))), {"seed": 0})`,
  );
  const out = join(work, 'calibrated-prior');
  const r = calibrate([
    '--session',
    session.dir,
    '--subject',
    'new01',
    '--models',
    withPrior,
    '--out',
    out,
    '--mask',
    mask,
    '--synthetic',
    '4',
    '--json',
  ]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /automatic brain mask of sub-new01 from the mean EPI \(the anatomical prior's frame\)/);
  const s = JSON.parse(r.stdout) as { mask: { source: string }; anatomy_prior: { used: boolean; why?: string } };
  assert.equal(s.mask.source, 'given', 'the given mask still chooses the voxels');
  // a random prior may fit these random trials or not (gain ≤ 0); either way it was placed in the brain's frame
  assert.ok(s.anatomy_prior.used || /gain/.test(s.anatomy_prior.why ?? ''), JSON.stringify(s.anatomy_prior));
  const m = JSON.parse(readFileSync(join(out, 'manifest.json'), 'utf8')) as { files: Record<string, string> };
  assert.ok('anatomy_prior.npz' in m.files, 'the prior travels with the calibrated bundle');
});

test("calibrate matches the calibration images with the bundle's shared code and reports the alignment", () => {
  // codes for every stimulus the session shows
  const withCode = bundleWith(
    'tiny-code',
    `import csv, sys, numpy as np
from pathlib import Path
from mindsemantix.frozen_shared import load_frozen
from mindsemantix.shared_latents import install
b, s = Path(sys.argv[1]), Path(sys.argv[2])
ids = sorted({r["stimulus_id"] for f in s.rglob("*_events.tsv") for r in csv.DictReader(open(f), delimiter="\t")})
hidden = load_frozen(b, "x", 10)[0].encoder.adapters["x"].read.out_features
install(b, ids, np.random.default_rng(0).normal(size=(len(ids), hidden)).astype(np.float32), np.ones(len(ids), np.int16), {"command": "test"})`,
    session.dir,
  );
  const out = join(work, 'calibrated-code');
  const r = calibrate([
    '--session',
    session.dir,
    '--subject',
    'new01',
    '--models',
    withCode,
    '--out',
    out,
    '--mask',
    mask,
    '--json',
  ]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /4 of 4 calibration stimuli have the bundle's shared code/);
  // This session shows 4 images: too few trials to fit a map onto the code (calibrate_fit's align_min_trials; the
  // fit itself is tested in models/tests/test_calibrate.py), so the summary says so and counts what matched.
  const s = JSON.parse(r.stdout) as { trials: number; alignment: { used?: boolean; trials_with_shared_code?: number } };
  assert.deepEqual(s.alignment, { used: false, trials_with_shared_code: s.trials });
  const m = JSON.parse(readFileSync(join(out, 'manifest.json'), 'utf8')) as {
    files: Record<string, string>;
    calibration: Record<string, { alignment: unknown }>;
  };
  assert.ok('shared_latents.npz' in m.files, 'the table travels with the calibrated bundle');
  assert.deepEqual(m.calibration.new01.alignment, s.alignment);
});

test('without --mask, calibrate chooses the voxels itself and says so', () => {
  const out = join(work, 'auto');
  const r = calibrate([
    '--session',
    session.dir,
    '--subject',
    'new01',
    '--models',
    bundle,
    '--out',
    out,
    '--voxels',
    '20',
    '--json',
  ]);
  assert.equal(r.code, 0, r.stderr);
  const s = JSON.parse(r.stdout) as {
    voxels: number;
    mask: { source: string; criterion: string; note: string; brain_mask_voxels: number };
  };
  assert.equal(s.voxels, 20);
  assert.equal(s.mask.source, 'automatic');
  assert.match(s.mask.criterion, /repeat reliability/); // 4 stimuli shown 15 times each
  assert.ok(s.mask.brain_mask_voxels > 100 && s.mask.brain_mask_voxels < 512, 'a brain mask, not the whole box');
  // which voxels win is tested on controlled data in models/tests/test_calibrate.py (select_voxels)
  const chosen = decodeNifti(new Uint8Array(readFileSync(join(out, 'masks', 'sub-new01_roi-mask.nii.gz')))).data;
  assert.equal(
    chosen.reduce((a, v) => a + (v > 0 ? 1 : 0), 0),
    20,
  );
});

test('bad input: one sentence, no output bundle, the input bundle untouched', async () => {
  const out = join(work, 'never');
  const expectFail = (args: string[], pattern: RegExp) => {
    const r = calibrate(args);
    assert.notEqual(r.code, 0);
    const lines = r.stderr.trim().split('\n');
    assert.match(lines[lines.length - 1], pattern);
    assert.ok(!existsSync(out), 'no bundle written');
  };
  const base = ['--models', bundle, '--out', out, '--mask', mask];
  expectFail(['--session', session.dir, '--subject', 'sim01', ...base], /already has sub-sim01; pass --replace/);
  expectFail(
    ['--session', session.dir, '--subject', 'new01', '--models', bundle, '--out', bundle, '--mask', mask],
    /already exists; pass a new --out/,
  );

  const noCaps = await writeSyntheticSession(join(work, 'nocaps'), mask, { subject: 'new01', trials: 60, seed: 6 });
  const ev = join(noCaps.dir, 'sub-new01', 'ses-01', 'func', `sub-new01_ses-01_${noCaps.run}_events.tsv`);
  writeFileSync(
    ev,
    readFileSync(ev, 'utf8')
      .split('\n')
      .map((l) =>
        l
          .split('\t')
          .filter((_, i) => i !== 4)
          .join('\t'),
      )
      .join('\n'),
  );
  expectFail(
    ['--session', noCaps.dir, '--subject', 'new01', ...base],
    /have no captions .*record calibration runs of captioned images/,
  );

  const few = await writeSyntheticSession(join(work, 'few'), mask, { subject: 'new01', trials: 30, seed: 7 });
  expectFail(
    ['--session', few.dir, '--subject', 'new01', ...base],
    /only \d+ of 30 calibration trials are usable.*at least 50/,
  );

  const wrong = join(work, 'wrong-mask.nii.gz');
  writeFileSync(
    wrong,
    gzipSync(
      encodeNifti1Volume({
        dims: [8, 8, 9],
        affine: [3, 0, 0, 0, 0, 3, 0, 0, 0, 0, 3, 0, 0, 0, 0, 1],
        tr: 0,
        data: new Uint8Array(576).fill(1),
      }),
    ),
  );
  expectFail(
    ['--session', session.dir, '--subject', 'new01', '--models', bundle, '--out', out, '--mask', wrong],
    /mask is 8×8×9 voxels but the runs are 8×8×8/,
  );
  assert.deepEqual(hashTree(bundle), before0, 'the input bundle is untouched');
});

test('serve shows a person the bundle does not know as not calibrated yet', async () => {
  const sp = createServePipeline({ log: () => {} });
  const srv = await startServer({ port: 0, log: () => {}, onHub: (hub) => sp.onHub(hub, { models: bundle }) });
  const url = sp.attach(srv);
  const s = await writeSyntheticSession(join(work, 'unknown'), mask, { subject: 'new02', trials: 2, seed: 3 });
  try {
    await sp.ready;
    await replaySession({ session: s.dir, url: srv.url, speed: 'max' });
    const snap = await new Promise<DashSnapshot>((resolve) => {
      const c = connect(url, { transports: ['websocket'], reconnection: false });
      c.on('snapshot', (x: DashSnapshot) => {
        c.close();
        resolve(x);
      });
    });
    const a = snap.alerts.find((x) => x.code === 'not-calibrated');
    assert.ok(a, JSON.stringify(snap.alerts));
    assert.match(
      a.message,
      /sub-new02 is not calibrated yet: record calibration runs, then run `mindsemantix calibrate`/,
    );
    assert.equal(a.level, 'warn');
    assert.ok(!snap.alerts.some((x) => x.code === 'run-rejected'));
  } finally {
    await sp.close();
    await srv.close();
  }
});
