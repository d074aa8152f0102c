// The decoding pipeline as `serve` runs it: one object whose `onHub` is serve's hub hook (subscribes before the server
// listens, so nothing is missed while the model loads) and whose `attach` serves the dashboard on serve's HTTP server.
import { randomBytes } from 'node:crypto';
import type { Server as HttpServer } from 'node:http';
import { Subject, type Observable } from 'rxjs';
import type { IngestHub } from '../server/hub.js';
import { createDashboard, isLoopbackHost, type Dashboard } from '../server/dashboard.js';
import { BrainDecoder } from '../inference/decoder.js';
import { BundleError } from '../inference/bundle.js';
import { RidgeRetrieval } from '../inference/baseline.js';
import type { Device } from '../inference/sessions.js';
import { UserError } from '../cli/errors.js';
import { startPipeline, type Pipeline, type PipelineOptions } from './pipeline.js';

export const DEFAULT_MODELS = 'models/bundles/default';

export interface ServePipelineOptions {
  device?: Device;
  recordDir?: string;
  decode?: PipelineOptions['decode'];
  log?: (line: string) => void;
}

export interface ServePipeline {
  /** serve's hub hook: buffers ingest from the first message, loads the bundle, then runs the pipeline. */
  onHub(hub: IngestHub, opts: { models?: string }): Promise<void>;
  /**
   * Serves the dashboard on the server's HTTP port. Beyond localhost a random viewer token is required; the returned
   * URL carries it.
   */
  attach(srv: { http: HttpServer; url: string }): string;
  readonly dashboard: Dashboard;
  pipeline(): Pipeline | undefined;
  close(): Promise<void>;
}

type HubStream = 'runs$' | 'volumes$' | 'events$' | 'runEnds$' | 'status$';
const STREAMS: HubStream[] = ['runs$', 'volumes$', 'events$', 'runEnds$', 'status$'];

/** Holds every hub message until `release()`, then replays them in arrival order and passes the rest through. */
export function bufferedHub(hub: IngestHub): { hub: IngestHub; release(): void } {
  const out = Object.fromEntries(STREAMS.map((k) => [k, new Subject<unknown>()])) as Record<HubStream, Subject<unknown>>;
  let held: { key: HubStream; value?: unknown; done?: boolean }[] | null = [];
  for (const key of STREAMS) {
    (hub[key] as Observable<unknown>).subscribe({
      next: (value) => (held ? held.push({ key, value }) : out[key].next(value)),
      complete: () => (held ? held.push({ key, done: true }) : out[key].complete()),
    });
  }
  const view = Object.fromEntries(STREAMS.map((k) => [k, out[k].asObservable()]));
  return {
    hub: { ...view, stats: () => hub.stats() } as unknown as IngestHub,
    release() {
      const h = held ?? [];
      held = null;
      for (const m of h) {
        if (m.done) out[m.key].complete();
        else out[m.key].next(m.value);
      }
    },
  };
}

export function createServePipeline(opts: ServePipelineOptions = {}): ServePipeline {
  const log = opts.log ?? ((l: string) => process.stderr.write(`${l}\n`));
  const dashboard = createDashboard();
  let decoder: BrainDecoder | undefined;
  let baseline: RidgeRetrieval | null = null;
  let pipeline: Pipeline | undefined;
  return {
    dashboard,
    pipeline: () => pipeline,
    async onHub(hub, { models }) {
      const buffered = bufferedHub(hub);
      const dir = models ?? DEFAULT_MODELS;
      log(`serve: loading model bundle ${dir} (checking checksums)…`);
      try {
        decoder = await BrainDecoder.load(dir, { device: opts.device, log });
      } catch (e) {
        if (e instanceof BundleError) throw new UserError(`serve: ${e.message}`);
        throw e;
      }
      baseline = await RidgeRetrieval.load(decoder.bundle, decoder.sessions);
      pipeline = startPipeline(buffered.hub, {
        decoder, baseline, dashboard, recordDir: opts.recordDir, decode: opts.decode,
        log: (level, m) => log(`pipeline ${level}: ${m}`),
      });
      buffered.release();
      log(`serve: model "${decoder.bundle.manifest.name}" decoding on ${decoder.provider}`);
    },
    attach(srv) {
      const u = new URL(srv.url.replace(/^ws/, 'http'));
      const host = u.hostname.replace(/^\[|\]$/g, '');
      const viewerToken = isLoopbackHost(host) ? undefined : randomBytes(16).toString('hex');
      dashboard.attach(srv.http, { viewerToken });
      const shown = host === '0.0.0.0' || host === '::' ? '<this-host>' : u.host;
      return `http://${shown}/${viewerToken ? `?token=${viewerToken}` : ''}`;
    },
    async close() {
      await pipeline?.close();
      await dashboard.close();
      await baseline?.release();
      await decoder?.release();
    },
  };
}
