// The brain decoder: TrialResponse → (subject encoder → Q-Former → soft prompt → frozen LM) → caption, and
// (caption embedding + brain tokens → generator) → reconstruction image. One instance per loaded bundle.
import * as ort from 'onnxruntime-node';
import type { Caption, TrialResponse } from '../core/types.js';
import { type Bundle, type GenerationConfig, loadBundle, BundleError } from './bundle.js';
import { createSessionFactory, type Device, type SessionFactory } from './sessions.js';
import { LanguageModel, type GenerateOptions, type Generated, type PromptCache } from './lm.js';
import { loadTokenizer, type TextTokenizer } from './tokenizer.js';
import { SentenceEncoder } from './sentenceEncoder.js';
import { chooseCandidate, type CandidateScorer, type CaptionBank } from './referenceScorer.js';
import { ReferenceGuide, type ReferenceGuideConfig } from './referenceGuide.js';
import { encodeRgb, planarToRgb, type ImageFormat } from './image.js';
import { readNpy } from './npy.js';

export interface DecoderOptions {
  device?: Device;
  threads?: number;
  /** Verify sha256 of every bundle file at load (default true). */
  verify?: boolean;
  log?: (line: string) => void;
  /** Overrides of the manifest's generation settings (e.g. max_new_tokens, prompt ids). */
  generation?: Partial<GenerationConfig>;
  /**
   * Which LM decoder graph: 'auto' (default) takes lm/decoder.int8.onnx when the bundle has it (8-bit weight blocks,
   * ~4× less memory traffic per token on CPU; its captions can differ from fp32 where the LM's top two tokens are
   * nearly tied — docs/inference.md), else lm/decoder.onnx; 'fp32' always the latter (PyTorch parity).
   */
  lmPrecision?: LmPrecision;
  /**
   * The int8 graph runs as its decode-step graph lm/decoder.int8.step.onnx when the bundle has it (default true): the
   * same weights and numbers, the prompt prefix's cache shared by all rows and only the top tokens returned, so a step
   * of many candidate rows costs a fraction (docs/inference.md). false: the full-logits graph.
   */
  lmStepGraph?: boolean;
}

export type LmPrecision = 'auto' | 'fp32' | 'int8';
export const LM_PRECISIONS: readonly LmPrecision[] = ['auto', 'fp32', 'int8'];

export const LM_INT8 = 'lm/decoder.int8.onnx';
export const LM_INT8_STEP = 'lm/decoder.int8.step.onnx';

export interface DecodeOptions extends GenerateOptions {
  /**
   * Retrieval-augmented prompting: text placed after the soft prompt, from the trial's caption embedding (e.g. the
   * nearest training captions). Trials with context are generated one by one (their prompts differ in length).
   */
  context?: (captionEmbedding: Float32Array) => string | undefined;
  /** Choose the caption among several the LM proposes, by the brain's own read-out (see `RerankOptions`). */
  rerank?: RerankOptions;
  /** Run the image generator too (default true when the bundle has one). */
  reconstruct?: boolean;
  imageFormat?: ImageFormat;
  /** Upscale the reconstruction to this width for display (default: native size). */
  imageWidth?: number;
}

/**
 * Brain-guided candidate selection. The LM's most probable caption is what it finds fluent after the soft prompt, and
 * on a noisy single trial that drifts to generic captions; the Q-Former also predicts the caption's sentence embedding.
 * Generating several candidates and keeping the one whose MiniLM embedding is closest to that prediction uses the
 * brain twice, and every caption is still the LM's own (never a training caption).
 */
