// Per-run ordering, deduplication, gap reporting and recording; pushes accepted data into the hub.
// Every run has one promise chain, so volumes, events and run-end of a run are handled strictly in arrival order
// even while recording awaits the disk.
import { nowMs } from '../core/clock.js';
import { runKey, type IndexRange, type RunInfo, type StimulusEvent, type Volume } from '../core/types.js';
import type {
  AckMessage,
  ReceivedEvent,
  RunEndMessage,
  RunStartMessage,
  ServerMessage,
  VolumeFrameHeader,
} from '../protocol/messages.js';
import { ProtocolError } from '../protocol/validate.js';
import type { IngestHubSubjects, IngestNotice } from './hub.js';
import type { Logger } from './log.js';
import type { ServerLimits } from './limits.js';
import { NoticeThrottle } from './noticeThrottle.js';
import { RecordingError, RunRecording, type RecordingFs } from './recording.js';
import type { CheckedVolume } from './volumeDecode.js';

/** Where replies go: the connection that sent the message. */
export interface Peer {
  readonly name: string;
  /** The client name its hello gave ('bridge', 'replay', …): a replay's runs are decoded without shedding load. */
  readonly client?: string;
  send(msg: ServerMessage): void;
  isOpen(): boolean;
  /** The runs this connection started: "session/run" (what volume frames name) → run key (subject/session/run). */
  readonly runs: Map<string, string>;
}

/** How often a failed recording commit is tried before the run reports it and waits for the next trigger. */
const RECORD_RETRY_DELAYS_MS = [50, 250];
/** Volumes a run may hold waiting (reordering, or a recording that fails) before further ones are refused. */
const MAX_HELD_EXTRA = 64;

type Buffered =
  | { ok: true; vol: Volume; int16Exact: boolean; from: Peer; emitted: boolean }
  | { ok: false; reason: string };

interface RunState {
  key: string;
  info: RunInfo;
  /** Volumes < next are settled (accepted and recorded, or missing): the ack. */
  next: number;
  /** Volumes < emitNext have gone to the hub (or are refused): the pipeline does not wait for the disk. */
  emitNext: number;
  /** The run-start (and its recording) has been processed. */
  ready: boolean;
  /** Voxel type of the recording, fixed by its first volume. */
  recType?: 'int16' | 'float32';
  eventsNext: number;
  ended: boolean;
  buffer: Map<number, Buffered>;
  gapTimer?: NodeJS.Timeout;
  watchdog?: NodeJS.Timeout;
  /** Indices declared missing, as ranges (a gap costs the same whatever its length). */
  missing: IndexRange[];
  missingCount: number;
  accepted: number;
  /** The recording's last commit failed (reported once until one succeeds). */
  recordFailing?: string;
  rec?: RunRecording;
  chain: Promise<void>;
  owner: Peer;
}

export interface IngestOptions {
  hub: IngestHubSubjects;
  log: Logger;
  recordDir?: string;
  /** How long a later volume waits for a missing earlier one before the gap is declared. */
  reorderWindowMs: number;
  /** At most this many volumes wait for a missing one; one more declares the gap at once. */
  maxReorder: number;
  limits: Pick<ServerLimits, 'maxRunVolumes' | 'maxRunEvents' | 'maxDim' | 'maxVoxels' | 'maxRunsPerConnection'>;
  /** File system for the recording (tests inject failures). */
  recordFs?: RecordingFs;
}

export class Ingest {
  private runs = new Map<string, RunState>();
  private readonly throttle: NoticeThrottle;
  constructor(private readonly o: IngestOptions) {
    this.throttle = new NoticeThrottle({ burst: 20, windowMs: 10_000 }, (key, n, ms) =>
      this.publish({
        kind: key.split('|')[0] as IngestNotice['kind'],
        level: 'warn',
        message: `${n} more ${key.split('|')[1]} notice(s) in the last ${ms / 1000} s were not shown one by one (repeats are aggregated)`,
      }),
    );
  }

