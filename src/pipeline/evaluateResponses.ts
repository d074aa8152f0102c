// Caption quality from recorded response files, as live decoding would get it: every trial's single-trial response
// and, from a stimulus's second presentation on, the mean of its presentations so far (RepeatMeans, the class live
// serving uses, over the rows in recorded order), decoded by the same BrainDecoder and ridge baseline. Scores come with
// bootstrap confidence intervals over scenes, because 20-scene results swing by a factor of two.
import { RepeatMeans } from '../../streams/index.js';
import type { TrialResponse } from '../core/types.js';
import type { BrainDecoder, DecodeOptions } from '../inference/decoder.js';
import type { RidgeRetrieval } from '../inference/baseline.js';
import { mulberry32 } from '../inference/lm.js';
import {
  bleuFromTotals,
  bleuStats,
  ciderD,
  ciderImage,
  ptbTokenize,
  rougeL,
  type BleuStats,
} from '../metrics/index.js';
import type { ResponseRunFile } from './responseFiles.js';

export interface EvalTrial {
  key: string;
  subject: string;
  session: string;
  run: string;
  trial: number;
  stimulusId: string;
  presentation: number;
  flags: string[];
  caption: string;
  baseline?: string;
  /** The read-out without the LM: the Q-Former's caption embedding → nearest training caption. */
  readout?: string;
  /** From the second presentation on: decoded from the mean of the presentations so far. */
  mean?: { of: number; caption: string; baseline?: string; readout?: string };
}

/** Decodes every recorded trial (and its repeat mean) in recorded order, `batch` trials per decoder call. */
export async function decodeResponseRuns(
  runs: readonly ResponseRunFile[],
  decoder: BrainDecoder,
  baseline: RidgeRetrieval | null,
  opts: {
    batch?: number;
    sessionLabel?: (r: ResponseRunFile) => string;
    onProgress?: (done: number, total: number) => void;
    decode?: DecodeOptions;
  } = {},
): Promise<EvalTrial[]> {
  const repeats = new RepeatMeans();
  type Item = { t: EvalTrial; vector: Float32Array; mean?: Float32Array; of?: number };
  const items: Item[] = [];
  for (const r of runs) {
    const session = opts.sessionLabel?.(r) ?? r.session;
    for (const [i, row] of r.rows.entries()) {
      const vector = r.data.subarray(i * r.voxels, (i + 1) * r.voxels);
      const p = repeats.add(session, { subject: r.subject, stimulusId: row.stimulusId, vector, flags: row.flags });
      if (p.presentation !== row.presentation && opts.sessionLabel === undefined) {
        throw new Error(
          `${r.tsv}: trial ${row.trial} is recorded as presentation ${row.presentation} but is presentation ${p.presentation} in recorded order; are runs of the session missing?`,
        );
      }
      items.push({
        t: {
          key: `${session}/${r.run}/${row.trial}`,
          subject: r.subject,
          session,
          run: r.run,
          trial: row.trial,
          stimulusId: row.stimulusId,
          presentation: p.presentation,
          flags: row.flags,
          caption: '',
        },
        vector,
        mean: p.mean,
        of: p.meanOf,
      });
    }
  }
  const asResponse = (it: Item, v: Float32Array): TrialResponse => ({
    run: it.t.run,
    subject: it.t.subject,
    trial: it.t.trial,
    stimulusId: it.t.stimulusId,
    vector: v,
    method: 'window-mean',
    window: { start: 0, end: 0 },
    volumes: [],
    flags: it.t.flags,
    readyAt: Date.now(),
    event: { run: it.t.run, trial: it.t.trial, onset: 0, duration: 0, stimulusId: it.t.stimulusId },
  });
  const batch = Math.max(1, opts.batch ?? 8);
  for (let s = 0; s < items.length; s += batch) {
    const chunk = items.slice(s, s + batch);
    const inputs: TrialResponse[] = [];
    for (const it of chunk) {
      inputs.push(asResponse(it, it.vector));
      if (it.mean) inputs.push(asResponse(it, it.mean));
    }
    const caps = await decoder.decodeBatch(inputs, { ...opts.decode, reconstruct: false });
    let k = 0;
    for (const it of chunk) {
      const c = caps[k++];
      it.t.caption = c.text;
      if (baseline) it.t.readout = baseline.nearest(c.captionEmbedding.slice()).caption;
      if (baseline?.has(it.t.subject)) it.t.baseline = (await baseline.predict(it.t.subject, it.vector)).caption;
      if (it.mean) {
        const m = caps[k++];
        it.t.mean = {
          of: it.of!,
          caption: m.text,
          ...(baseline ? { readout: baseline.nearest(m.captionEmbedding.slice()).caption } : {}),
        };
        if (baseline?.has(it.t.subject)) it.t.mean.baseline = (await baseline.predict(it.t.subject, it.mean)).caption;
      }
    }
    opts.onProgress?.(Math.min(items.length, s + batch), items.length);
  }
  return items.map((it) => it.t);
}

