// The one place a run's preprocessing chain is built from a bundle: live serving (pipeline.ts) and the offline
// `responses` command both call this, so a trial's response is one computation wherever it is made.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { RunInfo } from '../core/types.js';
import { createPreprocessor, parsePreprocessConfig, type MaskImage, type Preprocessor } from '../../streams/index.js';
import { decodeNifti } from '../scanner/nifti.js';
import type { BundleManifest } from '../inference/bundle.js';

export interface LoadedMask extends MaskImage {
  /** sha256 of the mask file's bytes: recorded with every response so a reader knows which voxels a column is. */
  sha256: string;
}

/** A binary ROI mask (nonzero = in) from a NIfTI file. */
export function loadMask(path: string): LoadedMask {
  const bytes = new Uint8Array(readFileSync(path));
  const img = decodeNifti(bytes);
  const data = new Uint8Array(img.dims[0] * img.dims[1] * img.dims[2]);
  for (let i = 0; i < data.length; i++) data[i] = img.data[i] > 0 ? 1 : 0;
  return {
    dims: [img.dims[0], img.dims[1], img.dims[2]],
    data,
    affine: img.affine,
    sha256: createHash('sha256').update(bytes).digest('hex'),
  };
}

/** The preprocessor for one run: the bundle's preprocessing block, then overrides (later wins); checks the mask fits. */
export function preprocessorForRun(
  manifest: BundleManifest,
  mask: MaskImage,
  info: RunInfo,
  overrides: unknown[] = [],
): Preprocessor {
  const cfg = parsePreprocessConfig(manifest.preprocessing, { subject: info.subject, tr: info.tr }, ...overrides);
  const pre = createPreprocessor(cfg, mask);
  pre.validateRun(info.dims, info.affine);
  return pre;
}
