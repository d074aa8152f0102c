import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Command } from '../command.js';
import { UserError } from '../../core/errors.js';
import { boolFlag, numberFlag, parseArgs, stringFlag } from '../args.js';
import { parseRerank, rerankFlagSpecs, rerankHelp } from '../rerankFlags.js';
import { rerankOptions, type RerankSetting } from '../../inference/rerankSetting.js';
import { findBidsRuns } from '../../bids/index.js';
import { BrainDecoder, LM_PRECISIONS, type LmPrecision } from '../../inference/decoder.js';
import { BundleError } from '../../inference/bundle.js';
import { readBaselineCaptions, RidgeRetrieval } from '../../inference/baseline.js';
import { DEVICES, type Device } from '../../inference/sessions.js';
import type { DecodedTrial } from '../../pipeline/pipeline.js';
import { runSessionThroughServe, type SessionRun } from '../../app/session.js';
import { byPresentation, percentile, summaryScores, type PresentationScores } from '../../pipeline/summary.js';
import { compositionSummary, type CompositionSummary } from '../../pipeline/compositionSummary.js';
import { readSceneTable } from '../../pipeline/sceneTable.js';
import { imageSummary, type ImageScores, type ImageSummary } from '../../pipeline/imageSummary.js';
import { prepareNewSubject, type NewSubjectCalibration } from '../../app/newSubjectDemo.js';

const help = `mindsemantix demo [--session DIR] [--models DIR] [--speed N|max] [--port P] [--once] [--json]
mindsemantix demo --new-subject [ID] [--work DIR] [--calibration-runs N] [--test-runs N] [--fresh]
                  [--calibration-trials N] [--test-trials N] [other options]

Starts the decoder server with its dashboard, replays a recorded session into it as a scanner would, and prints each
trial's decoded caption (with the reference captions) as it is decoded. Keeps serving the dashboard until Ctrl-C.

  --session DIR    BIDS session to replay (default data/demo, written by \`npm start\`)
  --models DIR     model bundle (default models/bundles/default)
  --speed N|max    replay speed: N× real time, or max = as fast as the server accepts (default 10)
  --port P         dashboard/ingest port on 127.0.0.1 (default 8080; 0 picks a free one)
  --once           exit with a summary after the last trial instead of serving on
  --json           one JSON object per line on stdout (trials, then a summary); logs go to stderr
  --device D       cpu (default), webgpu or cuda; falls back to cpu with a log line when unavailable
  --lm-precision P auto (default: the bundle's 8-bit LM graph when it has one), fp32 (exact PyTorch parity) or int8
  --strategy S     greedy (default), beam or sample: how the LM's first candidate is drawn (with --rerank 1, the caption)
${rerankHelp}
  --max-tokens N   caption length limit in tokens (default: the bundle's)
  --record DIR     also record the session (BIDS) with captions and reconstructions under DIR/derivatives
  --no-meteor      leave METEOR out of the summary (it runs pycocoevalcap's Java METEOR through models/, seconds)

A new person, end to end (\`npm start -- --new-subject\`): simulates person ID's calibration session (captioned
training images), replays it through serve --record (the dashboard shows "not calibrated yet"), runs \`calibrate\` on
the recording into a new bundle under the work folder (--models is only read), simulates that person's test session
and decodes it live with the new bundle as above; the summary gains \`calibration\`. Finished steps are reused.
  --new-subject [ID]     the new person's id (default sim21; any id but sim01–sim08 is a brain the bundle never saw)
  --work DIR             sessions, recording and new bundle (default data/new-subject/<ID>)
  --calibration-runs N   calibration runs (default 2; --calibration-trials per run, default 62; calibrate needs ≥ 50)
  --test-runs N          test runs (default 1; --test-trials per run, default 60)
  --fresh                redo every step instead of reusing finished ones`;

