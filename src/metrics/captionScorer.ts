import { BleuAccumulator, type BleuStats, bleuStats } from './bleu.js';
import { type CiderImage, ciderD, ciderImage } from './cider.js';
import { ptbTokenize } from './ptbTokenizer.js';
import { rougeL } from './rouge.js';

/** Running caption metrics on pycocoevalcap's 0..1 scale (CIDEr-D is ×10 as there, so typically 0..~3). */
export interface CaptionScores {
  BLEU1: number;
  BLEU2: number;
  BLEU3: number;
  BLEU4: number;
  ROUGE_L: number;
  CIDEr: number;
}

interface Entry {
  bleu: BleuStats;
  rouge: number;
  cider: CiderImage;
}

/**
 * BLEU-1..4, ROUGE-L and CIDEr-D over the captions decoded so far, equal to pycocoevalcap on the same (refs, candidates):
 * BLEU from running sums, ROUGE-L per image (mean on read), CIDEr-D recomputed when read because its document
 * frequencies cover the references of every image scored so far (reads are cached until the next add).
 * `tokenized: true` skips the PTB tokenizer for inputs that are already tokenized.
 */
export class CaptionScorer {
  private readonly entries = new Map<string, Entry>();
  private readonly bleu = new BleuAccumulator();
  private cached: CaptionScores | undefined;
  private readonly refCache = new Map<string, string>();

  constructor(private readonly opts: { tokenized?: boolean } = {}) {}

  get size(): number {
    return this.entries.size;
  }

  private tok(s: string, cache: boolean): string {
    if (this.opts.tokenized) return s;
    if (!cache) return ptbTokenize(s);
    let t = this.refCache.get(s);
    if (t === undefined) {
      t = ptbTokenize(s);
      this.refCache.set(s, t);
    }
    return t;
  }

  /** Scores one image's caption; adding an id again replaces its earlier caption (a re-decoded trial). */
  add(id: string, candidate: string, refs: readonly string[]): void {
    if (refs.length === 0) throw new Error(`caption ${id}: at least one reference caption is needed to score it`);
    const cand = this.tok(candidate, false);
    const tokRefs = refs.map((r) => this.tok(r, true));
    const prev = this.entries.get(id);
    if (prev) this.bleu.remove(prev.bleu);
    const entry: Entry = {
      bleu: bleuStats(cand, tokRefs),
      rouge: rougeL(cand, tokRefs),
      cider: ciderImage(cand, tokRefs),
    };
    this.entries.set(id, entry);
    this.bleu.add(entry.bleu);
    this.cached = undefined;
  }

  /** Per-image CIDEr-D, in insertion order, with the current document frequencies. */
  ciderPerImage(): Map<string, number> {
    const ids = [...this.entries.keys()];
    const s = ciderD(ids.map((id) => this.entries.get(id)!.cider));
    return new Map(ids.map((id, i) => [id, s[i]]));
  }

  scores(): CaptionScores {
    if (this.cached) return { ...this.cached };
    const n = this.entries.size;
    if (n === 0) return { BLEU1: 0, BLEU2: 0, BLEU3: 0, BLEU4: 0, ROUGE_L: 0, CIDEr: 0 };
    const [b1, b2, b3, b4] = this.bleu.scores();
    let rouge = 0;
    for (const e of this.entries.values()) rouge += e.rouge; // re-summed so replacements leave no rounding drift
    const cider = ciderD([...this.entries.values()].map((e) => e.cider));
    let ciderSum = 0;
    for (const c of cider) ciderSum += c;
    this.cached = { BLEU1: b1, BLEU2: b2, BLEU3: b3, BLEU4: b4, ROUGE_L: rouge / n, CIDEr: ciderSum / n };
    return { ...this.cached };
  }
}

/** Scores all candidates at once: `refs` is {id: [ref, ...]}, `cands` is {id: caption}; every candidate id needs refs,
 * and reference ids without a candidate are not scored (CIDEr-D's df then covers only the captioned images, like
 * `eval --subset`). Images are taken in the order of `refs`. */
export function scoreCaptions(
  refs: Readonly<Record<string, readonly string[]>>,
  cands: Readonly<Record<string, string>>,
  opts: { tokenized?: boolean } = {},
): CaptionScores {
  for (const id of Object.keys(cands)) {
    if (!Object.prototype.hasOwnProperty.call(refs, id)) throw new Error(`candidate id "${id}" has no references`);
  }
  const scorer = new CaptionScorer(opts);
  for (const id of Object.keys(refs))
    if (Object.prototype.hasOwnProperty.call(cands, id)) scorer.add(id, cands[id], refs[id]);
  return scorer.scores();
}
