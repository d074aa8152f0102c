import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { gunzipSync, gzipSync } from 'node:zlib';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  SliceAssembler,
  compareVolumes,
  nameIndex,
  parseCsaHeader,
  readScannerFile,
  type ReadResult,
  type ScannerVolume,
} from '../../src/scanner/index.js';
import {
  alignTo,
  maxDiff,
  nibData,
  nibReadMany,
  nicomData,
  pydicomData,
  runOracle,
  type OracleImage,
} from './oracle.js';

let dir = '';
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'dicom-test-'));
  // The shipped Siemens/Philips files have zeroed pixels: pydicom rewrites them with a known pattern (headers untouched).
  runOracle([
    'dicom-variants',
    join(nicomData, 'siemens_dwi_1000.dcm.gz'),
    join(nicomData, 'philips_mprage.dcm.gz'),
    join(pydicomData, 'MR_small.dcm'),
    dir,
  ]);
});
after(() => rmSync(dir, { recursive: true, force: true }));

function complete(r: ReadResult): Extract<ReadResult, { status: 'complete' }> {
  assert.equal(r.status, 'complete', r.status !== 'complete' ? r.reason : '');
  return r as Extract<ReadResult, { status: 'complete' }>;
}

/** dcm2niix on a folder; returns nibabel's reading of each NIfTI it wrote. */
function dcm2niix(inDir: string): OracleImage[] {
  const out = mkdtempSync(join(tmpdir(), 'd2n-'));
  try {
    const r = spawnSync('dcm2niix', ['-z', 'n', '-b', 'n', '-f', 'out_%s', '-o', out, inDir], { encoding: 'utf8' });
    assert.equal(r.status, 0, `dcm2niix failed: ${r.stderr}${r.stdout}`);
    const files = readdirSync(out)
      .filter((f) => f.endsWith('.nii'))
      .sort();
    return nibReadMany(
      'nifti',
      files.map((f) => join(out, f)),
    );
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
}

/** Compares our volume with another reader's image; returns the affine difference after re-indexing. */
function assertMatches(
  v: ScannerVolume,
  other: OracleImage,
  label: string,
  opts: { samePermutation?: boolean; tol?: number } = {},
): number {
  const al = alignTo(v, other);
  if (opts.samePermutation)
    assert.deepEqual(
      al.permutation.slice(0, 12),
      [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0],
      `${label}: voxel order differs (${al.permutation})`,
    );
  const ad = maxDiff(al.affine, v.affine);
  assert.ok(ad < (opts.tol ?? 1e-4), `${label}: affine differs by ${ad}`);
  const dd = maxDiff(al.data!, v.data);
  assert.equal(dd, 0, `${label}: voxels differ by ${dd}`);
  return ad;
}

test('Siemens mosaic: tiles, corrected position, slice normal and timing match nibabel and dcm2niix', () => {
  const path = join(dir, 'mosaic.dcm');
  const named = join(dir, '001_000007_000042.dcm');
  copyFileSync(path, named);
  const r = complete(readScannerFile(named));
  assert.equal(r.format, 'dicom-mosaic');
  const v = r.volumes[0];
  assert.deepEqual(v.dims, [128, 128, 48]);
  assert.equal(v.volumeIndex, 42);
  assert.equal(v.tr, 6.6);
  assert.equal(v.sliceTimes?.length, 48);
  assert.ok(v.voxelSize.every((s, i) => Math.abs(s - [1.796875, 1.796875, 3][i]) < 1e-6));
  // nibabel uses ImageOrientationPatient as stored (6 decimals, |cosine| = 0.9999997); we and dcm2niix normalise it,
  // which moves the far corner of this 1.6 m mosaic by ~3e-4 mm. With unit cosines in the file, nibabel agrees to 1e-4.
  const unitIop = join(dir, 'mosaic_unit_iop.dcm');
  const [nib, nibUnit] = nibReadMany('dicom', [path, unitIop]);
  const adNibRaw = assertMatches(v, nib, 'nibabel', { tol: 5e-4 });
  const adNib = assertMatches(complete(readScannerFile(unitIop)).volumes[0], nibUnit, 'nibabel (unit cosines)');
  const mo = join(dir, 'mo');
  mkdirSync(mo);
  copyFileSync(path, join(mo, 'a.dcm'));
  const [d2n] = dcm2niix(mo);
  const adD2n = assertMatches(v, d2n, 'dcm2niix', { samePermutation: true });
  console.log(
    `# mosaic affine diff: nibabel ${adNib.toExponential(2)} mm (stored cosines: ${adNibRaw.toExponential(2)}), dcm2niix ${adD2n.toExponential(2)} mm`,
  );
});

test("the shipped Siemens DWI mosaics give nibabel's geometry; cut-down 0.dcm/1.dcm are refused like nibabel does", () => {
  const dwi = ['siemens_dwi_0.dcm.gz', 'siemens_dwi_1000.dcm.gz'].map((f) => {
    const raw = join(dir, f.replace('.gz', ''));
    writeFileSync(raw, gunzipSync(readFileSync(join(nicomData, f))));
    return raw;
  });
  const cut = ['0.dcm', '1.dcm'].map((f) => join(nicomData, f));
  const nib = nibReadMany('dicom', [...dwi, ...cut], false);
  dwi.forEach((raw, i) => {
    const v = complete(readScannerFile(raw)).volumes[0];
    // stored 6-decimal cosines: see the mosaic test above for why nibabel differs by up to ~3e-4 mm here
    const ad = maxDiff(alignTo(v, nib[i]).affine, v.affine);
    assert.ok(ad < 5e-4, `${raw}: affine differs by ${ad}`);
  });
  cut.forEach((f, i) => {
    const r = readScannerFile(f);
    assert.equal(r.status, 'invalid');
    assert.match(
      (r as { reason: string }).reason,
      /256×256 mosaic does not split into 7×7 equal tiles for its 48 slices/,
    );
    assert.ok(nib[2 + i].error, 'nibabel refuses it too');
  });
});

test("Siemens CSA headers parse to the same tags and values as nibabel's csareader", () => {
  const files = ['csa2_b0.bin', 'csa2_b1000.bin', 'csa_str_valid.bin', 'csa2_zero_len.bin.gz'];
  const theirs = JSON.parse(runOracle(['csa', ...files.map((f) => join(nicomData, f))])) as Record<
    string,
    (number | string)[]
  >[];
  for (const [i, f] of files.entries()) {
    let blob: Uint8Array = readFileSync(join(nicomData, f));
    if (f.endsWith('.gz')) blob = gunzipSync(blob);
    const ours = parseCsaHeader(blob);
    assert.deepEqual([...ours.keys()].sort(), Object.keys(theirs[i]).sort(), f);
    for (const [name, items] of Object.entries(theirs[i])) {
      const mine = ours.get(name)!.items;
      assert.equal(mine.length, items.length, `${f} ${name}`);
      mine.forEach((v, j) => {
        if (typeof v === 'number') assert.ok(Math.abs(v - Number(items[j])) < 1e-9, `${f} ${name}[${j}]`);
        else assert.equal(v, items[j], `${f} ${name}[${j}]`);
      });
    }
  }
  const b1000 = parseCsaHeader(readFileSync(join(nicomData, 'csa2_b1000.bin')));
  assert.deepEqual(b1000.get('B_value')!.items, [1000]);
});

test('enhanced multi-frame: per-frame positions, shared/per-frame groups and rescale match nibabel', () => {
  const path = join(dir, 'enhanced.dcm');
  const r = complete(readScannerFile(path));
  assert.equal(r.format, 'dicom-enhanced');
  assert.equal(r.volumes.length, 1);
  const v = r.volumes[0];
  assert.deepEqual(v.dims, [256, 256, 12]);
  const [nib] = nibReadMany('dicom', [path]);
  const al = alignTo(v, nib);
  const ad = maxDiff(al.affine, v.affine);
  assert.ok(ad < 1e-4, `affine differs by ${ad}`);
  // The frames carry RescaleSlope 2.1079365079365 in their PixelValueTransformationSequence. We apply it (as dcm2niix
  // does, via scl_slope); nibabel 5 looks for Philips' private scale instead and returns stored values.
  const slope = 2.1079365079365;
  const scaled = al.data!.map((x) => x * slope);
  const dd = maxDiff(scaled, v.data);
  assert.ok(dd < 1e-3, `voxels differ by ${dd}`);
  assert.ok(
    v.data.some((x) => x > 1000),
    'the pattern survived',
  );
  console.log(`# enhanced affine diff vs nibabel ${ad.toExponential(2)} mm`);
});

test('per-slice DICOM in every uncompressed transfer syntax decodes identically and as nibabel does', () => {
  const files = [
    'MR_small.dcm',
    'MR_small_implicit.dcm',
    'MR_small_bigendian.dcm',
    'MR_small_expb.dcm',
    'MR_small_padded.dcm',
    'CT_small.dcm',
  ];
  const nib = nibReadMany(
    'dicom',
    files.map((f) => join(pydicomData, f)),
  );
  let first: Float32Array | undefined;
  for (const [i, f] of files.entries()) {
    const r = complete(readScannerFile(join(pydicomData, f)));
    assert.equal(r.format, 'dicom-slices');
    const asm = new SliceAssembler();
    asm.add(r.slices![0]);
    const [v] = asm.flush();
    assertMatches(v, nib[i], f);
    if (f.startsWith('MR')) {
      if (first) assert.equal(maxDiff(first, v.data), 0, `${f} differs from MR_small.dcm`);
      first = v.data;
    }
  }
});

test('per-slice series arriving in shuffled order assemble into the volumes dcm2niix makes, in its voxel order', () => {
  for (const name of ['axial', 'oblique']) {
    const files = readdirSync(join(dir, name)).sort();
    const asm = new SliceAssembler();
    const got: ScannerVolume[] = [];
    for (const f of files) {
      const r = complete(readScannerFile(join(dir, name, f)));
      got.push(...asm.add(r.slices![0]));
    }
    assert.equal(asm.pendingSlices, 0);
    assert.equal(got.length, 2, `${name}: each volume is handed out once its 5 slices are in`);
    got.sort(compareVolumes);
    assert.deepEqual(
      got.map((v) => v.volumeIndex),
      [1, 2],
    );
    const [d2n] = dcm2niix(join(dir, name));
    assert.deepEqual(d2n.dims, [64, 64, 5, 2]);
    const n = 64 * 64 * 5;
    got.forEach((v, t) => {
      assert.deepEqual(v.dims, [64, 64, 5]);
      assertMatches(
        v,
        { ...d2n, dims: [64, 64, 5], data: d2n.data!.subarray(t * n, (t + 1) * n) },
        `${name} volume ${t}`,
        { samePermutation: true },
      );
      assert.ok(Math.abs(v.voxelSize[2] - 4) < 1e-4);
    });
  }
});

test('a file still being written is incomplete at every cut; a corrupt or unsupported one is invalid with one sentence', () => {
  const bytes = readFileSync(join(dir, 'mosaic.dcm'));
  for (const cut of [0, 100, 131, 132, 200, 600, 5000, bytes.length - 1_000_000, bytes.length - 1]) {
    const r = readScannerFile(bytes.subarray(0, cut));
    assert.equal(r.status, 'incomplete', `cut at ${cut}: ${JSON.stringify(r).slice(0, 200)}`);
    assert.ok(!(r as { reason: string }).reason.includes('\n'));
  }
  assert.match(
    (readScannerFile(bytes.subarray(0, bytes.length - 1)) as { reason: string }).reason,
    /PixelData needs 1605632 bytes .* only 1605631 are there yet/,
  );
  assert.equal(readScannerFile(bytes).status, 'complete');
  const notDicom = Uint8Array.from(bytes);
  notDicom.set([0x58, 0x58, 0x58, 0x58], 128);
  const bad = readScannerFile(notDicom);
  assert.equal(bad.status, 'invalid');
  assert.match((bad as { reason: string }).reason, /neither DICOM .* nor NIfTI/);
  assert.match(
    (readScannerFile(notDicom, { format: 'dicom' }) as { reason: string }).reason,
    /no "DICM" marker at byte 128/,
  );
  const cases: [string, 'incomplete' | 'invalid', RegExp][] = [
    ['MR_truncated.dcm', 'incomplete', /ends early|PixelData needs/],
    ['rtplan_truncated.dcm', 'incomplete', /ends early/],
    ['MR_small_RLE.dcm', 'invalid', /^compressed transfer syntax 1\.2\.840\.10008\.1\.2\.5 \(RLE\) is not supported/],
    ['MR_small_jp2klossless.dcm', 'invalid', /compressed transfer syntax .* \(JPEG 2000\) is not supported/],
    ['MR_small_jpeg_ls_lossless.dcm', 'invalid', /compressed transfer syntax .* \(JPEG-LS\) is not supported/],
    ['JPEG-lossy.dcm', 'invalid', /compressed transfer syntax .* \(JPEG\) is not supported/],
    ['image_dfl.dcm', 'invalid', /Deflated Explicit VR\) is not supported/],
    ['ExplVR_BigEnd.dcm', 'invalid', /3 samples per pixel/],
    ['liver_1frame.dcm', 'invalid', /BitsAllocated 1 is not supported/],
    ['no_meta.dcm', 'invalid', /not a DICOM Part 10 file: no "DICM" marker/],
    ['meta_missing_tsyntax.dcm', 'invalid', /no TransferSyntaxUID/],
    ['rtplan.dcm', 'invalid', /holds no image/],
  ];
  for (const [f, status, re] of cases) {
    const r = readScannerFile(join(pydicomData, f));
    assert.equal(r.status, status, `${f}: ${JSON.stringify(r).slice(0, 200)}`);
    assert.match((r as { reason: string }).reason, re, f);
  }
  // PixelData shorter than Rows×Columns×Bits/8 but fully present: corrupt, not "still being written".
  const short = Uint8Array.from(readFileSync(join(pydicomData, 'MR_small.dcm')));
  const dv = new DataView(short.buffer);
  // MR_small.dcm (explicit VR LE): PixelData length (OW, 4-byte length) sits 4 bytes before the data at offset 1500
  assert.equal(dv.getUint32(1496, true), 8192);
  dv.setUint32(1496, 4096, true);
  const rs = readScannerFile(short.subarray(0, 1500 + 4096));
  assert.equal(rs.status, 'invalid');
  assert.match(
    (rs as { reason: string }).reason,
    /PixelData holds 4096 bytes but Rows×Columns×Frames×BitsAllocated\/8 is 8192/,
  );
});

