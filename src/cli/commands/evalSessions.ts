// `eval sessions`: caption quality on new sessions, measured as live decoding gets it (one computation with serving:
// the `responses` chain, RepeatMeans, BrainDecoder), pooled over sessions with bootstrap intervals over scenes.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve, basename } from 'node:path';
import { fileURLToPath } from 'node:url';
import { numberFlag, parseArgs, stringFlag, boolFlag, type FlagSpecs } from '../args.js';
import { UserError } from '../../core/errors.js';
import { BrainDecoder } from '../../inference/decoder.js';
import { parseRerank, rerankFlagSpecs, rerankHelp } from '../rerankFlags.js';
import { DEFAULT_RERANK, rerankOptions } from '../../inference/rerankSetting.js';
import { readBaselineCaptions, RidgeRetrieval } from '../../inference/baseline.js';
import { compositionSummary, type CompositionSummary } from '../../pipeline/compositionSummary.js';
import { readSceneTable, type SceneRow } from '../../pipeline/sceneTable.js';
import { BundleError } from '../../inference/bundle.js';
import { findBidsRuns, readEventsTsv } from '../../bids/bidsRun.js';
import { findResponseRuns, type ResponseRunFile } from '../../pipeline/responseFiles.js';
import { ResponsesInputError, writeSessionResponses } from '../../pipeline/sessionResponses.js';
import {
  decodeResponseRuns,
  scoreConditions,
  type ConditionScores,
  type EvalTrial,
} from '../../pipeline/evaluateResponses.js';

export const evalSessionsHelp = `mindsemantix eval sessions --models DIR (--session DIR... | --simulate SEEDS) [options]

Scores a bundle on whole sessions as live decoding sees them: each session's runs go through the serving chain
(\`responses\`), every trial is decoded from its single-trial response and, from a stimulus's second showing on, from
the mean of its presentations so far; the ridge baseline decodes the same vectors, and the read-out alone (the
Q-Former caption embedding → nearest training caption, no LM) is scored beside them. Prints CIDEr-D, BLEU-4, BLEU-1 and
ROUGE-L pooled over the sessions, single trial and by presentation, with 95 % bootstrap intervals over scenes.

  --models DIR         bundle to score (default models/bundles/default)
  --session DIR        a BIDS session with events (references from events.tsv or stimuli.tsv); repeatable
  --responses DIR      score response files already written (by \`responses\` or \`serve --record\`, under
                       derivatives/mindsemantix-decoder) instead of computing them; needs one --session for references
  --simulate SEEDS     comma list of seeds: simulate one new test session per seed (\`simulate --split test\`)
  --subject ID         subject of simulated sessions (default sim01)
  --runs N, --trials N runs and trials per run of simulated sessions (default 5 × 60: 100 scenes × 3)
  --work DIR           where simulated sessions and response files go (default data/eval-sessions)
  --resamples N        bootstrap resamples (default 1000)
  --out FILE           also write the full result (per-trial captions included) as JSON
  --json               print the summary as one JSON object
  --rag K              retrieval-augmented prompting (experimental): the K training captions nearest to the trial's
                       caption embedding are written after the soft prompt, for the LM to use (default 0: off)
${rerankHelp}`;

const specs: FlagSpecs = {
  models: { type: 'string', default: 'models/bundles/default' },
  session: { type: 'string', multiple: true },
  responses: { type: 'string' },
  simulate: { type: 'string' },
  subject: { type: 'string', default: 'sim01' },
  runs: { type: 'string', default: '5' },
  trials: { type: 'string', default: '60' },
  work: { type: 'string', default: 'data/eval-sessions' },
  resamples: { type: 'string', default: '1000' },
  out: { type: 'string' },
  json: { type: 'boolean' },
  rag: { type: 'string', default: '0' },
  ...rerankFlagSpecs,
};

const bin = fileURLToPath(new URL('../../../../bin/mindsemantix.mjs', import.meta.url));

