// Numbers for the demo summary: percentiles and corpus caption metrics (src/metrics, equal to pycocoevalcap on the
// same inputs; METEOR from models/).
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { scoreCaptions } from '../metrics/index.js';

export function percentile(values: readonly number[], p: number): number {
  if (!values.length) return 0;
  const s = [...values].sort((a, b) => a - b);
  const rank = (p / 100) * (s.length - 1);
  const lo = Math.floor(rank);
  const hi = Math.ceil(rank);
  return s[lo] + (s[hi] - s[lo]) * (rank - lo);
}

export type Scores = Record<string, number>;

/** Corpus caption metrics (BLEU1..4, ROUGE_L, CIDEr) over the candidates that have references. */
export function corpusScores(refs: Record<string, string[]>, cands: Record<string, string>): Scores {
  return Object.keys(cands).length ? { ...scoreCaptions(refs, cands) } : {};
}

/**
 * Scores for a final summary: the TS metrics plus, when `meteor` is set and the Python environment exists, METEOR 1.5
 * from the models/ evaluator (pycocoevalcap's jar; there is no TS METEOR). METEOR is left out, with a note, on failure.
 */
export async function summaryScores(
  refs: Record<string, string[]>,
  cands: Record<string, string>,
  opts: { meteor?: boolean; log?: (m: string) => void } = {},
): Promise<Scores> {
  const scores = corpusScores(refs, cands);
  if (!opts.meteor || !Object.keys(cands).length) return scores;
  const m = await meteor(refs, cands).catch((e: Error) => {
    opts.log?.(`METEOR left out: ${e.message}`);
    return undefined;
  });
  return m === undefined ? scores : { ...scores, METEOR: m };
}

async function meteor(refs: Record<string, string[]>, cands: Record<string, string>): Promise<number> {
  // dist/src/pipeline/summary.js → repository root, where bootstrap made .venv
  const py = join(fileURLToPath(new URL('../../../', import.meta.url)), '.venv', 'bin', 'python');
  if (!existsSync(py)) throw new Error('no .venv (run `npm start` once)');
  const dir = mkdtempSync(join(tmpdir(), 'msx-meteor-'));
  try {
    writeFileSync(join(dir, 'r.json'), JSON.stringify(refs));
    writeFileSync(join(dir, 'c.json'), JSON.stringify(cands));
    const out = await new Promise<string>((resolve, reject) => {
      const p = spawn(
        py,
        [
          '-m',
          'mindsemantix.evalcaps',
          '--refs',
          join(dir, 'r.json'),
          '--cands',
          join(dir, 'c.json'),
          '--json',
          '--metrics',
          'METEOR',
          '--subset',
        ],
        { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, HF_HUB_OFFLINE: '1', TRANSFORMERS_OFFLINE: '1' } },
      );
      let so = '';
      let se = '';
      const t = setTimeout(() => p.kill('SIGTERM'), 120_000);
      p.stdout.on('data', (b: Buffer) => {
        so += b;
      });
      p.stderr.on('data', (b: Buffer) => {
        se += b;
      });
      p.on('error', reject);
      p.on('close', (code) => {
        clearTimeout(t);
        if (code === 0) resolve(so);
        else reject(new Error(`evalcaps exited ${code}: ${se.trim().split('\n').pop()}`));
      });
    });
    const v = (JSON.parse(out) as { METEOR?: number }).METEOR;
    if (typeof v !== 'number') throw new Error('evalcaps gave no METEOR');
    return v;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export interface PresentationScores {
  presentation: number;
  trials: number;
  CIDEr: number;
  BLEU4: number;
  baseline_CIDEr?: number;
  baseline_BLEU4?: number;
}

/** What `by_presentation` needs of a decoded trial: from the second presentation on, the mean's captions are scored. */
export interface PresentationTrial {
  key: string;
  presentation: number;
  references: string[];
  caption: string;
  baseline?: string;
  mean?: { caption: string; baseline?: string };
}

/**
 * Quality by how many times the stimulus has been shown so far in the session (CONTRACT.md `by_presentation`):
 * presentation 1 scores the single-trial captions, presentation k ≥ 2 the captions of the mean of the k presentations.
 */
export function byPresentation(trials: readonly PresentationTrial[]): PresentationScores[] {
  const groups = new Map<number, PresentationTrial[]>();
  for (const t of trials) {
    if (!t.references.length) continue;
    if (t.presentation >= 2 && !t.mean) continue; // a repeat whose mean could not be formed (no data) is not scored as one
    const g = groups.get(t.presentation) ?? [];
    g.push(t);
    groups.set(t.presentation, g);
  }
  const out: PresentationScores[] = [];
  for (const k of [...groups.keys()].sort((a, b) => a - b)) {
    const g = groups.get(k)!;
    const refs = Object.fromEntries(g.map((t) => [t.key, t.references]));
    const pick = (t: PresentationTrial) => (k >= 2 ? t.mean! : t);
    const model = corpusScores(refs, Object.fromEntries(g.map((t) => [t.key, pick(t).caption])));
    const row: PresentationScores = {
      presentation: k,
      trials: g.length,
      CIDEr: round4(model.CIDEr),
      BLEU4: round4(model.BLEU4),
    };
    if (g.every((t) => pick(t).baseline !== undefined)) {
      const base = corpusScores(refs, Object.fromEntries(g.map((t) => [t.key, pick(t).baseline!])));
      row.baseline_CIDEr = round4(base.CIDEr);
      row.baseline_BLEU4 = round4(base.BLEU4);
    }
    out.push(row);
  }
  return out;
}

const round4 = (x: number) => Number((x ?? 0).toFixed(4));
