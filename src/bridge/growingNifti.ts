// Reads only the new volumes of a growing 4-D NIfTI (uncompressed; NIfTI-1 or -2, either byte order): the header plus
// one volume's byte range per volume, so following a long run costs the same per volume at the end as at the start.
// The header is read, and each volume decoded, by src/scanner (the same header reader as every other NIfTI path).
import { openSync, readSync, closeSync, fstatSync } from 'node:fs';
import {
  decodeNiftiVolume,
  readNiftiLayout,
  NIFTI_MAX_HEADER_BYTES,
  type NiftiLayout,
  type ScannerVolume,
} from '../scanner/index.js';

/** Volumes `from`… that are complete on disk, or undefined when the file is not an uncompressed 4-D NIfTI (yet). */
export function readNewNiftiVolumes(path: string, from: number): ScannerVolume[] | undefined {
  const fd = openSync(path, 'r');
  try {
    const size = fstatSync(fd).size;
    const first = Buffer.alloc(Math.min(size, NIFTI_MAX_HEADER_BYTES));
    readSync(fd, first, 0, first.length, 0);
    let layout: NiftiLayout;
    try {
      layout = readNiftiLayout(first); // a gzip stream or a header not all there yet throws: the caller reads the whole file
    } catch {
      return undefined;
    }
    if (layout.dims.length !== 4) return undefined;
    const vox = layout.voxOffset;
    if (size < vox) return undefined;
    const total = Math.min(layout.dims[3], Math.floor((size - vox) / layout.volumeBytes));
    const out: ScannerVolume[] = [];
    if (from >= total) return out;
    const head = Buffer.alloc(vox);
    readSync(fd, head, 0, vox, 0);
    for (let k = from; k < total; k++) {
      const volume = Buffer.alloc(layout.volumeBytes);
      readSync(fd, volume, 0, volume.length, vox + k * layout.volumeBytes);
      const img = decodeNiftiVolume(head, volume);
      out.push({
        dims: [img.dims[0], img.dims[1], img.dims[2]],
        affine: img.affine,
        voxelSize: img.voxelSize.slice(),
        tr: img.tr > 0 ? img.tr : undefined,
        volumeIndex: k,
        source: 'nifti',
        data: img.volume(0),
      });
    }
    return out;
  } finally {
    closeSync(fd);
  }
}
