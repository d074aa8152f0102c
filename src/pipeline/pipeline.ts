// The serve/demo pipeline: ingest hub → streams/ preprocessor (mask from the bundle) → decode queue → outputs as
// observables. It knows no sink: the dashboard, the derivatives recorder, live metrics and the demo's stdout
// subscribe to its outputs (src/sinks, wired by src/app). The per-volume path only preprocesses; decoding happens off it,
// and reconstruction off the caption path: a caption is emitted as soon as it exists, its image follows on reconstructions$.
import { filter, Subject, type Observable, type Observer, type Subscription } from 'rxjs';
import { runKey, type RunInfo, type StimulusEvent, type TrialResponse, type Volume } from '../core/types.js';
import type { IngestHub } from '../server/hub.js';
import { RepeatMeans, type Preprocessor, type ProcessedVolume } from '../../streams/index.js';
import type { BrainDecoder, DecodedCaption, DecodeOptions, PlanarImage } from '../inference/decoder.js';
import type { RidgeRetrieval } from '../inference/baseline.js';
import { DecodeQueue } from '../inference/queue.js';
import { loadMask, preprocessorForRun, type LoadedMask } from './runPreprocessor.js';

export interface PipelineOptions {
  decoder: BrainDecoder;
  baseline?: RidgeRetrieval | null;
  decode?: DecodeOptions;
  /** Ingest records the runs (`serve --record`): an undecodable run's alert says it is still recorded. */
  recording?: boolean;
  /** Preprocessing overrides on top of the bundle manifest's block (later wins). */
  preprocessing?: unknown[];
  /** Trials decoded together at most when a backlog builds up (default 8). */
  maxBatch?: number;
  /**
   * Decode every trial, however long the backlog (replays and demos: a fast replay must not lose a decode). Live
   * sessions shed the oldest waiting trial past 256, with an alarm, so captions stay near the scanner.
   */
  lossless?: boolean | ((run: RunInfo) => boolean);
  log?: (level: 'info' | 'warn' | 'error', message: string) => void;
}

export interface DecodedTrial {
  session: string;
  subject: string;
  run: string;
  trial: number;
  stimulusId: string;
  onset: number;
  references?: string[];
  flags: string[];
  caption?: string;
  confidence?: number;
  tokenLogprobs?: number[];
  /** TrialResponse ready → caption emitted, ms. */
  latencyMs?: number;
  baseline?: string;
  error?: string;
  /** 1 for the stimulus's first showing in this session, 2 for the second… */
  presentation: number;
  /** From the second presentation on: the caption decoded from the mean of the presentations so far. */
  mean?: MeanCaption;
  /** The Q-Former's caption embedding (text space, normalised): the image retrieval baseline's query. */
  captionEmbedding?: Float32Array;
}

export interface MeanCaption {
  /** How many presentations the mean averages. */
  of: number;
  caption: string;
  confidence: number;
  baseline?: string;
}

/**
 * A trial's reconstruction, emitted after its caption (keyed like it by subject, session, run, trial): the image and
 * its generation time, or why there is none (the caption stands either way).
 */
export interface ReconstructedTrial {
  session: string;
  subject: string;
  run: string;
  trial: number;
  stimulusId: string;
  image?: Uint8Array;
  imageFormat?: 'png' | 'webp';
  /** Generator + encoding, ms. */
  ms?: number;
  /** The generator's image unencoded (planar float [3, H, W] in 0..1): what the demo summary's image metrics score. */
  pixels?: PlanarImage;
  error?: string;
}

/** A trial's response exactly as handed to the decoder, with what `serve --record` writes beside it. */
export interface DecoderInput {
  session: string;
  response: TrialResponse;
  presentation: number;
  /** Mean of this stimulus's responses so far in the session (second presentation on). */
  mean?: Float32Array;
  meanOf?: number;
  /** sha256 of the ROI mask the response was taken with ('' when unknown). */
  maskSha256: string;
}

