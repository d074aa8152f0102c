import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CiderCorpus, ciderD, ciderImage } from '../../src/metrics/index.js';

const corpus = [
  'a red car on a city street',
  'two white birds on a green field',
  'a purple kite in the night sky',
  'a small house by a lake',
  'three red kites over a snowy field',
  'a dog on the grass',
];

test('CIDEr-D against a fixed corpus equals pycocoevalcap-style CIDEr-D when each corpus caption is one image', () => {
  const cands = [
    'a red car on a street',
    'two birds on the grass',
    'a kite at night',
    'a house near the lake',
    'red kites',
    'a dog',
  ];
  // ciderD takes document frequencies over its images' references: one reference per image = one document per caption.
  const expected = ciderD(cands.map((c, i) => ciderImage(c, [corpus[i]])));
  const c = new CiderCorpus(corpus);
  cands.forEach((cand, i) =>
    assert.ok(Math.abs(c.score(cand, [i]) - expected[i]) < 1e-12, `${cand}: ${c.score(cand, [i])} vs ${expected[i]}`),
  );
});

test('several references: the weighted mean of the single-reference scores; rare shared n-grams weigh most', () => {
  const c = new CiderCorpus(corpus);
  const cand = 'a red kite over a field';
  const a = c.score(cand, [0]);
  const b = c.score(cand, [4]);
  assert.ok(Math.abs(c.score(cand, [0, 4]) - (a + b) / 2) < 1e-12);
  assert.ok(Math.abs(c.score(cand, [0, 4], [3, 1]) - (3 * a + b) / 4) < 1e-12);
  assert.ok(b > a, 'sharing "kite", "field" and "red" beats sharing "a red" alone');
  assert.equal(c.score(cand, []), 0);
  assert.equal(c.score('', [0]), 0);
});
