// NIfTI-1/2 images: reading (decompression, voxels, scaling, nibabel's affine) and writing, both through the one
// header description per version in niftiHeader.ts.
import { gunzipSync, constants as zlibConstants } from 'node:zlib';
import { affineToQform, qformToAffine } from './affine.js';
import {
  NiftiError,
  NIFTI_LAYOUTS,
  blankNiftiHeader,
  niftiVersionOf,
  niftiVoxOffset,
  readNiftiHeader,
  updateNiftiHeader,
  writeNiftiHeader,
  type NiftiHeader,
  type NiftiVersion,
} from './niftiHeader.js';

export { NiftiError };

export interface NiftiImage {
  /** [x,y,z] or [x,y,z,t]. */
  dims: number[];
  /** Voxel size in mm (|pixdim[1..3]|). */
  voxelSize: number[];
  /** Repetition time in seconds (pixdim[4] in the file's time unit); 0 when the file has none. */
  tr: number;
  /** Row-major 4×4 voxel → RAS+ mm, equal to nibabel's img.affine. */
  affine: number[];
  /** NIfTI datatype code of the stored voxels (the data below is always float32, scaled). */
  datatype: number;
  /** 'nifti1' or 'nifti2'. */
  version: 'nifti1' | 'nifti2';
  /** All voxels, x fastest, scl_slope/scl_inter applied. */
  data: Float32Array;
  /** View (no copy) of 3-D volume i of a 4-D image; volume(0) of a 3-D image is the whole image. */
  volume(i: number): Float32Array;
}

export const DEFAULT_MAX_NIFTI_BYTES = 1024 ** 3;

export const NIFTI_TYPE = {
  uint8: 2,
  int16: 4,
  int32: 8,
  float32: 16,
  float64: 64,
  int8: 256,
  uint16: 512,
  uint32: 768,
  int64: 1024,
  uint64: 1280,
} as const;

const TYPE_BYTES: Record<number, number> = { 2: 1, 4: 2, 8: 4, 16: 4, 64: 8, 256: 1, 512: 2, 768: 4, 1024: 8, 1280: 8 };
const UNSUPPORTED_TYPE_NAMES: Record<number, string> = {
  1: 'binary',
  32: 'complex64',
  128: 'RGB24',
  1536: 'float128',
  1792: 'complex128',
  2048: 'complex256',
  2304: 'RGBA32',
};

const GZIP_MAGIC = (b: Uint8Array) => b.length >= 2 && b[0] === 0x1f && b[1] === 0x8b;

export function isGzip(bytes: Uint8Array): boolean {
  return GZIP_MAGIC(bytes);
}

/** True when the (uncompressed) bytes start with a NIfTI-1 or NIfTI-2 header in either byte order. */
export function looksLikeNifti(bytes: Uint8Array): boolean {
  return niftiVersionOf(bytes) !== undefined;
}

function gunzipCapped(bytes: Uint8Array, cap: number, partialOk: boolean): { data: Uint8Array; truncated: boolean } {
  try {
    return { data: gunzipSync(bytes, { maxOutputLength: cap }), truncated: false };
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'ERR_BUFFER_TOO_LARGE' || e instanceof RangeError) {
      throw new NiftiError(
        `the gzip stream expands beyond the ${cap}-byte limit, so it was not decompressed (raise maxBytes if the file is genuine).`,
      );
    }
    if (partialOk && /unexpected end of file/i.test(e.message)) {
      // A file still being written: take what inflates so far.
      try {
        const data = gunzipSync(bytes, { maxOutputLength: cap, finishFlush: zlibConstants.Z_SYNC_FLUSH });
        return { data, truncated: true };
      } catch {
        return { data: new Uint8Array(0), truncated: true };
      }
    }
    if (/unexpected end of file/i.test(e.message)) {
      throw new NiftiError('the gzip stream ends early (the file is truncated or still being written).');
    }
    throw new NiftiError(`the gzip stream is corrupt (${e.message}).`);
  }
}

interface ParsedHeader {
  header: NiftiHeader;
  dims: number[];
  datatype: number;
  bytesPerVoxel: number;
  voxOffset: number;
  voxels: number;
  /** Voxels per 3-D volume. */
  volumeVoxels: number;
  nVolumes: number;
}