export interface RerankOptions {
  /** Candidates per trial (1 = off). */
  candidates: number;
  /** 'beam': the distinct hypotheses of a beam of that width; 'sample': the greedy caption plus nucleus samples. */
  strategy?: 'beam' | 'sample';
  /** Sampling temperature for 'sample' (default 0.7). */
  temperature?: number;
  /** Weight of the candidate's mean token log-probability added to its score (default 0: the score alone). */
  lmWeight?: number;
  /**
   * A second read-out of the same voxels into caption-embedding space (the bundle's ridge baseline): the target is
   * then the mean of the two unit-length predictions, whose errors are partly independent.
   */
  guide?: EmbeddingReadout;
  /**
   * How a candidate is scored against the target embedding. Default: cosine of its MiniLM sentence embedding. A scorer
   * (e.g. `RetrievedReferenceScorer`: CIDEr-D against the training captions nearest to the target) replaces it.
   */
  scorer?: CandidateScorer;
  /**
   * Steer every candidate (greedy and sampled rows) token by token towards the training captions nearest to the target
   * (`ReferenceGuide`): the LM's log-probability + weight × log p of a weighted n-gram model of those captions. Works
   * with the 'sample' strategy, and with one candidate (the steered greedy caption).
   */
  steer?: { bank: CaptionBank } & Partial<ReferenceGuideConfig>;
}

export interface EmbeddingReadout {
  has(subject: string): boolean;
  embedding(subject: string, voxels: Float32Array): Promise<Float32Array>;
}

export const MAX_RERANK_CANDIDATES = 16;

export interface BrainCaption {
  text: string;
  tokens: number[];
  tokenLogprobs: number[];
  /** Mean per-token probability of the generated tokens (0 when none). */
  confidence: number;
  stop: Generated['stop'];
  captionEmbedding: Float32Array;
  brainTokens: ort.Tensor;
}

/** `captionEmbedding`: the Q-Former's read-out in text space (what the read-out-retrieval comparison uses). */
export type DecodedCaption = Caption & {
  imageFormat?: ImageFormat;
  tokens: number[];
  captionEmbedding: Float32Array;
  brainTokens: ort.Tensor;
};

/** A reconstruction encoded for display or recording, with the time it took (generator + encoding), ms. */
export interface EncodedReconstruction {
  image: Uint8Array;
  imageFormat: ImageFormat;
  ms: number;
  /** The generator's image before encoding: planar float [3, height, width] in 0..1. */
  pixels?: PlanarImage;
}

/** A planar float image [3, height, width] in 0..1, as the generators write them. */
export interface PlanarImage {
  data: Float32Array;
  width: number;
  height: number;
}

export class BrainDecoder {
  private readonly encoders = new Map<string, ort.InferenceSession>();
  private prefixCache: PromptCache | undefined;
  private suffixEmb!: Float32Array;
  private sentenceEncoder: Promise<SentenceEncoder> | undefined;
  /** Steering guides built per caption bank and weight (each holds the bank's tokenized captions). */
  private readonly guides = new WeakMap<CaptionBank, Map<string, ReferenceGuide>>();
  /** A sampling generator's fixed starting noise [1,3,S,S] (manifest flow_generator.noise), the same for every trial. */
  private generatorNoise: ort.Tensor | undefined;
  /** The image generator graph in use, relative to the bundle (undefined: none). */
  generatorFile: string | undefined;

  private constructor(
    readonly bundle: Bundle,
    readonly provider: Device,
    private readonly qformer: ort.InferenceSession,
    readonly lm: LanguageModel,
    readonly tokenizer: TextTokenizer,
    private readonly generator: ort.InferenceSession | null,
    private readonly factory: SessionFactory,
    /** The LM graph in use, relative to the bundle (lm/decoder.onnx or lm/decoder.int8.onnx). */
    readonly lmFile: string,
  ) {}

