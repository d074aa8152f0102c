import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { BrainDecoder } from '../../src/inference/decoder.js';
import { REFERENCE_GUIDE, ReferenceGuide, WeightedNgram, type TokenGuide } from '../../src/inference/referenceGuide.js';
import type { CaptionBank } from '../../src/inference/referenceScorer.js';
import { rerankOptions, DEFAULT_RERANK } from '../../src/inference/rerankSetting.js';
import { tinyBundle } from './tinyBundle.js';

let decoder: BrainDecoder;
before(async () => {
  decoder = await BrainDecoder.load(tinyBundle(), { verify: false });
});
after(async () => {
  await decoder?.release();
});

test('the weighted n-gram interpolates trigram, bigram and unigram by the sentences their contexts occur in', () => {
  // Two sentences, the first weighing 3× the second; 9 is the stop token.
  const g = new WeightedNgram(
    [
      [1, 2, 3, 9],
      [1, 4, 3, 9],
    ],
    [3, 1],
    [0.6, 0.3, 0.1],
  );
  // After the start both sentences say 1: every order agrees on 1 except the unigram (2 of 8 weighted tokens... by weight).
  const uni1 = (3 + 1) / (4 * 3 + 4 * 1);
  assert.ok(Math.abs(g.p([], 1) - (0.6 * 1 + 0.3 * 1 + 0.1 * uni1)) < 1e-12);
  // After "1": 2 with weight 3, 4 with weight 1.
  const uni2 = 3 / 16;
  assert.ok(Math.abs(g.p([1], 2) - (0.6 * 0.75 + 0.3 * 0.75 + 0.1 * uni2)) < 1e-12);
  assert.ok(g.p([1], 2) > g.p([1], 4));
  // A context never seen as a trigram ("2,4") falls back to bigram and unigram, renormalised.
  const p = g.p([2, 4], 3);
  assert.ok(Math.abs(p - (0.3 * 1 + 0.1 * (4 / 16)) / 0.4) < 1e-12);
  // Probabilities over the seen tokens sum to one for any context.
  for (const h of [[], [1], [1, 2], [2, 4], [7, 7]]) {
    const sum = [1, 2, 3, 4, 9].reduce((s, t) => s + g.p(h, t), 0);
    assert.ok(Math.abs(sum - 1) < 1e-12, `context ${h}: ${sum}`);
  }
  assert.equal(g.p([1], 5), 0);
});

test('a guide reorders the LM: no bias keeps the greedy caption, a strong bias for a token makes greedy choose it', async () => {
  const lm = decoder.lm;
  const L = 5;
  const prompt = Float32Array.from({ length: L * lm.hidden }, (_, i) => Math.cos(i * 0.29) * 0.5);
  const opts = { maxNewTokens: 6, stopTokenIds: [] as number[] };
  const plain = await lm.generateBatch(prompt, 1, opts);
  const none: TokenGuide = { logBias: (_p, _h, toks) => new Float64Array(toks.length) };
  const same = await lm.generateBatch(prompt, 1, { ...opts, guide: none });
  assert.deepEqual(same[0].tokens, plain[0].tokens);
  // Make greedy take, after each history, the LM's second most probable token (eligible: the LM's top tokens).
  const chosen: number[] = [];
  const second: TokenGuide = {
    logBias: (prompt, history, toks) => {
      assert.equal(prompt, 0);
      assert.deepEqual(history, chosen, 'the guide sees the tokens chosen so far');
      chosen.push(toks[1]);
      return Float64Array.from(toks, (_, i) => (i === 1 ? 50 : 0));
    },
  };
  const g = await lm.generateBatch(prompt, 1, { ...opts, strategy: 'greedy', guide: second });
  assert.deepEqual(g[0].tokens, chosen.slice(0, g[0].tokens.length));
  assert.notDeepEqual(plain[0].tokens, g[0].tokens, 'the check is not vacuous');
  // The recorded log-probabilities are the LM's own (≤ 0), not the guided totals (50 + ...).
  assert.ok(g[0].logprobs.every((lp) => lp <= 0));
});

test('steering towards a bank that says one thing makes the steered greedy caption say it', async () => {
  const m = decoder.bundle.manifest;
  const subject = Object.keys(m.subjects)[0];
  const voxels = new Float32Array(m.subjects[subject].voxels).map((_, i) => Math.sin(i));
  const plain = await decoder.captionBatch([{ subject, voxels }], { maxNewTokens: 12 });
  const dim = plain[0].captionEmbedding.length;
  const sentence = decoder.tokenizer.decode(decoder.tokenizer.encode('a dog on the grass'));
  // A bank of one caption repeated (different embeddings): every nearest reference is that caption.
  const captions = Array.from({ length: 6 }, () => sentence);
  const embeddings = new Float32Array(captions.length * dim).map((_, i) => Math.sin(i * 1.7));
  for (let r = 0; r < captions.length; r++) {
    const row = embeddings.subarray(r * dim, (r + 1) * dim);
    const n = Math.hypot(...row);
    row.forEach((v, i) => (row[i] = v / n));
  }
  const bank: CaptionBank = { captions, embeddings, dim };
  const stop = m.generation.eos_token_ids[0];
  const expert = ReferenceGuide.create(bank, decoder.tokenizer, stop).expert(embeddings.slice(0, dim));
  const ids = decoder.tokenizer.encode(sentence);
  assert.ok(expert.p([], ids[0]) > 0.9, 'the expert starts as the caption does');
  assert.ok(expert.p(ids, stop) > 0.9, 'and stops where it stops');
  const steered = await decoder.captionBatch([{ subject, voxels }], {
    maxNewTokens: 12,
    // The tiny random LM ranks these words anywhere: let the guide choose among all its tokens.
    guideTopK: 1 << 20,
    rerank: { candidates: 1, strategy: 'sample', steer: { bank, weight: 20 } },
  });
  assert.notEqual(plain[0].text, sentence, 'the random LM alone does not say it (the check is not vacuous)');
  assert.equal(steered[0].text, sentence);
  assert.equal(steered[0].stop, 'eos');
});

