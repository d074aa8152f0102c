// The demo summary's `composition` block (docs/metrics.md, "Compositional metric"; CONTRACT.md): for decoded trials of
// a simulated session, how often the model's and the ridge baseline's captions name the scene's main object, its
// colour and count, the background, all of them, and how often they copy a training caption verbatim.
import { compositionRates, type CompositionRates } from '../metrics/composition.js';
import { SIM_VOCABULARY } from '../metrics/simVocabulary.js';
import type { SceneRow } from './sceneTable.js';

export interface CompositionSummary {
  /** Decoded trials whose stimulus has scene facts; novel_trials of them show a held-out combination. */
  trials: number;
  model: CompositionRates;
  baseline?: CompositionRates;
}

export interface ScoredTrial {
  key: string;
  stimulusId: string;
  caption: string;
  baseline?: string;
}

/** Undefined when no trial's stimulus has scene facts. `trainingCaptions` (the bundle's baseline_captions.json) adds `copied`. */
export function compositionSummary(
  trials: readonly ScoredTrial[],
  scenes: ReadonlyMap<string, SceneRow>,
  trainingCaptions?: readonly string[],
): CompositionSummary | undefined {
  const known = trials.filter((t) => scenes.has(t.stimulusId));
  if (!known.length) return undefined;
  const facts = Object.fromEntries(known.map((t) => [t.key, scenes.get(t.stimulusId)!.facts]));
  const novel = Object.fromEntries(known.map((t) => [t.key, scenes.get(t.stimulusId)!.novel]));
  const opts = { novel, trainingCaptions };
  const model = compositionRates(
    Object.fromEntries(known.map((t) => [t.key, t.caption])),
    facts,
    SIM_VOCABULARY,
    opts,
  )!;
  const withBaseline = known.filter((t) => t.baseline !== undefined);
  // the baseline is scored on the same trials as the model, or not at all
  const baseline =
    withBaseline.length === known.length
      ? compositionRates(Object.fromEntries(known.map((t) => [t.key, t.baseline!])), facts, SIM_VOCABULARY, opts)!
      : undefined;
  return { trials: known.length, model: rounded(model), ...(baseline ? { baseline: rounded(baseline) } : {}) };
}

function rounded(r: CompositionRates): CompositionRates {
  return Object.fromEntries(
    Object.entries(r).map(([k, v]) => [k, typeof v === 'number' ? Number(v.toFixed(4)) : v]),
  ) as unknown as CompositionRates;
}
