// Motion correction: recovery of known rigid motions applied (scipy cubic spline) to real EPI volumes from
// nibabel's test data, agreement with an independent scipy registration, FD, and resampling.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { decodeNifti } from '../../src/scanner/nifti.js';
import { MotionCorrector, bsplineCoefficients } from '../../streams/motionCorrect.js';
import { framewiseDisplacement, matrixToParams, paramsToMatrix, voxelSizes } from '../../streams/rigid.js';
import { nibabelData, oracle, readF32, tempDir } from './helpers.js';

interface Meta {
  dims: [number, number, number];
  vox: [number, number, number];
  cases: { file: string; params: number[]; scipy?: number[] }[];
  real: { file: string; params: number[] }[];
}

function maxErr(a: ArrayLike<number>, b: ArrayLike<number>): { mm: number; deg: number } {
  let mm = 0,
    deg = 0;
  for (let i = 0; i < 3; i++) mm = Math.max(mm, Math.abs(a[i] - b[i]));
  for (let i = 3; i < 6; i++) deg = Math.max(deg, Math.abs(a[i] - b[i]));
  return { mm, deg };
}

test('recovers known 6-DOF motions up to 3 mm / 3° on example4d.nii.gz within 0.05 mm / 0.05°, and agrees with scipy', () => {
  const dir = tempDir('mc-ex');
  const src = join(nibabelData, 'example4d.nii.gz');
  oracle(['motion', '--src', src, '--out', dir, '--cases', '4', '--real', '1', '--scipy-cases', '1', '--step', '2']);
  const meta = JSON.parse(readFileSync(join(dir, 'meta.json'), 'utf8')) as Meta;
  // The reference comes from our own NIfTI reader; it must equal nibabel's voxels in x-fastest order.
  const img = decodeNifti(new Uint8Array(readFileSync(src)));
  const ref = img.volume(0);
  assert.deepEqual(img.dims.slice(0, 3), meta.dims);
  assert.deepEqual(Array.from(ref.slice(0, 5000)), Array.from(readF32(join(dir, 'ref.f32')).slice(0, 5000)));
  const mc = new MotionCorrector(meta.dims, voxelSizes(img.affine));
  mc.setReference(ref);
  const errs: string[] = [];
  for (const c of meta.cases) {
    const e = mc.estimate(readF32(join(dir, c.file)));
    const err = maxErr(e.params, c.params);
    errs.push(`${c.params.map((x) => x.toFixed(2)).join(',')}: ${err.mm.toFixed(4)} mm ${err.deg.toFixed(4)}°`);
    assert.ok(e.converged, `did not converge on ${c.file}`);
    assert.ok(err.mm <= 0.05 && err.deg <= 0.05, `motion ${c.params} recovered with error ${err.mm} mm, ${err.deg}°`);
    if (c.scipy) {
      const d = maxErr(e.params, c.scipy);
      assert.ok(d.mm <= 0.05 && d.deg <= 0.05, `differs from scipy by ${d.mm} mm, ${d.deg}°`);
    }
  }
  // The real second volume of the file: independent registration by scipy.
  const real = meta.real[0];
  const e = mc.estimate(img.volume(1));
  const d = maxErr(e.params, real.params);
  errs.push(`real vol 1 vs scipy: ${d.mm.toFixed(4)} mm ${d.deg.toFixed(4)}°`);
  assert.ok(d.mm <= 0.05 && d.deg <= 0.05, `real volume: differs from scipy by ${d.mm} mm, ${d.deg}°`);
  console.log(`example4d recovery errors: ${errs.join('; ')}`);
});

test('recovers in-plane motions up to 3 mm / 3° on the 3-slice functional.nii within 0.05 mm / 0.05° (out-of-plane held)', () => {
  const dir = tempDir('mc-fn');
  const src = join(nibabelData, 'functional.nii');
  oracle(['motion', '--src', src, '--out', dir, '--cases', '6', '--real', '0', '--inplane']);
  const meta = JSON.parse(readFileSync(join(dir, 'meta.json'), 'utf8')) as Meta;
  const img = decodeNifti(new Uint8Array(readFileSync(src)));
  const mc = new MotionCorrector(meta.dims, voxelSizes(img.affine));
  assert.deepEqual(Array.from(mc.active), [1, 1, 0, 0, 0, 1], 'a 3-slice slab estimates tx, ty, rz only');
  mc.setReference(img.volume(0));
  const errs: string[] = [];
  for (const c of meta.cases) {
    const e = mc.estimate(readF32(join(dir, c.file)));
    const err = maxErr(e.params, c.params);
    errs.push(`${err.mm.toFixed(4)} mm ${err.deg.toFixed(4)}°`);
    assert.ok(err.mm <= 0.05 && err.deg <= 0.05, `motion ${c.params} recovered with error ${err.mm} mm, ${err.deg}°`);
  }
  console.log(`functional.nii in-plane recovery errors: ${errs.join('; ')}`);
});

