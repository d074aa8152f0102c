// Per-trial response vectors from the z-scored ROI stream, emitted as soon as the volumes covering the trial's
// window have arrived: 'window-mean' (mean over onset+a … onset+b s) or 'lss-beta' (least-squares-separate
// single-trial beta with the canonical double-gamma HRF over a window after onset).
import type { StimulusEvent, TrialResponse } from '../src/core/types.js';
import { boxcarResponse } from './hrf.js';
import { symPinv } from './linalg.js';

export interface TrialResponseOptions {
  tr: number;
  method: 'window-mean' | 'lss-beta';
  /** window-mean: seconds after onset, half-open [start, end). */
  window: [number, number];
  /** lss-beta: fitted window, seconds relative to onset (data before onset pins down the other trials' beta). */
  lssWindow: [number, number];
  /** Seconds of z-scored volumes kept for events that arrive late. */
  historySeconds: number;
  /** A volume in the window with framewise displacement above this flags the trial 'high-motion'. */
  fdThresholdMm: number;
}

export const DEFAULT_TRIAL_OPTIONS: Omit<TrialResponseOptions, 'tr'> = {
  method: 'window-mean',
  window: [4, 8],
  lssWindow: [-40, 16],
  historySeconds: 60,
  fdThresholdMm: 0.9,
};

/** A TrialResponse with the times the dashboard and the benchmark need (additive to src/core/types.ts). */
export interface StreamTrialResponse extends TrialResponse {
  /** ms timestamp at which the last volume the trial needed was received (undefined if none). */
  lastVolumeReceivedAt?: number;
}

/** Volume indices whose acquisition time index·TR falls in [onset+a, onset+b) (at least one). */
export function windowVolumes(onset: number, win: [number, number], tr: number): [number, number] {
  const first = Math.max(0, Math.ceil((onset + win[0]) / tr - 1e-9));
  const last = Math.max(first, Math.ceil((onset + win[1]) / tr - 1e-9) - 1);
  return [first, last];
}

interface Pending {
  event: StimulusEvent;
  first: number;
  last: number;
}

export class TrialResponseEstimator {
  readonly nVox: number;
  readonly opts: TrialResponseOptions;
  readonly run: string;
  readonly subject: string;
  private readonly cap: number;
  private readonly data: Float32Array;
  private readonly slotIndex: Int32Array;
  private readonly slotValid: Uint8Array;
  private readonly slotFd: Float64Array;
  private readonly slotReceived: Float64Array;
  private maxIndex = -1;
  private pending: Pending[] = [];
  private known: StimulusEvent[] = [];
  private ended = false;

  constructor(
    nVox: number,
    opts: Partial<TrialResponseOptions> & { tr: number },
    meta: { run: string; subject: string },
  ) {
    this.nVox = nVox;
    this.opts = { ...DEFAULT_TRIAL_OPTIONS, ...opts };
    this.run = meta.run;
    this.subject = meta.subject;
    const reach =
      Math.max(this.opts.window[1], this.opts.lssWindow[1]) -
      Math.min(0, this.opts.lssWindow[0]) +
      this.opts.historySeconds;
    this.cap = Math.ceil(reach / this.opts.tr) + 2;
    this.data = new Float32Array(this.cap * nVox);
    this.slotIndex = new Int32Array(this.cap).fill(-1);
    this.slotValid = new Uint8Array(this.cap);
    this.slotFd = new Float64Array(this.cap);
    this.slotReceived = new Float64Array(this.cap);
  }

  private span(ev: StimulusEvent): [number, number] {
    const win = this.opts.method === 'lss-beta' ? this.opts.lssWindow : this.opts.window;
    return windowVolumes(ev.onset, win, this.opts.tr);
  }

  /** Records volume `index` (zscored = null while no z-scored values exist yet) and returns trials now complete. */
  addVolume(index: number, zscored: Float32Array | null, fd: number, receivedAt: number): StreamTrialResponse[] {
    const slot = index % this.cap;
    this.slotIndex[slot] = index;
    this.slotValid[slot] = zscored ? 1 : 0;
    this.slotFd[slot] = fd;
    this.slotReceived[slot] = receivedAt;
    if (zscored) this.data.set(zscored, slot * this.nVox);
    if (index > this.maxIndex) this.maxIndex = index;
    return this.flush(false);
  }