function parseHeader(bytes: Uint8Array): ParsedHeader {
  const header = readNiftiHeader(bytes);
  const layout = NIFTI_LAYOUTS[header.version];
  const h = header.fields;
  const magic = h.magic.slice(0, 3);
  if (magic === layout.pairMagic) {
    throw new NiftiError(
      `this is the header of a .hdr/.img pair (magic "${magic}"); convert it to a single .nii file first.`,
    );
  }
  if (magic !== layout.magic)
    throw new NiftiError(`wrong NIfTI magic "${magic.replace(/[^\x20-\x7e]/g, '?')}" (expected "${layout.magic}").`);
  const nd = h.dim[0];
  if (!(nd >= 1 && nd <= 7)) throw new NiftiError(`the header's dim[0] is ${nd}, outside 1..7.`);
  const all = h.dim.slice(1, nd + 1);
  if (all.some((d) => !Number.isInteger(d) || d < 1))
    throw new NiftiError(`the header's dimensions ${JSON.stringify(all)} are not all positive integers.`);
  while (all.length > 4 && all[all.length - 1] === 1) all.pop();
  if (all.length > 4)
    throw new NiftiError(
      `the image has ${all.length} dimensions (${all.join('×')}); only 3-D and 4-D images are supported.`,
    );
  while (all.length < 3) all.push(1);
  if (all.length === 4 && all[3] === 1 && nd < 4) all.pop();
  const datatype = h.datatype;
  const bytesPerVoxel = TYPE_BYTES[datatype];
  if (!bytesPerVoxel) {
    const name = UNSUPPORTED_TYPE_NAMES[datatype];
    throw new NiftiError(
      `NIfTI datatype ${datatype}${name ? ` (${name})` : ''} is not supported; use an integer or float type.`,
    );
  }
  let voxOffset = h.vox_offset;
  // The standard requires vox_offset ≥ header + 4-byte extension flag for single-file NIfTI; old writers put 0.
  const least = niftiVoxOffset(header.version);
  if (!Number.isFinite(voxOffset) || voxOffset < least) voxOffset = least;
  voxOffset = Math.floor(voxOffset);
  const volumeVoxels = all[0] * all[1] * all[2];
  const nVolumes = all.length === 4 ? all[3] : 1;
  return {
    header,
    dims: all,
    datatype,
    bytesPerVoxel,
    voxOffset,
    voxels: volumeVoxels * nVolumes,
    volumeVoxels,
    nVolumes,
  };
}

/** What a NIfTI header says about the image, without reading (or inflating) the voxels. */
export interface NiftiLayout {
  version: NiftiVersion;
  dims: number[];
  bytesPerVoxel: number;
  voxOffset: number;
  /** Bytes of one 3-D volume. */
  volumeBytes: number;
  /** vox_offset + voxels × bytes: the uncompressed size of the complete file. */
  fileBytes: number;
}

/** Reads the header of uncompressed NIfTI bytes (at least the 348/540-byte header); throws NiftiError. */
export function readNiftiLayout(bytes: Uint8Array): NiftiLayout {
  const p = parseHeader(bytes);
  return {
    version: p.header.version,
    dims: p.dims.slice(),
    bytesPerVoxel: p.bytesPerVoxel,
    voxOffset: p.voxOffset,
    volumeBytes: p.volumeVoxels * p.bytesPerVoxel,
    fileBytes: p.voxOffset + p.voxels * p.bytesPerVoxel,
  };
}

/** A real copy (Buffer#slice would return a view into a shared pool). */
function copyBytes(b: Uint8Array, start: number, end: number): Uint8Array {
  const out = new Uint8Array(end - start);
  out.set(b.subarray(start, end));
  return out;
}

