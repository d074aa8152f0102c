// Turns a frame's NIfTI payload into a checked volume: one 3-D volume, dims within limits, finite voxels.
import { decodeNifti, NIFTI_TYPE, NiftiError } from '../scanner/nifti.js';
import { ProtocolError } from '../protocol/validate.js';
import type { ServerLimits } from './limits.js';

export interface CheckedVolume {
  dims: [number, number, number];
  affine: number[];
  tr: number;
  data: Float32Array;
  /** True when every voxel is an integer in int16 range and the file stored integers (records losslessly as int16). */
  int16Exact: boolean;
}

const INTEGER_TYPES = new Set<number>([NIFTI_TYPE.uint8, NIFTI_TYPE.int16, NIFTI_TYPE.int8, NIFTI_TYPE.uint16, NIFTI_TYPE.int32]);

export function decodeFrameVolume(nifti: Uint8Array, limits: ServerLimits): CheckedVolume {
  let img;
  try {
    img = decodeNifti(nifti, { maxBytes: limits.maxInflatedBytes });
  } catch (e) {
    if (e instanceof NiftiError) throw new ProtocolError('bad-volume', `volume payload is not a readable NIfTI: ${e.message}`);
    throw new ProtocolError('bad-volume', `volume payload could not be decoded: ${(e as Error).message}`);
  }
  const d = img.dims;
  if (d.length > 4 || (d.length === 4 && d[3] !== 1) || d.length < 3) {
    throw new ProtocolError('bad-volume', `a frame must hold one 3-D volume, this NIfTI has dims ${d.join('×')}; split 4-D files into volumes.`);
  }
  const dims: [number, number, number] = [d[0], d[1], d[2]];
  if (dims.some((x) => x > limits.maxDim) || dims[0] * dims[1] * dims[2] > limits.maxVoxels) {
    throw new ProtocolError('dims-too-large', `volume dims ${dims.join('×')} exceed the server limit (each ≤ ${limits.maxDim}, ≤ ${limits.maxVoxels} voxels).`);
  }
  const data = img.data;
  let bad = 0;
  let exact = INTEGER_TYPES.has(img.datatype);
  for (let i = 0; i < data.length; i++) {
    const v = data[i];
    if (v - v !== 0) bad++; // NaN or ±Inf
    else if (exact && ((v | 0) !== v || v < -32768 || v > 32767)) exact = false;
  }
  if (bad > 0) throw new ProtocolError('non-finite', `volume has ${bad} NaN/Inf voxel(s); the scanner export is corrupt, fix it or drop the volume.`);
  return { dims, affine: img.affine, tr: img.tr, data, int16Exact: exact };
}
