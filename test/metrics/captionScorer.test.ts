import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CaptionScorer, scoreCaptions, type CaptionScores } from '../../src/metrics/index.js';
import { ptbTokenize } from '../../src/metrics/ptbTokenizer.js';
import { brainhubCandidateSets, brainhubRefs, oracle, type Cands, type OracleScores, type Refs } from './brainhub.js';

const KEYS = ['BLEU1', 'BLEU2', 'BLEU3', 'BLEU4', 'ROUGE_L', 'CIDEr'] as const;

function maxDiff(a: CaptionScores, b: OracleScores): number {
  return Math.max(...KEYS.map((k) => Math.abs(a[k] - b[k])));
}

// One oracle call for everything: 12 BrainHub candidate sets (982 images each) and prefixes of one of them, as the live
// dashboard would see it after 1, 10, 100 and 500 trials.
const refs = brainhubRefs();
const sets = brainhubCandidateSets();
const ids = Object.keys(refs);
const prefixes = [1, 10, 100, 500];
const live = sets[0].cands;
const prefixSets: Cands[] = prefixes.map((n) => Object.fromEntries(ids.slice(0, n).map((id) => [id, live[id]])));
const sentences = [...Object.values(refs).flat(), ...sets.flatMap((s) => ids.map((id) => s.cands[id]))];
const { tokenized, scores } = oracle({ sentences, refs, cand_sets: [...sets.map((s) => s.cands), ...prefixSets] });
const expected = scores!;

test('scoreCaptions equals pycocoevalcap BLEU-1..4, ROUGE-L, CIDEr-D on all 12 BrainHub candidate files (1e-6)', () => {
  let worst = 0;
  sets.forEach((s, i) => {
    const d = maxDiff(scoreCaptions(refs, s.cands), expected[i]);
    worst = Math.max(worst, d);
    assert.ok(d <= 1e-6, `${s.name}: max |TS - pycocoevalcap| = ${d}`);
  });
  console.log(`# max |TS - pycocoevalcap| over 12 BrainHub files x 6 metrics: ${worst.toExponential(2)}`);
});

test('the metric arithmetic alone (given the jar tokenization) equals pycocoevalcap to 1e-9', () => {
  let k = 0;
  const tokRefs: Refs = {};
  for (const id of ids) tokRefs[id] = refs[id].map(() => tokenized[k++]);
  sets.forEach((s, i) => {
    const tokCands: Cands = {};
    for (const id of ids) tokCands[id] = tokenized[k++];
    const d = maxDiff(scoreCaptions(tokRefs, tokCands, { tokenized: true }), expected[i]);
    assert.ok(d <= 1e-9, `${s.name}: ${d}`);
  });
});

test('CaptionScorer running scores equal pycocoevalcap on the captions seen so far (CIDEr-D df over current refs)', () => {
  const scorer = new CaptionScorer();
  prefixes.forEach((n, p) => {
    for (const id of ids.slice(scorer.size, n)) scorer.add(id, live[id], refs[id]);
    assert.equal(scorer.size, n);
    const d = maxDiff(scorer.scores(), expected[sets.length + p]);
    assert.ok(d <= 1e-9, `after ${n} captions: ${d}`);
  });
});

test('adding an id again replaces its caption; order of arrival does not matter', () => {
  const subset = ids.slice(0, 100);
  const a = new CaptionScorer();
  for (const id of subset) a.add(id, 'a cat sitting on a couch', refs[id]);
  for (const id of [...subset].reverse()) a.add(id, live[id], refs[id]);
  const b = scoreCaptions(
    Object.fromEntries(subset.map((id) => [id, refs[id]])),
    Object.fromEntries(subset.map((id) => [id, live[id]])),
  );
  for (const k of KEYS) assert.ok(Math.abs(a.scores()[k] - b[k]) < 1e-12, k);
  assert.equal(a.size, 100);
});

test('identical captions score the maximum; unrelated ones score near zero', () => {
  const r = { x: ['A dog runs on the grass.', 'a brown dog running'], y: ['Two people eat pizza.', 'people eating'] };
  const same = scoreCaptions(r, { x: r.x[0], y: r.y[0] });
  assert.ok(Math.abs(same.BLEU1 - 1) < 1e-6 && Math.abs(same.ROUGE_L - 1) < 1e-12);
  const off = scoreCaptions(r, { x: 'snowy peaks', y: 'red buses' });
  assert.ok(off.BLEU1 < 0.01 && off.ROUGE_L === 0 && off.CIDEr === 0);
  assert.equal(ptbTokenize(r.x[0]), 'a dog runs on the grass');
  assert.throws(() => scoreCaptions(r, { z: 'x' }), /candidate id "z" has no references/);
  assert.deepEqual(new CaptionScorer().scores(), { BLEU1: 0, BLEU2: 0, BLEU3: 0, BLEU4: 0, ROUGE_L: 0, CIDEr: 0 });
});
