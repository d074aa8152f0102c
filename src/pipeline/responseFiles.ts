// What the decoder saw, per run: every trial's response vector exactly as handed to the decoder (float32, mask voxel
// order) and one TSV row per trial, laid out as ../shared/CONTRACT.md says:
//   <root>/sub-<id>/ses-<ses>/sub-<id>_ses-<ses>_<run>_responses.npy   float32 [trials, V]
//   <root>/sub-<id>/ses-<ses>/sub-<id>_ses-<ses>_<run>_responses.tsv   one row per trial, row i ↔ npy row i
// `serve --record DIR` writes under DIR/derivatives/mindsemantix-decoder, `responses --out OUT` under OUT. Both files are
// replaced atomically (temp file, fsync, rename, fsync of the folder) after each trial, npy first: a crash leaves the
// previous complete pair, or an npy one row ahead of the TSV, which the reader (and a resumed run) trims to the TSV.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { mkdir, open, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { encodeNpyFloat32, readNpy } from '../inference/npy.js';

export const RESPONSE_COLUMNS = [
  'trial',
  'stimulus_id',
  'onset',
  'presentation',
  'estimator',
  'window_start',
  'window_end',
  'volumes',
  'flags',
  'bundle',
  'mask_sha256',
] as const;

/** One TSV row. */
export interface ResponseFileRow {
  trial: number;
  stimulusId: string;
  onset: number;
  /** 1 for a stimulus's first showing in the session, 2 for its second… */
  presentation: number;
  estimator: string;
  window: { start: number; end: number };
  volumes: number[];
  flags: string[];
  bundle: string;
  maskSha256: string;
}

/** Trials whose window starts this early sit on unsettled detrend/z-score estimates: flagged for whoever reads the file. */
export const EARLY_IN_RUN_S = 30;

/** One trial as written: the TSV's columns, plus the run it belongs to. */
export interface ResponseRow extends ResponseFileRow {
  subject: string;
  session: string;
  run: string;
}

export function responsePaths(
  root: string,
  subject: string,
  session: string,
  run: string,
): { dir: string; npy: string; tsv: string } {
  const dir = join(root, `sub-${subject}`, `ses-${session}`);
  const stem = `sub-${subject}_ses-${session}_${run}_responses`;
  return { dir, npy: join(dir, `${stem}.npy`), tsv: join(dir, `${stem}.tsv`) };
}

/** The flags written in the file: the estimator's, plus 'early-in-run' when the window starts in the first 30 s. */
export function fileFlags(row: Pick<ResponseRow, 'flags' | 'window'>): string[] {
  return row.window.start < EARLY_IN_RUN_S && !row.flags.includes('early-in-run')
    ? [...row.flags, 'early-in-run']
    : [...row.flags];
}

const cell = (v: string | number): string => String(v).replace(/[\t\r\n]/g, ' ');

function tsvLine(r: ResponseRow): string {
  return [
    r.trial,
    r.stimulusId,
    r.onset,
    r.presentation,
    r.estimator,
    r.window.start,
    r.window.end,
    r.volumes.join(','),
    fileFlags(r).join(',') || 'n/a',
    r.bundle,
    r.maskSha256,
  ]
    .map(cell)
    .join('\t');
}

async function writeAtomic(path: string, bytes: Uint8Array | string): Promise<void> {
  const tmp = `${path}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
  const fh = await open(tmp, 'w');
  try {
    await fh.writeFile(bytes);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, path);
}

async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } catch {
    /* some file systems refuse fsync on folders */
  } finally {
    await fh.close();
  }
}

interface RunBuffer {
  rows: string[];
  trials: number[];
  vectors: Float32Array[];
  voxels: number;
}

/** One session's response files; writes are serialised, and one failed write does not stop later ones. */
export class ResponseRecorder {
  private chain: Promise<void> = Promise.resolve();
  private readonly runs = new Map<string, RunBuffer>();

  constructor(private readonly root: string) {}

  /** Adds (or, for a trial already recorded, replaces) one trial and rewrites the run's files. */
  record(row: ResponseRow, vector: Float32Array): Promise<void> {
    const p = this.chain.then(() => this.write(row, vector));
    this.chain = p.catch(() => undefined);
    return p;
  }

  flush(): Promise<void> {
    return this.chain;
  }

  /** Forget a finished run's buffer (its files stay). */
  close(subject: string, session: string, run: string): void {
    const key = `${subject}/${session}/${run}`;
    this.chain = this.chain.then(() => {
      this.runs.delete(key);
    });
  }

  private load(row: ResponseRow, voxels: number): RunBuffer {
    const key = `${row.subject}/${row.session}/${row.run}`;
    let b = this.runs.get(key);
    if (b) return b;
    b = { rows: [], trials: [], vectors: [], voxels };
    // A run resumed after a restart continues its files rather than starting them again.
    const p = responsePaths(this.root, row.subject, row.session, row.run);
    if (existsSync(p.tsv) && existsSync(p.npy)) {
      const f = readResponseRun(p.tsv, p.npy);
      if (f.voxels === voxels) {
        b.rows = f.lines;
        b.trials = f.rows.map((r) => r.trial);
        b.vectors = f.rows.map((_, i) => f.data.slice(i * voxels, (i + 1) * voxels));
      }
    }
    this.runs.set(key, b);
    return b;
  }

  private async write(row: ResponseRow, vector: Float32Array): Promise<void> {
    const b = this.load(row, vector.length);
    if (vector.length !== b.voxels)
      throw new Error(
        `trial ${row.trial} of ${row.run} has ${vector.length} voxels but the run's earlier trials have ${b.voxels}`,
      );
    const i = b.trials.indexOf(row.trial);
    const line = tsvLine(row);
    if (i >= 0) {
      b.rows[i] = line;
      b.vectors[i] = vector.slice();
    } else {
      b.rows.push(line);
      b.trials.push(row.trial);
      b.vectors.push(vector.slice());
    }
    const all = new Float32Array(b.vectors.length * b.voxels);
    b.vectors.forEach((v, k) => all.set(v, k * b.voxels));
    const p = responsePaths(this.root, row.subject, row.session, row.run);
    await mkdir(p.dir, { recursive: true });
    await writeAtomic(p.npy, encodeNpyFloat32(all, [b.vectors.length, b.voxels]));
    await writeAtomic(p.tsv, [RESPONSE_COLUMNS.join('\t'), ...b.rows].join('\n') + '\n');
    await syncDir(p.dir);
  }
}

