// Shared types at the boundaries between stages. Data flows one way:
// scanner/bridge → protocol → server ingest → streams/ operators → inference → dashboard/recording.

/** 4×4 voxel→scanner-RAS(mm) affine, row-major, 16 numbers (as nibabel's `img.affine.ravel()`). */
export type Affine = readonly number[];

/** Per-stage wall-clock timestamps (ms, `performance.timeOrigin + performance.now()` scale = Date.now() scale). */
export type StageTimes = Partial<
  Record<
    | 'acquired'
    | 'fileSeen'
    | 'read'
    | 'sent'
    | 'received'
    | 'accepted'
    | 'corrected'
    | 'masked'
    | 'detrended'
    | 'zscored',
    number
  >
>;

/** What the scanner acquired in one run. Sent once per run (protocol `run-start`). */
export interface RunInfo {
  session: string;
  run: string; // e.g. "task-vision_run-01" (BIDS entities without sub/ses)
  subject: string; // e.g. "sim01"
  task: string;
  tr: number; // seconds
  dims: [number, number, number];
  voxelSize: [number, number, number]; // mm
  affine: Affine;
  /** What sent the run, from the sender's hello ('bridge', 'replay'…), when ingest knows it. */
  source?: string;
}

/** A run is (subject, session, run): labels alone repeat across sessions and subjects (every session has a run-01). */
export interface RunIdentity {
  subject: string;
  session: string;
  run: string;
}

/** The key of a run in maps and filters: (subject, session, run). */
export function runKey(r: RunIdentity): string {
  return `${r.subject}/${r.session}/${r.run}`;
}

/** Half-open range of volume indices [from, to). */
export type IndexRange = [from: number, to: number];

/** One fMRI volume as it flows through the pipeline; `data` is x-fastest (NIfTI order), length = dims product. */
export interface Volume {
  run: string;
  /** Set by ingest: with `run`, identifies the run (offline readers that handle one run may leave them out). */
  subject?: string;
  session?: string;
  index: number; // 0-based volume index within the run
  dims: [number, number, number];
  affine: Affine;
  tr: number;
  acquisitionTime: number; // seconds from run start (index·TR unless the scanner says otherwise)
  data: Float32Array;
  times: StageTimes;
}

/** A stimulus image carried inline over the protocol (the file's bytes, checked at entry: docs/protocol.md). */
export interface StimulusImage {
  format: 'png' | 'jpeg' | 'webp';
  bytes: Uint8Array;
  width: number;
  height: number;
}

/** One stimulus presentation (BIDS events row). */
export interface StimulusEvent {
  run: string;
  /** Set by ingest, as for Volume. */
  subject?: string;
  session?: string;
  trial: number; // 0-based order within the run
  onset: number; // seconds from run start
  duration: number; // seconds
  stimulusId: string;
  /** Reference captions (replays of simulated or NSD sessions). */
  references?: string[];
  /** Stimulus image as a path relative to the session root, or undefined. */
  image?: string;
  /** The stimulus image itself, when the sender could read it (replays, a bridge beside the stimulus files). */
  imageData?: StimulusImage;
  /** BIDS trial_type, when the sender knows it. */
  trialType?: string;
}

/** The end of a run as seen by ingest (protocol `run-end`). */
export interface RunEnd {
  subject: string;
  session: string;
  run: string;
  /** Volumes the sender produced (indices 0..expected-1). */
  expected: number;
  /** Volumes accepted and emitted. */
  accepted: number;
  /** Indices never accepted (reported gaps) as ascending half-open ranges: a range costs the same whatever its length. */
  missing: IndexRange[];
  /** How many indices `missing` covers. */
  missingCount: number;
}

/** A trial's estimated brain response over the model's ROI voxels, ready for decoding. */
export interface TrialResponse {
  run: string;
  subject: string;
  trial: number;
  stimulusId: string;
  /** ROI voxel values in mask order (the mask's nonzero voxels, x fastest). */
  vector: Float32Array;
  method: 'window-mean' | 'lss-beta';
  window: { start: number; end: number }; // seconds from run start
  volumes: number[]; // volume indices used
  /** Quality flags, e.g. "missing-volume", "high-motion". A flagged trial is still decoded, and shown flagged. */
  flags: string[];
  event: StimulusEvent;
  readyAt: number; // ms timestamp when computable
}

/** A decoded trial. */
export interface Caption {
  run: string;
  trial: number;
  stimulusId: string;
  text: string;
  confidence: number; // mean per-token probability of the generated tokens, 0..1
  tokenLogprobs: number[];
  image?: Uint8Array; // PNG of the reconstruction
  references?: string[];
  flags: string[];
  latencyMs: { responseToCaption: number; reconstruction?: number };
}
