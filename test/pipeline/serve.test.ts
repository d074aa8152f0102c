// serve's decoding hook end to end (no browser): ingest over WebSocket from the first message while the bundle still
// loads, preprocessing, decoding, dashboard record; and serve without a bundle keeps ingesting.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { io as connect } from 'socket.io-client';
import { startServer } from '../../src/server/index.js';
import { replaySession } from '../../src/replay/index.js';
import { createServePipeline } from '../../src/app/serve.js';
import type { DashSnapshot } from '../../src/sinks/dashboard/dashboard-state.js';
import { tinyBundle } from '../inference/tinyBundle.js';
import { writeSyntheticSession } from '../e2e/syntheticSession.js';

test('serve decodes a replayed run that starts before the model has loaded, and its dashboard has every caption', async () => {
  const work = mkdtempSync(join(tmpdir(), 'msx-serve-'));
  const bundle = tinyBundle();
  const session = await writeSyntheticSession(
    join(work, 'session'),
    join(bundle, 'masks', 'sub-sim01_roi-mask.nii.gz'),
    { trials: 4 },
  );
  const lines: string[] = [];
  const sp = createServePipeline({ log: (l) => lines.push(l) });
  const srv = await startServer({ port: 0, log: () => {}, onHub: (hub) => sp.onHub(hub, { models: bundle }) });
  const url = sp.attach(srv);
  try {
    assert.equal(sp.pipeline(), undefined, 'the model is still loading when the replay starts');
    const replay = await replaySession({ session: session.dir, url: srv.url, speed: 'max' });
    await sp.ready;
    await sp.pipeline()!.whenDone(replay.runs);
    const st = sp.pipeline()!.stats();
    assert.equal(st.volumesReceived, session.volumes, 'nothing ingested during the model load was lost');
    assert.equal(st.trialsDecoded, session.trials);
    const snap = await new Promise<DashSnapshot>((resolve) => {
      const s = connect(url, { transports: ['websocket'], reconnection: false });
      s.on('snapshot', (x: DashSnapshot) => {
        s.close();
        resolve(x);
      });
    });
    assert.equal(snap.trials.filter((t) => t.caption && !t.caption.error).length, session.trials);
    assert.ok(
      snap.trials.every(
        (t) => t.reconstruction?.image?.startsWith('data:image/webp;base64,') && t.reconstruction.ms! > 0,
      ),
    );
    assert.equal(snap.status.model?.name, 'tiny-random');
    assert.ok(snap.metrics && snap.metrics.n === session.trials && Number.isFinite(snap.metrics.model.CIDEr));
    assert.ok(lines.some((l) => /decoding on cpu/.test(l)));
  } finally {
    await sp.close();
    await srv.close();
    rmSync(work, { recursive: true, force: true });
  }
});

test('serve with no bundle keeps ingesting and says decoding is off; an explicit missing --models is an error', async () => {
  const lines: string[] = [];
  const sp = createServePipeline({ log: (l) => lines.push(l) });
  const cwd = process.cwd();
  const empty = mkdtempSync(join(tmpdir(), 'msx-nobundle-'));
  process.chdir(empty); // the default bundle path is relative to the working folder
  try {
    const srv = await startServer({ port: 0, log: () => {}, onHub: (hub) => sp.onHub(hub, {}) });
    await sp.ready;
    assert.ok(
      lines.some((l) =>
        /no model bundle at models\/bundles\/default: ingesting and recording without decoding/.test(l),
      ),
      lines.join('\n'),
    );
    assert.equal(sp.dashboard.state.snapshot().alerts[0].code, 'decoding-off');
    await srv.close();
    const sp2 = createServePipeline({ log: () => {} });
    await assert.rejects(
      startServer({ port: 0, log: () => {}, onHub: (hub) => sp2.onHub(hub, { models: join(empty, 'nope') }) }),
      /has no manifest\.json; pass --models/,
    );
  } finally {
    process.chdir(cwd);
    await sp.close();
    rmSync(empty, { recursive: true, force: true });
  }
});

test('serve --lm-precision: fp32 is used when asked; int8 on a bundle without that graph turns decoding off with the reason', async () => {
  const bundle = tinyBundle();
  const lines: string[] = [];
  const sp = createServePipeline({ log: (l) => lines.push(l) });
  const srv = await startServer({
    port: 0,
    log: () => {},
    onHub: (hub) => sp.onHub(hub, { models: bundle, lmPrecision: 'fp32' }),
  });
  try {
    await sp.ready;
    assert.ok(lines.includes('serve: LM graph lm/decoder.onnx'), lines.join('\n'));
  } finally {
    await sp.close();
    await srv.close();
  }
  const lines2: string[] = [];
  const sp2 = createServePipeline({ log: (l) => lines2.push(l) });
  const srv2 = await startServer({
    port: 0,
    log: () => {},
    onHub: (hub) => sp2.onHub(hub, { models: bundle, lmPrecision: 'int8' }),
  });
  try {
    await sp2.ready;
    assert.ok(
      lines2.some((l) => /decoding is off: .*has no lm\/decoder\.int8\.onnx/.test(l)),
      lines2.join('\n'),
    );
    assert.equal(sp2.dashboard.state.snapshot().alerts[0].code, 'decoding-off');
  } finally {
    await sp2.close();
    await srv2.close();
  }
});
