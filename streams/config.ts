// Preprocessing configuration: the model bundle's manifest `preprocessing` block, overridden by a config file and
// the CLI (later sources win), validated once with one-sentence errors.
import { UserError } from '../src/core/errors.js';

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
    if (!isObj(src)) throw new UserError('preprocessing configuration must be a JSON object; check the manifest or config file.');
    for (const [k, v] of Object.entries(src)) out[k] = isObj(v) && isObj(out[k]) ? mergeConfigSources(out[k], v) : v;
  }
  return out;
}

/** Turns CLI overrides like `detrend.mode=window` or `response.window=[4,8]` into a nested JSON object. */
export function parseConfigOverrides(pairs: string[]): Json {
  const out: Json = {};
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new UserError(`preprocessing override "${pair}" is not key=value; write e.g. detrend.mode=window.`);
    const path = pair.slice(0, eq).split('.');
    const raw = pair.slice(eq + 1);
    let value: unknown;
    try { value = JSON.parse(raw); } catch { value = raw; }
    let node = out;
    for (const key of path.slice(0, -1)) node = (node[key] = isObj(node[key]) ? node[key] : {}) as Json;
    node[path[path.length - 1]] = value;
  }
  return out;
}

const KNOWN: Record<string, string[]> = {
  '': ['tr', 'discard_volumes', 'subject', 'motion', 'smoothing_fwhm_mm', 'detrend', 'zscore', 'response',
    'fd_threshold_mm', 'lag_alarm_fraction', 'mask'],
  motion: ['enabled', 'reference', 'samples', 'max_iterations', 'interpolation', 'fd_radius_mm', 'emit_corrected'],
  detrend: ['mode', 'window_volumes', 'max_order', 'seconds_per_order', 'motion_regressors'],
  zscore: ['mode', 'baseline_volumes'],
  response: ['method', 'window', 'lss_window', 'history_s'],
};

function fail(msg: string): never {
  throw new UserError(`preprocessing config: ${msg}`);
}

function num(o: Json, key: string, path: string, dflt: number | undefined, check: (n: number) => boolean, what: string): number {
  const v = o[key];
  if (v === undefined) {
    if (dflt === undefined) fail(`${path}${key} is missing; set it to ${what} in the bundle manifest, config file or CLI.`);
    return dflt;
  }
  if (typeof v !== 'number' || !Number.isFinite(v) || !check(v)) fail(`${path}${key} is ${JSON.stringify(v)}; it must be ${what}.`);
  return v;
}

function oneOf<T extends string>(o: Json, key: string, path: string, dflt: T, allowed: readonly T[]): T {
  const v = o[key];
  if (v === undefined) return dflt;
  if (typeof v !== 'string' || !allowed.includes(v as T)) fail(`${path}${key} is ${JSON.stringify(v)}; use one of ${allowed.join(', ')}.`);
  return v as T;
}

function bool(o: Json, key: string, path: string, dflt: boolean): boolean {
  const v = o[key];
  if (v === undefined) return dflt;
  if (typeof v !== 'boolean') fail(`${path}${key} is ${JSON.stringify(v)}; use true or false.`);
  return v;
}

function pair(o: Json, key: string, path: string, dflt: [number, number]): [number, number] {
  const v = o[key];
  if (v === undefined) return dflt;
  if (!Array.isArray(v) || v.length !== 2 || !v.every((x) => typeof x === 'number' && Number.isFinite(x)) || !(v[1] > v[0])) {
    fail(`${path}${key} is ${JSON.stringify(v)}; it must be [start, end] in seconds after onset with end > start.`);
  }
  return [v[0], v[1]];
}

function section(o: Json, key: string): Json {
  const v = o[key];
  if (v === undefined) return {};
  if (!isObj(v)) fail(`${key} must be an object.`);
  const known = KNOWN[key] ?? [];
  for (const k of Object.keys(v)) if (!known.includes(k)) fail(`unknown field ${key}.${k}; known fields: ${known.join(', ')}.`);
  return v;
}

/**
 * Validates and completes a preprocessing configuration. Accepts the manifest's snake_case block (several sources
 * are merged, later winning: manifest, config file, CLI overrides). Throws UserError with one sentence on bad input.
 */