  /**
   * A log line and a dashboard notice. Repeats of one kind and code are aggregated beyond a burst per window, so a
   * flood of bad input cannot flood the log or the operator's screen.
   */
  notice(n: Omit<IngestNotice, 'at'>, code: string = n.kind): void {
    if (!this.throttle.pass(`${n.kind}|${code}`)) return;
    this.publish(n);
  }

  private publish(n: Omit<IngestNotice, 'at'>): void {
    const full: IngestNotice = { ...n, at: Date.now() };
    this.o.log(n.level === 'info' ? 'info' : n.level, n.message + (n.peer ? ` (peer ${n.peer})` : ''));
    this.o.hub.emit(this.o.hub.statusS, full, (e) => this.subscriberFailed(e));
  }

  private subscriberFailed(e: unknown): void {
    this.o.log('error', `a hub subscriber threw: ${(e as Error)?.stack ?? String(e)}`);
  }

  private enqueue(r: RunState, work: () => Promise<void>): void {
    r.chain = r.chain.then(work).catch((e: unknown) => {
      if (e instanceof RecordingStalled) return; // reported where it happened
      this.o.log('error', `run ${r.key}: internal error ${(e as Error)?.stack ?? String(e)}`);
      r.owner.send({
        type: 'error',
        code: 'server-error',
        message: `the server failed while handling run ${r.info.run}: ${(e as Error)?.message}`,
        fatal: false,
        session: r.info.session,
        run: r.info.run,
      });
    });
  }

  private ack(r: RunState, to: Peer): void {
    const m: AckMessage = {
      type: 'ack',
      session: r.info.session,
      run: r.info.run,
      next: r.next,
      eventsNext: r.eventsNext,
      ended: r.ended,
    };
    to.send(m);
  }

  private errorTo(
    to: Peer,
    code: ProtocolError['code'],
    message: string,
    extra: { session?: string; run?: string; index?: number } = {},
    level: 'warn' | 'error' = 'warn',
  ): void {
    to.send({ type: 'error', code, message, fatal: false, ...extra });
    this.notice(
      { kind: 'error', level, message: `${code}: ${message}`, session: extra.session, run: extra.run, peer: to.name },
      code,
    );
  }

  /** The run a volume, event or run-end names: one this connection started, else the only one with that label. */
  private runOf(from: Peer, session: string, run: string): RunState | undefined {
    const key = from.runs.get(`${session}/${run}`);
    if (key) return this.runs.get(key);
    let found: RunState | undefined;
    for (const r of this.runs.values()) {
      if (r.info.session !== session || r.info.run !== run) continue;
      if (found) return undefined; // two subjects share the label: only run-start on this connection can tell
      found = r;
    }
    return found;
  }