function toFloat32(
  src: Uint8Array,
  datatype: number,
  littleEndian: boolean,
  count: number,
  slope: number,
  inter: number,
): Float32Array {
  const bpv = TYPE_BYTES[datatype];
  const raw = copyBytes(src, 0, count * bpv); // aligned at 0 and safe to byte-swap
  const hostLittle = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
  if (bpv > 1 && littleEndian !== hostLittle) {
    for (let i = 0; i < raw.length; i += bpv) {
      for (let a = i, b = i + bpv - 1; a < b; a++, b--) {
        const t = raw[a];
        raw[a] = raw[b];
        raw[b] = t;
      }
    }
  }
  const buf = raw.buffer;
  let typed: ArrayLike<number> | BigInt64Array | BigUint64Array;
  switch (datatype) {
    case 2:
      typed = new Uint8Array(buf, 0, count);
      break;
    case 4:
      typed = new Int16Array(buf, 0, count);
      break;
    case 8:
      typed = new Int32Array(buf, 0, count);
      break;
    case 16:
      typed = new Float32Array(buf, 0, count);
      break;
    case 64:
      typed = new Float64Array(buf, 0, count);
      break;
    case 256:
      typed = new Int8Array(buf, 0, count);
      break;
    case 512:
      typed = new Uint16Array(buf, 0, count);
      break;
    case 768:
      typed = new Uint32Array(buf, 0, count);
      break;
    case 1024:
      typed = new BigInt64Array(buf, 0, count);
      break;
    case 1280:
      typed = new BigUint64Array(buf, 0, count);
      break;
    default:
      throw new NiftiError(`NIfTI datatype ${datatype} is not supported.`);
  }
  const out = datatype === 16 && slope === 1 && inter === 0 ? (typed as Float32Array) : new Float32Array(count);
  if (out === typed) return out;
  if (typed instanceof BigInt64Array || typed instanceof BigUint64Array) {
    for (let i = 0; i < count; i++) out[i] = Number(typed[i]) * slope + inter;
  } else if (slope === 1 && inter === 0) {
    out.set(typed as ArrayLike<number>);
  } else {
    const t = typed as ArrayLike<number>;
    for (let i = 0; i < count; i++) out[i] = t[i] * slope + inter;
  }
  return out;
}

/** nibabel's loader makes pixdim[1..3] positive and turns zeros into 1 before building affines. */
function spatialPixdims(h: NiftiHeader['fields']): number[] {
  return [1, 2, 3].map((i) => Math.abs(h.pixdim[i]) || 1);
}

/** nibabel's img.affine: sform if sform_code > 0, else qform if qform_code > 0, else the pixdim-based Analyze affine. */
function bestAffine(h: NiftiHeader['fields'], dims: number[]): number[] {
  // nibabel's loader resets xform codes outside the known set (0..5) to 0.
  const code = (c: number) => (Number.isInteger(c) && c >= 0 && c <= 5 ? c : 0);
  // srow_* as stored whenever sform_code is set, even when qform_code is higher (as nibabel)
  if (code(h.sform_code) !== 0) return [...h.srow_x, ...h.srow_y, ...h.srow_z, 0, 0, 0, 1];
  const pd = spatialPixdims(h);
  if (code(h.qform_code) !== 0) {
    const qfac = h.pixdim[0] === -1 ? -1 : 1;
    return qformToAffine(h.quatern_b, h.quatern_c, h.quatern_d, qfac, pd, [h.qoffset_x, h.qoffset_y, h.qoffset_z]);
  }
  // Analyze fall-back (nibabel shape_zoom_affine with x flipped): voxel centre of the volume at the origin.
  const z = [-pd[0], pd[1], pd[2]];
  const o = [0, 1, 2].map((i) => -((dims[i] - 1) / 2) * z[i]);
  return [z[0], 0, 0, o[0], 0, z[1], 0, o[1], 0, 0, z[2], o[2], 0, 0, 0, 1];
}

function trSeconds(header: NiftiHeader): number {
  const h = header.fields;
  let t = h.pixdim[4];
  if (!Number.isFinite(t) || t <= 0) return 0;
  // NIfTI-1 stores float32: report 0.8 rather than 0.800000011920929
  if (header.version === 'nifti1') t = Number(t.toPrecision(7));
  switch (h.xyzt_units & 0x38) {
    case 16:
      return t / 1000; // ms
    case 24:
      return t / 1e6; // µs
    default:
      return t; // seconds, or unknown (assume seconds)
  }
}

/**
 * The uncompressed bytes of a .nii or .nii.gz, inflating at most `cap` bytes (gzip bombs fail fast). With partialOk, a
 * gzip stream without its end (a file still being written) gives what inflates so far and truncated = true.
 */
export function inflateNifti(
  bytes: Uint8Array,
  opts: { maxBytes?: number; partialOk?: boolean } = {},
): { data: Uint8Array; truncated: boolean } {
  return uncompressed(bytes, opts.maxBytes ?? DEFAULT_MAX_NIFTI_BYTES, opts.partialOk ?? false);
}

function uncompressed(bytes: Uint8Array, cap: number, partialOk: boolean): { data: Uint8Array; truncated: boolean } {
  if (!GZIP_MAGIC(bytes)) {
    if (bytes.length > cap)
      throw new NiftiError(
        `the file holds ${bytes.length} bytes, above the ${cap}-byte limit (raise maxBytes if the file is genuine).`,
      );
    return { data: bytes, truncated: false };
  }
  return gunzipCapped(bytes, cap, partialOk);
}

