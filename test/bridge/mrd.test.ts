// bridge --mrd-listen against real MRD streams written by the `ismrmrd` package (models/.../oracles/mrd_send.py),
// recorded by serve as BIDS and read back with nibabel.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import type { Volume } from '../../src/core/types.js';
import { startServer, runPaths } from '../../src/server/index.js';
import { ScannerBridge } from '../../src/bridge/index.js';
import { MrdListener } from '../../src/bridge/mrdListener.js';
import { maxDiff, nibReadMany } from '../scanner/oracle.js';
import { captureLog, cliChild, python, root, tempDir, waitFor } from '../server/helpers.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Runs the ismrmrd-package sender without blocking the event loop (the listener lives in this process). */
function send(port: number, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const p = spawn(
      python,
      ['-W', 'ignore', '-m', 'mindsemantix.oracles.mrd_send', '127.0.0.1', String(port), ...args],
      { cwd: root, env: { ...process.env, PYTHONPATH: join(root, 'models') }, stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let err = '';
    p.stderr.on('data', (d) => {
      err += d;
    });
    p.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`mrd_send failed (${code}): ${err}`))));
  });
}

function f32(path: string): Float32Array {
  const b = readFileSync(path);
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
}

interface Geometry {
  dims: number[];
  fov: number[];
  step: number;
  centre: number[];
  read: number[];
  phase: number[];
  slice: number[];
  tr: number;
}

/** affine · [i, j, k, 1] */
function world(a: number[], ijk: number[]): number[] {
  return [0, 1, 2].map((r) => a[4 * r] * ijk[0] + a[4 * r + 1] * ijk[1] + a[4 * r + 2] * ijk[2] + a[4 * r + 3]);
}

async function setup(t: { after(fn: () => unknown): void }) {
  const rec = tempDir('mrd-rec');
  const vols: Volume[] = [];
  const logs: string[] = [];
  const srv = await startServer({
    port: 0,
    recordDir: rec,
    reorderWindowMs: 300,
    log: captureLog().log,
    onHub: (h) => h.volumes$.subscribe((v) => vols.push(v)),
  });
  let port = 0;
  const log = (l: string, m: string) => logs.push(`${l} ${m}`);
  const bridge = new ScannerBridge({
    url: srv.url,
    log,
    source: (h) =>
      new MrdListener({
        ...h,
        host: '127.0.0.1',
        port: 0,
        log,
        onListening: (p) => {
          port = p;
        },
      }),
  }).start();
  t.after(async () => {
    await bridge.abort();
    await srv.close();
  });
  await waitFor(() => port > 0, 15000, 'the MRD port');
  return { rec, vols, logs, bridge, port: () => port };
}

test('MRD (2-D slices, shuffled): a sender that vanishes mid-run and reconnects gives one BIDS run whose voxels equal the arrays sent; geometry from the image headers; other message types skipped with a warning', async (t) => {
  const s = await setup(t);
  const out = tempDir('mrd-sent');
  await send(s.port(), ['--out', out, '--volumes', '3', '--drop-after', '2', '--extras']);
  await waitFor(() => s.vols.length === 2, 15000, 'the first two volumes');
  await waitFor(() => s.logs.some((l) => l.includes('went away without a close message')), 15000, 'the vanish warning');
  await send(s.port(), ['--out', out, '--start', '2', '--volumes', '3']);
  await waitFor(() => s.vols.length === 5, 15000, 'five volumes');
  await s.bridge.stop();
  const bold = runPaths(s.rec, '01', '01', 'task-vision_run-01').bold;
  await waitFor(() => existsSync(bold), 15000, 'the recorded run');
  await sleep(200);
  const [nib] = nibReadMany('nifti', [bold]);
  const g = JSON.parse(readFileSync(join(out, 'geometry.json'), 'utf8')) as Geometry;
  assert.deepEqual(nib.dims, [64, 48, 6, 5]);
  assert.equal(nib.tr, 1.5);
  const n = 64 * 48 * 6;
  for (let r = 0; r < 5; r++)
    assert.equal(
      maxDiff(nib.data!.subarray(r * n, (r + 1) * n), f32(join(out, `vol-${r}.f32`))),
      0,
      `volume ${r} equals the array sent`,
    );
  // the recorded affine against the geometry sent: voxel sizes, axes, and the centre of slice k where it was sent
  const a = nib.affine;
  const ras = (v: number[]) => [-v[0], -v[1], v[2]];
  const dx = g.fov[0] / 64,
    dy = g.fov[1] / 48;
  for (let j = 0; j < 3; j++) {
    const want = ras([g.read, g.phase, g.slice][j]).map((v) => v * [dx, dy, g.step][j]);
    assert.ok(maxDiff([a[j], a[4 + j], a[8 + j]], want) < 1e-4, `axis ${j}`);
  }
  for (const k of [0, 3, 5]) {
    const centreK = g.centre.map((c, i) => c + (k - 2.5) * g.step * g.slice[i]);
    assert.ok(
      maxDiff(world(a, [31.5, 23.5, k]), ras(centreK)) < 1e-3,
      `slice ${k} centre ${world(a, [31.5, 23.5, k])} vs ${ras(centreK)}`,
    );
  }
  for (const id of [1008, 1026, 1030, 5])
    assert.ok(
      s.logs.some((l) => l.startsWith('warn') && l.includes(`(id ${id})`)),
      `message ${id} skipped with a warning`,
    );
  assert.equal(s.vols.filter((v) => v.run === 'task-vision_run-01').length, 5, 'the reconnect continued the same run');
});

