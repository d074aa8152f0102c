// Incremental detrending and z-scoring equal batch numpy fits of the same data (the oracle refits from scratch
// with np.linalg.lstsq for every n, exactly the definition the online versions must reproduce).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { writeFileSync } from 'node:fs';
import { IncrementalDetrender, polynomialOrder } from '../../streams/detrend.js';
import { RunningZScore } from '../../streams/zscore.js';
import { rng } from '../../src/bench/preprocess.js';
import { oracle, readF64, tempDir, writeF32 } from './helpers.js';

/** T samples of V voxels: offset + drift (linear, quadratic, slow sine) + motion-correlated part + noise. */
function synth(T: number, V: number, seed: number, missing: Set<number> = new Set()) {
  const r = rng(seed);
  const times: number[] = [];
  for (let t = 0; t < T + missing.size; t++) if (!missing.has(t)) times.push(t);
  const motion = new Float32Array(times.length * 6);
  const m = [0, 0, 0, 0, 0, 0];
  const Y = new Float32Array(times.length * V);
  const coef = Array.from({ length: V }, () => [
    r.normal() * 100 + 1000,
    r.normal() * 5,
    r.normal() * 3,
    r.normal() * 2,
    r.normal(),
  ]);
  times.forEach((t, n) => {
    for (let i = 0; i < 6; i++) {
      m[i] += 0.05 * r.normal();
      motion[n * 6 + i] = m[i];
    }
    for (let v = 0; v < V; v++) {
      const c = coef[v],
        s = t / 300;
      Y[n * V + v] = c[0] + c[1] * s + c[2] * s * s + c[3] * Math.sin(t / 40) + c[4] * m[0] * 10 + 2 * r.normal();
    }
  });
  // one constant voxel
  for (let n = 0; n < times.length; n++) Y[n * V] = 500;
  return { times, motion, Y, T: times.length };
}

function runDetrend(
  d: IncrementalDetrender,
  s: ReturnType<typeof synth>,
  V: number,
  withMotion: boolean,
): Float64Array {
  const out = new Float64Array(s.T * V).fill(NaN);
  const buf = new Float32Array(V);
  for (let n = 0; n < s.T; n++) {
    const ok = d.push(
      s.times[n],
      s.Y.subarray(n * V, (n + 1) * V),
      withMotion ? s.motion.subarray(n * 6, n * 6 + 6) : null,
      buf,
    );
    if (ok) for (let v = 0; v < V; v++) out[n * V + v] = buf[v];
  }
  return out;
}

function compare(
  ours: Float64Array,
  ref: Float64Array,
  V: number,
  sparse = false,
): { maxDiff: number; started: number } {
  let maxDiff = 0,
    started = -1;
  for (let i = 0; i < ref.length; i++) {
    if (!sparse)
      assert.equal(
        Number.isNaN(ours[i]),
        Number.isNaN(ref[i]),
        `sample ${Math.floor(i / V)} voxel ${i % V}: started at a different n`,
      );
    if (!Number.isNaN(ref[i])) {
      if (started < 0) started = Math.floor(i / V);
      maxDiff = Math.max(maxDiff, Math.abs(ours[i] - ref[i]));
    }
  }
  return { maxDiff, started };
}

function oracleDetrend(dir: string, s: ReturnType<typeof synth>, V: number, tr: number, extra: string[]): Float64Array {
  writeF32(join(dir, 'y.f32'), s.Y);
  writeF32(join(dir, 'm.f32'), s.motion);
  writeFileSync(join(dir, 't.json'), JSON.stringify(s.times));
  oracle([
    'detrend',
    '--data',
    join(dir, 'y.f32'),
    '--T',
    String(s.T),
    '--V',
    String(V),
    '--tr',
    String(tr),
    '--times',
    join(dir, 't.json'),
    '--out',
    join(dir, 'out.f64'),
    ...extra,
  ]);
  return readF64(join(dir, 'out.f64'));
}

