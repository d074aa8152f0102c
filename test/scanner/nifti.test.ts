import { test } from 'node:test';
import assert from 'node:assert/strict';
import { gzipSync } from 'node:zlib';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  NiftiError,
  decodeNifti,
  encodeNifti1Series,
  encodeNifti1Volume,
  niftiCompleteness,
  niftiHeader4D,
  setNiftiVolumeCount,
  NIFTI1_VOX_OFFSET,
} from '../../src/scanner/nifti.js';
import { readNiftiHeader, updateNiftiHeader } from '../../src/scanner/niftiHeader.js';
import { type OracleImage, maxDiff, nibData, nibRead, nibReadMany, runOracle } from './oracle.js';

// An oblique, left-handed (qfac = -1) affine like a real EPI: rotation about x and z, 2.5 mm in-plane, 3 mm slices.
function obliqueAffine(): number[] {
  const a = 0.2,
    b = -0.35;
  const rx = [
    [1, 0, 0],
    [0, Math.cos(a), -Math.sin(a)],
    [0, Math.sin(a), Math.cos(a)],
  ];
  const rz = [
    [Math.cos(b), -Math.sin(b), 0],
    [Math.sin(b), Math.cos(b), 0],
    [0, 0, 1],
  ];
  const r = rx.map((row) => [0, 1, 2].map((j) => row[0] * rz[0][j] + row[1] * rz[1][j] + row[2] * rz[2][j]));
  const s = [-2.5, 2.5, 3]; // negative x: radiological-style left-handed frame
  return [
    r[0][0] * s[0],
    r[0][1] * s[1],
    r[0][2] * s[2],
    101.3,
    r[1][0] * s[0],
    r[1][1] * s[1],
    r[1][2] * s[2],
    -87.25,
    r[2][0] * s[0],
    r[2][1] * s[1],
    r[2][2] * s[2],
    -40.5,
    0,
    0,
    0,
    1,
  ];
}

function ramp(n: number, f: (i: number) => number): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = f(i);
  return a;
}

const tmp = () => mkdtempSync(join(tmpdir(), 'nifti-test-'));

