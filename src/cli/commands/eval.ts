import { spawn } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Command } from '../command.js';
import { UserError } from '../../core/errors.js';
import { boolFlag, parseArgs, requireString, stringFlag } from '../args.js';
import { evalSessionsHelp, runEvalSessions } from './evalSessions.js';

const root = new URL('../../../../', import.meta.url).pathname;

const help = `mindsemantix eval captions --refs R.json --cands C.json [--json] [--metrics LIST] [--subset] [--per-image OUT.json]

Caption metrics as BrainHub reports them, on pycocoevalcap's 0..1 scale: BLEU-1..4, METEOR 1.5, ROUGE-L and CIDEr-D
(pycocoevalcap 1.2 on PTB-tokenized text, Java) and SentenceScore (all-MiniLM-L6-v2, max cosine over references).

  --refs R.json       references {id: [ref, ...]} (BrainHub caption/fmri_cococap.json)
  --cands C.json      candidates {id: caption} (BrainHub caption/comparison/<method>/subNN_decoded_caption.json)
  --json              print one JSON object {"BLEU1":..,"BLEU2":..,"BLEU3":..,"BLEU4":..,"METEOR":..,"ROUGE_L":..,"CIDEr":..,"SentenceScore":..}
  --metrics LIST      comma list of BLEU, METEOR, ROUGE_L, CIDEr, SentenceScore (default: all)
  --subset            score only the ids in C.json (default: every id in R.json needs a caption)
  --per-image OUT     also write per-image scores to OUT (JSON)

Every candidate id must appear in R.json. See docs/metrics.md for definitions and conformance with BrainHub.

${evalSessionsHelp}`;

const METRIC_NAMES = [
  'BLEU',
  'BLEU1',
  'BLEU2',
  'BLEU3',
  'BLEU4',
  'METEOR',
  'ROUGE',
  'ROUGE_L',
  'CIDER',
  'CIDER-D',
  'SENTENCESCORE',
  'SENTENCE',
];
const LABELS: Record<string, string> = {
  BLEU1: 'BLEU-1',
  BLEU2: 'BLEU-2',
  BLEU3: 'BLEU-3',
  BLEU4: 'BLEU-4',
  METEOR: 'METEOR',
  ROUGE_L: 'ROUGE-L',
  CIDEr: 'CIDEr-D',
  SentenceScore: 'SentenceScore',
};

function readJson(path: string, what: string): unknown {
  if (!existsSync(path)) throw new UserError(`eval: the ${what} file ${path} does not exist; check the path.`, 2);
  if (statSync(path).isDirectory())
    throw new UserError(`eval: the ${what} file ${path} is a directory; pass a JSON file.`, 2);
  const text = readFileSync(path, 'utf8');
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new UserError(`eval: the ${what} file ${path} is not valid JSON (${(e as Error).message}); fix the file.`, 2);
  }
}

function sample(ids: string[]): string {
  return (
    ids
      .slice(0, 3)
      .map((i) => JSON.stringify(i))
      .join(', ') + (ids.length > 3 ? ', ...' : '')
  );
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Checks R.json and C.json the way the Python evaluator does, so mistakes are reported before Java and torch start. */
export function validateCaptionFiles(
  refs: unknown,
  cands: unknown,
  refsPath: string,
  candsPath: string,
  subset: boolean,
): number {
  if (!isObject(refs))
    throw new UserError(
      `eval: ${refsPath} must be a JSON object {id: [reference, ...]} (BrainHub caption/fmri_cococap.json format).`,
      2,
    );
  if (!isObject(cands))
    throw new UserError(
      `eval: ${candsPath} must be a JSON object {id: caption} (BrainHub decoded_caption.json format).`,
      2,
    );
  if (!Object.keys(refs).length)
    throw new UserError(`eval: ${refsPath} has no ids; it must map every image id to its reference captions.`, 2);
  if (!Object.keys(cands).length)
    throw new UserError(`eval: ${candsPath} has no ids; it must map image ids to one caption each.`, 2);
  for (const [id, v] of Object.entries(refs)) {
    const list = typeof v === 'string' ? [v] : v;
    if (!Array.isArray(list) || !list.length)
      throw new UserError(
        `eval: ${refsPath}: id ${JSON.stringify(id)} must map to a non-empty list of reference strings.`,
        2,
      );
    if (list.some((r) => typeof r !== 'string'))
      throw new UserError(`eval: ${refsPath}: id ${JSON.stringify(id)} has a reference that is not a string.`, 2);
  }
  for (const [id, v] of Object.entries(cands)) {
    const c = Array.isArray(v) && v.length === 1 ? v[0] : v;
    if (typeof c !== 'string') {
      const hint = Array.isArray(v) ? ` (got a list of ${v.length}; are --refs and --cands swapped?)` : '';
      throw new UserError(`eval: ${candsPath}: id ${JSON.stringify(id)} must map to one caption string${hint}.`, 2);
    }
  }
  const missing = Object.keys(cands).filter((id) => !Object.prototype.hasOwnProperty.call(refs, id));
  if (missing.length) {
    throw new UserError(
      `eval: ${missing.length} candidate id(s) in ${candsPath} are not in ${refsPath} (${sample(missing)}); check that both files use the same ids (BrainHub uses test-set positions "0".."981").`,
      2,
    );
  }
  const uncaptioned = Object.keys(refs).filter((id) => !Object.prototype.hasOwnProperty.call(cands, id));
  if (uncaptioned.length && !subset) {
    throw new UserError(
      `eval: ${uncaptioned.length} of ${Object.keys(refs).length} reference id(s) have no caption in ${candsPath} (${sample(uncaptioned)}); caption every image, or pass --subset to score only the captioned ids.`,
      2,
    );
  }
  return Object.keys(cands).length;
}

function runEvaluator(python: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolveRun, reject) => {
    const child = spawn(python, ['-m', 'mindsemantix.evalcaps', ...args], {
      cwd: root,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, HF_HUB_OFFLINE: '1', TRANSFORMERS_OFFLINE: '1', TOKENIZERS_PARALLELISM: 'false' },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => {
      stdout += b;
    });
    child.stderr.on('data', (b: Buffer) => {
      stderr += b;
    });
    child.on('error', (e) =>
      reject(
        new UserError(
          `eval: could not start ${python} (${e.message}); run \`npm start\` once to repair the environment.`,
        ),
      ),
    );
    child.on('close', (c, sig) => resolveRun({ code: c ?? (sig ? 1 : 0), stdout, stderr }));
  });
}