  /** Loads and validates a bundle, creates the sessions, and warms them up (first-run allocation happens here). */
  static async load(bundleOrDir: Bundle | string, opts: DecoderOptions = {}): Promise<BrainDecoder> {
    const bundle =
      typeof bundleOrDir === 'string' ? await loadBundle(bundleOrDir, { verify: opts.verify }) : bundleOrDir;
    const m = bundle.manifest;
    const factory = await createSessionFactory(bundle.path('qformer.onnx'), {
      device: opts.device,
      threads: opts.threads,
      log: opts.log,
    });
    const precision = opts.lmPrecision ?? 'auto';
    if (precision === 'int8' && !(LM_INT8 in bundle.lmFiles)) {
      throw new BundleError(
        `model bundle ${bundle.dir} has no ${LM_INT8}; use the fp32 LM or regenerate lm/ with an int8 export.`,
      );
    }
    const int8 = precision !== 'fp32' && LM_INT8 in bundle.lmFiles;
    const lmFile = !int8
      ? 'lm/decoder.onnx'
      : opts.lmStepGraph !== false && LM_INT8_STEP in bundle.lmFiles
        ? LM_INT8_STEP
        : LM_INT8;
    opts.log?.(`inference: LM ${lmFile}`);
    const genFile = generatorFile(bundle);
    const [qformer, decoder, embed, generator] = await Promise.all([
      factory.create(bundle.path('qformer.onnx')),
      factory.create(bundle.path(lmFile)),
      factory.create(bundle.path('lm/embed_tokens.onnx')),
      genFile ? factory.create(bundle.path(genFile)) : Promise.resolve(null),
    ]);
    const gen: GenerationConfig = { ...m.generation, ...opts.generation };
    const lm = new LanguageModel(decoder, embed, gen, m.dims.D_lm);
    const tokenizer = loadTokenizer(bundle.path('lm/tokenizer.json'));
    const d = new BrainDecoder(bundle, factory.provider, qformer, lm, tokenizer, generator, factory, lmFile);
    d.generatorFile = generator ? genFile : undefined;
    if (generator?.inputNames.includes('noise')) d.generatorNoise = readGeneratorNoise(bundle);
    // The prompt prefix (e.g. few-shot examples) is the same for every trial: its KV cache is computed once here.
    d.prefixCache = gen.prefix_ids.length ? await lm.prefix(await lm.embed(gen.prefix_ids)) : undefined;
    d.suffixEmb = gen.suffix_ids.length ? await lm.embed(gen.suffix_ids) : new Float32Array(0);
    for (const id of Object.keys(m.subjects)) await d.encoder(id);
    await d.warmup();
    return d;
  }

  get subjects(): string[] {
    return Object.keys(this.bundle.manifest.subjects);
  }

  get hasGenerator(): boolean {
    return this.generator !== null;
  }

  private async encoder(subject: string): Promise<ort.InferenceSession> {
    const s = this.encoders.get(subject);
    if (s) return s;
    const entry = this.bundle.manifest.subjects[subject];
    if (!entry)
      throw new BundleError(
        `model bundle ${this.bundle.dir} has no encoder for subject "${subject}" (it has ${this.subjects.join(', ')}); pass --models with a bundle trained for this subject.`,
      );
    const created = await this.factory.create(this.bundle.path(entry.encoder));
    this.encoders.set(subject, created);
    return created;
  }

  /** One short pass through every model so the first real trial does not pay for lazy allocation. */
  async warmup(): Promise<void> {
    const subject = this.subjects[0];
    const v = new Float32Array(this.bundle.manifest.subjects[subject].voxels);
    const c = await this.caption(subject, v, { maxNewTokens: 2 });
    if (this.generator) await this.reconstruct(c.captionEmbedding, c.brainTokens);
  }

  /** Voxels (mask order) → brain tokens → soft prompt → generated caption. */
  async caption(subject: string, voxels: Float32Array, opts: GenerateOptions = {}): Promise<BrainCaption> {
    return (await this.captionBatch([{ subject, voxels }], opts))[0];
  }

  /** Encoder and Q-Former per response: brain tokens, the read-out's caption embedding and the soft prompt. */
  private async brainOf(
    items: { subject: string; voxels: Float32Array }[],
  ): Promise<{ brainTokens: ort.Tensor; captionEmbedding: Float32Array; soft: Float32Array }[]> {
    const m = this.bundle.manifest;
    const brain: { brainTokens: ort.Tensor; captionEmbedding: Float32Array; soft: Float32Array }[] = [];
    for (const { subject, voxels } of items) {
      const enc = await this.encoder(subject);
      const entry = m.subjects[subject];
      if (voxels.length !== entry.voxels) {
        throw new Error(
          `trial response has ${voxels.length} voxels but the bundle's sub-${subject} encoder expects ${entry.voxels}; the ROI mask and the bundle do not match.`,
        );
      }
      const encOut = await enc.run({ [enc.inputNames[0]]: new ort.Tensor('float32', voxels, [1, voxels.length]) });
      const brainTokens = encOut.brain_tokens ?? encOut[enc.outputNames[0]];
      const q = await this.qformer.run({ brain_tokens: brainTokens });
      brain.push({
        brainTokens,
        captionEmbedding: q.caption_embedding.data as Float32Array,
        soft: q.soft_prompt.data as Float32Array,
      });
    }
    return brain;
  }

