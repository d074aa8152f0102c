// NIfTI-1 and NIfTI-2 headers the way nibabel models them (Nifti1Header, Nifti2Header): one declarative description
// per version (field name, byte offset, type, count, as nibabel's header dtype), and one reader and one writer driven
// by it. Every NIfTI header read or written in src/ goes through here, so no other file knows a byte offset.

/** A NIfTI file that cannot be read or a header that cannot be written; the message is one sentence saying what is wrong. */
export class NiftiError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NiftiError';
  }
}

export type NiftiVersion = 'nifti1' | 'nifti2';
export type FieldType = 'int8' | 'uint8' | 'int16' | 'int32' | 'int64' | 'float32' | 'float64' | 'char';

export interface FieldSpec {
  readonly name: string;
  readonly offset: number;
  readonly type: FieldType;
  /** Elements (for 'char': bytes of the string). */
  readonly count: number;
}

/** nibabel's Nifti1Header dtype (348 bytes; the Analyze leftovers data_type … glmin included). */
export const NIFTI1_FIELDS = [
  { name: 'sizeof_hdr', offset: 0, type: 'int32', count: 1 },
  { name: 'data_type', offset: 4, type: 'char', count: 10 },
  { name: 'db_name', offset: 14, type: 'char', count: 18 },
  { name: 'extents', offset: 32, type: 'int32', count: 1 },
  { name: 'session_error', offset: 36, type: 'int16', count: 1 },
  { name: 'regular', offset: 38, type: 'char', count: 1 },
  { name: 'dim_info', offset: 39, type: 'uint8', count: 1 },
  { name: 'dim', offset: 40, type: 'int16', count: 8 },
  { name: 'intent_p1', offset: 56, type: 'float32', count: 1 },
  { name: 'intent_p2', offset: 60, type: 'float32', count: 1 },
  { name: 'intent_p3', offset: 64, type: 'float32', count: 1 },
  { name: 'intent_code', offset: 68, type: 'int16', count: 1 },
  { name: 'datatype', offset: 70, type: 'int16', count: 1 },
  { name: 'bitpix', offset: 72, type: 'int16', count: 1 },
  { name: 'slice_start', offset: 74, type: 'int16', count: 1 },
  { name: 'pixdim', offset: 76, type: 'float32', count: 8 },
  { name: 'vox_offset', offset: 108, type: 'float32', count: 1 },
  { name: 'scl_slope', offset: 112, type: 'float32', count: 1 },
  { name: 'scl_inter', offset: 116, type: 'float32', count: 1 },
  { name: 'slice_end', offset: 120, type: 'int16', count: 1 },
  { name: 'slice_code', offset: 122, type: 'uint8', count: 1 },
  { name: 'xyzt_units', offset: 123, type: 'uint8', count: 1 },
  { name: 'cal_max', offset: 124, type: 'float32', count: 1 },
  { name: 'cal_min', offset: 128, type: 'float32', count: 1 },
  { name: 'slice_duration', offset: 132, type: 'float32', count: 1 },
  { name: 'toffset', offset: 136, type: 'float32', count: 1 },
  { name: 'glmax', offset: 140, type: 'int32', count: 1 },
  { name: 'glmin', offset: 144, type: 'int32', count: 1 },
  { name: 'descrip', offset: 148, type: 'char', count: 80 },
  { name: 'aux_file', offset: 228, type: 'char', count: 24 },
  { name: 'qform_code', offset: 252, type: 'int16', count: 1 },
  { name: 'sform_code', offset: 254, type: 'int16', count: 1 },
  { name: 'quatern_b', offset: 256, type: 'float32', count: 1 },
  { name: 'quatern_c', offset: 260, type: 'float32', count: 1 },
  { name: 'quatern_d', offset: 264, type: 'float32', count: 1 },
  { name: 'qoffset_x', offset: 268, type: 'float32', count: 1 },
  { name: 'qoffset_y', offset: 272, type: 'float32', count: 1 },
  { name: 'qoffset_z', offset: 276, type: 'float32', count: 1 },
  { name: 'srow_x', offset: 280, type: 'float32', count: 4 },
  { name: 'srow_y', offset: 296, type: 'float32', count: 4 },
  { name: 'srow_z', offset: 312, type: 'float32', count: 4 },
  { name: 'intent_name', offset: 328, type: 'char', count: 16 },
  { name: 'magic', offset: 344, type: 'char', count: 4 },
] as const satisfies readonly FieldSpec[];

