// The flow-matching image generator (manifest flow_generator): Node runs the exported sampler with the bundle's fixed
// noise and gets the PyTorch reference pixels (test/fixtures/flowgen, written by
// `python -m mindsemantix.export_flowgen --node-fixture --out test/fixtures/flowgen`); the layout flow, whose graph
// has the regression generator in front and reads brain tokens too, likewise (test/fixtures/flowgen-layout, `--layout`).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import * as ort from 'onnxruntime-node';
import { BrainDecoder } from '../../src/inference/decoder.js';
import { BundleError } from '../../src/inference/bundle.js';
import { encodeRgb } from '../../src/inference/image.js';
import { tinyBundle } from './tinyBundle.js';

const FIXTURE = join(process.cwd(), 'test', 'fixtures', 'flowgen');
const LAYOUT_FIXTURE = join(process.cwd(), 'test', 'fixtures', 'flowgen-layout');
const FILES = ['flow_generator.onnx', 'flow_generator_noise.npy'];

interface FlowCase {
  caption_embedding: number[];
  width: number;
  height: number;
  rgb_base64: string;
  brain_tokens?: number[];
  brain_tokens_dims?: number[];
}

/** Bytes of `got` that differ from the reference, and by how much at most. */
function byteDiff(ref: Buffer, got: Uint8Array): { maxDiff: number; differing: number } {
  let maxDiff = 0;
  let differing = 0;
  for (let i = 0; i < ref.length; i++) {
    const dv = Math.abs(ref[i] - got[i]);
    maxDiff = Math.max(maxDiff, dv);
    if (dv) differing++;
  }
  return { maxDiff, differing };
}

function withFlowGenerator(into: string, entry: Record<string, unknown>, fixture = FIXTURE): string {
  const copy = join(into, 'bundle-flow');
  cpSync(tinyBundle(), copy, { recursive: true });
  const manifest = JSON.parse(readFileSync(join(copy, 'manifest.json'), 'utf8'));
  for (const f of FILES) {
    cpSync(join(fixture, f), join(copy, f));
    manifest.files[f] = createHash('sha256')
      .update(readFileSync(join(copy, f)))
      .digest('hex');
  }
  manifest.flow_generator = entry;
  writeFileSync(join(copy, 'manifest.json'), JSON.stringify(manifest));
  return copy;
}

const ENTRY = {
  onnx: 'flow_generator.onnx',
  inputs: ['caption_embedding', 'noise'],
  output: 'image',
  noise: 'flow_generator_noise.npy',
};

test('Node reconstructions from the flow generator equal the PyTorch reference pixels for the fixed noise', async () => {
  const tmp = mkdtempSync(join(tmpdir(), 'msx-flow-'));
  const d = await BrainDecoder.load(withFlowGenerator(tmp, ENTRY));
  try {
    assert.equal(d.generatorFile, 'flow_generator.onnx');
    const { T, D } = d.bundle.manifest.dims;
    const tokens = new ort.Tensor('float32', new Float32Array(T * D), [1, T, D]);
    const cases = (JSON.parse(readFileSync(join(FIXTURE, 'cases.json'), 'utf8')) as { cases: FlowCase[] }).cases;
    const images: Uint8Array[] = [];
    for (const c of cases) {
      const r = await d.reconstruct(Float32Array.from(c.caption_embedding), tokens);
      assert.deepEqual([r.width, r.height], [c.width, c.height]);
      const ref = Buffer.from(c.rgb_base64, 'base64');
      // onnxruntime's float32 differs from PyTorch's by ~1e-6 (test_flowgen.py: < 1e-3), so a byte can differ by 1
      // only where the value sits within that of a rounding boundary (x.5/255): a handful of the 12 288 bytes
      const { maxDiff, differing } = byteDiff(ref, r.rgb);
      assert.ok(maxDiff <= 1, `max byte difference ${maxDiff}`);
      assert.ok(differing <= ref.length / 500, `${differing} of ${ref.length} bytes differ`);
      // the PNG Node serves decodes to exactly its pixels (lossless; PNG bytes depend on the zlib settings only)
      const png = await encodeRgb(r.rgb, r.width, r.height, 'png');
      const back = await sharp(Buffer.from(png)).raw().toBuffer();
      assert.ok(back.equals(Buffer.from(r.rgb)));
      images.push(r.rgb);
    }
    assert.ok(!Buffer.from(images[0]).equals(Buffer.from(images[1])), 'the caption embedding conditions the image');
    const again = await d.reconstruct(Float32Array.from(cases[0].caption_embedding), tokens);
    assert.ok(
      Buffer.from(again.rgb).equals(Buffer.from(images[0])),
      'fixed noise: the same embedding gives the same image',
    );
  } finally {
    await d.release();
    rmSync(tmp, { recursive: true, force: true });
  }
});

test('Node reconstructions from the layout flow (regression generator in front, brain tokens read) equal PyTorch', async () => {
  const tmp = mkdtempSync(join(tmpdir(), 'msx-flow-'));
  const entry = { ...ENTRY, inputs: ['caption_embedding', 'brain_tokens', 'noise'] };
  const d = await BrainDecoder.load(withFlowGenerator(tmp, entry, LAYOUT_FIXTURE));
  try {
    const cases = (JSON.parse(readFileSync(join(LAYOUT_FIXTURE, 'cases.json'), 'utf8')) as { cases: FlowCase[] }).cases;
    const tokensOf = (c: FlowCase) =>
      new ort.Tensor('float32', Float32Array.from(c.brain_tokens ?? []), c.brain_tokens_dims ?? []);
    for (const c of cases) {
      const r = await d.reconstruct(Float32Array.from(c.caption_embedding), tokensOf(c));
      const { maxDiff, differing } = byteDiff(Buffer.from(c.rgb_base64, 'base64'), r.rgb);
      assert.ok(maxDiff <= 1 && differing <= r.rgb.length / 500, `max byte difference ${maxDiff}, ${differing} differ`);
    }
    // the brain tokens condition the image (through the layout), not only the caption embedding
    const e = Float32Array.from(cases[0].caption_embedding);
    const a = await d.reconstruct(e, tokensOf(cases[0]));
    const b = await d.reconstruct(e, tokensOf(cases[1]));
    assert.ok(!Buffer.from(a.rgb).equals(Buffer.from(b.rgb)), 'other brain tokens, another image');
  } finally {
    await d.release();
    rmSync(tmp, { recursive: true, force: true });
  }
});

test('a flow generator without its noise file is one clear sentence', async () => {
  const tmp = mkdtempSync(join(tmpdir(), 'msx-flow-'));
  try {
    const dir = withFlowGenerator(tmp, { ...ENTRY, noise: 'missing.npy' });
    await assert.rejects(
      BrainDecoder.load(dir),
      (e: Error) =>
        e instanceof BundleError &&
        /no noise file \(manifest flow_generator\.noise\); re-export the bundle\./.test(e.message),
    );
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});
