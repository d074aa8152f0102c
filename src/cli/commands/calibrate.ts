import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, readSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from '../command.js';
import { boolFlag, numberFlag, parseArgs, requireString, stringFlag, type FlagSpecs } from '../args.js';
import { UserError } from '../../core/errors.js';
import { BundleError, loadBundle, type Bundle } from '../../inference/bundle.js';
import { findBidsRuns, readEventsTsv, type BidsRunFiles } from '../../bids/bidsRun.js';
import { ResponsesInputError, writeSessionResponses } from '../../pipeline/sessionResponses.js';
import { niftiDims } from '../../scanner/nifti.js';

// A new person: the responses come from the serving chain itself (writeSessionResponses, as `responses` and
// `serve --record` compute them), then models/mindsemantix/calibrate.py fits the person's read-out onto the bundle's
// frozen shared encoder + Q-Former and that person's ridge baseline, and writes a new bundle. BUNDLE is only read.
const specs: FlagSpecs = {
  session: { type: 'string' },
  subject: { type: 'string' },
  models: { type: 'string', default: 'models/bundles/default' },
  out: { type: 'string' },
  mask: { type: 'string' },
  runs: { type: 'string' },
  voxels: { type: 'string' },
  seed: { type: 'string', default: '0' },
  replace: { type: 'boolean' },
  json: { type: 'boolean' },
  'shared-encoder': { type: 'string', default: 'bundle', choices: ['bundle', 'random'] },
  synthetic: { type: 'string' },
};

const help = `mindsemantix calibrate --session DIR --subject ID --models BUNDLE --out NEW_BUNDLE [--mask FILE] [--runs LIST]
                        [--voxels N] [--synthetic N] [--seed N] [--replace] [--json]

Adds a person the bundle has never seen, from that person's calibration runs (captioned images: a BIDS session, or
a \`serve --record\` recording). Each trial's response is computed with the serving chain (as \`responses\` does), then
the person's read-out (a linear layer voxels → the shared code) is fitted onto the bundle's frozen shared encoder,
Q-Former and LM, and that person's ridge-retrieval baseline on the same trials. Writes NEW_BUNDLE: every file of
BUNDLE plus the person's encoder, baseline and mask, with a \`calibration\` record in manifest.json. BUNDLE is never
modified. \`serve --models NEW_BUNDLE\` then decodes the person.

  --session DIR    BIDS session with the calibration runs (events.tsv with a references column of captions)
  --subject ID     the person's BIDS label (sub-<ID>)
  --models BUNDLE  bundle to extend (default models/bundles/default)
  --out DIR        new bundle folder (must not exist)
  --mask FILE      ROI mask (NIfTI) in the person's functional space; without it, voxels are chosen from the
                   calibration data: the most reliable ones (repeats, else split-half predictability from the
                   captions) inside an automatic brain mask
  --runs LIST      only these runs (comma list of run names, e.g. task-vision_run-01,task-vision_run-02)
  --voxels N       without --mask: how many voxels to keep (default: the median of the bundle's subjects)
  --synthetic N    when BUNDLE has an anatomical prior (python -m mindsemantix.anatomy_prior): also fit the read-out
                   on N responses synthesised from it at this person's voxels (default 0: real trials only; 1000
                   has not yet shown a gain, docs/experiments.md E23). The voxels are placed by the brain's centre
                   and extent in an automatic brain mask of the mean EPI, built then even when --mask is given
  --seed N         seed of the fit (default 0)
  --replace        the subject is already in BUNDLE: calibrate that person again (the new bundle drops the old fit)
  --json           print one JSON summary (trials, voxels, held-out retrieval, seconds) on stdout
  --shared-encoder bundle|random   experiments only: random = fit onto an untrained shared encoder (learning curve)

Progress goes to stderr. About 500 trials take a few minutes on 2 CPU cores.`;

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', '..');

function readHead(path: string, bytes = 1 << 16): Uint8Array {
  const fd = openSync(path, 'r');
  try {
    const buf = Buffer.alloc(bytes);
    const n = readSync(fd, buf, 0, bytes, 0);
    return new Uint8Array(buf.subarray(0, n));
  } finally {
    closeSync(fd);
  }
}

/** {stimulus_id: references} over the runs' events; throws one sentence when no trial has captions. */
function sessionCaptions(runs: BidsRunFiles[], subject: string): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const r of runs) {
    if (!r.events)
      throw new UserError(
        `calibrate: run ${r.run} of sub-${subject} has no _events.tsv; calibration needs each trial's stimulus and captions.`,
      );
    for (const e of readEventsTsv(r.events, r.run)) if (e.references?.length) out[e.stimulusId] = e.references;
  }
  if (!Object.keys(out).length) {
    throw new UserError(
      `calibrate: the calibration runs of sub-${subject} have no captions (no "references" column in their events.tsv); record calibration runs of captioned images.`,
    );
  }
  return out;
}

