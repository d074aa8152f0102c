// The protocol v1 sending client shared by `bridge` and `replay`: keeps every volume and event until the server's
// cumulative ack covers it, reconnects with exponential backoff after any disconnect, and resends from the server's
// last ack. The server drops duplicates, so resending is always safe.
import { EventEmitter } from 'node:events';
import WebSocket from 'ws';
import type { RunInfo, StimulusEvent } from '../core/types.js';
import {
  PROTOCOL_VERSION,
  type AckMessage,
  type ErrorMessage,
  type EventMessage,
  type GapMessage,
  type RunEndMessage,
  type RunStartMessage,
  type WelcomeMessage,
} from '../protocol/messages.js';
import { encodeVolumeFrame } from '../protocol/frame.js';
import { encodeInlineImage } from '../protocol/inlineImage.js';
import { parseServerMessage } from '../protocol/validate.js';

export interface SenderOptions {
  /** ws://host:port/bridge (a URL without a path gets /bridge). */
  url: string;
  token?: string;
  /** Name the server logs: "bridge", "replay". */
  client?: string;
  /** First and largest reconnect delay. */
  backoffMs?: { initial: number; max: number };
  /** Frames sent but not yet acked, at most. */
  window?: number;
  log?: (level: 'debug' | 'info' | 'warn' | 'error', message: string) => void;
}

export interface OutgoingVolume {
  session: string;
  run: string;
  index: number;
  tr: number;
  acquisitionTime: number;
  /** Single-volume NIfTI-1 bytes (encodeNifti1Volume). */
  nifti: Uint8Array;
  seenAt?: number;
  readAt?: number;
}

/** Errors after which reconnecting cannot help. */
const PERMANENT = new Set(['auth-required', 'auth-failed', 'unsupported-version', 'not-authenticated']);

interface SendRun {
  start: RunStartMessage;
  volumes: OutgoingVolume[]; // pending, ascending index
  events: EventMessage[]; // pending, ascending trial
  end?: RunEndMessage;
  next: number;
  eventsNext: number;
  // per-connection state
  startAcked: boolean;
  startSent: boolean;
  sent: Set<number>;
  eventsSent: number; // events with trial < this were sent on this connection
  endSent: boolean;
  maxSent: number;
}

export class SenderFatalError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'SenderFatalError';
  }
}

/** Events: 'connected', 'disconnected' (reason), 'ack' (AckMessage), 'gap' (GapMessage), 'server-error' (ErrorMessage), 'fatal' (SenderFatalError). */
export class ProtocolSender extends EventEmitter {
  readonly url: string;
  private ws: WebSocket | undefined;
  private welcomed = false;
  private stopped = false;
  private runs = new Map<string, SendRun>();
  private seq = 0;
  private attempt = 0;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private waiters: { check: () => boolean; resolve: () => void; reject: (e: Error) => void }[] = [];
  private readonly window: number;
  private readonly backoff: { initial: number; max: number };
  fatalError: SenderFatalError | undefined;
  /** Counters for reports and tests. */
  readonly stats = { connects: 0, framesSent: 0, resent: 0, acked: 0, gaps: 0 };

  constructor(private readonly o: SenderOptions) {
    super();
    const u = new URL(o.url);
    if (u.protocol !== 'ws:' && u.protocol !== 'wss:')
      throw new Error(`server URL ${o.url} must start with ws:// or wss://.`);
    if (u.pathname === '/' || u.pathname === '') u.pathname = '/bridge';
    this.url = u.toString();
    this.window = o.window ?? 32;
    this.backoff = o.backoffMs ?? { initial: 100, max: 5000 };
    this.on('error', () => {
      /* reported through 'fatal'/'server-error'; never an unhandled 'error' */
    });
  }

  private log(level: 'debug' | 'info' | 'warn' | 'error', m: string): void {
    this.o.log?.(level, m);
  }

  start(): this {
    if (!this.ws && !this.stopped) this.connect();
    return this;
  }

  startRun(info: RunInfo): void {
    const key = `${info.session}/${info.run}`;
    if (this.runs.has(key)) return;
    this.runs.set(key, {
      start: {
        type: 'run-start',
        session: info.session,
        run: info.run,
        subject: info.subject,
        task: info.task,
        tr: info.tr,
        dims: [...info.dims],
        voxelSize: [...info.voxelSize],
        affine: [...info.affine],
      },
      volumes: [],
      events: [],
      next: 0,
      eventsNext: 0,
      startAcked: false,
      startSent: false,
      sent: new Set(),
      eventsSent: 0,
      endSent: false,
      maxSent: -1,
    });
    this.pump();
  }

