// The flow-matching image generator (manifest flow_generator): Node runs the exported sampler with the bundle's fixed
// noise and gets the PyTorch reference pixels (test/fixtures/flowgen, written by
// `python -m mindsemantix.export_flowgen --node-fixture --out test/fixtures/flowgen`).
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
const FILES = ['flow_generator.onnx', 'flow_generator_noise.npy'];

interface FlowCase {
  caption_embedding: number[];
  width: number;
  height: number;
  rgb_base64: string;
}

function withFlowGenerator(into: string, entry: Record<string, unknown>): string {
  const copy = join(into, 'bundle-flow');
  cpSync(tinyBundle(), copy, { recursive: true });
  const manifest = JSON.parse(readFileSync(join(copy, 'manifest.json'), 'utf8'));
  for (const f of FILES) {
    cpSync(join(FIXTURE, f), join(copy, f));
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
      let maxDiff = 0;
      let differing = 0;
      for (let i = 0; i < ref.length; i++) {
        const dv = Math.abs(ref[i] - r.rgb[i]);
        maxDiff = Math.max(maxDiff, dv);
        if (dv) differing++;
      }
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
