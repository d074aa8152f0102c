// The decode benchmark on the tiny bundle: it times every trial, and splits off what a viewer waits for before the
// caption (serve emits the caption, then reconstructs) from the reconstruction.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { benchDecode } from '../../src/bench/decode.js';
import { tinyBundle } from '../inference/tinyBundle.js';

test('bench decode reports the caption latency apart from the reconstruction inside decode_ms', async () => {
  const r = await benchDecode({ models: tinyBundle(), trials: 4, warmup: 1, replay: false, maxNewTokens: 4 });
  assert.equal(r.decode_ms.trials, 4);
  assert.ok(r.recon_ms && r.recon_ms.trials === 4, 'the tiny bundle has a generator: every trial is reconstructed');
  assert.ok(r.caption_ms.p50 > 0 && r.caption_ms.p50 <= r.decode_ms.p50, JSON.stringify(r));
  assert.ok(r.caption_ms.p99 <= r.decode_ms.p99);
  // each trial's caption time is its decode time less its own reconstruction, so the medians differ by no more than
  // the slowest reconstruction
  assert.ok(r.decode_ms.p50 - r.caption_ms.p50 <= r.recon_ms.p99 + 1e-6);
  assert.equal(r.replay_realtime_factor, null);
});