  /** Several responses at once: encoders and Q-Former per response, one batched LM generation for all. */
  async captionBatch(
    items: { subject: string; voxels: Float32Array }[],
    opts: GenerateOptions & Pick<DecodeOptions, 'context' | 'rerank'> = {},
  ): Promise<BrainCaption[]> {
    const brain = await this.brainOf(items);
    if (opts.context && (opts.rerank?.candidates ?? 1) > 1)
      throw new Error('retrieval context and candidate reranking cannot be combined; use one of them.');
    let gs: Generated[];
    if (opts.context) {
      gs = [];
      for (const x of brain) {
        const text = opts.context(x.captionEmbedding);
        const ctx = text ? await this.lm.embed(this.tokenizer.encode(text)) : new Float32Array(0);
        const prompt = new Float32Array(x.soft.length + ctx.length + this.suffixEmb.length);
        prompt.set(x.soft, 0);
        prompt.set(ctx, x.soft.length);
        prompt.set(this.suffixEmb, x.soft.length + ctx.length);
        gs.push(...(await this.lm.generateBatch(prompt, 1, opts, this.prefixCache)));
      }
    } else {
      const per = brain[0].soft.length + this.suffixEmb.length;
      const prompts = new Float32Array(per * brain.length);
      brain.forEach((x, i) => {
        prompts.set(x.soft, i * per);
        prompts.set(this.suffixEmb, i * per + x.soft.length);
      });
      const n = opts.rerank?.candidates ?? 1;
      gs =
        n > 1 || opts.rerank?.steer
          ? await this.rerankBatch(
              prompts,
              per,
              await this.rerankTargets(
                items,
                brain.map((x) => x.captionEmbedding),
                opts.rerank!,
              ),
              opts.rerank!,
              opts,
            )
          : await this.lm.generateBatch(prompts, brain.length, opts, this.prefixCache);
    }
    return gs.map((g, i) => ({
      text: this.tokenizer.decode(g.tokens),
      tokens: g.tokens,
      tokenLogprobs: g.logprobs,
      stop: g.stop,
      confidence: g.logprobs.length ? g.logprobs.reduce((s, lp) => s + Math.exp(lp), 0) / g.logprobs.length : 0,
      captionEmbedding: brain[i].captionEmbedding,
      brainTokens: brain[i].brainTokens,
    }));
  }

  /** The candidate captions reranking chooses from, for one trial (`r.candidates` at most). */
  async captionCandidates(
    subject: string,
    voxels: Float32Array,
    r: RerankOptions,
    opts: GenerateOptions = {},
  ): Promise<Generated[]> {
    const [x] = await this.brainOf([{ subject, voxels }]);
    const prompt = new Float32Array(x.soft.length + this.suffixEmb.length);
    prompt.set(x.soft, 0);
    prompt.set(this.suffixEmb, x.soft.length);
    const targets = r.steer ? await this.rerankTargets([{ subject, voxels }], [x.captionEmbedding], r) : undefined;
    return (await this.candidates(prompt, prompt.length, 1, r, opts, targets))[0];
  }

