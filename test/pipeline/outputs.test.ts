import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { sliceMontagePixels, renderSliceMontagePng } from '../../src/sinks/dashboard/sliceMontage.js';
import { CaptionRecorder } from '../../src/pipeline/captionFiles.js';
import { percentile } from '../../src/pipeline/summary.js';

test('mosaic tiles evenly spaced axial slices with anterior at the top, windowed to 0..255', async () => {
  const dims: [number, number, number] = [4, 3, 6];
  const data = new Float32Array(4 * 3 * 6);
  // value = z*1000 + y*100 + x*20, so each tile and position is identifiable after windowing
  for (let z = 0; z < 6; z++)
    for (let y = 0; y < 3; y++) for (let x = 0; x < 4; x++) data[x + 4 * (y + 3 * z)] = z * 1000 + y * 100 + x * 20;
  const m = sliceMontagePixels(data, dims, { slices: 4, columns: 2 });
  assert.equal(m.width, 8);
  assert.equal(m.height, 6);
  // first tile's top row is y = 2 (anterior up), its pixels increase with x
  const row0 = Array.from(m.pixels.subarray(0, 4));
  assert.ok(row0[0] < row0[1] && row0[1] < row0[2]);
  const tileTopLeftBottomRow = m.pixels[2 * 8];
  assert.ok(tileTopLeftBottomRow < row0[0], 'y = 0 is drawn below y = 2');
  // later slices (higher z) are brighter
  assert.ok(m.pixels[4] > m.pixels[0] && m.pixels[3 * 8] > m.pixels[4]);
  const png = await renderSliceMontagePng(data, dims, { slices: 4, columns: 2, scale: 2 });
  const meta = await sharp(png).metadata();
  assert.deepEqual([meta.format, meta.width, meta.height], ['png', 16, 12]);
});

test('captions and, following them, reconstructions are recorded as BIDS derivatives, one row per trial, in order', async () => {
  const root = mkdtempSync(join(tmpdir(), 'msx-rec-'));
  try {
    const rec = new CaptionRecorder(root);
    const png = new Uint8Array(
      await sharp({ create: { width: 4, height: 4, channels: 3, background: '#f00' } })
        .png()
        .toBuffer(),
    );
    await Promise.all(
      [0, 1, 2].map((trial) =>
        rec.record({
          subject: 'sim01',
          session: '01',
          run: 'task-vision_run-01',
          trial,
          stimulusId: `s${trial}`,
          onset: 3 + trial * 6,
          text: `a caption\twith tab ${trial}`,
          confidence: 0.5,
          tokenLogprobs: [-0.1, -0.2],
          flags: trial === 1 ? ['high-motion'] : [],
          latencyMs: 12.34,
          references: ['a ref'],
        }),
      ),
    );
    await Promise.all(
      [0, 1, 2].map((trial) =>
        rec.recordReconstruction({
          subject: 'sim01',
          session: '01',
          run: 'task-vision_run-01',
          trial,
          stimulusId: `s${trial}`,
          ...(trial === 1 ? { error: 'generator failed' } : { image: png, imageFormat: 'png' as const, ms: 41.26 }),
        }),
      ),
    );
    const dir = join(root, 'derivatives', 'mindsemantix-decoder', 'sub-sim01', 'ses-01');
    const rows = readFileSync(join(dir, 'sub-sim01_ses-01_task-vision_run-01_captions.tsv'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => l.split('\t'));
    assert.deepEqual(rows[0].slice(0, 4), ['trial', 'stimulus_id', 'onset', 'caption']);
    assert.deepEqual(
      rows.slice(1).map((r) => r[0]),
      ['0', '1', '2'],
    );
    assert.equal(rows[1][3], 'a caption with tab 0');
    assert.equal(rows[2][7], 'high-motion');
    assert.equal(rows[1][9], '["a ref"]');
    const recons = readFileSync(join(dir, 'sub-sim01_ses-01_task-vision_run-01_recons.tsv'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => l.split('\t'));
    assert.deepEqual(recons, [
      ['trial', 'stimulus_id', 'recon_file', 'recon_ms', 'error'],
      ['0', 's0', 'recon/sub-sim01_ses-01_task-vision_run-01_trial-000_recon.png', '41.3', 'n/a'],
      ['1', 's1', 'n/a', 'n/a', 'generator failed'],
      ['2', 's2', 'recon/sub-sim01_ses-01_task-vision_run-01_trial-002_recon.png', '41.3', 'n/a'],
    ]);
    assert.deepEqual(
      readdirSync(join(dir, 'recon')).sort(),
      [0, 2].map((t) => `sub-sim01_ses-01_task-vision_run-01_trial-00${t}_recon.png`),
    );
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('percentile interpolates like numpy', () => {
  assert.equal(percentile([], 50), 0);
  assert.equal(percentile([3, 1, 2], 50), 2);
  assert.equal(percentile([1, 2, 3, 4], 50), 2.5);
  assert.ok(Math.abs(percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 99) - 9.91) < 1e-9);
});
