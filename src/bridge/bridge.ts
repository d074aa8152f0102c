// The scanner bridge: folder watcher → volume ordering and run assignment → protocol sender.
import { existsSync } from 'node:fs';
import { basename } from 'node:path';
import type { RunInfo } from '../core/types.js';
import { encodeNifti1Volume, type ScannerFormat } from '../scanner/index.js';
import { ProtocolSender } from '../sender/sender.js';
import { FolderWatcher, type WatchedVolume } from './watch.js';
import { SeriesFoldersWatcher } from './seriesFolders.js';
import type { SourceHandlers, VolumeSource } from './source.js';
import { EventsTail } from './eventsTail.js';
import { StimulusFiles } from '../bids/stimulusFile.js';

export interface BridgeOptions {
  /** The watched export folder (unless `source` is given). */
  dir?: string;
  /** 'folder' (default): files in `dir`; 'series-folders': one numbered subfolder per series (Philips XTC). */
  layout?: 'folder' | 'series-folders';
  /** Where volumes come from instead of a watched folder (the MRD and AFNI listeners). */
  source?: (h: SourceHandlers) => VolumeSource;
  /** Only these series (DICOM SeriesNumber, PAR acquisition number, XTC folder number) are streamed. */
  series?: number[];
  /** Give up on a file that stays incomplete this long (ms), with a warning. */
  giveUpMs?: number;
  url?: string;
  sender?: ProtocolSender;
  token?: string;
  format?: ScannerFormat;
  /** Events TSV to follow; default: the first *events*.tsv appearing in the watched folder. */
  eventsFile?: string;
  subject?: string;
  session?: string;
  task?: string;
  /** Repetition time when the files do not say. */
  tr?: number;
  pollMs?: number;
  retryMs?: number;
  fsEvents?: boolean;
  log?: (level: 'debug' | 'info' | 'warn' | 'error', message: string) => void;
}

interface BridgeRun {
  info: RunInfo;
  key: string;
  /** Volume number that maps to index 0. */
  base: number | undefined;
  counter: number;
  t0?: number;
  maxIndex: number;
  events: number;
  /** run-end was queued (a later run began, or stop()): the sender forgets the run once the server acks the end. */
  ended: boolean;
}

export class ScannerBridge {
  readonly sender: ProtocolSender;
  private readonly own: boolean;
  private watcher: VolumeSource;
  private skippedSeries = new Set<string>();
  private runs = new Map<string, BridgeRun>();
  private current: BridgeRun | undefined;
  private tail: EventsTail | undefined;
  private tailTimer: NodeJS.Timeout | undefined;
  private runCounter = 0;
  /** Event and run-end sends, in order: an event may wait for its stimulus image to be shrunk, and a run-end follows
   * the run's events. Volumes do not wait in it. */
  private outbox: Promise<void> = Promise.resolve();
  private readonly stimuli: StimulusFiles;
  readonly stats = { volumes: 0, invalid: 0, events: 0 };

  constructor(private readonly o: BridgeOptions) {
    if (!o.sender && !o.url) throw new Error('the bridge needs a server URL or a sender.');
    if (!o.dir && !o.source) throw new Error('the bridge needs a folder to watch or a volume source.');
    this.own = !o.sender;
    this.sender = o.sender ?? new ProtocolSender({ url: o.url!, token: o.token, client: 'bridge', log: o.log });
    if (o.eventsFile) this.tail = new EventsTail(o.eventsFile);
    this.stimuli = new StimulusFiles(o.log);
    const handlers: SourceHandlers = {
      onVolume: (v) => this.onVolume(v),
      onInvalid: (p, reason) => {
        this.stats.invalid++;
        o.log?.('warn', `${p} is not a readable scanner file and was skipped: ${reason}`);
      },
      onGiveUp: (p, reason) => {
        this.stats.invalid++;
        o.log?.(
          'warn',
          `${p} stayed incomplete for ${((o.giveUpMs ?? DEFAULT_GIVE_UP_MS) / 1000).toFixed(0)} s and was given up (it is read again if it changes): ${reason}`,
        );
      },
      onRunEnd: (key) => {
        const r = this.runs.get(key);
        if (r) this.endRun(r);
      },
      onFile: (p) => {
        if (!this.tail && /events.*\.tsv$/i.test(basename(p))) {
          this.tail = new EventsTail(p);
          o.log?.('info', `following stimulus events in ${p}`);
        }
      },
    };
    const watch = {
      format: o.format,
      pollMs: o.pollMs,
      retryMs: o.retryMs,
      fsEvents: o.fsEvents,
      giveUpMs: o.giveUpMs ?? DEFAULT_GIVE_UP_MS,
      ...handlers,
    };
    if (o.source) this.watcher = o.source(handlers);
    else if (o.layout === 'series-folders') this.watcher = new SeriesFoldersWatcher({ ...watch, dir: o.dir! });
    else this.watcher = new FolderWatcher({ ...watch, dir: o.dir! });
  }