function checkMaskFits(mask: string, run: BidsRunFiles): void {
  let m: number[], b: number[];
  try {
    m = niftiDims(readHead(mask));
  } catch (e) {
    throw new UserError(`calibrate: --mask ${mask} is not a readable NIfTI image (${(e as Error).message}).`);
  }
  try {
    b = niftiDims(readHead(run.bold));
  } catch (e) {
    throw new UserError(`calibrate: run ${run.bold} is not a readable NIfTI image (${(e as Error).message}).`);
  }
  if (m.slice(0, 3).join('×') !== b.slice(0, 3).join('×')) {
    throw new UserError(
      `calibrate: the mask is ${m.slice(0, 3).join('×')} voxels but the runs are ${b.slice(0, 3).join('×')}; pass a mask in this person's functional space.`,
    );
  }
}

function python(args: string[], what: string): Promise<number> {
  const py = join(root, '.venv', 'bin', 'python');
  if (!existsSync(py))
    throw new UserError('calibrate: the Python environment (.venv) is missing; run `npm start` once to install it.');
  // this checkout's models/ first, whatever the environment's editable install points at
  const env = {
    ...process.env,
    PYTHONPATH: [join(root, 'models'), process.env.PYTHONPATH].filter(Boolean).join(':'),
    HF_HUB_OFFLINE: '1',
    TRANSFORMERS_OFFLINE: '1',
  };
  return new Promise<number>((res, rej) => {
    const child = spawn(py, args, { cwd: root, env, stdio: ['ignore', 'inherit', 'inherit'] });
    child.on('error', (e) =>
      rej(
        new UserError(
          `calibrate: could not start ${py} for ${what} (${e.message}); run \`npm start\` once to repair the environment.`,
        ),
      ),
    );
    child.on('close', (c, sig) => res(c ?? (sig ? 1 : 0)));
  });
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

export const command: Command = {
  name: 'calibrate',
  summary: "add a new person to a bundle from calibration runs (fits that person's read-out and ridge baseline)",
  help,
  async run(argv: string[]): Promise<number> {
    const t0 = Date.now();
    const p = parseArgs('calibrate', argv, specs);
    if (p.positionals.length)
      throw new UserError(
        `calibrate: unexpected argument "${p.positionals[0]}"; run \`mindsemantix calibrate --help\`.`,
        2,
      );
    const session = resolve(requireString('calibrate', p, 'session'));
    const subject = requireString('calibrate', p, 'subject');
    if (!/^[A-Za-z0-9]+$/.test(subject))
      throw new UserError(
        `calibrate: --subject must be letters and digits (a BIDS label such as sim21), got "${subject}".`,
        2,
      );
    const out = resolve(requireString('calibrate', p, 'out'));
    const mask = stringFlag(p, 'mask') ? resolve(stringFlag(p, 'mask')!) : undefined;
    const seed = numberFlag('calibrate', p, 'seed', { integer: true, min: 0, max: 2 ** 31 - 1 }) ?? 0;
    const replace = boolFlag(p, 'replace');
    const synthetic = numberFlag('calibrate', p, 'synthetic', { integer: true, min: 0, max: 20_000 });
    if (existsSync(out))
      throw new UserError(
        `calibrate: ${out} already exists; pass a new --out folder (calibrate never overwrites a bundle).`,
        2,
      );
    let bundle: Bundle;
    try {
      bundle = await loadBundle(stringFlag(p, 'models')!);
    } catch (e) {
      if (e instanceof BundleError) throw new UserError(`calibrate: ${e.message}`);
      throw e;
    }
    if (resolve(bundle.dir) === out) throw new UserError('calibrate: --out is the input bundle; pass a new folder.', 2);
    if (bundle.manifest.subjects[subject] && !replace) {
      throw new UserError(
        `calibrate: the bundle already has sub-${subject}; pass --replace to calibrate that person again, or another --subject.`,
        2,
      );
    }
    let runs: BidsRunFiles[];
    try {
      runs = findBidsRuns(session).filter((r) => r.subject === subject);
    } catch (e) {
      throw new UserError(`calibrate: ${(e as Error).message}`, 2);
    }
    const only = stringFlag(p, 'runs')
      ?.split(',')
      .map((s) => s.trim())
      .filter(Boolean);
    if (only) {
      const missing = only.filter((r) => !runs.some((x) => x.run === r));
      if (missing.length)
        throw new UserError(
          `calibrate: sub-${subject} has no run ${missing[0]} under ${session} (it has ${runs.map((r) => r.run).join(', ') || 'none'}).`,
          2,
        );
      runs = runs.filter((r) => only.includes(r.run));
    }
    if (!runs.length)
      throw new UserError(
        `calibrate: no runs of sub-${subject} under ${session}; pass the session folder with that person's calibration runs.`,
        2,
      );
    const captions = sessionCaptions(runs, subject);
    if (mask) {
      if (!existsSync(mask)) throw new UserError(`calibrate: --mask ${mask} does not exist.`, 2);
      checkMaskFits(mask, runs[0]);
    }
    const voxels =
      numberFlag('calibrate', p, 'voxels', { integer: true, min: 10, max: 10_000_000 }) ??
      median(Object.values(bundle.manifest.subjects).map((s) => s.voxels));

    const tmp = mkdtempSync(join(tmpdir(), 'mindsemantix-calibrate-'));
    try {
      const log = (m: string) => process.stderr.write(`${m}\n`);
      // The anatomical prior places the ROI in the brain's own frame, so it needs the brain mask even beside --mask.
      const usePrior = Boolean(bundle.manifest.anatomy_prior) && (synthetic ?? 0) > 0;
      const brainMask = !mask || usePrior ? join(tmp, 'brain-mask.nii.gz') : undefined;
      const chainMask = mask ?? brainMask!;
      if (brainMask) {
        log(
          mask
            ? `calibrate: building an automatic brain mask of sub-${subject} from the mean EPI (the anatomical prior's frame)`
            : `calibrate: no --mask: building an automatic brain mask of sub-${subject} from the mean EPI`,
        );
        const c = await python(
          ['-m', 'mindsemantix.calibrate_mask', '--session', session, '--subject', subject, '--out', brainMask],
          'the automatic mask',
        );
        if (c !== 0)
          throw new UserError(
            `calibrate: the automatic brain mask failed (exit ${c}); see the messages above, or pass --mask FILE.`,
          );
      }
      log(`calibrate: computing ${runs.length} run(s) of responses with the serving chain`);
      const responsesDir = join(tmp, 'responses');
      try {
        await writeSessionResponses({
          session,
          manifest: bundle.manifest,
          bundlePath: bundle.path,
          out: responsesDir,
          subject,
          mask: chainMask,
          runs: runs.map((r) => r.run),
          log,
        });
      } catch (e) {
        if (e instanceof ResponsesInputError) throw new UserError(`calibrate: ${e.message}`);
        throw e;
      }
      writeFileSync(join(tmp, 'captions.json'), JSON.stringify(captions));
      const summaryPath = join(tmp, 'summary.json');
      const args = [
        '-m',
        'mindsemantix.calibrate',
        '--responses',
        responsesDir,
        '--captions',
        join(tmp, 'captions.json'),
        '--bundle',
        bundle.dir,
        '--subject',
        subject,
        '--out',
        out,
        '--session',
        session,
        '--seed',
        String(seed),
        '--summary',
        summaryPath,
        '--seconds-before',
        String((Date.now() - t0) / 1000),
        '--shared-encoder',
        stringFlag(p, 'shared-encoder') ?? 'bundle',
        '--command',
        ['mindsemantix', 'calibrate', ...argv].join(' '),
        ...(mask ? ['--mask', mask] : ['--voxels', String(voxels)]),
        ...(brainMask ? ['--brain-mask', brainMask] : []),
        ...(synthetic !== undefined ? ['--synthetic', String(synthetic)] : []),
        ...(replace ? ['--replace'] : []),
      ];
      const code = await python(args, 'the calibration');
      const summary = existsSync(summaryPath)
        ? (JSON.parse(readFileSync(summaryPath, 'utf8')) as Record<string, unknown>)
        : undefined;
      if (summary?.error) throw new UserError(`calibrate: ${String(summary.error)}`, 2);
      if (code !== 0 || !summary)
        throw new UserError(
          `calibrate: the calibration failed (exit ${code}); see the messages above. ${bundle.dir} is unchanged.`,
        );
      if (boolFlag(p, 'json')) process.stdout.write(JSON.stringify(summary) + '\n');
      else
        process.stderr.write(`calibrate: sub-${subject} added; decode with \`mindsemantix serve --models ${out}\`\n`);
      return 0;
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  },
};
