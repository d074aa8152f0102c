// Preprocessing configuration: the model bundle's manifest `preprocessing` block, overridden by a config file and
// the CLI (later sources win), validated once with one-sentence errors.
import { UserError } from '../src/core/errors.js';
import { schemaCheck, shortJson, type SchemaCheck } from '../src/core/schemas/validator.js';

export interface PreprocessConfig {
  /** Repetition time, s. */
  tr: number;
  /** Volumes dropped at the start of each run (T1 equilibration). */
  discardVolumes: number;
  subject: string;
  motion: {
    enabled: boolean;
    /** 'first': the first volume after the discarded ones; a number: that volume index. */
    reference: 'first' | number;
    samples: number;
    maxIterations: number;
    interpolation: 'trilinear' | 'cubic';
    fdRadiusMm: number;
    /** Attach a fresh copy of the full corrected volume to each output (costs an allocation per TR). */
    emitCorrected: boolean;
  };
  /** Gaussian smoothing FWHM in mm before masking; 0 = off. */
  smoothingFwhmMm: number;
  detrend: {
    mode: 'cumulative' | 'window';
    windowVolumes: number;
    maxOrder: number;
    secondsPerOrder: number;
    motionRegressors: boolean;
  };
  zscore: { mode: 'running' | 'baseline'; baselineVolumes: number };
  response: {
    method: 'window-mean' | 'lss-beta';
    window: [number, number];
    lssWindow: [number, number];
    historySeconds: number;
  };
  fdThresholdMm: number;
  /** Lag alarm when a volume's processing (received → z-scored) exceeds this fraction of the TR. */
  lagAlarmFraction: number;
}

type Json = Record<string, unknown>;

const isObj = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Deep merge of JSON objects, later sources winning; arrays and scalars replace. */
export function mergeConfigSources(...sources: unknown[]): Json {
  const out: Json = {};
  for (const src of sources) {
    if (src === undefined || src === null) continue;
    if (!isObj(src))
      throw new UserError('preprocessing configuration must be a JSON object; check the manifest or config file.');
    for (const [k, v] of Object.entries(src)) out[k] = isObj(v) && isObj(out[k]) ? mergeConfigSources(out[k], v) : v;
  }
  return out;
}

/** Turns CLI overrides like `detrend.mode=window` or `response.window=[4,8]` into a nested JSON object. */
export function parseConfigOverrides(pairs: string[]): Json {
  const out: Json = {};
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    if (eq <= 0)
      throw new UserError(`preprocessing override "${pair}" is not key=value; write e.g. detrend.mode=window.`);
    const path = pair.slice(0, eq).split('.');
    const raw = pair.slice(eq + 1);
    let value: unknown;
    try {
      value = JSON.parse(raw);
    } catch {
      value = raw;
    }
    let node = out;
    for (const key of path.slice(0, -1)) node = (node[key] = isObj(node[key]) ? node[key] : {}) as Json;
    node[path[path.length - 1]] = value;
  }
  return out;
}

function fail(msg: string): never {
  throw new UserError(`preprocessing config: ${msg}`);
}

// Fields, ranges and defaults are src/core/schemas/preprocessing-config.schema.json (the manifest's block is checked
// against the same file by models/ before a bundle is written); the schema check fills in the defaults.
let check: SchemaCheck | undefined;

/**
 * Validates and completes a preprocessing configuration. Accepts the manifest's snake_case block (several sources
 * are merged, later winning: manifest, config file, CLI overrides). Throws UserError with one sentence on bad input.
 */