test('NIfTI through the same entry point: 4-D split into volumes, growing file incomplete, bomb invalid', () => {
  const nii = readFileSync(join(nibData, 'example4d.nii.gz'));
  const r = complete(readScannerFile(nii, { name: 'example4d.nii.gz' }));
  assert.equal(r.format, 'nifti');
  assert.deepEqual(
    r.volumes.map((v) => v.volumeIndex),
    [0, 1],
  );
  assert.deepEqual(r.volumes[0].dims, [128, 96, 24]);
  const raw = gunzipSync(nii);
  const partial = readScannerFile(raw.subarray(0, raw.length - 1000));
  assert.equal(partial.status, 'incomplete');
  const partialGz = readScannerFile(nii.subarray(0, nii.length - 50));
  assert.equal(partialGz.status, 'incomplete');
  assert.match((partialGz as { reason: string }).reason, /gzip stream has no end yet/);
  const bomb = gzipSync(Buffer.concat([raw.subarray(0, 352), Buffer.alloc(40 * 1024 * 1024)]));
  const b = readScannerFile(bomb, { maxBytes: 8 * 1024 * 1024 });
  assert.equal(b.status, 'invalid');
  assert.match((b as { reason: string }).reason, /expands beyond the 8388608-byte limit/);
  const wrong = readScannerFile(raw, { format: 'dicom' });
  assert.equal(wrong.status, 'invalid');
});