/** Reference captions per stimulus id: stimuli.tsv at the dataset root if present, else the events' references column. */
export function referencesOf(session: string): Map<string, string[]> {
  const refs = new Map<string, string[]>();
  for (const dir of [session, resolve(session, '..'), resolve(session, '..', '..')]) {
    const f = join(dir, 'stimuli.tsv');
    if (!existsSync(f)) continue;
    const lines = readFileSync(f, 'utf8').split('\n').filter(Boolean);
    const head = lines[0].split('\t');
    const iId = head.indexOf('stimulus_id'),
      iCap = head.indexOf('captions');
    if (iId < 0 || iCap < 0) continue;
    for (const l of lines.slice(1)) {
      const c = l.split('\t');
      try {
        refs.set(c[iId], (JSON.parse(c[iCap]) as unknown[]).map(String));
      } catch {
        /* a row without JSON captions */
      }
    }
    break;
  }
  for (const r of findBidsRuns(session)) {
    if (!r.events) continue;
    for (const e of readEventsTsv(r.events, r.run))
      if (e.references?.length && !refs.has(e.stimulusId)) refs.set(e.stimulusId, e.references);
  }
  return refs;
}

const fmt = (c: ConditionScores | undefined, who: 'model' | 'baseline' | 'readout', m = 'CIDEr') => {
  const s = c?.[who]?.[m];
  return s ? `${(100 * s.value).toFixed(1)} [${(100 * s.lo).toFixed(1)}, ${(100 * s.hi).toFixed(1)}]` : '–';
};

/** The paired model-vs-ridge comparison: CIDEr-D difference ×100 and ratio, each with its paired interval. */
const paired = (c: ConditionScores) => {
  const v = c.versus_baseline;
  if (!v) return '–';
  const d = v.CIDEr_difference,
    r = v.CIDEr_ratio;
  const f1 = (x: number) => (100 * x).toFixed(1);
  return `${f1(d.value)} [${f1(d.lo)}, ${f1(d.hi)}], ${r.value.toFixed(2)}× [${r.lo.toFixed(2)}, ${r.hi.toFixed(2)}]`;
};

const pct = (x: number | null | undefined) => (x === undefined || x === null ? '–' : `${Math.round(100 * x)}%`);

/** Compositional rates (docs/metrics.md) of the LM, ridge and read-out captions, single trial and mean of the last presentation. */
function compositionByCondition(
  trials: readonly EvalTrial[],
  sessionDirs: string[],
  training?: string[],
):
  | Record<
      string,
      {
        trials: number;
        model: CompositionSummary['model'];
        baseline?: CompositionSummary['model'];
        readout?: CompositionSummary['model'];
      }
    >
  | undefined {
  const scenes = new Map<string, SceneRow>();
  for (const d of sessionDirs) for (const [k, v] of readSceneTable(d) ?? []) scenes.set(k, v);
  if (!scenes.size) return undefined;
  const out: Record<
    string,
    {
      trials: number;
      model: CompositionSummary['model'];
      baseline?: CompositionSummary['model'];
      readout?: CompositionSummary['model'];
    }
  > = {};
  const maxK = Math.max(0, ...trials.map((t) => t.presentation));
  const conds: [string, { t: EvalTrial; caption: string; baseline?: string; readout?: string }[]][] = [
    ['single_trial', trials.map((t) => ({ t, caption: t.caption, baseline: t.baseline, readout: t.readout }))],
    ...(maxK >= 2
      ? [
          [
            `mean_of_${maxK}`,
            trials
              .filter((t) => t.presentation === maxK && t.mean)
              .map((t) => ({ t, caption: t.mean!.caption, baseline: t.mean!.baseline, readout: t.mean!.readout })),
          ] as [string, { t: EvalTrial; caption: string; baseline?: string; readout?: string }[]],
        ]
      : []),
  ];
  for (const [name, sel] of conds) {
    const lm = compositionSummary(
      sel.map((x) => ({ key: x.t.key, stimulusId: x.t.stimulusId, caption: x.caption, baseline: x.baseline })),
      scenes,
      training,
    );
    if (!lm) continue;
    const ro = sel.every((x) => x.readout !== undefined)
      ? compositionSummary(
          sel.map((x) => ({ key: x.t.key, stimulusId: x.t.stimulusId, caption: x.readout! })),
          scenes,
          training,
        )
      : undefined;
    out[name] = {
      trials: lm.trials,
      model: lm.model,
      ...(lm.baseline ? { baseline: lm.baseline } : {}),
      ...(ro ? { readout: ro.model } : {}),
    };
  }
  return out;
}

