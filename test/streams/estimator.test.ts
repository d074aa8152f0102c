// Which trial-response estimator decodes better on simulated sessions? Simulated NSD-like runs (3 s images,
// 1 s gaps), each stimulus once per run, processed online exactly as served (cumulative detrend → running z-score
// → window-mean or LSS), then stimulus identification across runs by correlation with the other runs' mean
// response. The numbers printed here are the ones docs/preprocessing.md quotes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { StimulusEvent } from '../../src/core/types.js';
import { IncrementalDetrender } from '../../streams/detrend.js';
import { boxcarResponse } from '../../streams/hrf.js';
import { TrialResponseEstimator } from '../../streams/trialResponses.js';
import { RunningZScore } from '../../streams/zscore.js';
import { rng } from '../../src/bench/preprocess.js';

interface SimOpts {
  V: number;
  nStim: number;
  runs: number;
  isi: number;
  tr: number;
  noise: number;
  seed: number;
}

function simulate(o: SimOpts, method: 'window-mean' | 'lss-beta'): number {
  const r = rng(o.seed);
  const patterns = Array.from({ length: o.nStim }, () => Float64Array.from({ length: o.V }, () => r.normal()));
  const responses: { run: number; stim: number; vec: Float32Array }[] = [];
  for (let run = 0; run < o.runs; run++) {
    const order = Array.from({ length: o.nStim }, (_, i) => i).sort(() => r.uniform() - 0.5);
    const events: StimulusEvent[] = order.map((s, i) => ({
      run: `r${run}`,
      trial: i,
      onset: 6 + i * o.isi,
      duration: 3,
      stimulusId: String(s),
    }));
    const T = Math.ceil((6 + o.nStim * o.isi + 16) / o.tr);
    const det = new IncrementalDetrender(o.V, { tr: o.tr, motion: false });
    const z = new RunningZScore(o.V);
    const est = new TrialResponseEstimator(o.V, { tr: o.tr, method }, { run: `r${run}`, subject: 'sim' });
    const y = new Float32Array(o.V),
      d = new Float32Array(o.V),
      zz = new Float32Array(o.V);
    const ar = new Float64Array(o.V);
    const drift = Float64Array.from({ length: o.V }, () => r.normal() * 20);
    let next = 0;
    const out: ReturnType<TrialResponseEstimator['addVolume']> = [];
    for (let t = 0; t < T; t++) {
      const time = t * o.tr;
      // events are announced when their onset has passed (as a live stimulus log would)
      while (next < events.length && events[next].onset <= time) out.push(...est.addEvent(events[next++]));
      const h = events.map((e) => boxcarResponse(time, e.onset, e.duration));
      for (let v = 0; v < o.V; v++) {
        ar[v] = 0.3 * ar[v] + o.noise * r.normal();
        let s = 0;
        for (let i = 0; i < events.length; i++) if (h[i] !== 0) s += h[i] * patterns[Number(events[i].stimulusId)][v];
        y[v] = 1000 + drift[v] * (time / 200) + 10 * s + ar[v];
      }
      const ok = det.push(t, y, null, d);
      if (ok) z.push(d, zz);
      out.push(...est.addVolume(t, ok ? zz.slice() : null, 0, 0));
    }
    while (next < events.length) out.push(...est.addEvent(events[next++]));
    out.push(...est.endRun());
    for (const tr of out) responses.push({ run, stim: Number(tr.stimulusId), vec: tr.vector });
  }
  // identification: each trial against the mean of the other runs' responses to every stimulus
  let correct = 0,
    total = 0;
  for (let run = 0; run < o.runs; run++) {
    const tmpl = Array.from({ length: o.nStim }, () => new Float64Array(o.V));
    for (const x of responses) if (x.run !== run) for (let v = 0; v < o.V; v++) tmpl[x.stim][v] += x.vec[v];
    for (const x of responses) {
      if (x.run !== run) continue;
      let best = -1,
        bestC = -Infinity;
      tmpl.forEach((m, s) => {
        const c = corr(x.vec, m);
        if (c > bestC) {
          bestC = c;
          best = s;
        }
      });
      total++;
      if (best === x.stim) correct++;
    }
  }
  return correct / total;
}

function corr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let ma = 0,
    mb = 0;
  for (let i = 0; i < a.length; i++) {
    ma += a[i];
    mb += b[i];
  }
  ma /= a.length;
  mb /= a.length;
  let sab = 0,
    saa = 0,
    sbb = 0;
  for (let i = 0; i < a.length; i++) {
    const x = a[i] - ma,
      y = b[i] - mb;
    sab += x * y;
    saa += x * x;
    sbb += y * y;
  }
  return sab / Math.sqrt(saa * sbb + 1e-30);
}

test('window-mean beats LSS on rapid (NSD-like 4 s) designs; LSS wins only on slow designs (20 s ISI)', () => {
  const rows: string[] = [];
  const acc: Record<string, number[]> = { 'window-mean': [], 'lss-beta': [] };
  for (const [isi, tr] of [
    [4, 1.6],
    [8, 2],
    [20, 2],
  ] as const) {
    for (const method of ['window-mean', 'lss-beta'] as const) {
      const a = [1, 2, 3].map((seed) => simulate({ V: 150, nStim: 30, runs: 3, isi, tr, noise: 8, seed }, method));
      const mean = a.reduce((x, y) => x + y, 0) / a.length;
      acc[method].push(mean);
      rows.push(
        `ISI ${isi} s TR ${tr} s ${method}: ${(100 * mean).toFixed(1)}% (seeds ${a.map((x) => (100 * x).toFixed(0)).join('/')})`,
      );
    }
  }
  console.log(`identification accuracy (chance 3.3%): ${rows.join('; ')}`);
  for (const m of Object.keys(acc)) for (const a of acc[m]) assert.ok(a > 2 / 30, `${m} at ${a}: not above chance`);
  const [wm, lss] = [acc['window-mean'], acc['lss-beta']];
  assert.ok(wm[0] > lss[0] + 0.2, 'rapid design: window-mean (the training estimator) is clearly better');
  assert.ok(lss[2] > wm[2], 'slow design: LSS, a matched filter, is better — the LSS path is not broken');
});