export interface Interval {
  value: number;
  lo: number;
  hi: number;
}

export interface ConditionScores {
  /** Trials scored, and distinct scenes among them. */
  trials: number;
  scenes: number;
  model: Record<string, Interval>;
  baseline?: Record<string, Interval>;
  /** Q-Former caption embedding → nearest training caption (no LM). */
  readout?: Record<string, Interval>;
  /** Model against the ridge baseline on the same trials, paired (see pairedCiderComparison). */
  versus_baseline?: PairedComparison;
}

export interface PairedComparison {
  /** Model CIDEr-D minus the baseline's. */
  CIDEr_difference: Interval;
  /** Model CIDEr-D over the baseline's. */
  CIDEr_ratio: Interval;
}

const METRICS = ['CIDEr', 'BLEU4', 'BLEU1', 'ROUGE_L'] as const;

/**
 * Corpus metrics with a percentile bootstrap over scenes (a resample draws scenes with replacement and keeps all their
 * trials), so an interval reflects which images happened to be shown, the dominant source of spread. CIDEr-D is the
 * mean of per-image scores whose document frequencies come from the whole evaluated set; a resample averages those
 * fixed per-image scores (recomputing document frequencies over a resample full of duplicates would bias it low).
 */
export function scoreWithIntervals(
  rows: readonly { scene: string; references: string[]; caption: string }[],
  opts: { resamples?: number; seed?: number; level?: number } = {},
): Record<string, Interval> {
  // Per-image statistics once (BLEU n-gram counts, ROUGE-L, CIDEr-D with the whole set's document frequencies); a
  // resample only re-sums them, so 500 resamples of 900 trials take milliseconds rather than minutes.
  const refsTok = rows.map((r) => r.references.map((x) => ptbTokenize(x)));
  const capTok = rows.map((r) => ptbTokenize(r.caption));
  const bleu = rows.map((_, i) => bleuStats(capTok[i], refsTok[i]));
  const rouge = rows.map((_, i) => rougeL(capTok[i], refsTok[i]));
  const cider = ciderD(rows.map((_, i) => ciderImage(capTok[i], refsTok[i])));
  const score = (idx: readonly number[]): Record<string, number> => {
    const t: BleuStats = { testlen: 0, reflen: 0, guess: [0, 0, 0, 0], correct: [0, 0, 0, 0] };
    let r = 0,
      c = 0;
    for (const i of idx) {
      const b = bleu[i];
      t.testlen += b.testlen;
      t.reflen += b.reflen;
      for (let k = 0; k < 4; k++) {
        t.guess[k] += b.guess[k];
        t.correct[k] += b.correct[k];
      }
      r += rouge[i];
      c += cider[i];
    }
    const bl = bleuFromTotals(t);
    return { CIDEr: c / idx.length, BLEU4: bl[3], BLEU1: bl[0], ROUGE_L: r / idx.length };
  };
  const point = score(rows.map((_, i) => i));
  const level = opts.level ?? 0.95;
  const draws = sceneBootstrap(
    rows.map((r) => r.scene),
    opts,
    score,
  );
  return Object.fromEntries(METRICS.map((m) => [m, { value: point[m], ...percentiles(draws[m] ?? [], level) }]));
}

/**
 * `stat` over `opts.resamples` resamples of the scenes (drawn with replacement; a drawn scene brings all its rows), as
 * draws per statistic. Seeded, so the same rows give the same draws; none when there are fewer than 2 scenes.
 */
function sceneBootstrap(
  sceneOfRow: readonly string[],
  opts: { resamples?: number; seed?: number },
  stat: (idx: readonly number[]) => Record<string, number>,
): Record<string, number[]> {
  const byScene = new Map<string, number[]>();
  sceneOfRow.forEach((scene, i) => {
    const g = byScene.get(scene) ?? [];
    g.push(i);
    byScene.set(scene, g);
  });
  const scenes = [...byScene.values()];
  const rand = mulberry32(opts.seed ?? 12345);
  const draws: Record<string, number[]> = {};
  for (let b = 0; b < (opts.resamples ?? 1000) && scenes.length > 1; b++) {
    const idx: number[] = [];
    for (let k = 0; k < scenes.length; k++) idx.push(...scenes[Math.floor(rand() * scenes.length)]);
    for (const [m, v] of Object.entries(stat(idx))) (draws[m] ??= []).push(v);
  }
  return draws;
}

