// The bridge on a Siemens export: mosaic DICOMs named 001_<series>_<instance>.dcm, written slowly, out of order.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, openSync, writeSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import type { RunInfo, Volume } from '../../src/core/types.js';
import { startServer } from '../../src/server/index.js';
import { ScannerBridge } from '../../src/bridge/index.js';
import { readScannerFile } from '../../src/scanner/index.js';
import { nicomData, pydicomData, runOracle } from '../scanner/oracle.js';
import { captureLog, tempDir, waitFor } from '../server/helpers.js';

test('bridge streams a Siemens mosaic series: complete files only (preamble and full pixel data), index from the instance number, series = run', async (t) => {
  const src = tempDir('dcmsrc');
  runOracle([
    'dicom-variants',
    join(nicomData, 'siemens_dwi_1000.dcm.gz'),
    join(nicomData, 'philips_mprage.dcm.gz'),
    join(pydicomData, 'MR_small.dcm'),
    src,
  ]);
  const mosaic = readFileSync(join(src, 'mosaic.dcm'));
  const ref = readScannerFile(mosaic);
  assert.equal(ref.status, 'complete');
  const dir = tempDir('dcmwatch');
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
  const bridge = new ScannerBridge({ dir, url: srv.url, tr: 2 }).start();
  for (const inst of [1, 2, 4, 3, 5]) {
    const fd = openSync(join(dir, `001_000007_${String(inst).padStart(6, '0')}.dcm`), 'w');
    writeSync(fd, mosaic, 0, 200); // preamble + a little: must not be taken for a file
    await new Promise((r) => setTimeout(r, 40));
    writeSync(fd, mosaic, 200, mosaic.length - 1000); // all but the end of the pixel data
    await new Promise((r) => setTimeout(r, 40));
    writeSync(fd, mosaic, mosaic.length - 800, 800);
    closeSync(fd);
  }
  await waitFor(() => vols.length === 5, 8000, 'five volumes');
  await bridge.stop();
  assert.deepEqual(
    vols.map((v) => v.index),
    [0, 1, 2, 3, 4],
  );
  assert.equal(runs.length, 1);
  const want = ref.status === 'complete' ? ref.volumes[0] : undefined;
  assert.equal(
    runs[0].run,
    `task-vision_run-${String(want!.seriesNumber).padStart(2, '0')}`,
    'the run is the DICOM SeriesNumber',
  );
  assert.deepEqual(runs[0].dims, want!.dims);
  for (const v of vols) {
    let diff = 0;
    for (let i = 0; i < v.data.length; i++) diff = Math.max(diff, Math.abs(v.data[i] - want!.data[i]));
    assert.equal(diff, 0, `volume ${v.index} equals the mosaic read whole`);
  }
});