  start(): this {
    if (this.o.dir && !existsSync(this.o.dir)) this.o.log?.('warn', `${this.o.dir} does not exist yet; waiting for it`);
    this.sender.start();
    this.watcher.start();
    this.tailTimer = setInterval(() => this.pollEvents(), this.o.pollMs ?? 50);
    return this;
  }

  /** Stops at once, without ending runs or waiting for acks (after a permanent refusal). */
  async abort(): Promise<void> {
    await this.watcher.stop();
    if (this.tailTimer) clearInterval(this.tailTimer);
    if (this.own) await this.sender.close();
  }

  /** Stops watching, ends the open runs (their length = the highest volume seen + 1), waits for every ack. */
  async stop(): Promise<void> {
    await this.watcher.stop();
    if (this.tailTimer) clearInterval(this.tailTimer);
    this.pollEvents();
    for (const r of this.runs.values()) this.endRun(r);
    await this.outbox;
    try {
      await this.sender.flush();
    } finally {
      if (this.own) await this.sender.close();
    }
  }

  /** Whether a volume's series is streamed: the chosen ones with --series, else all but those that say they are not EPI. */
  private wanted(w: WatchedVolume): boolean {
    const v = w.volume;
    const chosen = this.o.series
      ? v.seriesNumber !== undefined && this.o.series.includes(v.seriesNumber)
      : v.epi !== false;
    if (!chosen) {
      const key = String(v.seriesNumber ?? w.path);
      if (!this.skippedSeries.has(key)) {
        this.skippedSeries.add(key);
        const why = this.o.series
          ? `not among --series ${this.o.series.join(',')}`
          : 'not an EPI series (a localizer or other structural scan)';
        this.o.log?.(
          'info',
          `series ${v.seriesNumber ?? '(unnumbered)'} (${w.path}) is ${why}; its volumes are not streamed`,
        );
      }
    }
    return chosen;
  }

  private runFor(w: WatchedVolume): BridgeRun {
    const v = w.volume;
    // A run is the source's own key (an MRD measurement), a DICOM series, one growing 4-D NIfTI, or (per-volume NIfTI
    // files) the whole folder.
    const key =
      w.runKey ?? (v.seriesNumber !== undefined ? `series-${v.seriesNumber}` : w.growing ? `file-${w.path}` : 'folder');
    let r = this.runs.get(key);
    if (r) return r;
    this.runCounter++;
    const tr = v.tr ?? this.o.tr;
    if (!tr) this.o.log?.('warn', `${w.path} carries no repetition time and --tr was not given; assuming 2 s`);
    const num = v.seriesNumber ?? this.runCounter;
    const info: RunInfo = {
      session: this.o.session ?? '01',
      subject: this.o.subject ?? '01',
      task: this.o.task ?? 'vision',
      run: `task-${this.o.task ?? 'vision'}_run-${String(num).padStart(2, '0')}`,
      tr: tr ?? 2,
      dims: [...v.dims],
      voxelSize: [v.voxelSize[0], v.voxelSize[1], v.voxelSize[2]],
      affine: [...v.affine],
    };
    // Numbering starts at 0 or 1 (Siemens instance numbers); files already in the folder at start are sent too.
    r = { info, key, base: undefined, counter: 0, maxIndex: -1, events: 0, ended: false };
    if (this.current && this.current.key !== key) this.endRun(this.current);
    this.runs.set(key, r);
    this.current = r;
    this.sender.startRun(info);
    this.o.log?.('info', `run ${info.run}: ${info.dims.join('×')} voxels, TR ${info.tr} s (from ${w.path})`);
    return r;
  }