test('resampling with the estimated parameters undoes the motion (corrected ≈ reference inside the brain)', () => {
  const dims: [number, number, number] = [24, 28, 20];
  const ref = new Float32Array(dims[0] * dims[1] * dims[2]);
  for (let k = 0; k < dims[2]; k++)
    for (let j = 0; j < dims[1]; j++)
      for (let i = 0; i < dims[0]; i++) {
        const x = i - 11.5,
          y = j - 13.5,
          z = k - 9.5;
        ref[i + j * 24 + k * 24 * 28] =
          100 * Math.exp(-((x * x) / 40 + (y * y) / 60 + (z * z) / 30)) +
          30 * Math.exp(-((x - 4) ** 2 + (y + 3) ** 2 + z * z) / 8);
      }
  const mc = new MotionCorrector(dims, [2, 2, 2], { interpolation: 'cubic' });
  mc.setReference(ref);
  const truth = [1.2, -0.7, 0.5, 2, -1, 1.5];
  const moved = new Float32Array(ref.length);
  mc.resample(ref, matrixToParams(invertRigidParams(truth)), moved); // moved(y) = ref(T⁻¹ y)
  const e = mc.estimate(moved);
  const err = maxErr(e.params, truth);
  assert.ok(err.mm < 0.05 && err.deg < 0.05, `${err.mm} ${err.deg}`);
  const corrected = mc.resample(moved, e.params, new Float32Array(ref.length));
  let worst = 0;
  for (let i = 0; i < ref.length; i++) if (ref[i] > 20) worst = Math.max(worst, Math.abs(corrected[i] - ref[i]));
  assert.ok(worst < 2, `corrected differs from the reference by up to ${worst} (peak 130)`);
  const roi = Uint32Array.from([100, 5000, 6000, 7000]);
  const at = mc.resampleAt(moved, e.params, roi, new Float32Array(4));
  for (let q = 0; q < 4; q++) assert.ok(Math.abs(at[q] - corrected[roi[q]]) < 1e-4);
});

function invertRigidParams(p: number[]): number[] {
  const m = paramsToMatrix(p);
  const inv = new Float64Array(12);
  for (let i = 0; i < 3; i++) {
    for (let j = 0; j < 3; j++) inv[i * 4 + j] = m[j * 4 + i];
    inv[i * 4 + 3] = -(m[i] * m[3] + m[4 + i] * m[7] + m[8 + i] * m[11]);
  }
  return [...inv];
}

test('framewise displacement follows Power 2012 (50 mm radius, degrees → arc length)', () => {
  assert.ok(Math.abs(framewiseDisplacement([0, 0, 0, 0, 0, 0], [0.1, -0.2, 0.3, 0, 0, 0]) - 0.6) < 1e-12);
  const fd = framewiseDisplacement([0, 0, 0, 0, 0, 0], [0, 0, 0, 1, 0, -1]);
  assert.ok(Math.abs(fd - (2 * 50 * Math.PI) / 180) < 1e-12);
  const p = [1, 2, 3, 10, -20, 30];
  assert.deepEqual(
    matrixToParams(paramsToMatrix(p)).map((x) => +x.toFixed(10)),
    p,
  );
});

test('B-spline prefilter coefficients interpolate the samples back (mirror boundary)', () => {
  // For a line [0,0,1,0,0] the mirror-boundary cubic B-spline coefficients interpolate back to the samples.
  const dims = [9, 1, 1];
  const v = Float32Array.from([0, 1, 3, 2, 5, 4, 1, 0, 2]);
  const c = bsplineCoefficients(v, dims, new Float32Array(9));
  const mirror = (i: number) => (i < 0 ? -i : i > 8 ? 16 - i : i);
  for (let i = 0; i < 9; i++) {
    const back = (c[mirror(i - 1)] + 4 * c[i] + c[mirror(i + 1)]) / 6;
    assert.ok(Math.abs(back - v[i]) < 1e-5, `sample ${i}: ${back} vs ${v[i]}`);
  }
});
