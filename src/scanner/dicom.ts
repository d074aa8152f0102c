// DICOM Part 10 parsing (dicom-parser), the completeness proof, and the pixel/geometry fields every DICOM reader needs.
import dicomParser from 'dicom-parser';
import type { DataSet, Element } from 'dicom-parser';

/** A DICOM file that is not (yet) usable: 'incomplete' means retry later, 'invalid' means it never will be. */
export class DicomError extends Error {
  constructor(
    message: string,
    readonly status: 'incomplete' | 'invalid',
  ) {
    super(message);
    this.name = 'DicomError';
  }
}

const UNCOMPRESSED: Record<string, { little: boolean; explicit: boolean }> = {
  '1.2.840.10008.1.2': { little: true, explicit: false },
  '1.2.840.10008.1.2.1': { little: true, explicit: true },
  '1.2.840.10008.1.2.2': { little: false, explicit: true },
};

const COMPRESSED_NAMES: [RegExp, string][] = [
  [/^1\.2\.840\.10008\.1\.2\.1\.99$/, 'Deflated Explicit VR'],
  [/^1\.2\.840\.10008\.1\.2\.4\.(50|51|57|70)$/, 'JPEG'],
  [/^1\.2\.840\.10008\.1\.2\.4\.(80|81)$/, 'JPEG-LS'],
  [/^1\.2\.840\.10008\.1\.2\.4\.(90|91|92|93)$/, 'JPEG 2000'],
  [/^1\.2\.840\.10008\.1\.2\.4\.20[1-3]$/, 'HTJ2K'],
  [/^1\.2\.840\.10008\.1\.2\.5$/, 'RLE'],
  [/^1\.2\.840\.10008\.1\.2\.4\.10[0-8]$/, 'MPEG'],
];

// Sequences we read; implicit-VR files do not say which elements are sequences, so we tell dicom-parser.
const SEQUENCE_TAGS = new Set([
  'x52009229',
  'x52009230',
  'x00209113',
  'x00209116',
  'x00289110',
  'x00209111',
  'x00289145',
  'x00189112',
  'x00209071',
  'x00089124',
  'x00209221',
  'x00209222',
]);

export function hasDicmPreamble(bytes: Uint8Array): boolean {
  return (
    bytes.length >= 132 && bytes[128] === 0x44 && bytes[129] === 0x49 && bytes[130] === 0x43 && bytes[131] === 0x4d
  );
}

/** Reads the file-meta group (always explicit VR little endian) for the transfer syntax, without dicom-parser. */
function metaTransferSyntax(bytes: Uint8Array): string | undefined | 'short' {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let p = 132;
  for (;;) {
    if (p + 8 > bytes.length) return 'short';
    const group = dv.getUint16(p, true),
      elem = dv.getUint16(p + 2, true);
    if (group !== 0x0002) return undefined;
    const vr = String.fromCharCode(bytes[p + 4], bytes[p + 5]);
    let len: number, off: number;
    if (['OB', 'OW', 'OF', 'SQ', 'UT', 'UN'].includes(vr)) {
      if (p + 12 > bytes.length) return 'short';
      len = dv.getUint32(p + 8, true);
      off = p + 12;
    } else {
      len = dv.getUint16(p + 6, true);
      off = p + 8;
    }
    if (off + len > bytes.length) return 'short';
    if (elem === 0x0010) {
      let s = '';
      for (let i = off; i < off + len; i++) s += String.fromCharCode(bytes[i]);
      return s.replace(/[\0 ]+$/, '');
    }
    p = off + len;
  }
}

export interface ParsedDicom {
  ds: DataSet;
  transferSyntax: string;
  littleEndian: boolean;
  rows: number;
  cols: number;
  frames: number;
  bitsAllocated: number;
  bitsStored: number;
  signed: boolean;
  pixelOffset: number;
  pixelBytes: number;
  bytes: Uint8Array;
}

/**
 * Parses a DICOM Part 10 file and proves it complete: DICM preamble, an uncompressed transfer syntax, and a PixelData
 * element holding rows·cols·bitsAllocated/8·frames bytes that are all present. Throws DicomError('incomplete') for a
 * file that is still being written and DicomError('invalid') for one that will never be readable.
 */
