// Steers the LM's next-token choice towards what the training captions nearest to the brain's read-out say: a product
// of two experts, the frozen LM after the soft prompt and a small n-gram model of those captions (weighted by how near
// each is). Reranking finished candidates by the same captions (soft references) needs many of them; steering every
// token gets a consensus-like caption from one row, and the LM can still join words no single training caption joins.
import type { TextTokenizer } from './tokenizer.js';
import type { CaptionBank } from './referenceScorer.js';
import { SOFT_REFERENCES, SoftReferences } from './referenceScorer.js';

/** Adds, per prompt of a batch, a log-bias to the LM's log-probabilities of some next tokens. */
export interface TokenGuide {
  /** One bias per token in `tokens`, for the continuation of `history` (generated tokens so far) of prompt `prompt`. */
  logBias(prompt: number, history: readonly number[], tokens: readonly number[]): Float64Array;
}

/** The steering constants, chosen on the selection sessions (docs/experiments.md E32). */
export const REFERENCE_GUIDE = {
  /** Weight of the reference expert's log-probability (0: off). */
  weight: 1,
  /** Added to the reference expert's probability before the log, so an unseen token costs weight × log(floor). */
  floor: 1e-3,
  /** Interpolation of trigram, bigram and unigram probabilities (renormalised over the orders whose context was seen). */
  lambdas: [0.6, 0.3, 0.1] as readonly [number, number, number],
  /** Nearest training captions weighed, and the softmax temperature of their centred similarities (as soft references). */
  pool: SOFT_REFERENCES.pool,
  temperature: SOFT_REFERENCES.temperature,
} as const;

export interface ReferenceGuideConfig {
  weight: number;
  floor: number;
  lambdas: readonly [number, number, number];
  pool: number;
  temperature: number;
}

const START = -1;

/** Weighted counts of the next token after a context. */
class Counts {
  readonly next = new Map<number, number>();
  total = 0;
  add(token: number, w: number): void {
    this.next.set(token, (this.next.get(token) ?? 0) + w);
    this.total += w;
  }
  p(token: number): number {
    return (this.next.get(token) ?? 0) / this.total;
  }
}

/** An interpolated trigram model over token ids of weighted sentences, each ending in a stop token. */
export class WeightedNgram {
  private readonly uni = new Counts();
  private readonly bi = new Map<number, Counts>();
  private readonly tri = new Map<string, Counts>();

  constructor(
    sentences: readonly (readonly number[])[],
    weights: readonly number[],
    private readonly lambdas: readonly [number, number, number],
  ) {
    sentences.forEach((s, i) => {
      const w = weights[i];
      if (!(w > 0)) return;
      let a = START;
      let b = START;
      for (const t of s) {
        this.uni.add(t, w);
        getOr(this.bi, b, () => new Counts()).add(t, w);
        getOr(this.tri, `${a},${b}`, () => new Counts()).add(t, w);
        a = b;
        b = t;
      }
    });
  }

  /** p(token | history), interpolated over the orders whose context occurs in the sentences (0 if none does). */
  p(history: readonly number[], token: number): number {
    const n = history.length;
    const b = n ? history[n - 1] : START;
    const a = n > 1 ? history[n - 2] : START;
    const [l3, l2, l1] = this.lambdas;
    let p = 0;
    let mass = 0;
    const orders: [Counts | undefined, number][] = [
      [this.tri.get(`${a},${b}`), l3],
      [this.bi.get(b), l2],
      [this.uni.total > 0 ? this.uni : undefined, l1],
    ];
    for (const [counts, l] of orders) {
      if (!counts) continue;
      p += l * counts.p(token);
      mass += l;
    }
    return mass > 0 ? p / mass : 0;
  }
}

function getOr<K, V>(m: Map<K, V>, k: K, make: () => V): V {
  let v = m.get(k);
  if (v === undefined) m.set(k, (v = make()));
  return v;
}

/**
 * Builds, per trial, the n-gram expert of the training captions nearest to its target embedding (the soft references:
 * centred similarity, softmax weights) and guides generation with weight × log(p + floor).
 */
export class ReferenceGuide {
  private readonly tokenized = new Map<number, number[]>();

  private constructor(
    private readonly references: SoftReferences,
    private readonly captions: readonly string[],
    private readonly tokenizer: TextTokenizer,
    /** Appended to every caption: the LM's own end of the answer, so the expert also says when to stop. */
    private readonly stopToken: number,
    readonly config: ReferenceGuideConfig,
  ) {}

  static create(
    bank: CaptionBank,
    tokenizer: TextTokenizer,
    stopToken: number,
    config: Partial<ReferenceGuideConfig> = {},
  ): ReferenceGuide {
    const c: ReferenceGuideConfig = { ...REFERENCE_GUIDE, ...config };
    if (!(c.weight >= 0) || !(c.floor > 0) || c.lambdas.some((l) => !(l >= 0)))
      throw new Error('the reference guide needs a weight ≥ 0, a floor > 0 and interpolation weights ≥ 0');
    // The ranking alone: the guide never scores whole captions, so it skips the scorer's CIDEr tables.
    const references = SoftReferences.create(bank, c.pool, c.temperature);
    return new ReferenceGuide(references, bank.captions, tokenizer, stopToken, c);
  }

  /** The caption's LM tokens as the LM writes an answer (it starts a fresh line), ending in the stop token. */
  private tokens(i: number): number[] {
    let t = this.tokenized.get(i);
    if (!t) this.tokenized.set(i, (t = [...this.tokenizer.encode(this.captions[i]), this.stopToken]));
    return t;
  }

  /** The n-gram expert of one target embedding. */
  expert(target: Float32Array): WeightedNgram {
    const { refs, weights } = this.references.references(target);
    return new WeightedNgram(
      refs.map((i) => this.tokens(i)),
      weights,
      this.config.lambdas,
    );
  }

  /** A guide for a batch whose prompt p belongs to targets[p]. */
  forTargets(targets: readonly Float32Array[]): TokenGuide {
    const experts = targets.map((t) => this.expert(t));
    const { weight, floor } = this.config;
    return {
      logBias: (prompt, history, tokens) =>
        Float64Array.from(tokens, (tok) => weight * Math.log(experts[prompt].p(history, tok) + floor)),
    };
  }
}
