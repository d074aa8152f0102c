// createPreprocessor end to end: real EPI through every stage, per-stage timing, alarms, and the edge cases
// (reference not yet fixed, extreme motion, missing volume, constant voxels, bad dims, lag, 2000-volume memory).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import v8 from 'node:v8';
import vm from 'node:vm';
import { Subject } from 'rxjs';
import type { StimulusEvent, Volume } from '../../src/core/types.js';
import { decodeNifti } from '../../src/scanner/nifti.js';
import {
  createPreprocessor,
  parsePreprocessConfig,
  type PreprocessAlarm,
  type ProcessedVolume,
  type TrialTiming,
  type VolumeTiming,
  type MotionReport,
  type StreamTrialResponse,
} from '../../streams/index.js';
import { MotionCorrector } from '../../streams/motionCorrect.js';
import { inverseParams, makePhantom, rng } from '../../src/bench/preprocess.js';
import type { MotionParams } from '../../streams/rigid.js';
import { nibabelData } from './helpers.js';

function collect(
  pre: ReturnType<typeof createPreprocessor>,
  vols: Volume[],
  events: StimulusEvent[],
  eventsFirst = true,
) {
  const v$ = new Subject<Volume>(),
    e$ = new Subject<StimulusEvent>();
  const out = pre.attach(v$, e$);
  const volumes: ProcessedVolume[] = [],
    trials: StreamTrialResponse[] = [],
    timing: (VolumeTiming | TrialTiming)[] = [];
  const motion: MotionReport[] = [],
    alarms: PreprocessAlarm[] = [];
  out.volumes$.subscribe((v) => volumes.push(v));
  out.trials$.subscribe((t) => trials.push(t));
  out.timing$.subscribe((t) => timing.push(t));
  out.motion$.subscribe((m) => motion.push(m));
  out.alarms$.subscribe((a) => alarms.push(a));
  out.connect();
  if (eventsFirst) for (const e of events) e$.next(e);
  for (const v of vols) v$.next(v);
  if (!eventsFirst) for (const e of events) e$.next(e);
  v$.complete();
  e$.complete();
  return { volumes, trials, timing, motion, alarms };
}

const ev = (run: string, trial: number, onset: number): StimulusEvent => ({
  run,
  trial,
  onset,
  duration: 3,
  stimulusId: `stim${trial}`,
});

test('real EPI (functional.nii) through the whole chain: every stage stamped, motion/FD/DVARS, finite trial vectors', () => {
  const img = decodeNifti(new Uint8Array(readFileSync(join(nibabelData, 'functional.nii'))));
  const dims = img.dims.slice(0, 3) as [number, number, number];
  const v0 = img.volume(0);
  let mean = 0;
  for (const x of v0) mean += x / v0.length;
  const mask = { dims, data: Uint8Array.from(v0, (x) => (x > mean ? 1 : 0)), affine: img.affine };
  const cfg = parsePreprocessConfig({
    tr: img.tr,
    discard_volumes: 2,
    subject: 'nib',
    detrend: { motion_regressors: false },
  });
  const pre = createPreprocessor(cfg, mask);
  pre.validateRun(dims, img.affine);
  const vols: Volume[] = Array.from({ length: img.dims[3] }, (_, i) => ({
    run: 'r1',
    index: i,
    dims,
    affine: img.affine,
    tr: img.tr,
    acquisitionTime: i * img.tr,
    data: img.volume(i),
    times: {},
  }));
  const events = [ev('r1', 0, 8), ev('r1', 1, 16), ev('r1', 2, 24)];
  const r = collect(pre, vols, events, false);
  assert.equal(r.volumes.length, 20);
  assert.deepEqual(
    r.volumes.map((v) => v.status),
    [...Array(2).fill('discarded'), ...Array(18).fill('ok')],
  );
  assert.equal(r.motion.length, 18);
  for (const m of r.motion)
    assert.ok(Number.isFinite(m.fd) && Number.isFinite(m.dvars) && m.params.every(Number.isFinite));
  assert.equal(r.motion[0].fd, 0);
  const vt = r.timing.filter((t): t is VolumeTiming => t.kind === 'volume');
  assert.equal(vt.length, 18);
  for (const t of vt) {
    const s = t.times;
    assert.ok(
      s.received! <= s.corrected! &&
        s.corrected! <= s.masked! &&
        s.masked! <= s.detrended! &&
        s.detrended! <= s.zscored!,
    );
    assert.ok(t.totalMs >= 0);
  }
  assert.equal(r.trials.length, 3);
  for (const t of r.trials) {
    assert.equal(t.vector.length, pre.roiVoxels);
    assert.ok(t.vector.every(Number.isFinite));
    assert.equal(t.subject, 'nib');
  }
  assert.equal(r.timing.filter((t) => t.kind === 'trial').length, 3);
});

