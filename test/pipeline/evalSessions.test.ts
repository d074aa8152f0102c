// The evaluation of recorded response files gives the numbers live decoding gave: same captions, same scores, for
// single trials and for the means of repeated stimuli. And its intervals are honest bootstrap intervals.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer } from '../../src/server/index.js';
import { replaySession } from '../../src/replay/index.js';
import type { DecodedTrial, Pipeline } from '../../src/pipeline/pipeline.js';
import { startDecoding } from '../../src/app/decoding.js';
import { BrainDecoder } from '../../src/inference/decoder.js';
import { RidgeRetrieval } from '../../src/inference/baseline.js';
import { findResponseRuns } from '../../src/pipeline/responseFiles.js';
import { DERIVATIVE } from '../../src/pipeline/captionFiles.js';
import {
  decodeResponseRuns,
  pairedCiderComparison,
  scoreConditions,
  scoreWithIntervals,
} from '../../src/pipeline/evaluateResponses.js';
import { byPresentation, corpusScores } from '../../src/pipeline/summary.js';
import { tinyBundle } from '../inference/tinyBundle.js';
import { DEFAULT_RERANK, rerankOptions, type RerankSetting } from '../../src/inference/rerankSetting.js';
import { writeSyntheticSession } from '../e2e/syntheticSession.js';

test('decoding the recorded responses reproduces the live captions and scores exactly', async () => {
  await liveVersusRecorded({ liveBatch: 1, offlineBatch: 1 });
});

test('with reranking (steered sampled candidates, read-out + ridge guide) recorded responses still reproduce live, batched differently', async () => {
  await liveVersusRecorded({ liveBatch: 8, offlineBatch: 3, rerank: { ...DEFAULT_RERANK, candidates: 4 } });
});

test('with the default steered greedy caption recorded responses reproduce live, batched differently', async () => {
  await liveVersusRecorded({ liveBatch: 8, offlineBatch: 3, rerank: DEFAULT_RERANK });
});

async function liveVersusRecorded(o: {
  liveBatch: number;
  offlineBatch: number;
  rerank?: RerankSetting;
}): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), 'msx-evalrec-'));
  const bundle = tinyBundle();
  const decoder = await BrainDecoder.load(bundle);
  const baseline = await RidgeRetrieval.load(decoder.bundle, decoder.sessions);
  const record = join(work, 'record');
  const rerank = o.rerank ? rerankOptions(o.rerank, baseline) : undefined;
  if (o.rerank?.steer) assert.ok(rerank?.steer, 'the tiny bundle has a caption bank to steer towards');
  const decode = rerank ? { rerank } : undefined;
  let pipeline!: Pipeline;
  const srv = await startServer({
    port: 0,
    log: () => {},
    recordDir: record,
    onHub: (hub) => {
      pipeline = startDecoding(hub, {
        decoder,
        baseline,
        recordDir: record,
        maxBatch: o.liveBatch,
        lossless: true,
        liveMetrics: false,
        log: () => {},
        ...(decode ? { decode } : {}),
      });
    },
  });
  const live: DecodedTrial[] = [];
  try {
    const s = await writeSyntheticSession(join(work, 'session'), join(bundle, 'masks', 'sub-sim01_roi-mask.nii.gz'), {
      trials: 12,
      motionFrom: 30,
    });
    pipeline.decoded$.subscribe((d) => live.push(d));
    const replay = await replaySession({ session: s.dir, url: srv.url, speed: 'max' });
    await pipeline.whenDone(replay.runs);
  } finally {
    await pipeline.close();
    await srv.close();
  }
  try {
    const runs = findResponseRuns(join(record, 'derivatives', DERIVATIVE));
    const offline = await decodeResponseRuns(runs, decoder, baseline, {
      batch: o.offlineBatch,
      ...(decode ? { decode } : {}),
    });
    assert.equal(offline.length, 12);
    live.sort((a, b) => a.trial - b.trial);
    for (const [i, t] of offline.entries()) {
      assert.equal(t.caption, live[i].caption, `trial ${i}: single-trial caption`);
      assert.equal(t.baseline, live[i].baseline, `trial ${i}: baseline caption`);
      assert.equal(t.mean?.caption, live[i].mean?.caption, `trial ${i}: mean caption`);
      assert.equal(t.presentation, live[i].presentation);
    }
    // presentations 2 and 3 of four stimuli, less any whose earlier showing had no data (a warm-up trial)
    assert.equal(offline.filter((t) => t.mean).length, live.filter((d) => d.mean).length);
    assert.ok(offline.filter((t) => t.mean).length >= 6);
    const refs = new Map(live.map((d) => [d.stimulusId, d.references!]));
    const scores = scoreConditions(offline, (id) => refs.get(id), { resamples: 50 });
    const liveSingle = corpusScores(
      Object.fromEntries(live.map((d) => [`${d.trial}`, d.references!])),
      Object.fromEntries(live.map((d) => [`${d.trial}`, d.caption!])),
    );
    assert.equal(scores.single_trial.model.CIDEr.value, liveSingle.CIDEr);
    const livePres = byPresentation(
      live.map((d) => ({
        key: `${d.trial}`,
        presentation: d.presentation,
        references: d.references!,
        caption: d.caption!,
        baseline: d.baseline,
        mean: d.mean,
      })),
    );
    assert.equal(
      Number(scores.mean_of_2.model.CIDEr.value.toFixed(4)),
      livePres.find((r) => r.presentation === 2)!.CIDEr,
    );
    assert.equal(
      Number(scores.mean_of_3.baseline!.CIDEr.value.toFixed(4)),
      livePres.find((r) => r.presentation === 3)!.baseline_CIDEr,
    );
  } finally {
    await baseline?.release();
    await decoder.release();
    rmSync(work, { recursive: true, force: true });
  }
}

