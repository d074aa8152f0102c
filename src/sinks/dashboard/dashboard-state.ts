// What the dashboard shows, as one accumulating record: every update is applied here and broadcast, so a browser
// that joins late receives the session so far in one `snapshot` and then the same incremental updates as everyone.

import type { PipelineAlert } from '../../pipeline/pipeline.js';

export type ConnState = 'waiting' | 'connected' | 'disconnected' | 'streaming' | 'ended';

export interface DashStatus {
  bridge: ConnState;
  /** Free text: peer address, scanner/sender name... */
  detail?: string;
  model?: { name: string; provider: string; subjects: string[] };
  at: number;
}
export interface DashRun {
  session: string;
  run: string;
  subject: string;
  tr: number;
  dims: [number, number, number];
  /** Volumes expected, when the sender says (replay knows). */
  expected?: number;
  startedAt: number;
  fdThresholdMm?: number;
}
export interface DashVolume {
  run: string;
  index: number;
  /** Seconds from run start. */
  t: number;
  /** Per-stage latency in ms, from scanner acquisition/receipt to each stage. */
  stages: Record<string, number>;
  /** received → last stage, ms. */
  totalMs: number;
  /** How far processing is behind acquisition (ms), when the acquisition time is known. */
  lagMs?: number;
  motion?: { trans: [number, number, number]; rot: [number, number, number]; fd: number };
  /** Mean of the processed ROI signal. */
  roi?: number;
}
export interface DashTrial {
  run: string;
  /** With `run`, identify the run: labels repeat across sessions and subjects. */
  subject?: string;
  session?: string;
  trial: number;
  stimulusId: string;
  onset: number;
  duration: number;
  references?: string[];
  /** data: URL of the stimulus image (replays). */
  stimulusImage?: string;
  caption?: {
    text: string;
    confidence: number;
    latencyMs: number;
    flags: string[];
    baseline?: string;
    error?: string;
    /** 1 for the stimulus's first showing in the session, 2 for the second… */
    presentation?: number;
    /** From the second presentation on: the caption of the mean of the presentations so far. */
    mean?: { of: number; caption: string; confidence: number; baseline?: string };
  };
  /** Filled in after the caption: the image (data: URL, 256 px) and its generation time, or why there is none. */
  reconstruction?: DashReconstruction;
}
export interface DashReconstruction {
  image?: string;
  ms?: number;
  error?: string;
}
export interface DashMetrics {
  n: number;
  model: Record<string, number>;
  baseline?: Record<string, number>;
}
/** The dashboard shows the pipeline's alerts as they are. */
export type DashAlert = PipelineAlert;
export interface DashSnapshot {
  status: DashStatus;
  runs: DashRun[];
  volumes: DashVolume[];
  trials: DashTrial[];
  metrics?: DashMetrics;
  alerts: DashAlert[];
  /** data: URL of the latest slice mosaic. */
  mosaic?: { run: string; index: number; image: string };
}

/** Update messages, as sent over socket.io (event name = `type`). */
export type DashUpdate =
  | { type: 'status'; data: DashStatus }
  | { type: 'run'; data: DashRun }
  | { type: 'volume'; data: DashVolume }
  | { type: 'trial'; data: DashTrial }
  | {
      type: 'caption';
      data: {
        run: string;
        subject?: string;
        session?: string;
        trial: number;
        caption: NonNullable<DashTrial['caption']>;
      };
    }
  | {
      type: 'reconstruction';
      data: { run: string; subject?: string; session?: string; trial: number; reconstruction: DashReconstruction };
    }
  | { type: 'metrics'; data: DashMetrics }
  | { type: 'alert'; data: DashAlert }
  | { type: 'mosaic'; data: NonNullable<DashSnapshot['mosaic']> };

export interface DashboardStateLimits {
  /** Volumes kept for the charts (most recent). */
  volumes?: number;
  alerts?: number;
  /** Trials kept (most recent): the late-joiner snapshot stays bounded in an 8-hour session. */
  trials?: number;
  /** Trials that keep their images (stimulus thumbnail, reconstruction); older cards keep only their text. */
  trialImages?: number;
}

