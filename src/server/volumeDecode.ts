// Turns a frame's NIfTI payload into a checked volume: one 3-D volume, dims within limits, finite voxels.
// The header is checked before anything is sized by it: an uncompressed payload before its voxels are converted, a
// gzip payload before its body is inflated. Inflating runs on the libuv pool in chunks and stops at the size the
// header declares (and at maxInflatedBytes), so a gzip bomb costs at most that much, off the event loop.
import { createGunzip } from 'node:zlib';
import { decodeNifti, isGzip, NIFTI_TYPE, NiftiError, readNiftiLayout } from '../scanner/nifti.js';
import { NIFTI_MAX_HEADER_BYTES } from '../scanner/niftiHeader.js';
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

const INTEGER_TYPES = new Set<number>([
  NIFTI_TYPE.uint8,
  NIFTI_TYPE.int16,
  NIFTI_TYPE.int8,
  NIFTI_TYPE.uint16,
  NIFTI_TYPE.int32,
]);

export { isGzip };

/** Checks the header's dims against the limits; returns the complete file's size. Throws ProtocolError. */
function checkLayout(head: Uint8Array, limits: ServerLimits): number {
  let layout;
  try {
    layout = readNiftiLayout(head);
  } catch (e) {
    throw new ProtocolError('bad-volume', `volume payload is not a readable NIfTI: ${(e as Error).message}`);
  }
  const d = layout.dims;
  if (d.length > 4 || (d.length === 4 && d[3] !== 1) || d.length < 3) {
    throw new ProtocolError(
      'bad-volume',
      `a frame must hold one 3-D volume, this NIfTI has dims ${d.join('×')}; split 4-D files into volumes.`,
    );
  }
  if (d.slice(0, 3).some((x) => x > limits.maxDim) || d[0] * d[1] * d[2] > limits.maxVoxels) {
    throw new ProtocolError(
      'dims-too-large',
      `volume dims ${d.slice(0, 3).join('×')} exceed the server limit (each ≤ ${limits.maxDim}, ≤ ${limits.maxVoxels} voxels).`,
    );
  }
  return layout.fileBytes;
}

/**
 * Inflates a gzip payload, checking the NIfTI header as soon as it is out and stopping at the size it declares.
 * Rejects with a ProtocolError.
 */
export function inflateFramePayload(gz: Uint8Array, limits: ServerLimits): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const z = createGunzip({ chunkSize: 256 * 1024 });
    const chunks: Buffer[] = [];
    let total = 0;
    let cap = limits.maxInflatedBytes;
    let checked = false;
    let done = false;
    const fail = (e: ProtocolError): void => {
      if (done) return;
      done = true;
      z.destroy();
      reject(e);
    };
    z.on('data', (c: Buffer) => {
      if (done) return;
      chunks.push(c);
      total += c.length;
      if (!checked && total >= NIFTI_MAX_HEADER_BYTES) {
        checked = true;
        try {
          cap = Math.min(cap, checkLayout(Buffer.concat(chunks), limits));
        } catch (e) {
          fail(e as ProtocolError);
          return;
        }
      }
      if (total > cap) {
        fail(
          new ProtocolError(
            'bad-volume',
            `the gzip payload inflates to more than ${cap} bytes, more than ${checked ? 'its NIfTI header declares' : 'the server accepts'} (a gzip bomb or a corrupt file).`,
          ),
        );
      }
    });
    z.on('end', () => {
      if (done) return;
      done = true;
      resolve(Buffer.concat(chunks, total));
    });
    z.on('error', (e) =>
      fail(new ProtocolError('bad-volume', `the gzip payload is corrupt or truncated (${e.message}).`)),
    );
    z.end(gz);
  });
}

/** Decodes an uncompressed NIfTI payload (a gzip one goes through inflateFramePayload first). Throws ProtocolError. */
export function decodeFrameVolume(nifti: Uint8Array, limits: ServerLimits): CheckedVolume {
  if (isGzip(nifti))
    throw new ProtocolError('bad-volume', 'internal: a gzip payload must be inflated with inflateFramePayload first.');
  checkLayout(nifti, limits);
  let img;
  try {
    img = decodeNifti(nifti, { maxBytes: limits.maxInflatedBytes });
  } catch (e) {
    if (e instanceof NiftiError)
      throw new ProtocolError('bad-volume', `volume payload is not a readable NIfTI: ${e.message}`);
    throw new ProtocolError('bad-volume', `volume payload could not be decoded: ${(e as Error).message}`);
  }
  const d = img.dims;
  const dims: [number, number, number] = [d[0], d[1], d[2]];
  const data = img.data;
  let bad = 0;
  let exact = INTEGER_TYPES.has(img.datatype);
  for (let i = 0; i < data.length; i++) {
    const v = data[i];
    if (v - v !== 0)
      bad++; // NaN or ±Inf
    else if (exact && ((v | 0) !== v || v < -32768 || v > 32767)) exact = false;
  }
  if (bad > 0)
    throw new ProtocolError(
      'non-finite',
      `volume has ${bad} NaN/Inf voxel(s); the scanner export is corrupt, fix it or drop the volume.`,
    );
  return { dims, affine: img.affine, tr: img.tr, data, int16Exact: exact };
}