/** Something the operator should see (sinks show it; warnings and errors are also logged). */
export interface PipelineAlert {
  level: 'info' | 'warn' | 'error';
  code: string;
  message: string;
  at: number;
  run?: string;
  trial?: number;
}

/** Where the sender link stands, as far as the pipeline sees it. */
export interface PipelineStatus {
  bridge: 'connected' | 'disconnected' | 'streaming' | 'ended';
  detail?: string;
  at: number;
}

/** A run the pipeline decodes, once its preprocessor is set up. */
export interface RunStart {
  info: RunInfo;
  startedAt: number;
  fdThresholdMm: number;
}

/** What the decode queue carries: the trial plus its repeat mean. */
interface QueuedTrial extends TrialResponse {
  session: string;
  presentation: number;
  mean?: Float32Array;
  meanOf?: number;
  /** A replay's trial: its reconstruction is never skipped either. */
  lossless: boolean;
}

export interface PipelineStats {
  volumesReceived: number;
  volumesProcessed: number;
  volumesLost: number;
  /** received → z-scored, ms, per processed volume. */
  volumeMs: number[];
  /** response ready → caption, ms, per decoded trial. */
  decodeMs: number[];
  trialsSeen: number;
  trialsDecoded: number;
  maxBacklog: number;
  runsEnded: string[];
}

export interface Pipeline {
  /** The model decoding: bundle name, onnxruntime provider, subjects it has read-outs for. */
  readonly model: { name: string; provider: string; subjects: string[] };
  /** Captions, as soon as they are decoded (never waiting for the image). */
  readonly decoded$: Observable<DecodedTrial>;
  /** Each decoded trial's reconstruction, after its caption (when the bundle has a generator). */
  readonly reconstructions$: Observable<ReconstructedTrial>;
  /** Every trial's response as handed to the decoder (the recorder and evaluations subscribe). */
  readonly responses$: Observable<DecoderInput>;
  readonly alerts$: Observable<PipelineAlert>;
  readonly status$: Observable<PipelineStatus>;
  readonly runStarts$: Observable<RunStart>;
  /** Raw volumes as ingest hands them over (counted as received). */
  readonly received$: Observable<Volume>;
  /** Volumes the preprocessor processed ('ok' only), with their stage times. */
  readonly processed$: Observable<ProcessedVolume>;
  /** Stimulus events as ingest hands them over. */
  readonly events$: Observable<StimulusEvent>;
  /** A sink's failure, shown and logged like the pipeline's own alerts. */
  report(a: Omit<PipelineAlert, 'at'> & { at?: number }): void;
  stats(): PipelineStats;
  /** Resolves once every listed run has ended and every trial of it is decoded and reconstructed. */
  whenDone(runs: string[]): Promise<void>;
  close(): Promise<void>;
}

interface RunState {
  info: RunInfo;
  pre: Preprocessor;
  subs: Subscription[];
}

/** Waiting trials a lossless pipeline keeps at most (~400 MB at 5000 voxels): a bound, never reached by a replay. */
const LOSSLESS_CAPACITY = 20_000;

/** Reconstructions waiting at most for a live run: past it the oldest is skipped (its caption stands). */
const RECON_CAPACITY = 32;

/** A trial of a run: (subject, session, run, trial). */
function trialKey(t: { subject: string; run: string; trial: number; event: { session?: string } }): string {
  return `${runKey({ subject: t.subject, session: t.event.session ?? '', run: t.run })}/${t.trial}`;
}