/** Decodes a .nii or .nii.gz (NIfTI-1 or NIfTI-2, either byte order) into float32 voxels and nibabel's affine. */
export function decodeNifti(bytes: Uint8Array, opts: { maxBytes?: number } = {}): NiftiImage {
  const cap = opts.maxBytes ?? DEFAULT_MAX_NIFTI_BYTES;
  const { data } = uncompressed(bytes, cap, false);
  const p = parseHeader(data);
  const need = p.voxOffset + p.voxels * p.bytesPerVoxel;
  if (need > cap)
    throw new NiftiError(
      `the header says the image needs ${need} bytes, above the ${cap}-byte limit (raise maxBytes if the file is genuine).`,
    );
  if (data.length < need)
    throw new NiftiError(
      `file holds ${data.length} bytes but header says ${need} (vox_offset ${p.voxOffset} + ${p.voxels} voxels × ${p.bytesPerVoxel} bytes); it is truncated or still being written.`,
    );
  const h = p.header.fields;
  let slope = h.scl_slope,
    inter = h.scl_inter;
  // nibabel: slope 0 or non-finite means "no scaling"; a non-finite intercept means 0.
  if (!Number.isFinite(slope) || slope === 0) {
    slope = 1;
    inter = 0;
  }
  if (!Number.isFinite(inter)) inter = 0;
  const voxels = toFloat32(data.subarray(p.voxOffset, need), p.datatype, p.header.littleEndian, p.voxels, slope, inter);
  const vv = p.volumeVoxels,
    nv = p.nVolumes;
  return {
    dims: p.dims.slice(),
    voxelSize: spatialPixdims(h),
    tr: trSeconds(p.header),
    affine: bestAffine(h, p.dims),
    datatype: p.datatype,
    version: p.header.version,
    data: voxels,
    volume(i: number): Float32Array {
      if (!Number.isInteger(i) || i < 0 || i >= nv)
        throw new NiftiError(`volume ${i} does not exist; the image has ${nv} volume(s).`);
      return voxels.subarray(i * vv, (i + 1) * vv);
    },
  };
}

export interface NiftiCompleteness {
  complete: boolean;
  /** Whole volumes present in the data (can exceed dim[4] when a writer appended before updating the header). */
  volumes: number;
  reason?: string;
}

/**
 * Proves a NIfTI file complete by size: vox_offset + prod(dims)·bytesPerVoxel bytes present. A file still being written
 * (short, or a gzip stream without its end) is incomplete and reports its whole volumes; a non-NIfTI file throws NiftiError.
 */
export function niftiCompleteness(bytes: Uint8Array, opts: { maxBytes?: number } = {}): NiftiCompleteness {
  const cap = opts.maxBytes ?? DEFAULT_MAX_NIFTI_BYTES;
  const { data, truncated } = uncompressed(bytes, cap, true);
  const v = niftiVersionOf(data);
  if (data.length >= 4 && !v) parseHeader(data); // throws the not-a-NIfTI sentence
  const hdrNeed = niftiVoxOffset(v?.version ?? 'nifti1');
  if (data.length < hdrNeed) {
    return { complete: false, volumes: 0, reason: `only ${data.length} bytes of the header are there yet.` };
  }
  const p = parseHeader(data);
  const volBytes = p.volumeVoxels * p.bytesPerVoxel;
  const need = p.voxOffset + p.voxels * p.bytesPerVoxel;
  const avail = Math.max(0, data.length - p.voxOffset);
  const volumes = Math.floor(avail / volBytes);
  if (truncated)
    return {
      complete: false,
      volumes: Math.min(volumes, p.nVolumes),
      reason: `the gzip stream has no end yet (${data.length} of ${need} bytes inflated).`,
    };
  if (data.length < need)
    return { complete: false, volumes, reason: `file holds ${data.length} bytes but header says ${need}.` };
  return { complete: true, volumes };
}

/** The image dims (x, y, z[, t…]) from the first bytes of a .nii or .nii.gz (the header is enough: no voxel is decoded). */
export function niftiDims(headBytes: Uint8Array): number[] {
  const { data } = uncompressed(headBytes, DEFAULT_MAX_NIFTI_BYTES, true);
  return parseHeader(data).dims.slice();
}

