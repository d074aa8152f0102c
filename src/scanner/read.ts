// One entry point for the bridge and `convert`: detect the format, prove the file complete, decode it.
import { existsSync, readFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { DicomError, hasDicmPreamble, imageType, parseDicomBytes, str } from './dicom.js';
import { isEnhanced, readEnhanced } from './enhanced.js';
import { csaImageHeader, isMosaic, readMosaic } from './mosaic.js';
import { NiftiError, decodeNifti, inflateNifti, isGzip, looksLikeNifti, niftiCompleteness } from './nifti.js';
import { peekNiftiMagic } from './niftiHeader.js';
import { ParRecError, looksLikePar, readParRec, type ParRecScaling } from './parrec.js';
import { readSlice } from './slices.js';
import type { ReadResult, ScannerVolume } from './types.js';

export type ScannerFormat = 'auto' | 'dicom' | 'nifti' | 'parrec';

export interface ReadOptions {
  format?: ScannerFormat;
  /** Cap on (decompressed) NIfTI bytes; default 1 GiB. */
  maxBytes?: number;
  /** Name used for volumeIndex when bytes are passed instead of a path. */
  name?: string;
  /** PAR/REC: the REC bytes when the PAR is passed as bytes (a PAR path finds its REC beside it). */
  rec?: Uint8Array;
  /** PAR/REC scaling: 'dv' (console values, default, as nibabel) or 'fp' (floating point values). */
  parrecScaling?: ParRecScaling;
}

/**
 * The trailing number of a file name: 001_000007_000042.dcm → 42, vol0012.nii.gz → 12. Runs of more than 9 digits
 * (UID-style names like 1.3.12.2.1107….30000019112112372496800000014.dcm) are not volume numbers.
 */
export function nameIndex(name: string | undefined): number | undefined {
  if (!name) return undefined;
  const m = /(?:^|\D)(\d{1,9})(?:\.(?:dcm|ima|nii|img|par|rec))?(?:\.gz)?$/i.exec(basename(name));
  return m ? Number(m[1]) : undefined;
}

/** The series number in a Siemens export name, <session>_<series>_<instance>: 001_000007_000042.dcm → 7. */
export function nameSeries(name: string | undefined): number | undefined {
  if (!name) return undefined;
  const m = /^\d+_(\d{1,9})_\d{1,9}(?:\.(?:dcm|ima))?$/i.exec(basename(name));
  return m ? Number(m[1]) : undefined;
}

function detect(bytes: Uint8Array, name: string | undefined): 'dicom' | 'nifti' | 'parrec' | undefined {
  if (hasDicmPreamble(bytes)) return 'dicom';
  if (looksLikePar(bytes) || (name && /\.par$/i.test(name))) return 'parrec';
  if (isGzip(bytes)) return 'nifti';
  if (looksLikeNifti(bytes)) {
    // sizeof_hdr alone is weak evidence (a DICOM preamble can hold anything): also want the magic once it is there
    const magic = peekNiftiMagic(bytes);
    if (magic === undefined || /^n[+i]/.test(magic)) return 'nifti';
  }
  if (name && /\.nii(\.gz)?$/i.test(name)) return 'nifti';
  if (name && /\.(dcm|ima)$/i.test(name)) return 'dicom';
  return undefined;
}

/**
 * Reads a scanner file (path or bytes). 'incomplete' means the file is still being written and is worth retrying;
 * 'invalid' means it will never decode; both carry one sentence. Per-slice DICOMs come back as `slices` (volumes
 * empty): feed them to a SliceAssembler.
 */
export function readScannerFile(input: string | Uint8Array, opts: ReadOptions = {}): ReadResult {
  const name = typeof input === 'string' ? input : opts.name;
  let bytes: Uint8Array;
  if (typeof input === 'string') {
    try {
      bytes = readFileSync(input);
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      if (e.code === 'ENOENT') return { status: 'incomplete', reason: `${input} does not exist (yet).` };
      return { status: 'invalid', reason: `${input} cannot be read (${e.code ?? e.message}).` };
    }
  } else bytes = input;
  if (name && /\.rec$/i.test(name) && (opts.format ?? 'auto') !== 'dicom' && opts.format !== 'nifti') {
    return {
      status: 'invalid',
      reason: `${basename(name)} is a Philips REC file, which holds only pixels; read the .PAR beside it.`,
    };
  }
  let format = opts.format ?? 'auto';
  if (format === 'auto') {
    const d = detect(bytes, name);
    if (!d) {
      if (bytes.length < 132)
        return {
          status: 'incomplete',
          reason: `only ${bytes.length} bytes are there, too few to tell DICOM from NIfTI.`,
        };
      return {
        status: 'invalid',
        reason:
          'neither DICOM (no "DICM" at byte 128) nor NIfTI (no 348/540 header size with its magic, not gzip), and not a Philips PAR.',
      };
    }
    format = d;
  }
  const index = nameIndex(name);
  try {
    if (format === 'nifti') return readNifti(bytes, opts.maxBytes, index);
    if (format === 'parrec') return readPar(bytes, typeof input === 'string' ? input : undefined, opts, index);
    return readDicom(bytes, index);
  } catch (err) {
    if (err instanceof ParRecError) return { status: err.status, reason: err.message };
    if (err instanceof DicomError) return { status: err.status, reason: err.message };
    if (err instanceof NiftiError) return { status: 'invalid', reason: err.message };
    throw err;
  }
}

function readNifti(bytes: Uint8Array, maxBytes: number | undefined, index: number | undefined): ReadResult {
  // inflate once; completeness and decoding then work on the raw bytes
  const { data: raw, truncated } = inflateNifti(bytes, { maxBytes, partialOk: true });
  if (truncated)
    return { status: 'incomplete', reason: `the gzip stream has no end yet (${raw.length} bytes inflated so far).` };
  const c = niftiCompleteness(raw, { maxBytes });
  if (!c.complete) return { status: 'incomplete', reason: c.reason ?? 'the NIfTI file is not complete yet.' };
  const img = decodeNifti(raw, { maxBytes });
  const [x, y, z] = img.dims;
  const n = img.dims[3] ?? 1;
  const volumes: ScannerVolume[] = [];
  for (let t = 0; t < n; t++) {
    volumes.push({
      dims: [x, y, z],
      affine: img.affine.slice(),
      voxelSize: img.voxelSize.slice(),
      tr: img.tr > 0 ? img.tr : undefined,
      // a 4-D file's volumes are numbered by position; a single volume takes the number in its name
      volumeIndex: n > 1 ? t : index,
      source: 'nifti',
      data: img.volume(t),
    });
  }
  return { status: 'complete', format: 'nifti', volumes };
}

/** The REC beside a PAR: same name, extension .REC in any case. */
export function recBeside(parPath: string): string | undefined {
  const stem = basename(parPath).replace(/\.par$/i, '');
  for (const ext of ['.REC', '.rec', '.Rec']) {
    const p = join(dirname(parPath), stem + ext);
    if (existsSync(p)) return p;
  }
  return undefined;
}

function readPar(
  bytes: Uint8Array,
  path: string | undefined,
  opts: ReadOptions,
  index: number | undefined,
): ReadResult {
  let rec = opts.rec;
  if (!rec) {
    const recPath = path ? recBeside(path) : undefined;
    if (!recPath)
      return {
        status: 'incomplete',
        reason: `the REC file beside ${path ? basename(path) : 'the PAR'} is not there (yet).`,
      };
    try {
      rec = readFileSync(recPath);
    } catch (err) {
      return {
        status: 'incomplete',
        reason: `the REC file ${basename(recPath)} cannot be read yet (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}).`,
      };
    }
  }
  const r = readParRec(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1'), rec, {
    scaling: opts.parrecScaling,
    nameIndex: index,
  });
  return {
    status: 'complete',
    format: 'parrec',
    volumes: r.volumes,
    warnings: r.warnings.length ? r.warnings : undefined,
  };
}

