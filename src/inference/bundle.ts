// Model bundle loading: the manifest (docs/ARCHITECTURE.md "Model bundle") is validated once here against its schema
// (src/core/schemas/bundle-manifest.schema.json), and every file it lists is checked against its sha256, so a
// half-copied or stale bundle fails at start-up with one clear sentence instead of producing wrong captions later.
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { schemaCheck, shortJson, type SchemaCheck } from '../core/schemas/validator.js';

/** A bundle problem the user can fix; the message is one sentence that says what to do. */
export class BundleError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BundleError';
  }
}

export interface SubjectEntry {
  voxels: number;
  mask: string;
  encoder: string;
  baseline?: string;
}

export interface GenerationConfig {
  max_new_tokens: number;
  eos_token_ids: number[];
  prefix_ids: number[];
  suffix_ids: number[];
  num_layers: number;
  num_kv_heads: number;
  head_dim: number;
}

export interface BundleManifest {
  format: 'mindsemantix-bundle';
  version: 1;
  name: string;
  created?: string;
  versions?: Record<string, unknown>;
  seed?: number;
  command?: string;
  subjects: Record<string, SubjectEntry>;
  dims: { T: number; D: number; Q: number; D_lm: number; E: number; image: [number, number, number] };
  preprocessing: {
    tr?: number;
    discard_volumes?: number;
    detrend?: Record<string, unknown>;
    zscore?: Record<string, unknown>;
    response?: { method: string; window: [number, number] };
    fd_threshold_mm?: number;
    [k: string]: unknown;
  };
  generation: GenerationConfig;
  files: Record<string, string>;
  /** Optional extras an exporter may add (baseline captions, text encoder...). */
  [k: string]: unknown;
}

export interface Bundle {
  dir: string;
  manifest: BundleManifest;
  /** sha256 of every file under lm/, relative to the bundle root. */
  lmFiles: Record<string, string>;
  /** Absolute path of a file named relative to the bundle root. */
  path(rel: string): string;
  has(rel: string): boolean;
}

export interface LoadBundleOptions {
  /** Check every file's sha256 (default true). Start-up cost is one read of the bundle (~0.5 GB/s). */
  verify?: boolean;
}

function fail(dir: string, what: string): never {
  throw new BundleError(`model bundle ${dir}: ${what}`);
}

function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

// The manifest's shape is src/core/schemas/bundle-manifest.schema.json, the same file models/ checks before writing one.
let checkManifest: SchemaCheck | undefined;

/** Validates the parsed manifest's shape; returns it typed or throws one BundleError naming the first bad field. */
export function validateManifest(dir: string, m: unknown): BundleManifest {
  const fix = 're-export the bundle with `python -m mindsemantix.export`.';
  // The version first: a newer bundle should say so, not fail on whichever field changed.
  if (isObj(m) && m.version !== 1) {
    fail(
      dir,
      `manifest.json has version ${JSON.stringify(m.version)} but this build reads version 1; use a matching mindsemantix release or re-export the bundle.`,
    );
  }
  checkManifest ??= schemaCheck('bundle-manifest');
  const p = checkManifest(m);
  if (p) {
    if (p.field === '') fail(dir, `manifest.json must be a JSON object; ${fix}`);
    if (p.kind === 'missing') fail(dir, `manifest.json has no field "${p.field}" (${p.expected}); ${fix}`);
    if (p.kind === 'unknown')
      fail(dir, `manifest.json has an unknown field "${p.field}" (known: ${p.known?.join(', ')}); ${fix}`);
    fail(dir, `manifest.json field "${p.field}" must be ${p.expected} (it is ${shortJson(p.value)}); ${fix}`);
  }
  return m as BundleManifest;
}

export async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 22 })) h.update(chunk as Buffer);
  return h.digest('hex');
}

function readJson(dir: string, file: string, hint: string): unknown {
  const p = join(dir, file);
  if (!existsSync(p)) fail(dir, `${file} is missing; ${hint}`);
  try {
    return JSON.parse(readFileSync(p, 'utf8'));
  } catch (e) {
    return fail(dir, `${file} is not valid JSON (${(e as Error).message}); ${hint}`);
  }
}

