// The demo summary's `image` block (CONTRACT.md "Further summary fields"): on the tiny random bundle with the EffNet
// graph the bootstrap generates (python -m mindsemantix.effnet_onnx) and baseline images added, `demo --json` scores the
// reconstructions and the retrieval baseline against the stimulus images its events carry; without stimulus images
// there is no block; without the graph or the baseline images the block says less and stderr says why. The scoring
// itself: a perfect reconstruction and a perfect retrieval score 1 on every metric.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import sharp from 'sharp';
import { ROOT, tinyBundle } from '../inference/tinyBundle.js';
import { writeSyntheticSession, type SyntheticSession } from '../e2e/syntheticSession.js';
import { loadBundle } from '../../src/inference/bundle.js';
import { readNpy } from '../../src/inference/npy.js';
import { createSessionFactory } from '../../src/inference/sessions.js';
import { imageSummary, type ImagePair } from '../../src/pipeline/imageSummary.js';
import { rgbToPlanar } from '../../src/metrics/imageMetrics.js';

let work: string;
let plain: string; // the tiny bundle as exported: no EffNet graph, no baseline images
let full: string; // with both
let session: SyntheticSession;

/** A uint8 .npy, gzip-compressed, as mindsemantix.baseline_images writes it. */
function npyUint8Gz(data: Uint8Array, shape: number[]): Buffer {
  let header = `{'descr': '|u1', 'fortran_order': False, 'shape': (${shape.join(', ')}), }`;
  header += ' '.repeat(64 - ((10 + header.length + 1) % 64)) + '\n';
  const head = Buffer.alloc(10);
  head.write('\x93NUMPY', 0, 'latin1');
  head[6] = 1;
  head.writeUInt16LE(header.length, 8);
  return gzipSync(Buffer.concat([head, Buffer.from(header, 'latin1'), Buffer.from(data)]));
}

/** One flat colour per baseline caption, 64² (the bank's images). */
function bankImages(n: number): Uint8Array {
  const px = new Uint8Array(n * 64 * 64 * 3);
  for (let i = 0; i < n; i++)
    for (let p = 0; p < 64 * 64; p++) {
      const x = p % 64;
      px.set([(40 * i) % 256, x * 3, 255 - 30 * i], (i * 64 * 64 + p) * 3);
    }
  return px;
}

function addBaselineImages(dir: string, images: Uint8Array, n: number): void {
  writeFileSync(join(dir, 'baseline_images.npy.gz'), npyUint8Gz(images, [n, 64, 64, 3]));
  const m = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8'));
  m.baseline.images = 'baseline_images.npy.gz';
  m.files['baseline_images.npy.gz'] = createHash('sha256')
    .update(readFileSync(join(dir, 'baseline_images.npy.gz')))
    .digest('hex');
  writeFileSync(join(dir, 'manifest.json'), JSON.stringify(m));
}

before(async () => {
  work = mkdtempSync(join(tmpdir(), 'msx-imgsum-'));
  plain = join(work, 'plain');
  full = join(work, 'full');
  cpSync(tinyBundle(), plain, { recursive: true }); // private copies: other checkouts remove tiny bundles of other versions
  cpSync(plain, full, { recursive: true });
  const r = spawnSync(join(ROOT, '.venv', 'bin', 'python'), ['-m', 'mindsemantix.effnet_onnx', full], {
    encoding: 'utf8',
    env: { ...process.env, PYTHONPATH: join(ROOT, 'models') },
  });
  assert.equal(r.status, 0, r.stderr);
  const n = readNpy(join(full, 'baseline_embeddings.npy')).shape[0];
  addBaselineImages(full, bankImages(n), n);
  session = await writeSyntheticSession(join(work, 'session'), join(plain, 'masks', 'sub-sim01_roi-mask.nii.gz'), {
    trials: 6,
  });
});
after(() => rmSync(work, { recursive: true, force: true }));

interface Summary {
  type: string;
  decoded: number;
  image?: { trials: number; model: Record<string, number>; retrieval?: Record<string, number> };
}

