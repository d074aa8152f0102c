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
  /** Coverage bonus: added (× the word's share of the references' weight) to the next token of a content word many
   * references use, until the caption has said it (0: off). Greedy steering follows the references' most common
   * continuation token by token and so drops words most of them share but word them differently. */
  cover: 2,
  /** A word is a content word where at most this share of the whole bank's captions use it ("a", "the", "two" are not). */
  coverMaxDf: 0.12,
  /** ... and expected where references holding at least this share of the trial's weight use it. */
  coverShare: 0.2,
} as const;

export interface ReferenceGuideConfig {
  weight: number;
  floor: number;
  lambdas: readonly [number, number, number];
  pool: number;
  temperature: number;
  cover: number;
  coverMaxDf: number;
  coverShare: number;
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

function occurs(h: readonly number[], w: readonly number[]): boolean {
  outer: for (let i = 0; i + w.length <= h.length; i++) {
    for (let k = 0; k < w.length; k++) if (h[i + k] !== w[k]) continue outer;
    return true;
  }
  return false;
}

/** Whether h ends with w's first j tokens. */
function endsWith(h: readonly number[], w: readonly number[], j: number): boolean {
  for (let k = 0; k < j; k++) if (h[h.length - j + k] !== w[k]) return false;
  return true;
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
  private wordTables?: { words: string[][]; df: Map<string, number> };
  private readonly wordTokens = new Map<string, number[]>();

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
    if (!(c.cover >= 0) || !(c.coverMaxDf > 0 && c.coverMaxDf <= 1) || !(c.coverShare > 0 && c.coverShare <= 1))
      throw new Error('the reference guide needs a coverage bonus ≥ 0 and coverage shares in (0, 1]');
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

  private words(): { words: string[][]; df: Map<string, number> } {
    if (!this.wordTables) {
      const words = this.captions.map((c) => [...new Set(c.toLowerCase().match(/[a-z]+/g) ?? [])]);
      const df = new Map<string, number>();
      for (const ws of words) for (const w of ws) df.set(w, (df.get(w) ?? 0) + 1);
      this.wordTables = { words, df };
    }
    return this.wordTables;
  }

  /** The expected content words of a target (as LM tokens written after a space), with their share of the weight. */
  coverage(target: Float32Array): { tokens: number[]; share: number }[] {
    return this.coverageOf(this.references.references(target));
  }

  private coverageOf({ refs, weights }: { refs: number[]; weights: number[] }): { tokens: number[]; share: number }[] {
    const { coverMaxDf, coverShare } = this.config;
    const { words, df } = this.words();
    const total = weights.reduce((a, w) => a + w, 0);
    const share = new Map<string, number>();
    refs.forEach((i, k) => {
      for (const w of words[i]) share.set(w, (share.get(w) ?? 0) + weights[k] / total);
    });
    const out: { tokens: number[]; share: number }[] = [];
    const n = this.captions.length;
    for (const [w, sh] of share) {
      if (sh < coverShare || (df.get(w) ?? 0) > coverMaxDf * n) continue;
      let t = this.wordTokens.get(w);
      if (t === undefined) this.wordTokens.set(w, (t = this.tokenizer.encode(' ' + w)));
      out.push({ tokens: t, share: sh });
    }
    return out;
  }

  /** The n-gram expert of one target embedding. */
  expert(target: Float32Array): WeightedNgram {
    return this.expertOf(this.references.references(target));
  }

  private expertOf({ refs, weights }: { refs: number[]; weights: number[] }): WeightedNgram {
    return new WeightedNgram(
      refs.map((i) => this.tokens(i)),
      weights,
      this.config.lambdas,
    );
  }

  /** A guide for a batch whose prompt p belongs to targets[p]. */
  forTargets(targets: readonly Float32Array[]): TokenGuide {
    // Ranking the bank is most of a guide's cost: once per target, for both the n-gram and the coverage.
    const nearest = targets.map((t) => this.references.references(t));
    const experts = nearest.map((r) => this.expertOf(r));
    const { weight, floor, cover } = this.config;
    const covers = cover > 0 ? nearest.map((r) => this.coverageOf(r)) : undefined;
    return {
      logBias: (prompt, history, tokens) => {
        const b = Float64Array.from(tokens, (tok) => weight * Math.log(experts[prompt].p(history, tok) + floor));
        if (covers) {
          const bonus = new Map<number, number>();
          for (const { tokens: w, share } of covers[prompt]) {
            if (occurs(history, w)) continue;
            // The word's next token after the longest part of it the history ends with (its first if none).
            let j = Math.min(w.length - 1, history.length);
            while (j > 0 && !endsWith(history, w, j)) j--;
            bonus.set(w[j], Math.max(bonus.get(w[j]) ?? 0, share));
          }
          tokens.forEach((tok, i) => (b[i] += cover * (bonus.get(tok) ?? 0)));
        }
        return b;
      },
    };
  }
}
