// Python's str.split() whitespace (what pycocoevalcap's BLEU and CIDEr split on); differs from JS \s in \x1c-\x1f, \x85, \ufeff.
// eslint-disable-next-line no-control-regex -- \x1c-\x1f are whitespace to Python
const PY_WHITESPACE = /[\t\n\v\f\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+/;

/** `s.split()` as Python does it (no empty strings). */
export function pySplit(s: string): string[] {
  return s.split(PY_WHITESPACE).filter((w) => w.length > 0);
}

/** n-gram counts for n = 1..maxN, keyed by the words joined with U+0001 (which PTB-tokenized text never contains), as
 * pycocoevalcap's precook builds them; `len` is the number of words. */
export interface Cooked {
  len: number;
  counts: Map<string, number>;
}

export function precook(s: string, maxN = 4): Cooked {
  const words = pySplit(s);
  const counts = new Map<string, number>();
  for (let k = 1; k <= maxN; k++) {
    for (let i = 0; i + k <= words.length; i++) {
      const g = words.slice(i, i + k).join('\u0001');
      counts.set(g, (counts.get(g) ?? 0) + 1);
    }
  }
  return { len: words.length, counts };
}

/** The n-gram order (1-based) of a key built by precook. */
export function ngramOrder(key: string): number {
  let n = 1;
  for (let i = 0; i < key.length; i++) if (key.charCodeAt(i) === 1) n++;
  return n;
}
