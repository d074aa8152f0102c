// The two forms a decode step's scores come in (full logits; top-k with log-normalisers from a step graph) tell
// generation the same things: argmax, log-probabilities, the nucleus at a temperature, the top tokens.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { drawFrom, LogitScores, logSumExp, TopKScores, topK } from '../../src/inference/stepScores.js';
import { mulberry32 } from '../../src/inference/lm.js';

/** Rows of LM-like logits: a few clear candidates over a long tail. */
function logits(rows: number, vocab: number, seed: number): Float32Array {
  const u = mulberry32(seed);
  const x = new Float32Array(rows * vocab);
  for (let i = 0; i < x.length; i++) x[i] = (u() - 0.5) * 8;
  for (let r = 0; r < rows; r++) for (let k = 0; k < 5; k++) x[r * vocab + Math.floor(u() * vocab)] += 10 + 2 * k;
  return x;
}

/** What a step graph returns for the same logits: top k (values, ids) and the two log-normalisers. */
function topKOf(x: Float32Array, vocab: number, k: number, temperature: number): TopKScores {
  const rows = x.length / vocab;
  const values = new Float32Array(rows * k);
  const ids = new Int32Array(rows * k);
  const lse = new Float32Array(rows);
  const lseT = new Float32Array(rows);
  for (let r = 0; r < rows; r++) {
    const row = x.subarray(r * vocab, (r + 1) * vocab);
    topK(row, k).forEach((id, i) => {
      ids[r * k + i] = id;
      values[r * k + i] = row[id];
    });
    lse[r] = logSumExp(row);
    lseT[r] = logSumExp(row.map((v) => v / temperature));
  }
  return new TopKScores(rows, k, values, ids, lse, lseT, temperature);
}

test('top-k scores from a step graph answer as the full logits do', () => {
  const V = 5000;
  const T = 0.7;
  const x = logits(4, V, 11);
  const full = new LogitScores(x, V);
  const top = topKOf(x, V, 256, T);
  for (let r = 0; r < 4; r++) {
    assert.equal(top.argmax(r), full.argmax(r));
    const a = full.nucleus(r, T, 0.9);
    const b = top.nucleus(r, T, 0.9);
    assert.deepEqual(b.tokens, a.tokens);
    b.probs.forEach((p, i) => assert.ok(Math.abs(p - a.probs[i]) < 1e-5));
    assert.ok(a.mass >= 0.9 && Math.abs(a.mass - b.mass) < 1e-5);
    for (const t of a.tokens) assert.ok(Math.abs(top.logprob(r, t) - full.logprob(r, t)) < 1e-5);
    const [ta, tb] = [full.top(r, 8), top.top(r, 8)];
    assert.deepEqual(tb.tokens, ta.tokens);
    tb.logprobs.forEach((lp, i) => assert.ok(Math.abs(lp - ta.logprobs[i]) < 1e-5));
    // the same draws from the same generator
    const [ga, gb] = [mulberry32(r), mulberry32(r)];
    for (let k = 0; k < 20; k++) assert.equal(drawFrom(b, gb), drawFrom(a, ga));
  }
});

test('a step graph cannot score what it did not return, nor sample at another temperature', () => {
  const V = 600;
  const x = logits(1, V, 3);
  const top = topKOf(x, V, 4, 0.7);
  const outside = topK(x, 5)[4];
  assert.throws(() => top.logprob(0, outside), /not among the 4 most probable/);
  assert.throws(() => top.nucleus(0, 1.0, 0.9), /temperature 0.7, not 1/);
  assert.throws(() => top.top(0, 5), /returns 4 tokens per row/);
  // a flat distribution: the nucleus is cut at k tokens and drawn from in proportion
  const flat = topKOf(new Float32Array(V), V, 4, 0.7);
  const n = flat.nucleus(0, 0.7, 0.9);
  assert.equal(n.tokens.length, 4);
  assert.ok(Math.abs(n.mass - 4 / V) < 1e-6);
});

test('the normaliser skips only terms too small to count', () => {
  const x = Float32Array.from({ length: 1000 }, (_, i) => (i === 0 ? 50 : -Math.abs(Math.sin(i)) * 60));
  let exact = 0;
  for (const v of x) exact += Math.exp(v - 50);
  assert.ok(Math.abs(logSumExp(x) - (50 + Math.log(exact))) < 1e-12);
});