test('cumulative detrend (Legendre order 1+int(TR·n/150) + motion) equals a numpy lstsq refit at every n to 1e-5', () => {
  const V = 30,
    tr = 2;
  const s = synth(300, V, 1, new Set([57, 58, 201]));
  const dir = tempDir('detrend');
  const ref = oracleDetrend(dir, s, V, tr, ['--motion', join(dir, 'm.f32'), '--max-order', '8']);
  const ours = runDetrend(new IncrementalDetrender(V, { tr, maxOrder: 8, motion: true }), s, V, true);
  const { maxDiff, started } = compare(ours, ref, V);
  console.log(
    `cumulative detrend vs numpy: max |diff| = ${maxDiff.toExponential(2)} (data scale 1000); started at n=${started + 1}`,
  );
  assert.equal(started + 1, 9, 'starts once n exceeds the 8 regressors (P0, P1, 6 motion)');
  assert.ok(maxDiff <= 1e-5, `max diff ${maxDiff}`);
  assert.equal(polynomialOrder(300, 2, 8), 5);
  for (let n = 0; n < s.T; n++) if (!Number.isNaN(ours[n * V])) assert.equal(ours[n * V], 0, 'constant voxel → 0');
});

test('detrend over a 2000-volume run (order capped at max_order=8) still equals numpy to 1e-5', () => {
  const V = 8,
    tr = 2;
  const s = synth(2000, V, 2);
  const dir = tempDir('detrend-long');
  const ref = oracleDetrend(dir, s, V, tr, ['--max-order', '8', '--every', '97']);
  const ours = runDetrend(new IncrementalDetrender(V, { tr, maxOrder: 8, motion: false }), s, V, false);
  const { maxDiff } = compare(ours, ref, V, true);
  console.log(`2000-volume detrend vs numpy: max |diff| = ${maxDiff.toExponential(2)}`);
  assert.ok(maxDiff <= 1e-5, `max diff ${maxDiff}`);
});

test('sliding-window detrend equals numpy lstsq on the last W volumes to 1e-5', () => {
  const V = 20,
    tr = 1.5,
    W = 60;
  const s = synth(200, V, 3);
  const dir = tempDir('detrend-win');
  const ref = oracleDetrend(dir, s, V, tr, ['--motion', join(dir, 'm.f32'), '--window', String(W)]);
  const ours = runDetrend(
    new IncrementalDetrender(V, { tr, mode: 'window', windowVolumes: W, motion: true }),
    s,
    V,
    true,
  );
  const { maxDiff } = compare(ours, ref, V);
  console.log(`window detrend vs numpy: max |diff| = ${maxDiff.toExponential(2)}`);
  assert.ok(maxDiff <= 1e-5, `max diff ${maxDiff}`);
});

test('Welford z-scoring (running and baseline) equals batch numpy to 1e-6; constant voxels give 0, never NaN', () => {
  const V = 25,
    T = 300;
  const r = rng(4);
  const X = new Float32Array(T * V);
  for (let t = 0; t < T; t++) for (let v = 0; v < V; v++) X[t * V + v] = v === 0 ? 3 : 10 * r.normal() + v + 0.01 * t;
  const dir = tempDir('zscore');
  writeF32(join(dir, 'x.f32'), X);
  for (const baseline of [0, 40]) {
    oracle([
      'zscore',
      '--data',
      join(dir, 'x.f32'),
      '--T',
      String(T),
      '--V',
      String(V),
      '--baseline',
      String(baseline),
      '--out',
      join(dir, 'z.f64'),
    ]);
    const ref = readF64(join(dir, 'z.f64'));
    const z = new RunningZScore(V, baseline ? { mode: 'baseline', baselineVolumes: baseline } : { mode: 'running' });
    const out = new Float32Array(V);
    let maxDiff = 0;
    for (let t = 0; t < T; t++) {
      z.push(X.subarray(t * V, (t + 1) * V), out);
      for (let v = 0; v < V; v++) {
        assert.ok(Number.isFinite(out[v]));
        maxDiff = Math.max(maxDiff, Math.abs(out[v] - ref[t * V + v]));
      }
      assert.equal(out[0], 0);
    }
    console.log(
      `zscore (${baseline ? `baseline ${baseline}` : 'running'}) vs numpy: max |diff| = ${maxDiff.toExponential(2)}`,
    );
    assert.ok(maxDiff <= 1e-6, `max diff ${maxDiff}`);
  }
});
