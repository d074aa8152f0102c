import { precook } from './ngrams.js';

const N = 4;
const SMALL = 1e-9;
const TINY = 1e-15;

/** What BLEU needs from one image: pycocoevalcap's cook_test with the "closest" reference length already chosen. */
export interface BleuStats {
  testlen: number;
  reflen: number;
  guess: number[];
  correct: number[];
}

/** Statistics of one tokenized candidate against its tokenized references (pycocoevalcap bleu_scorer cook_refs/cook_test,
 * option "closest": the reference length nearest the candidate's, the shorter one on a tie). */
export function bleuStats(candidate: string, refs: readonly string[]): BleuStats {
  const maxcounts = new Map<string, number>();
  const reflens: number[] = [];
  for (const r of refs) {
    const c = precook(r, N);
    reflens.push(c.len);
    for (const [g, n] of c.counts) if (n > (maxcounts.get(g) ?? 0)) maxcounts.set(g, n);
  }
  const test = precook(candidate, N);
  let reflen = reflens[0];
  for (const l of reflens) {
    const d = Math.abs(l - test.len);
    const bd = Math.abs(reflen - test.len);
    if (d < bd || (d === bd && l < reflen)) reflen = l;
  }
  const guess = [];
  for (let k = 1; k <= N; k++) guess.push(Math.max(0, test.len - k + 1));
  const correct = [0, 0, 0, 0];
  for (const [g, n] of test.counts) {
    let order = 1;
    for (let i = 0; i < g.length; i++) if (g.charCodeAt(i) === 1) order++;
    correct[order - 1] += Math.min(maxcounts.get(g) ?? 0, n);
  }
  return { testlen: test.len, reflen, guess, correct };
}

/** Corpus BLEU-1..4 from summed statistics, with pycocoevalcap's smoothing constants and brevity penalty. */
export function bleuFromTotals(t: BleuStats): number[] {
  const bleus: number[] = [];
  let bleu = 1;
  for (let k = 0; k < N; k++) {
    bleu *= (t.correct[k] + TINY) / (t.guess[k] + SMALL);
    bleus.push(bleu ** (1 / (k + 1)));
  }
  const ratio = (t.testlen + TINY) / (t.reflen + SMALL);
  if (ratio < 1) for (let k = 0; k < N; k++) bleus[k] *= Math.exp(1 - 1 / ratio);
  return bleus;
}

/** Running corpus BLEU: add or replace images, read the score at any time in O(1). */
export class BleuAccumulator {
  private readonly total: BleuStats = { testlen: 0, reflen: 0, guess: [0, 0, 0, 0], correct: [0, 0, 0, 0] };

  add(s: BleuStats): void {
    this.apply(s, 1);
  }
  remove(s: BleuStats): void {
    this.apply(s, -1);
  }

  private apply(s: BleuStats, sign: number): void {
    this.total.testlen += sign * s.testlen;
    this.total.reflen += sign * s.reflen;
    for (let k = 0; k < N; k++) {
      this.total.guess[k] += sign * s.guess[k];
      this.total.correct[k] += sign * s.correct[k];
    }
  }

  scores(): number[] {
    return bleuFromTotals(this.total);
  }
}