const bin = join(new URL('../../../', import.meta.url).pathname, 'bin/mindsemantix.mjs');
function cli(args: string[]) {
  return spawnSync(process.execPath, [bin, 'convert', ...args], { encoding: 'utf8' });
}

test('convert: a shuffled per-slice folder becomes the 4-D NIfTI dcm2niix makes; NIfTI in gives the same NIfTI out', () => {
  const out = join(dir, 'series.nii.gz');
  const r = cli([join(dir, 'oblique'), '-o', out]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /wrote .*series\.nii\.gz: 64×64×5×2 int16/);
  const [ours] = nibReadMany('nifti', [out]);
  const [d2n] = dcm2niix(join(dir, 'oblique'));
  assert.deepEqual(ours.dims, d2n.dims);
  assert.ok(maxDiff(ours.affine, d2n.affine) < 1e-4, `affine ${ours.affine} vs ${d2n.affine}`);
  assert.equal(maxDiff(ours.data!, d2n.data!), 0);
  const back = join(dir, 'back.nii');
  assert.equal(cli([join(nibData, 'example4d.nii.gz'), '--output', back]).status, 0);
  const [a, b] = nibReadMany('nifti', [join(nibData, 'example4d.nii.gz'), back]);
  assert.deepEqual(a.dims, b.dims);
  assert.ok(maxDiff(a.affine, b.affine) < 1e-4);
  assert.equal(maxDiff(a.data!, b.data!), 0);
  assert.ok(Math.abs((b.tr ?? 0) - (a.tr ?? 0)) < 1e-3);
});