export function parseDicomBytes(bytes: Uint8Array): ParsedDicom {
  if (bytes.length < 132)
    throw new DicomError(`only ${bytes.length} bytes are there, fewer than the 132-byte DICOM preamble.`, 'incomplete');
  if (!hasDicmPreamble(bytes))
    throw new DicomError('not a DICOM Part 10 file: no "DICM" marker at byte 128.', 'invalid');
  const ts = metaTransferSyntax(bytes);
  if (ts === 'short')
    throw new DicomError('the DICOM file-meta header is cut short (the file is still being written).', 'incomplete');
  if (!ts) throw new DicomError('the DICOM file-meta header has no TransferSyntaxUID (0002,0010).', 'invalid');
  const syntax = UNCOMPRESSED[ts];
  if (!syntax) {
    const name = COMPRESSED_NAMES.find(([re]) => re.test(ts))?.[1];
    throw new DicomError(
      name
        ? `compressed transfer syntax ${ts} (${name}) is not supported; export uncompressed DICOM (implicit or explicit VR) from the scanner.`
        : `transfer syntax ${ts} is not supported; export uncompressed DICOM (implicit or explicit VR) from the scanner.`,
      'invalid',
    );
  }
  let ds: DataSet;
  try {
    ds = dicomParser.parseDicom(bytes, {
      vrCallback: (tag: string) => (SEQUENCE_TAGS.has(tag) ? 'SQ' : undefined),
    } as dicomParser.ParseDicomOptions);
  } catch (err) {
    const msg = String((err as { exception?: unknown })?.exception ?? (err as Error)?.message ?? err);
    if (/overrun|past (the )?end|beyond|eof|maxPosition|missing required meta header/i.test(msg)) {
      throw new DicomError(
        `the DICOM data set ends early (${msg.replace(/^dicomParser[.:]\w+: /, '')}); the file is truncated or still being written.`,
        'incomplete',
      );
    }
    throw new DicomError(`the DICOM data set is corrupt (${msg.replace(/^dicomParser[.:]\w+: /, '')}).`, 'invalid');
  }
  const rows = ds.uint16('x00280010'),
    cols = ds.uint16('x00280011');
  const px: Element | undefined = ds.elements.x7fe00010;
  if (!px) {
    if (ds.elements.x7fe00008 || ds.elements.x7fe00009)
      throw new DicomError('float or double pixel data is not supported; export integer pixels.', 'invalid');
    if (!rows || !cols) throw new DicomError('the DICOM file holds no image (no Rows/Columns/PixelData).', 'invalid');
    throw new DicomError(
      'the DICOM file has no PixelData element yet (the file is truncated or still being written).',
      'incomplete',
    );
  }
  if (!rows || !cols) throw new DicomError('the DICOM image has no Rows or Columns.', 'invalid');
  if (px.encapsulatedPixelData)
    throw new DicomError(
      'the pixel data is encapsulated (compressed), which is not supported; export uncompressed DICOM.',
      'invalid',
    );
  const samples = ds.uint16('x00280002') ?? 1;
  if (samples !== 1)
    throw new DicomError(
      `the image has ${samples} samples per pixel (colour), but only greyscale is supported.`,
      'invalid',
    );
  const bitsAllocated = ds.uint16('x00280100') ?? 16;
  if (![8, 16, 32].includes(bitsAllocated))
    throw new DicomError(`BitsAllocated ${bitsAllocated} is not supported (8, 16 or 32).`, 'invalid');
  const bitsStored = ds.uint16('x00280101') ?? bitsAllocated;
  const frames = Math.max(1, ds.intString('x00280008') ?? 1);
  const pixelBytes = rows * cols * frames * (bitsAllocated / 8);
  const end = px.dataOffset + pixelBytes;
  // the declared length is final even while the file grows, so a short one is corrupt rather than unfinished
  if (!px.hadUndefinedLength && px.length < pixelBytes) {
    throw new DicomError(
      `PixelData holds ${px.length} bytes but Rows×Columns×Frames×BitsAllocated/8 is ${pixelBytes}.`,
      'invalid',
    );
  }
  if (end > bytes.length) {
    throw new DicomError(
      `PixelData needs ${pixelBytes} bytes (${rows}×${cols}×${frames} × ${bitsAllocated / 8}) but only ${Math.max(0, bytes.length - px.dataOffset)} are there yet.`,
      'incomplete',
    );
  }
  return {
    ds,
    transferSyntax: ts,
    littleEndian: syntax.little,
    rows,
    cols,
    frames,
    bitsAllocated,
    bitsStored,
    signed: ds.uint16('x00280103') === 1,
    pixelOffset: px.dataOffset,
    pixelBytes,
    bytes,
  };
}