  runStart(m: RunStartMessage, from: Peer): void {
    const info: RunInfo = {
      session: m.session,
      run: m.run,
      subject: m.subject,
      task: m.task,
      tr: m.tr,
      dims: m.dims,
      voxelSize: m.voxelSize,
      affine: m.affine,
      ...(from.client ? { source: from.client } : {}),
    };
    const key = runKey(info);
    const ids = { session: m.session, run: m.run };
    const { maxDim, maxVoxels, maxRunsPerConnection } = this.o.limits;
    // The dims size every buffer of the run (zero volumes for gaps included): bounded before anything is allocated.
    if (m.dims.some((d) => d > maxDim) || m.dims[0] * m.dims[1] * m.dims[2] > maxVoxels) {
      this.errorTo(
        from,
        'dims-too-large',
        `run ${m.run} refused: dims ${m.dims.join('×')} exceed the server limit (each ≤ ${maxDim}, ≤ ${maxVoxels} voxels); check the scanner export.`,
        ids,
      );
      return;
    }
    const label = `${m.session}/${m.run}`;
    if (from.runs.get(label) !== key && from.runs.size >= maxRunsPerConnection) {
      this.errorTo(
        from,
        'bad-message',
        `run ${m.run} refused: this connection already started ${maxRunsPerConnection} runs; reconnect to start more.`,
        ids,
      );
      return;
    }
    const existing = this.runs.get(key);
    if (existing) {
      const a = existing.info;
      if (a.tr !== info.tr || a.dims.some((d, i) => d !== info.dims[i])) {
        this.errorTo(
          from,
          'run-conflict',
          `run ${m.run} of sub-${m.subject} ses-${m.session} already started with TR ${a.tr} s, dims ${a.dims.join('×')}; a new run needs a new name.`,
          ids,
        );
        return;
      }
      from.runs.set(label, key);
      existing.owner = from;
      this.enqueue(existing, async () => this.ack(existing, from));
      return;
    }
    from.runs.set(label, key);
    const r: RunState = {
      key,
      info,
      next: 0,
      emitNext: 0,
      ready: false,
      eventsNext: 0,
      ended: false,
      buffer: new Map(),
      missing: [],
      missingCount: 0,
      accepted: 0,
      chain: Promise.resolve(),
      owner: from,
    };
    this.runs.set(key, r);
    this.enqueue(r, async () => {
      if (this.o.recordDir) {
        try {
          r.rec = await RunRecording.open(this.o.recordDir, info, this.o.recordFs);
        } catch (e) {
          this.runs.delete(key);
          if (from.runs.get(label) === key) from.runs.delete(label);
          const msg =
            e instanceof RecordingError
              ? e.message
              : `cannot open the recording for run ${m.run}: ${(e as Error).message}`;
          this.errorTo(from, 'run-conflict', msg, { session: m.session, run: m.run }, 'error');
          return;
        }
        r.next = r.emitNext = r.rec.count;
        r.eventsNext = r.rec.eventsCount;
        r.recType = r.rec.type;
      }
      const resumed = r.next > 0 || r.eventsNext > 0;
      this.notice({
        kind: resumed ? 'resume' : 'run',
        level: 'info',
        session: m.session,
        run: m.run,
        peer: from.name,
        message: resumed
          ? `run ${m.run} (sub-${m.subject}, ses-${m.session}) continues from the recording at volume ${r.next}, event ${r.eventsNext}`
          : `run ${m.run} started: sub-${m.subject} ses-${m.session}, TR ${m.tr} s, dims ${m.dims.join('×')}`,
      });
      this.o.hub.emit(this.o.hub.runsS, info, (e) => this.subscriberFailed(e));
      r.ready = true;
      this.emitReady(r);
      this.ack(r, from);
    });
  }

