// Per-run stateful stages, one per operator, each a thin shell over the pure typed-array functions
// (MotionCorrector, maskVolume/gaussianSmooth, IncrementalDetrender, RunningZScore, TrialResponseEstimator).
// A stage resets itself when the run changes. Nothing here throws on bad volumes: they pass through 'rejected'.
import type { Affine, StageTimes, StimulusEvent, Volume } from '../src/core/types.js';
import { nowMs } from '../src/core/clock.js';

export { nowMs };
import type { MaskImage, PreprocessConfig } from './config.js';
import { IncrementalDetrender } from './detrend.js';
import { gaussianSmooth, maskIndices, maskVolume } from './mask.js';
import { MotionCorrector } from './motionCorrect.js';
import { framewiseDisplacement, voxelSizes, type MotionParams } from './rigid.js';
import { TrialResponseEstimator, type StreamTrialResponse } from './trialResponses.js';
import { RunningZScore } from './zscore.js';

/** Wall-clock ms on the Date.now() scale with sub-ms resolution. */

export interface MotionInfo {
  /** [tx, ty, tz] mm, [rx, ry, rz] degrees relative to the reference volume. */
  params: MotionParams;
  /** Framewise displacement (Power 2012) from the previous processed volume, mm. */
  fd: number;
  /** RMS change of the ROI signal from the previous processed volume (DVARS, raw intensity units). */
  dvars: number;
  iterations: number;
  converged: boolean;
  /** RMS residual intensity difference to the reference at the estimation samples. */
  rms: number;
}

/** A volume as it leaves each stage; later stages fill in later fields. */
export interface ProcessedVolume {
  run: string;
  index: number;
  tr: number;
  acquisitionTime: number;
  dims: [number, number, number];
  affine: Affine;
  /** 'discarded': before discard_volumes; 'rejected': unusable (flags say why); 'ok': processed. */
  status: 'ok' | 'discarded' | 'rejected';
  /** e.g. 'reference', 'high-motion', 'not-converged', 'dims-mismatch', 'out-of-order', 'detrend-warmup'. */
  flags: string[];
  times: StageTimes;
  motion?: MotionInfo;
  /** Motion-corrected full volume: a reused buffer, valid only inside the pipeline unless motion.emit_corrected. */
  corrected?: Float32Array;
  /** ROI vector after correction (and smoothing), mask order. */
  roi?: Float32Array;
  /** Detrended ROI vector; null while the fit has fewer samples than regressors. */
  detrended?: Float32Array | null;
  /** z-scored detrended ROI vector; null when detrended is null. */
  zscored?: Float32Array | null;
}

const ZERO: MotionParams = [0, 0, 0, 0, 0, 0];

export class MotionStage {
  private run: string | null = null;
  private corrector: MotionCorrector | null = null;
  private prev: MotionParams = [...ZERO];
  private lastIndex = -1;
  private buffer: Float32Array | null = null;
  private waiting: Volume[] = [];
  /** Index of the volume that is the reference (its motion is 0 by definition), or −1 for a given reference. */
  private refVolume = -1;
  /**
   * roiIndices: when given (and neither smoothing nor the full corrected volume is wanted), only these voxels are
   * resampled — the ROI is ~2% of an NSD volume — and the output carries `roi` directly.
   */
  constructor(
    private readonly cfg: PreprocessConfig,
    private readonly referenceVolume?: Float32Array,
    private readonly roiIndices?: Uint32Array,
  ) {}

  private reset(v: Volume): void {
    this.run = v.run;
    this.corrector = null;
    this.prev = [...ZERO];
    this.lastIndex = -1;
    this.waiting = [];
    this.refVolume = -1;
    const n = v.dims[0] * v.dims[1] * v.dims[2];
    if (!this.buffer || this.buffer.length !== n) this.buffer = new Float32Array(n);
  }

  private base(v: Volume, status: ProcessedVolume['status'], flags: string[]): ProcessedVolume {
    return {
      run: v.run,
      index: v.index,
      tr: v.tr,
      acquisitionTime: v.acquisitionTime,
      dims: v.dims,
      affine: v.affine,
      status,
      flags,
      times: { ...v.times, received: v.times.received ?? nowMs() },
    };
  }

  /** The volume index that becomes the reference. */
  private get refIndex(): number {
    const r = this.cfg.motion.reference;
    return r === 'first' ? this.cfg.discardVolumes : r;
  }

