// The header descriptions against nibabel's own (Nifti1Header / Nifti2Header), and write → read round trips read back
// by our reader and by nibabel, for both versions.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { gunzipSync, gzipSync } from 'node:zlib';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeNifti, encodeNiftiSeries, encodeNiftiVolume, niftiHeader, NiftiError } from '../../src/scanner/nifti.js';
import {
  NIFTI_LAYOUTS,
  readNiftiHeader,
  writeNiftiHeader,
  type FieldSpec,
  type NiftiHeader,
  type NiftiVersion,
} from '../../src/scanner/niftiHeader.js';
import { maxDiff, nibData, nibRead, runOracle } from './oracle.js';

interface NibHeader {
  version: 1 | 2;
  endianness: '<' | '>';
  fields: Record<string, number | string | (number | string)[]>;
  qform: number[] | null;
  qform_code: number;
  sform: number[] | null;
  sform_code: number;
  zooms: number[];
  dtype: string;
  error?: string;
}

const nibHeaders = (paths: string[]): NibHeader[] => {
  const out = JSON.parse(runOracle(['header', ...paths])) as NibHeader[];
  out.forEach((h, i) => assert.equal(h.error, undefined, `nibabel cannot read the header of ${paths[i]}: ${h.error}`));
  return out;
};

// nibabel sends NaN/inf as strings (JSON has no NaN)
const nibNumber = (v: number | string): number =>
  typeof v === 'string' ? Number(v.replace(/^nan$/, 'NaN').replace(/^(-?)inf$/, '$1Infinity')) : v;

/** Every field of our reading equals nibabel's, value for value (floats exactly: both widen the stored float32/64). */
function assertSameFields(ours: NiftiHeader, nib: NibHeader, label: string): void {
  assert.equal(ours.version, nib.version === 1 ? 'nifti1' : 'nifti2', `${label}: version`);
  assert.equal(ours.littleEndian, nib.endianness === '<', `${label}: byte order`);
  const fields = ours.fields as Record<string, number | number[] | string>;
  assert.deepEqual(Object.keys(fields), Object.keys(nib.fields), `${label}: field names`);
  for (const [name, v] of Object.entries(nib.fields)) {
    const got = fields[name];
    if (typeof v === 'string' && typeof got === 'string') assert.equal(got, v, `${label}: ${name}`);
    else if (Array.isArray(v)) assert.deepEqual(got, v.map(nibNumber), `${label}: ${name}`);
    else assert.deepEqual(got, nibNumber(v), `${label}: ${name}`);
  }
}

const tmp = () => mkdtempSync(join(tmpdir(), 'nifti-header-'));

// An oblique, left-handed (qfac = -1) affine: rotation about x and z, 2.5 mm in-plane, 3 mm slices.
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
  const s = [-2.5, 2.5, 3];
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

test("each version's header description is nibabel's header dtype, field for field", () => {
  const nib = JSON.parse(runOracle(['layout'])) as Record<
    NiftiVersion,
    { size: number; fields: { name: string; offset: number; dtype: string; shape: number[] }[] }
  >;
  const TYPES: Record<string, FieldSpec['type']> = {
    i1: 'int8',
    u1: 'uint8',
    i2: 'int16',
    i4: 'int32',
    i8: 'int64',
    f4: 'float32',
    f8: 'float64',
  };
  for (const version of ['nifti1', 'nifti2'] as const) {
    const theirs = nib[version].fields.map((f): FieldSpec => {
      const t = f.dtype.slice(1); // drop the byte-order mark
      if (t.startsWith('S')) return { name: f.name, offset: f.offset, type: 'char', count: Number(t.slice(1)) };
      return { name: f.name, offset: f.offset, type: TYPES[t], count: f.shape.reduce((a, b) => a * b, 1) };
    });
    assert.equal(NIFTI_LAYOUTS[version].size, nib[version].size, `${version}: size`);
    assert.deepEqual(
      NIFTI_LAYOUTS[version].fields.map((f) => ({ ...f })),
      theirs,
      version,
    );
  }
});