  private async candidates(
    prompts: Float32Array,
    per: number,
    B: number,
    r: RerankOptions,
    opts: GenerateOptions,
    targets?: Float32Array[],
  ): Promise<Generated[][]> {
    const n = Math.min(Math.max(1, Math.floor(r.candidates)), MAX_RERANK_CANDIDATES);
    const cands: Generated[][] = [];
    if (r.steer && (r.strategy ?? 'beam') === 'beam' && n > 1)
      throw new Error('steering works with sampled candidates only; use the sample strategy or drop the steering.');
    const guide = r.steer && targets ? this.referenceGuide(r.steer).forTargets(targets) : undefined;
    if ((r.strategy ?? 'beam') === 'beam' && n > 1) {
      for (let b = 0; b < B; b++)
        cands.push(await this.lm.beamCandidates(prompts.subarray(b * per, (b + 1) * per), n, opts, this.prefixCache));
    } else {
      // One generation for all: per trial a greedy row and n-1 sampled rows (a step costs far less per row in a batch);
      // each trial's prompt is read once and its cache shared by its n rows.
      // Each trial's samples are seeded from its own prompt, so a trial gets the same candidates alone, in any batch,
      // live or replayed from recorded responses.
      const rowSeeds: number[] = [];
      const greedyRows = new Set<number>();
      for (let b = 0; b < B; b++) {
        const h = hashFloats(prompts.subarray(b * per, (b + 1) * per), opts.seed ?? 0);
        greedyRows.add(b * n);
        rowSeeds.push(0);
        for (let k = 0; k < n - 1; k++) rowSeeds.push((h + k) >>> 0);
      }
      const rows = await this.lm.generateBatch(
        prompts,
        B * n,
        {
          ...opts,
          strategy: 'sample',
          temperature: r.temperature ?? 0.7,
          rowSeeds,
          greedyRows,
          rowsPerPrompt: n,
          ...(guide ? { guide } : {}),
        },
        this.prefixCache,
      );
      const greedy = rows.filter((_, i) => greedyRows.has(i));
      const sampled = rows.filter((_, i) => !greedyRows.has(i));
      for (let b = 0; b < B; b++) {
        // Distinct texts only: a sample that repeats the greedy caption adds nothing to choose from.
        const seen = new Set<string>();
        cands.push(
          [greedy[b], ...sampled.slice(b * (n - 1), (b + 1) * (n - 1))].filter((g) => {
            const key = g.tokens.join(',');
            if (seen.has(key)) return false;
            seen.add(key);
            return true;
          }),
        );
      }
    }
    return cands;
  }

  /** What candidates are compared with: the Q-Former's caption embedding, averaged with the guide's where it has one. */
  private async rerankTargets(
    items: { subject: string; voxels: Float32Array }[],
    readouts: Float32Array[],
    r: RerankOptions,
  ): Promise<Float32Array[]> {
    const unit = (x: Float32Array) => {
      const n = Math.hypot(...x) || 1;
      return x.map((v) => v / n);
    };
    return Promise.all(
      items.map(async ({ subject, voxels }, i) => {
        if (!r.guide?.has(subject)) return readouts[i];
        const a = unit(readouts[i]);
        const b = unit(await r.guide.embedding(subject, voxels));
        return a.map((v, k) => v + b[k]);
      }),
    );
  }

  /** Per prompt, the candidate caption that scores best against that trial's target embedding. */
  private async rerankBatch(
    prompts: Float32Array,
    per: number,
    targets: Float32Array[],
    r: RerankOptions,
    opts: GenerateOptions,
  ): Promise<Generated[]> {
    const B = targets.length;
    const cands = await this.candidates(prompts, per, B, r, opts, targets);
    if (cands.every((cs) => cs.length === 1)) return cands.map((cs) => cs[0]);
    const texts = cands.map((cs) => cs.map((g) => this.tokenizer.decode(g.tokens)));
    const scores = r.scorer
      ? texts.map((ts, b) => r.scorer!.scores(ts, targets[b]))
      : await this.cosineScores(texts, targets);
    return cands.map(
      (cs, b) =>
        cs[
          chooseCandidate(
            scores[b],
            cs.map((g) => g.logprobs),
            r.lmWeight ?? 0,
          )
        ],
    );
  }

