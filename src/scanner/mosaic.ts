// Siemens classic (VB/VD/VE) mosaic: one 2-D DICOM holding all slices of a volume as tiles, row-major in spatial order.
import { csaNumbers, parseCsaHeader, type CsaTag } from './csa.js';
import {
  DicomError,
  applyRescale,
  elementBytes,
  framePixels,
  imageType,
  num,
  numbers,
  parseTime,
  privateTag,
  rescale,
  str,
  type ParsedDicom,
} from './dicom.js';
import { dot3 } from './affine.js';
import {
  normalizeOrientation,
  orientationProblem,
  putSlice,
  sliceNormal,
  stackAffine,
  voxelSizeOf,
} from './geometry.js';
import type { ScannerVolume } from './types.js';

/** The Siemens CSA image header of a file, when it has one. */
export function csaImageHeader(p: ParsedDicom): Map<string, CsaTag> | undefined {
  const tag = privateTag(p.ds, '0029', 'SIEMENS CSA HEADER', '10');
  const blob = tag ? elementBytes(p.ds, tag) : undefined;
  if (!blob) return undefined;
  try {
    return parseCsaHeader(blob);
  } catch (err) {
    throw new DicomError(`${(err as Error).message.replace(/\.$/, '')} (private tag (0029,1010)).`, 'invalid');
  }
}

/** True when the file is a Siemens mosaic (ImageType MOSAIC or a CSA NumberOfImagesInMosaic). */
export function isMosaic(p: ParsedDicom, csa: Map<string, CsaTag> | undefined): boolean {
  return (
    p.frames === 1 &&
    (imageType(p.ds).includes('MOSAIC') || (csaNumbers(csa ?? new Map(), 'NumberOfImagesInMosaic')?.[0] ?? 0) > 0)
  );
}

export function readMosaic(p: ParsedDicom, csa: Map<string, CsaTag> | undefined): ScannerVolume {
  const ds = p.ds;
  const n = csa ? csaNumbers(csa, 'NumberOfImagesInMosaic')?.[0] : undefined;
  if (!n || !Number.isInteger(n) || n < 1) {
    throw new DicomError(
      'this mosaic has no NumberOfImagesInMosaic in a Siemens CSA header (XA "mosaics" lack slice geometry); export classic mosaics or enhanced DICOM.',
      'invalid',
    );
  }
  const m = Math.ceil(Math.sqrt(n));
  // Siemens mosaics are always whole tiles; anything else is a damaged or cut-down file (nibabel refuses it too).
  if (p.rows % m !== 0 || p.cols % m !== 0) {
    throw new DicomError(
      `a ${p.rows}×${p.cols} mosaic does not split into ${m}×${m} equal tiles for its ${n} slices (NumberOfImagesInMosaic).`,
      'invalid',
    );
  }
  const r = p.rows / m,
    c = p.cols / m;
  const orientation = numbers(ds, 'x00200037');
  const op = orientationProblem(orientation);
  if (op) throw new DicomError(`${op}.`, 'invalid');
  const ps = numbers(ds, 'x00280030');
  if (!ps || ps.length !== 2 || ps.some((v) => !(v > 0)))
    throw new DicomError('PixelSpacing is missing or not two positive numbers.', 'invalid');
  const ipp = numbers(ds, 'x00200032');
  if (!ipp || ipp.length !== 3) throw new DicomError('ImagePositionPatient is missing or not 3 numbers.', 'invalid');
  const o = normalizeOrientation(orientation!);
  const rowCos = o.slice(0, 3),
    colCos = o.slice(3, 6);
  const [rowSp, colSp] = ps;
  // ImagePositionPatient is the corner of the whole mosaic; move it to the corner of the first tile (nibabel's rule).
  const fixRows = (p.rows - p.rows / m) / 2,
    fixCols = (p.cols - p.cols / m) / 2;
  const first = ipp.map((v, i) => v + fixRows * rowSp * colCos[i] + fixCols * colSp * rowCos[i]);
  const csaNormal = csa ? csaNumbers(csa, 'SliceNormalVector') : undefined;
  // Direction from the (normalised) orientation, sign from CSA SliceNormalVector: what nibabel and dcm2niix both do.
  let normal = sliceNormal(o);
  if (csaNormal && csaNormal.length === 3 && dot3(csaNormal, normal) < 0)
    normal = normal.map((v) => -v) as typeof normal;
  const dz = num(ds, 'x00180088') ?? num(ds, 'x00180050') ?? 1;
  const geom = {
    rows: r,
    cols: c,
    orientation: o,
    pixelSpacing: [rowSp, colSp] as [number, number],
    firstPosition: first,
    sliceStep: normal.map((v) => v * dz),
  };
  const mosaic = applyRescale(framePixels(p, 0), rescale(ds));
  const data = new Float32Array(r * c * n);
  const tile = new Float32Array(r * c);
  for (let k = 0; k < n; k++) {
    const tr = Math.floor(k / m),
      tc = k % m;
    for (let y = 0; y < r; y++) {
      const src = (tr * r + y) * p.cols + tc * c;
      tile.set(mosaic.subarray(src, src + c), y * c);
    }
    putSlice(data, tile, k, c, r);
  }
  const times = csa ? csaNumbers(csa, 'MosaicRefAcqTimes') : undefined;
  const tr = num(ds, 'x00180080');
  return {
    dims: [c, r, n],
    affine: stackAffine(geom),
    voxelSize: voxelSizeOf(geom),
    tr: tr !== undefined && tr > 0 ? tr / 1000 : undefined,
    acquisitionTime: parseTime(str(ds, 'x00080032')),
    seriesNumber: num(ds, 'x00200011'),
    volumeIndex: num(ds, 'x00200012'),
    sliceTimes: times && times.length === n ? times : undefined,
    source: 'dicom-mosaic',
    data,
  };
}