  sendVolume(v: OutgoingVolume): void {
    const r = this.run(v.session, v.run);
    if (v.index < r.next || r.end) return;
    const a = r.volumes;
    if (a.length === 0 || a[a.length - 1].index < v.index) a.push(v);
    else {
      const at = a.findIndex((x) => x.index >= v.index);
      if (a[at].index === v.index) return; // already queued
      a.splice(at, 0, v);
    }
    this.pump();
  }

  sendEvent(session: string, e: StimulusEvent): void {
    const r = this.run(session, e.run);
    if (e.trial < r.eventsNext || r.events.some((x) => x.trial === e.trial)) return;
    r.events.push({
      type: 'event',
      session,
      run: e.run,
      trial: e.trial,
      onset: e.onset,
      duration: e.duration,
      stimulusId: e.stimulusId,
      trialType: e.trialType,
      references: e.references,
      image: e.image,
      imageData: e.imageData ? encodeInlineImage(e.imageData) : undefined,
    });
    r.events.sort((a, b) => a.trial - b.trial);
    this.pump();
  }

  /** Ends a run once every volume and event before it is acked; `volumes`/`events` = how many the run produced. */
  endRun(session: string, run: string, volumes: number, events: number): void {
    const r = this.run(session, run);
    r.end ??= { type: 'run-end', session, run, volumes, events };
    this.pump();
  }

  /** Volumes queued and not yet acked, over all runs. */
  pendingVolumes(): number {
    let n = 0;
    for (const r of this.runs.values()) n += r.volumes.length;
    return n;
  }

  /** Resolves once fewer than `n` volumes await acknowledgement (backpressure for producers). */
  whenPendingBelow(n: number): Promise<void> {
    return this.waitFor(() => this.pendingVolumes() < n);
  }

  /** Resolves when everything queued, run-ends included, is acknowledged. */
  flush(): Promise<void> {
    return this.waitFor(() => this.runs.size === 0);
  }

  async close(): Promise<void> {
    this.stopped = true;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    const ws = this.ws;
    this.ws = undefined;
    if (ws && ws.readyState !== WebSocket.CLOSED) {
      await new Promise<void>((resolve) => {
        ws.once('close', () => resolve());
        ws.close(1000, 'done');
        setTimeout(() => {
          ws.terminate();
          resolve();
        }, 1000).unref();
      });
    }
    for (const w of this.waiters.splice(0))
      w.reject(new Error('the sender was closed before everything was acknowledged.'));
  }

  private run(session: string, run: string): SendRun {
    const r = this.runs.get(`${session}/${run}`);
    if (!r) throw new Error(`run ${run} of session ${session} was not started; call startRun first.`);
    return r;
  }

  private waitFor(check: () => boolean): Promise<void> {
    if (this.fatalError) return Promise.reject(this.fatalError);
    if (check()) return Promise.resolve();
    return new Promise((resolve, reject) => this.waiters.push({ check, resolve, reject }));
  }

  private wake(): void {
    this.waiters = this.waiters.filter((w) => {
      if (!w.check()) return true;
      w.resolve();
      return false;
    });
  }

  private connect(): void {
    this.welcomed = false;
    // A zero masking key: masking protects browser-driven traffic from proxy cache poisoning, which does not apply to
    // this client, and XOR-ing every byte in JS costs more than the rest of the hot path (ws then skips it both ends).
    const ws = new WebSocket(this.url, {
      perMessageDeflate: false,
      handshakeTimeout: 5000,
      generateMask: (mask: Buffer) => {
        mask.fill(0);
      },
    });
    this.ws = ws;
    ws.on('open', () => {
      ws.send(
        JSON.stringify({
          type: 'hello',
          v: PROTOCOL_VERSION,
          client: this.o.client ?? 'bridge',
          ...(this.o.token !== undefined ? { token: this.o.token } : {}),
        }),
      );
    });
    ws.on('message', (data, isBinary) => {
      if (isBinary || this.ws !== ws) return;
      let m;
      try {
        m = parseServerMessage(data.toString());
      } catch (e) {
        this.log('warn', `unreadable server message: ${(e as Error).message}`);
        return;
      }
      this.onMessage(m as WelcomeMessage | AckMessage | GapMessage | ErrorMessage);
    });
    ws.on('error', (e) =>
      this.log(
        this.attempt % 10 === 0 ? 'warn' : 'debug',
        `connection to ${this.url}: ${e.message}${this.attempt ? ` (attempt ${this.attempt + 1}, retrying with backoff)` : ''}`,
      ),
    );
    ws.on('close', (code, reason) => {
      if (this.ws !== ws) return;
      this.ws = undefined;
      const was = this.welcomed;
      this.welcomed = false;
      this.emit('disconnected', `${code} ${reason.toString()}`);
      if (was)
        this.log(
          'warn',
          `disconnected from ${this.url} (${code}${reason.length ? ' ' + reason.toString() : ''}); reconnecting`,
        );
      this.scheduleReconnect();
    });
  }