export function parsePreprocessConfig(...sources: unknown[]): PreprocessConfig {
  // A copy: the merge shares nested objects with its sources, and the check fills defaults in place.
  const j = structuredClone(mergeConfigSources(...sources));
  check ??= schemaCheck('preprocessing-config', '', { useDefaults: true });
  const p = check(j);
  if (p?.kind === 'missing')
    fail(`${p.field} is missing; set it to ${p.expected} in the bundle manifest, config file or CLI.`);
  if (p?.kind === 'unknown') fail(`unknown field ${p.field}; known fields: ${p.known?.join(', ')}.`);
  if (p) fail(`${p.field} is ${shortJson(p.value)}; it must be ${p.expected}.`);
  // Complete and valid from here on: every field has its schema default.
  const m = j.motion as Json,
    d = j.detrend as Json,
    z = j.zscore as Json,
    r = j.response as Json;
  const cfg: PreprocessConfig = {
    tr: j.tr as number,
    discardVolumes: j.discard_volumes as number,
    subject: j.subject as string,
    motion: {
      enabled: m.enabled as boolean,
      reference: m.reference as 'first' | number,
      samples: m.samples as number,
      maxIterations: m.max_iterations as number,
      interpolation: m.interpolation as 'trilinear' | 'cubic',
      fdRadiusMm: m.fd_radius_mm as number,
      emitCorrected: m.emit_corrected as boolean,
    },
    smoothingFwhmMm: j.smoothing_fwhm_mm as number,
    detrend: {
      mode: d.mode as 'cumulative' | 'window',
      windowVolumes: d.window_volumes as number,
      maxOrder: d.max_order as number,
      secondsPerOrder: d.seconds_per_order as number,
      motionRegressors: d.motion_regressors as boolean,
    },
    zscore: { mode: z.mode as 'running' | 'baseline', baselineVolumes: z.baseline_volumes as number },
    response: {
      method: r.method as 'window-mean' | 'lss-beta',
      window: [...(r.window as [number, number])],
      lssWindow: [...(r.lss_window as [number, number])],
      historySeconds: r.history_s as number,
    },
    fdThresholdMm: j.fd_threshold_mm as number,
    lagAlarmFraction: j.lag_alarm_fraction as number,
  };
  // What the schema cannot say: relations between values.
  for (const [key, w] of [
    ['window', cfg.response.window],
    ['lss_window', cfg.response.lssWindow],
  ] as const) {
    if (!(w[1] > w[0]))
      fail(`response.${key} is ${JSON.stringify(w)}; it must be [start, end] in seconds after onset with end > start.`);
  }
  if (
    cfg.detrend.mode === 'window' &&
    cfg.detrend.windowVolumes <= cfg.detrend.maxOrder + 1 + (cfg.detrend.motionRegressors ? 6 : 0)
  ) {
    fail(
      `detrend.window_volumes (${cfg.detrend.windowVolumes}) must exceed the number of regressors; raise it or lower detrend.max_order.`,
    );
  }
  return cfg;
}

export interface MaskImage {
  dims: [number, number, number];
  data: Uint8Array;
  affine: readonly number[];
}

/**
 * Checks a mask against the volumes of a run (dims, affine) once at start; throws one sentence saying what differs.
 */
export function validateMaskForRun(mask: MaskImage, dims: readonly number[], affine?: readonly number[]): void {
  if (mask.dims.length !== 3 || mask.data.length !== mask.dims[0] * mask.dims[1] * mask.dims[2]) {
    throw new UserError(
      `the ROI mask has ${mask.data.length} voxels for dims ${mask.dims.join('×')}; it is not a 3-D mask, re-export the bundle.`,
    );
  }
  if (dims.length < 3 || mask.dims.some((d, i) => d !== dims[i])) {
    throw new UserError(
      `mask dims ${mask.dims.join('×')} differ from the volume dims ${dims.slice(0, 3).join('×')}; use the mask made in this subject's functional space.`,
    );
  }
  if (affine && affine.length === 16 && mask.affine.length === 16) {
    const diff = Math.max(...affine.map((a, i) => Math.abs(a - mask.affine[i])));
    if (diff > 1e-2)
      throw new UserError(
        `the mask's affine differs from the volumes' affine by up to ${diff.toFixed(3)} mm; use the mask made in this subject's functional space.`,
      );
  }
  let n = 0;
  for (let i = 0; i < mask.data.length; i++) if (mask.data[i]) n++;
  if (n === 0)
    throw new UserError('the ROI mask has no nonzero voxels; check the mask file named in the bundle manifest.');
}
