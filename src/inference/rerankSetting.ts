// How live decoding chooses its caption among the LM's candidates, as a plain setting (what the command line and the
// summaries carry) and as the decoder's options.
import type { RidgeRetrieval } from './baseline.js';
import type { RerankOptions } from './decoder.js';

export type RerankGuide = 'readout' | 'readout+ridge';

export interface RerankSetting {
  /** Candidates per trial; 1 = the LM's greedy caption alone. */
  candidates: number;
  strategy: 'beam' | 'sample';
  guide: RerankGuide;
}

/** What live decoding uses unless told otherwise (selected on held-out sessions: docs/experiments.md E6). */
export const DEFAULT_RERANK: RerankSetting = { candidates: 8, strategy: 'sample', guide: 'readout+ridge' };

/** The decoder's options for a setting; the ridge guide needs the bundle's baseline (without one, the read-out alone). */
export function rerankOptions(s: RerankSetting, baseline: RidgeRetrieval | null): RerankOptions | undefined {
  if (s.candidates <= 1) return undefined;
  return { candidates: s.candidates, strategy: s.strategy, ...(s.guide === 'readout+ridge' && baseline ? { guide: baseline } : {}) };
}