  process(v: Volume): ProcessedVolume[] {
    if (v.run !== this.run) this.reset(v);
    const n = v.dims[0] * v.dims[1] * v.dims[2];
    if (v.data.length !== n || n === 0) return [this.base(v, 'rejected', ['bad-length'])];
    if (n !== this.buffer!.length) return [this.base(v, 'rejected', ['dims-mismatch'])];
    if (v.index <= this.lastIndex) return [this.base(v, 'rejected', ['out-of-order'])];
    // One NaN would poison the run's accumulated detrend sums: such a volume is rejected instead (a plain sum is
    // the cheapest full check: any NaN or ±Inf makes it non-finite).
    let sum = 0;
    for (let i = 0; i < n; i++) sum += v.data[i];
    if (!Number.isFinite(sum)) return [this.base(v, 'rejected', ['non-finite'])];
    if (!this.cfg.motion.enabled) {
      if (v.index < this.cfg.discardVolumes) return [this.base(v, 'discarded', [])];
      this.lastIndex = v.index;
      const p = this.base(v, 'ok', []);
      p.corrected = v.data;
      p.motion = { params: [...ZERO], fd: 0, dvars: 0, iterations: 0, converged: true, rms: 0 };
      p.times.corrected = nowMs();
      return [p];
    }
    if (!this.corrector) {
      const fromOption = this.referenceVolume && this.referenceVolume.length === n ? this.referenceVolume : null;
      try {
        if (!fromOption && v.index === this.refIndex) {
          this.setReference(v, v.data);
          this.refVolume = v.index;
        } else if (fromOption) {
          this.setReference(v, fromOption);
        } else if (v.index > this.refIndex) {
          // The chosen reference never came (dropped volume): the first volume after it becomes the reference.
          this.setReference(v, v.data);
          this.refVolume = v.index;
        }
      } catch {
        // e.g. a blank volume: nothing to register to. The next volume is tried as the reference.
        this.corrector = null;
        if (v.index >= this.cfg.discardVolumes) return [this.base(v, 'rejected', ['unusable-reference'])];
      }
    }
    if (v.index < this.cfg.discardVolumes) {
      // Before the analysis starts: kept out of every statistic (the reference may still be one of them).
      return [this.base(v, 'discarded', [])];
    }
    if (!this.corrector) {
      // Reference (a later index) not fixed yet: hold the volume until it is (bounded by the reference index).
      this.waiting.push(v);
      return [];
    }
    const out = this.waiting.map((w) => this.correct(w));
    this.waiting = [];
    out.push(this.correct(v));
    return out;
  }

  private setReference(v: Volume, data: Float32Array): void {
    const c = new MotionCorrector(v.dims, voxelSizes(v.affine), {
      samples: this.cfg.motion.samples,
      maxIterations: this.cfg.motion.maxIterations,
      interpolation: this.cfg.motion.interpolation,
    });
    c.setReference(data);
    this.corrector = c;
  }

  private correct(v: Volume): ProcessedVolume {
    const p = this.base(v, 'ok', []);
    const c = this.corrector!;
    const isRef = v.index === this.refVolume;
    const est = isRef
      ? { params: [0, 0, 0, 0, 0, 0] as MotionParams, iterations: 0, converged: true, rms: 0, overlap: 1 }
      : c.estimate(v.data, this.prev);
    if (isRef) p.flags.push('reference');
    const first = this.lastIndex < this.cfg.discardVolumes;
    const fd = first ? 0 : framewiseDisplacement(this.prev, est.params, this.cfg.motion.fdRadiusMm);
    this.prev = est.params;
    this.lastIndex = v.index;
    const roiOnly =
      this.roiIndices &&
      !this.cfg.motion.emitCorrected &&
      !(this.cfg.smoothingFwhmMm > 0) &&
      this.roiIndices.length > 0 &&
      this.roiIndices[this.roiIndices.length - 1] < v.data.length;
    if (roiOnly) {
      p.roi = c.resampleAt(v.data, est.params, this.roiIndices!, new Float32Array(this.roiIndices!.length));
    } else {
      const out = this.cfg.motion.emitCorrected ? new Float32Array(v.data.length) : this.buffer!;
      c.resample(v.data, est.params, out);
      p.corrected = out;
    }
    p.motion = { params: est.params, fd, dvars: 0, iterations: est.iterations, converged: est.converged, rms: est.rms };
    if (!est.converged) p.flags.push('not-converged');
    if (fd > this.cfg.fdThresholdMm) p.flags.push('high-motion');
    p.times.corrected = nowMs();
    return p;
  }
}

export class MaskStage {
  private readonly indices: Uint32Array;
  private readonly voxelSize: [number, number, number];
  private prevRoi: Float32Array | null = null;
  private run: string | null = null;
  private tmp: Float32Array | null = null;
  private smooth: Float32Array | null = null;
  constructor(
    private readonly cfg: PreprocessConfig,
    readonly mask: MaskImage,
  ) {
    this.indices = maskIndices(mask.data);
    this.voxelSize = voxelSizes(mask.affine);
  }

  get roiVoxels(): number {
    return this.indices.length;
  }

  private gather(p: ProcessedVolume, corrected: Float32Array): Float32Array {
    let src = corrected;
    if (this.cfg.smoothingFwhmMm > 0) {
      if (!this.smooth || this.smooth.length !== src.length) {
        this.smooth = new Float32Array(src.length);
        this.tmp = new Float32Array(src.length);
      }
      this.smooth.set(src);
      src = gaussianSmooth(this.smooth, p.dims, this.voxelSize, this.cfg.smoothingFwhmMm, this.tmp!);
    }
    return maskVolume(src, this.indices);
  }

