// The frozen decoder-only LM (lm/decoder.onnx + lm/embed_tokens.onnx) and text generation with a KV cache:
// greedy (default, parity with PyTorch), beam search, and nucleus sampling. The IO names are fixed in
// docs/ARCHITECTURE.md: inputs_embeds, attention_mask, position_ids, past_key_values.<i>.key/.value → logits, present.<i>.*
import * as ort from 'onnxruntime-node';
import type { GenerationConfig } from './bundle.js';

export interface GenerateOptions {
  strategy?: 'greedy' | 'beam' | 'sample';
  maxNewTokens?: number;
  /** Extra stop token ids (the bundle's eos ids always stop). */
  stopTokenIds?: number[];
  numBeams?: number;
  /** Beam score = sum logprob / length^lengthPenalty. */
  lengthPenalty?: number;
  topP?: number;
  temperature?: number;
  seed?: number;
  /** Per-row seeds for `sample` in generateBatch (default seed + row): a row's draw then does not depend on its batch. */
  rowSeeds?: number[];
  /** Rows of a `sample` generateBatch that take the most probable token instead (greedy rows in a sampled batch). */
  greedyRows?: ReadonlySet<number>;
  /**
   * Rows per distinct prompt in generateBatch: `prompts` then holds B / rowsPerPrompt prompts and row b continues
   * prompt floor(b / rowsPerPrompt). The prompt is read once and its cache copied to its rows (several candidates of
   * one trial share a prompt; reading it once per candidate was most of the cost of proposing them).
   */
  rowsPerPrompt?: number;
}

export interface Generated {
  tokens: number[];
  /** Log-probability of each generated token under the model (temperature 1), stop token excluded. */
  logprobs: number[];
  /** Why generation ended. */
  stop: 'eos' | 'max-tokens';
}

export interface PromptCache {
  past: ort.Tensor[];
  pastLen: number;
}

interface Step {
  /** Logits at the last position of each batch row, [B, vocab]. */
  logits: Float32Array;
  present: ort.Tensor[];
  pastLen: number;
}

export class LanguageModel {
  /** Vocabulary size, known after the first forward pass (the logits' last dim). */
  vocab = 0;
  private readonly layers: number;
  private readonly kvHeads: number;
  private readonly headDim: number;
  private readonly pastNames: string[];
  private readonly presentNames: string[];

  constructor(
    private readonly decoder: ort.InferenceSession,
    private readonly embedder: ort.InferenceSession,
    readonly gen: GenerationConfig,
    readonly hidden: number,
  ) {
    this.layers = gen.num_layers;
    this.kvHeads = gen.num_kv_heads;
    this.headDim = gen.head_dim;
    this.pastNames = [];
    this.presentNames = [];
    for (let i = 0; i < this.layers; i++) {
      this.pastNames.push(`past_key_values.${i}.key`, `past_key_values.${i}.value`);
      this.presentNames.push(`present.${i}.key`, `present.${i}.value`);
    }
    const missing = this.pastNames.filter((n) => !decoder.inputNames.includes(n));
    if (missing.length)
      throw new Error(
        `lm/decoder.onnx lacks input ${missing[0]} (manifest says ${this.layers} layers); re-export the bundle.`,
      );
  }

  async release(): Promise<void> {
    await Promise.all([this.decoder.release(), this.embedder.release()]);
  }

  /** Token ids → embeddings [ids.length, hidden] (batch of one sequence), or [B,1,hidden] when `rows` is set. */
  async embed(ids: number[], rows = 1): Promise<Float32Array> {
    const S = ids.length / rows;
    const t = new ort.Tensor(
      'int64',
      BigInt64Array.from(ids, (x) => BigInt(x)),
      [rows, S],
    );
    const out = await this.embedder.run({ input_ids: t });
    return out.inputs_embeds.data as Float32Array;
  }

