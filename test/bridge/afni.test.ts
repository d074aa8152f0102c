// bridge --afni-listen with a sender written from AFNI's published protocol description (never run against AFNI's own
// Dimon/rtfeedme here): runs recorded by serve as BIDS and read back with nibabel.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import type { RunInfo, Volume } from '../../src/core/types.js';
import { startServer, runPaths } from '../../src/server/index.js';
import { ScannerBridge } from '../../src/bridge/index.js';
import { AfniListener } from '../../src/bridge/afniListener.js';
import { maxDiff, nibReadMany } from '../scanner/oracle.js';
import { captureLog, tempDir, waitFor } from '../server/helpers.js';
import { sendAfni } from './afniSender.js';
import { parseAfniHeader } from '../../src/scanner/afni.js';
import { freePort } from '../../src/bench/senders.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A deterministic int16 volume, x fastest. */
function volume(nx: number, ny: number, nz: number, seed: number): Int16Array {
  const v = new Int16Array(nx * ny * nz);
  let s = (seed * 2654435761) >>> 0;
  for (let i = 0; i < v.length; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    v[i] = ((s >>> 8) % 30000) - 1000;
  }
  return v;
}

async function setup(t: { after(fn: () => unknown): void }) {
  const rec = tempDir('afni-rec');
  const vols: Volume[] = [];
  const runs: RunInfo[] = [];
  const logs: string[] = [];
  const srv = await startServer({
    port: 0,
    recordDir: rec,
    log: captureLog().log,
    onHub: (h) => {
      h.volumes$.subscribe((v) => vols.push(v));
      h.runs$.subscribe((r) => runs.push(r));
    },
  });
  let port = 0;
  const log = (l: string, m: string) => logs.push(`${l} ${m}`);
  const bridge = new ScannerBridge({
    url: srv.url,
    log,
    subject: 'afni',
    source: (h) =>
      new AfniListener({
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
  await waitFor(() => port > 0, 15000, 'the control port');
  return { rec, vols, runs, logs, bridge, port: () => port };
}

test('AFNI 2D+zt (slices in alt order, little-endian short): a 4-D run recorded exactly, affine from XYZAXES/XYZFIRST/XYFOV', async (t) => {
  const s = await setup(t);
  const [nx, ny, nz, nt] = [20, 16, 7, 5];
  const sent = Array.from({ length: nt }, (_, i) => volume(nx, ny, nz, i + 1));
  const alt = [0, 2, 4, 6, 1, 3, 5];
  const images = sent.flatMap((v) =>
    alt.map((k) => Buffer.from(v.buffer, v.byteOffset + k * nx * ny * 2, nx * ny * 2)),
  );
  const header = [
    'ACQUISITION_TYPE 2D+zt',
    'TR 1.2',
    'XYFOV 200.0 192.0 28.0',
    `XYMATRIX ${nx} ${ny}`,
    `ZNUM ${nz}`,
    'XYZAXES R-L A-P I-S',
    'XYZFIRST 90R 120A 60I',
    'DATUM short',
    'BYTEORDER LSB_FIRST',
    'ZORDER alt',
    'NOTE hello',
    'DRIVE_AFNI OPEN_WINDOW A.axialimage',
  ];
  await sendAfni({ controlPort: s.port(), dataPort: await freePort(), datasets: [{ header, images }] });
  await waitFor(() => s.vols.length === nt, 15000, 'five volumes');
  await sleep(300);
  await s.bridge.stop();
  const bold = runPaths(s.rec, 'afni', '01', 'task-vision_run-01').bold;
  await waitFor(() => existsSync(bold), 15000, 'the recorded run');
  const [nib] = nibReadMany('nifti', [bold]);
  assert.deepEqual(nib.dims, [nx, ny, nz, nt]);
  assert.ok(Math.abs(nib.tr! - 1.2) < 1e-6, `TR ${nib.tr}`);
  const n = nx * ny * nz;
  for (let i = 0; i < nt; i++)
    assert.equal(maxDiff(nib.data!.subarray(i * n, (i + 1) * n), sent[i]), 0, `volume ${i} recorded exactly`);
  // R-L: x grows to the left (RAS −x); A-P: y grows to the back (−y); first voxel centre 90 mm right, 120 anterior, 60 inferior
  assert.ok(
    maxDiff(nib.affine, [-10, 0, 0, 90, 0, -12, 0, 120, 0, 0, 4, -60, 0, 0, 0, 1]) < 1e-5,
    `affine ${nib.affine}`,
  );
  assert.ok(s.logs.some((l) => l.includes('AFNI header commands not used by the bridge: NOTE, DRIVE_AFNI')));
});

test('AFNI 3D+t big-endian float: two datasets on one channel (end marker) are two runs; a sender vanishing mid-volume keeps what was accepted; shm and bad headers are one clear warning', async (t) => {
  const s = await setup(t);
  const [nx, ny, nz] = [12, 10, 6];
  const f32be = (v: Int16Array) => {
    const b = Buffer.alloc(v.length * 4);
    v.forEach((x, i) => b.writeFloatBE(x / 4, 4 * i));
    return b;
  };
  const a = [1, 2, 3].map((i) => volume(nx, ny, nz, 10 + i));
  const b = [1, 2].map((i) => volume(nx, ny, nz, 20 + i));
  const header = [
    'ACQUISITION_TYPE 3D+t',
    'TR 2',
    `XYFOV 120 100 30`,
    `XYMATRIX ${nx} ${ny} ${nz}`,
    'XYZAXES L-R P-A I-S',
    'XYZFIRST 55R 40P 10I',
    'DATUM float',
    'BYTEORDER MSB_FIRST',
  ];
  await sendAfni({
    controlPort: s.port(),
    dataPort: await freePort(),
    datasets: [
      { header, images: a.map(f32be) },
      { header, images: b.map(f32be) },
    ],
  });
  await waitFor(() => s.vols.length === 5, 15000, 'five volumes in two runs');
  // Which runs, not the order their starts reach the server in (the second run's start can overtake the first's end).
  assert.deepEqual(s.runs.map((r) => r.run).sort(), ['task-vision_run-01', 'task-vision_run-02']);
  const got = (run: string) => s.vols.filter((v) => v.run === run);
  got('task-vision_run-01').forEach((v, i) =>
    assert.equal(
      maxDiff(
        v.data,
        Float32Array.from(a[i], (x) => x / 4),
      ),
      0,
    ),
  );
  got('task-vision_run-02').forEach((v, i) =>
    assert.equal(
      maxDiff(
        v.data,
        Float32Array.from(b[i], (x) => x / 4),
      ),
      0,
    ),
  );
  // L-R: +x; P-A: +y; first voxel 55 mm right (+55), 40 posterior (−40), 10 inferior (−10)
  assert.ok(
    maxDiff(s.runs[0].affine, [10, 0, 0, 55, 0, 10, 0, -40, 0, 0, 5, -10, 0, 0, 0, 1]) < 1e-6,
    `${s.runs[0].affine}`,
  );

  // a third dataset whose sender goes away in the middle of its second volume
  const c = [1, 2].map((i) => volume(nx, ny, nz, 30 + i));
  await sendAfni({
    controlPort: s.port(),
    dataPort: await freePort(),
    datasets: [{ header, images: c.map(f32be) }],
    vanishAfter: nx * ny * nz * 4 + 1000,
  });
  await waitFor(
    () =>
      s.logs.some((l) =>
        /^warn AFNI data channel .* closed after 1 volume\(s\); a partly received image \(1000 bytes\) was dropped/.test(
          l,
        ),
      ),
    5000,
    'the vanish warning',
  );
  await waitFor(() => s.vols.length === 6, 15000, "the third run's complete volume");

  await sendAfni({ controlPort: s.port(), dataPort: 0, datasets: [], channel: 'shm:grv:1M' });
  await waitFor(
    () => s.logs.some((l) => l.includes('asked for a shared-memory data channel (shm:grv:1M)')),
    15000,
    'the shm warning',
  );
  await sendAfni({
    controlPort: s.port(),
    dataPort: await freePort(),
    datasets: [{ header: ['ACQUISITION_TYPE 3D+t', 'XYMATRIX 5000 64 30'], images: [Buffer.alloc(16)] }],
  });
  await waitFor(
    () => s.logs.some((l) => l.includes('image size 5000×64×30 is outside 1..1024 a side')),
    15000,
    'the bad-header warning',
  );
  await s.bridge.stop();
  const third = runPaths(s.rec, 'afni', '01', 'task-vision_run-03').bold;
  await waitFor(() => existsSync(third), 15000, 'the third run recorded');
  const [nib] = nibReadMany('nifti', [third]);
  assert.deepEqual(nib.dims.slice(0, 3), [nx, ny, nz]);
  assert.equal(
    maxDiff(
      nib.data!.subarray(0, nx * ny * nz),
      Float32Array.from(c[0], (x) => x / 4),
    ),
    0,
  );
});

test('AFNI header geometry as plug_realtime reads it: bare first-voxel numbers count toward the axis start, ZFIRST, default centring, tiny/long axis names; bad headers are one sentence', () => {
  const base = ['XYMATRIX 4 6', 'ZNUM 3', 'XYFOV 40 60 30'];
  const lettered = parseAfniHeader([...base, 'XYZAXES R-L A-P I-S', 'XYZFIRST 90R 120A 60I'].join('\n'));
  const bare = parseAfniHeader([...base, 'XYZAXES RL Anterior-to-Posterior I-S', 'XYZFIRST 90 120 60'].join('\n'));
  assert.deepEqual(bare.affine, lettered.affine);
  assert.deepEqual(lettered.affine, [-10, 0, 0, 90, 0, -10, 0, 120, 0, 0, 10, -60, 0, 0, 0, 1]);
  const centred = parseAfniHeader([...base, 'XYZAXES L-R P-A S-I', 'ZFIRST 25S'].join('\n'));
  // x, y centred on 0; z from ZFIRST (25 mm superior, going down)
  assert.deepEqual(centred.affine, [10, 0, 0, -15, 0, 10, 0, -25, 0, 0, -10, 25, 0, 0, 0, 1]);
  assert.deepEqual(parseAfniHeader('XYMATRIX 64\nZNUM 2').voxelSize, [3.75, 3.75, 5]);
  assert.deepEqual(
    parseAfniHeader('XYMATRIX 4 4\nZNUM 5').zorder,
    [0, 2, 4, 1, 3],
    "AFNI's default slice order is alt",
  );
  assert.throws(
    () => parseAfniHeader('XYMATRIX 4 4 4\nDATUM complex'),
    /DATUM complex is not supported \(short, float or byte; complex data cannot be decoded\)\./,
  );
  assert.throws(() => parseAfniHeader('ZNUM 4'), /no XYMATRIX command/);
  assert.throws(() => parseAfniHeader('XYMATRIX 4 4 4\nXYZAXES R-L L-R I-S'), /names one direction twice/);
  assert.throws(() => parseAfniHeader('XYMATRIX 4 4 4\nXYZFIRST 3A 2A 1S'), /not along axis 1 \(R-L\)/);
});