test('a steering weight turns a one-candidate setting into steered decoding; 0 leaves it off', () => {
  const bank = { captions: ['a'], embeddings: Float32Array.of(1), dim: 1 } as never;
  assert.equal(rerankOptions({ ...DEFAULT_RERANK, candidates: 1, steer: 0 }, bank), undefined);
  const o = rerankOptions({ ...DEFAULT_RERANK, candidates: 1, steer: 1.5 }, bank);
  assert.equal(o?.candidates, 1);
  assert.equal(o?.steer?.weight, 1.5);
  assert.equal(rerankOptions({ ...DEFAULT_RERANK, candidates: 16, steer: 2 }, bank)?.steer?.weight, 2);
  assert.equal(rerankOptions({ ...DEFAULT_RERANK, candidates: 16, steer: 0 }, bank)?.steer, undefined);
  // The default: one steered candidate.
  assert.deepEqual(
    [DEFAULT_RERANK.candidates, rerankOptions(DEFAULT_RERANK, bank)?.steer?.weight],
    [1, REFERENCE_GUIDE.weight],
  );
});

test('coverage lists the content words most of the references use, and the guide adds its bonus until a word is said', () => {
  // Uniform weights (a huge temperature, every caption in the pool): a word's share is the share of captions using it.
  const captions = ['a red ball', 'a red ball', 'a red xylophones', 'the xylophones', 'a blue cup', 'the sky'];
  const dim = 3;
  const embeddings = new Float32Array(captions.length * dim).map((_, i) => Math.sin(i * 1.3) + (i % dim === 0 ? 2 : 0));
  const bank: CaptionBank = { captions, embeddings, dim };
  const config = { weight: 0, temperature: 1e9, pool: 6, cover: 2, coverMaxDf: 0.5, coverShare: 0.3 };
  const g = ReferenceGuide.create(bank, decoder.tokenizer, 2, config);
  const target = embeddings.slice(0, dim);
  const tok = (w: string) => decoder.tokenizer.encode(' ' + w);
  const words = new Map(g.coverage(target).map((c) => [decoder.tokenizer.decode(c.tokens).trim(), c.share]));
  // "a" is in 4 of 6 captions (a function word at coverMaxDf 0.5); "blue", "cup", "sky" in 1 (below coverShare).
  assert.deepEqual([...words.keys()].sort(), ['ball', 'red', 'the', 'xylophones']);
  assert.ok(Math.abs(words.get('red')! - 3 / 6) < 1e-6);
  assert.ok(Math.abs(words.get('xylophones')! - 2 / 6) < 1e-6);

  const guide = g.forTargets([target]);
  const [red, ball, cup] = [tok('red')[0], tok('ball')[0], tok('cup')[0]];
  const xylo = tok('xylophones');
  assert.ok(xylo.length >= 2, 'a word the LM writes in several tokens (the check needs one)');
  const bias = (history: number[], tokens: number[]) => [...guide.logBias(0, history, tokens)];
  const near = (a: number[], b: number[]) => a.length === b.length && a.every((x, i) => Math.abs(x - b[i]) < 1e-6);
  // Nothing said yet: each expected word's first token gets cover × share; other tokens nothing (weight 0: no n-gram).
  assert.ok(near(bias([], [red, ball, cup, xylo[0], xylo[1]]), [1, 2 / 3, 0, 2 / 3, 0]));
  // Once "red" is said it gets nothing more; "ball" still does.
  assert.ok(near(bias([tok('a')[0], red], [red, ball]), [0, 2 / 3]));
  // Half-way through a word its next token gets the bonus, not its first; once whole, neither.
  assert.ok(near(bias([red, xylo[0]], [xylo[1], xylo[0]]), [2 / 3, 0]));
  assert.ok(near(bias([red, ...xylo], [xylo[0], xylo[1]]), [0, 0]));
  // Off (cover 0): no bonus at all.
  const off = ReferenceGuide.create(bank, decoder.tokenizer, 2, { ...config, cover: 0 }).forTargets([target]);
  assert.ok(near([...off.logBias(0, [], [red, ball])], [0, 0]));
});
