// Protocol numbers that size work are bounded: run-end volume counts, volume indices, event trials, run-start dims.
// Gaps are ranges, so a long gap costs one entry (and a bounded number of recording commits), not one per index.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import type { RunEnd } from '../../src/core/types.js';
import { startServer, type IngestNotice } from '../../src/server/index.js';
import { runPaths } from '../../src/server/recording.js';
import { encodeVolumeFrame } from '../../src/protocol/frame.js';
import { captureLog, nibLoad, niftiVolume, rawClient, runInfo, tempDir, waitFor } from './helpers.js';

const info = runInfo({ subject: 'l01', dims: [6, 5, 4] });
const HELLO = { type: 'hello', v: 1, client: 'raw' };
const frame = (index: number) =>
  encodeVolumeFrame(
    {
      v: 1,
      session: info.session,
      run: info.run,
      index,
      seq: index,
      tr: info.tr,
      acquisitionTime: index * info.tr,
      sentAt: Date.now(),
    },
    niftiVolume(info, index),
  );

async function server(t: TestContext, recordDir?: string) {
  const ends: RunEnd[] = [];
  const notices: IngestNotice[] = [];
  const srv = await startServer({
    port: 0,
    log: captureLog().log,
    recordDir,
    reorderWindowMs: 100,
    onHub: (h) => {
      h.runEnds$.subscribe((e) => ends.push(e));
      h.status$.subscribe((n) => notices.push(n));
    },
  });
  t.after(() => srv.close());
  return { srv, ends, notices };
}

test('a run-end, volume index or event trial beyond the per-run limit is refused with a sentence; nothing is sized by it and the run carries on', async (t) => {
  const { srv, ends } = await server(t);
  const c = await rawClient(srv.url, HELLO);
  assert.equal(
    (c.msgs[0] as { limits: { maxRunVolumes: number } }).limits.maxRunVolumes,
    32767,
    'welcome states the limit',
  );
  c.ws.send(JSON.stringify({ type: 'run-start', ...info }));
  c.ws.send(frame(0));
  c.ws.send(JSON.stringify({ type: 'run-end', session: info.session, run: info.run, volumes: 40_000, events: 0 }));
  c.ws.send(JSON.stringify({ type: 'run-end', session: info.session, run: info.run, volumes: 1e15, events: 0 }));
  c.ws.send(
    encodeVolumeFrame(
      {
        v: 1,
        session: info.session,
        run: info.run,
        index: 2 ** 31 - 10,
        seq: 1,
        tr: info.tr,
        acquisitionTime: 0,
        sentAt: Date.now(),
      },
      niftiVolume(info, 1),
    ),
  );
  c.ws.send(
    JSON.stringify({
      type: 'event',
      session: info.session,
      run: info.run,
      trial: 2 ** 40,
      onset: 1,
      duration: 1,
      stimulusId: 's',
    }),
  );
  await waitFor(() => c.errors().length >= 4, 3000, 'four refusals');
  const msgs = c.errors().map((e) => e.message);
  assert.equal(c.errors().filter((e) => e.code === 'bad-message').length, 4);
  assert.ok(
    msgs.some((m) =>
      /run-end of run task-vision_run-01 says 40000 volumes .* above the server's limits .*32767 volumes.*not ended/.test(
        m,
      ),
    ),
    msgs.join('\n'),
  );
  assert.ok(
    msgs.some((m) => /volume index 2147483638 .* above the server's limit of 32767 volumes per run; split/.test(m)),
  );
  assert.ok(msgs.some((m) => /event 1099511627776 .* above the server's limit of 100000 events/.test(m)));
  await new Promise((r) => setTimeout(r, 300)); // past the reorder window: an accepted huge index would be a gap by now
  assert.equal(ends.length, 0, 'the run did not end');
  assert.ok(
    c.msgs.every((m) => m.type !== 'gap'),
    'no gap was declared up to a refused index',
  );
  c.ws.send(frame(1));
  c.ws.send(JSON.stringify({ type: 'run-end', session: info.session, run: info.run, volumes: 2, events: 0 }));
  await waitFor(() => ends.length === 1, 3000, 'run end');
  assert.deepEqual(ends[0].missing, []);
  assert.equal(ends[0].accepted, 2);
  c.ws.close();
});

test('run-start dims beyond maxDim/maxVoxels are refused before anything is allocated for them', async (t) => {
  const { srv } = await server(t, tempDir('dims'));
  const c = await rawClient(srv.url, HELLO);
  c.ws.send(JSON.stringify({ type: 'run-start', ...info, dims: [1024, 1024, 1024] }));
  c.ws.send(JSON.stringify({ type: 'run-start', ...info, run: 'task-vision_run-02', dims: [2000, 2, 2] }));
  await waitFor(() => c.errors().length >= 2, 3000, 'two refusals');
  assert.deepEqual(
    c.errors().map((e) => e.code),
    ['dims-too-large', 'dims-too-large'],
  );
  assert.match(
    c.errors()[0].message,
    /run task-vision_run-01 refused: dims 1024×1024×1024 exceed the server limit \(each ≤ 1024, ≤ 16777216 voxels\)/,
  );
  c.ws.send(JSON.stringify({ type: 'run-end', session: info.session, run: info.run, volumes: 2, events: 0 }));
  await waitFor(() => c.errors().length >= 3, 3000, 'unknown run');
  assert.equal(c.errors()[2].code, 'unknown-run', 'the refused run was never started');
  assert.equal(c.acks().length, 0);
  c.ws.close();
});

test('a long gap is one range: the run end lists it once, the recording holds it as zeros committed in bounded batches', async (t) => {
  const rec = tempDir('range');
  const { srv, ends, notices } = await server(t, rec);
  const c = await rawClient(srv.url, HELLO);
  c.ws.send(JSON.stringify({ type: 'run-start', ...info }));
  c.ws.send(frame(0));
  const n = 3000;
  c.ws.send(JSON.stringify({ type: 'run-end', session: info.session, run: info.run, volumes: n, events: 0 }));
  await waitFor(() => ends.length === 1, 30000, 'run end');
  assert.deepEqual(ends[0].missing, [[1, n]]);
  assert.equal(ends[0].missingCount, n - 1);
  assert.deepEqual(
    notices.filter((x) => x.kind === 'gap').map((x) => [x.from, x.to]),
    [[1, n]],
  );
  await srv.close();
  const p = runPaths(rec, info.subject, info.session, info.run);
  assert.deepEqual(nibLoad(p.bold).report.shape, [6, 5, 4, n]);
  const side = JSON.parse(readFileSync(p.json, 'utf8')) as { AcquisitionTimes: number[]; MissingVolumes: number[] };
  assert.equal(side.AcquisitionTimes.length, n);
  assert.equal(side.MissingVolumes.length, n - 1);
  assert.equal(side.MissingVolumes[0], 1);
});
