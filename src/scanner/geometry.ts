// DICOM (LPS, row/column) geometry → NIfTI voxel order and RAS+ affine, in dcm2niix's convention:
// x = DICOM column, y = DICOM row reversed (last row first), z = slice; so a dcm2niix NIfTI and ours match voxel for voxel.
import { cross3, norm3 } from './affine.js';

export interface SliceStackGeometry {
  rows: number;
  cols: number;
  /** ImageOrientationPatient: direction of increasing column index (3), then of increasing row index (3), LPS. */
  orientation: number[];
  /** DICOM PixelSpacing: [between rows, between columns]. */
  pixelSpacing: [number, number];
  /** LPS position of pixel (row 0, column 0) of slice 0. */
  firstPosition: number[];
  /** LPS vector from slice k to slice k+1. */
  sliceStep: number[];
}

export function sliceNormal(orientation: number[]): [number, number, number] {
  return cross3(orientation.slice(0, 3), orientation.slice(3, 6));
}

export function unit(v: number[]): number[] {
  const n = norm3(v);
  return n > 0 ? v.map((x) => x / n) : v.slice();
}

/** Row-major RAS+ affine for the dcm2niix voxel order. */
export function stackAffine(g: SliceStackGeometry): number[] {
  const rowCos = g.orientation.slice(0, 3),
    colCos = g.orientation.slice(3, 6);
  const [rowSp, colSp] = g.pixelSpacing;
  const cx = rowCos.map((v) => v * colSp);
  const cy = colCos.map((v) => -v * rowSp);
  const cz = g.sliceStep;
  const o = g.firstPosition.map((v, i) => v + (g.rows - 1) * rowSp * colCos[i]);
  // LPS → RAS: negate the first two rows
  const s = [-1, -1, 1];
  return [
    s[0] * cx[0],
    s[0] * cy[0],
    s[0] * cz[0],
    s[0] * o[0],
    s[1] * cx[1],
    s[1] * cy[1],
    s[1] * cz[1],
    s[1] * o[1],
    s[2] * cx[2],
    s[2] * cy[2],
    s[2] * cz[2],
    s[2] * o[2],
    0,
    0,
    0,
    1,
  ];
}

export function voxelSizeOf(g: SliceStackGeometry): number[] {
  return [g.pixelSpacing[1], g.pixelSpacing[0], norm3(g.sliceStep)];
}

/** Copies one DICOM-order slice (column fastest, row 0 first) into z-plane k of a volume, rows reversed. */
export function putSlice(out: Float32Array, slice: ArrayLike<number>, k: number, cols: number, rows: number): void {
  const plane = cols * rows;
  for (let r = 0; r < rows; r++) {
    const src = r * cols,
      dst = k * plane + (rows - 1 - r) * cols;
    for (let c = 0; c < cols; c++) out[dst + c] = slice[src + c];
  }
}

/** Unit-length cosines: DICOM stores them to ~6 decimals, and dcm2niix normalises them before use (up to 3e-4 mm at the far corner). */
export function normalizeOrientation(o: number[]): number[] {
  return [...unit(o.slice(0, 3)), ...unit(o.slice(3, 6))];
}

/** Checks an orientation is two unit, orthogonal cosines; returns a sentence when it is not. */
export function orientationProblem(o: number[] | undefined): string | undefined {
  if (!o || o.length !== 6 || o.some((v) => !Number.isFinite(v)))
    return 'ImageOrientationPatient is missing or not 6 numbers';
  const a = o.slice(0, 3),
    b = o.slice(3, 6);
  if (Math.abs(norm3(a) - 1) > 1e-3 || Math.abs(norm3(b) - 1) > 1e-3)
    return 'ImageOrientationPatient cosines are not unit vectors';
  if (Math.abs(a[0] * b[0] + a[1] * b[1] + a[2] * b[2]) > 1e-3)
    return 'ImageOrientationPatient cosines are not orthogonal';
  return undefined;
}