  private referenceGuide({ bank, ...config }: { bank: CaptionBank } & Partial<ReferenceGuideConfig>): ReferenceGuide {
    let byConfig = this.guides.get(bank);
    if (!byConfig) this.guides.set(bank, (byConfig = new Map()));
    const key = JSON.stringify(config);
    let g = byConfig.get(key);
    if (!g) {
      // The LM ends its answer with the first eos id (<|im_end|> for the chat LM); the expert learns where captions stop.
      g = ReferenceGuide.create(bank, this.tokenizer, this.lm.gen.eos_token_ids[0], config);
      byConfig.set(key, g);
    }
    return g;
  }

  /** Cosine of each candidate's MiniLM sentence embedding with its trial's target. */
  private async cosineScores(texts: string[][], targets: Float32Array[]): Promise<number[][]> {
    this.sentenceEncoder ??= SentenceEncoder.load(this.bundle, this.factory);
    const enc = await this.sentenceEncoder;
    const emb = await enc.embed(texts.flat());
    const E = enc.dim;
    let row = 0;
    return texts.map((ts, b) => {
      const t = targets[b];
      let norm = 0;
      for (let k = 0; k < E; k++) norm += t[k] * t[k];
      norm = Math.sqrt(norm) || 1;
      return ts.map((text) => {
        // An empty caption has no embedding worth comparing; it can win only if nothing else was generated.
        let cos = text ? 0 : -2;
        for (let k = 0; k < E; k++) cos += (emb[row * E + k] * t[k]) / norm;
        row++;
        return cos;
      });
    });
  }

  /**
   * Caption embedding + brain tokens → RGB bytes of the generator's image. The graph takes what it names: brain_tokens
   * (the regression generator) and/or noise (the flow-matching sampler, fed the bundle's fixed noise).
   */
  async reconstruct(
    captionEmbedding: Float32Array,
    brainTokens: ort.Tensor,
  ): Promise<{ rgb: Uint8Array; width: number; height: number; pixels: Float32Array }> {
    if (!this.generator) throw new Error('this bundle has no image generator');
    const [, H, W] = this.bundle.manifest.dims.image;
    const feeds: Record<string, ort.Tensor> = {
      caption_embedding: new ort.Tensor('float32', captionEmbedding, [1, captionEmbedding.length]),
    };
    if (this.generator.inputNames.includes('brain_tokens')) feeds.brain_tokens = brainTokens;
    if (this.generatorNoise) feeds.noise = this.generatorNoise;
    const out = await this.generator.run(feeds);
    const img = out.image ?? out[this.generator.outputNames[0]];
    const [, , h, w] = img.dims.length === 4 ? img.dims : [1, 3, H, W];
    const data = img.data as Float32Array;
    // `pixels`: the first image as the generator wrote it, planar float (the image metrics score it unrounded)
    return { rgb: planarToRgb(data, h, w), width: w, height: h, pixels: data.slice(0, 3 * h * w) };
  }

  /**
   * A decoded caption's reconstruction, encoded (`imageFormat`, upscaled to `imageWidth` when given). Separate from
   * `decodeBatch` so the serving pipeline can emit the caption first and generate the image afterwards.
   */
  async reconstructEncoded(
    c: Pick<DecodedCaption, 'captionEmbedding' | 'brainTokens'>,
    opts: Pick<DecodeOptions, 'imageFormat' | 'imageWidth'> = {},
  ): Promise<EncodedReconstruction> {
    const t0 = performance.now();
    const format = opts.imageFormat ?? 'png';
    const r = await this.reconstruct(c.captionEmbedding, c.brainTokens);
    const image = await encodeRgb(r.rgb, r.width, r.height, format, opts.imageWidth);
    return {
      image,
      imageFormat: format,
      ms: performance.now() - t0,
      pixels: { data: r.pixels, width: r.width, height: r.height },
    };
  }

  /** Decodes one trial end to end into the shared `Caption` shape. */
  async decode(trial: TrialResponse, opts: DecodeOptions = {}): Promise<DecodedCaption> {
    return (await this.decodeBatch([trial], opts))[0];
  }

