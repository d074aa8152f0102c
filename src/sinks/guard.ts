// A sink's subscriptions never end the session: an exception on one item is reported through the pipeline and skips
// that item; a stream that errors is reported. (The pipeline guards its own subscriptions the same way.)
import type { Observer } from 'rxjs';
import type { Pipeline } from '../pipeline/pipeline.js';

export function sinkGuard(pipeline: Pick<Pipeline, 'report'>) {
  return function guard<T>(what: string, next: (v: T) => void): Partial<Observer<T>> {
    return {
      next: (v) => {
        try {
          next(v);
        } catch (e) {
          pipeline.report({
            level: 'error',
            code: 'sink-failed',
            message: `handling ${what} failed on one item, which was skipped: ${(e as Error)?.message ?? String(e)}`,
          });
        }
      },
      error: (e: unknown) =>
        pipeline.report({
          level: 'error',
          code: 'stream-failed',
          message: `the ${what} stream stopped with an error: ${(e as Error)?.message ?? String(e)}`,
        }),
    };
  };
}
