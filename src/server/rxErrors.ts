// RxJS 7 never lets a subscriber's exception reach the code that called next(): it is rethrown from a timer, where
// it would be an uncaught exception that ends the process (and the scan session). Routing it to the log instead
// keeps one faulty sink (a dashboard renderer, a recorder) from taking ingest and the other sinks down with it.
import { config } from 'rxjs';

type Sink = (message: string) => void;
const sinks = new Set<Sink>();

function report(e: unknown): void {
  const message = `an RxJS subscriber or operator threw (it was isolated; the session goes on): ${(e as Error)?.stack ?? String(e)}`;
  if (sinks.size === 0) process.stderr.write(`${message}\n`);
  for (const s of sinks) s(message);
}

/** Routes RxJS's unhandled errors to `sink` until the returned function is called. */
export function reportRxErrorsTo(sink: Sink): () => void {
  sinks.add(sink);
  config.onUnhandledError = report;
  return () => {
    sinks.delete(sink);
  };
}