  /** A frame whose header named a run and index. `vol` is the checked volume or why it was refused. */
  volume(h: VolumeFrameHeader, vol: CheckedVolume | ProtocolError, from: Peer, receivedAt: number): void {
    const ids = { session: h.session, run: h.run, index: h.index };
    const r = this.runOf(from, h.session, h.run);
    if (!r) {
      this.errorTo(
        from,
        'unknown-run',
        `volume ${h.index} names run ${h.run} of session ${h.session}, which was not started on this connection; send run-start first.`,
        ids,
      );
      return;
    }
    // Indices size work (gaps up to them are recorded): beyond the per-run limit they are refused, not buffered.
    if (h.index >= this.o.limits.maxRunVolumes) {
      this.errorTo(
        from,
        'bad-message',
        `volume index ${h.index} of run ${h.run} is above the server's limit of ${this.o.limits.maxRunVolumes} volumes per run; split the acquisition into runs.`,
        ids,
      );
      return;
    }
    r.owner = from;
    // Checks and buffering happen on arrival; acceptance (recording, emission) in the run's queue, so a backlog that
    // builds while the disk is busy is committed as one batch.
    if (r.ended) {
      if (h.index < r.next) {
        this.o.hub.counters.duplicatesDropped++;
        this.enqueue(r, async () => this.ack(r, from));
        return;
      }
      this.errorTo(
        from,
        'late-volume',
        `volume ${h.index} arrived after run ${h.run} ended; it was not accepted.`,
        ids,
      );
      return;
    }
    if (h.index < r.next || r.buffer.has(h.index)) {
      this.o.hub.counters.duplicatesDropped++;
      this.errorTo(
        from,
        'duplicate',
        `volume ${h.index} of run ${h.run} was already received; the copy was dropped.`,
        ids,
      );
      this.enqueue(r, async () => this.ack(r, from));
      return;
    }
    if (r.buffer.size >= this.o.maxReorder + MAX_HELD_EXTRA) {
      const why = r.recordFailing ? `its recording is failing (${r.recordFailing})` : 'too many volumes are waiting';
      this.errorTo(
        from,
        'server-error',
        `volume ${h.index} of run ${h.run} was not taken: ${why}; it stays unacknowledged, resend it later.`,
        ids,
        'error',
      );
      return;
    }
    let entry: Buffered;
    if (vol instanceof ProtocolError) {
      this.o.hub.counters.volumesRejected++;
      this.errorTo(from, vol.code, `volume ${h.index} of run ${h.run} refused: ${vol.message}`, ids);
      entry = { ok: false, reason: `${vol.code}: ${vol.message}` };
    } else if (vol.dims.some((d, i) => d !== r.info.dims[i])) {
      this.o.hub.counters.volumesRejected++;
      const msg = `volume ${h.index} of run ${h.run} has dims ${vol.dims.join('×')} but the run started with ${r.info.dims.join('×')}; dims cannot change mid-run, start a new run.`;
      this.errorTo(from, 'dims-changed', msg, ids);
      entry = { ok: false, reason: `dims-changed: ${msg}` };
    } else {
      const v: Volume = {
        run: h.run,
        subject: r.info.subject,
        session: r.info.session,
        index: h.index,
        dims: vol.dims,
        affine: vol.affine,
        tr: h.tr,
        acquisitionTime: h.acquisitionTime,
        data: vol.data,
        times: { fileSeen: h.seenAt, read: h.readAt, sent: h.sentAt, received: receivedAt },
      };
      entry = { ok: true, vol: v, int16Exact: vol.int16Exact, from, emitted: false };
    }
    r.buffer.set(h.index, entry);
    this.emitReady(r);
    this.enqueue(r, async () => {
      try {
        await this.drain(r);
        if (r.buffer.size > this.o.maxReorder)
          await this.declareGapToBuffered(r, `more than ${this.o.maxReorder} later volumes arrived`);
      } finally {
        // Even when the recording failed: the gap timer retries it, and the ack tells the sender where things stand.
        this.armGapTimer(r);
        this.ack(r, from);
      }
    });
  }

  event(m: ReceivedEvent, from: Peer): void {
    const r = this.runOf(from, m.session, m.run);
    if (!r) {
      this.errorTo(
        from,
        'unknown-run',
        `event ${m.trial} names run ${m.run} of session ${m.session}, which was not started on this connection; send run-start first.`,
        { session: m.session, run: m.run },
      );
      return;
    }
    if (m.trial >= this.o.limits.maxRunEvents) {
      this.errorTo(
        from,
        'bad-message',
        `event ${m.trial} of run ${m.run} is above the server's limit of ${this.o.limits.maxRunEvents} events per run; split the session into runs.`,
        { session: m.session, run: m.run },
      );
      return;
    }
    this.enqueue(r, async () => {
      if (m.trial < r.eventsNext) {
        this.errorTo(
          from,
          'duplicate',
          `event ${m.trial} of run ${m.run} was already received; the copy was dropped.`,
          { session: m.session, run: m.run },
        );
        this.ack(r, from);
        return;
      }
      if (m.trial > r.eventsNext) {
        this.notice({
          kind: 'gap',
          level: 'warn',
          session: m.session,
          run: m.run,
          peer: from.name,
          message: `events ${r.eventsNext}..${m.trial - 1} of run ${m.run} never arrived; event ${m.trial} accepted after the gap`,
        });
        from.send({
          type: 'error',
          code: 'bad-message',
          message: `events ${r.eventsNext}..${m.trial - 1} of run ${m.run} are missing; they are reported, not filled.`,
          fatal: false,
          session: m.session,
          run: m.run,
        });
      }
      if (m.imageRefused) {
        this.errorTo(
          from,
          'bad-image',
          `stimulus image of event ${m.trial} (${m.stimulusId}) of run ${m.run} refused: ${m.imageRefused} The event was accepted without it.`,
          { session: m.session, run: m.run },
        );
      }
      const e: StimulusEvent = {
        run: m.run,
        subject: r.info.subject,
        session: r.info.session,
        trial: m.trial,
        onset: m.onset,
        duration: m.duration,
        stimulusId: m.stimulusId,
        references: m.references,
        image: m.image,
        imageData: m.imageData,
        trialType: m.trialType,
      };
      if (r.rec && !(await this.record(r, `event ${m.trial}`, () => r.rec!.appendEvent(e)))) {
        this.ack(r, from); // not advanced: the sender keeps the event and resends it
        return;
      }
      r.eventsNext = m.trial + 1;
      this.o.hub.counters.eventsAccepted++;
      this.o.hub.emit(this.o.hub.eventsS, e, (err) => this.subscriberFailed(err));
      this.ack(r, from);
    });
  }