// ---------------------------------------------------------------- writing

export type NiftiWriteType = 'int16' | 'float32' | 'uint8';

export interface NiftiHeaderOptions {
  /** [x,y,z] or [x,y,z,t]. */
  dims: number[];
  affine: number[];
  /** Seconds; written to pixdim[4]. */
  tr: number;
  datatype: NiftiWriteType;
  sclSlope?: number;
  sclInter?: number;
  description?: string;
  /** Default 'nifti1'. */
  version?: NiftiVersion;
}

/** Where the voxels of a NIfTI-1 file written here start (header + empty extension flag). */
export const NIFTI1_VOX_OFFSET = niftiVoxOffset('nifti1');

/**
 * A single-file header plus an empty extension flag (352 bytes for NIfTI-1, 544 for NIfTI-2), little-endian, identical
 * qform and sform (code 1), xyzt_units 10 (mm, s), pixdim from the affine's column norms. Voxels follow it.
 */
export function niftiHeader(o: NiftiHeaderOptions): Uint8Array {
  const version = o.version ?? 'nifti1';
  const dims = o.dims;
  if (dims.length !== 3 && dims.length !== 4)
    throw new NiftiError(`dims must have 3 or 4 entries (got ${dims.length}).`);
  const maxDim = version === 'nifti1' ? 32767 : Number.MAX_SAFE_INTEGER;
  if (dims.some((d) => !Number.isInteger(d) || d < 1 || d > maxDim)) {
    throw new NiftiError(
      `dims ${JSON.stringify(dims)} must be integers in 1..${maxDim} for ${NIFTI_LAYOUTS[version].label}${version === 'nifti1' ? ' (write NIfTI-2 for larger images)' : ''}.`,
    );
  }
  if (o.affine.length !== 16 || o.affine.some((v) => !Number.isFinite(v)))
    throw new NiftiError('the affine must be 16 finite numbers (row-major 4×4).');
  const code = NIFTI_TYPE[o.datatype];
  const h = blankNiftiHeader(version);
  const f = h.fields;
  f.dim = [dims.length, ...Array.from({ length: 7 }, (_, i) => (i < dims.length ? dims[i] : 1))];
  f.datatype = code;
  f.bitpix = TYPE_BYTES[code] * 8;
  const q = affineToQform(o.affine);
  f.pixdim = [q.qfac, q.pixdim[0], q.pixdim[1], q.pixdim[2], dims.length === 4 || o.tr > 0 ? o.tr : 0, 0, 0, 0];
  f.vox_offset = niftiVoxOffset(version);
  f.scl_slope = o.sclSlope ?? 1;
  f.scl_inter = o.sclInter ?? 0;
  f.xyzt_units = 10; // NIFTI_UNITS_MM | NIFTI_UNITS_SEC
  f.descrip = (o.description ?? 'mindsemantix').slice(0, 79).replace(/[^\x20-\x7e]/g, '?');
  f.qform_code = 1; // scanner
  f.sform_code = 1;
  [f.quatern_b, f.quatern_c, f.quatern_d] = [q.b, q.c, q.d];
  [f.qoffset_x, f.qoffset_y, f.qoffset_z] = q.offset;
  f.srow_x = o.affine.slice(0, 4);
  f.srow_y = o.affine.slice(4, 8);
  f.srow_z = o.affine.slice(8, 12);
  const out = new Uint8Array(niftiVoxOffset(version)); // the 4 bytes after the header: extension flag 0
  writeNiftiHeader(h, true, out);
  return out;
}

/** The header of a 4-D image for dims [x,y,z,t]; a growing writer updates t with setNiftiVolumeCount. */
export function niftiHeader4D(
  o: Omit<NiftiHeaderOptions, 'dims'> & { dims: [number, number, number, number] },
): Uint8Array {
  if (o.dims.length !== 4) throw new NiftiError('niftiHeader4D needs dims [x,y,z,t].');
  return niftiHeader(o);
}

/** Rewrites dim[4] (the volume count) of the header at the start of `header`, in place, keeping its version and byte order. */
export function setNiftiVolumeCount(header: Uint8Array, t: number): void {
  if (!Number.isInteger(t) || t < 1) throw new NiftiError(`volume count ${t} must be a positive integer.`);
  updateNiftiHeader(header, (h) => {
    h.fields.dim[0] = Math.max(h.fields.dim[0], 4);
    h.fields.dim[4] = t;
  });
}