  /** One forward pass over `embeds` [B,S,hidden] given the cache of `pastLen` positions. */
  async forward(embeds: Float32Array, B: number, S: number, past: ort.Tensor[] | null, pastLen: number): Promise<Step> {
    const feeds: Record<string, ort.Tensor> = {
      inputs_embeds: new ort.Tensor('float32', embeds, [B, S, this.hidden]),
      attention_mask: new ort.Tensor('int64', new BigInt64Array(B * (pastLen + S)).fill(1n), [B, pastLen + S]),
    };
    const pos = new BigInt64Array(B * S);
    for (let b = 0; b < B; b++) for (let s = 0; s < S; s++) pos[b * S + s] = BigInt(pastLen + s);
    feeds.position_ids = new ort.Tensor('int64', pos, [B, S]);
    for (let i = 0; i < this.pastNames.length; i++) {
      feeds[this.pastNames[i]] = past
        ? past[i]
        : new ort.Tensor('float32', new Float32Array(0), [B, this.kvHeads, 0, this.headDim]);
    }
    const out = await this.decoder.run(feeds);
    const all = out.logits.data as Float32Array;
    const V = out.logits.dims[2];
    this.vocab = V;
    const logits = new Float32Array(B * V);
    for (let b = 0; b < B; b++) logits.set(all.subarray((b * S + S - 1) * V, (b * S + S) * V), b * V);
    return { logits, present: this.presentNames.map((n) => out[n]), pastLen: pastLen + S };
  }

  /**
   * The cache of a fixed prompt start (batch 1), computed once: attention is causal, so every prompt that begins with
   * these tokens can continue from it instead of recomputing them.
   */
  async prefix(embeds: Float32Array): Promise<PromptCache> {
    const L = embeds.length / this.hidden;
    const step = await this.forward(embeds, 1, L, null, 0);
    return { past: step.present, pastLen: step.pastLen };
  }

  /** Generates from a prompt given as embeddings [L, hidden], optionally continuing a cached prompt start. */
  async generate(prompt: Float32Array, opts: GenerateOptions = {}, cache?: PromptCache): Promise<Generated> {
    if ((opts.strategy ?? 'greedy') === 'beam' && (opts.numBeams ?? 4) > 1) return this.beam(prompt, opts, cache);
    return (await this.generateBatch(prompt, 1, opts, cache))[0];
  }

  /**
   * Greedy or nucleus generation for B prompts of equal length at once ([B, L, hidden]); each row stops on its own.
   * A step costs about the same for several rows as for one (the weights are read once), so a backlog of trials
   * decodes in a fraction of the time. Rows are independent: row b gets the tokens it would get alone.
   */
  async generateBatch(
    prompts: Float32Array,
    B: number,
    opts: GenerateOptions = {},
    cache?: PromptCache,
  ): Promise<Generated[]> {
    const strategy = opts.strategy ?? 'greedy';
    if (strategy === 'beam' && (opts.numBeams ?? 4) > 1) {
      const per = prompts.length / B;
      const out: Generated[] = [];
      for (let b = 0; b < B; b++) out.push(await this.beam(prompts.subarray(b * per, (b + 1) * per), opts, cache));
      return out;
    }
    const maxNew = opts.maxNewTokens ?? this.gen.max_new_tokens;
    const stop = new Set([...this.gen.eos_token_ids, ...(opts.stopTokenIds ?? [])]);
    const rngs = Array.from({ length: B }, (_, b) => mulberry32(opts.rowSeeds?.[b] ?? (opts.seed ?? 0) + b));
    const r = Math.max(1, Math.floor(opts.rowsPerPrompt ?? 1));
    if (B % r !== 0) throw new Error(`generateBatch: ${B} rows cannot be split into prompts of ${r} rows each`);
    const P = B / r;
    const L = prompts.length / this.hidden / P;
    const past = cache ? (P === 1 ? cache.past : cache.past.map((t) => repeatBatch(t, P))) : null;
    let step = await this.forward(prompts, P, L, past, cache?.pastLen ?? 0);
    if (r > 1) {
      const rows = Array.from({ length: B }, (_, b) => Math.floor(b / r));
      const logits = new Float32Array(B * this.vocab);
      rows.forEach((p, b) => logits.set(step.logits.subarray(p * this.vocab, (p + 1) * this.vocab), b * this.vocab));
      step = { logits, present: step.present.map((t) => gatherBatch(t, rows)), pastLen: step.pastLen };
    }
    const out: Generated[] = Array.from({ length: B }, () => ({
      tokens: [],
      logprobs: [],
      stop: 'max-tokens' as Generated['stop'],
    }));
    // Rows still generating, as indices into `out`; finished rows leave the batch (their cache rows are dropped).
    let active = Array.from({ length: B }, (_, b) => b);
    const V = this.vocab;
    for (let t = 0; t < maxNew; t++) {
      const keep: number[] = [];
      const next: number[] = [];
      active.forEach((b, row) => {
        const x = step.logits.subarray(row * V, (row + 1) * V);
        const tok =
          strategy === 'sample' && !opts.greedyRows?.has(b)
            ? sampleNucleus(x, opts.temperature ?? 1, opts.topP ?? 0.9, rngs[b])
            : argmax(x);
        if (stop.has(tok)) {
          out[b].stop = 'eos';
          return;
        }
        out[b].tokens.push(tok);
        out[b].logprobs.push(x[tok] - logSumExp(x));
        keep.push(row);
        next.push(tok);
      });
      if (!keep.length || t === maxNew - 1) break;
      const present = keep.length === active.length ? step.present : step.present.map((p) => gatherBatch(p, keep));
      active = keep.map((row) => active[row]);
      step = await this.forward(await this.embed(next, active.length), active.length, 1, present, step.pastLen);
    }
    return out;
  }