test('encodeNifti1Volume round-trips float32 and int16 voxels, affine and TR, and nibabel reads the same file', () => {
  const affine = obliqueAffine();
  const dims: [number, number, number] = [7, 5, 4];
  const f32 = ramp(140, (i) => Math.sin(i) * 1000 + 0.125);
  const i16 = Int16Array.from(f32, (v) => Math.round(v));
  const dir = tmp();
  try {
    for (const data of [f32, i16]) {
      const bytes = encodeNifti1Volume({ dims, affine, tr: 1.5, data });
      assert.equal(bytes.length, 352 + data.byteLength);
      const img = decodeNifti(bytes);
      assert.deepEqual(img.dims, [7, 5, 4]);
      assert.equal(img.tr, 1.5);
      assert.equal(img.datatype, data instanceof Float32Array ? 16 : 4);
      assert.ok(maxDiff(img.affine, affine) < 1e-4, `affine ${img.affine}`);
      assert.equal(maxDiff(img.data, Float32Array.from(data)), 0);
      const path = join(dir, 'v.nii');
      writeFileSync(path, bytes);
      const nib = nibRead('nifti', path);
      assert.ok(maxDiff(nib.affine, img.affine) < 1e-6);
      assert.equal(maxDiff(nib.data!, img.data), 0);
      assert.ok(maxDiff(nib.zooms, [2.5, 2.5, 3]) < 1e-5);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the written qform encodes the same affine as the sform (readers that prefer qform agree)', () => {
  const affine = obliqueAffine();
  const bytes = encodeNifti1Volume({ dims: [3, 3, 3], affine, tr: 2, data: new Float32Array(27) });
  const h = readNiftiHeader(bytes).fields;
  assert.deepEqual([h.qform_code, h.sform_code, h.xyzt_units], [1, 1, 10]);
  updateNiftiHeader(bytes, (x) => {
    x.fields.sform_code = 0;
  }); // drop the sform: the reader must fall back to the quaternion
  const fromQ = decodeNifti(bytes).affine;
  assert.ok(maxDiff(fromQ, affine) < 1e-4, `qform affine ${fromQ} vs ${affine}`);
});

test('a 4-D file written incrementally is incomplete until every volume is there, and dim[4] can be rewritten in place', () => {
  const affine = obliqueAffine();
  const vol = (k: number) => Int16Array.from({ length: 24 }, (_, i) => i * 10 + k);
  const header = niftiHeader4D({ dims: [2, 3, 4, 1], affine, tr: 0.8, datatype: 'int16' });
  assert.equal(header.length, NIFTI1_VOX_OFFSET);
  const parts: Uint8Array[] = [header];
  let c = niftiCompleteness(concat(parts));
  assert.equal(c.complete, false);
  assert.equal(c.volumes, 0);
  for (let k = 0; k < 3; k++) {
    const v = vol(k);
    parts.push(new Uint8Array(v.buffer));
    setNiftiVolumeCount(header, k + 1);
    c = niftiCompleteness(concat(parts));
    assert.equal(c.complete, true);
    assert.equal(c.volumes, k + 1);
  }
  // A header that already announces 5 volumes while 3 are written: incomplete with 3 whole volumes, plus half of one.
  setNiftiVolumeCount(header, 5);
  const partial = concat([...parts, new Uint8Array(24)]);
  c = niftiCompleteness(partial);
  assert.deepEqual([c.complete, c.volumes], [false, 3]);
  assert.match(c.reason!, /holds \d+ bytes but header says \d+/);
  assert.throws(
    () => decodeNifti(partial),
    (e: Error) => e instanceof NiftiError && /holds \d+ bytes but header says \d+/.test(e.message),
  );
  setNiftiVolumeCount(header, 3);
  const img = decodeNifti(concat(parts));
  assert.deepEqual(img.dims, [2, 3, 4, 3]);
  assert.equal(img.tr, 0.8);
  assert.deepEqual(Array.from(img.volume(2)), Array.from(vol(2)));
  // A gzip stream cut short reports the volumes that inflate so far.
  const gz = gzipSync(concat(parts));
  const gc = niftiCompleteness(gz.subarray(0, gz.length - 10));
  assert.equal(gc.complete, false);
  assert.ok(niftiCompleteness(gz).complete);
});

test('encodeNifti1Series writes a 4-D file nibabel reads identically', () => {
  const affine = obliqueAffine();
  const vols = [0, 1, 2].map((k) => ramp(60, (i) => i * 0.5 - k));
  const bytes = encodeNifti1Series({ dims: [5, 4, 3], affine, tr: 2, volumes: vols });
  const dir = tmp();
  try {
    writeFileSync(join(dir, 's.nii.gz'), gzipSync(bytes));
    const nib = nibRead('nifti', join(dir, 's.nii.gz'));
    assert.deepEqual(nib.dims, [5, 4, 3, 3]);
    assert.equal(nib.tr, 2);
    assert.equal(maxDiff(nib.data!, decodeNifti(bytes).data), 0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

function assertSameAsNibabel(path: string, label: string, nib: OracleImage) {
  const img = decodeNifti(readFileSync(path));
  assert.deepEqual(img.dims, nib.dims, `${label}: dims`);
  const ad = maxDiff(img.affine, nib.affine);
  assert.ok(ad < 1e-4, `${label}: affine differs by ${ad}: ${img.affine} vs ${nib.affine}`);
  const dd = maxDiff(img.data, nib.data!);
  assert.ok(dd === 0, `${label}: voxels differ by ${dd}`);
  assert.ok(maxDiff(img.voxelSize, nib.zooms) < 1e-6, `${label}: voxel size`);
  if (img.dims.length === 4) assert.ok(Math.abs(img.tr - (nib.tr ?? 0)) < 1e-6, `${label}: tr ${img.tr} vs ${nib.tr}`);
  return { img, ad };
}

test('real NIfTI files from nibabel decode to the same voxels and affine as nibabel', () => {
  const files = [
    'example4d.nii.gz',
    'example_nifti2.nii.gz',
    'functional.nii',
    'anatomical.nii',
    'standard.nii.gz',
    'reoriented_anat_moved.nii',
  ];
  const nibs = nibReadMany(
    'nifti',
    files.map((f) => join(nibData, f)),
  );
  for (const [i, f] of files.entries()) {
    const { img } = assertSameAsNibabel(join(nibData, f), f, nibs[i]);
    if (f === 'example_nifti2.nii.gz') assert.equal(img.version, 'nifti2');
  }
});

test('every datatype, both byte orders, scaling, qform-only, no transform and NIfTI-2 match nibabel', () => {
  const dir = tmp();
  try {
    const made = JSON.parse(runOracle(['variants', join(nibData, 'example4d.nii.gz'), dir])) as string[];
    assert.ok(made.length >= 10);
    const nibs = nibReadMany(
      'nifti',
      made.map((f) => join(dir, f)),
    );
    for (const [i, f] of made.entries()) {
      const { img } = assertSameAsNibabel(join(dir, f), f, nibs[i]);
      if (f === 'float32_ms.nii') assert.equal(img.tr, 2.5);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('truncated, wrong-magic, corrupt and gzip-bomb inputs fail with one clear sentence', () => {
  const good = encodeNifti1Volume({ dims: [4, 4, 4], affine: obliqueAffine(), tr: 2, data: new Float32Array(64) });
  const isErr = (re: RegExp) => (e: unknown) =>
    e instanceof NiftiError && re.test((e as Error).message) && !(e as Error).message.includes('\n');
  assert.throws(() => decodeNifti(good.subarray(0, 400)), isErr(/^file holds 400 bytes but header says 608 /));
  assert.throws(() => decodeNifti(good.subarray(0, 100)), isErr(/file holds 100 bytes but a NIfTI-1 header needs 348/));
  const badMagic = good.slice();
  updateNiftiHeader(badMagic, (h) => {
    h.fields.magic = 'XYZ';
  });
  assert.throws(() => decodeNifti(badMagic), isErr(/wrong NIfTI magic "XYZ"/));
  assert.throws(
    () => decodeNifti(new TextEncoder().encode('hello, this is not an image at all')),
    isErr(/not a NIfTI file: sizeof_hdr/),
  );
  const badType = good.slice();
  updateNiftiHeader(badType, (h) => {
    h.fields.datatype = 32;
  });
  assert.throws(() => decodeNifti(badType), isErr(/datatype 32 \(complex64\) is not supported/));
  const gz = gzipSync(good);
  assert.throws(() => decodeNifti(gz.subarray(0, gz.length - 12)), isErr(/gzip stream ends early/));
  const corrupt = gz.slice();
  for (let i = 20; i < 40; i++) corrupt[i] ^= 0xa5;
  assert.throws(() => decodeNifti(corrupt), isErr(/gzip stream is corrupt|header|holds/));
  // 64 MiB of zeros compress to ~64 KiB: with a 16 MiB cap it must stop early instead of inflating everything.
  const bomb = gzipSync(Buffer.concat([Buffer.from(good.subarray(0, 352)), Buffer.alloc(64 * 1024 * 1024)]));
  assert.ok(bomb.length < 200_000);
  assert.throws(
    () => decodeNifti(bomb, { maxBytes: 16 * 1024 * 1024 }),
    isErr(/expands beyond the 16777216-byte limit/),
  );
  assert.throws(() => niftiCompleteness(bomb, { maxBytes: 16 * 1024 * 1024 }), isErr(/expands beyond/));
});