function demo(bundle: string, sessionDir: string): { summary: Summary; stderr: string } {
  const r = spawnSync(
    process.execPath,
    [
      join(ROOT, 'bin', 'mindsemantix.mjs'),
      'demo',
      '--session',
      sessionDir,
      '--models',
      bundle,
      '--speed',
      'max',
      '--port',
      '0',
      '--once',
      '--json',
      '--no-meteor',
    ],
    { encoding: 'utf8', cwd: ROOT, timeout: 180_000 },
  );
  assert.equal(r.status, 0, r.stderr);
  const lines = r.stdout.trim().split('\n');
  const summary = JSON.parse(lines[lines.length - 1]) as Summary;
  assert.equal(summary.type, 'summary');
  return { summary, stderr: r.stderr };
}

function assertScores(s: Record<string, number> | undefined, keys: string[], what: string): void {
  assert.ok(s, `${what} missing`);
  assert.deepEqual(Object.keys(s).sort(), [...keys].sort(), what);
  for (const k of ['PixCorr', 'SSIM']) assert.ok(s[k] >= -1 && s[k] <= 1, `${what}.${k} = ${s[k]}`);
  for (const k of ['TwoWayEffNet', 'TwoWayEffNetEarly'])
    if (k in s) assert.ok(s[k] >= 0 && s[k] <= 1, `${what}.${k} = ${s[k]}`);
}

const ALL = ['PixCorr', 'SSIM', 'TwoWayEffNet', 'TwoWayEffNetEarly'];

test('demo --json: image.model and image.retrieval score every decoded trial against its stimulus image', () => {
  const { summary } = demo(full, session.dir);
  assert.equal(summary.decoded, session.trials);
  assert.equal(summary.image?.trials, session.trials);
  assertScores(summary.image?.model, ALL, 'image.model');
  assertScores(summary.image?.retrieval, ALL, 'image.retrieval');
});

test('without the EffNet graph and the baseline images: image.model has PixCorr and SSIM, stderr says why', () => {
  const { summary, stderr } = demo(plain, session.dir);
  assertScores(summary.image?.model, ['PixCorr', 'SSIM'], 'image.model');
  assert.equal(summary.image?.retrieval, undefined);
  assert.match(stderr, /image metrics have no TwoWayEffNet: the bundle has no effnet_lite0\.onnx; run `npm start`/);
  assert.match(stderr, /image metrics have no retrieval baseline: the bundle has no baseline images/);
});

test('a session whose events carry no stimulus images has no image block, and stderr says why', () => {
  const bare = join(work, 'bare');
  cpSync(session.dir, bare, { recursive: true });
  const events = join(
    bare,
    `sub-${session.subject}`,
    'ses-01',
    'func',
    `sub-${session.subject}_ses-01_${session.run}_events.tsv`,
  );
  const rows = readFileSync(events, 'utf8').trimEnd().split('\n');
  writeFileSync(events, rows.map((l) => l.split('\t').slice(0, -1).join('\t')).join('\n') + '\n'); // no stim_file
  const { summary, stderr } = demo(full, bare);
  assert.equal(summary.decoded, session.trials);
  assert.equal(summary.image, undefined);
  assert.match(stderr, /no image metrics: the session's events carried no stimulus images/);
});

test('a perfect reconstruction and a perfect retrieval score 1: PixCorr, SSIM and two-way identification', async () => {
  const bundle = await loadBundle(full);
  const factory = await createSessionFactory(bundle.path('qformer.onnx'), { log: () => {} });
  const emb = readNpy(bundle.path('baseline_embeddings.npy'));
  const E = emb.shape[1];
  const bank = bankImages(emb.shape[0]);
  const pairs: ImagePair[] = [];
  for (let i = 0; i < 3; i++) {
    const rgb = bank.subarray(i * 64 * 64 * 3, (i + 1) * 64 * 64 * 3);
    const png = await sharp(Buffer.from(rgb), { raw: { width: 64, height: 64, channels: 3 } })
      .png()
      .toBuffer();
    for (const rep of [0, 1])
      pairs.push({
        key: `r/${i}/${rep}`,
        stimulusId: `s${i}`,
        recon: { data: rgbToPlanar(rgb, 64, 64), width: 64, height: 64 },
        stimulus: { format: 'png', bytes: new Uint8Array(png), width: 64, height: 64 },
        captionEmbedding: emb.data.slice(i * E, (i + 1) * E),
      });
  }
  const said: string[] = [];
  const s = await imageSummary(pairs, bundle, factory, (l) => said.push(l));
  assert.deepEqual(said, []);
  assert.equal(s?.trials, 6);
  for (const block of [s!.model, s!.retrieval!])
    for (const k of ALL) assert.equal(block[k as keyof typeof block], 1, k);
});
