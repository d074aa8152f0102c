// The bridge on a Philips XTC export: numbered series folders, one PAR/REC pair per dynamic, written slowly.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { RunInfo, Volume } from '../../src/core/types.js';
import { startServer } from '../../src/server/index.js';
import { ScannerBridge } from '../../src/bridge/index.js';
import { runPaths } from '../../src/server/index.js';
import { maxDiff, nibData, nibRead, nibReadMany } from '../scanner/oracle.js';
import { splitXtc, xtcDumps } from '../scanner/xtc.js';
import { captureLog, cliChild, slowWrite, tempDir, waitFor } from '../server/helpers.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('bridge --xtc: the PAR/REC phantom as XTC dumps in a numbered series folder streams voxels identical to nibabel, never a half-written pair', async (t) => {
  const phantom = join(nibData, 'phantom_EPI_asc_CLEAR_2_1.PAR');
  const o = nibRead('parrec', phantom);
  const dumps = xtcDumps(phantom);
  const dir = tempDir('xtc');
  const vols: Volume[] = [];
  const runs: RunInfo[] = [];
  const srv = await startServer({
    port: 0,
    log: captureLog().log,
    onHub: (h) => {
      h.volumes$.subscribe((v) => vols.push(v));
      h.runs$.subscribe((r) => runs.push(r));
    },
  });
  t.after(() => srv.close());
  const bridge = new ScannerBridge({ dir, layout: 'series-folders', url: srv.url }).start();
  await sleep(60);
  const series = join(dir, '0007');
  mkdirSync(series);
  const done: number[] = [];
  for (const [i, d] of dumps.entries()) {
    const stem = join(series, `Dump-${String(i).padStart(4, '0')}`);
    // the PAR first and the REC in pieces: the pair is complete only with the REC's last byte
    await slowWrite(`${stem}.par`, Buffer.from(d.par, 'latin1'), 2, 30);
    done.push(await slowWrite(`${stem}.rec`, d.rec, 4, 30));
  }
  await waitFor(() => vols.length === 3, 8000, 'three volumes');
  await bridge.stop();
  assert.equal(runs.length, 1);
  assert.equal(runs[0].run, 'task-vision_run-07', 'the series folder number names the run');
  assert.equal(runs[0].tr, 2);
  assert.deepEqual(runs[0].dims, [64, 64, 9]);
  assert.ok(maxDiff(runs[0].affine, o.affine) < 1e-4, `affine ${runs[0].affine} vs ${o.affine}`);
  assert.deepEqual(
    vols.map((v) => v.index),
    [0, 1, 2],
  );
  const n = 64 * 64 * 9;
  for (const v of vols) {
    assert.equal(
      maxDiff(v.data, o.data!.subarray(v.index * n, (v.index + 1) * n)),
      0,
      `volume ${v.index} equals nibabel's`,
    );
    assert.ok(v.times.read! >= done[v.index], `volume ${v.index} was read only after its REC was complete`);
  }
});

test("CLI: serve --record + bridge --xtc record the phantom's XTC dumps as a BIDS run with nibabel's voxels", async (t) => {
  const child = (args: string[]) => cliChild(args, t);
  const phantom = join(nibData, 'phantom_EPI_asc_CLEAR_2_1.PAR');
  const o = nibRead('parrec', phantom);
  const rec = tempDir('xtc-cli-rec');
  const dir = tempDir('xtc-cli');
  const serve = child(['serve', '--port', '0', '--record', rec]);
  await waitFor(() => /ready at (ws:\S+)/.test(serve.err()), 15000, 'serve ready');
  const url = /ready at (ws:\S+)/.exec(serve.err())![1];
  const bridge = child(['bridge', '--xtc', dir, '--server', url, '--subject', 'philips']);
  splitXtc(phantom, join(dir, '0004'));
  await waitFor(() => /run task-vision_run-04/.test(bridge.err()), 15000, 'the run');
  await sleep(1000);
  bridge.p.kill('SIGINT');
  assert.equal(await bridge.exited, 0, bridge.err());
  assert.match(bridge.err(), /3 volume\(s\) and 0 event\(s\) sent and acknowledged/);
  const [nib] = nibReadMany('nifti', [runPaths(rec, 'philips', '01', 'task-vision_run-04').bold]);
  assert.deepEqual(nib.dims, [64, 64, 9, 3]);
  assert.equal(maxDiff(nib.data!, o.data!), 0);
  assert.ok(maxDiff(nib.affine, o.affine) < 1e-4);
  serve.p.kill('SIGTERM');
  await serve.exited;
});