/** nibabel's Nifti2Header dtype (540 bytes): the NIfTI-1 fields widened to 64 bits and reordered. */
export const NIFTI2_FIELDS = [
  { name: 'sizeof_hdr', offset: 0, type: 'int32', count: 1 },
  { name: 'magic', offset: 4, type: 'char', count: 4 },
  { name: 'eol_check', offset: 8, type: 'int8', count: 4 },
  { name: 'datatype', offset: 12, type: 'int16', count: 1 },
  { name: 'bitpix', offset: 14, type: 'int16', count: 1 },
  { name: 'dim', offset: 16, type: 'int64', count: 8 },
  { name: 'intent_p1', offset: 80, type: 'float64', count: 1 },
  { name: 'intent_p2', offset: 88, type: 'float64', count: 1 },
  { name: 'intent_p3', offset: 96, type: 'float64', count: 1 },
  { name: 'pixdim', offset: 104, type: 'float64', count: 8 },
  { name: 'vox_offset', offset: 168, type: 'int64', count: 1 },
  { name: 'scl_slope', offset: 176, type: 'float64', count: 1 },
  { name: 'scl_inter', offset: 184, type: 'float64', count: 1 },
  { name: 'cal_max', offset: 192, type: 'float64', count: 1 },
  { name: 'cal_min', offset: 200, type: 'float64', count: 1 },
  { name: 'slice_duration', offset: 208, type: 'float64', count: 1 },
  { name: 'toffset', offset: 216, type: 'float64', count: 1 },
  { name: 'slice_start', offset: 224, type: 'int64', count: 1 },
  { name: 'slice_end', offset: 232, type: 'int64', count: 1 },
  { name: 'descrip', offset: 240, type: 'char', count: 80 },
  { name: 'aux_file', offset: 320, type: 'char', count: 24 },
  { name: 'qform_code', offset: 344, type: 'int32', count: 1 },
  { name: 'sform_code', offset: 348, type: 'int32', count: 1 },
  { name: 'quatern_b', offset: 352, type: 'float64', count: 1 },
  { name: 'quatern_c', offset: 360, type: 'float64', count: 1 },
  { name: 'quatern_d', offset: 368, type: 'float64', count: 1 },
  { name: 'qoffset_x', offset: 376, type: 'float64', count: 1 },
  { name: 'qoffset_y', offset: 384, type: 'float64', count: 1 },
  { name: 'qoffset_z', offset: 392, type: 'float64', count: 1 },
  { name: 'srow_x', offset: 400, type: 'float64', count: 4 },
  { name: 'srow_y', offset: 432, type: 'float64', count: 4 },
  { name: 'srow_z', offset: 464, type: 'float64', count: 4 },
  { name: 'slice_code', offset: 496, type: 'int32', count: 1 },
  { name: 'xyzt_units', offset: 500, type: 'int32', count: 1 },
  { name: 'intent_code', offset: 504, type: 'int32', count: 1 },
  { name: 'intent_name', offset: 508, type: 'char', count: 16 },
  { name: 'dim_info', offset: 524, type: 'uint8', count: 1 },
  { name: 'unused_str', offset: 525, type: 'char', count: 15 },
] as const satisfies readonly FieldSpec[];

type ValueOf<F extends FieldSpec> = F['type'] extends 'char' ? string : F['count'] extends 1 ? number : number[];
/** The header as values, typed from its description: a 'char' field is a string, a counted field an array. */
export type HeaderFields<T extends readonly FieldSpec[]> = { -readonly [F in T[number] as F['name']]: ValueOf<F> };
export type Nifti1Fields = HeaderFields<typeof NIFTI1_FIELDS>;
export type Nifti2Fields = HeaderFields<typeof NIFTI2_FIELDS>;

export type NiftiHeader =
  | { version: 'nifti1'; littleEndian: boolean; fields: Nifti1Fields }
  | { version: 'nifti2'; littleEndian: boolean; fields: Nifti2Fields };

interface Layout {
  /** sizeof_hdr. */
  size: number;
  /** Single-file magic, and the .hdr/.img pair's. */
  magic: string;
  pairMagic: string;
  label: string;
  fields: readonly FieldSpec[];
}

export const NIFTI_LAYOUTS: Record<NiftiVersion, Layout> = {
  nifti1: { size: 348, magic: 'n+1', pairMagic: 'ni1', label: 'NIfTI-1', fields: NIFTI1_FIELDS },
  nifti2: { size: 540, magic: 'n+2', pairMagic: 'ni2', label: 'NIfTI-2', fields: NIFTI2_FIELDS },
};

/** Bytes that hold either version's header. */
export const NIFTI_MAX_HEADER_BYTES = Math.max(NIFTI_LAYOUTS.nifti1.size, NIFTI_LAYOUTS.nifti2.size);