export interface ResponseRunFile {
  subject: string;
  session: string;
  run: string;
  tsv: string;
  rows: ResponseFileRow[];
  /** TSV lines without the header (what a resumed writer continues from). */
  lines: string[];
  voxels: number;
  /** float32 [rows.length, voxels], trimmed to the TSV. */
  data: Float32Array;
}

/** One run's pair of files. Rows beyond the TSV (a crash between the two writes) are dropped. */
export function readResponseRun(
  tsv: string,
  npy: string,
): Omit<ResponseRunFile, 'subject' | 'session' | 'run' | 'tsv'> {
  const text = readFileSync(tsv, 'utf8')
    .split('\n')
    .filter((l) => l.length > 0);
  const head = text[0]?.split('\t') ?? [];
  const missing = RESPONSE_COLUMNS.filter((c) => !head.includes(c));
  if (missing.length)
    throw new Error(`${tsv} lacks the column(s) ${missing.join(', ')}; it was not written by mindsemantix.`);
  const col = (n: string) => head.indexOf(n);
  const lines = text.slice(1);
  const rows = lines.map((l): ResponseFileRow => {
    const c = l.split('\t');
    const list = (s: string) => (s === 'n/a' || s === '' ? [] : s.split(','));
    return {
      trial: Number(c[col('trial')]),
      stimulusId: c[col('stimulus_id')],
      onset: Number(c[col('onset')]),
      presentation: Number(c[col('presentation')]),
      estimator: c[col('estimator')],
      window: { start: Number(c[col('window_start')]), end: Number(c[col('window_end')]) },
      volumes: list(c[col('volumes')]).map(Number),
      flags: list(c[col('flags')]),
      bundle: c[col('bundle')],
      maskSha256: c[col('mask_sha256')],
    };
  });
  const a = readNpy(npy);
  if (a.shape.length !== 2) throw new Error(`${npy} is not a [trials, voxels] array.`);
  if (a.shape[0] < rows.length)
    throw new Error(`${npy} has ${a.shape[0]} rows but ${tsv} lists ${rows.length} trials; the pair is damaged.`);
  return { rows, lines, voxels: a.shape[1], data: a.data.slice(0, rows.length * a.shape[1]) };
}

/** Every run's response files under `root` (a `responses --out` folder or a recording's derivatives folder), sorted. */
export function findResponseRuns(root: string): ResponseRunFile[] {
  const out: ResponseRunFile[] = [];
  const walk = (d: string, depth: number) => {
    for (const e of readdirSync(d, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const p = join(d, e.name);
      if (e.isDirectory() && depth < 6) walk(p, depth + 1);
      const m = /^sub-([^_]+)_ses-([^_]+)_(.+)_responses\.tsv$/.exec(e.name);
      if (m && e.isFile()) {
        const npy = p.replace(/\.tsv$/, '.npy');
        if (!existsSync(npy)) throw new Error(`${p} has no ${npy} beside it.`);
        out.push({ subject: m[1], session: m[2], run: m[3], tsv: p, ...readResponseRun(p, npy) });
      }
    }
  };
  if (!existsSync(root) || !statSync(root).isDirectory()) throw new Error(`${root} is not a folder of response files.`);
  walk(root, 0);
  return out;
}
