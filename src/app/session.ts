// A recorded session replayed through a real `serve` (ingest over WebSocket, pipeline, dashboard) in this process:
// what `demo` shows and what the benchmark times.
import { readFileSync } from 'node:fs';
import { startServer, type DecoderServer } from '../server/index.js';
import { createDashboard, type Dashboard } from '../sinks/dashboard/dashboard.js';
import { replaySession, type ReplayResult } from '../replay/index.js';
import { findBidsRuns, type BidsRunFiles } from '../bids/index.js';
import type { BrainDecoder } from '../inference/decoder.js';
import type { RidgeRetrieval } from '../inference/baseline.js';
import type { DecodedTrial, Pipeline, PipelineOptions, PipelineStats } from '../pipeline/pipeline.js';
import { startDecoding } from './decoding.js';
import { collectImagePairs, type ImagePairs } from '../sinks/imagePairs.js';

export interface SessionRunOptions {
  session: string;
  decoder: BrainDecoder;
  baseline?: RidgeRetrieval | null;
  speed: number | 'max';
  port?: number;
  recordDir?: string;
  decode?: PipelineOptions['decode'];
  /** Live caption metrics on the dashboard (default on). */
  liveMetrics?: boolean;
  /** Keep stimulus images, caption embeddings and reconstruction pixels for the summary's image metrics (demo). */
  imagePairs?: boolean;
  onDecoded?: (d: DecodedTrial) => void;
  /** Called once the dashboard is reachable. */
  onServing?: (url: string) => void;
  log?: (level: 'info' | 'warn' | 'error', message: string) => void;
  signal?: AbortSignal;
}

export interface SessionRun {
  srv: DecoderServer;
  dashboard: Dashboard;
  pipeline: Pipeline;
  runs: BidsRunFiles[];
  replayed: ReplayResult;
  stats: PipelineStats;
  /** What the image metrics score (with `imagePairs`). */
  imagePairs?: ImagePairs;
  /** Seconds from the start of replay to the last caption. */
  wallSeconds: number;
  /** Seconds of scanning replayed (volumes × TR). */
  acquiredSeconds: number;
  close(): Promise<void>;
}

function sidecar(r: BidsRunFiles): { volumes?: number; tr?: number } {
  if (!r.json) return {};
  try {
    const j = JSON.parse(readFileSync(r.json, 'utf8')) as { AcquisitionTimes?: number[]; RepetitionTime?: number };
    return { volumes: j.AcquisitionTimes?.length, tr: j.RepetitionTime };
  } catch {
    return {};
  }
}

/** Starts serve on 127.0.0.1 with the pipeline and dashboard, replays the session, and waits for the last caption. */
export async function runSessionThroughServe(o: SessionRunOptions): Promise<SessionRun> {
  const runs = findBidsRuns(o.session);
  if (!runs.length) throw new Error(`no *_bold.nii.gz runs under ${o.session}`);
  const side = new Map(runs.map((r) => [r.run, sidecar(r)]));
  const dashboard = createDashboard();
  const log = o.log ?? (() => {});
  let pipeline!: Pipeline;
  let imagePairs: ImagePairs | undefined;
  const srv = await startServer({
    host: '127.0.0.1',
    port: o.port ?? 0,
    recordDir: o.recordDir,
    log: (level, m) => {
      if (level === 'warn' || level === 'error') log(level, `serve: ${m}`);
    },
    onHub: (hub) => {
      pipeline = startDecoding(hub, {
        decoder: o.decoder,
        baseline: o.baseline,
        dashboard,
        recordDir: o.recordDir,
        decode: o.decode,
        liveMetrics: o.liveMetrics,
        expectedVolumes: (info) => side.get(info.run)?.volumes,
        log,
        lossless: true, // a replay is not a live scanner: every trial is decoded, however far behind
      });
      if (o.imagePairs) imagePairs = collectImagePairs(pipeline);
    },
  });
  dashboard.attach(srv.http);
  const close = async () => {
    await pipeline.close();
    imagePairs?.unsubscribe();
    await dashboard.close();
    await srv.close();
  };
  try {
    if (o.onDecoded) pipeline.decoded$.subscribe(o.onDecoded);
    o.onServing?.(`http://127.0.0.1:${srv.port}/`);
    const t0 = performance.now();
    const replayed = await replaySession({
      session: o.session,
      url: srv.url,
      speed: o.speed,
      signal: o.signal,
      log: (level, m) => log(level === 'debug' ? 'info' : level, `replay: ${m}`),
    });
    if (!o.signal?.aborted) {
      await Promise.race([
        pipeline.whenDone(replayed.runs),
        new Promise<void>((r) => o.signal?.addEventListener('abort', () => r(), { once: true })),
      ]);
    }
    const wallSeconds = (performance.now() - t0) / 1000;
    const acquiredSeconds = replayed.runs.reduce((s, run) => {
      const sc = side.get(run);
      return s + (sc?.volumes ?? 0) * (sc?.tr ?? 0);
    }, 0);
    return {
      srv,
      dashboard,
      pipeline,
      runs,
      replayed,
      stats: pipeline.stats(),
      imagePairs,
      wallSeconds,
      acquiredSeconds,
      close,
    };
  } catch (e) {
    await close();
    throw e;
  }
}