export function startPipeline(hub: IngestHub, opts: PipelineOptions): Pipeline {
  const { decoder } = opts;
  const manifest = decoder.bundle.manifest;
  const log = opts.log ?? ((level, m) => process.stderr.write(`[${level}] ${m}\n`));
  const decoded = new Subject<DecodedTrial>();
  const reconstructions = new Subject<ReconstructedTrial>();
  const alerts = new Subject<PipelineAlert>();
  const status = new Subject<PipelineStatus>();
  const runStarts = new Subject<RunStart>();
  const received = new Subject<Volume>();
  const processed = new Subject<ProcessedVolume>();
  const events = new Subject<StimulusEvent>();
  /** Per run, keyed by (subject, session, run): run labels repeat across sessions and subjects. */
  const runs = new Map<string, RunState>();
  const masks = new Map<string, LoadedMask>();
  const responses = new Subject<DecoderInput>();
  const repeats = new RepeatMeans();
  const stats: PipelineStats = {
    volumesReceived: 0,
    volumesProcessed: 0,
    volumesLost: 0,
    volumeMs: [],
    decodeMs: [],
    trialsSeen: 0,
    trialsDecoded: 0,
    maxBacklog: 0,
    runsEnded: [],
  };
  const pendingTrials = new Set<string>();
  const doneWaiters: (() => void)[] = [];
  const subs: Subscription[] = [];

  const alert = (a: Omit<PipelineAlert, 'at'> & { at?: number }): void => {
    const full: PipelineAlert = { at: Date.now(), ...a };
    if (a.level !== 'info') log(a.level, a.message);
    alerts.next(full);
  };

  /**
   * Every long-lived subscription goes through here: an exception while handling one item is reported and skips that
   * item, and a stream that errors is reported, instead of either ending the session. (Sinks guard their own
   * subscriptions and report through `report`: RxJS does not hand a subscriber's exception back to `next`.)
   */
  function guard<T>(what: string, next: (v: T) => void): Partial<Observer<T>> {
    return {
      next: (v) => {
        try {
          next(v);
        } catch (e) {
          alert({
            level: 'error',
            code: 'sink-failed',
            message: `handling ${what} failed on one item, which was skipped: ${(e as Error)?.message ?? String(e)}`,
          });
        }
      },
      error: (e: unknown) =>
        alert({
          level: 'error',
          code: 'stream-failed',
          message: `the ${what} stream stopped with an error: ${(e as Error)?.message ?? String(e)}`,
        }),
    };
  }

  function maskFor(subject: string): LoadedMask {
    const cached = masks.get(subject);
    if (cached) return cached;
    const entry = manifest.subjects[subject];
    if (!entry)
      throw new Error(
        `the model bundle has no subject "${subject}" (it has ${decoder.subjects.join(', ')}); load a bundle trained for this subject`,
      );
    const m = loadMask(decoder.bundle.path(entry.mask));
    masks.set(subject, m);
    return m;
  }

  // ---- decode queue (off the per-volume path) ----
  // A repeated stimulus's mean response rides in the same batch as its single trial: one LM pass decodes both.
  const decodeAll = async (qs: TrialResponse[]): Promise<DecodedTrial[]> => {
    const ts = qs as QueuedTrial[];
    const inputs: TrialResponse[] = [];
    for (const t of ts) {
      inputs.push(t);
      if (t.mean) inputs.push({ ...t, vector: t.mean, flags: [...t.flags, `mean-of-${t.meanOf}`] });
    }
    // The image is generated after the caption is emitted (reconstructLater), never inside the decode.
    const cs = await decoder.decodeBatch(inputs, { ...opts.decode, reconstruct: false });
    const baselineOf = async (subject: string, v: Float32Array) =>
      opts.baseline?.has(subject) ? (await opts.baseline.predict(subject, v)).caption : undefined;
    const out: DecodedTrial[] = [];
    let k = 0;
    for (const t of ts) {
      const c = cs[k++];
      const d: DecodedTrial = {
        session: t.session,
        subject: t.subject,
        run: t.run,
        trial: t.trial,
        stimulusId: t.stimulusId,
        onset: t.event.onset,
        references: t.event.references,
        flags: c.flags,
        caption: c.text,
        confidence: c.confidence,
        tokenLogprobs: c.tokenLogprobs,
        latencyMs: c.latencyMs.responseToCaption,
        baseline: await baselineOf(t.subject, t.vector),
        presentation: t.presentation,
        captionEmbedding: c.captionEmbedding,
      };
      captionsOf.set(d, c);
      if (t.mean) {
        const m = cs[k++];
        d.mean = {
          of: t.meanOf ?? t.presentation,
          caption: m.text,
          confidence: m.confidence,
          baseline: await baselineOf(t.subject, t.mean),
        };
      }
      out.push(d);
    }
    return out;
  };
  // A backlog (a burst of trials, a fast replay) is decoded in batches: one LM pass serves several trials.
  // ---- reconstructions (off the caption path) ----
  // One at a time, each started only while no caption is being decoded: the generator shares the CPU with the LM, and
  // captions come first. A live run's waiting list is bounded (the oldest is skipped with a notice); replays keep all.
  const reconstructing = opts.decode?.reconstruct !== false && decoder.hasGenerator;
  const captionsOf = new WeakMap<DecodedTrial, DecodedCaption>();
  const reconWaiting: { d: DecodedTrial; c: DecodedCaption; lossless: boolean }[] = [];
  let reconBusy = false;
  let reconWaiters: (() => void)[] = [];
  const reconIdle = (): Promise<void> =>
    !reconBusy && reconWaiting.length === 0 ? Promise.resolve() : new Promise((r) => reconWaiters.push(r));
  const reconKey = (
    d: DecodedTrial,
  ): Pick<ReconstructedTrial, 'session' | 'subject' | 'run' | 'trial' | 'stimulusId'> => ({
    session: d.session,
    subject: d.subject,
    run: d.run,
    trial: d.trial,
    stimulusId: d.stimulusId,
  });
  function reconstructLater(d: DecodedTrial, c: DecodedCaption, lossless: boolean): void {
    const live = reconWaiting.filter((w) => !w.lossless);
    if (!lossless && live.length >= RECON_CAPACITY) {
      const skipped = live[0];
      reconWaiting.splice(reconWaiting.indexOf(skipped), 1);
      const message = `the reconstruction of trial ${skipped.d.trial} of ${skipped.d.run} was skipped: the image generator is behind (${RECON_CAPACITY} waiting); its caption stands.`;
      alert({ level: 'warn', code: 'reconstruction-skipped', message, run: skipped.d.run, trial: skipped.d.trial });
      reconstructions.next({ ...reconKey(skipped.d), error: 'skipped: the image generator is behind' });
    }
    reconWaiting.push({ d, c, lossless });
    void pumpReconstructions();
  }
  async function pumpReconstructions(): Promise<void> {
    if (reconBusy) return;
    reconBusy = true;
    while (reconWaiting.length) {
      await queue.idle();
      const { d, c } = reconWaiting.shift()!;
      try {
        const r = await decoder.reconstructEncoded(c, { imageFormat: 'webp', imageWidth: 256, ...opts.decode });
        reconstructions.next({
          ...reconKey(d),
          image: r.image,
          imageFormat: r.imageFormat,
          ms: r.ms,
          pixels: r.pixels,
        });
      } catch (e) {
        const error = (e as Error)?.message ?? String(e);
        alert({
          level: 'warn',
          code: 'reconstruction-failed',
          message: `the reconstruction of trial ${d.trial} of ${d.run} failed (${error}); its caption stands.`,
          run: d.run,
          trial: d.trial,
        });
        reconstructions.next({ ...reconKey(d), error });
      }
    }
    reconBusy = false;
    const w = reconWaiters;
    reconWaiters = [];
    for (const f of w) f();
    checkDone();
  }

  const queue = new DecodeQueue<DecodedTrial>(async (t) => (await decodeAll([t]))[0], {
    batchWork: decodeAll,
    maxBatch: opts.maxBatch ?? 8,
    losslessCapacity: LOSSLESS_CAPACITY,
  });
  const losslessRun = (info: RunInfo): boolean =>
    typeof opts.lossless === 'function' ? opts.lossless(info) : opts.lossless === true;
  subs.push(
    queue.alarms$.subscribe(
      guard('decode alarms', (a) =>
        alert({ level: a.level, code: a.code, message: a.message, run: a.run, trial: a.trial }),
      ),
    ),
  );
  subs.push(
    queue.results$.subscribe(
      guard('decode results', (r) => {
        const key = trialKey(r.trial);
        const q = r.trial as QueuedTrial;
        const d: DecodedTrial = r.result ?? {
          session: q.session,
          subject: q.subject,
          run: q.run,
          trial: q.trial,
          presentation: q.presentation,
          stimulusId: q.stimulusId,
          onset: q.event.onset,
          references: q.event.references,
          flags: q.flags,
          error: r.error,
        };
        stats.maxBacklog = queue.maxBacklog;
        if (!d.error) {
          stats.trialsDecoded++;
          stats.decodeMs.push(d.latencyMs!);
        }
        decoded.next(d);
        const c = r.result ? captionsOf.get(r.result) : undefined;
        if (reconstructing && c) reconstructLater(d, c, q.lossless);
        pendingTrials.delete(key);
        checkDone();
      }),
    ),
  );

  // ---- per-run preprocessing ----
  function startRun(info: RunInfo): void {
    const key = runKey(info);
    if (runs.has(key)) return; // a resumed run keeps its preprocessor
    let pre: Preprocessor;
    try {
      pre = preprocessorForRun(manifest, maskFor(info.subject), info, opts.preprocessing);
    } catch (e) {
      if (!manifest.subjects[info.subject]) {
        // a new person: the run is still recorded (serve --record) and becomes calibration data
        const message = `sub-${info.subject} is not calibrated yet: record calibration runs, then run \`mindsemantix calibrate\``;
        alert({
          level: 'warn',
          code: 'not-calibrated',
          message: `${message} (run ${info.run} is not decoded${opts.recording ? '; it is recorded' : ''}).`,
          run: info.run,
        });
        status.next({ bridge: 'streaming', detail: `${info.run}: ${message}`, at: Date.now() });
        return;
      }
      alert({
        level: 'error',
        code: 'run-rejected',
        message: `run ${info.run} of sub-${info.subject} cannot be decoded: ${(e as Error).message}`,
        run: info.run,
      });
      return;
    }
    const ofRun = (x: { run: string; session?: string; subject?: string }) =>
      x.run === info.run && x.session === info.session && x.subject === info.subject;
    const byRun = <T extends { run: string; session?: string; subject?: string }>(o: Observable<T>): Observable<T> =>
      o.pipe(filter((x: T) => ofRun(x)));
    const ends$ = hub.runEnds$.pipe(filter(ofRun));
    const out = pre.attach(byRun(hub.volumes$), byRun(hub.events$), ends$);
    const st: RunState = { info, pre, subs: [] };
    const lossless = losslessRun(info);
    st.subs.push(out.volumes$.subscribe(guard('processed volumes', (p) => onProcessed(p))));
    st.subs.push(
      out.trials$.subscribe(
        guard('trial responses', (t) => {
          stats.trialsSeen++;
          pendingTrials.add(trialKey(t));
          const p = repeats.add(info.session, t);
          responses.next({
            session: info.session,
            response: t,
            presentation: p.presentation,
            mean: p.mean,
            meanOf: p.meanOf,
            maskSha256: masks.get(t.subject)?.sha256 ?? '',
          });
          const q: QueuedTrial = {
            ...t,
            session: info.session,
            presentation: p.presentation,
            mean: p.mean,
            meanOf: p.meanOf,
            lossless,
          };
          queue.push(q, { lossless });
        }),
      ),
    );
    st.subs.push(
      out.alarms$.subscribe(
        guard('preprocessing alarms', (a) => alert({ level: 'warn', code: a.kind, message: a.message, run: a.run })),
      ),
    );
    st.subs.push(out.connect());
    runs.set(key, st);
    runStarts.next({ info, startedAt: Date.now(), fdThresholdMm: pre.config.fdThresholdMm });
    status.next({ bridge: 'streaming', detail: `${info.run}`, at: Date.now() });
    log(
      'info',
      `pipeline: run ${info.run} of sub-${info.subject} (${info.dims.join('×')}, TR ${info.tr} s, ${pre.roiVoxels} ROI voxels)`,
    );
  }

  function onProcessed(p: ProcessedVolume): void {
    if (p.status !== 'ok') return;
    stats.volumesProcessed++;
    const t = p.times;
    const r = t.received ?? 0;
    const total = (t.zscored ?? r) - r;
    stats.volumeMs.push(total);
    processed.next(p);
  }

  // ---- hub subscriptions ----
  subs.push(hub.runs$.subscribe(guard('run starts', (info) => startRun(info))));
  subs.push(
    hub.volumes$.subscribe(
      guard('volumes', (v) => {
        stats.volumesReceived++;
        received.next(v);
      }),
    ),
  );
  subs.push(hub.events$.subscribe(guard('events', (e) => events.next(e))));
  subs.push(
    hub.runEnds$.subscribe(
      guard('run ends', (e) => {
        stats.volumesLost += e.missingCount;
        stats.runsEnded.push(e.run);
        if (e.missingCount)
          alert({
            level: 'warn',
            code: 'volumes-missing',
            message: `run ${e.run} ended with ${e.missingCount} volume(s) never received`,
            run: e.run,
          });
        status.next({
          bridge: 'ended',
          detail: `${e.run} complete (${e.accepted}/${e.expected} volumes)`,
          at: Date.now(),
        });
        // Trials flushed at run end are pushed synchronously by the preprocessor; check after they are queued.
        setImmediate(checkDone);
      }),
    ),
  );
  subs.push(
    hub.status$.subscribe(
      guard('ingest notices', (n) => {
        if (n.kind === 'connection') {
          const closed = /disconnect|closed|lost/i.test(n.message);
          status.next({ bridge: closed ? 'disconnected' : 'connected', detail: n.message, at: n.at });
        }
        if (n.level !== 'info' || n.kind === 'gap' || n.kind === 'auth')
          alert({ level: n.level, code: `ingest-${n.kind}`, message: n.message, run: n.run });
      }),
    ),
  );

  let watched: string[] = [];
  function checkDone(): void {
    if (!doneWaiters.length) return;
    const ended = watched.every((r) => stats.runsEnded.includes(r));
    if (ended && pendingTrials.size === 0 && queue.backlog === 0) {
      void queue
        .idle()
        .then(reconIdle)
        .then(() => {
          if (pendingTrials.size || reconBusy || reconWaiting.length) return;
          const w = doneWaiters.splice(0);
          for (const f of w) f();
        });
    }
  }

  return {
    model: { name: manifest.name, provider: decoder.provider, subjects: decoder.subjects },
    decoded$: decoded.asObservable(),
    reconstructions$: reconstructions.asObservable(),
    responses$: responses.asObservable(),
    alerts$: alerts.asObservable(),
    status$: status.asObservable(),
    runStarts$: runStarts.asObservable(),
    received$: received.asObservable(),
    processed$: processed.asObservable(),
    events$: events.asObservable(),
    report: alert,
    stats: () => ({
      ...stats,
      volumeMs: [...stats.volumeMs],
      decodeMs: [...stats.decodeMs],
      runsEnded: [...stats.runsEnded],
    }),
    whenDone(runNames) {
      watched = runNames;
      return new Promise<void>((resolve) => {
        doneWaiters.push(resolve);
        checkDone();
      });
    },
    async close() {
      for (const s of subs) s.unsubscribe();
      for (const r of runs.values()) for (const s of r.subs) s.unsubscribe();
      await queue.idle();
      await reconIdle();
      queue.close();
      for (const x of [responses, decoded, reconstructions, status, runStarts, received, processed, events])
        x.complete();
      alerts.complete();
    },
  };
}
