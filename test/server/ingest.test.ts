import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import type { StimulusEvent, Volume, RunEnd } from '../../src/core/types.js';
import { startServer } from '../../src/server/index.js';
import { runPaths } from '../../src/server/recording.js';
import { ProtocolSender } from '../../src/bridge/sender.js';
import { AFFINE, bytesOf, captureLog, int16Volume, nibLoad, niftiVolume, runInfo, tempDir } from './helpers.js';

test('volumes and events sent over a real socket arrive in order, once, and are recorded as BIDS that nibabel loads', async (t) => {
  const rec = tempDir('rec');
  const { log } = captureLog();
  const vols: Volume[] = [];
  const events: StimulusEvent[] = [];
  const ends: RunEnd[] = [];
  const srv = await startServer({ port: 0, recordDir: rec, log, token: 's3cret', onHub: (h) => {
    h.volumes$.subscribe((v) => vols.push(v));
    h.events$.subscribe((e) => events.push(e));
    h.runEnds$.subscribe((e) => ends.push(e));
  } });
  t.after(() => srv.close());
  const info = runInfo();
  const sender = new ProtocolSender({ url: srv.url, token: 's3cret', client: 'test' }).start();
  sender.startRun(info);
  const n = 12;
  for (let i = 0; i < n; i++) {
    sender.sendVolume({ session: info.session, run: info.run, index: i, tr: info.tr, acquisitionTime: i * info.tr, nifti: niftiVolume(info, i) });
    if (i % 4 === 0) sender.sendEvent(info.session, { run: info.run, trial: i / 4, onset: i * info.tr, duration: 3, stimulusId: `s${i}`, references: ['a cat', 'a dog'], image: `stimuli/s${i}.png` });
  }
  sender.endRun(info.session, info.run, n, 3);
  await sender.flush();
  await sender.close();
  await srv.close();

  assert.deepEqual(vols.map((v) => v.index), [...Array(n).keys()]);
  for (const v of vols) {
    assert.ok(v.times.received! <= v.times.accepted!);
    assert.deepEqual(Array.from(v.data.subarray(0, 20)), Array.from(int16Volume(info.dims, v.index).subarray(0, 20)));
  }
  assert.deepEqual(events.map((e) => e.stimulusId), ['s0', 's4', 's8']);
  assert.deepEqual(ends, [{ session: '01', run: info.run, expected: n, accepted: n, missing: [] }]);

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
  assert.deepEqual(sidecar.AcquisitionTimes, Array.from({ length: n }, (_, i) => i * 1.5));
  const tsv = readFileSync(p.events, 'utf8').trim().split('\n');
  assert.equal(tsv[0], 'onset\tduration\ttrial_type\tstimulus_id\treferences\tstim_file');
  assert.equal(tsv.length, 4);
  assert.equal(tsv[2].split('\t')[3], 's4');
  assert.deepEqual(JSON.parse(tsv[2].split('\t')[4]), ['a cat', 'a dog']);
});
