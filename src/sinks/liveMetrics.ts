// Running BLEU/ROUGE-L/CIDEr-D (src/metrics, equal to pycocoevalcap) over the decoded trials that have references:
// the model's scores and the baseline's (once every scored trial has a baseline caption).
import { runKey } from '../core/types.js';
import { CaptionScorer } from '../metrics/index.js';
import type { DecodedTrial } from '../pipeline/pipeline.js';

export interface LiveMetrics {
  n: number;
  model: Record<string, number>;
  baseline?: Record<string, number>;
}

/** A scorer fed decoded trials one by one: the scores so far after each trial that has references, else undefined. */
export function liveMetrics(): (d: DecodedTrial) => LiveMetrics | undefined {
  const modelScores = new CaptionScorer();
  const baselineScores = new CaptionScorer();
  return (d) => {
    if (d.error || !d.references?.length) return undefined;
    const key = `${runKey({ subject: d.subject, session: d.session, run: d.run })}/${d.trial}`;
    modelScores.add(key, d.caption ?? '', d.references);
    if (d.baseline !== undefined) baselineScores.add(key, d.baseline, d.references);
    return {
      n: modelScores.size,
      model: { ...modelScores.scores() },
      baseline: baselineScores.size === modelScores.size ? { ...baselineScores.scores() } : undefined,
    };
  };
}
