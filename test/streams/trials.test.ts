// Trial responses: window-mean and LSS estimates, emitted as soon as computable, with quality flags for every
// edge case (late/early events, missing volume, short run, high motion).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { StimulusEvent } from '../../src/core/types.js';
import { boxcarResponse, doubleGammaHrf } from '../../streams/hrf.js';
import { TrialResponseEstimator, windowVolumes } from '../../streams/trialResponses.js';

const ev = (trial: number, onset: number, duration = 3): StimulusEvent => ({
  run: 'r1',
  trial,
  onset,
  duration,
  stimulusId: `s${trial}`,
});
/** Volume t has value t + v/10 in voxel v: window means are easy to predict. */
const vol = (t: number, V = 3) => Float32Array.from({ length: V }, (_, v) => t + v / 10);

test('window-mean: emitted on the volume that completes onset+4…+8 s, with the mean over exactly those volumes', () => {
  const est = new TrialResponseEstimator(3, { tr: 2 }, { run: 'r1', subject: 'sim01' });
  assert.deepEqual(windowVolumes(10, [4, 8], 2), [7, 8]); // volumes at 14 s and 16 s: [14, 18)
  assert.deepEqual(est.addEvent(ev(0, 10)), []);
  for (let t = 0; t < 8; t++) assert.deepEqual(est.addVolume(t, vol(t), 0, 1000 + t), []);
  const out = est.addVolume(8, vol(8), 0, 1008);
  assert.equal(out.length, 1);
  const r = out[0];
  assert.deepEqual(r.volumes, [7, 8]);
  assert.deepEqual(
    Array.from(r.vector).map((x) => +x.toFixed(5)),
    [7.5, 7.6, 7.7],
  );
  assert.deepEqual(r.flags, []);
  assert.deepEqual(r.window, { start: 14, end: 18 });
  assert.equal(r.method, 'window-mean');
  assert.equal(r.subject, 'sim01');
  assert.equal(r.stimulusId, 's0');
  assert.equal(r.lastVolumeReceivedAt, 1008);
  assert.ok(r.readyAt > 0);
});

test('an event that arrives after its volumes is answered at once; one that arrives before waits', () => {
  const est = new TrialResponseEstimator(3, { tr: 1 }, { run: 'r1', subject: 's' });
  for (let t = 0; t < 20; t++) est.addVolume(t, vol(t), 0, t);
  const late = est.addEvent(ev(0, 5));
  assert.equal(late.length, 1);
  assert.deepEqual(late[0].volumes, [9, 10, 11, 12]);
  assert.deepEqual(late[0].flags, []);
  assert.deepEqual(est.addEvent(ev(1, 18)), [], 'needs volumes 22..25, not there yet');
  for (let t = 20; t < 25; t++) assert.deepEqual(est.addVolume(t, vol(t), 0, t), []);
  assert.equal(est.addVolume(25, vol(25), 0, 25).length, 1);
});

test('a missing volume inside the window flags the trial (and the mean uses only the volumes that came)', () => {
  const est = new TrialResponseEstimator(3, { tr: 2 }, { run: 'r1', subject: 's' });
  est.addEvent(ev(0, 10));
  for (const t of [0, 1, 2, 3, 4, 5, 6]) assert.deepEqual(est.addVolume(t, vol(t), 0, t), []);
  // volume 8 arrives but 7 never did: the trial is complete (no later volume can fill 7 in an ordered stream)
  const [r] = est.addVolume(8, vol(8), 0, 8);
  assert.ok(r.flags.includes('missing-volume'), `flags ${r.flags}`);
  assert.deepEqual(r.volumes, [8]);
  assert.deepEqual(
    Array.from(r.vector).map((x) => +x.toFixed(5)),
    [8, 8.1, 8.2],
  );
});

test('a run shorter than the response window: pending trials are emitted at run end, flagged incomplete', () => {
  const est = new TrialResponseEstimator(3, { tr: 2 }, { run: 'r1', subject: 's' });
  est.addEvent(ev(0, 2)); // needs volumes 3, 4 ([6, 10) s)
  est.addEvent(ev(1, 6)); // needs volumes 5, 6
  for (let t = 0; t < 4; t++) assert.deepEqual(est.addVolume(t, vol(t), 0, t), []); // the run ends at 8 s
  const out = est.endRun();
  assert.equal(out.length, 2);
  assert.ok(out[0].flags.includes('incomplete-window'));
  assert.deepEqual(out[0].volumes, [3]);
  assert.ok(out[1].flags.includes('incomplete-window') && out[1].flags.includes('no-data'));
  assert.ok(
    out[1].vector.every((x) => x === 0),
    'no data → zero vector, flagged, never NaN',
  );
});

test('high motion in the window and volumes without z-scores (warm-up) are flagged', () => {
  const est = new TrialResponseEstimator(2, { tr: 2, fdThresholdMm: 0.5 }, { run: 'r1', subject: 's' });
  est.addEvent(ev(0, 0));
  est.addVolume(0, null, 0, 0);
  est.addVolume(1, null, 0, 0);
  est.addVolume(2, null, 0, 0);
  const [r] = est.addVolume(3, vol(3, 2), 1.2, 0);
  assert.deepEqual(r.flags.sort(), ['high-motion', 'warmup']);
  assert.deepEqual(r.volumes, [3]);
});

test('LSS beta recovers each trial amplitude exactly under overlapping HRFs (4 s ISI) when the other trials share one', () => {
  const tr = 1,
    V = 2,
    n = 6;
  for (let target = 0; target < n; target++) {
    const amp = (i: number, v: number) => (i === target ? [2.5, -1.5][v] : [1, 0.5][v]);
    const events = Array.from({ length: n }, (_, i) => ev(i, 4 + 4 * i, 3));
    const est = new TrialResponseEstimator(
      V,
      { tr, method: 'lss-beta', lssWindow: [0, 16] },
      { run: 'r1', subject: 's' },
    );
    for (const e of events) est.addEvent(e);
    let got: Float32Array | null = null;
    for (let t = 0; t < 60; t++) {
      const y = new Float32Array(V);
      for (let v = 0; v < V; v++) {
        y[v] = 0.3;
        events.forEach((e, i) => {
          y[v] += amp(i, v) * boxcarResponse(t * tr, e.onset, e.duration);
        });
      }
      for (const r of est.addVolume(t, y, 0, t)) if (r.trial === target) got = r.vector;
    }
    assert.ok(got, `trial ${target} emitted`);
    for (let v = 0; v < V; v++)
      assert.ok(Math.abs(got[v] - amp(target, v)) < 1e-4, `trial ${target} voxel ${v}: ${got[v]}`);
  }
  const peak = Array.from({ length: 200 }, (_, i) => doubleGammaHrf(i * 0.1));
  assert.ok(Math.abs(peak.indexOf(Math.max(...peak)) * 0.1 - 5) < 0.15, 'HRF peaks at 5 s');
});