  private scheduleReconnect(): void {
    if (this.stopped || this.fatalError) return;
    const base = Math.min(this.backoff.max, this.backoff.initial * 2 ** Math.min(this.attempt, 16));
    const delay = base / 2 + (Math.random() * base) / 2;
    this.attempt++;
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      if (!this.stopped) this.connect();
    }, delay);
  }

  private onMessage(m: WelcomeMessage | AckMessage | GapMessage | ErrorMessage | { type: string }): void {
    switch (m.type) {
      case 'welcome': {
        this.welcomed = true;
        this.attempt = 0;
        this.stats.connects++;
        for (const r of this.runs.values()) {
          r.startSent = r.startAcked = r.endSent = false;
          r.sent.clear();
          r.eventsSent = 0;
        }
        this.emit('connected');
        this.pump();
        return;
      }
      case 'ack': {
        const a = m as AckMessage;
        const key = `${a.session}/${a.run}`;
        const r = this.runs.get(key);
        if (!r) return;
        r.startAcked = true;
        if (a.next > r.next) r.next = a.next;
        if (a.eventsNext > r.eventsNext) r.eventsNext = a.eventsNext;
        let drop = 0;
        while (drop < r.volumes.length && r.volumes[drop].index < r.next) r.sent.delete(r.volumes[drop++].index);
        if (drop) {
          r.volumes.splice(0, drop);
          this.stats.acked += drop;
        }
        while (r.events.length && r.events[0].trial < r.eventsNext) r.events.shift();
        this.emit('ack', a);
        if (a.ended) {
          if (r.volumes.length || r.events.length || !r.end)
            this.log(
              'warn',
              `the server says run ${a.run} of session ${a.session} already ended; ${r.volumes.length} volume(s) and ${r.events.length} event(s) of it were not accepted.`,
            );
          this.runs.delete(key);
          this.wake();
          return;
        }
        this.wake();
        this.pump();
        return;
      }
      case 'gap':
        this.stats.gaps++;
        this.log(
          'warn',
          `server reports a gap in run ${(m as GapMessage).run}: volumes ${(m as GapMessage).from}..${(m as GapMessage).to - 1} (${(m as GapMessage).reason})`,
        );
        this.emit('gap', m);
        return;
      case 'error': {
        const e = m as ErrorMessage;
        this.log(e.fatal ? 'error' : 'warn', `server: ${e.code}: ${e.message}`);
        this.emit('server-error', e);
        if (e.fatal && PERMANENT.has(e.code)) {
          this.fatalError = new SenderFatalError(e.code, e.message);
          this.stopped = true;
          this.emit('fatal', this.fatalError);
          for (const w of this.waiters.splice(0)) w.reject(this.fatalError);
          this.ws?.close();
        }
        return;
      }
      default:
        this.log('warn', `unknown server message type ${JSON.stringify(m.type)} ignored`);
    }
  }

  /** Sends whatever the window allows on the current connection. */
  private pump(): void {
    const ws = this.ws;
    if (!ws || !this.welcomed || ws.readyState !== WebSocket.OPEN) return;
    for (const r of this.runs.values()) {
      if (!r.startSent) {
        ws.send(JSON.stringify(r.start));
        r.startSent = true;
      }
      if (!r.startAcked) continue; // resend only from the server's ack
      for (const e of r.events) {
        if (e.trial < r.eventsSent) continue;
        ws.send(JSON.stringify(e));
        r.eventsSent = e.trial + 1;
      }
      for (const v of r.volumes) {
        if (r.sent.size >= this.window) break;
        if (r.sent.has(v.index)) continue;
        const frame = encodeVolumeFrame(
          {
            v: PROTOCOL_VERSION,
            session: v.session,
            run: v.run,
            index: v.index,
            seq: this.seq++,
            tr: v.tr,
            acquisitionTime: v.acquisitionTime,
            seenAt: v.seenAt,
            readAt: v.readAt,
            sentAt: Date.now(),
          },
          v.nifti,
        );
        ws.send(frame);
        r.sent.add(v.index);
        this.stats.framesSent++;
        if (v.index <= r.maxSent) this.stats.resent++;
        else r.maxSent = v.index;
      }
      if (r.end && !r.endSent && r.volumes.length === 0 && r.events.length === 0) {
        ws.send(JSON.stringify(r.end));
        r.endSent = true;
      }
    }
  }
}
