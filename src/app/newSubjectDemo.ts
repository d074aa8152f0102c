// `demo --new-subject`: the new-person story with the real parts. (1) simulate the person's calibration session,
// (2) replay it through serve with --record (the bundle does not know the person: "not calibrated yet"), (3) run
// `calibrate` on the recording into a new bundle under the work folder, (4) simulate the person's test session.
// `demo` then decodes (4) live with the new bundle. Finished steps are reused (state.json) unless `fresh`.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { UserError } from '../core/errors.js';
import { BrainDecoder } from '../inference/decoder.js';
import { BundleError, loadBundle, type Bundle } from '../inference/bundle.js';
import { runSessionThroughServe } from './session.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const CLI = join(ROOT, 'bin', 'mindsemantix.mjs');

export interface NewSubjectOptions {
  subject: string;
  /** Work folder (sessions, recording, new bundle, state.json). */
  work: string;
  /** Bundle to extend (only read). */
  models: string;
  calibrationRuns: number;
  calibrationTrials: number;
  testRuns: number;
  testTrials: number;
  fresh?: boolean;
  /** Port of the recording serve (step 2); 0 picks a free one. */
  port: number;
  log: (line: string) => void;
  signal?: AbortSignal;
}

/** The summary's `calibration` object. */
export interface NewSubjectCalibration {
  subject: string;
  trials: number;
  voxels: number;
  seconds: number;
  bundle: string;
}

export interface NewSubjectPrepared {
  /** The person's test session, to decode live with `bundle`. */
  session: string;
  bundle: string;
  calibration: NewSubjectCalibration;
}

type StepName = 'simulate-calibration' | 'record' | 'calibrate' | 'simulate-test';
interface StepRecord {
  key: string;
  seconds: number;
  result?: unknown;
}
type State = Partial<Record<StepName, StepRecord>>;

const WHAT = 'demo --new-subject';

/** Runs `mindsemantix <args>` as a child; stdout is returned, stderr kept for the failure sentence. */
function cli(args: string[], signal?: AbortSignal): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((res, rej) => {
    const child = spawn(process.execPath, [CLI, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], signal });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
      if (stderr.length > 1 << 20) stderr = stderr.slice(-(1 << 19));
    });
    child.on('error', (e) => rej(new UserError(`${WHAT}: could not run \`mindsemantix ${args[0]}\` (${e.message}).`)));
    child.on('close', (c, sig) => res({ code: c ?? (sig ? 1 : 0), stdout, stderr }));
  });
}

function lastLine(s: string): string {
  const lines = s
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
  return lines[lines.length - 1] ?? '(no message)';
}

