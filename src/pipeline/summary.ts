// Numbers for the demo summary and the dashboard: percentiles and corpus caption metrics (src/metrics, equal to
// pycocoevalcap on the same inputs).
export function percentile(values: readonly number[], p: number): number {
  if (!values.length) return 0;
  const s = [...values].sort((a, b) => a - b);
  const rank = (p / 100) * (s.length - 1);
  const lo = Math.floor(rank);
  const hi = Math.ceil(rank);
  return s[lo] + (s[hi] - s[lo]) * (rank - lo);
}

export type Scores = Record<string, number>;
type ScoreModule = { scoreCaptions?: (refs: Record<string, string[]>, cands: Record<string, string>) => Scores | Promise<Scores> };

// src/metrics is written in parallel with this module; it is resolved at run time so the pipeline builds without it.
const METRICS_MODULE = '../metrics/index.js';
let metrics: Promise<ScoreModule | null> | undefined;

/** Corpus caption metrics (BLEU1..4, METEOR, ROUGE_L, CIDEr as src/metrics provides them); {} when unavailable. */
export async function corpusScores(refs: Record<string, string[]>, cands: Record<string, string>): Promise<Scores> {
  metrics ??= (import(METRICS_MODULE) as Promise<ScoreModule>).catch(() => null);
  const m = await metrics;
  if (!m?.scoreCaptions || !Object.keys(cands).length) return {};
  return m.scoreCaptions(refs, cands);
}