export interface DemoSummary {
  type: 'summary';
  trials: number;
  decoded: number;
  metrics: Record<string, number>;
  baseline?: { name: 'ridge-retrieval' } & Record<string, number | string>;
  latency_ms: { volume_p50: number; volume_p99: number; decode_p50: number; decode_p99: number };
  volumes: { received: number; processed: number; lost: number };
  realtime_factor: number;
  by_presentation: PresentationScores[];
  /** Simulated sessions only (stimuli.tsv has the scene facts): compositional rates, docs/metrics.md. */
  composition?: CompositionSummary;
  /**
   * Sessions whose events carry stimulus images, with a bundle that reconstructs: the reconstructions (and the
   * nearest-training-image baseline) against the stimuli, docs/metrics.md "Image metrics".
   */
  image?: ImageSummary;
  /** How each caption was chosen among the LM's candidates (candidates 1: the greedy caption). */
  rerank: RerankSetting;
  /** `--new-subject`: the calibration the decoded person got (seconds: calibrate's own). */
  calibration?: Omit<NewSubjectCalibration, 'bundle'>;
}

const round = (x: number, d = 1) => Number(x.toFixed(d));

export const command: Command = {
  name: 'demo',
  summary: 'replay the demo session through serve and print captions live (dashboard URL printed)',
  help,
  async run(argvIn) {
    // a bare --new-subject (last, or followed by another flag) takes the default person
    const argv = argvIn.flatMap((a, i) =>
      a === '--new-subject' && (i + 1 >= argvIn.length || argvIn[i + 1].startsWith('-')) ? [a, 'sim21'] : [a],
    );
    const p = parseArgs('demo', argv, {
      session: { type: 'string' },
      'new-subject': { type: 'string' },
      work: { type: 'string' },
      fresh: { type: 'boolean' },
      'calibration-runs': { type: 'string', default: '2' },
      'test-runs': { type: 'string', default: '1' },
      'calibration-trials': { type: 'string', default: '62' },
      'test-trials': { type: 'string', default: '60' },
      models: { type: 'string', default: 'models/bundles/default' },
      speed: { type: 'string', default: '10' },
      port: { type: 'string', default: '8080' },
      once: { type: 'boolean' },
      json: { type: 'boolean' },
      device: { type: 'string', default: 'cpu', choices: DEVICES },
      strategy: { type: 'string', default: 'greedy', choices: ['greedy', 'beam', 'sample'] },
      'max-tokens': { type: 'string' },
      record: { type: 'string' },
      'no-meteor': { type: 'boolean' },
      'lm-precision': { type: 'string', default: 'auto', choices: LM_PRECISIONS },
      ...rerankFlagSpecs,
    });
    if (p.positionals.length)
      throw new UserError(`demo: unexpected argument "${p.positionals[0]}"; run \`mindsemantix demo --help\`.`, 2);
    const json = boolFlag(p, 'json');
    const once = boolFlag(p, 'once');
    let session = resolve(stringFlag(p, 'session') ?? 'data/demo');
    let models = stringFlag(p, 'models')!;
    const speedRaw = stringFlag(p, 'speed')!;
    const speed = speedRaw === 'max' ? 'max' : numberFlag('demo', p, 'speed', { min: 0.01 })!;
    const port = numberFlag('demo', p, 'port', { min: 0, max: 65535, integer: true })!;
    const maxTokens = numberFlag('demo', p, 'max-tokens', { min: 1, max: 512, integer: true });
    const rerankSetting = parseRerank('demo', p);
    const say = (line: string) => process.stderr.write(`${line}\n`);
    let calibration: NewSubjectCalibration | undefined;
    const subject = stringFlag(p, 'new-subject');
    if (subject !== undefined) {
      if (stringFlag(p, 'session'))
        throw new UserError(
          'demo: --session and --new-subject exclude each other (--new-subject simulates its own sessions); pass one.',
          2,
        );
      if (!/^[A-Za-z0-9]+$/.test(subject))
        throw new UserError(
          `demo: --new-subject must be letters and digits (a BIDS label such as sim21), got "${subject}".`,
          2,
        );
      const prepared = await prepareNewSubject({
        subject,
        work: stringFlag(p, 'work') ?? join('data', 'new-subject', subject),
        models,
        fresh: boolFlag(p, 'fresh'),
        port,
        log: say,
        calibrationRuns: numberFlag('demo', p, 'calibration-runs', { min: 1, max: 16, integer: true })!,
        calibrationTrials: numberFlag('demo', p, 'calibration-trials', { min: 1, max: 1000, integer: true })!,
        testRuns: numberFlag('demo', p, 'test-runs', { min: 1, max: 15, integer: true })!,
        testTrials: numberFlag('demo', p, 'test-trials', { min: 1, max: 300, integer: true })!,
      });
      ({ session, bundle: models, calibration } = prepared);
    } else if (stringFlag(p, 'work') || boolFlag(p, 'fresh'))
      throw new UserError('demo: --work and --fresh go with --new-subject; add --new-subject or leave them out.', 2);

    if (!existsSync(session))
      throw new UserError(
        `demo: session ${session} does not exist; run \`npm start\` once (it simulates the demo session) or pass --session DIR.`,
      );
    let runs;
    try {
      runs = findBidsRuns(session);
    } catch (e) {
      throw new UserError(`demo: ${(e as Error).message}`);
    }
    if (!runs.length)
      throw new UserError(`demo: no *_bold.nii.gz runs under ${session}; pass a BIDS session with --session.`);

    say(`demo: loading model bundle ${models} (checking checksums)…`);
    let decoder: BrainDecoder;
    try {
      decoder = await BrainDecoder.load(models, {
        device: stringFlag(p, 'device') as Device,
        lmPrecision: stringFlag(p, 'lm-precision') as LmPrecision,
        log: say,
        generation: maxTokens ? { max_new_tokens: maxTokens } : undefined,
      });
    } catch (e) {
      if (e instanceof BundleError) throw new UserError(`demo: ${e.message}`);
      throw e;
    }
    const baseline = await RidgeRetrieval.load(decoder.bundle, decoder.sessions);
    const rerank = rerankOptions(rerankSetting, baseline);
    say(
      `demo: model "${decoder.bundle.manifest.name}" ready on ${decoder.provider} (subjects ${decoder.subjects.join(', ')}${baseline ? '; ridge-retrieval baseline loaded' : ''})`,
    );

    const trials: DecodedTrial[] = [];
    const print = (d: DecodedTrial) => {
      trials.push(d);
      if (json) {
        process.stdout.write(
          JSON.stringify({
            type: 'trial',
            run: d.run,
            trial: d.trial,
            stimulus: d.stimulusId,
            caption: d.caption ?? null,
            references: d.references ?? [],
            confidence: d.confidence === undefined ? null : round(d.confidence, 4),
            latency_ms: { response_to_caption: d.latencyMs === undefined ? null : round(d.latencyMs) },
            ...(d.baseline !== undefined ? { baseline: d.baseline } : {}),
            ...(d.flags.length ? { flags: d.flags } : {}),
            ...(d.error ? { error: d.error } : {}),
            presentation: d.presentation,
            ...(d.mean
              ? {
                  mean: {
                    presentations: d.mean.of,
                    caption: d.mean.caption,
                    confidence: round(d.mean.confidence, 4),
                    ...(d.mean.baseline !== undefined ? { baseline: d.mean.baseline } : {}),
                  },
                }
              : {}),
          }) + '\n',
        );
        return;
      }
      const head = `trial ${String(d.trial).padStart(3)}  ${d.stimulusId}`;
      if (d.error) {
        process.stdout.write(`${head}  not decoded: ${d.error}\n`);
        return;
      }
      process.stdout.write(
        `${head}  "${d.caption}"  (confidence ${d.confidence!.toFixed(2)}, ${d.latencyMs!.toFixed(0)} ms${d.flags.length ? `, ${d.flags.join(', ')}` : ''})\n`,
      );
      if (d.mean) process.stdout.write(`      mean of ${d.mean.of} presentations: "${d.mean.caption}"\n`);
      if (d.baseline !== undefined) process.stdout.write(`      ridge baseline: "${d.baseline}"\n`);
      for (const r of d.references ?? []) process.stdout.write(`      ref: ${r}\n`);
    };

    const ac = new AbortController();
    const onSigint = () => ac.abort();
    process.once('SIGINT', onSigint);
    let dashUrl = '';
    let run: SessionRun;
    try {
      run = await runSessionThroughServe({
        session,
        decoder,
        baseline,
        speed,
        port,
        recordDir: stringFlag(p, 'record'),
        imagePairs: true,
        signal: ac.signal,
        decode: { strategy: stringFlag(p, 'strategy') as 'greedy' | 'beam' | 'sample', ...(rerank ? { rerank } : {}) },
        onDecoded: print,
        onServing: (url) => {
          dashUrl = url;
          say(`demo: dashboard at ${url}`);
          if (!json) process.stdout.write(`Dashboard: ${url}\n`);
        },
        log: (level, m) => {
          if (level !== 'info' || !json) say(m);
        },
      });
    } catch (e) {
      await baseline?.release();
      await decoder.release();
      const err = e as NodeJS.ErrnoException;
      if (err.code === 'EADDRINUSE')
        throw new UserError(`demo: port ${port} is already in use; stop the other server or pass --port 0.`);
      throw new UserError(`demo: ${err.message}`);
    }
    const st = run.stats;
    const scored = trials.filter((t) => !t.error && t.references?.length);
    const refs = Object.fromEntries(scored.map((t) => [`${t.run}/${t.trial}`, t.references!]));
    // METEOR needs Java via models/ (seconds): computed for machine-read summaries (--json / --once) only.
    const sopts = { meteor: (json || once) && !boolFlag(p, 'no-meteor'), log: say };
    const [metrics, baseMetrics] = await Promise.all([
      scored.length
        ? summaryScores(refs, Object.fromEntries(scored.map((t) => [`${t.run}/${t.trial}`, t.caption ?? ''])), sopts)
        : {},
      baseline && scored.length
        ? summaryScores(refs, Object.fromEntries(scored.map((t) => [`${t.run}/${t.trial}`, t.baseline ?? ''])), sopts)
        : undefined,
    ]);
    const composition = sessionComposition(session, scored, decoder, say);
    const image = await sessionImages(run, decoder, say);
    const summary: DemoSummary = {
      type: 'summary',
      trials: st.trialsSeen,
      decoded: st.trialsDecoded,
      metrics: roundAll(metrics),
      ...(baseMetrics ? { baseline: { name: 'ridge-retrieval' as const, ...roundAll(baseMetrics) } } : {}),
      latency_ms: {
        volume_p50: round(percentile(st.volumeMs, 50), 2),
        volume_p99: round(percentile(st.volumeMs, 99), 2),
        decode_p50: round(percentile(st.decodeMs, 50)),
        decode_p99: round(percentile(st.decodeMs, 99)),
      },
      volumes: { received: st.volumesReceived, processed: st.volumesProcessed, lost: st.volumesLost },
      realtime_factor: round(run.wallSeconds > 0 ? run.acquiredSeconds / run.wallSeconds : 0, 2),
      by_presentation: byPresentation(
        scored.map((t) => ({
          key: `${t.run}/${t.trial}`,
          presentation: t.presentation,
          references: t.references!,
          caption: t.caption ?? '',
          baseline: t.baseline,
          mean: t.mean ? { caption: t.mean.caption, baseline: t.mean.baseline } : undefined,
        })),
      ),
      ...(composition ? { composition } : {}),
      ...(image ? { image } : {}),
      rerank: rerankSetting,
      ...(calibration
        ? {
            calibration: {
              subject: calibration.subject,
              trials: calibration.trials,
              voxels: calibration.voxels,
              seconds: calibration.seconds,
            },
          }
        : {}),
    };
    if (json) process.stdout.write(JSON.stringify(summary) + '\n');
    else {
      const m = summary.metrics;
      process.stdout.write(
        `\nSummary: ${summary.decoded}/${summary.trials} trials decoded; BLEU-4 ${fmt(m.BLEU4)}, CIDEr ${fmt(m.CIDEr)}, ROUGE-L ${fmt(m.ROUGE_L)}` +
          (summary.baseline
            ? ` (ridge baseline BLEU-4 ${fmt(summary.baseline.BLEU4 as number)}, CIDEr ${fmt(summary.baseline.CIDEr as number)})`
            : '') +
          `\n         decode p50 ${summary.latency_ms.decode_p50} ms, p99 ${summary.latency_ms.decode_p99} ms; volume p50 ${summary.latency_ms.volume_p50} ms;` +
          ` ${summary.volumes.received} volumes (${summary.volumes.lost} lost); ${summary.realtime_factor}× real time\n` +
          (composition
            ? `         composition over ${composition.trials} trials: ${fmtComposition(composition.model)}` +
              (composition.baseline
                ? `\n         ridge baseline:           ${fmtComposition(composition.baseline)}`
                : '') +
              '\n'
            : '') +
          (image
            ? `         images over ${image.trials} trials: ${fmtImage(image.model)}` +
              (image.retrieval ? `\n         retrieval baseline:      ${fmtImage(image.retrieval)}` : '') +
              '\n'
            : '') +
          (calibration
            ? `         sub-${calibration.subject} calibrated on ${calibration.trials} trials, ${calibration.voxels} voxels (${calibration.seconds} s) into ${calibration.bundle}\n`
            : ''),
      );
    }
    if (!once && !ac.signal.aborted) {
      say(`demo: replay finished; still serving the dashboard at ${dashUrl} — press Ctrl-C to stop.`);
      await new Promise<void>((r) => ac.signal.addEventListener('abort', () => r(), { once: true }));
    }
    process.off('SIGINT', onSigint);
    await shutdown();
    return 0;

    async function shutdown(): Promise<void> {
      await run.close();
      await baseline?.release();
      await decoder.release();
    }
  },
};

