import { resolve } from 'node:path';
import type { Command } from '../command.js';
import { boolFlag, parseArgs, requireString, stringFlag, type FlagSpecs } from '../args.js';
import { UserError } from '../../core/errors.js';
import { BundleError, loadBundle } from '../../inference/bundle.js';
import { ResponsesInputError, writeSessionResponses } from '../../pipeline/sessionResponses.js';

const specs: FlagSpecs = {
  models: { type: 'string', default: 'models/bundles/default' },
  subject: { type: 'string' },
  mask: { type: 'string' },
  out: { type: 'string' },
  json: { type: 'boolean' },
};

const help = `mindsemantix responses SESSION --models DIR [--subject ID] [--mask FILE] --out DIR [--json]

Runs the serving chain (streams/: motion correction, mask, detrending, z-scoring, trial responses, configured by the
bundle's preprocessing block) offline over every run of a BIDS session, feeding each run as replay would, and writes
each trial's response vector exactly as the decoder would get it:
  OUT/sub-<id>/ses-<ses>/sub-<id>_ses-<ses>_<run>_responses.npy   float32 [trials, V], mask voxel order
  OUT/sub-<id>/ses-<ses>/sub-<id>_ses-<ses>_<run>_responses.tsv   one row per trial (stimulus, presentation, window, flags…)
the same files \`serve --record\` writes under derivatives/mindsemantix-decoder/.

  --models DIR    bundle whose preprocessing and masks to use (default models/bundles/default)
  --subject ID    only runs of this subject
  --mask FILE     ROI mask (NIfTI) in the runs' functional space, for a person the bundle does not know
  --out DIR       output folder (existing response files there are never overwritten)
  --json          print one JSON object listing the runs written`;

export const command: Command = {
  name: 'responses',
  summary: "write each trial's response vector, as serving computes it, for every run of a BIDS session",
  help,
  async run(argv: string[]): Promise<number> {
    const p = parseArgs('responses', argv, specs);
    if (p.positionals.length !== 1)
      throw new UserError('responses: pass exactly one BIDS session folder; run `mindsemantix responses --help`.', 2);
    const out = resolve(requireString('responses', p, 'out'));
    let bundle;
    try {
      bundle = await loadBundle(stringFlag(p, 'models')!, { verify: false });
    } catch (e) {
      if (e instanceof BundleError) throw new UserError(`responses: ${e.message}`);
      throw e;
    }
    try {
      const r = await writeSessionResponses({
        session: resolve(p.positionals[0]),
        manifest: bundle.manifest,
        bundlePath: bundle.path,
        out,
        subject: stringFlag(p, 'subject'),
        mask: stringFlag(p, 'mask'),
        log: (m) => process.stderr.write(`${m}\n`),
      });
      if (boolFlag(p, 'json'))
        process.stdout.write(JSON.stringify({ out, bundle: bundle.manifest.name, runs: r.runs }) + '\n');
      else
        process.stderr.write(
          `responses: ${r.runs.length} run(s), ${r.runs.reduce((s, x) => s + x.trials, 0)} trial(s) written under ${out}\n`,
        );
      return 0;
    } catch (e) {
      if (e instanceof ResponsesInputError) throw new UserError(`responses: ${e.message}`);
      throw e;
    }
  },
};