  /** Beam search with a cache per beam; finished hypotheses are ranked by length-normalised log-probability. */
  private async beam(prompt: Float32Array, opts: GenerateOptions, cache?: PromptCache): Promise<Generated> {
    return (await this.beamHypotheses(prompt, opts, cache))[0];
  }

  /**
   * The `n` best distinct hypotheses of a beam search of width `n` (best first), for callers that choose among
   * candidates by another score (e.g. agreement with the brain's caption embedding).
   */
  async beamCandidates(
    prompt: Float32Array,
    n: number,
    opts: GenerateOptions = {},
    cache?: PromptCache,
  ): Promise<Generated[]> {
    const hyps = await this.beamHypotheses(prompt, { ...opts, numBeams: n }, cache);
    const seen = new Set<string>();
    const out: Generated[] = [];
    for (const h of hyps) {
      const key = h.tokens.join(',');
      if (seen.has(key)) continue;
      seen.add(key);
      out.push(h);
      if (out.length >= n) break;
    }
    return out;
  }

  private async beamHypotheses(prompt: Float32Array, opts: GenerateOptions, cache?: PromptCache): Promise<Generated[]> {
    const K = opts.numBeams ?? 4;
    const maxNew = opts.maxNewTokens ?? this.gen.max_new_tokens;
    const lpPow = opts.lengthPenalty ?? 1;
    const stop = new Set([...this.gen.eos_token_ids, ...(opts.stopTokenIds ?? [])]);
    const norm = (sum: number, len: number) => sum / Math.pow(Math.max(len, 1), lpPow);
    const L = prompt.length / this.hidden;
    const first = await this.forward(prompt, 1, L, cache?.past ?? null, cache?.pastLen ?? 0);
    type Beam = { tokens: number[]; logprobs: number[]; score: number };
    let beams: Beam[] = [{ tokens: [], logprobs: [], score: 0 }];
    let logits = first.logits;
    let present = first.present;
    let pastLen = first.pastLen;
    const done: (Beam & { stop: Generated['stop'] })[] = [];
    for (let t = 0; t < maxNew; t++) {
      const V = this.vocab;
      const cands: { parent: number; tok: number; lp: number; score: number }[] = [];
      for (let b = 0; b < beams.length; b++) {
        const lp = logSoftmax(logits.subarray(b * V, (b + 1) * V));
        for (const tok of topK(lp, 2 * K)) cands.push({ parent: b, tok, lp: lp[tok], score: beams[b].score + lp[tok] });
      }
      cands.sort((a, b) => b.score - a.score);
      const next: Beam[] = [];
      const parents: number[] = [];
      for (const c of cands) {
        const p = beams[c.parent];
        if (stop.has(c.tok)) {
          done.push({ tokens: p.tokens, logprobs: p.logprobs, score: p.score, stop: 'eos' });
        } else if (next.length < K) {
          next.push({ tokens: [...p.tokens, c.tok], logprobs: [...p.logprobs, c.lp], score: c.score });
          parents.push(c.parent);
        }
        if (next.length >= K) break;
      }
      beams = next;
      // Early stop once K hypotheses are finished and no live beam can beat the worst of them (scores only fall).
      if (done.length >= K) {
        const worst = Math.min(...done.map((d) => norm(d.score, d.tokens.length)));
        if (beams.every((b) => norm(b.score, maxNew) <= worst)) break;
      }
      if (t === maxNew - 1 || beams.length === 0) break;
      const past = present.map((tensor) => gatherBatch(tensor, parents));
      const step = await this.forward(
        await this.embed(
          beams.map((b) => b.tokens[b.tokens.length - 1]),
          beams.length,
        ),
        beams.length,
        1,
        past,
        pastLen,
      );
      logits = step.logits;
      present = step.present;
      pastLen = step.pastLen;
    }
    for (const b of beams) done.push({ ...b, stop: 'max-tokens' });
    done.sort((a, b) => norm(b.score, b.tokens.length) - norm(a.score, a.tokens.length));
    return done.map((d) => ({ tokens: d.tokens, logprobs: d.logprobs, stop: d.stop }));
  }
}