export async function runEvalSessions(argv: string[]): Promise<number> {
  const p = parseArgs('eval sessions', argv, specs);
  if (p.positionals.length)
    throw new UserError(
      `eval sessions: unexpected argument "${p.positionals[0]}"; run \`mindsemantix eval --help\`.`,
      2,
    );
  const say = (m: string) => process.stderr.write(`${m}\n`);
  const work = resolve(stringFlag(p, 'work')!);
  const given = ((p.flags.session as string[] | undefined) ?? []).map((s) => resolve(s));
  const seeds = (stringFlag(p, 'simulate') ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  if (seeds.some((s) => !/^\d+$/.test(s)))
    throw new UserError('eval sessions: --simulate takes a comma list of integer seeds such as 101,102,103.', 2);
  const responsesDir = stringFlag(p, 'responses');
  if (responsesDir && given.length !== 1)
    throw new UserError('eval sessions: --responses needs exactly one --session (where the references are).', 2);
  if (!given.length && !seeds.length)
    throw new UserError('eval sessions: pass --session DIR (repeatable) or --simulate SEEDS.', 2);
  const subject = stringFlag(p, 'subject')!;
  const runs = numberFlag('eval sessions', p, 'runs', { integer: true, min: 1, max: 100 })!;
  const trials = numberFlag('eval sessions', p, 'trials', { integer: true, min: 1, max: 1000 })!;
  const resamples = numberFlag('eval sessions', p, 'resamples', { integer: true, min: 0, max: 100_000 })!;
  const rag = numberFlag('eval sessions', p, 'rag', { integer: true, min: 0, max: 10 })!;
  if (rag > 0 && stringFlag(p, 'rerank') !== undefined && stringFlag(p, 'rerank') !== '1')
    throw new UserError('eval sessions: --rag and --rerank cannot be combined; pass one of them.', 2);
  // Retrieval-augmented prompts are their own experiment: they are decoded without reranking.
  const rerankSetting = rag > 0 ? { ...DEFAULT_RERANK, candidates: 1 } : parseRerank('eval sessions', p);
  for (const s of given) if (!existsSync(s)) throw new UserError(`eval sessions: session ${s} does not exist.`, 2);

  const sessions: { name: string; dir: string }[] = given.map((dir) => ({ name: basename(dir), dir }));
  for (const seed of seeds) {
    const dir = join(work, `sub-${subject}_seed-${seed}_${runs}x${trials}`);
    if (!existsSync(join(dir, 'dataset_description.json'))) {
      say(`eval sessions: simulating sub-${subject}, seed ${seed}, ${runs} run(s) × ${trials} trials → ${dir}`);
      const r = spawnSync(
        process.execPath,
        [
          bin,
          'simulate',
          '--out',
          dir,
          '--subject',
          subject,
          '--seed',
          seed,
          '--runs',
          String(runs),
          '--trials',
          String(trials),
          '--split',
          'test',
        ],
        { stdio: ['ignore', 2, 2] },
      );
      if (r.status !== 0)
        throw new UserError(
          `eval sessions: simulating seed ${seed} failed (exit ${r.status}); see the messages above.`,
        );
    }
    sessions.push({ name: `seed-${seed}`, dir });
  }

  let decoder: BrainDecoder;
  try {
    decoder = await BrainDecoder.load(stringFlag(p, 'models')!, { log: say });
  } catch (e) {
    if (e instanceof BundleError) throw new UserError(`eval sessions: ${e.message}`);
    throw e;
  }
  const baseline = await RidgeRetrieval.load(decoder.bundle, decoder.sessions);
  try {
    const files: { name: string; runs: ResponseRunFile[]; refs: Map<string, string[]> }[] = [];
    for (const s of sessions) {
      let dir = responsesDir
        ? resolve(responsesDir)
        : join(work, 'responses', `${decoder.bundle.manifest.name}`, s.name);
      if (!responsesDir && !existsSync(dir)) {
        try {
          await writeSessionResponses({
            session: s.dir,
            manifest: decoder.bundle.manifest,
            bundlePath: decoder.bundle.path,
            out: dir,
            log: say,
          });
        } catch (e) {
          if (e instanceof ResponsesInputError) throw new UserError(`eval sessions: ${s.name}: ${e.message}`);
          throw e;
        }
      }
      if (responsesDir && existsSync(join(dir, 'derivatives', 'mindsemantix-decoder')))
        dir = join(dir, 'derivatives', 'mindsemantix-decoder');
      files.push({ name: s.name, runs: findResponseRuns(dir), refs: referencesOf(s.dir) });
    }
    const all: EvalTrial[] = [];
    const perSession: Record<string, Record<string, ConditionScores>> = {};
    const refsOf = (id: string) => {
      for (const f of files) {
        const r = f.refs.get(id);
        if (r) return r;
      }
      return undefined;
    };
    // Built once: with the reference score it holds the caption bank's n-gram tables.
    const rerank = rerankOptions(rerankSetting, baseline);
    for (const f of files) {
      const t0 = Date.now();
      const context =
        rag > 0 && baseline
          ? (e: Float32Array) =>
              ` (similar images: ${baseline
                .nearestK(e.slice(), rag)
                .map((c) => c.replace(/\.$/, ''))
                .join('; ')})`
          : undefined;
      const decoded = await decodeResponseRuns(f.runs, decoder, baseline, {
        decode: { context, ...(rerank ? { rerank } : {}) },
        sessionLabel: (r) => `${f.name}/${r.subject}/${r.session}`,
        onProgress: (d, n) => {
          if (d === n || d % 64 === 0)
            say(`eval sessions: ${f.name}: decoded ${d}/${n} trials (${((Date.now() - t0) / 1000).toFixed(0)} s)`);
        },
      });
      all.push(...decoded);
      perSession[f.name] = scoreConditions(decoded, (id) => f.refs.get(id), { resamples });
    }
    const pooled = scoreConditions(all, refsOf, { resamples });
    const composition = compositionByCondition(
      all,
      sessions.map((s) => s.dir),
      readBaselineCaptions(decoder.bundle) ?? undefined,
    );
    const summary = {
      type: 'eval-sessions',
      bundle: decoder.bundle.manifest.name,
      sessions: sessions.map((s) => s.name),
      rerank: rerankSetting,
      trials: all.length,
      scenes: new Set(all.map((t) => t.stimulusId)).size,
      resamples,
      pooled,
      per_session: perSession,
      ...(composition ? { composition } : {}),
    };
    const out = stringFlag(p, 'out');
    if (out) {
      mkdirSync(resolve(out, '..'), { recursive: true });
      writeFileSync(out, JSON.stringify({ ...summary, captions: all }, null, 1));
    }
    if (boolFlag(p, 'json')) process.stdout.write(JSON.stringify(summary) + '\n');
    else {
      const lines = [
        `bundle ${summary.bundle}: ${summary.trials} trials, ${summary.scenes} scenes, ${sessions.length} session(s); CIDEr-D ×100 [95 % interval over scenes]`,
      ];
      lines.push(
        `${'condition'.padEnd(14)} ${'trials'.padStart(6)}  ${'model (LM)'.padEnd(20)} ${'ridge baseline'.padEnd(20)} ${'read-out retrieval'.padEnd(20)} model − ridge (paired), model / ridge`,
      );
      for (const [k, c] of Object.entries(pooled))
        lines.push(
          `${k.padEnd(14)} ${String(c.trials).padStart(6)}  ${fmt(c, 'model').padEnd(20)} ${fmt(c, 'baseline').padEnd(20)} ${fmt(c, 'readout').padEnd(20)} ${paired(c)}`,
        );
      for (const [k, c] of Object.entries(composition ?? {})) {
        const f = (r: CompositionSummary['model'] | undefined) =>
          r
            ? `object ${pct(r.object)}, colour ${pct(r.colour)}, exact ${pct(r.exact)}, novel exact ${pct(r.novel_exact)}, copied ${pct(r.copied)}`
            : '–';
        lines.push(`composition ${k}: LM ${f(c.model)} | ridge ${f(c.baseline)} | read-out ${f(c.readout)}`);
      }
      for (const [name, conds] of Object.entries(perSession)) {
        lines.push(
          `  ${name}: ${Object.entries(conds)
            .map(([k, c]) => `${k} ${fmt(c, 'model')} vs ${fmt(c, 'baseline')}`)
            .join('; ')}`,
        );
      }
      process.stdout.write(lines.join('\n') + '\n');
    }
    return 0;
  } finally {
    await baseline?.release();
    await decoder.release();
  }
}
