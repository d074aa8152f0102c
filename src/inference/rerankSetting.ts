// How live decoding chooses its caption among the LM's candidates, as a plain setting (what the command line and the
// summaries carry) and as the decoder's options.
import type { RidgeRetrieval } from './baseline.js';
import type { RerankOptions } from './decoder.js';
import { RetrievedReferenceScorer } from './referenceScorer.js';

export type RerankGuide = 'readout' | 'readout+ridge';
/** 'embedding': cosine of the candidate's sentence embedding with the target; 'references': CIDEr-D against the training
 * captions nearest to the target (docs/inference.md, "Choosing among candidates"). */
export type RerankScore = 'embedding' | 'references';

export interface RerankSetting {
  /** Candidates per trial; 1 = the LM's greedy caption alone. */
  candidates: number;
  strategy: 'beam' | 'sample';
  guide: RerankGuide;
  score: RerankScore;
  /** Nearest training captions used as references by the 'references' score. */
  references: number;
}

export const MAX_RERANK_REFERENCES = 200;

/** What live decoding uses unless told otherwise (selected on held-out sessions: docs/experiments.md E6, E9). */
export const DEFAULT_RERANK: RerankSetting = {
  candidates: 16,
  strategy: 'sample',
  guide: 'readout+ridge',
  score: 'references',
  references: 20,
};

/**
 * The decoder's options for a setting; the ridge guide and the reference score need the bundle's baseline (its
 * caption bank). Without one: the read-out alone, scored by embedding.
 */
export function rerankOptions(s: RerankSetting, baseline: RidgeRetrieval | null): RerankOptions | undefined {
  if (s.candidates <= 1) return undefined;
  return {
    candidates: s.candidates,
    strategy: s.strategy,
    ...(s.guide === 'readout+ridge' && baseline ? { guide: baseline } : {}),
    ...(s.score === 'references' && baseline
      ? { scorer: RetrievedReferenceScorer.create(baseline, s.references) }
      : {}),
  };
}