/** Raw pixel values of frame f (DICOM order: column fastest), as numbers, sign-extended from BitsStored when signed. */
export function framePixels(p: ParsedDicom, f: number): Float32Array {
  const n = p.rows * p.cols;
  const bpp = p.bitsAllocated / 8;
  const start = p.pixelOffset + f * n * bpp;
  const dv = new DataView(p.bytes.buffer, p.bytes.byteOffset + start, n * bpp);
  const out = new Float32Array(n);
  const le = p.littleEndian;
  const shift = 32 - p.bitsStored;
  const signExtend = p.signed && p.bitsStored < p.bitsAllocated;
  for (let i = 0; i < n; i++) {
    let v: number;
    if (bpp === 1) v = p.signed ? dv.getInt8(i) : dv.getUint8(i);
    else if (bpp === 2) v = p.signed ? dv.getInt16(2 * i, le) : dv.getUint16(2 * i, le);
    else v = p.signed ? dv.getInt32(4 * i, le) : dv.getUint32(4 * i, le);
    if (signExtend) v = (v << shift) >> shift;
    out[i] = v;
  }
  return out;
}

// ---------------------------------------------------------------- field helpers

export function numbers(ds: DataSet, tag: string): number[] | undefined {
  const el = ds.elements[tag];
  if (!el || el.length === 0) return undefined;
  const n = ds.numStringValues(tag) ?? 0;
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const v = ds.floatString(tag, i);
    if (v === undefined || !Number.isFinite(v)) return undefined;
    out.push(v);
  }
  return out.length ? out : undefined;
}

export function num(ds: DataSet, tag: string): number | undefined {
  const el = ds.elements[tag];
  if (!el || el.length === 0) return undefined;
  const v = ds.floatString(tag);
  return v !== undefined && Number.isFinite(v) ? v : undefined;
}

export function str(ds: DataSet, tag: string): string | undefined {
  const el = ds.elements[tag];
  if (!el || el.length === 0) return undefined;
  return ds.string(tag)?.trim() || undefined;
}

/** First item's data set of a sequence element. */
export function item(ds: DataSet | undefined, tag: string, i = 0): DataSet | undefined {
  return ds?.elements[tag]?.items?.[i]?.dataSet;
}

/** DICOM TM "HHMMSS.FFFFFF" (or "HH:MM:SS") → seconds since midnight. */
export function parseTime(tm: string | undefined): number | undefined {
  if (!tm) return undefined;
  const m = /^(\d{2}):?(\d{2})?:?(\d{2})?(\.\d+)?/.exec(tm.trim());
  if (!m) return undefined;
  return Number(m[1]) * 3600 + Number(m[2] ?? 0) * 60 + Number(m[3] ?? 0) + Number(m[4] ?? 0);
}

/** DICOM DT "YYYYMMDDHHMMSS.FFFFFF" → seconds since midnight. */
export function parseDateTimeToTime(dt: string | undefined): number | undefined {
  if (!dt || dt.length < 10) return undefined;
  return parseTime(dt.slice(8));
}

export function imageType(ds: DataSet): string[] {
  return (ds.string('x00080008') ?? '').split('\\').map((s) => s.trim().toUpperCase());
}

export function rescale(ds: DataSet | undefined): { slope: number; inter: number } | undefined {
  if (!ds) return undefined;
  const slope = num(ds, 'x00281053'),
    inter = num(ds, 'x00281052');
  if (slope === undefined && inter === undefined) return undefined;
  return { slope: slope === undefined || slope === 0 ? 1 : slope, inter: inter ?? 0 };
}

export function applyRescale(data: Float32Array, r: { slope: number; inter: number } | undefined): Float32Array {
  if (!r || (r.slope === 1 && r.inter === 0)) return data;
  for (let i = 0; i < data.length; i++) data[i] = data[i] * r.slope + r.inter;
  return data;
}

/** Raw bytes of an element (for private blobs like the Siemens CSA header). */
export function elementBytes(ds: DataSet, tag: string): Uint8Array | undefined {
  const el = ds.elements[tag];
  if (!el || !el.length) return undefined;
  return ds.byteArray.subarray(el.dataOffset, el.dataOffset + el.length);
}

/** Element tag of a private element: finds the block whose creator (gggg,00xx) equals `creator`, returns ggggxxee. */
export function privateTag(ds: DataSet, group: string, creator: string, elem: string): string | undefined {
  for (let b = 0x10; b <= 0xff; b++) {
    const bb = b.toString(16).padStart(2, '0');
    const c = str(ds, `x${group}00${bb}`);
    if (c && c.toUpperCase() === creator.toUpperCase()) return `x${group}${bb}${elem}`;
  }
  return undefined;
}
