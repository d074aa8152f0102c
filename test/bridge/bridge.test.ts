import { test } from 'node:test';
import assert from 'node:assert/strict';
import { openSync, writeSync, closeSync, writeFileSync, appendFileSync } from 'node:fs';
import { join } from 'node:path';
import type { StimulusEvent, Volume } from '../../src/core/types.js';
import { startServer } from '../../src/server/index.js';
import { ScannerBridge } from '../../src/bridge/index.js';
import { niftiHeader4D, setNiftiVolumeCount } from '../../src/scanner/nifti.js';
import {
  bytesOf,
  captureLog,
  int16Volume,
  niftiVolume,
  runInfo,
  slowWrite,
  tempDir,
  waitFor,
} from '../server/helpers.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

for (const fsEvents of [true, false]) {
  test(`bridge (${fsEvents ? 'fs events + polling' : 'polling only, as on a network share'}): half-written files are never sent, order follows the file number, events TSV rows are followed, a corrupt file is skipped`, async (t) => {
    const dir = tempDir('watch');
    const info = runInfo({ dims: [10, 9, 7], tr: 0.8 });
    const vols: Volume[] = [];
    const events: StimulusEvent[] = [];
    const srv = await startServer({
      port: 0,
      log: captureLog().log,
      onHub: (h) => {
        h.volumes$.subscribe((v) => vols.push(v));
        h.events$.subscribe((e) => events.push(e));
      },
    });
    t.after(() => srv.close());
    const logs: string[] = [];
    const bridge = new ScannerBridge({ dir, url: srv.url, fsEvents, log: (l, m) => logs.push(`${l} ${m}`) }).start();
    const doneAt = new Map<number, number>();
    const name = (i: number) => join(dir, `001_000007_${String(i + 1).padStart(6, '0')}.nii`);
    // volumes 0..9; 4 and 5 are written in swapped order
    for (const i of [0, 1, 2, 3, 5, 4, 6, 7, 8, 9]) {
      doneAt.set(i, await slowWrite(name(i), niftiVolume(info, i)));
      if (i === 2) {
        writeFileSync(join(dir, 'junk.nii'), Buffer.alloc(600, 7));
        writeFileSync(
          join(dir, 'events.tsv'),
          'onset\tduration\ttrial_type\tstimulus_id\treferences\tstim_file\n0.5\t3\tstimulus\tcat\t["a cat"]\tstimuli/cat.png\n2.1\t3\tstim',
        );
      }
      if (i === 6) appendFileSync(join(dir, 'events.tsv'), 'ulus\tdog\t["a dog"]\tstimuli/dog.png\n');
    }
    await waitFor(() => vols.length === 10 && events.length === 2, 5000, 'ten volumes and two events');
    await bridge.stop();
    assert.deepEqual(
      vols.map((v) => v.index),
      [...Array(10).keys()],
    );
    for (const v of vols)
      assert.ok(
        bytesOf(Int16Array.from(v.data)).equals(bytesOf(int16Volume(info.dims, v.index))),
        `volume ${v.index} intact`,
      );
    assert.deepEqual(
      events.map((e) => [e.trial, e.stimulusId, e.onset]),
      [
        [0, 'cat', 0.5],
        [1, 'dog', 2.1],
      ],
    );
    assert.deepEqual(events[1].references, ['a dog']);
    assert.ok(
      logs.some((l) => l.startsWith('warn') && l.includes('junk.nii')),
      'the corrupt file is reported',
    );
    const lag = vols.map((v) => v.times.read! - doneAt.get(v.index)!).sort((a, b) => a - b);
    assert.ok(lag[5] < 100, `median file-complete → read ${lag[5]} ms should be under 100 ms (all: ${lag.join(',')})`);
    for (const v of vols)
      assert.ok(v.times.read! >= doneAt.get(v.index)!, 'no volume is read before its file is complete');
  });
}