/** Where a single-file writer puts the voxels: after the header and the 4-byte extension flag (352, 544). */
export function niftiVoxOffset(version: NiftiVersion): number {
  return NIFTI_LAYOUTS[version].size + 4;
}

const BYTES: Record<FieldType, number> = {
  int8: 1,
  uint8: 1,
  int16: 2,
  int32: 4,
  int64: 8,
  float32: 4,
  float64: 8,
  char: 1,
};
const INT_RANGE: Partial<Record<FieldType, [number, number]>> = {
  int8: [-128, 127],
  uint8: [0, 255],
  int16: [-32768, 32767],
  int32: [-(2 ** 31), 2 ** 31 - 1],
  int64: [Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER],
};

/** The version and byte order that sizeof_hdr announces, or undefined when it announces neither header. */
export function niftiVersionOf(bytes: Uint8Array): { version: NiftiVersion; littleEndian: boolean } | undefined {
  if (bytes.length < 4) return undefined;
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const le = dv.getInt32(0, true),
    be = dv.getInt32(0, false);
  for (const version of ['nifti1', 'nifti2'] as const) {
    const size = NIFTI_LAYOUTS[version].size;
    if (le === size) return { version, littleEndian: true };
    if (be === size) return { version, littleEndian: false };
  }
  return undefined;
}

/** A 'char' field as numpy's S dtype reads it: the bytes (latin-1) with trailing NULs dropped. */
function readChars(bytes: Uint8Array, f: FieldSpec): string {
  let end = f.offset + f.count;
  while (end > f.offset && bytes[end - 1] === 0) end--;
  return String.fromCharCode(...bytes.subarray(f.offset, end));
}

function readValue(dv: DataView, type: FieldType, at: number, le: boolean): number {
  switch (type) {
    case 'int8':
      return dv.getInt8(at);
    case 'uint8':
      return dv.getUint8(at);
    case 'int16':
      return dv.getInt16(at, le);
    case 'int32':
      return dv.getInt32(at, le);
    case 'int64':
      return Number(dv.getBigInt64(at, le));
    case 'float32':
      return dv.getFloat32(at, le);
    case 'float64':
      return dv.getFloat64(at, le);
    case 'char':
      return dv.getUint8(at);
  }
}

/**
 * Reads the header at the start of `bytes` (uncompressed), either version, either byte order, every field of its
 * description. Throws NiftiError (one sentence) when sizeof_hdr names neither version or the bytes stop short of it.
 * The magic is not judged here: the image reader decides what it accepts.
 */
export function readNiftiHeader(bytes: Uint8Array): NiftiHeader {
  if (bytes.length < 4) throw new NiftiError(`file holds ${bytes.length} bytes, too few for a NIfTI header.`);
  const v = niftiVersionOf(bytes);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (!v) {
    throw new NiftiError(
      `not a NIfTI file: sizeof_hdr is ${dv.getInt32(0, true)}, expected ${NIFTI_LAYOUTS.nifti1.size} (NIfTI-1) or ${NIFTI_LAYOUTS.nifti2.size} (NIfTI-2).`,
    );
  }
  const layout = NIFTI_LAYOUTS[v.version];
  if (bytes.length < layout.size)
    throw new NiftiError(`file holds ${bytes.length} bytes but a ${layout.label} header needs ${layout.size}.`);
  const fields: Record<string, number | number[] | string> = {};
  for (const f of layout.fields) {
    if (f.type === 'char') {
      fields[f.name] = readChars(bytes, f);
    } else if (f.count === 1) {
      fields[f.name] = readValue(dv, f.type, f.offset, v.littleEndian);
    } else {
      fields[f.name] = Array.from({ length: f.count }, (_, i) =>
        readValue(dv, f.type, f.offset + i * BYTES[f.type], v.littleEndian),
      );
    }
  }
  return { version: v.version, littleEndian: v.littleEndian, fields } as NiftiHeader;
}

