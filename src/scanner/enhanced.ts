// Enhanced multi-frame MR (Siemens XA / Numaris X, also Philips): geometry per frame in the Per-Frame Functional Groups
// (5200,9230), falling back to the Shared Functional Groups (5200,9229) and then the top-level data set.
import type { DataSet } from 'dicom-parser';
import { dot3 } from './affine.js';
import {
  DicomError,
  applyRescale,
  framePixels,
  item,
  num,
  numbers,
  parseDateTimeToTime,
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
import type { ScannerVolume } from './types.js';

export function isEnhanced(p: ParsedDicom): boolean {
  return !!p.ds.elements.x52009230?.items?.length;
}

interface FrameInfo {
  index: number;
  position: number[];
  orientation: number[];
  pixelSpacing: [number, number];
  thickness?: number;
  rescale?: { slope: number; inter: number };
  temporal?: number;
  time?: number;
}

/** A functional-group macro from this frame's item, else the shared item. */
function group(frame: DataSet | undefined, shared: DataSet | undefined, seq: string): DataSet | undefined {
  return item(frame, seq) ?? item(shared, seq);
}

export function readEnhanced(p: ParsedDicom): ScannerVolume[] {
  const ds = p.ds;
  const perFrame = ds.elements.x52009230.items!;
  const shared = item(ds, 'x52009229');
  if (perFrame.length !== p.frames) {
    throw new DicomError(
      `the file has ${p.frames} frames but ${perFrame.length} per-frame functional group items.`,
      'invalid',
    );
  }
  const frames: FrameInfo[] = perFrame.map((it, index) => {
    const f = it.dataSet;
    const pos = numbers(group(f, shared, 'x00209113') ?? ds, 'x00200032');
    const ori = numbers(group(f, shared, 'x00209116') ?? ds, 'x00200037');
    const meas = group(f, shared, 'x00289110');
    const ps = numbers(meas ?? ds, 'x00280030');
    if (!pos || pos.length !== 3)
      throw new DicomError(
        `frame ${index + 1} has no ImagePositionPatient in its PlanePositionSequence (an XA "mosaic" without geometry?); export enhanced non-mosaic or classic DICOM.`,
        'invalid',
      );
    const op = orientationProblem(ori);
    if (op) throw new DicomError(`frame ${index + 1}: ${op}.`, 'invalid');
    if (!ps || ps.length !== 2 || ps.some((v) => !(v > 0)))
      throw new DicomError(`frame ${index + 1} has no valid PixelSpacing in its PixelMeasuresSequence.`, 'invalid');
    const content = group(f, undefined, 'x00209111');
    return {
      index,
      position: pos,
      orientation: normalizeOrientation(ori!),
      pixelSpacing: [ps[0], ps[1]],
      thickness: num(meas ?? ds, 'x00180088') ?? num(meas ?? ds, 'x00180050'),
      rescale: rescale(group(f, shared, 'x00289145')) ?? rescale(ds),
      temporal: content ? content.uint32('x00209128') : undefined,
      time: content ? parseDateTimeToTime(str(content, 'x00189074')) : undefined,
    };
  });
  const o = frames[0].orientation;
  for (const fr of frames) {
    if (fr.orientation.some((v, i) => Math.abs(v - o[i]) > 1e-4))
      throw new DicomError(
        'frames have different orientations; only one slice stack per file is supported.',
        'invalid',
      );
  }
  const normal = sliceNormal(o);
  const proj = (f: FrameInfo) => dot3(f.position, normal);
  // Group frames into volumes: by TemporalPositionIndex when it varies, else by repeats of the same slice position.
  const temporals = new Set(frames.map((f) => f.temporal));
  let volumesOfFrames: FrameInfo[][];
  if (temporals.size > 1 && !temporals.has(undefined)) {
    const keys = [...temporals].sort((a, b) => a! - b!);
    volumesOfFrames = keys.map((k) => frames.filter((f) => f.temporal === k));
  } else {
    const seen = new Map<string, number>();
    volumesOfFrames = [];
    for (const f of frames) {
      const key = proj(f).toFixed(3);
      const n = seen.get(key) ?? 0;
      seen.set(key, n + 1);
      (volumesOfFrames[n] ??= []).push(f);
    }
  }
  const nz = volumesOfFrames[0].length;
  if (volumesOfFrames.some((v) => v.length !== nz)) {
    throw new DicomError(
      `the frames do not form volumes of equal size (${volumesOfFrames.map((v) => v.length).join(', ')} slices).`,
      'invalid',
    );
  }
  const sharedTiming = group(undefined, shared, 'x00189112');
  const trMs = num(sharedTiming ?? ds, 'x00180080') ?? num(ds, 'x00180080');
  const fileTime = parseDateTimeToTime(str(ds, 'x0008002a')) ?? parseTime(str(ds, 'x00080032'));
  return volumesOfFrames.map((vol, vi) => {
    const sorted = vol.slice().sort((a, b) => proj(a) - proj(b));
    const first = sorted[0],
      last = sorted[sorted.length - 1];
    const spacing = nz > 1 ? (proj(last) - proj(first)) / (nz - 1) : (first.thickness ?? 1);
    if (nz > 1 && !(spacing > 1e-6))
      throw new DicomError('several frames share one slice position, so the slices cannot be stacked.', 'invalid');
    const geom = {
      rows: p.rows,
      cols: p.cols,
      orientation: o,
      pixelSpacing: first.pixelSpacing,
      firstPosition: first.position,
      sliceStep: normal.map((v) => v * spacing),
    };
    const data = new Float32Array(p.rows * p.cols * nz);
    sorted.forEach((fr, k) => putSlice(data, applyRescale(framePixels(p, fr.index), fr.rescale), k, p.cols, p.rows));
    const times = vol.map((f) => f.time).filter((t): t is number => t !== undefined);
    // slice timing (ms from the volume's first frame, in z order) when every frame has its acquisition time
    const t0 = times.length ? Math.min(...times) : 0;
    const sliceTimes = times.length === nz ? sorted.map((f) => Math.round((f.time! - t0) * 1e6) / 1e3) : undefined;
    return {
      dims: [p.cols, p.rows, nz] as [number, number, number],
      affine: stackAffine(geom),
      voxelSize: voxelSizeOf(geom),
      tr: trMs !== undefined && trMs > 0 ? trMs / 1000 : undefined,
      acquisitionTime: times.length ? Math.min(...times) : fileTime,
      seriesNumber: num(ds, 'x00200011'),
      volumeIndex: volumesOfFrames.length > 1 ? (vol[0].temporal ?? vi + 1) : num(ds, 'x00200012'),
      sliceTimes,
      source: 'dicom-enhanced' as const,
      data,
    };
  });
}