/**
 * Whether a DICOM says it is EPI: ScanningSequence (0018,0020) holds EP, or does not; without it, ImageType LOCALIZER
 * says no. Undefined when the file does not say (such series are streamed).
 */
function dicomEpi(p: ReturnType<typeof parseDicomBytes>): boolean | undefined {
  const seq = str(p.ds, 'x00180020');
  if (seq)
    return seq
      .toUpperCase()
      .split('\\')
      .map((x) => x.trim())
      .includes('EP');
  return imageType(p.ds).includes('LOCALIZER') ? false : undefined;
}

function readDicom(bytes: Uint8Array, index: number | undefined): ReadResult {
  const p = parseDicomBytes(bytes);
  const epi = dicomEpi(p);
  const r = readDicomKind(p, index);
  if (epi !== undefined && r.status === 'complete') {
    for (const v of r.volumes) v.epi = epi;
    for (const s of r.slices ?? []) s.epi = epi;
  }
  return r;
}

function readDicomKind(p: ReturnType<typeof parseDicomBytes>, index: number | undefined): ReadResult {
  if (isEnhanced(p)) {
    const volumes = readEnhanced(p);
    if (index !== undefined && volumes.length === 1) volumes[0].volumeIndex = index;
    return { status: 'complete', format: 'dicom-enhanced', volumes };
  }
  if (p.frames > 1)
    throw new DicomError(
      `a ${p.frames}-frame DICOM without per-frame functional groups is not an MR image series this reader knows.`,
      'invalid',
    );
  const csa = csaImageHeader(p);
  if (isMosaic(p, csa)) {
    const v = readMosaic(p, csa);
    if (index !== undefined) v.volumeIndex = index;
    return { status: 'complete', format: 'dicom-mosaic', volumes: [v] };
  }
  const s = readSlice(p);
  s.nameIndex = index;
  return { status: 'complete', format: 'dicom-slices', volumes: [], slices: [s] };
}

/** Bridge order: series number, then volume index (name number / acquisition index), then acquisition time. */
export function compareVolumes(a: ScannerVolume, b: ScannerVolume): number {
  const k = (v: number | undefined) => (v === undefined ? Infinity : v);
  return (
    k(a.seriesNumber) - k(b.seriesNumber) ||
    k(a.volumeIndex) - k(b.volumeIndex) ||
    k(a.acquisitionTime) - k(b.acquisitionTime)
  );
}
