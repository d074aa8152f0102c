import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readSceneTable } from '../../src/pipeline/sceneTable.js';
import { compositionSummary } from '../../src/pipeline/compositionSummary.js';

const HEAD = 'stimulus_id\tsplit\tcaptions\tobject\tcolour\tcount\tbackground\tobjects\trelation';
const ROWS = [
  'scene-000001\ttest\t["A red ball on the beach."]\tball\tred\t1\tbeach\t[]\tn/a',
  'scene-000400\ttrain\t["Two green trees in the snow."]\ttree\tgreen\t2\tsnow\t[]\tn/a',
];

function session(text: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'msx-comp-'));
  writeFileSync(join(dir, 'stimuli.tsv'), text);
  return dir;
}

test('stimuli.tsv scene columns are read per stimulus; a session without them has no table', () => {
  const dir = session([HEAD, ...ROWS].join('\n') + '\n');
  const old = session('stimulus_id\tsplit\tcaptions\nscene-000001\ttest\t["a"]\n');
  try {
    const t = readSceneTable(dir)!;
    assert.deepEqual(t.get('scene-000400'), {
      facts: { object: 'tree', colour: 'green', count: 2, background: 'snow' },
      novel: false,
    });
    assert.equal(t.get('scene-000001')!.novel, true);
    assert.equal(readSceneTable(old), null);
    assert.equal(readSceneTable(join(dir, 'nowhere')), null);
  } finally {
    rmSync(dir, { recursive: true, force: true });
    rmSync(old, { recursive: true, force: true });
  }
});

test('a stimuli.tsv row with a bad count is refused in one sentence naming the line and the fix', () => {
  const dir = session([HEAD, ROWS[0].replace('\t1\t', '\tone\t')].join('\n'));
  try {
    assert.throws(
      () => readSceneTable(dir),
      /stimuli\.tsv line 2: count "one" is not a whole number ≥ 1; rewrite the session with `mindsemantix simulate`\./,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('composition block: model and ridge baseline on the same trials, copied from the training captions, novel = test split', () => {
  const dir = session([HEAD, ...ROWS].join('\n'));
  try {
    const scenes = readSceneTable(dir)!;
    const trials = [
      {
        key: 'r1/1',
        stimulusId: 'scene-000001',
        caption: 'A red ball on a sandy beach',
        baseline: 'A blue ball on the beach.',
      },
      { key: 'r1/2', stimulusId: 'scene-000400', caption: 'two green trees', baseline: 'Two green trees in the snow' },
      { key: 'r1/3', stimulusId: 'not-simulated', caption: 'a cup', baseline: 'a cup' }, // no facts: not counted
    ];
    const s = compositionSummary(trials, scenes, ['two green trees in the snow', 'a blue ball on the beach'])!;
    assert.equal(s.trials, 2);
    assert.deepEqual(s.model, {
      object: 1,
      colour: 1,
      count: 1,
      background: 0.5,
      exact: 0.5,
      copied: 0,
      novel_trials: 1,
      novel_exact: 1,
    });
    assert.deepEqual(s.baseline, {
      object: 1,
      colour: 0.5,
      count: 1,
      background: 1,
      exact: 0.5,
      copied: 1,
      novel_trials: 1,
      novel_exact: 0,
    });
    // without a baseline caption on every trial there is no baseline block; without facts for any trial no block at all
    assert.equal(
      compositionSummary(
        trials.map((t, i) => (i ? t : { ...t, baseline: undefined })),
        scenes,
      )!.baseline,
      undefined,
    );
    assert.equal(compositionSummary([trials[2]], scenes), undefined);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
