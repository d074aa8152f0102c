import { test } from 'node:test';
import assert from 'node:assert/strict';
import { getEventListeners } from 'node:events';
import { abortableSleep } from '../../src/core/sleep.js';

test('abortableSleep leaves no abort listener behind once its timer fires', async () => {
  const ac = new AbortController();
  for (let i = 0; i < 25; i++) await abortableSleep(1, ac.signal);
  assert.equal(getEventListeners(ac.signal, 'abort').length, 0);
});

test('abortableSleep resolves at once when the signal aborts', async () => {
  const ac = new AbortController();
  const t0 = performance.now();
  const p = abortableSleep(10_000, ac.signal);
  ac.abort();
  await p;
  assert.ok(performance.now() - t0 < 1000);
  await abortableSleep(10_000, ac.signal); // already aborted: no wait
  assert.ok(performance.now() - t0 < 1000);
});