  runEnd(m: RunEndMessage, from: Peer): void {
    const r = this.runOf(from, m.session, m.run);
    const ids = { session: m.session, run: m.run };
    if (!r) {
      this.errorTo(
        from,
        'unknown-run',
        `run-end names run ${m.run} of session ${m.session}, which was not started on this connection.`,
        ids,
      );
      return;
    }
    // `volumes` sizes the gap declared at the end: bounded like every index.
    if (m.volumes > this.o.limits.maxRunVolumes || m.events > this.o.limits.maxRunEvents) {
      this.errorTo(
        from,
        'bad-message',
        `run-end of run ${m.run} says ${m.volumes} volumes and ${m.events} events, above the server's limits (${this.o.limits.maxRunVolumes} volumes, ${this.o.limits.maxRunEvents} events per run); the run was not ended.`,
        ids,
      );
      return;
    }
    this.enqueue(r, async () => {
      if (r.ended) {
        this.ack(r, from);
        return;
      }
      for (const k of [...r.buffer.keys()]) if (k >= m.volumes) r.buffer.delete(k);
      try {
        while (r.next < m.volumes) {
          if (!r.buffer.has(r.next)) {
            let nextHeld = m.volumes;
            for (const k of r.buffer.keys()) if (k > r.next && k < nextHeld) nextHeld = k;
            await this.declareGap(r, r.next, nextHeld, 'never arrived before run-end');
          }
          await this.drain(r);
        }
      } catch (e) {
        if (!(e instanceof RecordingStalled)) throw e;
        this.ack(r, from); // not ended: the sender resends run-end once its volumes are acknowledged
        return;
      }
      if (m.events > r.eventsNext) {
        this.notice({
          kind: 'gap',
          level: 'warn',
          session: m.session,
          run: m.run,
          message: `events ${r.eventsNext}..${m.events - 1} of run ${m.run} never arrived`,
        });
      }
      r.ended = true;
      this.clearTimers(r);
      await r.rec?.close();
      this.notice({
        kind: 'run',
        level: 'info',
        session: m.session,
        run: m.run,
        peer: from.name,
        message: `run ${m.run} ended: ${r.accepted} volume(s) accepted, ${r.missingCount} missing, ${r.eventsNext} event(s)`,
      });
      const end = {
        subject: r.info.subject,
        session: m.session,
        run: m.run,
        expected: m.volumes,
        accepted: r.accepted,
        missing: r.missing.map(([a, b]): IndexRange => [a, b]),
        missingCount: r.missingCount,
      };
      this.o.hub.emit(this.o.hub.runEndsS, end, (e) => this.subscriberFailed(e));
      this.ack(r, from);
    });
  }