export function formatTable(scores: Record<string, number>, images: number): string {
  const lines = [`${'metric'.padEnd(14)} ${'score'.padStart(8)} ${'x100'.padStart(7)}`, '-'.repeat(31)];
  for (const [k, v] of Object.entries(scores))
    lines.push(`${(LABELS[k] ?? k).padEnd(14)} ${v.toFixed(4).padStart(8)} ${(100 * v).toFixed(2).padStart(7)}`);
  const how = [];
  if (Object.keys(scores).some((k) => k !== 'SentenceScore'))
    how.push(`pycocoevalcap 1.2 on PTB tokens${'METEOR' in scores ? ' (METEOR 1.5)' : ''}`);
  if ('SentenceScore' in scores) how.push('SentenceScore: all-MiniLM-L6-v2');
  lines.push(`${images} images; ${how.join('; ')}`);
  return lines.join('\n');
}

export const command: Command = {
  name: 'eval',
  summary:
    'caption metrics (BLEU-1..4, METEOR, ROUGE-L, CIDEr-D, SentenceScore) of decoded captions against references',
  help,
  async run(argv: string[]): Promise<number> {
    if (argv[0] === 'sessions') return runEvalSessions(argv.slice(1));
    const p = parseArgs('eval', argv, {
      refs: { type: 'string' },
      cands: { type: 'string' },
      json: { type: 'boolean' },
      metrics: { type: 'string' },
      subset: { type: 'boolean' },
      'per-image': { type: 'string' },
    });
    const [what, ...extra] = p.positionals;
    if (what !== 'captions') {
      throw new UserError(
        what === undefined
          ? 'eval: say what to evaluate: `mindsemantix eval captions --refs R.json --cands C.json`.'
          : `eval: unknown evaluation "${what}"; they are \`captions\` and \`sessions\` (run \`mindsemantix eval --help\`).`,
        2,
      );
    }
    if (extra.length)
      throw new UserError(`eval: unexpected argument "${extra[0]}"; run \`mindsemantix eval --help\`.`, 2);
    const refsPath = resolve(requireString('eval', p, 'refs'));
    const candsPath = resolve(requireString('eval', p, 'cands'));
    const metrics = stringFlag(p, 'metrics');
    if (metrics !== undefined) {
      const bad = metrics
        .split(',')
        .map((m) => m.trim())
        .filter((m) => !METRIC_NAMES.includes(m.toUpperCase()));
      if (bad.length || !metrics.trim())
        throw new UserError(
          `eval: unknown metric "${bad[0] ?? metrics}" in --metrics; choose from BLEU, BLEU1..BLEU4, METEOR, ROUGE_L, CIDEr, SentenceScore.`,
          2,
        );
    }
    const subset = boolFlag(p, 'subset');
    const images = validateCaptionFiles(
      readJson(refsPath, 'references'),
      readJson(candsPath, 'candidates'),
      refsPath,
      candsPath,
      subset,
    );

    const python = join(root, '.venv', 'bin', 'python');
    if (!existsSync(python))
      throw new UserError('eval: the Python environment (.venv) is missing; run `npm start` once to install it.');
    const args = ['--refs', refsPath, '--cands', candsPath, '--json'];
    if (metrics !== undefined) args.push('--metrics', metrics);
    if (subset) args.push('--subset');
    const perImage = stringFlag(p, 'per-image');
    if (perImage !== undefined) args.push('--per-image', resolve(perImage));
    const r = await runEvaluator(python, args);
    if (r.code !== 0) {
      const lines = r.stderr.trim().split('\n');
      const msg = lines
        .filter((l) => l.startsWith('evalcaps: '))
        .pop()
        ?.slice('evalcaps: '.length);
      throw new UserError(
        msg ? `eval: ${msg}` : `eval: the caption evaluator failed (exit ${r.code}): ${lines.pop() ?? 'no message'}`,
        r.code === 2 ? 2 : 1,
      );
    }
    let scores: Record<string, number>;
    try {
      scores = JSON.parse(r.stdout.trim().split('\n').pop() ?? '') as Record<string, number>;
    } catch {
      throw new UserError(
        `eval: the caption evaluator printed no result; run \`.venv/bin/python -m mindsemantix.evalcaps --refs ${refsPath} --cands ${candsPath}\` to see why.`,
      );
    }
    console.log(boolFlag(p, 'json') ? JSON.stringify(scores) : formatTable(scores, images));
    return 0;
  },
};
