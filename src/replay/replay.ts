// Streams BIDS runs over protocol v1 at the recorded timing ÷ speed, through the same sender as the bridge.
import { encodeNifti1Volume } from '../scanner/nifti.js';
import { ProtocolSender } from '../sender/sender.js';
import { datasetRoot, StimulusFiles } from '../bids/stimulusFile.js';
import { findBidsRuns, loadBidsRun, type BidsRunFiles } from '../bids/bidsRun.js';
import { abortableSleep } from '../core/sleep.js';

export interface ReplayOptions {
  /** BIDS dataset or session folder. */
  session: string;
  /** Server URL (a sender is created) or an existing sender (in-process demo). */
  url?: string;
  sender?: ProtocolSender;
  token?: string;
  /** Real-time divisor; 'max' sends as fast as the server acknowledges. */
  speed: number | 'max';
  /** Only runs whose name contains this (e.g. "run-02" or "task-vision_run-01"). */
  run?: string;
  /** Volumes allowed to wait for acknowledgement before replay pauses. */
  maxPending?: number;
  log?: (level: 'debug' | 'info' | 'warn' | 'error', message: string) => void;
  signal?: AbortSignal;
}

export interface ReplayResult {
  runs: string[];
  volumes: number;
  events: number;
  seconds: number;
  volumesPerSecond: number;
}

export function selectRuns(session: string, run?: string): BidsRunFiles[] {
  const all = findBidsRuns(session);
  if (all.length === 0)
    throw new Error(`no *_bold.nii[.gz] runs under ${session}; pass a BIDS dataset or session folder.`);
  const chosen = run ? all.filter((f) => f.run === run || f.run.includes(run)) : all;
  if (chosen.length === 0)
    throw new Error(`no run matching "${run}" under ${session}; runs there: ${all.map((f) => f.run).join(', ')}.`);
  return chosen;
}

export async function replaySession(o: ReplayOptions): Promise<ReplayResult> {
  if (o.speed !== 'max' && !(o.speed > 0))
    throw new Error(`speed must be a positive number or "max" (got ${o.speed}).`);
  const files = selectRuns(o.session, o.run);
  const own = !o.sender;
  if (!o.sender && !o.url) throw new Error('replay needs a server URL or a sender.');
  const sender = o.sender ?? new ProtocolSender({ url: o.url!, token: o.token, client: 'replay', log: o.log }).start();
  const maxPending = o.maxPending ?? 64;
  // The events files being replayed may come from a recording, i.e. from a sender: stimuli only from this dataset.
  const stimuli = new StimulusFiles(o.log, datasetRoot(o.session));
  const t0 = performance.now();
  let nVol = 0,
    nEv = 0;
  try {
    for (const f of files) {
      const run = loadBidsRun(f);
      const { info } = run;
      o.log?.(
        'info',
        `replaying ${f.bold}: ${run.volumes} volume(s) of ${info.dims.join('×')}, TR ${info.tr} s, ${run.events.length} event(s), speed ${o.speed}`,
      );
      sender.startRun(info);
      // Stimulus images travel inline with their events; reading starts now so a real-time replay never waits on them.
      const images = run.events.map((e) => (f.events ? stimuli.load(e.image, f.events) : Promise.resolve(undefined)));
      type Item = { t: number; vol?: number; ev?: number };
      const items: Item[] = [
        ...run.acquisitionTimes.map((t, i): Item => ({ t, vol: i })),
        ...run.events.map((e, i): Item => ({ t: e.onset, ev: i })),
      ].sort((a, b) => a.t - b.t || (a.ev !== undefined ? -1 : 1));
      const runStart = performance.now();
      for (const it of items) {
        if (o.signal?.aborted) break;
        if (o.speed !== 'max') await abortableSleep(runStart + (it.t * 1000) / o.speed - performance.now(), o.signal);
        const now = Date.now();
        if (it.ev !== undefined) {
          const imageData = await images[it.ev];
          sender.sendEvent(info.session, imageData ? { ...run.events[it.ev], imageData } : run.events[it.ev]);
          nEv++;
          continue;
        }
        const i = it.vol!;
        if (run.missing.has(i)) continue;
        await sender.whenPendingBelow(maxPending);
        const data = run.volume(i);
        sender.sendVolume({
          session: info.session,
          run: info.run,
          index: i,
          tr: info.tr,
          acquisitionTime: run.acquisitionTimes[i],
          nifti: encodeNifti1Volume({ dims: info.dims, affine: [...info.affine], tr: info.tr, data }),
          seenAt: now,
          readAt: Date.now(),
        });
        nVol++;
      }
      if (o.signal?.aborted) break; // an interrupted replay leaves the run open rather than declaring the rest missing
      sender.endRun(info.session, info.run, run.volumes, run.events.length);
      await sender.flush();
    }
  } finally {
    if (own) await sender.close();
  }
  const seconds = (performance.now() - t0) / 1000;
  return { runs: files.map((f) => f.run), volumes: nVol, events: nEv, seconds, volumesPerSecond: nVol / seconds };
}
