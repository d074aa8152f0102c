// `serve --record`'s derivatives: every response as handed to the decoder (pipeline/responseFiles) and every decoded
// caption, then its reconstruction when it follows (pipeline/captionFiles), written beside the BIDS session ingest records.
import type { Subscription } from 'rxjs';
import type { Pipeline } from '../pipeline/pipeline.js';
import { CaptionRecorder, DERIVATIVE } from '../pipeline/captionFiles.js';
import { ResponseRecorder, type ResponseRow } from '../pipeline/responseFiles.js';
import { sinkGuard } from './guard.js';

export interface DerivativesSink {
  /** Waits for every write started so far. */
  flush(): Promise<void>;
  unsubscribe(): void;
}

export function recordDerivatives(pipeline: Pipeline, recordDir: string): DerivativesSink {
  const guard = sinkGuard(pipeline);
  const captions = new CaptionRecorder(recordDir);
  const files = new ResponseRecorder(`${recordDir}/derivatives/${DERIVATIVE}`);
  const subs: Subscription[] = [];
  subs.push(
    pipeline.responses$.subscribe(
      guard('responses to record', (d) => {
        const t = d.response;
        const row: ResponseRow = {
          subject: t.subject,
          session: d.session,
          run: t.run,
          trial: t.trial,
          stimulusId: t.stimulusId,
          onset: t.event.onset,
          presentation: d.presentation,
          estimator: t.method,
          window: t.window,
          volumes: t.volumes,
          flags: t.flags,
          bundle: pipeline.model.name,
          maskSha256: d.maskSha256,
        };
        files.record(row, t.vector).catch((e) =>
          pipeline.report({
            level: 'error',
            code: 'record-failed',
            run: t.run,
            trial: t.trial,
            message: `could not record the response of trial ${t.trial} of ${t.run}: ${(e as Error).message}; later trials are still recorded.`,
          }),
        );
      }),
    ),
  );
  subs.push(
    pipeline.decoded$.subscribe(
      guard('captions to record', (d) => {
        if (d.error) return;
        captions
          .record({
            ...d,
            text: d.caption ?? '',
            confidence: d.confidence ?? 0,
            tokenLogprobs: d.tokenLogprobs ?? [],
            latencyMs: d.latencyMs ?? 0,
          })
          .catch((e) =>
            pipeline.report({
              level: 'error',
              code: 'record-failed',
              message: `could not record the caption of trial ${d.trial}: ${(e as Error).message}`,
            }),
          );
      }),
    ),
  );
  subs.push(
    pipeline.reconstructions$.subscribe(
      guard('reconstructions to record', (r) => {
        captions.recordReconstruction(r).catch((e) =>
          pipeline.report({
            level: 'error',
            code: 'record-failed',
            run: r.run,
            trial: r.trial,
            message: `could not record the reconstruction of trial ${r.trial} of ${r.run}: ${(e as Error).message}`,
          }),
        );
      }),
    ),
  );
  return {
    async flush() {
      await captions.flush();
      await files.flush();
    },
    unsubscribe() {
      for (const s of subs) s.unsubscribe();
    },
  };
}
