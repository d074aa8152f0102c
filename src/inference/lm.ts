// The frozen decoder-only LM (lm/decoder*.onnx + lm/embed_tokens.onnx) and text generation with a KV cache:
// greedy (default, parity with PyTorch), beam search, and nucleus sampling. The IO names are fixed in
// docs/ARCHITECTURE.md: inputs_embeds, attention_mask, position_ids, past_key_values.<i>.key/.value → logits, present.<i>.*;
// a step graph (lm/decoder.int8.step.onnx) also takes the prompt prefix's cache (prefix.<i>.*) and inv_temperature and
// returns the top tokens with their log-normalisers instead of the logits.
import * as ort from 'onnxruntime-node';
import type { GenerationConfig } from './bundle.js';
import { drawFrom, LogitScores, TopKScores, type Nucleus, type StepScores } from './stepScores.js';
import type { TokenGuide } from './referenceGuide.js';

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
  /**
   * Steers greedy and sampled rows of generateBatch: the next token is chosen from the LM's most probable
   * `GUIDED_TOP_K` by log p_LM + the guide's bias (the recorded log-probabilities stay the LM's own).
   */
  guide?: TokenGuide;
  /** How many of the LM's most probable tokens a guide chooses among (default GUIDED_TOP_K; at most what a step returns). */
  guideTopK?: number;
}

/** How many of the LM's most probable next tokens a guide may choose among. */
export const GUIDED_TOP_K = 128;

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
  /** What the step says of each batch row's next token (at its last position). */
  scores: StepScores;
  /** The rows' caches after the step: without the shared prompt prefix for a step graph. */
  present: ort.Tensor[];
  /** Positions attended so far, prefix included. */
  pastLen: number;
}

/** What a step needs besides the rows: the shared prompt prefix (step graphs take it apart, once for all rows) and the
 * sampling temperature (step graphs return the normaliser at that temperature). */
interface StepContext {
  prefix?: PromptCache;
  temperature?: number;
}

