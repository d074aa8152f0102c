// One DICOM per slice (GE style, also Siemens non-mosaic): read a slice, then assemble slices into volumes.
import { dot3 } from './affine.js';
import {
  DicomError,
  applyRescale,
  framePixels,
  num,
  numbers,
  parseTime,
  rescale,
  str,
  type ParsedDicom,
} from './dicom.js';
import {
  normalizeOrientation,
  orientationProblem,
  putSlice,
  sliceNormal,
  stackAffine,
  voxelSizeOf,
} from './geometry.js';
import type { ScannerSlice, ScannerVolume } from './types.js';

export function readSlice(p: ParsedDicom): ScannerSlice {
  const ds = p.ds;
  const orientation = numbers(ds, 'x00200037');
  const op = orientationProblem(orientation);
  if (op) throw new DicomError(`${op}.`, 'invalid');
  const position = numbers(ds, 'x00200032');
  if (!position || position.length !== 3)
    throw new DicomError('ImagePositionPatient is missing or not 3 numbers.', 'invalid');
  const ps = numbers(ds, 'x00280030');
  if (!ps || ps.length !== 2 || ps.some((v) => !(v > 0)))
    throw new DicomError('PixelSpacing is missing or not two positive numbers.', 'invalid');
  const tr = num(ds, 'x00180080');
  // GE stores slices per volume in its private LocationsInAcquisition (0021,104F); others in ImagesInAcquisition.
  const geLocations =
    (str(ds, 'x00080070') ?? '').toUpperCase().startsWith('GE') && ds.elements.x0021104f?.length === 2
      ? ds.int16('x0021104f')
      : undefined;
  const inStack = ds.elements.x00209057 ? ds.uint32('x00209057') : undefined;
  return {
    rows: p.rows,
    cols: p.cols,
    position,
    orientation: normalizeOrientation(orientation!),
    pixelSpacing: [ps[0], ps[1]],
    sliceThickness: num(ds, 'x00180050'),
    spacingBetweenSlices: num(ds, 'x00180088'),
    seriesNumber: num(ds, 'x00200011'),
    seriesUid: str(ds, 'x0020000e'),
    instanceNumber: num(ds, 'x00200013'),
    acquisitionNumber: num(ds, 'x00200012'),
    temporalPosition: num(ds, 'x00200100'),
    inStackPosition: inStack,
    slicesPerVolume: geLocations && geLocations > 0 ? geLocations : num(ds, 'x00201002'),
    acquisitionTime: parseTime(str(ds, 'x00080032')),
    tr: tr !== undefined && tr > 0 ? tr / 1000 : undefined,
    data: applyRescale(framePixels(p, 0), rescale(ds)),
  };
}

/** Stacks slices of one volume (any order) into a ScannerVolume: sorted along the slice normal, dcm2niix voxel order. */
export function stackSlices(slices: ScannerSlice[]): ScannerVolume {
  if (slices.length === 0) throw new DicomError('no slices to stack.', 'invalid');
  const s0 = slices[0];
  for (const s of slices) {
    if (s.rows !== s0.rows || s.cols !== s0.cols)
      throw new DicomError(
        `slices of one volume differ in size (${s0.cols}×${s0.rows} and ${s.cols}×${s.rows}).`,
        'invalid',
      );
    if (s.orientation.some((v, i) => Math.abs(v - s0.orientation[i]) > 1e-4))
      throw new DicomError('slices of one volume differ in orientation.', 'invalid');
  }
  const normal = sliceNormal(s0.orientation);
  const proj = (s: ScannerSlice) => dot3(s.position, normal);
  const sorted = slices.slice().sort((a, b) => proj(a) - proj(b));
  const n = sorted.length;
  for (let k = 1; k < n; k++) {
    if (Math.abs(proj(sorted[k]) - proj(sorted[k - 1])) < 1e-4)
      throw new DicomError(
        `two slices share the position ${proj(sorted[k]).toFixed(3)} mm along the slice normal; they cannot be in one volume.`,
        'invalid',
      );
  }
  const spacing =
    n > 1 ? (proj(sorted[n - 1]) - proj(sorted[0])) / (n - 1) : (s0.spacingBetweenSlices ?? s0.sliceThickness ?? 1);
  const geom = {
    rows: s0.rows,
    cols: s0.cols,
    orientation: s0.orientation,
    pixelSpacing: s0.pixelSpacing,
    firstPosition: sorted[0].position,
    sliceStep: normal.map((v) => v * spacing),
  };
  const data = new Float32Array(s0.rows * s0.cols * n);
  sorted.forEach((s, k) => putSlice(data, s.data, k, s0.cols, s0.rows));
  const times = slices.map((s) => s.acquisitionTime).filter((t): t is number => t !== undefined);
  return {
    dims: [s0.cols, s0.rows, n],
    affine: stackAffine(geom),
    voxelSize: voxelSizeOf(geom),
    tr: s0.tr,
    acquisitionTime: times.length ? Math.min(...times) : undefined,
    seriesNumber: s0.seriesNumber,
    epi: s0.epi,
    source: 'dicom-slices',
    data,
  };
}

