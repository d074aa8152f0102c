// Scores caption candidates by CIDEr-D against the training captions nearest to the brain's predicted caption
// embedding: an expected-consensus estimate of how well each candidate will match what people would write about the
// scene. The caption kept is still one the LM generated; the retrieved captions are only the yardstick.
import { CiderCorpus, ptbTokenize } from '../metrics/index.js';
import type { RidgeRetrieval } from './baseline.js';

export interface CandidateScorer {
  /** One score per candidate text (higher is better) given the trial's target caption embedding. */
  scores(texts: readonly string[], target: Float32Array): number[];
}

/** The training caption bank as the scorers need it: captions and their MiniLM embeddings, rows unit length. */
export interface CaptionBank {
  readonly captions: readonly string[];
  /** [captions.length, dim], rows L2-normalised. */
  readonly embeddings: Float32Array;
  readonly dim: number;
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

/** The soft-reference rule's constants, selected on the first half of an offline pool (docs/experiments.md E12). */
export const SOFT_REFERENCES = {
  /** Training captions weighed per trial (the rest weigh < 1 % of the nearest at this temperature). */
  pool: 200,
  temperature: 0.05,
  /** Weight of the candidate's mean token log-probability added to its score (the decoder's `lmWeight`). */
  lmWeight: 0.1,
} as const;

/**
 * The bank captions nearest to a target, each weighted by exp((similarity − best) / T) instead of a flat top-k, with
 * similarities measured after removing the bank's mean direction: read-outs regress towards the bank's mean, so raw
 * cosines mostly measure that shared direction; centred, they rank the bank by what is specific to this prediction.
 * Python's twin: `soft_reference_weights` in models/mindsemantix/candidate_pool.py.
 */
export class SoftReferences {
  private constructor(
    private readonly mean: Float64Array,
    /** [captions, dim]: bank rows minus the mean, unit length (float64, as Python computes them). */
    private readonly centred: Float64Array,
    private readonly dim: number,
    readonly pool: number,
    readonly temperature: number,
  ) {}

  static create(
    bank: CaptionBank,
    pool: number = SOFT_REFERENCES.pool,
    temperature: number = SOFT_REFERENCES.temperature,
  ): SoftReferences {
    const { captions, embeddings, dim } = bank;
    if (embeddings.length !== captions.length * dim)
      throw new Error(`the caption bank has ${captions.length} captions but ${embeddings.length / dim} embeddings`);
    if (!(pool >= 1) || !(temperature > 0))
      throw new Error(`soft references need a pool of at least 1 caption and a positive temperature`);
    const mean = new Float64Array(dim);
    for (let i = 0; i < captions.length; i++) for (let d = 0; d < dim; d++) mean[d] += embeddings[i * dim + d];
    for (let d = 0; d < dim; d++) mean[d] /= captions.length;
    const centred = new Float64Array(embeddings.length);
    for (let i = 0; i < captions.length; i++) {
      let n = 0;
      for (let d = 0; d < dim; d++) n += (embeddings[i * dim + d] - mean[d]) ** 2;
      n = Math.sqrt(n) || 1;
      for (let d = 0; d < dim; d++) centred[i * dim + d] = (embeddings[i * dim + d] - mean[d]) / n;
    }
    return new SoftReferences(mean, centred, dim, pool, temperature);
  }

  /** The bank captions weighed for this target, nearest first, and their weights (the nearest weighs 1). */
  references(target: Float32Array): { refs: number[]; weights: number[] } {
    const { dim, mean } = this;
    if (target.length !== dim)
      throw new Error(`a target of ${target.length} values cannot be compared with the bank's ${dim}`);
    const tn = Math.hypot(...target) || 1;
    const c = new Float64Array(dim);
    for (let d = 0; d < dim; d++) c[d] = target[d] / tn - mean[d];
    const cn = Math.hypot(...c) || 1;
    const n = this.centred.length / dim;
    const sims = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      let dot = 0;
      for (let d = 0; d < dim; d++) dot += (c[d] / cn) * this.centred[i * dim + d];
      sims[i] = dot;
    }
    // Ties keep bank order, as numpy's stable argsort does.
    const refs = [...sims.keys()].sort((a, b) => sims[b] - sims[a] || a - b).slice(0, this.pool);
    const best = sims[refs[0]];
    return { refs, weights: refs.map((i) => Math.exp((sims[i] - best) / this.temperature)) };
  }
}

/** CIDEr-D of each candidate against the soft references of the target (`SoftReferences`). */
export class SoftReferenceScorer implements CandidateScorer {
  private constructor(
    private readonly corpus: CiderCorpus,
    private readonly soft: SoftReferences,
  ) {}

  static create(
    bank: CaptionBank,
    pool: number = SOFT_REFERENCES.pool,
    temperature: number = SOFT_REFERENCES.temperature,
  ): SoftReferenceScorer {
    const soft = SoftReferences.create(bank, pool, temperature);
    return new SoftReferenceScorer(new CiderCorpus(bank.captions, ptbTokenize), soft);
  }

  /** The bank captions weighed for this target, nearest first, and their weights (the nearest weighs 1). */
  references(target: Float32Array): { refs: number[]; weights: number[] } {
    return this.soft.references(target);
  }

  scores(texts: readonly string[], target: Float32Array): number[] {
    const { refs, weights } = this.soft.references(target);
    // An empty caption matches nothing; it can win only if nothing else was generated.
    return texts.map((t) => (t.trim() ? this.corpus.score(t, refs, weights) : -1));
  }
}

/** The candidate kept: the first with the highest score + lmWeight × its mean token log-probability (0 without tokens). */
export function chooseCandidate(
  scores: readonly number[],
  logprobs: readonly (readonly number[])[],
  lmWeight = 0,
): number {
  let best = 0;
  let bestScore = -Infinity;
  scores.forEach((s, c) => {
    const lp = logprobs[c] ?? [];
    const meanLp = lp.length ? lp.reduce((a, x) => a + x, 0) / lp.length : 0;
    const total = s + lmWeight * meanLp;
    if (total > bestScore) {
      bestScore = total;
      best = c;
    }
  });
  return best;
}