  process(p: ProcessedVolume): ProcessedVolume {
    if (p.run !== this.run) {
      this.run = p.run;
      this.prevRoi = null;
    }
    if (p.status !== 'ok' || !(p.corrected || p.roi)) {
      delete p.corrected;
      return p;
    }
    if (p.dims.some((d, i) => d !== this.mask.dims[i])) {
      p.status = 'rejected';
      p.flags.push('dims-mismatch');
      delete p.corrected;
      return p;
    }
    const roi = p.roi ?? this.gather(p, p.corrected!);
    if (p.motion) {
      let s = 0;
      if (this.prevRoi)
        for (let i = 0; i < roi.length; i++) {
          const d = roi[i] - this.prevRoi[i];
          s += d * d;
        }
      p.motion.dvars = this.prevRoi ? Math.sqrt(s / roi.length) : 0;
    }
    this.prevRoi = roi;
    p.roi = roi;
    if (!this.cfg.motion.emitCorrected) delete p.corrected;
    p.times.masked = nowMs();
    return p;
  }
}

export class DetrendStage {
  private run: string | null = null;
  private d: IncrementalDetrender | null = null;
  constructor(private readonly cfg: PreprocessConfig) {}

  process(p: ProcessedVolume): ProcessedVolume {
    if (p.status !== 'ok' || !p.roi) return p;
    if (p.run !== this.run || !this.d || this.d.nVox !== p.roi.length) {
      this.run = p.run;
      const c = this.cfg.detrend;
      this.d = new IncrementalDetrender(p.roi.length, {
        tr: this.cfg.tr,
        mode: c.mode,
        windowVolumes: c.windowVolumes,
        maxOrder: c.maxOrder,
        secondsPerOrder: c.secondsPerOrder,
        motion: c.motionRegressors && this.cfg.motion.enabled,
      });
    }
    const out = new Float32Array(p.roi.length);
    const ok = this.d.push(p.index, p.roi, p.motion ? p.motion.params : null, out);
    p.detrended = ok ? out : null;
    if (!ok) p.flags.push('detrend-warmup');
    p.times.detrended = nowMs();
    return p;
  }
}

export class ZScoreStage {
  private run: string | null = null;
  private z: RunningZScore | null = null;
  constructor(private readonly cfg: PreprocessConfig) {}

  process(p: ProcessedVolume): ProcessedVolume {
    if (p.status !== 'ok' || p.detrended === undefined) return p;
    if (p.run !== this.run || (p.detrended && this.z && this.z.nVox !== p.detrended.length)) {
      this.run = p.run;
      this.z = null;
    }
    if (p.detrended) {
      this.z ??= new RunningZScore(p.detrended.length, this.cfg.zscore);
      const out = new Float32Array(p.detrended.length);
      this.z.push(p.detrended, out);
      p.zscored = out;
    } else {
      p.zscored = null;
    }
    p.times.zscored = nowMs();
    return p;
  }
}

export class TrialStage {
  private est: TrialResponseEstimator | null = null;
  private run: string | null = null;
  private early: StimulusEvent[] = [];
  constructor(
    private readonly cfg: PreprocessConfig,
    private readonly nVox: number,
  ) {}

  private open(run: string): StreamTrialResponse[] {
    const flushed = this.est && this.run !== run ? this.est.endRun() : [];
    this.run = run;
    this.est = new TrialResponseEstimator(
      this.nVox,
      {
        tr: this.cfg.tr,
        method: this.cfg.response.method,
        window: this.cfg.response.window,
        lssWindow: this.cfg.response.lssWindow,
        historySeconds: this.cfg.response.historySeconds,
        fdThresholdMm: this.cfg.fdThresholdMm,
      },
      { run, subject: this.cfg.subject },
    );
    const early = this.early.filter((e) => e.run === run);
    this.early = this.early.filter((e) => e.run !== run);
    for (const e of early) flushed.push(...this.est.addEvent(e));
    return flushed;
  }

  volume(p: ProcessedVolume): StreamTrialResponse[] {
    const out = p.run !== this.run ? this.open(p.run) : [];
    if (p.status === 'rejected') return out;
    const z = p.status === 'ok' && p.zscored ? p.zscored : null;
    out.push(...this.est!.addVolume(p.index, z, p.motion?.fd ?? 0, p.times.received ?? nowMs()));
    return out;
  }

  event(e: StimulusEvent): StreamTrialResponse[] {
    if (e.run !== this.run) {
      // Events of a run whose first volume has not arrived yet wait for it (bounded: one run ahead).
      this.early.push(e);
      if (this.early.length > 10000) this.early.shift();
      return [];
    }
    return this.est!.addEvent(e);
  }

  endRun(run: string): StreamTrialResponse[] {
    if (run !== this.run || !this.est) return [];
    const out = this.est.endRun();
    return out;
  }
}
