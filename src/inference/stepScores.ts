// What one decode step tells generation about each row's next token, in the two forms the LM graphs give it: the
// logits over the whole vocabulary (lm/decoder.onnx, lm/decoder.int8.onnx), or the k most probable tokens with the
// log-normalisers at temperature 1 and at the sampling temperature (the step graphs, lm/*.step.onnx; docs/inference.md).
// Greedy, nucleus sampling and beam search read a row only through this interface.

/** The tokens nucleus (top-p) sampling chooses among, most probable first, with their probabilities. */
export interface Nucleus {
  tokens: number[];
  probs: number[];
  /** Their total probability (≥ p unless the candidates ran out first). */
  mass: number;
}

export interface StepScores {
  readonly rows: number;
  /** The most tokens `top` can return per row. */
  readonly maxTop: number;
  /** The most probable token (ties → lowest id, as torch.argmax). */
  argmax(row: number): number;
  /** log p(token) at temperature 1. */
  logprob(row: number, token: number): number;
  /** The smallest set of most probable tokens whose probability at `temperature` reaches `topP`. */
  nucleus(row: number, temperature: number, topP: number): Nucleus;
  /** The `k` most probable tokens with their log-probabilities (temperature 1), most probable first. */
  top(row: number, k: number): { tokens: number[]; logprobs: number[] };
}

/** Scores from full logits [rows, vocab]. */
export class LogitScores implements StepScores {
  readonly rows: number;
  readonly maxTop: number;
  private readonly lse: Float64Array;

  constructor(
    readonly logits: Float32Array,
    readonly vocab: number,
  ) {
    this.rows = logits.length / vocab;
    this.maxTop = vocab;
    this.lse = new Float64Array(this.rows).fill(NaN);
  }

  private row(r: number): Float32Array {
    return this.logits.subarray(r * this.vocab, (r + 1) * this.vocab);
  }

  argmax(r: number): number {
    return argmax(this.row(r));
  }

  logprob(r: number, token: number): number {
    if (Number.isNaN(this.lse[r])) this.lse[r] = logSumExp(this.row(r));
    return this.row(r)[token] - this.lse[r];
  }

  nucleus(r: number, temperature: number, topP: number): Nucleus {
    return nucleusOf(this.row(r), temperature, topP);
  }

  top(r: number, k: number): { tokens: number[]; logprobs: number[] } {
    const tokens = topK(this.row(r), k);
    return { tokens, logprobs: tokens.map((t) => this.logprob(r, t)) };
  }
}

/**
 * Scores from a step graph: the k most probable tokens per row (values = logits, most probable first), log Σ exp(logits)
 * and log Σ exp(logits / T) for the temperature T the step ran with. A nucleus cannot hold more than k tokens; at the
 * sampling temperatures used here the nucleus of p = 0.9 holds far fewer (docs/inference.md).
 */
export class TopKScores implements StepScores {
  constructor(
    readonly rows: number,
    readonly k: number,
    readonly values: Float32Array,
    readonly ids: Int32Array,
    readonly logsumexp: Float32Array,
    readonly logsumexpT: Float32Array,
    readonly temperature: number,
  ) {}

  get maxTop(): number {
    return this.k;
  }

  argmax(r: number): number {
    return this.ids[r * this.k];
  }

  logprob(r: number, token: number): number {
    const base = r * this.k;
    for (let i = 0; i < this.k; i++) if (this.ids[base + i] === token) return this.values[base + i] - this.logsumexp[r];
    throw new Error(`token ${token} is not among the ${this.k} most probable of row ${r}; it cannot be scored here`);
  }

  nucleus(r: number, temperature: number, topP: number): Nucleus {
    if (Math.abs(temperature - this.temperature) > 1e-6)
      throw new Error(`this step ran at temperature ${this.temperature}, not ${temperature}`);
    const base = r * this.k;
    const t = Math.max(temperature, 1e-5);
    const tokens: number[] = [];
    const probs: number[] = [];
    let acc = 0;
    for (let i = 0; i < this.k; i++) {
      tokens.push(this.ids[base + i]);
      probs.push(Math.exp(this.values[base + i] / t - this.logsumexpT[r]));
      acc += probs[i];
      if (acc >= topP) break;
    }
    return { tokens, probs, mass: acc };
  }

  top(r: number, k: number): { tokens: number[]; logprobs: number[] } {
    if (k > this.k) throw new Error(`a step graph returns ${this.k} tokens per row; ${k} were asked for`);
    const base = r * this.k;
    const tokens = Array.from(this.ids.subarray(base, base + k));
    return { tokens, logprobs: tokens.map((_, i) => this.values[base + i] - this.logsumexp[r]) };
  }
}

/** One draw from a nucleus (one call of `rng`). */
export function drawFrom(n: Nucleus, rng: () => number): number {
  let r = rng() * n.mass;
  for (let k = 0; k < n.tokens.length; k++) {
    r -= n.probs[k];
    if (r <= 0) return n.tokens[k];
  }
  return n.tokens[n.tokens.length - 1];
}

/** Terms more than this far below the maximum logit add under 1e-17 each to a normaliser whose largest term is 1. */
const NEGLIGIBLE_LOGIT_GAP = 40;

export function logSumExp(x: Float32Array): number {
  let max = -Infinity;
  for (let i = 0; i < x.length; i++) if (x[i] > max) max = x[i];
  if (max === -Infinity || max === Infinity) return max;
  const floor = max - NEGLIGIBLE_LOGIT_GAP;
  let sum = 0;
  for (let i = 0; i < x.length; i++) if (x[i] > floor) sum += Math.exp(x[i] - max);
  return max + Math.log(sum);
}

/** First index of the maximum (ties → lowest id, as torch.argmax). */
export function argmax(x: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i] > x[best]) best = i;
  return best;
}

/** Indices of the k largest values, largest first. */
export function topK(x: Float32Array, k: number): number[] {
  const idx: number[] = [];
  for (let i = 0; i < x.length; i++) {
    if (idx.length < k) {
      idx.push(i);
      if (idx.length === k) idx.sort((a, b) => x[b] - x[a]);
    } else if (x[i] > x[idx[k - 1]]) {
      let j = k - 1;
      while (j > 0 && x[idx[j - 1]] < x[i]) {
        idx[j] = idx[j - 1];
        j--;
      }
      idx[j] = i;
    }
  }
  return idx.sort((a, b) => x[b] - x[a]);
}

/**
 * The nucleus of full logits. Tokens are ranked on the raw logits (a temperature does not reorder them); only the
 * normaliser touches every logit.
 */
export function nucleusOf(logits: Float32Array, temperature: number, topP: number): Nucleus {
  const temp = Math.max(temperature, 1e-5);
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) if (logits[i] > max) max = logits[i];
  const floor = max - NEGLIGIBLE_LOGIT_GAP * temp;
  let z = 0;
  for (let i = 0; i < logits.length; i++) if (logits[i] > floor) z += Math.exp((logits[i] - max) / temp);
  const prob = (i: number) => Math.exp((logits[i] - max) / temp) / z;
  // Mass concentrates in few tokens: rank only the top 64 first, all of them if those fall short of p.
  let cands = topK(logits, 64);
  if (cands.reduce((s, i) => s + prob(i), 0) < topP)
    cands = Array.from(logits.keys()).sort((a, b) => logits[b] - logits[a]);
  const tokens: number[] = [];
  const probs: number[] = [];
  let acc = 0;
  for (const i of cands) {
    tokens.push(i);
    probs.push(prob(i));
    acc += probs[probs.length - 1];
    if (acc >= topP) break;
  }
  return { tokens, probs, mass: acc };
}
