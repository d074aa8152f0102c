// Compositional caption checks the simulator can give exactly (docs/metrics.md, "Compositional metric"): does a caption
// name the scene's main object, that object's colour and count (read from the same noun phrase), and the background.
// models/mindsemantix/composition.py is the same scorer; both must give test/fixtures/composition/*.json exactly.

/** The words captions are parsed with; generated from the simulator's caption words (src/metrics/simVocabulary.ts). */
export interface CompositionVocabulary {
  /** Longest first. plural: null where singular and plural are one word ("fish"). */
  nouns: { words: string; category: string; plural: boolean | null }[];
  colours: string[];
  sizes: string[];
  /** Longest first: "a pair of" → 2, "a" → 1. */
  counts: { words: string; count: number }[];
  /** Longest first, leading prepositions and articles dropped: "sandy beach" → beach. */
  backgrounds: { words: string; background: string }[];
}

/** A scene's scored facts (the simulator's stimuli.tsv columns). */
export interface SceneFacts {
  object: string;
  colour: string;
  count: number;
  background: string;
}

export const COMPOSITION_FIELDS = ['object', 'colour', 'count', 'background', 'exact'] as const;
export type CompositionCheck = Record<(typeof COMPOSITION_FIELDS)[number], boolean>;

export interface CompositionRates extends Record<(typeof COMPOSITION_FIELDS)[number], number> {
  copied?: number;
  novel_trials?: number;
  novel_exact?: number | null;
}

export interface NounPhrase {
  category: string;
  colour: string | null;
  count: number | null;
}

const BARRIER = '|'; // stands in for a background phrase, so a noun phrase never reaches across it

/** Lower case, letters and digits only, single spaces: "A red ball." and "a red ball" are the same caption. */
export function normaliseCaption(caption: string): string {
  return caption
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, ' ')
    .trim()
    .split(/\s+/)
    .filter(Boolean)
    .join(' ');
}

interface Compiled {
  v: CompositionVocabulary;
  nouns: string[][];
  counts: string[][];
  backgrounds: string[][];
  colours: Set<string>;
  sizes: Set<string>;
}
const compiled = new WeakMap<CompositionVocabulary, Compiled>();

function compile(v: CompositionVocabulary): Compiled {
  let c = compiled.get(v);
  if (!c) {
    const words = (s: string) => s.split(' ');
    c = {
      v,
      nouns: v.nouns.map((n) => words(n.words)),
      counts: v.counts.map((n) => words(n.words)),
      backgrounds: v.backgrounds.map((b) => words(b.words)),
      colours: new Set(v.colours),
      sizes: new Set(v.sizes),
    };
    compiled.set(v, c);
  }
  return c;
}

function startsWith(tokens: string[], i: number, phrase: string[]): boolean {
  return phrase.every((w, k) => tokens[i + k] === w);
}

/** Index of the first phrase (longest first) that starts at tokens[i], or -1. */
function match(tokens: string[], i: number, phrases: string[][]): number {
  return phrases.findIndex((p) => startsWith(tokens, i, p));
}

export function parseCaption(
  caption: string,
  vocab: CompositionVocabulary,
): { objects: NounPhrase[]; backgrounds: Set<string> } {
  const c = compile(vocab);
  const tokens = normaliseCaption(caption).split(' ').filter(Boolean);
  const backgrounds = new Set<string>();
  for (let i = 0; i < tokens.length; i++) {
    const k = match(tokens, i, c.backgrounds);
    if (k < 0) continue;
    backgrounds.add(vocab.backgrounds[k].background);
    tokens.splice(i, c.backgrounds[k].length, BARRIER);
  }
  const objects: NounPhrase[] = [];
  for (let i = 0; i < tokens.length; ) {
    const k = match(tokens, i, c.nouns);
    if (k < 0) {
      i++;
      continue;
    }
    const noun = vocab.nouns[k];
    let j = i - 1;
    let colour: string | null = null;
    while (j >= 0 && (c.colours.has(tokens[j]) || c.sizes.has(tokens[j]))) {
      // "a small red ball": nearest colour wins
      if (colour === null && c.colours.has(tokens[j])) colour = tokens[j];
      j--;
    }
    let count: number | null = null;
    for (let q = 0; q < c.counts.length; q++) {
      const w = c.counts[q];
      if (j + 1 >= w.length && startsWith(tokens, j + 1 - w.length, w)) {
        count = vocab.counts[q].count;
        break;
      }
    }
    if (count === null && noun.plural === false) count = 1; // a singular noun names one object ("the ball")
    objects.push({ category: noun.category, colour, count });
    i += c.nouns[k].length;
  }
  return { objects, backgrounds };
}

export function checkCaption(caption: string, facts: SceneFacts, vocab: CompositionVocabulary): CompositionCheck {
  const p = parseCaption(caption, vocab);
  const main = p.objects.find((o) => o.category === facts.object);
  const out = {
    object: main !== undefined,
    colour: main !== undefined && main.colour === facts.colour,
    count: main !== undefined && main.count === Number(facts.count),
    background: p.backgrounds.size === 1 && p.backgrounds.has(facts.background),
    exact: false,
  };
  out.exact = out.object && out.colour && out.count && out.background;
  return out;
}

/**
 * Rates in 0..1 over `captions` ({key: caption}; every key needs facts). `novel` (true for held-out combinations) adds
 * `novel_trials` and `novel_exact`; `trainingCaptions` adds `copied`. Empty input gives null.
 */
export function compositionRates(
  captions: Record<string, string>,
  facts: Record<string, SceneFacts>,
  vocab: CompositionVocabulary,
  opts: { novel?: Record<string, boolean>; trainingCaptions?: readonly string[] } = {},
): CompositionRates | null {
  const keys = Object.keys(captions);
  if (!keys.length) return null;
  const per = new Map(
    keys.map((k) => {
      if (!facts[k]) throw new Error(`no scene facts for ${k}`);
      return [k, checkCaption(captions[k], facts[k], vocab)] as const;
    }),
  );
  const share = (ks: string[], ok: (k: string) => boolean) => ks.filter(ok).length / ks.length;
  const field = (f: (typeof COMPOSITION_FIELDS)[number]) => share(keys, (k) => per.get(k)![f]);
  const out: CompositionRates = {
    object: field('object'),
    colour: field('colour'),
    count: field('count'),
    background: field('background'),
    exact: field('exact'),
  };
  if (opts.trainingCaptions) {
    const seen = new Set(opts.trainingCaptions.map(normaliseCaption));
    out.copied = share(keys, (k) => seen.has(normaliseCaption(captions[k])));
  }
  if (opts.novel) {
    const nk = keys.filter((k) => opts.novel![k]);
    out.novel_trials = nk.length;
    out.novel_exact = nk.length ? share(nk, (k) => per.get(k)!.exact) : null;
  }
  return out;
}