/**
 * Model against baseline on the same trials with a paired percentile bootstrap over scenes: every resample keeps both
 * captions of each drawn trial, so the interval of the difference (or ratio) answers "does the model beat the
 * baseline?" directly, where two marginal intervals that overlap cannot (their errors share the scenes drawn).
 * Per-image CIDEr-D as in scoreWithIntervals (document frequencies from the whole set, per method).
 */
export function pairedCiderComparison(
  rows: readonly { scene: string; references: string[]; model: string; baseline: string }[],
  opts: { resamples?: number; seed?: number; level?: number } = {},
): PairedComparison {
  const refsTok = rows.map((r) => r.references.map((x) => ptbTokenize(x)));
  const a = ciderD(rows.map((r, i) => ciderImage(ptbTokenize(r.model), refsTok[i])));
  const b = ciderD(rows.map((r, i) => ciderImage(ptbTokenize(r.baseline), refsTok[i])));
  const stat = (idx: readonly number[]) => {
    let sa = 0,
      sb = 0;
    for (const i of idx) {
      sa += a[i];
      sb += b[i];
    }
    return { difference: (sa - sb) / idx.length, ratio: sb > 0 ? sa / sb : NaN };
  };
  const level = opts.level ?? 0.95;
  const point = stat(rows.map((_, i) => i));
  const draws = sceneBootstrap(
    rows.map((r) => r.scene),
    opts,
    stat,
  );
  return {
    CIDEr_difference: { value: point.difference, ...percentiles(draws.difference ?? [], level) },
    CIDEr_ratio: { value: point.ratio, ...percentiles(draws.ratio ?? [], level) },
  };
}

/** The central `level` percentile interval of `xs` (linear interpolation; NaN when there are no draws). */
function percentiles(xs: number[], level: number): { lo: number; hi: number } {
  const sorted = xs.filter((x) => Number.isFinite(x)).sort((x, y) => x - y);
  const q = (p: number) => {
    if (!sorted.length) return NaN;
    const k = p * (sorted.length - 1);
    const lo = Math.floor(k);
    return sorted[lo] + (sorted[Math.ceil(k)] - sorted[lo]) * (k - lo);
  };
  return { lo: q((1 - level) / 2), hi: q(1 - (1 - level) / 2) };
}

/**
 * The conditions a live session decodes: every single trial, and by presentation k the captions a viewer sees then
 * (k = 1 single trials, k ≥ 2 the mean of the k presentations so far).
 */
export function scoreConditions(
  trials: readonly EvalTrial[],
  references: (stimulusId: string) => string[] | undefined,
  opts: { resamples?: number; seed?: number } = {},
): Record<string, ConditionScores> {
  const out: Record<string, ConditionScores> = {};
  const cond = (name: string, sel: { t: EvalTrial; caption: string; baseline?: string; readout?: string }[]) => {
    const rows = sel.map((x) => ({ x, refs: references(x.t.stimulusId) })).filter((r) => r.refs && r.refs.length);
    if (!rows.length) return;
    const model = scoreWithIntervals(
      rows.map((r) => ({ scene: r.x.t.stimulusId, references: r.refs!, caption: r.x.caption })),
      opts,
    );
    const c: ConditionScores = { trials: rows.length, scenes: new Set(rows.map((r) => r.x.t.stimulusId)).size, model };
    if (rows.every((r) => r.x.baseline !== undefined)) {
      c.baseline = scoreWithIntervals(
        rows.map((r) => ({ scene: r.x.t.stimulusId, references: r.refs!, caption: r.x.baseline! })),
        opts,
      );
      c.versus_baseline = pairedCiderComparison(
        rows.map((r) => ({
          scene: r.x.t.stimulusId,
          references: r.refs!,
          model: r.x.caption,
          baseline: r.x.baseline!,
        })),
        opts,
      );
    }
    if (rows.every((r) => r.x.readout !== undefined)) {
      c.readout = scoreWithIntervals(
        rows.map((r) => ({ scene: r.x.t.stimulusId, references: r.refs!, caption: r.x.readout! })),
        opts,
      );
    }
    out[name] = c;
  };
  cond(
    'single_trial',
    trials.map((t) => ({ t, caption: t.caption, baseline: t.baseline, readout: t.readout })),
  );
  const maxK = Math.max(0, ...trials.map((t) => t.presentation));
  for (let k = 2; k <= maxK; k++) {
    cond(
      `mean_of_${k}`,
      trials
        .filter((t) => t.presentation === k && t.mean)
        .map((t) => ({ t, caption: t.mean!.caption, baseline: t.mean!.baseline, readout: t.mean!.readout })),
    );
  }
  return out;
}