  /** Registers a stimulus event; returns its response at once if its volumes have already arrived. */
  addEvent(ev: StimulusEvent): StreamTrialResponse[] {
    const [first, last] = this.span(ev);
    this.known.push(ev);
    this.pending.push({ event: ev, first, last });
    // Keep only events that can still matter as LSS nuisance regressors.
    const horizon = this.maxIndex * this.opts.tr - this.cap * this.opts.tr - 60;
    if (this.known.length > 64) this.known = this.known.filter((e) => e.onset >= horizon);
    return this.flush(this.ended);
  }

  /** The run ended: every pending trial is emitted now, flagged 'incomplete-window' if its window was cut. */
  endRun(): StreamTrialResponse[] {
    this.ended = true;
    return this.flush(true);
  }

  private flush(force: boolean): StreamTrialResponse[] {
    const out: StreamTrialResponse[] = [];
    const keep: Pending[] = [];
    for (const p of this.pending) {
      if (p.last <= this.maxIndex || force) out.push(this.compute(p, p.last > this.maxIndex));
      else keep.push(p);
    }
    this.pending = keep;
    return out;
  }

  private compute(p: Pending, truncated: boolean): StreamTrialResponse {
    const V = this.nVox;
    const flags = new Set<string>();
    if (truncated) flags.add('incomplete-window');
    const used: number[] = [];
    let lastReceived: number | undefined;
    const oldest = this.maxIndex - this.cap + 1;
    for (let i = p.first; i <= Math.min(p.last, this.maxIndex); i++) {
      const slot = i % this.cap;
      if (i < oldest) {
        flags.add('expired');
        continue;
      }
      if (this.slotIndex[slot] !== i) {
        flags.add('missing-volume');
        continue;
      }
      if (!this.slotValid[slot]) {
        flags.add('warmup');
        continue;
      }
      if (this.slotFd[slot] > this.opts.fdThresholdMm) flags.add('high-motion');
      used.push(i);
      lastReceived = Math.max(lastReceived ?? 0, this.slotReceived[slot]);
    }
    const vector = new Float32Array(V);
    const method = this.opts.method;
    if (used.length === 0) {
      flags.add('no-data');
    } else if (method === 'window-mean') {
      for (const i of used) {
        const base = (i % this.cap) * V;
        for (let v = 0; v < V; v++) vector[v] += this.data[base + v];
      }
      const inv = 1 / used.length;
      for (let v = 0; v < V; v++) vector[v] *= inv;
    } else {
      this.lss(p.event, used, vector, flags);
    }
    const win = method === 'lss-beta' ? this.opts.lssWindow : this.opts.window;
    return {
      run: this.run,
      subject: this.subject,
      trial: p.event.trial,
      stimulusId: p.event.stimulusId,
      vector,
      method,
      window: { start: p.event.onset + win[0], end: p.event.onset + win[1] },
      volumes: used,
      flags: [...flags],
      event: p.event,
      readyAt: Date.now(),
      lastVolumeReceivedAt: lastReceived,
    };
  }

  /** LSS: regress the window on [this trial's HRF, all other known trials' HRF, constant]; keep the first beta. */
  private lss(ev: StimulusEvent, used: number[], vector: Float32Array, flags: Set<string>): void {
    const n = used.length,
      k = 3,
      V = this.nVox,
      tr = this.opts.tr;
    if (n <= k) {
      flags.add('lss-underdetermined');
    }
    const X = new Float64Array(n * k);
    for (let r = 0; r < n; r++) {
      const t = used[r] * tr;
      X[r * k] = boxcarResponse(t, ev.onset, ev.duration);
      let others = 0;
      for (const e of this.known) {
        if (e === ev || (e.trial === ev.trial && e.run === ev.run)) continue;
        if (e.onset > t || e.onset < t - 45) continue; // the HRF is < 1e-6 of its peak 45 s after onset
        others += boxcarResponse(t, e.onset, e.duration);
      }
      X[r * k + 1] = others;
      X[r * k + 2] = 1;
    }
    const G = new Float64Array(k * k);
    for (let r = 0; r < n; r++)
      for (let i = 0; i < k; i++) for (let j = 0; j < k; j++) G[i * k + j] += X[r * k + i] * X[r * k + j];
    const P = new Float64Array(k * k);
    symPinv(G, k, P, new Float64Array(2 * k * k + k), 1e-10);
    for (let r = 0; r < n; r++) {
      let c = 0;
      for (let j = 0; j < k; j++) c += P[j] * X[r * k + j];
      const base = (used[r] % this.cap) * V;
      for (let v = 0; v < V; v++) vector[v] += c * this.data[base + v];
    }
  }
}
