// The demo summary's `image` block (CONTRACT.md "Further summary fields"; docs/metrics.md "Image metrics"): each
// trial's reconstruction against its stimulus image, and the nearest-training-image baseline against the same stimuli,
// with models/mindsemantix/image_eval.py's definitions: PixCorr and SSIM at the compared image's size (the stimulus
// box-downsampled to it as PIL does), two-way identification on EfficientNet-Lite0 features against the trials of the
// other stimuli. Computed once at summary time, never on the volume path.
import type { StimulusImage } from '../core/types.js';
import type { Bundle } from '../inference/bundle.js';
import type { PlanarImage } from '../inference/decoder.js';
import { decodeRgb } from '../inference/image.js';
import { BaselineImages, EFFNET_FILE, ImageFeatures } from '../inference/imageEval.js';
import type { SessionFactory } from '../inference/sessions.js';
import { boxResizeRgb, pixCorr, rgbToPlanar, ssim, twoWay } from '../metrics/imageMetrics.js';

/** One decoded trial with its reconstruction and the stimulus image the sender carried. */
export interface ImagePair {
  key: string;
  stimulusId: string;
  recon: PlanarImage;
  stimulus: StimulusImage;
  /** The decoded caption embedding (the retrieval baseline's query). */
  captionEmbedding?: Float32Array;
}

export interface ImageScores {
  PixCorr: number;
  SSIM: number;
  /** Two-way identification on the pooled 1280-d EffNet-Lite0 features (docs/metrics.md "EffNet-late 2-way"). */
  TwoWayEffNet?: number;
  /** The same on the features after the second MBConv stage ("EffNet-early 2-way"). */
  TwoWayEffNetEarly?: number;
}

export interface ImageSummary {
  trials: number;
  model: ImageScores;
  /** The training scene whose caption is nearest to the decoded caption embedding, scored the same way. */
  retrieval?: ImageScores;
}

const round4 = (x: number) => Number(x.toFixed(4));

/** Scores for one method: `images[i]` against `stimuli[i]` (planar, one size); features when given. */
function scores(
  images: Float32Array[],
  stimuli: Float32Array[],
  h: number,
  w: number,
  feats?: {
    recon: { early: Float32Array[]; late: Float32Array[] };
    stim: { early: Float32Array[]; late: Float32Array[] };
  },
  groups?: string[],
): ImageScores {
  const n = images.length;
  let pc = 0;
  let ss = 0;
  for (let i = 0; i < n; i++) {
    pc += pixCorr(images[i], stimuli[i]);
    ss += ssim(images[i], stimuli[i], h, w);
  }
  const out: ImageScores = { PixCorr: round4(pc / n), SSIM: round4(ss / n) };
  if (feats && groups) {
    out.TwoWayEffNet = round4(twoWay(feats.recon.late, feats.stim.late, groups));
    out.TwoWayEffNetEarly = round4(twoWay(feats.recon.early, feats.stim.early, groups));
  }
  return out;
}

/**
 * The `image` block, or undefined when there is no pair to score. What a bundle lacks (the EffNet graph, the baseline
 * images) or the session does not allow (two-way needs trials of two stimuli) is left out with one line to `say`.
 */
export async function imageSummary(
  pairs: readonly ImagePair[],
  bundle: Bundle,
  factory: SessionFactory,
  say: (line: string) => void,
): Promise<ImageSummary | undefined> {
  if (!pairs.length) return undefined;
  const { width: w, height: h } = pairs[0].recon;
  const used = pairs.filter((p) => p.recon.width === w && p.recon.height === h);
  // stimuli decoded once per id, then box-downsampled once per size they are compared at
  const decoded = new Map<string, Promise<{ rgb: Uint8Array; width: number; height: number }>>();
  for (const p of used) if (!decoded.has(p.stimulusId)) decoded.set(p.stimulusId, decodeRgb(p.stimulus.bytes));
  const rgbOf = new Map<string, { rgb: Uint8Array; width: number; height: number }>();
  for (const [id, d] of decoded) rgbOf.set(id, await d);
  const atSize = new Map<string, Float32Array>();
  const stimAt = (id: string, sw: number, sh: number): Float32Array => {
    const k = `${id}@${sw}x${sh}`;
    let v = atSize.get(k);
    if (!v) {
      const s = rgbOf.get(id)!;
      v = rgbToPlanar(boxResizeRgb(s.rgb, s.width, s.height, sw, sh), sw, sh);
      atSize.set(k, v);
    }
    return v;
  };
  const ids = used.map((p) => p.stimulusId);
  const distinct = [...new Set(ids)];

  const effnet = ImageFeatures.available(bundle) ? await ImageFeatures.load(bundle, factory) : undefined;
  if (!effnet)
    say(
      `demo: the image metrics have no TwoWayEffNet: the bundle has no ${EFFNET_FILE}; run \`npm start\` once to generate it.`,
    );
  else if (distinct.length < 2)
    say('demo: the image metrics have no TwoWayEffNet: every trial showed the same stimulus.');
  const twoWayOk = !!effnet && distinct.length >= 2;
  /** Features of stimuli at (sw, sh), one pass per distinct stimulus, expanded to trial order. */
  const stimFeats = async (sw: number, sh: number) => {
    const f = await effnet!.features(
      distinct.map((id) => stimAt(id, sw, sh)),
      sh,
      sw,
    );
    const at = new Map(distinct.map((id, i) => [id, i]));
    return { early: ids.map((id) => f.early[at.get(id)!]), late: ids.map((id) => f.late[at.get(id)!]) };
  };

  try {
    const recon = used.map((p) => p.recon.data);
    const stim = ids.map((id) => stimAt(id, w, h));
    const model = scores(
      recon,
      stim,
      h,
      w,
      twoWayOk ? { recon: await effnet!.features(recon, h, w), stim: await stimFeats(w, h) } : undefined,
      ids,
    );
    const out: ImageSummary = { trials: used.length, model };

    let bank: BaselineImages | null = null;
    try {
      bank = BaselineImages.load(bundle);
    } catch (e) {
      say(`demo: the image metrics have no retrieval baseline: ${(e as Error).message}.`);
    }
    if (!bank && BaselineImages.file(bundle) === null)
      say(
        'demo: the image metrics have no retrieval baseline: the bundle has no baseline images (manifest baseline.images); write them with `python -m mindsemantix.baseline_images --bundle DIR`.',
      );
    else if (bank && !used.every((p) => p.captionEmbedding))
      say('demo: the image metrics have no retrieval baseline: a trial has no decoded caption embedding.');
    else if (bank) {
      const S = bank.size;
      const rows = used.map((p) => bank.nearest(p.captionEmbedding!));
      const distinctRows = [...new Set(rows)];
      const planarRows = new Map(distinctRows.map((r) => [r, rgbToPlanar(bank.rgb(r), S, S)]));
      const images = rows.map((r) => planarRows.get(r)!);
      let feats;
      if (twoWayOk) {
        const f = await effnet!.features(
          distinctRows.map((r) => planarRows.get(r)!),
          S,
          S,
        );
        const at = new Map(distinctRows.map((r, i) => [r, i]));
        feats = {
          recon: { early: rows.map((r) => f.early[at.get(r)!]), late: rows.map((r) => f.late[at.get(r)!]) },
          stim: await stimFeats(S, S),
        };
      }
      out.retrieval = scores(
        images,
        ids.map((id) => stimAt(id, S, S)),
        S,
        S,
        feats,
        ids,
      );
    }
    return out;
  } finally {
    await effnet?.release();
  }
}
