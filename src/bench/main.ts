// `npm run bench [-- --json] [-- --models DIR] [-- --only ingest,preprocess,decode] [-- --lm-precision auto|fp32|int8] [-- --lm-graph step|full] [-- --rerank N] [-- --steer W]`:
// runs the three benchmarks of the product's hot paths on this machine and prints the CONTRACT's object (plus each
// part's detail; decode_ms.lm names the LM graph that ran).
import { benchIngest } from './ingest.js';
import { benchPreprocess } from './preprocess.js';
import { benchDecode } from './decode.js';
import { LM_PRECISIONS, type LmPrecision } from '../inference/decoder.js';
import { parseArgs, boolFlag, stringFlag } from '../cli/args.js';
import { parseRerank, rerankFlagSpecs } from '../cli/rerankFlags.js';
import { UserError } from '../core/errors.js';

async function main(argv: string[]): Promise<number> {
  const p = parseArgs(
    'bench',
    argv,
    {
      json: { type: 'boolean' },
      models: { type: 'string', default: 'models/bundles/default' },
      session: { type: 'string', default: 'data/demo' },
      only: { type: 'string' },
      device: { type: 'string', default: 'cpu', choices: ['cpu', 'webgpu', 'cuda'] },
      'lm-precision': { type: 'string', default: 'auto', choices: [...LM_PRECISIONS] },
      // step: the int8 LM's decode-step graph when the bundle has it (what serve runs); full: the full-logits graph
      'lm-graph': { type: 'string', default: 'step', choices: ['step', 'full'] },
      ...rerankFlagSpecs,
    },
    'the options are in the usage line at the top of src/bench/main.ts',
  );
  const rerank = parseRerank('bench', p);
  const only = new Set((stringFlag(p, 'only') ?? 'ingest,preprocess,decode').split(',').map((s) => s.trim()));
  for (const o of only)
    if (!['ingest', 'preprocess', 'decode'].includes(o))
      throw new UserError(`bench: --only takes ingest, preprocess and/or decode (got "${o}").`, 2);
  const log = (line: string) => process.stderr.write(`[bench] ${line}\n`);
  const out: Record<string, unknown> = {};
  let rss = process.memoryUsage().rss;
  const rssTimer = setInterval(() => {
    rss = Math.max(rss, process.memoryUsage().rss);
  }, 100);
  try {
    if (only.has('preprocess')) {
      log('preprocessing chain (motion correction + mask + detrend + z-score) at 81×104×83 and 64×64×40…');
      const pre = await benchPreprocess();
      out.volume_ms = {
        p50: pre.nsd.p50,
        p99: pre.nsd.p99,
        dims: pre.nsd.dims,
        roi_voxels: pre.nsd.roi_voxels,
        baseline_ratio: pre.baseline_ratio,
        small: pre.small,
      };
      out.preprocess = pre;
    }
    if (only.has('ingest')) {
      log('ingest: file appears → volume accepted, and replay throughput…');
      const ing = await benchIngest({ log });
      out.ingest = ing;
      out.file_to_accept_ms = ing.file_to_accept_ms;
      out.replay_volumes_per_s = ing.replay_volumes_per_s;
    }
    if (only.has('decode')) {
      log(`per-trial decoding with ${stringFlag(p, 'models')} and demo replay at --speed max…`);
      const dec = await benchDecode({
        models: stringFlag(p, 'models'),
        session: stringFlag(p, 'session'),
        device: stringFlag(p, 'device') as 'cpu' | 'webgpu' | 'cuda',
        lmPrecision: stringFlag(p, 'lm-precision') as LmPrecision,
        lmStepGraph: stringFlag(p, 'lm-graph') === 'step',
        rerank,
        log,
      });
      out.decode_ms = dec.decode_ms;
      out.caption_ms = dec.caption_ms;
      out.recon_ms = dec.recon_ms;
      out.replay_realtime_factor = dec.replay_realtime_factor;
      out.replay = dec.replay;
    }
  } finally {
    clearInterval(rssTimer);
  }
  out.rss_mb = Math.round(rss / 2 ** 20);
  if (boolFlag(p, 'json')) console.log(JSON.stringify(out));
  else console.log(JSON.stringify(out, null, 2));
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    const e = err as Error;
    console.error(
      err instanceof UserError
        ? `mindsemantix ${e.message}`
        : `mindsemantix bench: failed: ${e?.message ?? String(err)}`,
    );
    process.exitCode = 1;
  },
);
