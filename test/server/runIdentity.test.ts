// A run is (subject, session, run): two subjects scanned with the same session and run labels are two runs, each
// recorded in its own folder, and volumes go to the run their connection started. Run maps per connection are bounded.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Volume } from '../../src/core/types.js';
import { startServer } from '../../src/server/index.js';
import { runPaths } from '../../src/server/recording.js';
import { ProtocolSender } from '../../src/sender/sender.js';
import {
  bytesOf,
  captureLog,
  int16Volume,
  nibLoad,
  niftiVolume,
  rawClient,
  runInfo,
  tempDir,
  waitFor,
} from './helpers.js';

test('two subjects with the same session and run labels are two runs: own volumes, own recordings', async (t) => {
  const rec = tempDir('ident');
  const vols: Volume[] = [];
  const srv = await startServer({
    port: 0,
    recordDir: rec,
    log: captureLog().log,
    onHub: (h) => h.volumes$.subscribe((v) => vols.push(v)),
  });
  t.after(() => srv.close());
  const a = runInfo({ subject: 'pA' });
  const b = runInfo({ subject: 'pB' });
  const senders = [a, b].map((info, k) => {
    const s = new ProtocolSender({ url: srv.url }).start();
    s.startRun(info);
    for (let i = 0; i < 4; i++)
      s.sendVolume({
        session: info.session,
        run: info.run,
        index: i,
        tr: info.tr,
        acquisitionTime: i,
        nifti: niftiVolume(info, i, int16Volume(info.dims, i, 10 + k)),
      });
    s.endRun(info.session, info.run, 4, 0);
    return s;
  });
  for (const s of senders) {
    await s.flush();
    await s.close();
  }
  await srv.close();
  assert.deepEqual(
    vols.filter((v) => v.subject === 'pA').map((v) => v.index),
    [0, 1, 2, 3],
  );
  assert.deepEqual(
    vols.filter((v) => v.subject === 'pB').map((v) => v.index),
    [0, 1, 2, 3],
  );
  assert.ok(vols.every((v) => v.session === '01'));
  for (const [k, info] of [a, b].entries()) {
    const { raw } = nibLoad(runPaths(rec, info.subject, info.session, info.run).bold, true);
    assert.ok(
      raw!.equals(Buffer.concat([0, 1, 2, 3].map((i) => bytesOf(int16Volume(info.dims, i, 10 + k))))),
      `sub-${info.subject} has its own volumes`,
    );
  }
});

test('one connection may start a bounded number of runs', async (t) => {
  const srv = await startServer({ port: 0, log: captureLog().log, limits: { maxRunsPerConnection: 2 } });
  t.after(() => srv.close());
  const c = await rawClient(srv.url, { type: 'hello', v: 1, client: 'raw' });
  for (const run of ['task-x_run-01', 'task-x_run-02', 'task-x_run-03'])
    c.ws.send(JSON.stringify({ type: 'run-start', ...runInfo({ run }) }));
  c.ws.send(JSON.stringify({ type: 'run-start', ...runInfo({ run: 'task-x_run-01' }) })); // a known run is fine
  await waitFor(() => c.acks().length === 3 && c.errors().length === 1, 3000, 'two acks, one refusal, one ack again');
  assert.match(
    c.errors()[0].message,
    /run task-x_run-03 refused: this connection already started 2 runs; reconnect to start more/,
  );
  c.ws.close();
});
