// The ingest hub: validated, ordered, deduplicated streams that the pipeline (and through it streams/ and the sinks) subscribes to.
import { Subject, type Observable } from 'rxjs';
import type { RunEnd, RunInfo, StimulusEvent, Volume } from '../core/types.js';

export type IngestNoticeKind = 'connection' | 'auth' | 'run' | 'resume' | 'gap' | 'error' | 'alarm' | 'record';

/** Something the operator should see on the dashboard (connections, auth failures, gaps, rejected input, alarms). */
export interface IngestNotice {
  kind: IngestNoticeKind;
  level: 'info' | 'warn' | 'error';
  message: string;
  /** Wall-clock ms. */
  at: number;
  session?: string;
  run?: string;
  /** Volume indices concerned, for gaps: [from, to). */
  from?: number;
  to?: number;
  peer?: string;
}

export interface IngestStats {
  connections: number;
  volumesAccepted: number;
  duplicatesDropped: number;
  volumesRejected: number;
  gaps: number;
  eventsAccepted: number;
  bytesReceived: number;
}

export interface IngestHub {
  /** One RunInfo per run, at its first run-start (again after a server restart resumes it). */
  readonly runs$: Observable<RunInfo>;
  /** Accepted volumes per run in index order, each exactly once, `times.received/accepted` set. */
  readonly volumes$: Observable<Volume>;
  readonly events$: Observable<StimulusEvent>;
  readonly runEnds$: Observable<RunEnd>;
  readonly status$: Observable<IngestNotice>;
  stats(): IngestStats;
}

/** The server's side of the hub: subjects it pushes into. */
export class IngestHubSubjects implements IngestHub {
  readonly runsS = new Subject<RunInfo>();
  readonly volumesS = new Subject<Volume>();
  readonly eventsS = new Subject<StimulusEvent>();
  readonly runEndsS = new Subject<RunEnd>();
  readonly statusS = new Subject<IngestNotice>();
  readonly runs$ = this.runsS.asObservable();
  readonly volumes$ = this.volumesS.asObservable();
  readonly events$ = this.eventsS.asObservable();
  readonly runEnds$ = this.runEndsS.asObservable();
  readonly status$ = this.statusS.asObservable();
  readonly counters: IngestStats = {
    connections: 0,
    volumesAccepted: 0,
    duplicatesDropped: 0,
    volumesRejected: 0,
    gaps: 0,
    eventsAccepted: 0,
    bytesReceived: 0,
  };
  stats(): IngestStats {
    return { ...this.counters };
  }
  /**
   * A throwing subscriber must not take ingest down. RxJS 7 catches a subscriber's exception itself and reports it
   * through config.onUnhandledError (set by the server: src/server/rxErrors.ts); the catch here covers the rest.
   */
  emit<T>(s: Subject<T>, v: T, onError: (e: unknown) => void): void {
    try {
      s.next(v);
    } catch (e) {
      onError(e);
    }
  }
  complete(): void {
    for (const s of [this.runsS, this.volumesS, this.eventsS, this.runEndsS, this.statusS] as Subject<unknown>[])
      s.complete();
  }
}
