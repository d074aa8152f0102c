import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseArgs } from '../../src/cli/args.js';
import { parseRerank, rerankFlagSpecs } from '../../src/cli/rerankFlags.js';
import { DEFAULT_RERANK } from '../../src/inference/rerankSetting.js';

const parse = (argv: string[]) => parseRerank('demo', parseArgs('demo', argv, rerankFlagSpecs));

test('rerank flags: the default setting, and each flag changes its own field', () => {
  assert.deepEqual(parse([]), DEFAULT_RERANK);
  assert.deepEqual(parse(['--rerank', '1']), { ...DEFAULT_RERANK, candidates: 1 });
  assert.deepEqual(parse(['--rerank', '4', '--rerank-score', 'embedding']), {
    ...DEFAULT_RERANK,
    candidates: 4,
    score: 'embedding',
  });
  assert.deepEqual(parse(['--rerank', '16', '--rerank-references', '50', '--rerank-guide', 'readout']), {
    ...DEFAULT_RERANK,
    candidates: 16,
    references: 50,
    guide: 'readout',
  });
  assert.equal(DEFAULT_RERANK.score, 'soft-references');
  assert.equal(DEFAULT_RERANK.references, 200, 'soft references weigh 200 captions unless told otherwise');
  assert.deepEqual(parse(['--rerank', '16', '--rerank-score', 'references']), {
    ...DEFAULT_RERANK,
    candidates: 16,
    score: 'references',
    references: 20,
  });
});

test('rerank flags: contradictions and out-of-range values are one-line usage errors', () => {
  assert.throws(() => parse(['--rerank', '1', '--rerank-score', 'references']), /need --rerank 2 or more/);
  assert.throws(
    () => parse(['--rerank', '4', '--rerank-score', 'embedding', '--rerank-references', '10']),
    /applies to --rerank-score soft-references or references only/,
  );
  assert.throws(() => parse(['--rerank-references', '0']), /rerank-references/);
  assert.throws(() => parse(['--rerank-references', '100000']), /rerank-references/);
  assert.throws(() => parse(['--rerank-score', 'bleu']), /rerank-score/);
  assert.throws(() => parse(['--steer', '-1']), /steer/);
  assert.throws(() => parse(['--steer', '11']), /steer/);
  assert.throws(() => parse(['--rerank', '4', '--rerank-strategy', 'beam', '--steer', '1']), /sampled candidates/);
  assert.throws(() => parse(['--rerank', '1', '--steer', '1', '--rerank-score', 'references']), /need --rerank 2/);
});

test('steer flag: a weight for any candidate count; one steered candidate still takes its target', () => {
  assert.deepEqual(parse(['--steer', '1.5']), { ...DEFAULT_RERANK, steer: 1.5 });
  assert.deepEqual(parse(['--rerank', '1', '--steer', '1', '--rerank-guide', 'readout']), {
    ...DEFAULT_RERANK,
    candidates: 1,
    steer: 1,
    guide: 'readout',
  });
  assert.throws(() => parse(['--rerank', '1', '--steer', '0', '--rerank-guide', 'readout']), /need --rerank 2/);
});
