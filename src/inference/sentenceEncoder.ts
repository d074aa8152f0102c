// The bundle's sentence encoder (MiniLM: text_encoder.onnx + text_tokenizer.json, generated at bootstrap): text → the
// caption-embedding space the Q-Former's read-out and the ridge baseline predict into.
import { existsSync } from 'node:fs';
import * as ort from 'onnxruntime-node';
import type { Bundle } from './bundle.js';
import { loadTokenizer, type TextTokenizer } from './tokenizer.js';
import type { SessionFactory } from './sessions.js';

/** MiniLM's position limit; captions are far shorter. */
const MAX_TOKENS = 128;

export class SentenceEncoder {
  private constructor(
    private readonly session: ort.InferenceSession,
    private readonly tokenizer: TextTokenizer,
    readonly dim: number,
  ) {}

  static available(bundle: Bundle): boolean {
    return bundle.has('text_encoder.onnx') && existsSync(bundle.path('text_tokenizer.json'));
  }

  static async load(bundle: Bundle, factory: SessionFactory): Promise<SentenceEncoder> {
    if (!SentenceEncoder.available(bundle)) {
      throw new Error(
        `model bundle ${bundle.dir} has no text_encoder.onnx + text_tokenizer.json; run \`npm start\` once to generate them.`,
      );
    }
    const session = await factory.create(bundle.path('text_encoder.onnx'));
    return new SentenceEncoder(session, loadTokenizer(bundle.path('text_tokenizer.json')), bundle.manifest.dims.E);
  }

  /** Sentence embeddings [texts.length, dim], rows L2-normalised, computed `batch` texts at a time. */
  async embed(texts: readonly string[], batch = 32): Promise<Float32Array> {
    const E = this.dim;
    const out = new Float32Array(texts.length * E);
    for (let i = 0; i < texts.length; i += batch) {
      const chunk = texts.slice(i, i + batch).map((t) => this.tokenizer.encode(t, true).slice(0, MAX_TOKENS));
      const S = Math.max(...chunk.map((c) => c.length));
      const ids = new BigInt64Array(chunk.length * S);
      const mask = new BigInt64Array(chunk.length * S);
      chunk.forEach((c, b) =>
        c.forEach((id, s) => {
          ids[b * S + s] = BigInt(id);
          mask[b * S + s] = 1n;
        }),
      );
      const r = await this.session.run({
        input_ids: new ort.Tensor('int64', ids, [chunk.length, S]),
        attention_mask: new ort.Tensor('int64', mask, [chunk.length, S]),
      });
      out.set(r.sentence_embedding.data as Float32Array, i * E);
    }
    normaliseRows(out, E);
    return out;
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}

/** The row of `bank` ([rows, dim], row-major) with the largest dot product with `q`, and that product. */
export function nearestRow(q: Float32Array, bank: Float32Array, dim: number): { index: number; similarity: number } {
  let index = 0;
  let similarity = -Infinity;
  for (let i = 0, o = 0; o < bank.length; i++, o += dim) {
    let dot = 0;
    for (let k = 0; k < dim; k++) dot += q[k] * bank[o + k];
    if (dot > similarity) {
      similarity = dot;
      index = i;
    }
  }
  return { index, similarity };
}

export function normaliseRows(a: Float32Array, dim: number): void {
  for (let o = 0; o < a.length; o += dim) {
    let n = 0;
    for (let k = 0; k < dim; k++) n += a[o + k] * a[o + k];
    n = Math.sqrt(n) || 1;
    for (let k = 0; k < dim; k++) a[o + k] /= n;
  }
}
