// The decoding pipeline as `serve` runs it: one object whose `onHub` is serve's hub hook (subscribes before the server
// listens, so nothing is missed while the model loads) and whose `attach` serves the dashboard on serve's HTTP server.
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Server as HttpServer } from 'node:http';
import { Subject, type Observable, type Subscription } from 'rxjs';
import type { IngestHub } from '../server/hub.js';
import { createDashboard, isLoopbackHost, type Dashboard } from '../sinks/dashboard/dashboard.js';
import { BrainDecoder } from '../inference/decoder.js';
import { RidgeRetrieval } from '../inference/baseline.js';
import type { Device } from '../inference/sessions.js';
import { UserError } from '../core/errors.js';
import type { LmPrecision } from '../inference/decoder.js';
import { rerankOptions, type RerankSetting } from '../inference/rerankSetting.js';
import type { Pipeline, PipelineOptions } from '../pipeline/pipeline.js';
import { startDecoding } from './decoding.js';
import { oneLine } from '../server/log.js';

export const DEFAULT_MODELS = 'models/bundles/default';

/** What serve's command line hands the pipeline when the hub exists. */
export interface HubHookOptions {
  models?: string;
  record?: string;
  device?: Device;
  lmPrecision?: LmPrecision;
  /** How the caption is chosen among the LM's candidates (default: none, the greedy caption; serve's CLI passes its own). */
  rerank?: RerankSetting;
}

export interface ServePipelineOptions {
  device?: Device;
  recordDir?: string;
  decode?: PipelineOptions['decode'];
  log?: (line: string) => void;
}

export interface ServePipeline {
  /**
   * serve's hub hook. Returns at once so serve starts listening (ingest and recording never wait for the model):
   * ingest is buffered from the first message while the bundle loads in the background (`ready`), then decoded.
   * An explicit --models folder without a manifest is a UserError; a missing default bundle means no decoding, said
   * in one log line and on the dashboard.
   */
  onHub(hub: IngestHub, opts: HubHookOptions): void;
  /** Resolves when decoding runs (or is known to be off); never rejects — failures are logged and shown as alerts. */
  readonly ready: Promise<void>;
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
export function bufferedHub(hub: IngestHub): { hub: IngestHub; release(): void; discard(): void } {
  const out = Object.fromEntries(STREAMS.map((k) => [k, new Subject<unknown>()])) as Record<
    HubStream,
    Subject<unknown>
  >;
  let held: { key: HubStream; value?: unknown; done?: boolean }[] | null = [];
  const subs: Subscription[] = [];
  for (const key of STREAMS) {
    subs.push(
      (hub[key] as Observable<unknown>).subscribe({
        next: (value) => (held ? held.push({ key, value }) : out[key].next(value)),
        complete: () => (held ? held.push({ key, done: true }) : out[key].complete()),
        error: (e: unknown) =>
          process.stderr.write(
            `${oneLine(`serve: the hub's ${key} stream failed: ${(e as Error)?.message ?? String(e)}`)}\n`,
          ),
      }),
    );
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
    /** Stops holding (decoding is off): drops what was held and unsubscribes. */
    discard() {
      held = null;
      for (const x of subs) x.unsubscribe();
    },
  };
}

export function createServePipeline(opts: ServePipelineOptions = {}): ServePipeline {
  const log = opts.log ?? ((l: string) => process.stderr.write(`${oneLine(l)}\n`));
  const dashboard = createDashboard();
  let decoder: BrainDecoder | undefined;
  let baseline: RidgeRetrieval | null = null;
  let pipeline: Pipeline | undefined;
  let closed = false;
  let markReady!: () => void;
  const ready = new Promise<void>((r) => {
    markReady = r;
  });
  const off = (why: string, level: 'warn' | 'error') => {
    log(`serve: ${why}`);
    dashboard.publish({ type: 'alert', data: { level, code: 'decoding-off', message: why, at: Date.now() } });
  };

  async function load(
    hub: IngestHub,
    dir: string,
    record?: string,
    device?: Device,
    lmPrecision?: LmPrecision,
    rerank?: RerankSetting,
  ): Promise<void> {
    const buffered = bufferedHub(hub);
    try {
      log(`serve: loading model bundle ${dir} (checking checksums)…`);
      decoder = await BrainDecoder.load(dir, { device, lmPrecision, log });
      log(`serve: LM graph ${decoder.lmFile}`);
      baseline = await RidgeRetrieval.load(decoder.bundle, decoder.sessions);
      if (closed) {
        // serve stopped while the model loaded
        buffered.discard();
        await baseline?.release();
        await decoder.release();
        return;
      }
      pipeline = startDecoding(buffered.hub, {
        decoder,
        baseline,
        dashboard,
        recordDir: opts.recordDir ?? record,
        decode: { ...opts.decode, ...(rerank ? { rerank: rerankOptions(rerank, baseline) } : {}) },
        // A replay (`mindsemantix replay`) is decoded whole however far decoding falls behind; a scanner sheds load.
        lossless: (info) => info.source === 'replay',
        log: (level, m) => log(`pipeline ${level}: ${m}`),
      });
      buffered.release();
      log(`serve: model "${decoder.bundle.manifest.name}" decoding on ${decoder.provider}`);
    } catch (e) {
      buffered.discard();
      off(`decoding is off: ${(e as Error).message}`, 'error');
    } finally {
      markReady();
    }
  }

  return {
    dashboard,
    ready,
    pipeline: () => pipeline,
    onHub(hub, { models, record, device, lmPrecision, rerank }) {
      const dir = models ?? DEFAULT_MODELS;
      if (!existsSync(join(dir, 'manifest.json'))) {
        if (models)
          throw new UserError(
            `serve: model bundle ${resolve(dir)} has no manifest.json; pass --models with a folder written by \`python -m mindsemantix.export\`.`,
          );
        off(
          `no model bundle at ${DEFAULT_MODELS}: ingesting and recording without decoding (run \`npm start\` once to build it, or pass --models DIR).`,
          'warn',
        );
        markReady();
        return;
      }
      void load(hub, dir, record, device ?? opts.device, lmPrecision, rerank);
    },
    attach(srv) {
      const u = new URL(srv.url.replace(/^ws/, 'http'));
      const host = u.hostname.replace(/^\[|\]$/g, '');
      const viewerToken = isLoopbackHost(host) ? undefined : randomBytes(16).toString('hex');
      dashboard.attach(srv.http, { viewerToken, loopbackBind: isLoopbackHost(host) });
      const shown = host === '0.0.0.0' || host === '::' ? '<this-host>' : u.host;
      return `http://${shown}/${viewerToken ? `?token=${viewerToken}` : ''}`;
    },
    async close() {
      // Never waits for a model still loading: that load sees `closed` and releases what it made.
      closed = true;
      if (pipeline) {
        await pipeline.close();
        await baseline?.release();
        await decoder?.release();
      }
      await dashboard.close();
    },
  };
}
