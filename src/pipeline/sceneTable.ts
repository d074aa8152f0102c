// The scene facts a simulated session carries in its stimuli.tsv (object, colour, count, background; written by the
// simulator, docs/simulator.md), keyed by stimulus id, for the compositional metric. Sessions without those columns
// (recordings, older simulated sessions) have none.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { SceneFacts } from '../metrics/composition.js';

export interface SceneRow {
  facts: SceneFacts;
  /** test = a combination held out of training (novel). */ novel: boolean;
}

const NEEDED = ['stimulus_id', 'split', 'object', 'colour', 'count', 'background'] as const;

/** `<session>/stimuli.tsv`'s scene facts, or null when the file or its scene columns are missing. Throws on a bad row. */
export function readSceneTable(session: string): Map<string, SceneRow> | null {
  const path = join(session, 'stimuli.tsv');
  if (!existsSync(path)) return null;
  const lines = readFileSync(path, 'utf8')
    .split(/\r?\n/)
    .filter((l) => l.trim());
  const head = (lines[0] ?? '').split('\t');
  const col = Object.fromEntries(NEEDED.map((c) => [c, head.indexOf(c)])) as Record<(typeof NEEDED)[number], number>;
  if (Object.values(col).some((i) => i < 0)) return null;
  const out = new Map<string, SceneRow>();
  lines.slice(1).forEach((line, n) => {
    const f = line.split('\t');
    const count = Number(f[col.count]);
    if (!Number.isInteger(count) || count < 1) {
      throw new Error(
        `${path} line ${n + 2}: count "${f[col.count] ?? ''}" is not a whole number ≥ 1; rewrite the session with \`mindsemantix simulate\`.`,
      );
    }
    out.set(f[col.stimulus_id], {
      facts: { object: f[col.object], colour: f[col.colour], count, background: f[col.background] },
      novel: f[col.split] === 'test',
    });
  });
  return out;
}
