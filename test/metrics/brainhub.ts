// Shared by the metrics tests: the BrainHub caption files kept in the repo (test/fixtures/brainhub, MIT, see SOURCE.md) and the Python oracle
// (pycocoevalcap 1.2 through models/mindsemantix/evalcaps, its PTB jar running on Java).
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

export const root = new URL('../../../', import.meta.url).pathname;
export const python = join(root, '.venv', 'bin', 'python');
export const brainhubDir = join(root, 'test', 'fixtures', 'brainhub');

export type Refs = Record<string, string[]>;
export type Cands = Record<string, string>;

function requireBrainhub(): void {
  if (!existsSync(join(brainhubDir, 'published.csv'))) {
    throw new Error(
      `BrainHub conformance files not found at ${brainhubDir}; restore them with git checkout -- test/fixtures.`,
    );
  }
}

export function brainhubRefs(): Refs {
  requireBrainhub();
  return JSON.parse(readFileSync(join(brainhubDir, 'caption', 'fmri_cococap.json'), 'utf8')) as Refs;
}

/** The 12 candidate files of published.csv: {name: "method sub", file, cands}. */
export function brainhubCandidateSets(): { name: string; file: string; cands: Cands }[] {
  requireBrainhub();
  const lines = readFileSync(join(brainhubDir, 'published.csv'), 'utf8').trim().split('\n');
  const head = lines[0].split(',');
  const iFile = head.indexOf('candidates_file');
  return lines.slice(1).map((l) => {
    const f = l.split(',');
    const file = join(brainhubDir, f[iFile]);
    return { name: `${f[0]} sub${f[1]}`, file, cands: JSON.parse(readFileSync(file, 'utf8')) as Cands };
  });
}

export interface OracleScores {
  BLEU1: number;
  BLEU2: number;
  BLEU3: number;
  BLEU4: number;
  ROUGE_L: number;
  CIDEr: number;
}

/** pycocoevalcap's PTB tokenization of `sentences`, and its BLEU/ROUGE-L/CIDEr-D of each candidate set (ids present only). */
export function oracle(req: { sentences?: string[]; refs?: Refs; cand_sets?: Cands[] }): {
  tokenized: string[];
  scores?: OracleScores[];
} {
  const r = spawnSync(python, ['-m', 'mindsemantix.evalcaps.oracle'], {
    input: JSON.stringify(req),
    encoding: 'utf8',
    maxBuffer: 256 << 20,
    cwd: root,
  });
  if (r.status !== 0) throw new Error(`evalcaps oracle failed (${r.status}): ${r.stderr}`);
  return JSON.parse(r.stdout);
}