/**
 * One volume of a 4-D file from its header bytes (the file's bytes 0..vox_offset) and that volume's bytes alone: how a
 * growing file is read one new volume at a time. Throws NiftiError.
 */
export function decodeNiftiVolume(head: Uint8Array, volume: Uint8Array): NiftiImage {
  const layout = readNiftiLayout(head);
  if (head.length !== layout.voxOffset)
    throw new NiftiError(`the header bytes end at ${head.length}, not at vox_offset ${layout.voxOffset}.`);
  if (volume.length !== layout.volumeBytes)
    throw new NiftiError(`a volume needs ${layout.volumeBytes} bytes, ${volume.length} were given.`);
  const one = new Uint8Array(head.length + volume.length);
  one.set(head, 0);
  one.set(volume, head.length);
  setNiftiVolumeCount(one, 1);
  return decodeNifti(one);
}

function dataBytes(data: Float32Array | Int16Array | Uint8Array): Uint8Array {
  const hostLittle = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
  const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (hostLittle || data.BYTES_PER_ELEMENT === 1) return bytes;
  const out = bytes.slice();
  const n = data.BYTES_PER_ELEMENT;
  for (let i = 0; i < out.length; i += n) out.subarray(i, i + n).reverse();
  return out;
}

function typeOf(data: Float32Array | Int16Array | Uint8Array): NiftiWriteType {
  if (data instanceof Float32Array) return 'float32';
  if (data instanceof Int16Array) return 'int16';
  return 'uint8';
}

export interface Nifti1VolumeInput {
  dims: [number, number, number];
  affine: number[];
  tr: number;
  data: Float32Array | Int16Array | Uint8Array;
  description?: string;
}

export interface NiftiSeriesInput {
  dims: [number, number, number];
  affine: number[];
  tr: number;
  volumes: (Float32Array | Int16Array | Uint8Array)[];
  description?: string;
}

/** A single-volume NIfTI-1 file (.nii bytes), the protocol's volume payload: header + extension flag, voxels at 352. */
export function encodeNifti1Volume(v: Nifti1VolumeInput): Uint8Array {
  return encodeNiftiVolume(v, 'nifti1');
}

/** A single-volume .nii of either version (voxels at 352 or 544). */
export function encodeNiftiVolume(v: Nifti1VolumeInput, version: NiftiVersion): Uint8Array {
  const n = v.dims[0] * v.dims[1] * v.dims[2];
  if (v.data.length !== n)
    throw new NiftiError(`data holds ${v.data.length} voxels but dims ${v.dims.join('×')} need ${n}.`);
  const header = niftiHeader({
    dims: v.dims,
    affine: v.affine,
    tr: v.tr,
    datatype: typeOf(v.data),
    description: v.description,
    version,
  });
  const out = new Uint8Array(header.length + v.data.byteLength);
  out.set(header, 0);
  out.set(dataBytes(v.data), header.length);
  return out;
}

/** A 4-D NIfTI-1 file from equally shaped volumes (all of one typed-array type). */
export function encodeNifti1Series(s: NiftiSeriesInput): Uint8Array {
  return encodeNiftiSeries(s, 'nifti1');
}

/** A 4-D .nii of either version from equally shaped volumes (all of one typed-array type). */
export function encodeNiftiSeries(s: NiftiSeriesInput, version: NiftiVersion): Uint8Array {
  if (s.volumes.length === 0) throw new NiftiError('a series needs at least one volume.');
  const n = s.dims[0] * s.dims[1] * s.dims[2];
  const type = typeOf(s.volumes[0]);
  for (const [i, v] of s.volumes.entries()) {
    if (v.length !== n)
      throw new NiftiError(`volume ${i} holds ${v.length} voxels but dims ${s.dims.join('×')} need ${n}.`);
    if (typeOf(v) !== type)
      throw new NiftiError(`volume ${i} is ${typeOf(v)} but volume 0 is ${type}; all volumes must share one type.`);
  }
  const header = niftiHeader({
    dims: [...s.dims, s.volumes.length],
    affine: s.affine,
    tr: s.tr,
    datatype: type,
    description: s.description,
    version,
  });
  const volBytes = s.volumes[0].byteLength;
  const out = new Uint8Array(header.length + volBytes * s.volumes.length);
  out.set(header, 0);
  s.volumes.forEach((v, i) => out.set(dataBytes(v), header.length + i * volBytes));
  return out;
}
