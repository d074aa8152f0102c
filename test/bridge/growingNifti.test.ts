// The growing-file reader (bridge) goes through src/scanner's header reader, so it follows any single-file NIfTI the
// scanner reads: here a big-endian NIfTI-2 4-D file written one volume at a time, checked against nibabel at the end.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readNewNiftiVolumes } from '../../src/bridge/growingNifti.js';
import { niftiHeader4D, setNiftiVolumeCount } from '../../src/scanner/nifti.js';
import { readNiftiHeader, writeNiftiHeader } from '../../src/scanner/niftiHeader.js';
import { maxDiff, nibRead } from '../scanner/oracle.js';

test('a growing big-endian NIfTI-2 file is read one new volume at a time, as nibabel reads the finished file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'grow2-'));
  try {
    const dims: [number, number, number] = [4, 3, 2];
    const affine = [2, 0, 0.5, -10, 0, 2.5, 0, 20, 0, 0, 3, -5, 0, 0, 0, 1];
    const le = niftiHeader4D({ dims: [...dims, 1], affine, tr: 0.8, datatype: 'int16', version: 'nifti2' });
    const header = new Uint8Array(le.length); // the same header, big-endian (extension flag 0)
    writeNiftiHeader(readNiftiHeader(le), false, header);
    const volume = (k: number) => {
      const b = Buffer.alloc(24 * 2);
      for (let i = 0; i < 24; i++) b.writeInt16BE(i * 11 - 100 * k, 2 * i);
      return b;
    };
    const path = join(dir, 'grow_bold.nii');
    writeFileSync(path, header);
    assert.deepEqual(readNewNiftiVolumes(path, 0), [], 'a header without voxels: nothing yet');
    const seen: Float32Array[] = [];
    for (let k = 0; k < 3; k++) {
      appendFileSync(path, volume(k).subarray(0, 30));
      assert.deepEqual(readNewNiftiVolumes(path, k), [], `volume ${k} half written`);
      appendFileSync(path, volume(k).subarray(30));
      setNiftiVolumeCount(header, k + 1);
      assert.equal(readNiftiHeader(header).littleEndian, false, "the count is rewritten in the file's own byte order");
      const f = Buffer.from(header);
      writeFileSync(path, Buffer.concat([f, ...Array.from({ length: k + 1 }, (_, j) => volume(j))]));
      const got = readNewNiftiVolumes(path, k)!;
      assert.equal(got.length, 1);
      assert.equal(got[0].volumeIndex, k);
      assert.deepEqual(got[0].dims, dims);
      assert.equal(got[0].tr, 0.8);
      assert.ok(maxDiff(got[0].affine, affine) < 1e-12);
      seen.push(got[0].data);
    }
    const nib = nibRead('nifti', path);
    assert.deepEqual(nib.dims, [...dims, 3]);
    const all = new Float32Array(72);
    seen.forEach((v, k) => all.set(v, k * 24));
    assert.equal(maxDiff(nib.data!, all), 0);
    assert.ok(maxDiff(nib.affine, affine) < 1e-12);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