  /**
   * Acceptance: hands every volume that is next in order to the hub at once, without waiting for the disk.
   * Refused volumes are stepped over (drain() records them as gaps).
   */
  private emitReady(r: RunState): void {
    if (!r.ready) return;
    for (let b = r.buffer.get(r.emitNext); b; b = r.buffer.get(r.emitNext)) {
      if (b.ok && !b.emitted) {
        if (this.o.recordDir) {
          r.recType ??= b.int16Exact ? 'int16' : 'float32';
          if (r.recType === 'int16' && !b.int16Exact) {
            const msg = `volume ${r.emitNext} of run ${r.info.run} holds non-integer or out-of-range voxels but the run records int16; the voxel type cannot change mid-run.`;
            this.o.hub.counters.volumesRejected++;
            this.errorTo(b.from, 'bad-volume', msg, { session: r.info.session, run: r.info.run, index: r.emitNext });
            r.buffer.set(r.emitNext, { ok: false, reason: `bad-volume: ${msg}` });
            r.emitNext++;
            continue;
          }
        }
        b.emitted = true;
        b.vol.times.accepted = nowMs();
        r.accepted += 1;
        this.o.hub.counters.volumesAccepted++;
        this.o.hub.emit(this.o.hub.volumesS, b.vol, (e) => this.subscriberFailed(e));
        this.armWatchdog(r);
      }
      r.emitNext++;
    }
  }

  /** Settles every volume that is next in order: records accepted ones as one batch, refused ones as gaps. */
  private async drain(r: RunState): Promise<void> {
    this.emitReady(r);
    for (;;) {
      const batch: Extract<Buffered, { ok: true }>[] = [];
      for (
        let b = r.buffer.get(r.next);
        b && b.ok && b.emitted && batch.length < 32;
        b = r.buffer.get(r.next + batch.length)
      )
        batch.push(b);
      if (batch.length && r.rec) {
        const int16 = r.recType === 'int16';
        const items = batch.map((b) => ({
          data: int16 ? Int16Array.from(b.vol.data) : b.vol.data,
          acquisitionTime: b.vol.acquisitionTime,
        }));
        const what = batch.length === 1 ? `volume ${r.next}` : `volumes ${r.next}..${r.next + batch.length - 1}`;
        if (!(await this.record(r, what, () => r.rec!.appendVolumes(items)))) throw new RecordingStalled();
      }
      for (let i = 0; i < batch.length; i++) r.buffer.delete(r.next++);
      const refused = r.buffer.get(r.next);
      if (refused && !refused.ok) {
        await this.declareGap(r, r.next, r.next + 1, refused.reason);
        continue;
      }
      if (batch.length === 0) return;
    }
  }

  private async declareGap(r: RunState, from: number, to: number, reason: string): Promise<void> {
    const slot = r.buffer.get(from);
    r.buffer.delete(from); // the refused volume's buffer slot
    if (r.rec && !r.recType) {
      // The recording's type is fixed by its first volume, even when that first volume is missing (a gap).
      const firstOk = [...r.buffer.entries()].filter(([, b]) => b.ok).sort((a, b) => a[0] - b[0])[0]?.[1];
      r.recType = firstOk && firstOk.ok && firstOk.int16Exact ? 'int16' : 'float32';
    }
    if (
      r.rec &&
      !(await this.record(r, `missing volumes ${from}..${to - 1}`, () => r.rec!.appendMissing(from, to, r.recType!)))
    ) {
      if (slot) r.buffer.set(from, slot); // the gap is declared again on the next try
      throw new RecordingStalled();
    }
    const last = r.missing[r.missing.length - 1];
    if (last && last[1] === from) last[1] = to;
    else r.missing.push([from, to]);
    r.missingCount += to - from;
    r.next = to;
    r.emitNext = Math.max(r.emitNext, to);
    this.o.hub.counters.gaps++;
    const range = to - from === 1 ? `volume ${from}` : `volumes ${from}..${to - 1}`;
    this.notice({
      kind: 'gap',
      level: 'warn',
      session: r.info.session,
      run: r.info.run,
      from,
      to,
      message: `gap in run ${r.info.run}: ${range} missing (${reason})`,
    });
    r.owner.send({ type: 'gap', session: r.info.session, run: r.info.run, from, to, reason });
    this.emitReady(r);
  }