export class LanguageModel {
  private readonly layers: number;
  private readonly kvHeads: number;
  private readonly headDim: number;
  private readonly pastNames: string[];
  private readonly presentNames: string[];
  private readonly prefixNames: string[];
  /**
   * A step graph (lm/*.step.onnx, mindsemantix/lm_fast.py): the prompt prefix's cache goes in once for all rows, each
   * row's cache holds only its own positions, and a step returns the top-k tokens and two log-normalisers instead of the
   * logits over the vocabulary.
   */
  readonly stepGraph: boolean;

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
    this.prefixNames = [];
    for (let i = 0; i < this.layers; i++) {
      this.pastNames.push(`past_key_values.${i}.key`, `past_key_values.${i}.value`);
      this.presentNames.push(`present.${i}.key`, `present.${i}.value`);
      this.prefixNames.push(`prefix.${i}.key`, `prefix.${i}.value`);
    }
    this.stepGraph = decoder.inputNames.includes('inv_temperature');
    const missing = [...this.pastNames, ...(this.stepGraph ? this.prefixNames : [])].filter(
      (n) => !decoder.inputNames.includes(n),
    );
    if (missing.length)
      throw new Error(
        `the LM decoder graph lacks input ${missing[0]} (manifest says ${this.layers} layers); re-export the bundle.`,
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

  /**
   * One forward pass over `embeds` [B,S,hidden] given the rows' caches `past` (null: none) and `pastLen` positions
   * attended before (prefix included). A step graph takes the shared prefix from `ctx`; a full-logits graph has it in
   * every row's `past`.
   */
  async forward(
    embeds: Float32Array,
    B: number,
    S: number,
    past: ort.Tensor[] | null,
    pastLen: number,
    ctx: StepContext = {},
  ): Promise<Step> {
    const feeds: Record<string, ort.Tensor> = {
      inputs_embeds: new ort.Tensor('float32', embeds, [B, S, this.hidden]),
      attention_mask: new ort.Tensor('int64', new BigInt64Array(B * (pastLen + S)).fill(1n), [B, pastLen + S]),
    };
    const pos = new BigInt64Array(B * S);
    for (let b = 0; b < B; b++) for (let s = 0; s < S; s++) pos[b * S + s] = BigInt(pastLen + s);
    feeds.position_ids = new ort.Tensor('int64', pos, [B, S]);
    const empty = (rows: number) =>
      new ort.Tensor('float32', new Float32Array(0), [rows, this.kvHeads, 0, this.headDim]);
    for (let i = 0; i < this.pastNames.length; i++) feeds[this.pastNames[i]] = past ? past[i] : empty(B);
    if (!this.stepGraph) {
      const out = await this.decoder.run(feeds);
      const all = out.logits.data as Float32Array;
      const V = out.logits.dims[2];
      const logits = new Float32Array(B * V);
      for (let b = 0; b < B; b++) logits.set(all.subarray((b * S + S - 1) * V, (b * S + S) * V), b * V);
      return {
        scores: new LogitScores(logits, V),
        present: this.presentNames.map((n) => out[n]),
        pastLen: pastLen + S,
      };
    }
    const temperature = Math.max(ctx.temperature ?? 1, 1e-5);
    feeds.inv_temperature = new ort.Tensor('float32', Float32Array.of(1 / temperature), [1]);
    for (let i = 0; i < this.prefixNames.length; i++)
      feeds[this.prefixNames[i]] = ctx.prefix ? ctx.prefix.past[i] : empty(1);
    const out = await this.decoder.run(feeds);
    const K = out.top_ids.dims[1];
    const ids = Int32Array.from(out.top_ids.data as BigInt64Array, (x) => Number(x));
    const scores = new TopKScores(
      B,
      K,
      out.top_values.data as Float32Array,
      ids,
      out.logsumexp.data as Float32Array,
      out.logsumexp_t.data as Float32Array,
      temperature,
    );
    return { scores, present: this.presentNames.map((n) => out[n]), pastLen: pastLen + S };
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
    const temperature = Math.max(opts.temperature ?? 1, 1e-5);
    // A step graph reads the prefix cache apart (once for all rows); a full-logits graph needs it in every row.
    const ctx: StepContext = this.stepGraph ? { prefix: cache, temperature } : { temperature };
    const past = cache && !this.stepGraph ? (P === 1 ? cache.past : cache.past.map((t) => repeatBatch(t, P))) : null;
    let step = await this.forward(prompts, P, L, past, cache?.pastLen ?? 0, ctx);
    const out: Generated[] = Array.from({ length: B }, () => ({
      tokens: [],
      logprobs: [],
      stop: 'max-tokens' as Generated['stop'],
    }));
    // Rows that have read the same prompt and drawn the same tokens so far have the same cache and the same next-token
    // distribution, so the LM runs once per distinct history (a group) and each row draws from its group's scores with
    // its own generator: the same tokens as a forward pass per row, at the cost of the distinct histories only.
    // Sampled candidates of one trial share their first tokens most of the time. Finished rows leave their group.
    let groups: number[][] = Array.from({ length: P }, (_, p) => Array.from({ length: r }, (_, k) => p * r + k));
    const topP = opts.topP ?? 0.9;
    const guideK = opts.guideTopK ?? GUIDED_TOP_K;
    for (let t = 0; t < maxNew; t++) {
      const next: { parent: number; tok: number; rows: number[] }[] = [];
      groups.forEach((rows, g) => {
        let nucleus: Nucleus | null = null;
        const guided = opts.guide
          ? guidedScores(step.scores, g, opts.guide, Math.floor(rows[0] / r), out[rows[0]].tokens, guideK)
          : null;
        const byToken = new Map<number, number[]>();
        for (const b of rows) {
          let tok: number;
          if (strategy === 'sample' && !opts.greedyRows?.has(b)) {
            nucleus ??= guided ? guided.nucleus(temperature, topP) : step.scores.nucleus(g, temperature, topP);
            tok = drawFrom(nucleus, rngs[b]);
          } else tok = guided ? guided.argmax() : step.scores.argmax(g);
          if (stop.has(tok)) {
            out[b].stop = 'eos';
            continue;
          }
          out[b].tokens.push(tok);
          out[b].logprobs.push(step.scores.logprob(g, tok));
          const members = byToken.get(tok);
          if (members) members.push(b);
          else byToken.set(tok, [b]);
        }
        for (const [tok, members] of byToken) next.push({ parent: g, tok, rows: members });
      });
      if (!next.length || t === maxNew - 1) break;
      const parents = next.map((n) => n.parent);
      const same = parents.length === groups.length && parents.every((p, i) => p === i);
      const present = same ? step.present : step.present.map((p) => gatherBatch(p, parents));
      groups = next.map((n) => n.rows);
      step = await this.forward(
        await this.embed(
          next.map((n) => n.tok),
          next.length,
        ),
        next.length,
        1,
        present,
        step.pastLen,
        ctx,
      );
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
    const ctx: StepContext = this.stepGraph ? { prefix: cache } : {};
    const first = await this.forward(
      prompt,
      1,
      L,
      this.stepGraph ? null : (cache?.past ?? null),
      cache?.pastLen ?? 0,
      ctx,
    );
    type Beam = { tokens: number[]; logprobs: number[]; score: number };
    let beams: Beam[] = [{ tokens: [], logprobs: [], score: 0 }];
    let scores = first.scores;
    let present = first.present;
    let pastLen = first.pastLen;
    const done: (Beam & { stop: Generated['stop'] })[] = [];
    for (let t = 0; t < maxNew; t++) {
      const cands: { parent: number; tok: number; lp: number; score: number }[] = [];
      for (let b = 0; b < beams.length; b++) {
        const top = scores.top(b, 2 * K);
        top.tokens.forEach((tok, i) =>
          cands.push({ parent: b, tok, lp: top.logprobs[i], score: beams[b].score + top.logprobs[i] }),
        );
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
        ctx,
      );
      scores = step.scores;
      present = step.present;
      pastLen = step.pastLen;
    }
    for (const b of beams) done.push({ ...b, stop: 'max-tokens' });
    done.sort((a, b) => norm(b.score, b.tokens.length) - norm(a.score, a.tokens.length));
    return done.map((d) => ({ tokens: d.tokens, logprobs: d.logprobs, stop: d.stop }));
  }
}

/**
 * A row's most probable next tokens rescored by a guide: greedy takes the best total, sampling draws from the nucleus of
 * softmax(total / T). Only the LM's top `GUIDED_TOP_K` are eligible, so the guide reorders what the LM finds plausible.
 */
function guidedScores(
  scores: StepScores,
  row: number,
  guide: TokenGuide,
  prompt: number,
  history: readonly number[],
  k: number,
) {
  const top = scores.top(row, Math.max(1, Math.min(k, scores.maxTop)));
  const bias = guide.logBias(prompt, history, top.tokens);
  const total = top.logprobs.map((lp, i) => lp + bias[i]);
  const order = [...total.keys()].sort((a, b) => total[b] - total[a] || a - b);
  return {
    argmax: () => top.tokens[order[0]],
    nucleus: (temperature: number, topP: number): Nucleus => {
      const t = Math.max(temperature, 1e-5);
      const best = total[order[0]];
      let z = 0;
      for (const i of order) z += Math.exp((total[i] - best) / t);
      const tokens: number[] = [];
      const probs: number[] = [];
      let mass = 0;
      for (const i of order) {
        tokens.push(top.tokens[i]);
        probs.push(Math.exp((total[i] - best) / t) / z);
        mass += probs[probs.length - 1];
        if (mass >= topP) break;
      }
      return { tokens, probs, mass };
    },
  };
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
