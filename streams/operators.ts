// RxJS operators: each is a thin wrapper over one stage (streams/stages.ts), which is itself a shell over pure
// typed-array functions. All operators keep per-run state and are synchronous (a volume is processed as it arrives).
import { concat, concatMap, defer, map, merge, type Observable, type OperatorFunction } from 'rxjs';
import type { StimulusEvent, Volume } from '../src/core/types.js';
import type { MaskImage, PreprocessConfig } from './config.js';
import { DetrendStage, MaskStage, MotionStage, TrialStage, ZScoreStage, type ProcessedVolume } from './stages.js';
import type { StreamTrialResponse } from './trialResponses.js';
import { maskIndices } from './mask.js';

/** Rigid-body motion correction to the run's reference volume (volumes before it is fixed are held, then released). */
export function motionCorrection(
  cfg: PreprocessConfig,
  opts: { referenceVolume?: Float32Array; mask?: MaskImage } = {},
): OperatorFunction<Volume, ProcessedVolume> {
  return (src) =>
    defer(() => {
      // With the mask known, only ROI voxels are resampled (the full corrected volume is made only when needed).
      const stage = new MotionStage(cfg, opts.referenceVolume, opts.mask ? maskIndices(opts.mask.data) : undefined);
      return src.pipe(concatMap((v) => stage.process(v)));
    });
}

/** Optional Gaussian smoothing, then the ROI vector at the mask's nonzero voxels; also DVARS. */
export function masking(cfg: PreprocessConfig, mask: MaskImage): OperatorFunction<ProcessedVolume, ProcessedVolume> {
  return (src) =>
    defer(() => {
      const stage = new MaskStage(cfg, mask);
      return src.pipe(map((p) => stage.process(p)));
    });
}

/** Incremental polynomial (+ motion) detrending of the ROI vector. */
export function detrending(cfg: PreprocessConfig): OperatorFunction<ProcessedVolume, ProcessedVolume> {
  return (src) =>
    defer(() => {
      const stage = new DetrendStage(cfg);
      return src.pipe(map((p) => stage.process(p)));
    });
}

/** Running (Welford) or baseline z-scoring of the detrended ROI vector. */
export function zscoring(cfg: PreprocessConfig): OperatorFunction<ProcessedVolume, ProcessedVolume> {
  return (src) =>
    defer(() => {
      const stage = new ZScoreStage(cfg);
      return src.pipe(map((p) => stage.process(p)));
    });
}

export type RunEnd = string | { run: string };

/**
 * Trial responses from processed volumes and stimulus events (in any order); pending trials are emitted, flagged,
 * when their run ends (runEnds$) or when the volume stream completes.
 */
export function trialResponses(
  cfg: PreprocessConfig,
  roiVoxels: number,
  events$: Observable<StimulusEvent>,
  runEnds$?: Observable<RunEnd>,
): OperatorFunction<ProcessedVolume, StreamTrialResponse> {
  return (src) =>
    defer(() => {
      const stage = new TrialStage(cfg, roiVoxels);
      let lastRun: string | null = null;
      const vols = concat(
        src.pipe(
          concatMap((p) => {
            lastRun = p.run;
            return stage.volume(p);
          }),
        ),
        defer(() => (lastRun === null ? [] : stage.endRun(lastRun))),
      );
      const evs = events$.pipe(concatMap((e) => stage.event(e)));
      if (!runEnds$) return merge(vols, evs);
      const ends = runEnds$.pipe(concatMap((r) => stage.endRun(typeof r === 'string' ? r : r.run)));
      return merge(vols, evs, ends);
    });
}