/** A batch-1 tensor repeated to batch B. */
function repeatBatch(t: ort.Tensor, B: number): ort.Tensor {
  return gatherBatch(t, new Array<number>(B).fill(0));
}

/** Rows of a [B, ...] tensor picked by `rows` → [rows.length, ...]. */
function gatherBatch(t: ort.Tensor, rows: number[]): ort.Tensor {
  const src = t.data as Float32Array;
  const per = src.length / t.dims[0];
  const out = new Float32Array(per * rows.length);
  rows.forEach((r, i) => out.set(src.subarray(r * per, (r + 1) * per), i * per));
  return new ort.Tensor('float32', out, [rows.length, ...t.dims.slice(1)]);
}

export function logSumExp(x: Float32Array): number {
  let max = -Infinity;
  for (let i = 0; i < x.length; i++) if (x[i] > max) max = x[i];
  let sum = 0;
  for (let i = 0; i < x.length; i++) sum += Math.exp(x[i] - max);
  return max + Math.log(sum);
}

export function logSoftmax(x: Float32Array): Float32Array {
  const lse = logSumExp(x);
  const out = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = x[i] - lse;
  return out;
}

/** First index of the maximum (ties → lowest id, as torch.argmax). */
export function argmax(x: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i] > x[best]) best = i;
  return best;
}

function topK(x: Float32Array, k: number): number[] {
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

/** Nucleus (top-p) sampling at a temperature; the candidate set is the smallest whose probability mass reaches p. */
export function sampleNucleus(logits: Float32Array, temperature: number, topP: number, rng: () => number): number {
  const scaled = new Float32Array(logits.length);
  const temp = Math.max(temperature, 1e-5);
  for (let i = 0; i < logits.length; i++) scaled[i] = logits[i] / temp;
  const lp = logSoftmax(scaled);
  // Mass concentrates in few tokens: sort only the candidates above a cheap threshold first, widening if needed.
  let cands = topK(lp, 64);
  let mass = cands.reduce((s, i) => s + Math.exp(lp[i]), 0);
  if (mass < topP) {
    cands = Array.from(lp.keys()).sort((a, b) => lp[b] - lp[a]);
    mass = 1;
  }
  const keep: number[] = [];
  let acc = 0;
  for (const i of cands) {
    keep.push(i);
    acc += Math.exp(lp[i]);
    if (acc >= topP) break;
  }
  let r = rng() * acc;
  for (const i of keep) {
    r -= Math.exp(lp[i]);
    if (r <= 0) return i;
  }
  return keep[keep.length - 1];
}

/** Small seeded PRNG so sampled captions are reproducible per seed. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