  /**
   * One recording commit, retried briefly (a transient EIO, a disk freed a moment later). When it still fails the
   * run reports it (log, dashboard alert, an error to the sender) and returns false: nothing was committed, nothing
   * is acknowledged, and the next volume, the gap timer or the sender's resend tries again.
   */
  private async record(r: RunState, what: string, commit: () => Promise<void>): Promise<boolean> {
    let err: unknown;
    for (let attempt = 0; attempt <= RECORD_RETRY_DELAYS_MS.length; attempt++) {
      if (attempt > 0) await new Promise((res) => setTimeout(res, RECORD_RETRY_DELAYS_MS[attempt - 1]));
      try {
        await commit();
        if (r.recordFailing) {
          r.recordFailing = undefined;
          this.notice({
            kind: 'record',
            level: 'info',
            session: r.info.session,
            run: r.info.run,
            message: `recording of run ${r.info.run} (sub-${r.info.subject}) works again from ${what}`,
          });
        }
        return true;
      } catch (e) {
        err = e;
      }
    }
    const why = (err as NodeJS.ErrnoException)?.code
      ? `${(err as NodeJS.ErrnoException).code}: ${(err as Error).message}`
      : String((err as Error)?.message ?? err);
    const first = r.recordFailing === undefined;
    r.recordFailing = why;
    const message = `recording ${what} of run ${r.info.run} (sub-${r.info.subject}) failed (${why}); nothing past the last acknowledged volume was committed, the server retries: free disk space or fix the disk.`;
    if (first)
      this.notice(
        { kind: 'record', level: 'error', session: r.info.session, run: r.info.run, message },
        'record-failed',
      );
    else this.o.log('error', message);
    r.owner.send({
      type: 'error',
      code: 'server-error',
      message,
      fatal: false,
      session: r.info.session,
      run: r.info.run,
    });
    return false;
  }

  private async declareGapToBuffered(r: RunState, reason: string): Promise<void> {
    await this.drain(r); // settle what is in order first: then r.next is the first missing index
    if (r.buffer.size === 0) return;
    const lowest = Math.min(...r.buffer.keys());
    if (lowest > r.next) await this.declareGap(r, r.next, lowest, reason);
    await this.drain(r);
  }

  private armGapTimer(r: RunState): void {
    if (r.buffer.size === 0) {
      if (r.gapTimer) clearTimeout(r.gapTimer);
      r.gapTimer = undefined;
      return;
    }
    if (r.gapTimer) return;
    r.gapTimer = setTimeout(() => {
      r.gapTimer = undefined;
      this.enqueue(r, async () => {
        try {
          await this.declareGapToBuffered(r, `not received within ${this.o.reorderWindowMs} ms of later volumes`);
        } finally {
          this.armGapTimer(r);
          this.ack(r, r.owner);
        }
      });
    }, this.o.reorderWindowMs);
    r.gapTimer.unref();
  }

  /** Alarm when a running run goes silent for 3 TRs (scanner stopped, bridge died, network down). */
  private armWatchdog(r: RunState): void {
    if (r.watchdog) clearTimeout(r.watchdog);
    const ms = Math.max(3 * r.info.tr * 1000, 1000);
    r.watchdog = setTimeout(() => {
      if (!r.ended)
        this.notice({
          kind: 'alarm',
          level: 'warn',
          session: r.info.session,
          run: r.info.run,
          message: `no volume for run ${r.info.run} for ${(ms / 1000).toFixed(1)} s (TR ${r.info.tr} s) after volume ${r.next - 1}`,
        });
    }, ms);
    r.watchdog.unref();
  }

  private clearTimers(r: RunState): void {
    if (r.gapTimer) clearTimeout(r.gapTimer);
    if (r.watchdog) clearTimeout(r.watchdog);
    r.gapTimer = r.watchdog = undefined;
  }

  /** Waits for in-flight work, then closes the recordings. */
  async close(): Promise<void> {
    this.throttle.flush();
    for (const r of this.runs.values()) {
      this.clearTimers(r);
      await r.chain;
      this.clearTimers(r);
      await r.rec?.close();
    }
  }
}

/** A recording commit failed and was reported; the run's work stops here until the next try. */
class RecordingStalled extends Error {
  constructor() {
    super('the recording is failing');
  }
}
