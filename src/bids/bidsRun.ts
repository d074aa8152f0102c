// Reads BIDS runs (4-D NIfTI, events TSV, JSON sidecar): replay and offline responses load runs, the bridge parses the events TSV it tails.
import { readdirSync, readFileSync, statSync, existsSync } from 'node:fs';
import { basename, join } from 'node:path';
import type { RunInfo, StimulusEvent } from '../core/types.js';
import { decodeNifti, NIFTI_TYPE } from '../scanner/nifti.js';

export interface BidsRunFiles {
  bold: string;
  events?: string;
  json?: string;
  subject: string;
  session: string;
  /** BIDS entities after sub/ses, e.g. "task-vision_run-01". */
  run: string;
  task: string;
}

/** Every *_bold.nii[.gz] under `dir` (derivatives/ excluded), sorted by path. */
export function findBidsRuns(dir: string): BidsRunFiles[] {
  if (!existsSync(dir) || !statSync(dir).isDirectory())
    throw new Error(`${dir} is not a folder; pass a BIDS session or dataset folder.`);
  const out: BidsRunFiles[] = [];
  const walk = (d: string, depth: number) => {
    for (const e of readdirSync(d, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const p = join(d, e.name);
      if (e.isDirectory()) {
        if (depth < 5 && e.name !== 'derivatives' && !e.name.startsWith('.')) walk(p, depth + 1);
      } else if (/_bold\.nii(\.gz)?$/.test(e.name)) out.push(parseRunFile(p));
    }
  };
  walk(dir, 0);
  return out;
}

function parseRunFile(bold: string): BidsRunFiles {
  const name = basename(bold).replace(/_bold\.nii(\.gz)?$/, '');
  const parts = name.split('_');
  const sub = parts.find((p) => p.startsWith('sub-'))?.slice(4) ?? '01';
  const ses = parts.find((p) => p.startsWith('ses-'))?.slice(4) ?? '01';
  const run = parts.filter((p) => !p.startsWith('sub-') && !p.startsWith('ses-')).join('_') || 'run-01';
  const task = parts.find((p) => p.startsWith('task-'))?.slice(5) ?? 'rest';
  const stem = bold.replace(/_bold\.nii(\.gz)?$/, '');
  return {
    bold,
    subject: sub,
    session: ses,
    run,
    task,
    events: existsSync(`${stem}_events.tsv`) ? `${stem}_events.tsv` : undefined,
    json: existsSync(`${stem}_bold.json`) ? `${stem}_bold.json` : undefined,
  };
}

export interface LoadedRun {
  info: RunInfo;
  volumes: number;
  /** Volume i as typed voxels: Int16Array when the file stores int16 without scaling, else Float32Array. */
  volume(i: number): Int16Array | Float32Array;
  acquisitionTimes: number[];
  /** Indices recorded as missing (zero-filled) in the sidecar: replay skips them, so the gap is reported again. */
  missing: Set<number>;
  events: StimulusEvent[];
}

export function loadBidsRun(f: BidsRunFiles): LoadedRun {
  const img = decodeNifti(readFileSync(f.bold));
  if (img.dims.length !== 4 && img.dims.length !== 3) throw new Error(`${f.bold} is not a 3-D or 4-D image.`);
  const nvol = img.dims.length === 4 ? img.dims[3] : 1;
  const sidecar = f.json
    ? (JSON.parse(readFileSync(f.json, 'utf8')) as {
        RepetitionTime?: number;
        AcquisitionTimes?: number[];
        MissingVolumes?: number[];
      })
    : {};
  const tr = sidecar.RepetitionTime ?? img.tr;
  if (!(tr > 0))
    throw new Error(`${f.bold} has no repetition time (neither RepetitionTime in the JSON sidecar nor pixdim[4]).`);
  const acq = Array.from({ length: nvol }, (_, i) => sidecar.AcquisitionTimes?.[i] ?? i * tr);
  const int16 =
    img.datatype === NIFTI_TYPE.int16 || img.datatype === NIFTI_TYPE.uint8 || img.datatype === NIFTI_TYPE.int8;
  const affine = img.affine;
  const voxelSize = img.voxelSize.slice(0, 3) as [number, number, number];
  const info: RunInfo = {
    session: f.session,
    run: f.run,
    subject: f.subject,
    task: f.task,
    tr,
    dims: [img.dims[0], img.dims[1], img.dims[2]],
    voxelSize,
    affine,
  };
  return {
    info,
    volumes: nvol,
    acquisitionTimes: acq,
    missing: new Set(sidecar.MissingVolumes ?? []),
    events: f.events ? readEventsTsv(f.events, f.run) : [],
    volume(i) {
      const v = img.volume(i);
      if (!int16) return v;
      // Scaled integer files are not int16-exact after scaling: send float32 then.
      const a = new Int16Array(v.length);
      for (let k = 0; k < v.length; k++) {
        const x = v[k];
        if (x !== (x | 0) || x < -32768 || x > 32767) return v;
        a[k] = x;
      }
      return a;
    },
  };
}

/** BIDS events TSV (onset, duration, trial_type, stimulus_id, references as JSON array, stim_file); rows in file order. */
export function readEventsTsv(path: string, run: string): StimulusEvent[] {
  return parseEventsTsv(readFileSync(path, 'utf8'), run, path);
}

export function parseEventsTsv(text: string, run: string, where = 'events.tsv'): StimulusEvent[] {
  const lines = text.split(/\r?\n/);
  const head = lines[0].split('\t').map((s) => s.trim());
  const col = (n: string) => head.indexOf(n);
  const iOn = col('onset'),
    iDur = col('duration');
  if (iOn < 0 || iDur < 0) throw new Error(`${where} needs onset and duration columns.`);
  const iType = col('trial_type'),
    iStim = col('stimulus_id'),
    iRefs = col('references'),
    iFile = col('stim_file');
  const out: StimulusEvent[] = [];
  for (const line of lines.slice(1)) {
    if (!line.trim()) continue;
    const c = line.split('\t');
    const na = (i: number) => (i < 0 || c[i] === undefined || c[i] === 'n/a' || c[i] === '' ? undefined : c[i]);
    const onset = Number(c[iOn]);
    if (!Number.isFinite(onset)) continue;
    let references: string[] | undefined;
    const refs = na(iRefs);
    if (refs) {
      try {
        const r = JSON.parse(refs) as unknown;
        if (Array.isArray(r)) references = r.map(String);
      } catch {
        /* not JSON: leave out */
      }
    }
    out.push({
      run,
      trial: out.length,
      onset,
      duration: Number(na(iDur) ?? 0) || 0,
      stimulusId: na(iStim) ?? na(iType) ?? `trial-${out.length}`,
      trialType: na(iType),
      references,
      image: na(iFile),
    });
  }
  return out;
}
