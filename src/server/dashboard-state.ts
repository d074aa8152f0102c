// What the dashboard shows, as one accumulating record: every update is applied here and broadcast, so a browser
// that joins late receives the session so far in one `snapshot` and then the same incremental updates as everyone.

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
    /** data: URL of the reconstruction. */
    image?: string;
    flags: string[];
    baseline?: string;
    error?: string;
    /** 1 for the stimulus's first showing in the session, 2 for the second… */
    presentation?: number;
    /** From the second presentation on: the caption of the mean of the presentations so far. */
    mean?: { of: number; caption: string; confidence: number; baseline?: string };
  };
}
export interface DashMetrics {
  n: number;
  model: Record<string, number>;
  baseline?: Record<string, number>;
}
export interface DashAlert {
  level: 'info' | 'warn' | 'error';
  code: string;
  message: string;
  at: number;
  run?: string;
  trial?: number;
}
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
  | { type: 'caption'; data: { run: string; trial: number; caption: NonNullable<DashTrial['caption']> } }
  | { type: 'metrics'; data: DashMetrics }
  | { type: 'alert'; data: DashAlert }
  | { type: 'mosaic'; data: NonNullable<DashSnapshot['mosaic']> };

export interface DashboardStateLimits {
  /** Volumes kept for the charts (most recent). */
  volumes?: number;
  alerts?: number;
}

export class DashboardState {
  private s: DashSnapshot = { status: { bridge: 'waiting', at: Date.now() }, runs: [], volumes: [], trials: [], alerts: [] };
  private readonly trialIndex = new Map<string, DashTrial>();

  constructor(private readonly limits: DashboardStateLimits = {}) {}

  apply(u: DashUpdate): void {
    const s = this.s;
    switch (u.type) {
      case 'status':
        s.status = { ...s.status, ...u.data };
        break;
      case 'run': {
        const i = s.runs.findIndex((r) => r.run === u.data.run && r.session === u.data.session);
        if (i >= 0) s.runs[i] = u.data; else s.runs.push(u.data);
        break;
      }
      case 'volume':
        s.volumes.push(u.data);
        if (s.volumes.length > (this.limits.volumes ?? 3000)) s.volumes.splice(0, s.volumes.length - (this.limits.volumes ?? 3000));
        break;
      case 'trial': {
        const key = `${u.data.run}/${u.data.trial}`;
        const prev = this.trialIndex.get(key);
        if (prev) Object.assign(prev, u.data);
        else {
          const t = { ...u.data };
          this.trialIndex.set(key, t);
          s.trials.push(t);
        }
        break;
      }
      case 'caption': {
        const key = `${u.data.run}/${u.data.trial}`;
        const t = this.trialIndex.get(key);
        if (t) t.caption = u.data.caption;
        break;
      }
      case 'metrics':
        s.metrics = u.data;
        break;
      case 'alert':
        s.alerts.push(u.data);
        if (s.alerts.length > (this.limits.alerts ?? 200)) s.alerts.splice(0, s.alerts.length - (this.limits.alerts ?? 200));
        break;
      case 'mosaic':
        s.mosaic = u.data;
        break;
    }
  }

  snapshot(): DashSnapshot {
    return this.s;
  }

  trial(run: string, trial: number): DashTrial | undefined {
    return this.trialIndex.get(`${run}/${trial}`);
  }
}
