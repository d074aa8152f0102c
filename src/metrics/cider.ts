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

interface Vec {
  vec: Map<string, number>[];
  norm: number[];
  length: number;
}

/** CIDEr-D (pycocoevalcap cider_scorer) of every image against document frequencies over exactly these images' refs:
 * tf-idf per n-gram order with idf = log(#images) - log(max(1, df)), clipped candidate weights, Gaussian length
 * penalty with sigma 6 on the bigram counts (pycocoevalcap counts "length" over n = 2, faithfully kept), mean over
 * n = 1..4, divided by the number of references, times 10. Returns per-image scores. */
export function ciderD(images: readonly CiderImage[]): number[] {
  const df = new Map<string, number>();
  for (const img of images) {
    const seen = new Set<string>();
    for (const r of img.refs) for (const g of r.counts.keys()) seen.add(g);
    for (const g of seen) df.set(g, (df.get(g) ?? 0) + 1);
  }
  const refLen = Math.log(images.length);

  const toVec = (c: Cooked): Vec => {
    const vec: Map<string, number>[] = [new Map(), new Map(), new Map(), new Map()];
    const norm = [0, 0, 0, 0];
    let length = 0;
    for (const [g, tf] of c.counts) {
      const n = ngramOrder(g) - 1;
      const w = tf * (refLen - Math.log(Math.max(1, df.get(g) ?? 0)));
      vec[n].set(g, w);
      norm[n] += w ** 2;
      if (n === 1) length += tf;
    }
    return { vec, norm: norm.map(Math.sqrt), length };
  };

  const penalty = (delta: number): number => Math.E ** (-(delta ** 2) / (2 * SIGMA ** 2));

  const scores: number[] = [];
  for (const img of images) {
    const h = toVec(img.test);
    const score = [0, 0, 0, 0];
    for (const ref of img.refs) {
      const r = toVec(ref);
      const delta = h.length - r.length;
      for (let n = 0; n < N; n++) {
        let val = 0;
        for (const [g, wh] of h.vec[n]) {
          const wr = r.vec[n].get(g) ?? 0;
          val += Math.min(wh, wr) * wr;
        }
        if (h.norm[n] !== 0 && r.norm[n] !== 0) val /= h.norm[n] * r.norm[n];
        score[n] += val * penalty(delta);
      }
    }
    const avg = (score[0] + score[1] + score[2] + score[3]) / N;
    scores.push((avg / img.refs.length) * 10);
  }
  return scores;
}