export async function prepareNewSubject(o: NewSubjectOptions): Promise<NewSubjectPrepared> {
  const work = resolve(o.work);
  const say = (m: string) => o.log(`demo: ${m}`);
  if (o.calibrationRuns * o.calibrationTrials < 50) {
    throw new UserError(
      `${WHAT}: ${o.calibrationRuns} × ${o.calibrationTrials} calibration trials is too few (calibrate needs at least 50 usable ones); raise --calibration-runs or --calibration-trials.`,
      2,
    );
  }
  let input: Bundle;
  try {
    input = await loadBundle(o.models, { verify: false });
  } catch (e) {
    if (e instanceof BundleError) throw new UserError(`${WHAT}: ${e.message}`);
    throw e;
  }
  const bundleSubjects = Object.keys(input.manifest.subjects);
  if (bundleSubjects.includes(o.subject)) {
    throw new UserError(
      `${WHAT}: sub-${o.subject} is already in the bundle ${o.models} (${bundleSubjects.join(', ')}); pass a new person's id such as sim21.`,
      2,
    );
  }
  if (o.fresh) rmSync(work, { recursive: true, force: true });
  try {
    mkdirSync(work, { recursive: true });
  } catch (e) {
    throw new UserError(`${WHAT}: cannot create the work folder ${work} (${(e as Error).message}); pass --work DIR.`);
  }
  const statePath = join(work, 'state.json');
  let state: State = {};
  try {
    if (existsSync(statePath)) state = JSON.parse(readFileSync(statePath, 'utf8')) as State;
  } catch {
    state = {};
  }
  const calSim = join(work, 'calibration-simulated');
  const recording = join(work, 'calibration-recording');
  const bundle = join(work, 'bundle');
  const testSim = join(work, 'test-simulated');
  const mask = join(calSim, 'derivatives', 'mindsemantix', `sub-${o.subject}`, `sub-${o.subject}_roi-mask.nii.gz`);
  const modelsAbs = resolve(o.models);

  // One key per step: its inputs, chained through the steps it depends on; a changed key redoes the step.
  const keys: Record<StepName, string> = {} as Record<StepName, string>;
  keys['simulate-calibration'] = JSON.stringify({
    s: o.subject,
    r: o.calibrationRuns,
    t: o.calibrationTrials,
    seed: 1,
  });
  keys.record = `${keys['simulate-calibration']}|record`;
  keys.calibrate = `${keys.record}|${modelsAbs}`;
  keys['simulate-test'] = JSON.stringify({ s: o.subject, r: o.testRuns, t: o.testTrials, seed: 2 });
  const outputs: Record<StepName, string> = {
    'simulate-calibration': calSim,
    record: recording,
    calibrate: bundle,
    'simulate-test': testSim,
  };
  const after: Partial<Record<StepName, StepName>> = { record: 'simulate-calibration', calibrate: 'record' };
  const ran = new Set<StepName>();
  const total = 4;
  let index = 0;

  async function step<T>(
    name: StepName,
    title: string,
    run: () => Promise<{ result?: T; detail?: string }>,
  ): Promise<T | undefined> {
    index++;
    const prev = state[name];
    const upstream = after[name];
    if (prev && prev.key === keys[name] && existsSync(outputs[name]) && !(upstream && ran.has(upstream))) {
      say(
        `[${index}/${total}] ${title}: reused from ${outputs[name]} (took ${prev.seconds.toFixed(1)} s; --fresh redoes it)`,
      );
      return prev.result as T | undefined;
    }
    rmSync(outputs[name], { recursive: true, force: true });
    delete state[name];
    say(`[${index}/${total}] ${title}…`);
    const t0 = performance.now();
    ran.add(name);
    const r = await run();
    const seconds = (performance.now() - t0) / 1000;
    state[name] = { key: keys[name], seconds, ...(r.result !== undefined ? { result: r.result } : {}) };
    writeFileSync(statePath, JSON.stringify(state, null, 2) + '\n');
    say(`[${index}/${total}] ${title}: done in ${seconds.toFixed(1)} s${r.detail ? ` (${r.detail})` : ''}`);
    return r.result;
  }

  const simulate = async (out: string, runs: number, trials: number, split: 'train' | 'test', seed: number) => {
    const r = await cli(
      [
        'simulate',
        '--out',
        out,
        '--subject',
        o.subject,
        '--seed',
        String(seed),
        '--runs',
        String(runs),
        '--trials',
        String(trials),
        '--split',
        split,
      ],
      o.signal,
    );
    if (r.code !== 0) {
      rmSync(out, { recursive: true, force: true });
      throw new UserError(
        `${WHAT}: simulating sub-${o.subject}'s ${split === 'train' ? 'calibration' : 'test'} session failed: ${lastLine(r.stderr)}`,
      );
    }
    return {};
  };

  await step(
    'simulate-calibration',
    `simulating sub-${o.subject}'s calibration session (${o.calibrationRuns} run(s) × ${o.calibrationTrials} captioned training images)`,
    () => simulate(calSim, o.calibrationRuns, o.calibrationTrials, 'train', 1),
  );

  await step('record', `replaying the calibration session through serve --record ${recording}`, async () => {
    const decoder = await BrainDecoder.load(input, { log: () => {} });
    let notCalibrated: string | undefined;
    try {
      const run = await runSessionThroughServe({
        session: calSim,
        decoder,
        speed: 'max',
        port: o.port,
        recordDir: recording,
        signal: o.signal,
        onServing: (url) => say(`recording serve's dashboard at ${url}`),
        log: (level, m) => {
          if (level === 'error') say(m);
        },
      });
      notCalibrated = run.dashboard.state.snapshot().alerts.find((a) => a.code === 'not-calibrated')?.message;
      await run.close();
    } catch (e) {
      rmSync(recording, { recursive: true, force: true });
      const err = e as NodeJS.ErrnoException;
      if (err.code === 'EADDRINUSE')
        throw new UserError(`${WHAT}: port ${o.port} is already in use; stop the other server or pass --port 0.`);
      throw new UserError(`${WHAT}: recording the calibration session failed: ${err.message}`);
    } finally {
      await decoder.release();
    }
    if (o.signal?.aborted)
      throw new UserError(`${WHAT}: interrupted while recording; run it again to redo the recording.`);
    if (!existsSync(join(recording, `sub-${o.subject}`)))
      throw new UserError(`${WHAT}: serve recorded nothing under ${recording}; run again with --fresh.`);
    return {
      detail: notCalibrated ? `dashboard: "${notCalibrated}"` : 'the dashboard showed no "not calibrated yet" notice',
    };
  });

  const cal = await step<NewSubjectCalibration>(
    'calibrate',
    `calibrating sub-${o.subject} on the recording (new bundle ${bundle}; ${o.models} is only read)`,
    async () => {
      if (!existsSync(mask))
        throw new UserError(`${WHAT}: the simulated ROI mask ${mask} is missing; run again with --fresh.`);
      const r = await cli(
        [
          'calibrate',
          '--session',
          recording,
          '--subject',
          o.subject,
          '--models',
          o.models,
          '--out',
          bundle,
          '--mask',
          mask,
          '--json',
        ],
        o.signal,
      );
      if (r.code !== 0) {
        rmSync(bundle, { recursive: true, force: true });
        throw new UserError(`${WHAT}: calibrating sub-${o.subject} failed: ${lastLine(r.stderr)}`);
      }
      let s: { trials: number; voxels: number; seconds: number };
      try {
        s = JSON.parse(lastLine(r.stdout)) as typeof s;
      } catch {
        throw new UserError(`${WHAT}: calibrate printed no JSON summary; run again with --fresh.`);
      }
      const result: NewSubjectCalibration = {
        subject: o.subject,
        trials: s.trials,
        voxels: s.voxels,
        seconds: s.seconds,
        bundle,
      };
      return { result, detail: `${s.trials} trials, ${s.voxels} voxels` };
    },
  );

  await step(
    'simulate-test',
    `simulating sub-${o.subject}'s test session (${o.testRuns} run(s) × ${o.testTrials} held-out images)`,
    () => simulate(testSim, o.testRuns, o.testTrials, 'test', 2),
  );

  if (!cal) throw new UserError(`${WHAT}: ${statePath} has no calibration result; run again with --fresh.`);
  return { session: testSim, bundle, calibration: cal };
}
