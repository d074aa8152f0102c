// The dashboard as a sink: subscribes to the pipeline's outputs and turns them into dashboard updates (status, runs,
// per-volume timings and motion, a throttled slice mosaic, trials with stimulus thumbnails, captions, live metrics,
// alerts). Rendering (mosaic, thumbnails, data: URLs) happens here, off the pipeline's per-volume path.
import type { Subscription } from 'rxjs';
import type { RunInfo, Volume } from '../../core/types.js';
import { mimeOf } from '../../inference/image.js';
import type { Pipeline } from '../../pipeline/pipeline.js';
import { sinkGuard } from '../guard.js';
import { liveMetrics } from '../liveMetrics.js';
import type { Dashboard } from './dashboard.js';
import type { DashVolume } from './dashboard-state.js';
import { renderSliceMontagePng } from './sliceMontage.js';
import { stimulusThumbnail } from './stimulusThumb.js';

export interface DashboardFeedOptions {
  /** Live caption metrics on the dashboard (default true). */
  liveMetrics?: boolean;
  /** Volumes expected per run (progress bar), when the caller knows. */
  expectedVolumes?: (run: RunInfo) => number | undefined;
  log?: (level: 'info' | 'warn' | 'error', message: string) => void;
}

/** Feeds `dashboard` from `pipeline` until the returned subscription ends (or the pipeline closes). */
export function feedDashboard(
  pipeline: Pipeline,
  dashboard: Dashboard,
  opts: DashboardFeedOptions = {},
): Subscription[] {
  const log = opts.log ?? ((level, m) => process.stderr.write(`[${level}] ${m}\n`));
  const guard = sinkGuard(pipeline);
  const subs: Subscription[] = [];

  dashboard.publish({ type: 'status', data: { bridge: 'waiting', at: Date.now(), model: { ...pipeline.model } } });

  subs.push(
    pipeline.alerts$.subscribe((a) => {
      try {
        dashboard.publish({ type: 'alert', data: a });
      } catch (e) {
        log('error', `the dashboard could not show an alert: ${(e as Error).message}`);
      }
    }),
  );
  subs.push(pipeline.status$.subscribe(guard('status', (s) => dashboard.publish({ type: 'status', data: s }))));
  subs.push(
    pipeline.runStarts$.subscribe(
      guard('run starts', ({ info, startedAt, fdThresholdMm }) =>
        dashboard.publish({
          type: 'run',
          data: {
            session: info.session,
            run: info.run,
            subject: info.subject,
            tr: info.tr,
            dims: info.dims,
            expected: opts.expectedVolumes?.(info),
            startedAt,
            fdThresholdMm,
          },
        }),
      ),
    ),
  );

  subs.push(
    pipeline.processed$.subscribe(
      guard('processed volumes', (p) => {
        const t = p.times;
        const r = t.received ?? 0;
        const total = (t.zscored ?? r) - r;
        const lagOrigin = t.acquired ?? t.fileSeen ?? t.sent;
        const v: DashVolume = {
          run: p.run,
          index: p.index,
          t: p.acquisitionTime,
          totalMs: total,
          stages: {
            motion: (t.corrected ?? r) - r,
            mask: (t.masked ?? 0) - (t.corrected ?? 0),
            detrend: (t.detrended ?? 0) - (t.masked ?? 0),
            zscore: (t.zscored ?? 0) - (t.detrended ?? 0),
          },
          // How far results trail the scanner side: from acquisition (or the bridge seeing the file) to z-scored.
          lagMs: lagOrigin !== undefined && t.zscored !== undefined ? t.zscored - lagOrigin : undefined,
        };
        if (p.motion) {
          const m = p.motion.params;
          v.motion = { trans: [m[0], m[1], m[2]], rot: [m[3], m[4], m[5]], fd: p.motion.fd };
        }
        if (p.zscored) {
          let s = 0;
          for (let i = 0; i < p.zscored.length; i++) s += p.zscored[i];
          v.roi = s / p.zscored.length;
        }
        dashboard.publish({ type: 'volume', data: v });
      }),
    ),
  );

  // ---- mosaic of the latest raw volume, throttled, rendered off the volume path ----
  let latest: Volume | null = null;
  let mosaicBusy = false;
  let lastMosaic = 0;
  function maybeMosaic(): void {
    // Nobody watching: no rendering (the next volume after someone joins is drawn).
    if (mosaicBusy || !latest || Date.now() - lastMosaic < 400 || dashboard.viewers() === 0) return;
    const v = latest;
    latest = null;
    mosaicBusy = true;
    lastMosaic = Date.now();
    setImmediate(() => {
      renderSliceMontagePng(v.data, v.dims)
        .then((png) =>
          dashboard.publish({
            type: 'mosaic',
            data: { run: v.run, index: v.index, image: `data:image/png;base64,${png.toString('base64')}` },
          }),
        )
        .catch((e) => log('warn', `mosaic: ${(e as Error).message}`))
        .finally(() => {
          mosaicBusy = false;
          if (latest) setTimeout(maybeMosaic, 400);
        });
    });
  }
  subs.push(
    pipeline.received$.subscribe(
      guard('volumes', (v) => {
        latest = v;
        maybeMosaic();
      }),
    ),
  );

  subs.push(
    pipeline.events$.subscribe(
      guard('events', (e) => {
        const trial = {
          run: e.run,
          subject: e.subject,
          session: e.session,
          trial: e.trial,
          stimulusId: e.stimulusId,
          onset: e.onset,
          duration: e.duration,
        };
        dashboard.publish({ type: 'trial', data: { ...trial, references: e.references } });
        // The image arrives with the event (protocol imageData), never from a path: the sender's files are not ours.
        if (e.imageData) {
          stimulusThumbnail(e.imageData, 256)
            .then((stimulusImage) => dashboard.publish({ type: 'trial', data: { ...trial, stimulusImage } }))
            .catch((err) =>
              log(
                'warn',
                `stimulus image of trial ${e.trial} (${e.stimulusId}) could not be shown: ${(err as Error).message}`,
              ),
            );
        }
      }),
    ),
  );

  const scores = opts.liveMetrics !== false ? liveMetrics() : undefined;
  subs.push(
    pipeline.decoded$.subscribe(
      guard('decode results', (d) => {
        dashboard.publish({
          type: 'caption',
          data: {
            run: d.run,
            subject: d.subject,
            session: d.session,
            trial: d.trial,
            caption: {
              text: d.caption ?? '',
              confidence: d.confidence ?? 0,
              latencyMs: d.latencyMs ?? 0,
              flags: d.flags,
              baseline: d.baseline,
              error: d.error,
              presentation: d.presentation,
              mean: d.mean,
            },
          },
        });
        const m = scores?.(d);
        if (m) dashboard.publish({ type: 'metrics', data: m });
      }),
    ),
  );
  // The reconstruction follows its caption and fills in the same card.
  subs.push(
    pipeline.reconstructions$.subscribe(
      guard('reconstructions', (r) => {
        dashboard.publish({
          type: 'reconstruction',
          data: {
            run: r.run,
            subject: r.subject,
            session: r.session,
            trial: r.trial,
            reconstruction: {
              image: r.image
                ? `data:${mimeOf(r.imageFormat ?? 'png')};base64,${Buffer.from(r.image).toString('base64')}`
                : undefined,
              ms: r.ms,
              error: r.error,
            },
          },
        });
      }),
    ),
  );
  return subs;
}
