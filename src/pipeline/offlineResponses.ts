// The serving chain run offline over a recorded BIDS run: volumes and events enter the same streams/ preprocessor in
// the order replay sends them (by time, an event before a volume at the same time; volumes recorded as missing are
// skipped, as replay skips them), then the run ends. What comes out equals what `serve` hands the decoder for the same
// run (test/pipeline/responsesParity.test.ts proves it to 1e-6).
import { Subject } from 'rxjs';
import type { StimulusEvent, Volume } from '../core/types.js';
import type { Preprocessor, StreamTrialResponse } from '../../streams/index.js';
import type { LoadedRun } from '../bids/bidsRun.js';

export async function runChainOffline(run: LoadedRun, pre: Preprocessor): Promise<StreamTrialResponse[]> {
  const { info } = run;
  const volumes$ = new Subject<Volume>();
  const events$ = new Subject<StimulusEvent>();
  const ends$ = new Subject<{ run: string }>();
  const out = pre.attach(volumes$, events$, ends$);
  const trials: StreamTrialResponse[] = [];
  let failure: unknown;
  const done = new Promise<void>((resolve) => {
    out.trials$.subscribe({
      next: (t) => trials.push(t),
      error: (e) => {
        failure = e;
        resolve();
      },
      complete: () => resolve(),
    });
  });
  const sub = out.connect();
  type Item = { t: number; vol?: number; ev?: number };
  const items: Item[] = [
    ...run.acquisitionTimes.map((t, i): Item => ({ t, vol: i })),
    ...run.events.map((e, i): Item => ({ t: e.onset, ev: i })),
  ].sort((a, b) => a.t - b.t || (a.ev !== undefined ? -1 : 1));
  for (const it of items) {
    if (it.ev !== undefined) {
      events$.next({ ...run.events[it.ev], run: info.run });
      continue;
    }
    const i = it.vol!;
    if (run.missing.has(i)) continue;
    const raw = run.volume(i);
    const data = raw instanceof Float32Array ? raw : Float32Array.from(raw);
    const now = Date.now();
    volumes$.next({
      run: info.run,
      index: i,
      dims: info.dims,
      affine: info.affine,
      tr: info.tr,
      acquisitionTime: run.acquisitionTimes[i],
      data,
      times: { received: now, accepted: now },
    });
  }
  ends$.next({ run: info.run });
  volumes$.complete();
  events$.complete();
  ends$.complete();
  await done;
  sub.unsubscribe();
  if (failure) throw failure instanceof Error ? failure : new Error(String(failure));
  return trials;
}