/**
 * Collects per-slice DICOMs as they arrive and hands out each volume once all its slices are there.
 * A slice's volume is its TemporalPositionIdentifier, else (InstanceNumber − 1) ÷ slicesPerVolume, else its
 * AcquisitionNumber. Slices per volume: the constructor option, else the file's ImagesInAcquisition / GE
 * LocationsInAcquisition; without either, only flush() assembles.
 */
export class SliceAssembler {
  private readonly pending = new Map<string, { volumeIndex: number; slices: Map<string, ScannerSlice> }>();
  private readonly done = new Set<string>();

  constructor(private readonly opts: { slicesPerVolume?: number } = {}) {}

  private perVolume(s: ScannerSlice): number | undefined {
    return this.opts.slicesPerVolume ?? s.slicesPerVolume;
  }

  private volumeOf(s: ScannerSlice): number {
    if (s.temporalPosition !== undefined) return s.temporalPosition;
    const spv = this.perVolume(s);
    if (spv && s.instanceNumber !== undefined && s.instanceNumber >= 1)
      return Math.floor((s.instanceNumber - 1) / spv) + 1;
    return s.acquisitionNumber ?? 1;
  }

  /** Adds a slice; returns the volumes it completed (zero or one). A repeated slice replaces the earlier copy. */
  add(s: ScannerSlice): ScannerVolume[] {
    const vi = this.volumeOf(s);
    const key = `${s.seriesUid ?? s.seriesNumber ?? ''}|${vi}`;
    if (this.done.has(key)) return [];
    let v = this.pending.get(key);
    if (!v) {
      v = { volumeIndex: vi, slices: new Map() };
      this.pending.set(key, v);
    }
    const where =
      s.inStackPosition !== undefined ? `#${s.inStackPosition}` : s.position.map((x) => x.toFixed(3)).join(',');
    v.slices.set(where, s);
    const spv = this.perVolume(s);
    if (spv && v.slices.size >= spv) {
      this.pending.delete(key);
      this.done.add(key);
      return [this.finish(v)];
    }
    return [];
  }

  /** Volumes still waiting for slices, in volume order (e.g. at the end of a conversion). */
  flush(): ScannerVolume[] {
    const out = [...this.pending.values()].sort((a, b) => a.volumeIndex - b.volumeIndex).map((v) => this.finish(v));
    this.pending.clear();
    return out;
  }

  get pendingSlices(): number {
    let n = 0;
    for (const v of this.pending.values()) n += v.slices.size;
    return n;
  }

  private finish(v: { volumeIndex: number; slices: Map<string, ScannerSlice> }): ScannerVolume {
    const vol = stackSlices([...v.slices.values()]);
    vol.volumeIndex = v.volumeIndex;
    return vol;
  }
}
