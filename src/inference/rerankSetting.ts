// How live decoding chooses its caption among the LM's candidates, as a plain setting (what the command line and the
// summaries carry) and as the decoder's options.
import type { RidgeRetrieval } from './baseline.js';
import type { RerankOptions } from './decoder.js';
import { RetrievedReferenceScorer, SOFT_REFERENCES, SoftReferenceScorer } from './referenceScorer.js';
import { REFERENCE_GUIDE } from './referenceGuide.js';

export type RerankGuide = 'readout' | 'readout+ridge';
/** 'embedding': cosine of the candidate's sentence embedding with the target; 'references': CIDEr-D against the k
 * training captions nearest to the target; 'soft-references': CIDEr-D against the k nearest (centred similarity), each
 * weighted by its softmax similarity, plus 0.1 × the candidate's mean token log-probability (docs/inference.md,
 * "Choosing among candidates"). */
export type RerankScore = 'embedding' | 'references' | 'soft-references';

export interface RerankSetting {
  /** Candidates per trial; 1 = the LM's greedy caption alone. */
  candidates: number;
  strategy: 'beam' | 'sample';
  guide: RerankGuide;
  score: RerankScore;
  /** Nearest training captions used as references by the 'references' and 'soft-references' scores. */
  references: number;
  /**
   * Weight of the steering towards the soft references while each candidate is generated (0: off;
   * `ReferenceGuide`, docs/inference.md "Steering the LM").
   */
  steer: number;
}

export const MAX_STEER = 10;

export const MAX_RERANK_REFERENCES = 200;

/** How many nearest training captions each reference score uses unless told otherwise. */
export const DEFAULT_REFERENCES: Record<Exclude<RerankScore, 'embedding'>, number> = {
  references: 20,
  'soft-references': SOFT_REFERENCES.pool,
};

/** What live decoding uses unless told otherwise: the steered greedy caption, which is as good live as 16 candidates
 * chosen by soft references and fits the 300 ms decode budget on 2 cores (docs/experiments.md E32; the candidates'
 * options were selected in E6, E10, E12 and apply with --rerank N). */
export const DEFAULT_RERANK: RerankSetting = {
  candidates: 1,
  strategy: 'sample',
  guide: 'readout+ridge',
  score: 'soft-references',
  references: DEFAULT_REFERENCES['soft-references'],
  steer: REFERENCE_GUIDE.weight,
};

/**
 * The decoder's options for a setting; the ridge guide and the reference scores need the bundle's baseline (its
 * caption bank). Without one: the read-out alone, scored by embedding.
 */
export function rerankOptions(s: RerankSetting, baseline: RidgeRetrieval | null): RerankOptions | undefined {
  const steered = s.steer > 0 && baseline !== null;
  if (s.candidates <= 1 && !steered) return undefined;
  const guide = s.guide === 'readout+ridge' && baseline ? { guide: baseline } : {};
  const steer = steered ? { steer: { bank: baseline, weight: s.steer } } : {};
  // One steered candidate: the steered greedy caption, nothing to score.
  if (s.candidates <= 1) return { candidates: 1, strategy: 'sample', ...guide, ...steer };
  return {
    candidates: s.candidates,
    strategy: s.strategy,
    ...guide,
    ...steer,
    ...(s.score === 'references' && baseline
      ? { scorer: RetrievedReferenceScorer.create(baseline, s.references) }
      : {}),
    ...(s.score === 'soft-references' && baseline
      ? { scorer: SoftReferenceScorer.create(baseline, s.references), lmWeight: SOFT_REFERENCES.lmWeight }
      : {}),
  };
}
