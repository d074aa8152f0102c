// Scores caption candidates by CIDEr-D against the training captions nearest to the brain's predicted caption
// embedding: an expected-consensus estimate of how well each candidate will match what people would write about the
// scene. The caption kept is still one the LM generated; the retrieved captions are only the yardstick.
import { CiderCorpus, ptbTokenize } from '../metrics/index.js';
import type { RidgeRetrieval } from './baseline.js';

export interface CandidateScorer {
  /** One score per candidate text (higher is better) given the trial's target caption embedding. */
  scores(texts: readonly string[], target: Float32Array): number[];
}

export class RetrievedReferenceScorer implements CandidateScorer {
  private constructor(
    private readonly bank: RidgeRetrieval,
    private readonly corpus: CiderCorpus,
    /** How many nearest training captions serve as pseudo-references. */
    readonly k: number,
  ) {}

  /** Document frequencies come from the whole caption bank, so rare n-grams (an object, a colour) weigh most. */
  static create(bank: RidgeRetrieval, k: number): RetrievedReferenceScorer {
    return new RetrievedReferenceScorer(bank, new CiderCorpus(bank.captions, ptbTokenize), k);
  }

  scores(texts: readonly string[], target: Float32Array): number[] {
    const refs = this.bank.nearestIndices(Float32Array.from(target), this.k);
    // An empty caption matches nothing; it can win only if nothing else was generated.
    return texts.map((t) => (t.trim() ? this.corpus.score(t, refs) : -1));
  }
}