test('written NIfTI-1 and NIfTI-2 files (int16 and float32, qform and sform, pixdim, gzip or not) read back the same here and in nibabel', () => {
  const affine = obliqueAffine();
  const dims: [number, number, number] = [5, 4, 3];
  const dir = tmp();
  try {
    const cases: { path: string; bytes: Uint8Array; version: NiftiVersion; float: boolean; volumes: number }[] = [];
    for (const version of ['nifti1', 'nifti2'] as const) {
      for (const float of [false, true]) {
        const vols = [0, 1].map((k) =>
          Float32Array.from({ length: 60 }, (_, i) => (float ? Math.sin(i + k) * 100 + 0.25 : i * 7 - 200 + k)),
        );
        const volumes = float ? vols : vols.map((v) => Int16Array.from(v));
        // a 4-D series and a single volume of each, the float ones gzipped
        for (const bytes of [
          encodeNiftiSeries({ dims, affine, tr: 1.5, volumes }, version),
          encodeNiftiVolume({ dims, affine, tr: 1.5, data: volumes[0] }, version),
        ]) {
          const n = bytes.length > (version === 'nifti1' ? 352 : 544) + volumes[0].byteLength ? 2 : 1;
          const path = join(dir, `${version}-${float ? 'f32' : 'i16'}-${n}.nii${float ? '.gz' : ''}`);
          writeFileSync(path, float ? gzipSync(bytes) : bytes);
          cases.push({ path, bytes, version, float, volumes: n });
        }
      }
    }
    const nibs = nibHeaders(cases.map((c) => c.path));
    for (const [i, c] of cases.entries()) {
      const label = c.path.slice(dir.length + 1);
      const raw = readFileSync(c.path);
      const h = readNiftiHeader(c.float ? gunzipSync(raw) : raw);
      assertSameFields(h, nibs[i], label);
      const f = h.fields;
      assert.equal(f.sizeof_hdr, NIFTI_LAYOUTS[c.version].size);
      assert.equal(f.magic, NIFTI_LAYOUTS[c.version].magic);
      assert.deepEqual(f.dim, c.volumes === 2 ? [4, 5, 4, 3, 2, 1, 1, 1] : [3, 5, 4, 3, 1, 1, 1, 1], `${label}: dim`);
      assert.deepEqual([f.datatype, f.bitpix], c.float ? [16, 32] : [4, 16], `${label}: datatype`);
      assert.equal(f.vox_offset, c.version === 'nifti1' ? 352 : 544);
      assert.deepEqual([f.qform_code, f.sform_code, f.xyzt_units], [1, 1, 10]);
      assert.equal(f.pixdim[0], -1, `${label}: qfac of a left-handed affine`);
      assert.ok(maxDiff(f.pixdim.slice(1, 4), [2.5, 2.5, 3]) < 1e-6, `${label}: pixdim ${f.pixdim}`);
      assert.ok(Math.abs(f.pixdim[4] - 1.5) < 1e-7, `${label}: pixdim[4] = TR`);
      const tol = c.version === 'nifti1' ? 1e-4 : 1e-12; // float32 vs float64 fields
      assert.ok(maxDiff([...f.srow_x, ...f.srow_y, ...f.srow_z], affine.slice(0, 12)) < tol, `${label}: srow`);
      // nibabel's view: both transforms are the affine, zooms and TR as written
      const nib = nibs[i];
      assert.deepEqual([nib.qform_code, nib.sform_code], [1, 1]);
      assert.ok(maxDiff(nib.sform!, affine) < tol, `${label}: nibabel's sform`);
      assert.ok(maxDiff(nib.qform!, affine) < 1e-4, `${label}: nibabel's qform ${nib.qform} vs ${affine}`);
      assert.ok(
        maxDiff(nib.zooms, c.volumes === 2 ? [2.5, 2.5, 3, 1.5] : [2.5, 2.5, 3]) < 1e-5,
        `${label}: zooms ${nib.zooms}`,
      );
      assert.equal(nib.dtype, c.float ? 'float32' : 'int16');
      // and the image: our decoder and nibabel agree on voxels and affine
      const img = decodeNifti(raw);
      assert.equal(img.version, c.version);
      assert.equal(img.tr, 1.5);
      const nibImg = nibRead('nifti', c.path);
      assert.equal(maxDiff(nibImg.data!, img.data), 0, `${label}: voxels`);
      assert.ok(maxDiff(nibImg.affine, img.affine) < 1e-6, `${label}: affine`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('headers nibabel wrote (both versions, both byte orders) read field for field as nibabel reads them, and the writer writes them back in either byte order', () => {
  const dir = tmp();
  try {
    const made = (JSON.parse(runOracle(['variants', join(nibData, 'example4d.nii.gz'), dir])) as string[]).map((f) =>
      join(dir, f),
    );
    const files = [
      ...made,
      join(nibData, 'example4d.nii.gz'),
      join(nibData, 'example_nifti2.nii.gz'),
      join(nibData, 'functional.nii'),
    ];
    const nibs = nibHeaders(files);
    assert.ok(
      nibs.some((n) => n.version === 2 && n.endianness === '>') &&
        nibs.some((n) => n.version === 1 && n.endianness === '>'),
    );
    const rewritten: string[] = [];
    const expected: { h: NiftiHeader; le: boolean }[] = [];
    for (const [i, path] of files.entries()) {
      const raw = readFileSync(path);
      const h = readNiftiHeader(path.endsWith('.gz') ? gunzipSync(raw) : raw);
      assertSameFields(h, nibs[i], path);
      for (const le of [true, false]) {
        const out = join(dir, `rewritten-${i}-${le ? 'le' : 'be'}.nii`);
        writeFileSync(out, Buffer.concat([writeNiftiHeader(h, le), Buffer.alloc(4)]));
        rewritten.push(out);
        expected.push({ h: { ...h, littleEndian: le } as NiftiHeader, le });
      }
    }
    const back = nibHeaders(rewritten);
    back.forEach((nib, i) => assertSameFields(expected[i].h, nib, rewritten[i]));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a truncated header is rejected with one sentence naming what the version needs', () => {
  const one = (e: unknown, re: RegExp) => e instanceof NiftiError && re.test(e.message) && !e.message.includes('\n');
  const v1 = niftiHeader({ dims: [2, 2, 2], affine: obliqueAffine(), tr: 2, datatype: 'int16' });
  const v2 = niftiHeader({ dims: [2, 2, 2], affine: obliqueAffine(), tr: 2, datatype: 'int16', version: 'nifti2' });
  assert.throws(
    () => readNiftiHeader(v1.subarray(0, 200)),
    (e) => one(e, /^file holds 200 bytes but a NIfTI-1 header needs 348\.$/),
  );
  assert.throws(
    () => readNiftiHeader(v2.subarray(0, 347)),
    (e) => one(e, /^file holds 347 bytes but a NIfTI-2 header needs 540\.$/),
  );
  assert.throws(
    () => decodeNifti(v2.subarray(0, 539)),
    (e) => one(e, /^file holds 539 bytes but a NIfTI-2 header needs 540\.$/),
  );
  assert.throws(
    () => readNiftiHeader(v1.subarray(0, 3)),
    (e) => one(e, /^file holds 3 bytes, too few for a NIfTI header\.$/),
  );
  assert.throws(
    () => readNiftiHeader(new Uint8Array(400)),
    (e) => one(e, /^not a NIfTI file: sizeof_hdr is 0, expected 348 \(NIfTI-1\) or 540 \(NIfTI-2\)\.$/),
  );
  assert.equal(readNiftiHeader(v1.subarray(0, 348)).version, 'nifti1'); // exactly the header is enough
});

test('the writer refuses a value its field cannot hold, and NIfTI-2 holds what NIfTI-1 cannot', () => {
  const big = { dims: [40000, 2, 2], affine: obliqueAffine(), tr: 0, datatype: 'uint8' as const };
  assert.throws(
    () => niftiHeader(big),
    (e) => e instanceof NiftiError && /1\.\.32767 for NIfTI-1 \(write NIfTI-2/.test(e.message),
  );
  assert.deepEqual(
    readNiftiHeader(niftiHeader({ ...big, version: 'nifti2' })).fields.dim.slice(0, 4),
    [3, 40000, 2, 2],
  );
  const h = readNiftiHeader(niftiHeader({ dims: [2, 2, 2], affine: obliqueAffine(), tr: 2, datatype: 'int16' }));
  h.fields.dim[4] = 70000;
  assert.throws(
    () => writeNiftiHeader(h),
    (e) => e instanceof NiftiError && /^header field dim\[4\] = 70000 does not fit its int16 slot/.test(e.message),
  );
  h.fields.dim[4] = 1;
  h.fields.descrip = 'x'.repeat(81);
  assert.throws(
    () => writeNiftiHeader(h),
    (e) => e instanceof NiftiError && /descrip holds at most 80 characters/.test(e.message),
  );
});