test('MRD (3-D images): dims changing mid-run skip that volume with a warning; an unknown message id ends that connection only; accepted volumes are kept', async (t) => {
  const s = await setup(t);
  const out = tempDir('mrd-sent3d');
  await send(s.port(), [
    '--out',
    out,
    '--mode',
    'volumes',
    '--volumes',
    '4',
    '--change-dims-at',
    '2',
    '--measurement',
    'm3d',
  ]);
  // the skipped volume 2 is a gap the server declares after its reorder window; volume 3 follows
  await waitFor(() => s.vols.length === 3, 15000, 'three volumes');
  assert.deepEqual(
    s.vols.map((v) => v.index),
    [0, 1, 3],
  );
  assert.ok(
    s.logs.some((l) => /^warn .*a 32×48×6 volume arrived in task-vision_run-01, which is 64×48×6; skipped/.test(l)),
    s.logs.join('\n'),
  );
  const n = 64 * 48 * 6;
  for (const v of s.vols) assert.equal(maxDiff(v.data, f32(join(out, `vol-${v.index}.f32`))), 0);
  assert.equal(s.vols[0].data.length, n);
  // a 3-D image's position is the slab centre: the centre voxel lands there, axes scaled by FOV / matrix
  const g = JSON.parse(readFileSync(join(out, 'geometry.json'), 'utf8')) as Geometry;
  const ras = (v: number[]) => [-v[0], -v[1], v[2]];
  const a = [...s.vols[0].affine];
  assert.ok(
    maxDiff(world(a, [31.5, 23.5, 2.5]), ras(g.centre)) < 1e-3,
    `centre ${world(a, [31.5, 23.5, 2.5])} vs ${ras(g.centre)}`,
  );
  for (let j = 0; j < 3; j++) {
    const want = ras([g.read, g.phase, g.slice][j]).map((v) => v * [g.fov[0] / 64, g.fov[1] / 48, g.step][j]);
    assert.ok(maxDiff([a[j], a[4 + j], a[8 + j]], want) < 1e-4, `axis ${j}`);
  }
  // a peer speaking something else: one clear warning, that connection closed, the listener still serving
  const sock = connect(s.port(), '127.0.0.1');
  const closed = new Promise((r) => sock.once('close', r));
  sock.on('error', () => {
    /* the listener resets it */
  });
  await new Promise((r) => sock.once('connect', r));
  sock.write(Buffer.from([0x0f, 0x27, 1, 2, 3, 4]));
  await waitFor(
    () => s.logs.some((l) => l.includes('MRD message id 9999 is not part of the MRD streaming protocol')),
    15000,
    'the unknown-id warning',
  );
  await closed;
  await send(s.port(), [
    '--out',
    tempDir('mrd-again'),
    '--mode',
    'volumes',
    '--volumes',
    '1',
    '--start',
    '4',
    '--measurement',
    'm3d',
    '--seed',
    '9',
  ]);
  await waitFor(() => s.vols.length === 4, 15000, 'a fourth volume after the bad peer');
  await s.bridge.stop();
});

test('CLI: serve --record + bridge --mrd-listen record an ismrmrd stream; a bad address or a taken port is one clear line', async (t) => {
  const child = (args: string[]) => cliChild(args, t);
  const rec = tempDir('mrd-cli-rec');
  const serve = child(['serve', '--port', '0', '--record', rec]);
  await waitFor(() => /ready at (ws:\S+)/.test(serve.err()), 15000, 'serve ready');
  const url = /ready at (ws:\S+)/.exec(serve.err())![1];
  const bridge = child(['bridge', '--mrd-listen', '127.0.0.1:0', '--server', url, '--subject', 'fire']);
  await waitFor(
    () => /listening for MRD image streams on 127\.0\.0\.1:(\d+)/.test(bridge.err()),
    10000,
    'the MRD port',
  );
  const port = Number(/listening for MRD image streams on 127\.0\.0\.1:(\d+)/.exec(bridge.err())![1]);
  const taken = child(['bridge', '--mrd-listen', `127.0.0.1:${port}`, '--server', url]);
  assert.equal(await taken.exited, 1);
  assert.match(
    taken.err().trim().split('\n').pop()!,
    /^mindsemantix: bridge: cannot listen for MRD streams on 127\.0\.0\.1:\d+ \(EADDRINUSE\); choose another port/,
  );
  const out = tempDir('mrd-cli-sent');
  await send(port, ['--out', out, '--volumes', '3']);
  await waitFor(() => /closed its stream after 3 volume/.test(bridge.err()), 10000, 'the stream end');
  await sleep(300);
  bridge.p.kill('SIGINT');
  assert.equal(await bridge.exited, 0, bridge.err());
  const bold = runPaths(rec, 'fire', '01', 'task-vision_run-01').bold;
  await waitFor(() => existsSync(bold), 15000, 'the recording');
  const [nib] = nibReadMany('nifti', [bold]);
  assert.deepEqual(nib.dims, [64, 48, 6, 3]);
  const n = 64 * 48 * 6;
  for (let r = 0; r < 3; r++)
    assert.equal(maxDiff(nib.data!.subarray(r * n, (r + 1) * n), f32(join(out, `vol-${r}.f32`))), 0);
  const bad = child(['bridge', '--mrd-listen', 'nope', '--server', url]);
  assert.equal(await bad.exited, 2);
  assert.match(bad.err().trim(), /^mindsemantix: bridge: --mrd-listen takes \[HOST:\]PORT/);
  serve.p.kill('SIGTERM');
  await serve.exited;
});