export function parsePreprocessConfig(...sources: unknown[]): PreprocessConfig {
  const j = mergeConfigSources(...sources);
  for (const k of Object.keys(j)) if (!KNOWN[''].includes(k)) fail(`unknown field ${k}; known fields: ${KNOWN[''].join(', ')}.`);
  const tr = num(j, 'tr', '', undefined, (n) => n > 0 && n < 60, 'the repetition time in seconds (e.g. 2)');
  const m = section(j, 'motion'), d = section(j, 'detrend'), z = section(j, 'zscore'), r = section(j, 'response');
  const ref = m.reference;
  if (ref !== undefined && ref !== 'first' && !(typeof ref === 'number' && Number.isInteger(ref) && ref >= 0)) {
    fail(`motion.reference is ${JSON.stringify(ref)}; use "first" or a volume index (integer ≥ 0).`);
  }
  const subject = j.subject === undefined ? '' : j.subject;
  if (typeof subject !== 'string') fail(`subject is ${JSON.stringify(subject)}; it must be a string.`);
  const cfg: PreprocessConfig = {
    tr,
    discardVolumes: num(j, 'discard_volumes', '', 0, (n) => Number.isInteger(n) && n >= 0, 'an integer ≥ 0'),
    subject,
    motion: {
      enabled: bool(m, 'enabled', 'motion.', true),
      reference: (ref as 'first' | number | undefined) ?? 'first',
      samples: num(m, 'samples', 'motion.', 10000, (n) => Number.isInteger(n) && n >= 100, 'an integer ≥ 100'),
      maxIterations: num(m, 'max_iterations', 'motion.', 40, (n) => Number.isInteger(n) && n >= 1, 'an integer ≥ 1'),
      interpolation: oneOf(m, 'interpolation', 'motion.', 'trilinear', ['trilinear', 'cubic'] as const),
      fdRadiusMm: num(m, 'fd_radius_mm', 'motion.', 50, (n) => n > 0, 'a positive radius in mm'),
      emitCorrected: bool(m, 'emit_corrected', 'motion.', false),
    },
    smoothingFwhmMm: num(j, 'smoothing_fwhm_mm', '', 0, (n) => n >= 0 && n <= 20, 'a FWHM in mm between 0 (off) and 20'),
    detrend: {
      mode: oneOf(d, 'mode', 'detrend.', 'cumulative', ['cumulative', 'window'] as const),
      windowVolumes: num(d, 'window_volumes', 'detrend.', 100, (n) => Number.isInteger(n) && n >= 10, 'an integer ≥ 10'),
      maxOrder: num(d, 'max_order', 'detrend.', 8, (n) => Number.isInteger(n) && n >= 0 && n <= 30, 'an integer from 0 to 30'),
      secondsPerOrder: num(d, 'seconds_per_order', 'detrend.', 150, (n) => n > 0, 'a positive number of seconds'),
      motionRegressors: bool(d, 'motion_regressors', 'detrend.', true),
    },
    zscore: {
      mode: oneOf(z, 'mode', 'zscore.', 'running', ['running', 'baseline'] as const),
      baselineVolumes: num(z, 'baseline_volumes', 'zscore.', 20, (n) => Number.isInteger(n) && n >= 2, 'an integer ≥ 2'),
    },
    response: {
      method: oneOf(r, 'method', 'response.', 'window-mean', ['window-mean', 'lss-beta'] as const),
      window: pair(r, 'window', 'response.', [4, 8]),
      lssWindow: pair(r, 'lss_window', 'response.', [-40, 16]),
      historySeconds: num(r, 'history_s', 'response.', 60, (n) => n >= 0 && n <= 3600, 'seconds between 0 and 3600'),
    },
    fdThresholdMm: num(j, 'fd_threshold_mm', '', 0.9, (n) => n > 0, 'a positive displacement in mm'),
    lagAlarmFraction: num(j, 'lag_alarm_fraction', '', 1, (n) => n > 0, 'a positive fraction of the TR'),
  };
  if (cfg.response.window[0] < 0) fail('response.window starts before the onset; use a start ≥ 0 s.');
  if (cfg.detrend.mode === 'window' && cfg.detrend.windowVolumes <= cfg.detrend.maxOrder + 1 + (cfg.detrend.motionRegressors ? 6 : 0)) {
    fail(`detrend.window_volumes (${cfg.detrend.windowVolumes}) must exceed the number of regressors; raise it or lower detrend.max_order.`);
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
    throw new UserError(`the ROI mask has ${mask.data.length} voxels for dims ${mask.dims.join('×')}; it is not a 3-D mask, re-export the bundle.`);
  }
  if (dims.length < 3 || mask.dims.some((d, i) => d !== dims[i])) {
    throw new UserError(`mask dims ${mask.dims.join('×')} differ from the volume dims ${dims.slice(0, 3).join('×')}; use the mask made in this subject's functional space.`);
  }
  if (affine && affine.length === 16 && mask.affine.length === 16) {
    const diff = Math.max(...affine.map((a, i) => Math.abs(a - mask.affine[i])));
    if (diff > 1e-2) throw new UserError(`the mask's affine differs from the volumes' affine by up to ${diff.toFixed(3)} mm; use the mask made in this subject's functional space.`);
  }
  let n = 0;
  for (let i = 0; i < mask.data.length; i++) if (mask.data[i]) n++;
  if (n === 0) throw new UserError('the ROI mask has no nonzero voxels; check the mask file named in the bundle manifest.');
}
