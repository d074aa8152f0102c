#!/usr/bin/env node
// Experiment tool (docs/experiments.md E32): steered decoding settings on the response files `eval sessions` recorded
// (data/eval-sessions, simulated sub-sim01 sessions of 5 × 60 trials), decoded as `eval sessions` decodes them; prints
// and appends one JSON line per setting: single-trial and mean-of-3 CIDEr-D (model, ridge) and the composition rates.
// Usage: node scripts/experiments/steerSweep.mjs SEEDS CONFIGS_JSON [OUT.jsonl]   (after `npm run build`)
//   CONFIGS_JSON: [{"name": "...", "candidates": N, "weight": W, "floor": F, "lambdas": [l3, l2, l1], "pool": K,
//                   "temperature": T, "cover": C, "coverMaxDf": D, "coverShare": S}, ...]
//                   (omitted fields: the defaults of src/inference/referenceGuide.ts)
import { appendFileSync } from 'node:fs';
import { join } from 'node:path';
const ROOT = new URL('../../', import.meta.url).pathname;
const D = join(ROOT, 'dist', 'src');
const { BrainDecoder } = await import(`${D}/inference/decoder.js`);
const { RidgeRetrieval, readBaselineCaptions } = await import(`${D}/inference/baseline.js`);
const { rerankOptions, DEFAULT_RERANK } = await import(`${D}/inference/rerankSetting.js`);
const { decodeResponseRuns, scoreConditions } = await import(`${D}/pipeline/evaluateResponses.js`);
const { findResponseRuns } = await import(`${D}/pipeline/responseFiles.js`);
const { compositionSummary } = await import(`${D}/pipeline/compositionSummary.js`);
const { readSceneTable } = await import(`${D}/pipeline/sceneTable.js`);
const { referencesOf } = await import(`${D}/cli/commands/evalSessions.js`);
const { parseCaption } = await import(`${D}/metrics/composition.js`);
const { SIM_VOCABULARY } = await import(`${D}/metrics/simVocabulary.js`);
const seeds = process.argv[2].split(',');
const configs = JSON.parse(process.argv[3]);
const out = process.argv[4] ?? 'steer-sweep.jsonl';
const W = join(ROOT, 'data', 'eval-sessions');
const decoder = await BrainDecoder.load(join(ROOT, 'models', 'bundles', 'default'), { verify: false });
const baseline = await RidgeRetrieval.load(decoder.bundle, decoder.sessions);
const training = readBaselineCaptions(decoder.bundle);
const sess = seeds.map((s) => {
  const dir = join(W, `sub-sim01_seed-${s}_5x60`);
  const refs = referencesOf(dir);
  return {
    name: `seed-${s}`,
    dir,
    refs,
    runs: findResponseRuns(join(W, 'responses', 'default', `seed-${s}`)),
    scenes: readSceneTable(dir),
  };
});
for (const c of configs) {
  const setting = {
    ...DEFAULT_RERANK,
    candidates: c.candidates ?? 1,
    steer: c.weight ?? 0,
    guide: c.guide ?? DEFAULT_RERANK.guide,
  };
  const r = rerankOptions(setting, baseline);
  if (r?.steer)
    Object.assign(
      r.steer,
      Object.fromEntries(
        ['floor', 'lambdas', 'pool', 'temperature', 'cover', 'coverMaxDf', 'coverShare']
          .filter((k) => c[k] !== undefined)
          .map((k) => [k, c[k]]),
      ),
    );
  const t0 = Date.now();
  const all = [];
  for (const s of sess) {
    const dec = await decodeResponseRuns(s.runs, decoder, baseline, {
      decode: { ...(r ? { rerank: r } : {}), reconstruct: false },
      sessionLabel: (x) => `${s.name}/${x.subject}/${x.session}`,
    });
    all.push(...dec);
  }
  const refsOf = (id) => {
    for (const s of sess) {
      const x = s.refs.get(id);
      if (x) return x;
    }
  };
  const sc = scoreConditions(all, refsOf, { resamples: 200 });
  const scenes = new Map();
  for (const s of sess) for (const [k, v] of s.scenes ?? []) scenes.set(k, v);
  const comp = compositionSummary(
    all.map((t) => ({ key: t.key, stimulusId: t.stimulusId, caption: t.caption, baseline: t.baseline })),
    scenes,
    training,
  );
  const comp3 = compositionSummary(
    all
      .filter((t) => t.presentation === 3 && t.mean)
      .map((t) => ({ key: t.key, stimulusId: t.stimulusId, caption: t.mean.caption, baseline: t.mean.baseline })),
    scenes,
    training,
  );
  // How many objects a caption names, and whether the first it names is the scene's main object.
  const named = (c) => parseCaption(c ?? '', SIM_VOCABULARY).objects.map((o) => o.category);
  const rate = (f) => Math.round((1e4 * all.filter(f).length) / all.length) / 1e4;
  const mean = (f) => Math.round((1e3 * all.reduce((a, t) => a + f(t), 0)) / all.length) / 1e3;
  const row = {
    ...c,
    seeds,
    secs: (Date.now() - t0) / 1000,
    single: sc.single_trial.model.CIDEr.value,
    ridge: sc.single_trial.baseline?.CIDEr.value,
    m3: sc.mean_of_3?.model.CIDEr.value,
    ridge3: sc.mean_of_3?.baseline?.CIDEr.value,
    obj: comp.model.object,
    col: comp.model.colour,
    copied: comp.model.copied,
    ridgeObj: comp.baseline?.object,
    obj3: comp3?.model.object,
    first: rate((t) => named(t.caption)[0] === scenes.get(t.stimulusId)?.facts.object),
    ridgeFirst: rate((t) => named(t.baseline)[0] === scenes.get(t.stimulusId)?.facts.object),
    named: mean((t) => new Set(named(t.caption)).size),
    examples: all.slice(0, 4).map((t) => t.caption),
  };
  console.log(JSON.stringify(row));
  appendFileSync(out, JSON.stringify(row) + '\n');
}
await decoder.release();