  /**
   * Decodes several trials with one batched LM generation (a backlog after a burst of trials). With `reconstruct`
   * (the default when the bundle has a generator) each caption waits for its image; the serving pipeline passes
   * `reconstruct: false` and calls `reconstructEncoded` after emitting the caption.
   */
  async decodeBatch(trials: TrialResponse[], opts: DecodeOptions = {}): Promise<DecodedCaption[]> {
    const cs = await this.captionBatch(
      trials.map((t) => ({ subject: t.subject, voxels: t.vector })),
      opts,
    );
    const captionDone = Date.now();
    const out: DecodedCaption[] = [];
    for (const [i, trial] of trials.entries()) {
      const c = cs[i];
      const r = (opts.reconstruct ?? true) && this.generator ? await this.reconstructEncoded(c, opts) : undefined;
      out.push({
        run: trial.run,
        trial: trial.trial,
        stimulusId: trial.stimulusId,
        text: c.text,
        tokens: c.tokens,
        confidence: c.confidence,
        tokenLogprobs: c.tokenLogprobs,
        captionEmbedding: c.captionEmbedding,
        brainTokens: c.brainTokens,
        image: r?.image,
        imageFormat: r?.imageFormat,
        references: trial.event?.references,
        flags: [...trial.flags],
        latencyMs: {
          responseToCaption: Math.max(0, captionDone - trial.readyAt),
          ...(r ? { reconstruction: r.ms } : {}),
        },
      });
    }
    return out;
  }

  async release(): Promise<void> {
    const all = [this.qformer, this.generator, ...this.encoders.values()].filter(
      (s): s is ort.InferenceSession => s !== null,
    );
    await Promise.all([
      ...all.map((s) => s.release()),
      this.lm.release(),
      this.sentenceEncoder?.then((e) => e.release()),
    ]);
  }

  /** The session factory (same execution provider) for side models such as the ridge baseline. */
  get sessions(): SessionFactory {
    return this.factory;
  }
}

/**
 * The reconstruction graph: the manifest's `flow_generator` (the flow-matching sampler, docs/model.md) when the bundle has
 * one, else the regression generator.onnx; undefined when neither is there.
 */
function generatorFile(bundle: Bundle): string | undefined {
  const flow = bundle.manifest.flow_generator as { onnx?: unknown } | undefined;
  if (flow !== undefined) {
    if (typeof flow.onnx !== 'string' || !bundle.has(flow.onnx)) {
      throw new BundleError(
        `model bundle ${bundle.dir} names a flow_generator graph that is missing; re-export the bundle or remove manifest.flow_generator.`,
      );
    }
    return flow.onnx;
  }
  return bundle.has('generator.onnx') ? 'generator.onnx' : undefined;
}

/** The sampler's starting noise named by manifest `flow_generator.noise` (a .npy of shape [1,3,S,S]). */
function readGeneratorNoise(bundle: Bundle): ort.Tensor {
  const spec = bundle.manifest.flow_generator as { noise?: unknown } | undefined;
  const rel = typeof spec?.noise === 'string' ? spec.noise : undefined;
  if (!rel || !bundle.has(rel)) {
    throw new BundleError(
      `model bundle ${bundle.dir} has an image generator that samples from noise but no noise file (manifest flow_generator.noise); re-export the bundle.`,
    );
  }
  const npy = readNpy(bundle.path(rel));
  if (npy.shape.length !== 4 || npy.shape[0] !== 1 || npy.shape[1] !== 3) {
    throw new BundleError(
      `model bundle ${bundle.dir}: ${rel} has shape [${npy.shape.join(',')}] but [1,3,S,S] was expected; re-export the bundle.`,
    );
  }
  return new ort.Tensor('float32', npy.data, npy.shape);
}

/** FNV-1a over the float bits: a seed that is a function of the values alone. */
function hashFloats(x: Float32Array, seed: number): number {
  const bits = new Uint32Array(x.buffer, x.byteOffset, x.length);
  let h = (0x811c9dc5 ^ seed) >>> 0;
  for (let i = 0; i < bits.length; i++) h = Math.imul(h ^ bits[i], 0x01000193) >>> 0;
  return h;
}
