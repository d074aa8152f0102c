import { type Cooked, ngramOrder, precook } from './ngrams.js';

const N = 4;
const SIGMA = 6;

/** One image as CIDEr-D needs it: n-gram counts of the tokenized candidate and of each tokenized reference. */
export interface CiderImage {
  test: Cooked;
  refs: Cooked[];
}

export function ciderImage(candidate: string, refs: readonly string[]): CiderImage {
  return { test: precook(candidate, N), refs: refs.map((r) => precook(r, N)) };
}

/** A caption's tf-idf vectors per n-gram order, their norms, and pycocoevalcap's "length" (its bigram count). */
export interface CiderVector {
  vec: Map<string, number>[];
  norm: number[];
  length: number;
}

/** tf-idf of one cooked caption: idf = logN - log(max(1, df)). */
export function ciderVector(c: Cooked, df: ReadonlyMap<string, number>, logN: number): CiderVector {
  const vec: Map<string, number>[] = [new Map(), new Map(), new Map(), new Map()];
  const norm = [0, 0, 0, 0];
  let length = 0;
  for (const [g, tf] of c.counts) {
    const n = ngramOrder(g) - 1;
    const w = tf * (logN - Math.log(Math.max(1, df.get(g) ?? 0)));
    vec[n].set(g, w);
    norm[n] += w ** 2;
    if (n === 1) length += tf;
  }
  return { vec, norm: norm.map(Math.sqrt), length };
}

const penalty = (delta: number): number => Math.E ** (-(delta ** 2) / (2 * SIGMA ** 2));

/** CIDEr-D's clipped, length-penalised similarity of a candidate to one reference, per n-gram order (added to `acc`). */
export function ciderSimilarity(h: CiderVector, r: CiderVector, acc: number[], weight = 1): void {
  const p = penalty(h.length - r.length) * weight;
  for (let n = 0; n < N; n++) {
    let val = 0;
    for (const [g, wh] of h.vec[n]) {
      const wr = r.vec[n].get(g) ?? 0;
      val += Math.min(wh, wr) * wr;
    }
    if (h.norm[n] !== 0 && r.norm[n] !== 0) val /= h.norm[n] * r.norm[n];
    acc[n] += val * p;
  }
}

/** Document frequencies of n-grams over sets of references (each set counts once per n-gram). */
export function documentFrequencies(refSets: Iterable<readonly Cooked[]>): { df: Map<string, number>; docs: number } {
  const df = new Map<string, number>();
  let docs = 0;
  for (const refs of refSets) {
    docs++;
    const seen = new Set<string>();
    for (const r of refs) for (const g of r.counts.keys()) seen.add(g);
    for (const g of seen) df.set(g, (df.get(g) ?? 0) + 1);
  }
  return { df, docs };
}

/** CIDEr-D (pycocoevalcap cider_scorer) of every image against document frequencies over exactly these images' refs:
 * tf-idf per n-gram order with idf = log(#images) - log(max(1, df)), clipped candidate weights, Gaussian length
 * penalty with sigma 6 on the bigram counts (pycocoevalcap counts "length" over n = 2, faithfully kept), mean over
 * n = 1..4, divided by the number of references, times 10. Returns per-image scores. */
export function ciderD(images: readonly CiderImage[]): number[] {
  const { df } = documentFrequencies(images.map((img) => img.refs));
  const logN = Math.log(images.length);
  const scores: number[] = [];
  for (const img of images) {
    const h = ciderVector(img.test, df, logN);
    const score = [0, 0, 0, 0];
    for (const ref of img.refs) ciderSimilarity(h, ciderVector(ref, df, logN), score);
    const avg = (score[0] + score[1] + score[2] + score[3]) / N;
    scores.push((avg / img.refs.length) * 10);
  }
  return scores;
}

/**
 * CIDEr-D against a fixed caption corpus: document frequencies from the corpus (each caption one document), so any
 * candidate can be scored against any weighted subset of the corpus's captions as references. Decoding uses it to
 * score the LM's candidates against the training captions nearest to the brain's predicted caption embedding.
 */
export class CiderCorpus {
  private readonly df: Map<string, number>;
  private readonly logN: number;
  private readonly vectors: CiderVector[];

  constructor(
    captions: readonly string[],
    private readonly tokenize: (s: string) => string = (s) => s,
  ) {
    const cooked = captions.map((c) => precook(tokenize(c), N));
    const { df, docs } = documentFrequencies(cooked.map((c) => [c]));
    this.df = df;
    this.logN = Math.log(Math.max(1, docs));
    this.vectors = cooked.map((c) => ciderVector(c, df, this.logN));
  }

  get size(): number {
    return this.vectors.length;
  }

  /** CIDEr-D ×1 scale (as ciderD) of `candidate` against corpus captions `refs`, weighted (default equal weights). */
  score(candidate: string, refs: readonly number[], weights?: readonly number[]): number {
    if (!refs.length) return 0;
    const h = ciderVector(precook(this.tokenize(candidate), N), this.df, this.logN);
    const acc = [0, 0, 0, 0];
    let total = 0;
    refs.forEach((i, k) => {
      const w = weights?.[k] ?? 1;
      total += w;
      ciderSimilarity(h, this.vectors[i], acc, w);
    });
    return total > 0 ? ((acc[0] + acc[1] + acc[2] + acc[3]) / N / total) * 10 : 0;
  }
}