test('convert: usage and unreadable inputs fail with one line and the right exit code', () => {
  const noOut = cli([join(dir, 'mosaic.dcm')]);
  assert.equal(noOut.status, 2);
  assert.match(noOut.stderr.trim(), /^mindsemantix: convert: -o OUT\.nii\[\.gz\] is required/);
  const cut = join(dir, 'cut.dcm');
  writeFileSync(cut, readFileSync(join(dir, 'mosaic.dcm')).subarray(0, 900_000));
  const inc = cli([cut, '-o', join(dir, 'x.nii')]);
  assert.equal(inc.status, 1);
  assert.match(inc.stderr.trim(), /^mindsemantix: convert: .*cut\.dcm is incomplete: PixelData needs 1605632 bytes/);
  const comp = cli([join(pydicomData, 'MR_small_RLE.dcm'), '-o', join(dir, 'x.nii')]);
  assert.equal(comp.status, 1);
  assert.match(comp.stderr.trim(), /cannot be read: compressed transfer syntax .* \(RLE\) is not supported/);
  for (const r of [noOut, inc, comp]) assert.equal(r.stderr.trim().split('\n').length, 1);
  const h = spawnSync(process.execPath, [bin, 'convert', '--help'], { encoding: 'utf8' });
  assert.equal(h.status, 0);
  assert.match(h.stdout, /mindsemantix convert INPUT\.\.\. -o OUT\.nii\[\.gz\]/);
});

test('bridge order: series, then the volume number in the file name, then acquisition time', () => {
  assert.equal(nameIndex('/x/001_000007_000042.dcm'), 42);
  assert.equal(nameIndex('vol0012.nii.gz'), 12);
  assert.equal(nameIndex('1.3.12.2.1107.5.2.43.167004.30000019112112372496800000014.dcm'), undefined);
  assert.equal(nameIndex('bold.nii'), undefined);
  const v = (seriesNumber: number | undefined, volumeIndex: number | undefined, acquisitionTime: number | undefined) =>
    ({
      dims: [1, 1, 1],
      affine: [],
      voxelSize: [],
      source: 'dicom-mosaic',
      data: new Float32Array(1),
      seriesNumber,
      volumeIndex,
      acquisitionTime,
    }) as ScannerVolume;
  const vols = [v(8, 1, 10), v(7, 3, 1), v(7, 2, 5), v(7, undefined, 2), v(7, 2, 4)];
  const order = vols
    .slice()
    .sort(compareVolumes)
    .map((x) => vols.indexOf(x));
  assert.deepEqual(order, [4, 2, 1, 3, 0]);
});
