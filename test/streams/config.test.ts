// Preprocessing configuration: defaults, precedence of sources, and one-sentence errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { UserError } from '../../src/core/errors.js';
import { parseConfigOverrides, parsePreprocessConfig, validateMaskForRun } from '../../streams/config.js';

test('the manifest block with defaults; config file and CLI overrides win in that order', () => {
  const manifest = {
    tr: 1.6,
    discard_volumes: 3,
    detrend: { max_order: 6 },
    response: { method: 'window-mean', window: [4, 8] },
    fd_threshold_mm: 0.5,
  };
  const c = parsePreprocessConfig(
    manifest,
    { detrend: { mode: 'window' } },
    parseConfigOverrides(['response.window=[3,9]', 'detrend.max_order=4', 'subject=sim02']),
  );
  assert.equal(c.tr, 1.6);
  assert.equal(c.discardVolumes, 3);
  assert.equal(c.detrend.mode, 'window');
  assert.equal(c.detrend.maxOrder, 4);
  assert.deepEqual(c.response.window, [3, 9]);
  assert.equal(c.response.method, 'window-mean');
  assert.equal(c.fdThresholdMm, 0.5);
  assert.equal(c.subject, 'sim02');
  assert.equal(c.motion.reference, 'first');
  assert.equal(c.zscore.mode, 'running');
});

test('bad configurations fail at start with one clear sentence', () => {
  const cases: [unknown, RegExp][] = [
    [{}, /tr is missing; set it to the repetition time/],
    [{ tr: -2 }, /tr is -2; it must be the repetition time/],
    [{ tr: 2, response: { method: 'glm' } }, /response\.method is "glm"; it must be one of window-mean, lss-beta\./],
    [{ tr: 2, response: { window: [8, 4] } }, /response\.window is \[8,4\]; it must be \[start, end\]/],
    [{ tr: 2, detrend: { polort: 3 } }, /unknown field detrend\.polort/],
    [{ tr: 2, motion: { reference: 'mean' } }, /motion\.reference is "mean"; it must be "first" or a volume index/],
    [{ tr: 2, discard_volumes: 1.5 }, /discard_volumes is 1\.5; it must be an integer/],
    [[1, 2], /must be a JSON object/],
  ];
  for (const [cfg, re] of cases) {
    assert.throws(
      () => parsePreprocessConfig(cfg),
      (e: unknown) => {
        assert.ok(e instanceof UserError);
        assert.match(e.message, re);
        assert.equal(e.message.split('\n').length, 1);
        return true;
      },
    );
  }
  assert.throws(() => parseConfigOverrides(['detrend.mode']), /is not key=value/);
});

test('a mask whose dims differ from the volumes is refused with both sizes named', () => {
  const mask = {
    dims: [4, 4, 2] as [number, number, number],
    data: new Uint8Array(32).fill(1),
    affine: [2, 0, 0, 0, 0, 2, 0, 0, 0, 0, 2, 0, 0, 0, 0, 1],
  };
  assert.throws(() => validateMaskForRun(mask, [4, 4, 3]), /mask dims 4×4×2 differ from the volume dims 4×4×3/);
  assert.throws(() => validateMaskForRun({ ...mask, data: new Uint8Array(32) }, [4, 4, 2]), /no nonzero voxels/);
  assert.throws(
    () => validateMaskForRun(mask, [4, 4, 2], [3, 0, 0, 0, 0, 2, 0, 0, 0, 0, 2, 0, 0, 0, 0, 1]),
    /affine differs/,
  );
  validateMaskForRun(mask, [4, 4, 2], mask.affine);
});