function writeValue(dv: DataView, f: FieldSpec, index: number, value: number, le: boolean): void {
  const at = f.offset + index * BYTES[f.type];
  const range = INT_RANGE[f.type];
  if (range && !(Number.isInteger(value) && value >= range[0] && value <= range[1])) {
    const name = f.count > 1 ? `${f.name}[${index}]` : f.name;
    throw new NiftiError(
      `header field ${name} = ${value} does not fit its ${f.type} slot; use integers in ${range[0]}..${range[1]}${f.name === 'dim' && f.type === 'int16' ? ' (or write NIfTI-2)' : ''}.`,
    );
  }
  switch (f.type) {
    case 'int8':
      dv.setInt8(at, value);
      break;
    case 'uint8':
      dv.setUint8(at, value);
      break;
    case 'int16':
      dv.setInt16(at, value, le);
      break;
    case 'int32':
      dv.setInt32(at, value, le);
      break;
    case 'int64':
      dv.setBigInt64(at, BigInt(value), le);
      break;
    case 'float32':
      dv.setFloat32(at, value, le);
      break;
    case 'float64':
      dv.setFloat64(at, value, le);
      break;
    case 'char':
      dv.setUint8(at, value);
      break;
  }
}

/**
 * Writes every field of the header's description into `into` (default a fresh buffer of the header's size), in the
 * given byte order (little-endian unless told). Throws NiftiError when a value does not fit its field.
 */
export function writeNiftiHeader(
  h: Pick<NiftiHeader, 'version' | 'fields'>,
  littleEndian = true,
  into?: Uint8Array,
): Uint8Array {
  const layout = NIFTI_LAYOUTS[h.version];
  const out = into ?? new Uint8Array(layout.size);
  if (out.length < layout.size)
    throw new NiftiError(`a ${layout.label} header needs ${layout.size} bytes, the buffer holds ${out.length}.`);
  const dv = new DataView(out.buffer, out.byteOffset, out.byteLength);
  const fields = h.fields as Record<string, number | number[] | string>;
  for (const f of layout.fields) {
    const v = fields[f.name];
    if (f.type === 'char') {
      const s = String(v ?? '');
      if (s.length > f.count)
        throw new NiftiError(
          `header field ${f.name} holds at most ${f.count} characters ("${s.slice(0, 20)}…" has ${s.length}).`,
        );
      out.fill(0, f.offset, f.offset + f.count);
      for (let i = 0; i < s.length; i++) {
        const c = s.charCodeAt(i);
        out[f.offset + i] = c > 0xff ? 0x3f : c;
      }
    } else if (f.count === 1) {
      if (typeof v !== 'number') throw new NiftiError(`header field ${f.name} must be a number.`);
      writeValue(dv, f, 0, v, littleEndian);
    } else {
      if (!Array.isArray(v) || v.length !== f.count)
        throw new NiftiError(`header field ${f.name} must hold ${f.count} numbers.`);
      v.forEach((x, i) => writeValue(dv, f, i, x, littleEndian));
    }
  }
  return out;
}

/** A header of the version with every field zero or empty, except sizeof_hdr, the single-file magic, vox_offset and
 *  what nibabel writes by default (NIfTI-1 `regular` "r", NIfTI-2 `eol_check` \r\n\x1a\n). */
export function blankNiftiHeader(version: 'nifti1'): { version: 'nifti1'; fields: Nifti1Fields };
export function blankNiftiHeader(version: 'nifti2'): { version: 'nifti2'; fields: Nifti2Fields };
export function blankNiftiHeader(version: NiftiVersion): Pick<NiftiHeader, 'version' | 'fields'>;
export function blankNiftiHeader(version: NiftiVersion): Pick<NiftiHeader, 'version' | 'fields'> {
  const layout = NIFTI_LAYOUTS[version];
  const fields: Record<string, number | number[] | string> = {};
  for (const f of layout.fields)
    fields[f.name] = f.type === 'char' ? '' : f.count === 1 ? 0 : new Array<number>(f.count).fill(0);
  fields.sizeof_hdr = layout.size;
  fields.magic = layout.magic;
  fields.vox_offset = niftiVoxOffset(version);
  if (version === 'nifti1') fields.regular = 'r';
  else fields.eol_check = [13, 10, 26, 10];
  return { version, fields } as Pick<NiftiHeader, 'version' | 'fields'>;
}

/** The magic of the header whose sizeof_hdr starts `bytes`, or undefined while the bytes stop before it (or no header). */
export function peekNiftiMagic(bytes: Uint8Array): string | undefined {
  const v = niftiVersionOf(bytes);
  const f = v && NIFTI_LAYOUTS[v.version].fields.find((x) => x.name === 'magic');
  if (!f || bytes.length < f.offset + f.count) return undefined;
  return readChars(bytes, f);
}

/** Edits the header at the start of `bytes` in place, keeping its version and byte order (a growing file's dim[4]). */
export function updateNiftiHeader(bytes: Uint8Array, edit: (h: NiftiHeader) => void): NiftiHeader {
  const h = readNiftiHeader(bytes);
  edit(h);
  writeNiftiHeader(h, h.littleEndian, bytes);
  return h;
}
