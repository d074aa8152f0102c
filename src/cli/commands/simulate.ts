import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from '../command.js';
import { numberFlag, parseArgs, requireString, stringFlag, type FlagSpecs } from '../args.js';
import { UserError } from '../../core/errors.js';

// The simulator is Python (models/mindsemantix/sim); this command validates options once and delegates to it,
// streaming its progress lines to stderr.
const specs: FlagSpecs = {
  out: { type: 'string' },
  subject: { type: 'string', default: 'sim01' },
  seed: { type: 'string', default: '0' },
  trials: { type: 'string', default: '62' },
  runs: { type: 'string', default: '1' },
  split: { type: 'string', default: 'test', choices: ['test', 'train', 'nsd'] },
  grid: { type: 'string', default: 'default', choices: ['default', 'nsd'] },
};

const help = `mindsemantix simulate --out DIR [--subject ID] [--seed N] [--trials N] [--runs N] [--split test|train|nsd] [--grid default|nsd]

Writes a simulated visual fMRI session as BIDS into DIR (docs/simulator.md, layout in docs/ARCHITECTURE.md):
4-D int16 EPI runs with head motion, events with 5 reference captions per image, stimulus PNGs, the ROI mask,
ground-truth motion and the NSD-style responses file (single-trial responses and GLM betas).

  --out DIR       output folder (created; files of an earlier session there are overwritten)
  --subject ID    virtual subject sim01 … sim08 (default sim01); anatomy and tuning depend only on the subject
  --seed N        seed of the trial order, noise and motion (default 0); the stimulus world is fixed
  --trials N      image trials per run (default 62, as in NSD)
  --runs N        runs (default 1)
  --split S       test: held-out scenes, each shown 3 times (default; what a decoder trained on
                  \`python -m mindsemantix.sim.dataset\` has never seen); train: training scenes; nsd: NSD's mix
  --grid G        default: 64×64×40 at 2.5 mm; nsd: 81×104×83 at 1.8 mm`;

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', '..');

export const command: Command = {
  name: 'simulate',
  summary: 'write a simulated visual fMRI session (BIDS) for trying the product without a scanner',
  help,
  async run(argv: string[]): Promise<number> {
    const p = parseArgs('simulate', argv, specs);
    if (p.positionals.length)
      throw new UserError(
        `simulate: unexpected argument "${p.positionals[0]}"; run \`mindsemantix simulate --help\`.`,
        2,
      );
    const out = requireString('simulate', p, 'out');
    const subject = stringFlag(p, 'subject') ?? 'sim01';
    if (!/^[A-Za-z0-9]+$/.test(subject))
      throw new UserError(
        `simulate: --subject must be letters and digits (a BIDS label) such as sim01 (got "${subject}").`,
        2,
      );
    const seed = numberFlag('simulate', p, 'seed', { integer: true, min: 0, max: 2 ** 31 - 1 }) ?? 0;
    const trials = numberFlag('simulate', p, 'trials', { integer: true, min: 1, max: 1000 }) ?? 62;
    const runs = numberFlag('simulate', p, 'runs', { integer: true, min: 1, max: 100 }) ?? 1;
    const split = stringFlag(p, 'split') ?? 'test';
    const grid = stringFlag(p, 'grid') ?? 'default';
    if (split === 'test' && trials * runs > 900) {
      throw new UserError(
        `simulate: --split test has 300 held-out scenes × 3 repeats = 900 trials at most (asked ${trials * runs}); use --split nsd for longer sessions.`,
        2,
      );
    }
    const python = join(root, '.venv', 'bin', 'python');
    if (!existsSync(python))
      throw new UserError('simulate: the Python environment (.venv) is missing; run `npm start` once to install it.');
    const args = [
      '-m',
      'mindsemantix.sim',
      '--out',
      resolve(out),
      '--subject',
      subject,
      '--seed',
      String(seed),
      '--trials',
      String(trials),
      '--runs',
      String(runs),
      '--split',
      split,
      '--grid',
      grid,
    ];
    const code = await new Promise<number>((resolveCode, reject) => {
      const child = spawn(python, args, { cwd: root, stdio: ['ignore', 'inherit', 'inherit'] });
      child.on('error', (e) =>
        reject(
          new UserError(
            `simulate: could not start ${python} (${e.message}); run \`npm start\` once to repair the environment.`,
          ),
        ),
      );
      child.on('close', (c, sig) => resolveCode(c ?? (sig ? 1 : 0)));
    });
    if (code !== 0)
      throw new UserError(`simulate: the simulator failed (exit ${code}); see the messages above.`, code === 2 ? 2 : 1);
    process.stderr.write(`simulate: session written to ${resolve(out)}\n`);
    return 0;
  },
};