/** Defaults, mirrored by dashboard/app.js so a browser holds no more than a late joiner receives. */
export const DASH_LIMITS = { volumes: 3000, alerts: 200, trials: 1000, trialImages: 100 } as const;

/** The key of a trial: (subject, session, run, trial). */
export function dashTrialKey(t: { subject?: string; session?: string; run: string; trial: number }): string {
  return `${t.subject ?? ''}/${t.session ?? ''}/${t.run}/${t.trial}`;
}

function dropImages(t: DashTrial): void {
  delete t.stimulusImage;
  if (t.reconstruction?.image) t.reconstruction = { ...t.reconstruction, image: undefined };
}

export class DashboardState {
  private s: DashSnapshot = {
    status: { bridge: 'waiting', at: Date.now() },
    runs: [],
    volumes: [],
    trials: [],
    alerts: [],
  };
  private readonly trialIndex = new Map<string, DashTrial>();

  constructor(private readonly limits: DashboardStateLimits = {}) {}

  apply(u: DashUpdate): void {
    const s = this.s;
    switch (u.type) {
      case 'status':
        s.status = { ...s.status, ...u.data };
        break;
      case 'run': {
        const i = s.runs.findIndex(
          (r) => r.run === u.data.run && r.session === u.data.session && r.subject === u.data.subject,
        );
        if (i >= 0) s.runs[i] = u.data;
        else s.runs.push(u.data);
        break;
      }
      case 'volume':
        s.volumes.push(u.data);
        if (s.volumes.length > this.max('volumes')) s.volumes.splice(0, s.volumes.length - this.max('volumes'));
        break;
      case 'trial': {
        const key = dashTrialKey(u.data);
        const prev = this.trialIndex.get(key);
        if (prev) {
          Object.assign(prev, u.data);
          if (!this.keepsImages(prev)) dropImages(prev);
        } else {
          const t = { ...u.data };
          this.trialIndex.set(key, t);
          s.trials.push(t);
          const fell = s.trials[s.trials.length - 1 - this.max('trialImages')];
          if (fell) dropImages(fell);
          if (s.trials.length > this.max('trials')) {
            for (const old of s.trials.splice(0, s.trials.length - this.max('trials')))
              this.trialIndex.delete(dashTrialKey(old));
          }
        }
        break;
      }
      case 'caption': {
        const t = this.trialIndex.get(dashTrialKey(u.data));
        if (t) {
          t.caption = u.data.caption;
          if (!this.keepsImages(t)) dropImages(t);
        }
        break;
      }
      case 'reconstruction': {
        const t = this.trialIndex.get(dashTrialKey(u.data));
        if (t) {
          t.reconstruction = u.data.reconstruction;
          if (!this.keepsImages(t)) dropImages(t);
        }
        break;
      }
      case 'metrics':
        s.metrics = u.data;
        break;
      case 'alert':
        s.alerts.push(u.data);
        if (s.alerts.length > this.max('alerts')) s.alerts.splice(0, s.alerts.length - this.max('alerts'));
        break;
      case 'mosaic':
        s.mosaic = u.data;
        break;
    }
  }

  snapshot(): DashSnapshot {
    return this.s;
  }

  trial(t: { subject?: string; session?: string; run: string; trial: number }): DashTrial | undefined {
    return this.trialIndex.get(dashTrialKey(t));
  }

  private max(k: keyof typeof DASH_LIMITS): number {
    return this.limits[k] ?? DASH_LIMITS[k];
  }

  /** Only the most recent trials keep their images (searched from the end: updates concern recent trials). */
  private keepsImages(t: DashTrial): boolean {
    const trials = this.s.trials;
    const n = this.max('trialImages');
    for (let i = trials.length - 1; i >= Math.max(0, trials.length - n); i--) if (trials[i] === t) return true;
    return false;
  }
}
