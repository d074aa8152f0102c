// Decoding as serve and demo run it: the pipeline, with the sinks that subscribe to its outputs (the dashboard feed
// with live metrics, the `--record` derivatives). Closing it closes the pipeline, then waits for the sinks' writes.
import type { RunInfo } from '../core/types.js';
import type { IngestHub } from '../server/hub.js';
import { startPipeline, type Pipeline, type PipelineOptions } from '../pipeline/pipeline.js';
import type { Dashboard } from '../sinks/dashboard/dashboard.js';
import { feedDashboard } from '../sinks/dashboard/feed.js';
import { recordDerivatives } from '../sinks/derivatives.js';

export interface DecodingOptions extends Omit<PipelineOptions, 'recording'> {
  dashboard?: Dashboard;
  /** `serve --record` folder: responses, captions and reconstructions go to its derivatives/. */
  recordDir?: string;
  /** Live caption metrics on the dashboard (default true). */
  liveMetrics?: boolean;
  /** Volumes expected per run (the dashboard's progress bar), when the caller knows. */
  expectedVolumes?: (run: RunInfo) => number | undefined;
}

export function startDecoding(hub: IngestHub, opts: DecodingOptions): Pipeline {
  const { dashboard, recordDir, liveMetrics, expectedVolumes, ...rest } = opts;
  const pipeline = startPipeline(hub, { ...rest, recording: !!recordDir });
  const derivatives = recordDir ? recordDerivatives(pipeline, recordDir) : undefined;
  const feed = dashboard ? feedDashboard(pipeline, dashboard, { liveMetrics, expectedVolumes, log: opts.log }) : [];
  return {
    ...pipeline,
    async close() {
      await pipeline.close();
      await derivatives?.flush();
      derivatives?.unsubscribe();
      for (const s of feed) s.unsubscribe();
    },
  };
}
