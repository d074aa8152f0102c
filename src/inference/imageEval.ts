// What the demo summary's image metrics need of a bundle (docs/metrics.md "Image metrics"): the EfficientNet-Lite0
// feature graph the bootstrap generates from the installed wheel (effnet_lite0.onnx, mindsemantix.effnet_onnx) and the
// retrieval baseline's pictures (manifest baseline.images, mindsemantix.baseline_images).
import * as ort from 'onnxruntime-node';
import type { Bundle } from './bundle.js';
import { readNpy, readNpyUint8 } from './npy.js';
import type { SessionFactory } from './sessions.js';
import { nearestRow, normaliseRows } from './sentenceEncoder.js';

export const EFFNET_FILE = 'effnet_lite0.onnx';

/** EfficientNet-Lite0 features of planar images in 0..1 (resized to 224² inside the graph, as image_metrics does). */
export class ImageFeatures {
  private constructor(private readonly session: ort.InferenceSession) {}

  /** True when the bundle has the graph, listed (with its sha256, checked at load) in lm/lm-manifest.json. */
  static available(bundle: Bundle): boolean {
    return EFFNET_FILE in bundle.lmFiles && bundle.has(EFFNET_FILE);
  }

  static async load(bundle: Bundle, factory: SessionFactory): Promise<ImageFeatures> {
    return new ImageFeatures(await factory.create(bundle.path(EFFNET_FILE)));
  }

  /**
   * `early` (after the second MBConv stage, 24·56·56 values) and `late` (the pooled 1280-d head) per image; all images
   * [3, height, width] of one size.
   */
  async features(
    images: readonly Float32Array[],
    height: number,
    width: number,
    batch = 8,
  ): Promise<{ early: Float32Array[]; late: Float32Array[] }> {
    const early: Float32Array[] = [];
    const late: Float32Array[] = [];
    const n = 3 * height * width;
    for (let i = 0; i < images.length; i += batch) {
      const chunk = images.slice(i, i + batch);
      const x = new Float32Array(chunk.length * n);
      chunk.forEach((im, k) => {
        if (im.length !== n) throw new Error(`an image of ${im.length} values is not [3, ${height}, ${width}]`);
        x.set(im, k * n);
      });
      const out = await this.session.run({ image: new ort.Tensor('float32', x, [chunk.length, 3, height, width]) });
      const e = out.early.data as Float32Array;
      const l = out.late.data as Float32Array;
      const ne = e.length / chunk.length;
      const nl = l.length / chunk.length;
      for (let k = 0; k < chunk.length; k++) {
        early.push(e.slice(k * ne, (k + 1) * ne));
        late.push(l.slice(k * nl, (k + 1) * nl));
      }
    }
    return { early, late };
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}

/**
 * The nearest-training-image baseline: row i of the bundle's baseline images is the training scene of baseline caption
 * i; a trial's picture is the row whose caption embedding is nearest (cosine) to the trial's decoded caption embedding.
 */
export class BaselineImages {
  private constructor(
    /** uint8 [count, size, size, 3]. */
    private readonly pixels: Uint8Array,
    readonly count: number,
    readonly size: number,
    /** [count, E], rows L2-normalised. */
    private readonly embeddings: Float32Array,
    private readonly dim: number,
  ) {}

  /** The file manifest baseline.images names, or null when the bundle has none. */
  static file(bundle: Bundle): string | null {
    const spec = bundle.manifest.baseline as { images?: unknown } | undefined;
    return typeof spec?.images === 'string' && bundle.has(spec.images) ? spec.images : null;
  }

  /** Null when the bundle has no baseline images; a file that does not fit the caption bank throws one sentence. */
  static load(bundle: Bundle): BaselineImages | null {
    const file = BaselineImages.file(bundle);
    if (!file) return null;
    const spec = bundle.manifest.baseline as { embeddings?: unknown };
    const embFile = typeof spec.embeddings === 'string' ? spec.embeddings : 'baseline_embeddings.npy';
    const emb = readNpy(bundle.path(embFile));
    const img = readNpyUint8(bundle.path(file));
    const [n, h, w, c] = img.shape;
    if (img.shape.length !== 4 || h !== w || c !== 3 || n !== emb.shape[0])
      throw new Error(
        `${file} has shape [${img.shape}] but [${emb.shape[0]}, S, S, 3] (one image per baseline caption) was expected; rewrite it with \`python -m mindsemantix.baseline_images\``,
      );
    const dim = emb.shape[1];
    normaliseRows(emb.data, dim);
    return new BaselineImages(img.data, n, h, emb.data, dim);
  }

  /** Index of the baseline caption nearest (cosine) to `embedding` (not modified). */
  nearest(embedding: Float32Array): number {
    if (embedding.length !== this.dim)
      throw new Error(`an embedding of ${embedding.length} values cannot be compared with the bank's ${this.dim}`);
    return nearestRow(embedding, this.embeddings, this.dim).index;
  }

  /** Row i as interleaved RGB bytes [size, size, 3]. */
  rgb(i: number): Uint8Array {
    const n = this.size * this.size * 3;
    return this.pixels.subarray(i * n, (i + 1) * n);
  }
}
