// Collects what the demo summary's image metrics score (src/pipeline/imageSummary.ts): each stimulus image the sender
// carried (events' inline images, by stimulus id), each trial's decoded caption embedding and its reconstruction's
// unencoded pixels. Only references are kept here; decoding and scoring happen once, at summary time.
import { runKey, type StimulusImage } from '../core/types.js';
import type { PlanarImage } from '../inference/decoder.js';
import type { Pipeline } from '../pipeline/pipeline.js';
import type { ImagePair } from '../pipeline/imageSummary.js';
import { sinkGuard } from './guard.js';

export interface ImagePairs {
  /** Reconstructions whose stimulus image arrived, in arrival order. */
  pairs(): ImagePair[];
  /** How many distinct stimulus images arrived / reconstructions with pixels were made. */
  counts(): { stimuli: number; reconstructions: number };
  unsubscribe(): void;
}

const trialKey = (t: { subject: string; session: string; run: string; trial: number }) => `${runKey(t)}/${t.trial}`;

export function collectImagePairs(pipeline: Pipeline): ImagePairs {
  const guard = sinkGuard(pipeline);
  const stimuli = new Map<string, StimulusImage>();
  const embeddings = new Map<string, Float32Array>();
  const recons: { key: string; stimulusId: string; pixels: PlanarImage }[] = [];
  const subs = [
    pipeline.events$.subscribe(
      guard('stimulus images', (e) => {
        if (e.imageData) stimuli.set(e.stimulusId, e.imageData);
      }),
    ),
    pipeline.decoded$.subscribe(
      guard('caption embeddings', (d) => {
        if (!d.error && d.captionEmbedding) embeddings.set(trialKey(d), d.captionEmbedding);
      }),
    ),
    pipeline.reconstructions$.subscribe(
      guard('reconstruction pixels', (r) => {
        if (r.pixels) recons.push({ key: trialKey(r), stimulusId: r.stimulusId, pixels: r.pixels });
      }),
    ),
  ];
  return {
    pairs: () =>
      recons
        .filter((r) => stimuli.has(r.stimulusId))
        .map((r) => ({
          key: r.key,
          stimulusId: r.stimulusId,
          recon: r.pixels,
          stimulus: stimuli.get(r.stimulusId)!,
          captionEmbedding: embeddings.get(r.key),
        })),
    counts: () => ({ stimuli: stimuli.size, reconstructions: recons.length }),
    unsubscribe() {
      for (const s of subs) s.unsubscribe();
    },
  };
}
