// Reads only the new volumes of a growing 4-D NIfTI-1 (uncompressed, little-endian): header + one volume's byte range
// per volume, so following a long run costs the same per volume at the end as at the start. Header fields come from
// nifti-reader-js; voxels and geometry from src/scanner's decodeNifti on a single-volume copy.
import { openSync, readSync, closeSync, fstatSync } from 'node:fs';
import { NIFTI1, readHeader } from 'nifti-reader-js';
import { decodeNifti, setNifti1VolumeCount, NIFTI1_VOX_OFFSET, type ScannerVolume } from '../scanner/index.js';

const BYTES_PER_VOXEL: Record<number, number> = { 2: 1, 4: 2, 8: 4, 16: 4, 64: 8, 256: 1, 512: 2, 768: 4 };

/** Volumes `from`… that are complete on disk, or undefined when the file is not an uncompressed LE NIfTI-1 4-D image. */
export function readNewNiftiVolumes(path: string, from: number): ScannerVolume[] | undefined {
  const fd = openSync(path, 'r');
  try {
    const size = fstatSync(fd).size;
    if (size < NIFTI1_VOX_OFFSET) return undefined;
    const head = Buffer.alloc(NIFTI1_VOX_OFFSET);
    readSync(fd, head, 0, head.length, 0);
    if (head[0] === 0x1f && head[1] === 0x8b) return undefined;
    let h;
    try {
      h = readHeader(head.buffer.slice(head.byteOffset, head.byteOffset + head.length) as ArrayBuffer);
    } catch {
      return undefined;
    }
    if (!(h instanceof NIFTI1) || !h.littleEndian || h.dims[0] !== 4) return undefined;
    const bpv = BYTES_PER_VOXEL[h.datatypeCode];
    if (!bpv) return undefined;
    const vox = Math.max(NIFTI1_VOX_OFFSET, Math.floor(Number(h.vox_offset)));
    const volBytes = h.dims[1] * h.dims[2] * h.dims[3] * bpv;
    const total = Math.min(h.dims[4], Math.floor((size - vox) / volBytes));
    const out: ScannerVolume[] = [];
    for (let k = from; k < total; k++) {
      const one = Buffer.alloc(vox + volBytes);
      readSync(fd, one, 0, vox, 0);
      readSync(fd, one, vox, volBytes, vox + k * volBytes);
      setNifti1VolumeCount(one.subarray(0, NIFTI1_VOX_OFFSET), 1);
      const img = decodeNifti(one);
      out.push({
        dims: [img.dims[0], img.dims[1], img.dims[2]], affine: img.affine, voxelSize: img.voxelSize.slice(),
        tr: img.tr > 0 ? img.tr : undefined, volumeIndex: k, source: 'nifti', data: img.volume(0),
      });
    }
    return out;
  } finally {
    closeSync(fd);
  }
}
