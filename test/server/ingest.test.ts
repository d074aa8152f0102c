import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import type { StimulusEvent, Volume, RunEnd } from '../../src/core/types.js';
import { startServer } from '../../src/server/index.js';
import { runPaths } from '../../src/server/recording.js';
import { ProtocolSender } from '../../src/sender/sender.js';
import { AFFINE, bytesOf, captureLog, int16Volume, nibLoad, niftiVolume, runInfo, tempDir } from './helpers.js';

test('volumes and events sent over a real socket arrive in order, once, and are recorded as BIDS that nibabel loads', async (t) => {
  const rec = tempDir('rec');
  const { log } = captureLog();
  const vols: Volume[] = [];
  const events: StimulusEvent[] = [];
  const ends: RunEnd[] = [];
  const srv = await startServer({
    port: 0,
    recordDir: rec,
    log,
    token: 's3cret',
    onHub: (h) => {
      h.volumes$.subscribe((v) => vols.push(v));
      h.events$.subscribe((e) => events.push(e));
      h.runEnds$.subscribe((e) => ends.push(e));
    },
  });
  t.after(() => srv.close());
  const info = runInfo();
  const sender = new ProtocolSender({ url: srv.url, token: 's3cret', client: 'test' }).start();
  sender.startRun(info);
  const n = 12;
  for (let i = 0; i < n; i++) {
    sender.sendVolume({
      session: info.session,
      run: info.run,
      index: i,
      tr: info.tr,
      acquisitionTime: i * info.tr,
      nifti: niftiVolume(info, i),
    });
    if (i % 4 === 0)
      sender.sendEvent(info.session, {
        run: info.run,
        trial: i / 4,
        onset: i * info.tr,
        duration: 3,
        stimulusId: `s${i}`,
        references: ['a cat', 'a dog'],
        image: `stimuli/s${i}.png`,
      });
  }
  sender.endRun(info.session, info.run, n, 3);
  await sender.flush();
  await sender.close();
  await srv.close();

  assert.deepEqual(
    vols.map((v) => v.index),
    [...Array(n).keys()],
  );
  for (const v of vols) {
    assert.ok(v.times.received! <= v.times.accepted!);
    assert.deepEqual(Array.from(v.data.subarray(0, 20)), Array.from(int16Volume(info.dims, v.index).subarray(0, 20)));
  }
  assert.deepEqual(
    events.map((e) => e.stimulusId),
    ['s0', 's4', 's8'],
  );
  assert.deepEqual(ends, [
    { subject: info.subject, session: '01', run: info.run, expected: n, accepted: n, missing: [], missingCount: 0 },
  ]);

  const p = runPaths(rec, info.subject, info.session, info.run);
  const { report, raw } = nibLoad(p.bold, true);
  assert.deepEqual(report.shape, [8, 7, 5, n]);
  assert.equal(report.dtype, 'int16');
  assert.equal(report.tr, 1.5);
  assert.ok(report.qform_equals_sform);
  report.affine.forEach((x, i) => assert.ok(Math.abs(x - AFFINE[i]) < 1e-4, `affine[${i}]`));
  const expected = Buffer.concat(Array.from({ length: n }, (_, i) => bytesOf(int16Volume(info.dims, i))));
  assert.ok(raw!.equals(expected), 'recorded voxels equal the sent voxels');
  const sidecar = JSON.parse(readFileSync(p.json, 'utf8')) as { RepetitionTime: number; AcquisitionTimes: number[] };
  assert.equal(sidecar.RepetitionTime, 1.5);
  assert.deepEqual(
    sidecar.AcquisitionTimes,
    Array.from({ length: n }, (_, i) => i * 1.5),
  );
  const tsv = readFileSync(p.events, 'utf8').trim().split('\n');
  assert.equal(tsv[0], 'onset\tduration\ttrial_type\tstimulus_id\treferences\tstim_file');
  assert.equal(tsv.length, 4);
  assert.equal(tsv[2].split('\t')[3], 's4');
  assert.deepEqual(JSON.parse(tsv[2].split('\t')[4]), ['a cat', 'a dog']);
});

test('missing volumes are reported, never filled: the hub skips them, the recording keeps its 4-D positions as zeros listed in MissingVolumes, and a replay of it reports the same gaps', async (t) => {
  const { replaySession } = await import('../../src/replay/index.js');
  const recA = tempDir('gapA');
  const recB = tempDir('gapB');
  const vols: Volume[] = [];
  const ends: RunEnd[] = [];
  const a = await startServer({
    port: 0,
    recordDir: recA,
    log: captureLog().log,
    reorderWindowMs: 150,
    onHub: (h) => {
      h.volumes$.subscribe((v) => vols.push(v));
      h.runEnds$.subscribe((e) => ends.push(e));
    },
  });
  t.after(() => a.close());
  const info = runInfo({ subject: 'g01' });
  const sender = new ProtocolSender({ url: a.url }).start();
  sender.startRun(info);
  for (const i of [1, 2, 4])
    sender.sendVolume({
      session: info.session,
      run: info.run,
      index: i,
      tr: info.tr,
      acquisitionTime: i * info.tr,
      nifti: niftiVolume(info, i),
    });
  sender.endRun(info.session, info.run, 5, 0);
  await sender.flush();
  await sender.close();
  await a.close();
  assert.deepEqual(
    vols.map((v) => v.index),
    [1, 2, 4],
  );
  assert.deepEqual(ends[0].missing, [
    [0, 1],
    [3, 4],
  ]);
  assert.equal(ends[0].missingCount, 2);
  assert.equal(sender.stats.gaps, 2);
  const pa = runPaths(recA, 'g01', info.session, info.run);
  const { report, raw } = nibLoad(pa.bold, true);
  assert.deepEqual(report.shape, [8, 7, 5, 5]);
  assert.equal(report.dtype, 'int16');
  const zeros = bytesOf(new Int16Array(8 * 7 * 5));
  assert.ok(
    raw!.equals(
      Buffer.concat([
        zeros,
        bytesOf(int16Volume(info.dims, 1)),
        bytesOf(int16Volume(info.dims, 2)),
        zeros,
        bytesOf(int16Volume(info.dims, 4)),
      ]),
    ),
  );
  assert.deepEqual(JSON.parse(readFileSync(pa.json, 'utf8')).MissingVolumes, [0, 3]);

  const gapsB: number[][] = [];
  const b = await startServer({
    port: 0,
    recordDir: recB,
    log: captureLog().log,
    onHub: (h) =>
      h.status$.subscribe((n) => {
        if (n.kind === 'gap') gapsB.push([n.from!, n.to!]);
      }),
  });
  t.after(() => b.close());
  await replaySession({ session: recA, url: b.url, speed: 'max' });
  await b.close();
  const again = nibLoad(runPaths(recB, 'g01', info.session, info.run).bold, true);
  assert.ok(again.raw!.equals(raw!), 'the replayed recording is re-created voxel for voxel, gaps included');
  assert.deepEqual(gapsB, [
    [0, 1],
    [3, 4],
  ]);
});