/** Captions for the bootstrap tests: a scene's references are built from one of them. */
const caps = [
  'a red car on a street',
  'a dog on the grass',
  'a bowl of fruit',
  'a man on a bike',
  'a boat on a lake',
  'a cat on a sofa',
];

test('bootstrap intervals over scenes bracket the corpus score and narrow with more scenes', () => {
  const mk = (n: number) =>
    Array.from({ length: n }, (_, i) => ({
      scene: `s${i}`,
      references: [caps[i % caps.length], `${caps[i % caps.length]} today`],
      caption: i % 3 === 0 ? caps[(i + 1) % caps.length] : caps[i % caps.length],
    }));
  const small = scoreWithIntervals(mk(12), { resamples: 300 });
  const large = scoreWithIntervals(mk(120), { resamples: 300 });
  for (const r of [small, large]) {
    assert.ok(r.CIDEr.lo <= r.CIDEr.value && r.CIDEr.value <= r.CIDEr.hi, JSON.stringify(r.CIDEr));
    assert.ok(r.BLEU4.lo <= r.BLEU4.hi);
  }
  assert.ok(large.CIDEr.hi - large.CIDEr.lo < small.CIDEr.hi - small.CIDEr.lo, 'more scenes, narrower interval');
  assert.deepEqual(scoreWithIntervals(mk(12), { resamples: 300 }), small, 'seeded: the same interval every time');
});

test('the paired comparison sees a small, consistent win that two overlapping marginal intervals cannot', () => {
  // Scenes differ a lot in difficulty (half are missed by both), and the model is right on 2 more scenes in 20 than the
  // baseline: the marginal intervals overlap, the paired difference stays above zero.
  const rows = Array.from({ length: 200 }, (_, i) => {
    const ref = caps[i % caps.length];
    const hard = i % 2 === 1;
    const wrong = caps[(i + 1) % caps.length];
    return {
      scene: `s${i}`,
      references: [ref, `${ref} today`],
      model: hard ? wrong : ref,
      baseline: hard || i % 20 === 0 || i % 20 === 10 ? wrong : ref,
    };
  });
  const m = scoreWithIntervals(
    rows.map((r) => ({ scene: r.scene, references: r.references, caption: r.model })),
    { resamples: 400 },
  );
  const b = scoreWithIntervals(
    rows.map((r) => ({ scene: r.scene, references: r.references, caption: r.baseline })),
    { resamples: 400 },
  );
  const p = pairedCiderComparison(rows, { resamples: 400 });
  assert.ok(
    Math.abs(p.CIDEr_difference.value - (m.CIDEr.value - b.CIDEr.value)) < 1e-9,
    'point = difference of the means',
  );
  assert.ok(Math.abs(p.CIDEr_ratio.value - m.CIDEr.value / b.CIDEr.value) < 1e-9, 'point = ratio of the means');
  assert.ok(m.CIDEr.lo < b.CIDEr.hi, `marginal intervals overlap: ${JSON.stringify([m.CIDEr, b.CIDEr])}`);
  assert.ok(p.CIDEr_difference.lo > 0, JSON.stringify(p.CIDEr_difference));
  assert.ok(p.CIDEr_ratio.lo > 1, JSON.stringify(p.CIDEr_ratio));
  // Same captions on both sides: no difference, and the interval collapses to it.
  const same = pairedCiderComparison(
    rows.map((r) => ({ ...r, baseline: r.model })),
    { resamples: 100 },
  );
  assert.deepEqual([same.CIDEr_difference.lo, same.CIDEr_difference.value, same.CIDEr_difference.hi], [0, 0, 0]);
});