/** The summary's composition block when the session's stimuli.tsv has scene facts; a bad stimuli.tsv is one log line. */
function sessionComposition(
  session: string,
  scored: DecodedTrial[],
  decoder: BrainDecoder,
  say: (m: string) => void,
): CompositionSummary | undefined {
  try {
    const scenes = readSceneTable(session);
    if (!scenes) {
      if (existsSync(join(session, 'stimuli.tsv')))
        say(
          "demo: no composition rates: the session's stimuli.tsv has no scene columns (simulated before they existed); simulate it again to get them.",
        );
      return undefined;
    }
    const trials = scored.map((t) => ({
      key: `${t.run}/${t.trial}`,
      stimulusId: t.stimulusId,
      caption: t.caption ?? '',
      baseline: t.baseline,
    }));
    return compositionSummary(trials, scenes, readBaselineCaptions(decoder.bundle) ?? undefined);
  } catch (e) {
    say(`demo: composition left out of the summary: ${(e as Error).message}`);
    return undefined;
  }
}

/**
 * The summary's image block: the session's reconstructions against the stimulus images its events carried. No block,
 * with one line saying why, when the bundle has no generator or no stimulus image arrived; a failure is one line too.
 */
async function sessionImages(
  run: SessionRun,
  decoder: BrainDecoder,
  say: (m: string) => void,
): Promise<ImageSummary | undefined> {
  const collected = run.imagePairs;
  if (!collected) return undefined;
  if (!decoder.hasGenerator) {
    say('demo: no image metrics: the model bundle has no image generator.');
    return undefined;
  }
  const pairs = collected.pairs();
  if (!pairs.length) {
    const c = collected.counts();
    say(
      c.stimuli === 0
        ? "demo: no image metrics: the session's events carried no stimulus images (events.tsv stim_file names the files under the session folder)."
        : `demo: no image metrics: none of the ${c.reconstructions} reconstructions had its stimulus image.`,
    );
    return undefined;
  }
  try {
    return await imageSummary(pairs, decoder.bundle, decoder.sessions, say);
  } catch (e) {
    say(`demo: image metrics left out of the summary: ${(e as Error).message}`);
    return undefined;
  }
}

function fmtImage(s: ImageScores): string {
  return (
    `PixCorr ${s.PixCorr.toFixed(3)}, SSIM ${s.SSIM.toFixed(3)}` +
    (s.TwoWayEffNet !== undefined ? `, EffNet 2-way ${(100 * s.TwoWayEffNet).toFixed(1)}%` : '')
  );
}

function fmtComposition(r: CompositionSummary['model']): string {
  const pct = (x: number | null | undefined) => (x === undefined || x === null ? '–' : `${Math.round(100 * x)}%`);
  return (
    `object ${pct(r.object)}, colour ${pct(r.colour)}, count ${pct(r.count)}, background ${pct(r.background)}, exact ${pct(r.exact)}` +
    (r.novel_trials ? ` (novel ${pct(r.novel_exact)} of ${r.novel_trials})` : '') +
    (r.copied !== undefined ? `, copied ${pct(r.copied)}` : '')
  );
}

function roundAll(m: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(m).map(([k, v]) => [k, Number(v.toFixed(4))]));
}

function fmt(x: number | undefined): string {
  return x === undefined ? '–' : x.toFixed(3);
}
