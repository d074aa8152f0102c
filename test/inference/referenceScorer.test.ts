import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  chooseCandidate,
  SOFT_REFERENCES,
  SoftReferenceScorer,
  type CaptionBank,
} from '../../src/inference/referenceScorer.js';
import { DEFAULT_RERANK, rerankOptions } from '../../src/inference/rerankSetting.js';
import type { RidgeRetrieval } from '../../src/inference/baseline.js';

// The fixture models/tests/test_candidate_pool.py checks the Python rule against (and regenerates): offline figures
// (docs/experiments.md E12) and live decoding must choose the same candidate.
const fixture = JSON.parse(
  readFileSync(
    join(fileURLToPath(new URL('../../../', import.meta.url)), 'test', 'fixtures', 'rerank', 'soft-references.json'),
    'utf8',
  ),
) as {
  pool: number;
  temperature: number;
  lm_weight: number;
  bank: { captions: string[]; embeddings: number[][] };
  cases: {
    target: number[];
    candidates: { text: string; logprobs: number[] }[];
    refs: number[];
    weights: number[];
    scores: number[];
    choice: number;
  }[];
};

const bankOf = (captions: string[], rows: number[][]): CaptionBank => ({
  captions,
  embeddings: Float32Array.from(rows.flat()),
  dim: rows[0].length,
});

const close = (a: number, b: number, rel = 1e-9) => Math.abs(a - b) <= rel * Math.max(1, Math.abs(b));

test('soft references: the Python rule and this one weigh the same captions and choose the same candidate', () => {
  assert.equal(fixture.temperature, SOFT_REFERENCES.temperature, 'the fixture tests the live temperature');
  assert.equal(fixture.lm_weight, SOFT_REFERENCES.lmWeight, 'the fixture tests the live log-prob weight');
  const scorer = SoftReferenceScorer.create(
    bankOf(fixture.bank.captions, fixture.bank.embeddings),
    fixture.pool,
    fixture.temperature,
  );
  assert.ok(fixture.cases.length >= 4);
  for (const [i, c] of fixture.cases.entries()) {
    const target = Float32Array.from(c.target);
    const { refs, weights } = scorer.references(target);
    assert.deepEqual(refs, c.refs, `case ${i}: references`);
    weights.forEach((w, k) => assert.ok(close(w, c.weights[k]), `case ${i}: weight ${k} ${w} vs ${c.weights[k]}`));
    const texts = c.candidates.map((x) => x.text);
    const scores = scorer.scores(texts, target);
    scores.forEach((s, k) => assert.ok(close(s, c.scores[k]), `case ${i}: score ${k} ${s} vs ${c.scores[k]}`));
    const choice = chooseCandidate(
      scores,
      c.candidates.map((x) => x.logprobs),
      SOFT_REFERENCES.lmWeight,
    );
    assert.equal(choice, c.choice, `case ${i}: chosen candidate`);
    assert.deepEqual(Array.from(target), Array.from(Float32Array.from(c.target)), 'the target is not changed');
  }
});

test('soft references, hand-computed: captions sharing no word, embeddings on the axes', () => {
  // The bank's mean is 0, so centring changes nothing; a candidate equal to a caption has CIDEr-D 10 against it and 0
  // against the others. Target along caption 0: similarities 1, 0, -1, 0; the pool of 2 keeps captions 0 and 1 (the
  // tie with 3 keeps bank order), weighted 1 and exp((0 - 1) / 0.5).
  const captions = ['red ball on beach', 'green tree in snow', 'blue car by lake', 'small house under wall'];
  const scorer = SoftReferenceScorer.create(
    bankOf(captions, [
      [1, 0],
      [0, 1],
      [-1, 0],
      [0, -1],
    ]),
    2,
    0.5,
  );
  const target = Float32Array.from([2, 0]);
  const { refs, weights } = scorer.references(target);
  assert.deepEqual(refs, [0, 1]);
  assert.ok(close(weights[1], Math.exp(-2), 1e-12) && weights[0] === 1);
  const s = scorer.scores([captions[0], captions[1], captions[2], ' '], target);
  const e = Math.exp(-2);
  assert.ok(close(s[0], 10 / (1 + e), 1e-12), `${s[0]}`);
  assert.ok(close(s[1], (10 * e) / (1 + e), 1e-12), `${s[1]}`);
  assert.equal(s[2], 0, 'a caption outside the pool earns nothing');
  assert.equal(s[3], -1, 'an empty caption scores below any other');
  // 8.808 − 0.1 × 2 = 8.608 against 1.192: the score wins; with a log-prob weight of 10 the log-probs do.
  assert.equal(chooseCandidate(s.slice(0, 2), [[-2], [0]], 0.1), 0);
  assert.equal(chooseCandidate(s.slice(0, 2), [[-2], [0]], 10), 1);
  assert.equal(chooseCandidate([1, 1], [[], []], 0.1), 0, 'a tie keeps the first');
});

test('soft references: centring removes the direction every bank caption shares', () => {
  // Captions 0 and 1 share a large common component (z); caption 2 has little of it. A target mostly along the shared
  // direction, leaning towards caption 2, is nearer to captions 0 and 1 by raw cosine but nearest to caption 2 once the
  // bank's mean is removed.
  const unit = (v: number[]) => v.map((x) => x / Math.hypot(...v));
  const rows = [unit([0.3, 0, 1]), unit([0, 0.3, 1]), unit([-1, -1, 0.2])];
  const target = unit([-0.3, -0.3, 1]);
  const raw = rows.map((r) => r.reduce((a, x, d) => a + x * target[d], 0));
  assert.ok(raw[2] < raw[0] && raw[2] < raw[1], 'by raw cosine caption 2 is the farthest');
  const scorer = SoftReferenceScorer.create(bankOf(['a b c d', 'e f g h', 'i j k l'], rows), 3, 0.05);
  assert.equal(scorer.references(Float32Array.from(target)).refs[0], 2);
});

test('the default live rule is soft references with their log-prob weight', () => {
  assert.equal(DEFAULT_RERANK.score, 'soft-references');
  assert.equal(DEFAULT_RERANK.references, SOFT_REFERENCES.pool);
  const bank = {
    ...bankOf(
      ['a red ball', 'a green tree'],
      [
        [1, 0],
        [0, 1],
      ],
    ),
    has: () => true,
    embedding: () => Promise.resolve(new Float32Array(2)),
  } as unknown as RidgeRetrieval;
  const o = rerankOptions({ ...DEFAULT_RERANK, candidates: 16 }, bank);
  assert.ok(o?.scorer instanceof SoftReferenceScorer);
  assert.equal(o.lmWeight, SOFT_REFERENCES.lmWeight);
  const flat = rerankOptions({ ...DEFAULT_RERANK, candidates: 16, score: 'references', references: 20 }, bank);
  assert.ok(flat?.scorer && !(flat.scorer instanceof SoftReferenceScorer));
  assert.equal(flat.lmWeight, undefined, 'the E10 rule adds no log-prob term');
});