  /** Ends a run once: an ended run may already be acknowledged and forgotten by the sender. */
  private endRun(r: BridgeRun): void {
    if (r.ended) return;
    r.ended = true;
    const volumes = r.maxIndex + 1;
    this.enqueue(() => this.sender.endRun(r.info.session, r.info.run, volumes, r.events));
  }

  private enqueue(job: () => void | Promise<void>): void {
    this.outbox = this.outbox.then(job).catch((e: unknown) => this.o.log?.('error', `bridge: ${(e as Error).message}`));
  }

  private onVolume(w: WatchedVolume): void {
    if (!this.wanted(w)) return;
    const r = this.runFor(w);
    const v = w.volume;
    if (v.dims.some((d, i) => d !== r.info.dims[i])) {
      this.stats.invalid++;
      this.o.log?.(
        'warn',
        `${w.path}: a ${v.dims.join('×')} volume arrived in ${r.info.run}, which is ${r.info.dims.join('×')}; skipped (start a new series or run for a new geometry).`,
      );
      return;
    }
    if (r.ended) {
      this.o.log?.(
        'warn',
        `${w.path} belongs to ${r.info.run}, which already ended when a later series began; skipped (the server no longer accepts volumes for it).`,
      );
      return;
    }
    let index: number;
    if (w.growing) index = w.positionInFile;
    else if (v.volumeIndex !== undefined) {
      r.base ??= v.volumeIndex === 0 ? 0 : 1;
      index = v.volumeIndex - r.base;
    } else index = r.counter;
    r.counter = Math.max(r.counter, index + 1);
    if (index < 0) {
      this.o.log?.('warn', `${w.path}: volume number ${v.volumeIndex} comes before the run's first; skipped`);
      return;
    }
    if (v.acquisitionTime !== undefined && index === 0) r.t0 = v.acquisitionTime;
    const acquisitionTime =
      v.acquisitionTime !== undefined && r.t0 !== undefined ? v.acquisitionTime - r.t0 : index * r.info.tr;
    r.maxIndex = Math.max(r.maxIndex, index);
    const nifti = encodeNifti1Volume({ dims: v.dims, affine: v.affine, tr: r.info.tr, data: int16IfExact(v.data) });
    this.sender.sendVolume({
      session: r.info.session,
      run: r.info.run,
      index,
      tr: r.info.tr,
      acquisitionTime,
      nifti,
      seenAt: w.seenAt,
      readAt: w.readAt,
    });
    this.stats.volumes++;
  }

  private pollEvents(): void {
    if (!this.tail || !this.current) return;
    const r = this.current;
    const tsv = this.tail.path;
    for (const e of this.tail.poll(r.info.run)) {
      // A stim_file next to the TSV travels with its event, shrunk to the inline limit when it is larger; the outbox
      // keeps events in trial order while an image is being shrunk.
      const image = this.stimuli.load(e.image, tsv);
      this.enqueue(async () => {
        const imageData = await image;
        this.sender.sendEvent(r.info.session, imageData ? { ...e, imageData } : e);
      });
      r.events = Math.max(r.events, e.trial + 1);
      this.stats.events++;
    }
  }
}

/** A file still incomplete after this long is given up with a warning (a scanner writes a volume in well under a second). */
export const DEFAULT_GIVE_UP_MS = 10_000;

/** Scanner data is int16 at heart; send it as int16 when that is exact (half the bytes), else float32. */
function int16IfExact(a: Float32Array): Int16Array | Float32Array {
  const out = new Int16Array(a.length);
  for (let i = 0; i < a.length; i++) {
    const v = a[i];
    if (v !== Math.round(v) || v < -32768 || v > 32767) return a;
    out[i] = v;
  }
  return out;
}
