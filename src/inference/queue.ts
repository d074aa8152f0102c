// Decoding runs off the per-volume path: trials enter a bounded FIFO and are decoded one at a time. When trials
// arrive faster than they decode they wait (nothing is dropped) and a lag alarm is raised, cleared once caught up.
// Only when the bound itself is exceeded is the oldest waiting trial given up — loudly, as an alarm and a record.
// Trials pushed as lossless (a replay's) are never given up below a far larger hard bound: the oldest live trial goes.
import { Subject, type Observable } from 'rxjs';
import type { TrialResponse } from '../core/types.js';

export interface DecodeAlarm {
  level: 'info' | 'warn' | 'error';
  code: 'decode-lag' | 'decode-caught-up' | 'decode-queue-overflow' | 'decode-failed';
  message: string;
  at: number;
  run?: string;
  trial?: number;
}

export interface DecodeResult<R> {
  trial: TrialResponse;
  result?: R;
  error?: string;
  /** ms the trial waited in the queue before decoding started. */
  waitedMs: number;
  /** ms the decode itself took. */
  decodeMs: number;
}

export interface DecodeQueueOptions<R = unknown> {
  /** Waiting trials kept at most (default 256). */
  capacity?: number;
  /** Waiting trials kept at most when they are lossless (default 20 000, ~400 MB of 5000-voxel responses). */
  losslessCapacity?: number;
  /** Raise a lag alarm when a trial waits longer than this (ms, default 0: any wait behind another trial). */
  lagAlarmMs?: number;
  /** When several trials wait, decode up to this many together with `batchWork` (default 1: one at a time). */
  maxBatch?: number;
  batchWork?: (trials: TrialResponse[]) => Promise<R[]>;
}

export class DecodeQueue<R> {
  private readonly waiting: { trial: TrialResponse; enqueued: number; lossless: boolean }[] = [];
  private busy = false;
  private lagging = false;
  private idleWaiters: (() => void)[] = [];
  private readonly results = new Subject<DecodeResult<R>>();
  private readonly alarmSubject = new Subject<DecodeAlarm>();
  readonly results$: Observable<DecodeResult<R>> = this.results.asObservable();
  readonly alarms$: Observable<DecodeAlarm> = this.alarmSubject.asObservable();
  /** Largest backlog seen (trials waiting). */
  maxBacklog = 0;

  constructor(
    private readonly work: (t: TrialResponse) => Promise<R>,
    private readonly opts: DecodeQueueOptions<R> = {},
  ) {}

  get backlog(): number {
    return this.waiting.length;
  }

  /** Queues a trial; `lossless` trials (replays, demos) are decoded however long the backlog grows. */
  push(trial: TrialResponse, opts: { lossless?: boolean } = {}): void {
    const lossless = opts.lossless === true;
    // Live trials are bounded by `capacity` among themselves; everything by the far larger lossless bound.
    const live = lossless ? -1 : this.waiting.filter((w) => !w.lossless).length;
    const dropAt =
      live >= (this.opts.capacity ?? 256)
        ? this.waiting.findIndex((w) => !w.lossless)
        : this.waiting.length >= (this.opts.losslessCapacity ?? 20_000)
          ? 0
          : -1;
    if (dropAt >= 0) {
      const dropped = this.waiting.splice(dropAt, 1)[0];
      const msg = `decode queue full (${this.waiting.length + 1} trials waiting): trial ${dropped.trial.trial} of ${dropped.trial.run} was not decoded; the decoder cannot keep up — use a faster --device or fewer max tokens.`;
      this.alarm('error', 'decode-queue-overflow', msg, dropped.trial);
      this.results.next({
        trial: dropped.trial,
        error: 'dropped: decode queue full',
        waitedMs: Date.now() - dropped.enqueued,
        decodeMs: 0,
      });
    }
    this.waiting.push({ trial, enqueued: Date.now(), lossless });
    this.maxBacklog = Math.max(this.maxBacklog, this.waiting.length - (this.busy ? 0 : 1));
    if (this.busy && !this.lagging && (this.opts.lagAlarmMs ?? 0) === 0) this.raiseLag(trial);
    void this.pump();
  }

  /** Resolves when every pushed trial has been decoded. */
  idle(): Promise<void> {
    if (!this.busy && this.waiting.length === 0) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  close(): void {
    this.results.complete();
    this.alarmSubject.complete();
  }

  private raiseLag(trial: TrialResponse): void {
    this.lagging = true;
    this.alarm(
      'warn',
      'decode-lag',
      `decoding is behind: trial ${trial.trial} waits behind ${this.waiting.length} trial(s); captions will arrive late.`,
      trial,
    );
  }

  private alarm(level: DecodeAlarm['level'], code: DecodeAlarm['code'], message: string, t?: TrialResponse): void {
    this.alarmSubject.next({ level, code, message, at: Date.now(), run: t?.run, trial: t?.trial });
  }

  private async pump(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    while (this.waiting.length) {
      const n = this.opts.batchWork ? Math.min(this.opts.maxBatch ?? 1, this.waiting.length) : 1;
      const batch = this.waiting.splice(0, n);
      const start = Date.now();
      const lagMs = this.opts.lagAlarmMs ?? 0;
      if (lagMs > 0 && start - batch[0].enqueued > lagMs && !this.lagging) this.raiseLag(batch[0].trial);
      try {
        const results =
          n > 1 ? await this.opts.batchWork!(batch.map((b) => b.trial)) : [await this.work(batch[0].trial)];
        batch.forEach((b, i) =>
          this.results.next({
            trial: b.trial,
            result: results[i],
            waitedMs: start - b.enqueued,
            decodeMs: Date.now() - start,
          }),
        );
      } catch (e) {
        const error = String((e as Error)?.message ?? e);
        for (const b of batch) {
          this.alarm(
            'error',
            'decode-failed',
            `trial ${b.trial.trial} of ${b.trial.run} could not be decoded: ${error}`,
            b.trial,
          );
          this.results.next({ trial: b.trial, error, waitedMs: start - b.enqueued, decodeMs: Date.now() - start });
        }
      }
      if (this.lagging && this.waiting.length === 0) {
        this.lagging = false;
        this.alarm('info', 'decode-caught-up', 'decoding caught up: no trials waiting.');
      }
    }
    this.busy = false;
    const w = this.idleWaiters;
    this.idleWaiters = [];
    for (const r of w) r();
  }
}