/** A phantom run with chosen motion per volume. */
function phantomRun(dims: [number, number, number], n: number, motionAt: (t: number) => MotionParams, seed = 5) {
  const ph = makePhantom(dims, [3, 3, 3], 400, seed);
  // a constant block (value 100) inside the mask: must come out as 0, never NaN
  const [nx, ny] = dims;
  const constant: number[] = [];
  for (let k = 1; k < 5; k++)
    for (let j = 1; j < 7; j++)
      for (let i = 1; i < 7; i++) {
        const o = i + j * nx + k * nx * ny;
        ph.template[o] = 100;
        if (i > 2 && i < 5 && j > 2 && j < 5 && k > 1 && k < 4) {
          ph.mask[o] = 1;
          constant.push(o);
        }
      }
  const mc = new MotionCorrector(dims, [3, 3, 3], { interpolation: 'cubic' });
  const r = rng(seed);
  const vols: Volume[] = [];
  for (let t = 0; t < n; t++) {
    const data = mc.resample(ph.template, inverseParams(motionAt(t)), new Float32Array(ph.template.length));
    for (let i = 0; i < data.length; i++) if (data[i] !== 100) data[i] += r.normal() * 2 + 5 * Math.sin(t / 7);
    vols.push({ run: 'p1', index: t, dims, affine: ph.affine, tr: 2, acquisitionTime: 2 * t, data, times: {} });
  }
  return { ph, vols, constant };
}

test('volumes before the reference is fixed are held, then corrected against it in order', () => {
  const dims: [number, number, number] = [24, 24, 16];
  const { ph, vols } = phantomRun(dims, 12, (t) => [0.1 * t, 0, 0, 0, 0, 0.05 * t]);
  const cfg = parsePreprocessConfig({ tr: 2, discard_volumes: 1, motion: { reference: 4 } });
  const r = collect(createPreprocessor(cfg, { dims, data: ph.mask, affine: ph.affine }), vols, []);
  assert.deepEqual(
    r.volumes.map((v) => v.index),
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
  );
  assert.equal(r.volumes[0].status, 'discarded');
  const m4 = r.motion.find((m) => m.index === 4)!;
  assert.deepEqual(m4.params, [0, 0, 0, 0, 0, 0], 'the reference has zero motion by definition');
  assert.ok(r.volumes.find((v) => v.index === 4)!.flags.includes('reference'));
  const m1 = r.motion.find((m) => m.index === 1)!;
  assert.ok(Math.abs(m1.params[0] - (0.1 - 0.4)) < 0.03, `volume 1 relative to volume 4: tx ${m1.params[0]}`);
});

test('extreme motion is flagged by FD (alarm, volume and trial flags); a missing volume flags its trial; constant voxels stay 0', () => {
  const dims: [number, number, number] = [24, 24, 16];
  const { ph, vols, constant } = phantomRun(dims, 40, (t) => (t === 20 ? [4, 0, 0, 0, 0, 3] : [0, 0, 0, 0, 0, 0]));
  const cfg = parsePreprocessConfig({ tr: 2, fd_threshold_mm: 0.9 });
  const kept = vols.filter((v) => v.index !== 31);
  const events = [ev('p1', 0, 36), ev('p1', 1, 58), ev('p1', 2, 20)];
  const r = collect(createPreprocessor(cfg, { dims, data: ph.mask, affine: ph.affine }), kept, events);
  const m20 = r.motion.find((m) => m.index === 20)!;
  assert.ok(Math.abs(m20.params[0] - 4) < 0.3 && Math.abs(m20.params[5] - 3) < 0.3, `recovered ${m20.params}`);
  assert.ok(m20.fd > 0.9);
  assert.ok(r.alarms.some((a) => a.kind === 'high-motion' && a.index === 20));
  assert.ok(
    r.alarms.some((a) => a.kind === 'high-motion' && a.index === 21),
    'moving back is motion too',
  );
  assert.ok(r.volumes.find((v) => v.index === 20)!.flags.includes('high-motion'));
  const byTrial = new Map(r.trials.map((t) => [t.trial, t]));
  assert.deepEqual(byTrial.get(0)!.flags, ['high-motion'], 'onset 36 s: window [40, 44) s = volumes 20, 21');
  assert.deepEqual(
    byTrial.get(1)!.flags,
    ['missing-volume'],
    'onset 58 s: window [62, 66) s = volumes 31 (missing), 32',
  );
  assert.deepEqual(byTrial.get(1)!.volumes, [32]);
  assert.deepEqual(byTrial.get(2)!.flags, [], 'onset 20 s: volumes 12, 13, after the detrend warm-up');
  const maskIdx = [...ph.mask.keys()].filter((i) => ph.mask[i]);
  const pos = constant.map((o) => maskIdx.indexOf(o));
  for (const v of r.volumes) {
    if (!v.zscored) continue;
    assert.ok(v.zscored.every(Number.isFinite));
    for (const p of pos) assert.equal(v.zscored[p], 0);
  }
  for (const t of r.trials) assert.ok(t.vector.every(Number.isFinite));
});

