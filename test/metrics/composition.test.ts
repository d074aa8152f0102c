import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  checkCaption,
  compositionRates,
  normaliseCaption,
  parseCaption,
  type CompositionCheck,
  type SceneFacts,
} from '../../src/metrics/composition.js';
import { SIM_VOCABULARY } from '../../src/metrics/simVocabulary.js';

// The same fixtures models/tests/test_composition.py checks the Python scorer against: both must agree exactly.
const dir = join(fileURLToPath(new URL('../../../', import.meta.url)), 'test', 'fixtures', 'composition');
interface Case {
  caption: string;
  facts: SceneFacts;
  expect: CompositionCheck;
}
const read = (f: string) => JSON.parse(readFileSync(join(dir, f), 'utf8'));

test('hand-judged captions: object, colour, count, background and exact as judged', () => {
  const fx = read('cases.json') as { cases: Case[] };
  for (const c of fx.cases)
    assert.deepEqual(
      checkCaption(c.caption, c.facts, SIM_VOCABULARY),
      c.expect,
      `${c.caption} on ${JSON.stringify(c.facts)}`,
    );
});

test('rates over a set of captions: the hand-computed rates, with copied and novel_exact', () => {
  const r = read('cases.json').rates;
  assert.deepEqual(
    compositionRates(r.captions, r.facts, SIM_VOCABULARY, { novel: r.novel, trainingCaptions: r.training_captions }),
    r.expect,
  );
  assert.equal(compositionRates({}, {}, SIM_VOCABULARY), null);
  assert.throws(() => compositionRates({ x: 'a ball' }, {}, SIM_VOCABULARY), /no scene facts for x/);
});

test("the simulator's reference captions (own scene and another scene) get the Python scorer's verdicts", () => {
  const cases = read('sample.json').cases as Case[];
  assert.equal(cases.length, 400);
  let own = 0;
  for (const c of cases) {
    const got = checkCaption(c.caption, c.facts, SIM_VOCABULARY);
    assert.deepEqual(got, c.expect, `${c.caption} on ${JSON.stringify(c.facts)}`);
    own += got.object ? 1 : 0;
  }
  assert.ok(own >= 200, "every caption names its own scene's main object"); // half the cases are the wrong-scene control
});

test('parsing: colour and count are read from the noun phrase; background phrases never lend a colour', () => {
  const p = parseCaption('A few tiny orange daisies next to a white box on white snow.', SIM_VOCABULARY);
  assert.deepEqual(p.objects, [
    { category: 'flower', colour: 'orange', count: 3 },
    { category: 'box', colour: 'white', count: 1 },
  ]);
  assert.deepEqual([...p.backgrounds], ['snow']);
  assert.deepEqual(parseCaption('goldfish', SIM_VOCABULARY).objects, [{ category: 'fish', colour: null, count: null }]);
  assert.equal(normaliseCaption('  A red-ball,  ON the BEACH. '), 'a red ball on the beach');
});
