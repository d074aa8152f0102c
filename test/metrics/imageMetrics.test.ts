import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { boxResizeRgb, pixCorr, rgbToPlanar, ssim, twoWay } from '../../src/metrics/imageMetrics.js';

// Scored by models/mindsemantix/image_metrics.py and PIL (models/scripts/image_metrics_fixture.py); the Python side is
// re-checked against the same file by models/tests/test_image_metrics.py.
const FIXTURE = join(
  fileURLToPath(new URL('../../../', import.meta.url)),
  'test',
  'fixtures',
  'image-metrics',
  'cases.json',
);
interface Fixture {
  pairs: {
    shape: [number, number, number, number];
    recon: number[];
    stim: number[];
    pixcorr_each: number[];
    ssim_each: number[];
    pixcorr: number;
    ssim: number;
  };
  two_way: {
    shape: [number, number];
    recon: number[];
    stim: number[];
    groups: string[];
    two_way: number;
    two_way_grouped: number;
  };
  box: { height: number; width: number; out_height: number; out_width: number; rgb: number[]; expected: number[] }[];
}
const fx = JSON.parse(readFileSync(FIXTURE, 'utf8')) as Fixture;

const near = (got: number, want: number, what: string) =>
  assert.ok(Math.abs(got - want) <= 1e-5, `${what}: ${got} vs Python ${want}`);

function rows(flat: number[], n: number): Float32Array[] {
  const len = flat.length / n;
  return Array.from({ length: n }, (_, i) => Float32Array.from(flat.slice(i * len, (i + 1) * len)));
}

test('PixCorr and SSIM equal image_metrics.py on the shared fixture within 1e-5', () => {
  const [n, , h, w] = fx.pairs.shape;
  const recon = rows(fx.pairs.recon, n);
  const stim = rows(fx.pairs.stim, n);
  let pc = 0;
  let ss = 0;
  for (let i = 0; i < n; i++) {
    const p = pixCorr(recon[i], stim[i]);
    const s = ssim(recon[i], stim[i], h, w);
    near(p, fx.pairs.pixcorr_each[i], `PixCorr of pair ${i}`);
    near(s, fx.pairs.ssim_each[i], `SSIM of pair ${i}`);
    pc += p / n;
    ss += s / n;
  }
  near(pc, fx.pairs.pixcorr, 'mean PixCorr');
  near(ss, fx.pairs.ssim, 'mean SSIM');
  // identical images: 1; a constant pair: SSIM by the closed formula (variances 0)
  assert.ok(Math.abs(ssim(stim[0], stim[0], h, w) - 1) < 1e-12);
  assert.ok(Math.abs(pixCorr(stim[1], stim[1]) - 1) < 1e-12);
  const a = new Float32Array(3 * 16 * 16).fill(0.3);
  const b = new Float32Array(3 * 16 * 16).fill(0.6);
  const c1 = 1e-4;
  near(ssim(a, b, 16, 16), (2 * 0.3 * 0.6 + c1) / (0.09 + 0.36 + c1), 'constant-image SSIM');
  assert.throws(() => ssim(a.subarray(0, 3 * 100), a.subarray(0, 3 * 100), 10, 10), /at least 11×11/);
});

test('two-way identification equals image_metrics.two_way, with and without scene groups', () => {
  const [n] = fx.two_way.shape;
  const recon = rows(fx.two_way.recon, n);
  const stim = rows(fx.two_way.stim, n);
  near(twoWay(recon, stim), fx.two_way.two_way, 'two-way');
  near(twoWay(recon, stim, fx.two_way.groups), fx.two_way.two_way_grouped, 'two-way by scene');
  assert.equal(twoWay(stim, stim, fx.two_way.groups), 1);
  assert.throws(() => twoWay(recon.slice(0, 2), stim.slice(0, 2), ['a', 'a']), /another stimulus/);
});

test("the stimulus box-downsampling equals PIL's BOX resize bit for bit (down, up, non-integer factors)", () => {
  for (const c of fx.box) {
    const got = boxResizeRgb(Uint8Array.from(c.rgb), c.width, c.height, c.out_width, c.out_height);
    assert.deepEqual([...got], c.expected, `${c.width}×${c.height} → ${c.out_width}×${c.out_height}`);
  }
  const planar = rgbToPlanar(Uint8Array.from([255, 0, 51, 0, 255, 102]), 2, 1);
  assert.deepEqual([...planar], [1, 0, 0, 1, 0.2, 0.4].map(Math.fround));
});