test('bridge follows a growing 4-D NIfTI: each appended volume is sent once the header counts it', async (t) => {
  const dir = tempDir('grow');
  const info = runInfo({ dims: [6, 6, 4], tr: 1 });
  const vols: Volume[] = [];
  const srv = await startServer({
    port: 0,
    log: captureLog().log,
    onHub: (h) => h.volumes$.subscribe((v) => vols.push(v)),
  });
  t.after(() => srv.close());
  const bridge = new ScannerBridge({ dir, url: srv.url }).start();
  const path = join(dir, 'sub-01_task-vision_bold.nii');
  const header = niftiHeader4D({ dims: [6, 6, 4, 1], affine: [...info.affine], tr: 1, datatype: 'int16' });
  const fd = openSync(path, 'w');
  writeSync(fd, header, 0, header.length, 0);
  const volBytes = 6 * 6 * 4 * 2;
  for (let i = 0; i < 10; i++) {
    writeSync(fd, bytesOf(int16Volume(info.dims, i)), 0, volBytes, header.length + i * volBytes);
    await sleep(30);
    setNiftiVolumeCount(header, i + 1);
    writeSync(fd, header, 0, header.length, 0);
    await sleep(30);
  }
  closeSync(fd);
  await waitFor(() => vols.length === 10, 5000, 'ten volumes');
  await bridge.stop();
  assert.deepEqual(
    vols.map((v) => v.index),
    [...Array(10).keys()],
  );
  for (const v of vols)
    assert.ok(
      bytesOf(Int16Array.from(v.data)).equals(bytesOf(int16Volume(info.dims, v.index))),
      `volume ${v.index} intact`,
    );
  for (const v of vols) assert.deepEqual(v.affine, vols[0].affine);
});

test('bridge: a second 4-D NIfTI series ends the first run; stop() then ends only the open run, and both runs are complete', async (t) => {
  const dir = tempDir('two-runs');
  const info = runInfo({ dims: [6, 6, 4], tr: 1 });
  const vols: Volume[] = [];
  const ends: { run: string; volumes: number }[] = [];
  const srv = await startServer({
    port: 0,
    log: captureLog().log,
    onHub: (h) => {
      h.volumes$.subscribe((v) => vols.push(v));
      h.runEnds$.subscribe((e) => ends.push({ run: e.run, volumes: e.expected }));
    },
  });
  t.after(() => srv.close());
  const bridge = new ScannerBridge({ dir, url: srv.url }).start();
  const write4D = (name: string, n: number, offset: number) => {
    const header = niftiHeader4D({ dims: [6, 6, 4, n], affine: [...info.affine], tr: 1, datatype: 'int16' });
    const parts = [header, ...Array.from({ length: n }, (_, i) => bytesOf(int16Volume(info.dims, offset + i)))];
    writeFileSync(join(dir, name), Buffer.concat(parts.map((p) => Buffer.from(p.buffer, p.byteOffset, p.byteLength))));
  };
  write4D('run1_bold.nii', 3, 0);
  await waitFor(() => vols.length === 3, 5000, "the first run's three volumes");
  write4D('run2_bold.nii', 4, 10);
  await waitFor(() => vols.length === 7 && ends.length === 1, 5000, "the second run's volumes and the first run's end");
  await sleep(200); // the server's ack of the first run-end reaches the sender, which then forgets that run
  const stopped = await Promise.race([bridge.stop().then(() => 'stopped'), sleep(5000).then(() => 'timed out')]);
  assert.equal(stopped, 'stopped');
  await waitFor(() => ends.length === 2, 2000, "the second run's end");
  assert.deepEqual(
    ends.map((e) => e.volumes),
    [3, 4],
  );
  assert.notEqual(ends[0].run, ends[1].run);
  assert.deepEqual(
    vols.map((v) => v.index),
    [0, 1, 2, 0, 1, 2, 3],
  );
});