/** Reads lm/lm-manifest.json: `{files: {name: sha}}` with names relative to lm/ or to the bundle root. */
function readLmFiles(dir: string): Record<string, string> {
  const hint = 'run `python -m mindsemantix.bootstrap` (or `npm start`) to generate the frozen LM files.';
  const raw = readJson(dir, 'lm/lm-manifest.json', hint);
  const files = isObj(raw) && isObj(raw.files) ? raw.files : undefined;
  if (!files) fail(dir, `lm/lm-manifest.json has no "files" object; ${hint}`);
  const out: Record<string, string> = {};
  // `files` are named relative to lm/; `root_files` (generated at bootstrap, e.g. text_encoder.onnx) to the bundle root.
  const rootFiles = isObj(raw) && isObj(raw.root_files) ? raw.root_files : {};
  for (const [group, prefix] of [
    [files, 'lm/'],
    [rootFiles, ''],
  ] as const) {
    for (const [name, sha] of Object.entries(group as Record<string, unknown>)) {
      const shaStr =
        typeof sha === 'string' ? sha : isObj(sha) && typeof sha.sha256 === 'string' ? sha.sha256 : undefined;
      if (!shaStr) fail(dir, `lm/lm-manifest.json entry "${name}" has no sha256; ${hint}`);
      out[prefix && !name.startsWith(prefix) ? `${prefix}${name}` : name] = shaStr as string;
    }
  }
  return out;
}

type VerifiedCache = Record<string, { stamp: string; sha: string }>;

/** Where verified checksums are remembered: per bundle folder, under the user's cache (never inside the bundle). */
function verifiedCachePath(dir: string): string {
  const base = process.env.XDG_CACHE_HOME || join(homedir(), '.cache');
  return join(base, 'mindsemantix', `verified-${createHash('sha256').update(dir).digest('hex').slice(0, 16)}.json`);
}

function readVerifiedCache(dir: string): VerifiedCache {
  try {
    return JSON.parse(readFileSync(verifiedCachePath(dir), 'utf8')) as VerifiedCache;
  } catch {
    return {};
  }
}

function writeVerifiedCache(dir: string, c: VerifiedCache): void {
  try {
    const p = verifiedCachePath(dir);
    mkdirSync(dirname(p), { recursive: true });
    writeFileSync(p, JSON.stringify(c));
  } catch {
    // a read-only home only costs the next start a full verification
  }
}

const REQUIRED = ['qformer.onnx', 'lm/decoder.onnx', 'lm/embed_tokens.onnx', 'lm/tokenizer.json'];

/** Loads and validates a bundle directory. Throws BundleError with one actionable sentence. */
export async function loadBundle(dirIn: string, opts: LoadBundleOptions = {}): Promise<Bundle> {
  const dir = resolve(dirIn);
  if (!existsSync(dir) || !statSync(dir).isDirectory()) {
    fail(dir, 'does not exist; run `npm start` once to build the default bundle, or pass --models DIR.');
  }
  const manifest = validateManifest(
    dir,
    readJson(dir, 'manifest.json', 'pass --models with a folder written by `python -m mindsemantix.export`.'),
  );
  const lmFiles = readLmFiles(dir);
  const all: Record<string, string> = { ...manifest.files, ...lmFiles };
  const needed = [
    ...REQUIRED,
    ...Object.values(manifest.subjects).flatMap((s) => [s.encoder, s.mask, ...(s.baseline ? [s.baseline] : [])]),
  ];
  for (const rel of needed) {
    if (!existsSync(join(dir, rel))) {
      const fix = rel.startsWith('lm/')
        ? 'run `python -m mindsemantix.bootstrap` (or `npm start`)'
        : 're-export the bundle';
      fail(dir, `${rel} is missing; ${fix}.`);
    }
    if (!(rel in all)) fail(dir, `${rel} is not listed with a checksum in the manifest; re-export the bundle.`);
  }
  if (opts.verify !== false) {
    const cache = readVerifiedCache(dir);
    const next: VerifiedCache = {};
    for (const [rel, sha] of Object.entries(all)) {
      const p = join(dir, rel);
      if (!existsSync(p)) fail(dir, `${rel} (listed in the manifest) is missing; re-export or re-copy the bundle.`);
      const st = statSync(p);
      const stamp = `${st.size}:${st.mtimeMs}:${st.ino}`;
      // A file already hashed with this size, mtime and inode is not read again (the LM alone is ~0.5 GB).
      if (cache[rel]?.stamp === stamp && cache[rel].sha === sha.toLowerCase()) {
        next[rel] = cache[rel];
        continue;
      }
      const got = await sha256File(p);
      if (got.toLowerCase() !== sha.toLowerCase()) {
        fail(
          dir,
          `${rel} does not match its sha256 in the manifest (file changed or copy incomplete); re-export or re-copy the bundle.`,
        );
      }
      next[rel] = { stamp, sha: got.toLowerCase() };
    }
    writeVerifiedCache(dir, next);
  }
  return {
    dir,
    manifest,
    lmFiles,
    path: (rel) => join(dir, rel),
    has: (rel) => existsSync(join(dir, rel)),
  };
}