test('bad input never crashes the chain: wrong dims are rejected with an alarm, later volumes go on; lag alarm fires', () => {
  const dims: [number, number, number] = [24, 24, 16];
  const { ph, vols } = phantomRun(dims, 14, () => [0, 0, 0, 0, 0, 0]);
  const pre = createPreprocessor(parsePreprocessConfig({ tr: 2, lag_alarm_fraction: 1e-9 }), {
    dims,
    data: ph.mask,
    affine: ph.affine,
  });
  assert.throws(() => pre.validateRun([24, 24, 15]), /mask dims 24×24×16 differ from the volume dims 24×24×15/);
  const bad: Volume = { ...vols[5], index: 5, dims: [24, 24, 15], data: new Float32Array(24 * 24 * 15) };
  const input = [...vols.slice(0, 5), bad, ...vols.slice(6)];
  const r = collect(pre, input, []);
  assert.equal(r.volumes.find((v) => v.index === 5)!.status, 'rejected');
  assert.ok(r.alarms.some((a) => a.kind === 'rejected' && a.index === 5 && /rejected/.test(a.message)));
  assert.equal(r.volumes.filter((v) => v.status === 'ok').length, 13);
  assert.ok(r.alarms.filter((a) => a.kind === 'lag').length >= 13, 'every volume exceeds a ~0 ms budget');
});

test('memory stays flat over a 2000-volume run', () => {
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc') as () => void;
  const dims: [number, number, number] = [20, 20, 12];
  const ph = makePhantom(dims, [3, 3, 3], 600, 9);
  const pre = createPreprocessor(parsePreprocessConfig({ tr: 2 }), { dims, data: ph.mask, affine: ph.affine });
  const v$ = new Subject<Volume>(),
    e$ = new Subject<StimulusEvent>();
  const out = pre.attach(v$, e$);
  let trials = 0,
    processed = 0;
  out.trials$.subscribe(() => trials++);
  out.volumes$.subscribe((v) => {
    if (v.zscored) processed++;
  });
  out.connect();
  const r = rng(3);
  const heap: number[] = [];
  for (let t = 0; t < 2000; t++) {
    const data = Float32Array.from(ph.template, (x) => x + r.normal());
    if (t % 4 === 0) e$.next(ev('m', t / 4, 2 * t));
    v$.next({ run: 'm', index: t, dims, affine: ph.affine, tr: 2, acquisitionTime: 2 * t, data, times: {} });
    if (t === 400 || t === 1999) {
      gc();
      gc();
      heap.push(process.memoryUsage().heapUsed);
    }
  }
  const growth = (heap[1] - heap[0]) / 1e6;
  console.log(
    `heap at volume 400: ${(heap[0] / 1e6).toFixed(1)} MB, at 2000: ${(heap[1] / 1e6).toFixed(1)} MB (growth ${growth.toFixed(2)} MB)`,
  );
  assert.ok(processed > 1980 && trials > 490);
  assert.ok(growth < 2, `heap grew by ${growth} MB over 1600 volumes`);
});

test('a blank reference candidate and a volume with NaN are rejected; the run goes on with the next volume as reference', () => {
  const dims: [number, number, number] = [24, 24, 16];
  const { ph, vols } = phantomRun(dims, 16, (t) => [0.05 * t, 0, 0, 0, 0, 0]);
  vols[0] = { ...vols[0], data: new Float32Array(vols[0].data.length) };
  const nan = vols[6].data.slice();
  nan[1234] = NaN;
  vols[6] = { ...vols[6], data: nan };
  const r = collect(
    createPreprocessor(parsePreprocessConfig({ tr: 2 }), { dims, data: ph.mask, affine: ph.affine }),
    vols,
    [],
  );
  assert.deepEqual(r.volumes[0].flags, ['unusable-reference']);
  assert.deepEqual(r.volumes[6].flags, ['non-finite']);
  assert.ok(r.volumes[1].flags.includes('reference'));
  assert.equal(r.volumes.filter((v) => v.status === 'ok').length, 14);
  for (const v of r.volumes) if (v.zscored) assert.ok(v.zscored.every(Number.isFinite));
  const m15 = r.motion.find((m) => m.index === 15)!;
  assert.ok(Math.abs(m15.params[0] - 0.05 * 14) < 0.05, `relative to volume 1: ${m15.params[0]}`);
});
