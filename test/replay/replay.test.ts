import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import type { StimulusEvent, Volume } from '../../src/core/types.js';
import { startServer } from '../../src/server/index.js';
import { runPaths } from '../../src/server/recording.js';
import { replaySession } from '../../src/replay/index.js';
import { bytesOf, captureLog, nibLoad, runInfo, tempDir, writeBidsRun } from '../server/helpers.js';

test('replay streams a BIDS run at max speed; the recording equals the source voxel for voxel, and replaying the recording re-creates it', async (t) => {
  const src = tempDir('bids');
  const info = runInfo({ subject: 'r01', dims: [9, 8, 6], tr: 2 });
  const { bold, volumes } = writeBidsRun(src, {
    info,
    volumes: 15,
    events: [
      [0, 'img1'],
      [8, 'img2'],
      [16, 'img3'],
    ],
  });
  const recA = tempDir('recA');
  const recB = tempDir('recB');
  const got: Volume[] = [];
  const events: StimulusEvent[] = [];
  const a = await startServer({
    port: 0,
    recordDir: recA,
    log: captureLog().log,
    onHub: (h) => {
      h.volumes$.subscribe((v) => got.push(v));
      h.events$.subscribe((e) => events.push(e));
    },
  });
  t.after(() => a.close());
  const r = await replaySession({ session: src, url: a.url, speed: 'max' });
  await a.close();
  assert.equal(r.volumes, 15);
  assert.equal(r.events, 3);
  assert.deepEqual(
    got.map((v) => v.index),
    [...Array(15).keys()],
  );
  assert.deepEqual(
    events.map((e) => e.stimulusId),
    ['img1', 'img2', 'img3'],
  );
  assert.deepEqual(events[1].references, ['a photo of img2', 'picture img2']);
  assert.equal(events[1].image, 'stimuli/img2.png');

  const pa = runPaths(recA, 'r01', '01', info.run);
  const orig = nibLoad(bold, true);
  const recd = nibLoad(pa.bold, true);
  assert.deepEqual(recd.report.shape, [9, 8, 6, 15]);
  assert.equal(recd.report.dtype, 'int16');
  assert.deepEqual(recd.report.affine, orig.report.affine);
  assert.equal(recd.report.tr, 2);
  assert.ok(recd.raw!.equals(orig.raw!), 'recording equals the replayed source voxel for voxel');
  assert.ok(recd.raw!.equals(Buffer.concat(volumes.map(bytesOf))));

  const b = await startServer({ port: 0, recordDir: recB, log: captureLog().log });
  t.after(() => b.close());
  await replaySession({ session: recA, url: b.url, speed: 'max' });
  await b.close();
  const pb = runPaths(recB, 'r01', '01', info.run);
  const again = nibLoad(pb.bold, true);
  assert.ok(again.raw!.equals(recd.raw!), 'replaying the recording re-creates it');
  assert.deepEqual(again.report.affine, recd.report.affine);
  assert.equal(readFileSync(pb.events, 'utf8'), readFileSync(pa.events, 'utf8'));
  assert.deepEqual(
    JSON.parse(readFileSync(pb.json, 'utf8')).AcquisitionTimes,
    JSON.parse(readFileSync(pa.json, 'utf8')).AcquisitionTimes,
  );
});

test('replay keeps the recorded timing divided by --speed', async (t) => {
  const src = tempDir('bids');
  const info = runInfo({ subject: 'r02', tr: 1 });
  writeBidsRun(src, { info, volumes: 9 });
  const at: number[] = [];
  const srv = await startServer({
    port: 0,
    log: captureLog().log,
    onHub: (h) => h.volumes$.subscribe((v) => at.push(v.times.received!)),
  });
  t.after(() => srv.close());
  const r = await replaySession({ session: src, url: srv.url, speed: 10 });
  await srv.close();
  assert.equal(at.length, 9);
  const span = at[8] - at[0];
  assert.ok(span >= 750 && span < 2000, `8 TRs of 1 s at speed 10 should take ~800 ms, took ${span} ms`);
  assert.ok(r.seconds >= 0.75);
});
