// createPreprocessor: wires the operators into one chain per attached stream pair and exposes the outputs the
// server, dashboard and benchmark need. Outputs are hot Subjects: subscribe to what you need, then connect().
import { Subject, tap, type Observable, type Subscription } from 'rxjs';
import type { StimulusEvent, Volume } from '../src/core/types.js';
import { validateMaskForRun, type MaskImage, type PreprocessConfig } from './config.js';
import { maskIndices } from './mask.js';
import { detrending, masking, motionCorrection, trialResponses, zscoring, type RunEnd } from './operators.js';
import { nowMs, type MotionInfo, type ProcessedVolume } from './stages.js';
import type { StreamTrialResponse } from './trialResponses.js';

export interface VolumeTiming {
  kind: 'volume';
  run: string;
  index: number;
  tr: number;
  /** received, corrected, masked, detrended, zscored (ms timestamps) plus anything upstream stamped. */
  times: ProcessedVolume['times'];
  /** Per-stage durations, ms. */
  stageMs: { motion: number; mask: number; detrend: number; zscore: number };
  /** received → z-scored, ms. */
  totalMs: number;
}

export interface TrialTiming {
  kind: 'trial';
  run: string;
  trial: number;
  /** When the last volume the trial needed was received, and when the response was emitted (ms timestamps). */
  lastVolumeReceivedAt?: number;
  emittedAt: number;
  /** emittedAt − lastVolumeReceivedAt, ms. */
  latencyMs?: number;
}

export interface MotionReport extends MotionInfo {
  run: string;
  index: number;
}

export interface PreprocessAlarm {
  kind: 'lag' | 'high-motion' | 'rejected' | 'not-converged';
  run: string;
  index: number;
  message: string;
  value?: number;
}

export interface PreprocessorOutputs {
  volumes$: Observable<ProcessedVolume>;
  trials$: Observable<StreamTrialResponse>;
  timing$: Observable<VolumeTiming | TrialTiming>;
  motion$: Observable<MotionReport>;
  alarms$: Observable<PreprocessAlarm>;
  /** Starts consuming the inputs (subscribe to the outputs you need first). */
  connect(): Subscription;
}

export interface Preprocessor {
  readonly config: PreprocessConfig;
  readonly roiVoxels: number;
  /** Throws UserError when the mask does not fit volumes of these dims/affine (call at run start). */
  validateRun(dims: readonly number[], affine?: readonly number[]): void;
  attach(
    volumes$: Observable<Volume>,
    events$: Observable<StimulusEvent>,
    runEnds$?: Observable<RunEnd>,
  ): PreprocessorOutputs;
}

export function createPreprocessor(
  config: PreprocessConfig,
  mask: MaskImage,
  opts: { referenceVolume?: Float32Array } = {},
): Preprocessor {
  const roiVoxels = maskIndices(mask.data).length;
  validateMaskForRun(mask, mask.dims);
  return {
    config,
    roiVoxels,
    validateRun: (dims, affine) => validateMaskForRun(mask, dims, affine),
    attach(volumes$, events$, runEnds$) {
      const volumesOut = new Subject<ProcessedVolume>();
      const trialsOut = new Subject<StreamTrialResponse>();
      const timingOut = new Subject<VolumeTiming | TrialTiming>();
      const motionOut = new Subject<MotionReport>();
      const alarmsOut = new Subject<PreprocessAlarm>();
      const report = (p: ProcessedVolume): void => {
        if (p.status === 'rejected') {
          alarmsOut.next({
            kind: 'rejected',
            run: p.run,
            index: p.index,
            message: `volume ${p.index} of ${p.run} was rejected (${p.flags.join(', ')})`,
          });
        }
        if (p.status === 'ok') {
          const t = p.times;
          const r = t.received ?? t.corrected ?? 0;
          const total = (t.zscored ?? r) - r;
          timingOut.next({
            kind: 'volume',
            run: p.run,
            index: p.index,
            tr: p.tr,
            times: t,
            totalMs: total,
            stageMs: {
              motion: (t.corrected ?? r) - r,
              mask: (t.masked ?? 0) - (t.corrected ?? 0),
              detrend: (t.detrended ?? 0) - (t.masked ?? 0),
              zscore: (t.zscored ?? 0) - (t.detrended ?? 0),
            },
          });
          const budget = config.lagAlarmFraction * config.tr * 1000;
          if (total > budget) {
            alarmsOut.next({
              kind: 'lag',
              run: p.run,
              index: p.index,
              value: total,
              message: `volume ${p.index} took ${total.toFixed(0)} ms from arrival to z-score, over ${budget.toFixed(0)} ms; processing is falling behind the TR`,
            });
          }
          if (p.motion) {
            motionOut.next({ ...p.motion, run: p.run, index: p.index });
            if (p.motion.fd > config.fdThresholdMm) {
              alarmsOut.next({
                kind: 'high-motion',
                run: p.run,
                index: p.index,
                value: p.motion.fd,
                message: `framewise displacement ${p.motion.fd.toFixed(2)} mm at volume ${p.index} exceeds ${config.fdThresholdMm} mm`,
              });
            }
            if (!p.motion.converged) {
              alarmsOut.next({
                kind: 'not-converged',
                run: p.run,
                index: p.index,
                message: `motion estimation did not converge at volume ${p.index}`,
              });
            }
          }
        }
        volumesOut.next(p);
      };
      const trials$ = volumes$.pipe(
        motionCorrection(config, { referenceVolume: opts.referenceVolume, mask }),
        masking(config, mask),
        detrending(config),
        zscoring(config),
        tap(report),
        trialResponses(config, roiVoxels, events$, runEnds$),
      );
      const all = [volumesOut, trialsOut, timingOut, motionOut, alarmsOut];
      return {
        volumes$: volumesOut.asObservable(),
        trials$: trialsOut.asObservable(),
        timing$: timingOut.asObservable(),
        motion$: motionOut.asObservable(),
        alarms$: alarmsOut.asObservable(),
        connect: () =>
          trials$.subscribe({
            next: (t) => {
              const emittedAt = nowMs();
              trialsOut.next(t);
              timingOut.next({
                kind: 'trial',
                run: t.run,
                trial: t.trial,
                emittedAt,
                lastVolumeReceivedAt: t.lastVolumeReceivedAt,
                latencyMs: t.lastVolumeReceivedAt === undefined ? undefined : emittedAt - t.lastVolumeReceivedAt,
              });
            },
            error: (e) => {
              for (const s of all) s.error(e);
            },
            complete: () => {
              for (const s of all) s.complete();
            },
          }),
      };
    },
  };
}
