// Ridge-retrieval baseline: a per-subject linear map (baseline-<subject>.onnx) predicts a caption embedding from the
// voxels; the answer is the training caption whose MiniLM embedding is nearest by cosine. Scored on the same trials
// as the brain decoder so the demo's summary shows what the model adds over a linear read-out.
import { readFileSync } from 'node:fs';
import * as ort from 'onnxruntime-node';
import type { Bundle } from './bundle.js';
import { readNpy } from './npy.js';
import type { SessionFactory } from './sessions.js';
import { nearestRow, normaliseRows, SentenceEncoder } from './sentenceEncoder.js';

/**
 * The bundle's baseline captions (`baseline_captions.json` unless the manifest's baseline.captions names another file):
 * the distinct training captions the ridge retrieves from. Null when the bundle has none.
 */
export function readBaselineCaptions(bundle: Bundle): string[] | null {
  const m = bundle.manifest;
  const spec = (typeof m.baseline === 'object' && m.baseline !== null ? m.baseline : {}) as { captions?: unknown };
  const capFile = typeof spec.captions === 'string' ? spec.captions : 'baseline_captions.json';
  if (!bundle.has(capFile)) return null;
  const captions = JSON.parse(readFileSync(bundle.path(capFile), 'utf8')) as string[];
  if (!Array.isArray(captions) || !captions.every((c) => typeof c === 'string'))
    throw new Error(`${capFile} must be a JSON array of caption strings`);
  return captions;
}

export class RidgeRetrieval {
  private constructor(
    private readonly sessions: Map<string, ort.InferenceSession>,
    readonly captions: string[],
    /** [captions.length, E], rows L2-normalised (the reference scorers' caption bank). */
    readonly embeddings: Float32Array,
    readonly dim: number,
  ) {}

  /** Loads the baseline when the bundle carries one for at least one subject; otherwise null. */
  static async load(bundle: Bundle, factory: SessionFactory): Promise<RidgeRetrieval | null> {
    const m = bundle.manifest;
    const subjects = Object.entries(m.subjects).filter(([, s]) => s.baseline && bundle.has(s.baseline));
    const spec = (typeof m.baseline === 'object' && m.baseline !== null ? m.baseline : {}) as {
      captions?: unknown;
      embeddings?: unknown;
    };
    if (!subjects.length) return null;
    const captions = readBaselineCaptions(bundle);
    if (!captions) return null;
    const E = m.dims.E;
    const embFile = typeof spec.embeddings === 'string' ? spec.embeddings : 'baseline_embeddings.npy';
    let emb: Float32Array;
    if (bundle.has(embFile)) {
      const npy = readNpy(bundle.path(embFile));
      if (npy.shape[0] !== captions.length || npy.shape[1] !== E)
        throw new Error(`${embFile} has shape [${npy.shape}] but ${captions.length}×${E} was expected`);
      emb = npy.data;
    } else {
      emb = await embedTexts(bundle, factory, captions);
    }
    normaliseRows(emb, E);
    const sessions = new Map<string, ort.InferenceSession>();
    for (const [id, s] of subjects) sessions.set(id, await factory.create(bundle.path(s.baseline!)));
    return new RidgeRetrieval(sessions, captions, emb, E);
  }

  has(subject: string): boolean {
    return this.sessions.has(subject);
  }

  async predict(
    subject: string,
    voxels: Float32Array,
  ): Promise<{ caption: string; index: number; similarity: number }> {
    return this.nearest(await this.embedding(subject, voxels));
  }

  /** The ridge's predicted caption embedding for these voxels (not normalised). */
  async embedding(subject: string, voxels: Float32Array): Promise<Float32Array> {
    const s = this.sessions.get(subject);
    if (!s) throw new Error(`no ridge baseline for subject ${subject}`);
    const out = await s.run({ [s.inputNames[0]]: new ort.Tensor('float32', voxels, [1, voxels.length]) });
    return Float32Array.from(out[s.outputNames[0]].data as Float32Array);
  }

  /** The k training captions closest (cosine) to `embedding`, best first (`embedding` is normalised in place). */
  nearestK(embedding: Float32Array, k: number): string[] {
    return this.nearestIndices(embedding, k).map((i) => this.captions[i]);
  }

  /** Indices of the k training captions closest (cosine) to `embedding`, best first (normalised in place). */
  nearestIndices(embedding: Float32Array, k: number): number[] {
    const q = embedding;
    normaliseRows(q, this.dim);
    const sims = new Float32Array(this.captions.length);
    for (let i = 0; i < this.captions.length; i++) {
      let dot = 0;
      const o = i * this.dim;
      for (let d = 0; d < this.dim; d++) dot += q[d] * this.embeddings[o + d];
      sims[i] = dot;
    }
    return [...sims.keys()].sort((a, b) => sims[b] - sims[a]).slice(0, k);
  }

  /** The training caption whose embedding is closest (cosine) to `embedding`, which is normalised in place. */
  nearest(embedding: Float32Array): { caption: string; index: number; similarity: number } {
    const q = embedding;
    if (q.length !== this.dim)
      throw new Error(`an embedding of ${q.length} values cannot be compared with the bank's ${this.dim}`);
    normaliseRows(q, this.dim);
    const { index, similarity } = nearestRow(q, this.embeddings, this.dim);
    return { caption: this.captions[index], index, similarity };
  }

  async release(): Promise<void> {
    await Promise.all([...this.sessions.values()].map((s) => s.release()));
  }
}

/** Sentence embeddings with the bundle's text encoder (MiniLM), rows L2-normalised. */
export async function embedTexts(bundle: Bundle, factory: SessionFactory, texts: string[]): Promise<Float32Array> {
  if (!SentenceEncoder.available(bundle)) {
    throw new Error('the bundle has neither baseline embeddings nor text_encoder.onnx + text_tokenizer.json');
  }
  const enc = await SentenceEncoder.load(bundle, factory);
  try {
    return await enc.embed(texts);
  } finally {
    await enc.release();
  }
}
