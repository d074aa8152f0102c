// A busy Siemens export folder: a localizer, two EPI series and a file that never finishes, all in one folder,
// written slowly in chunks and interleaved.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import dicomParser from 'dicom-parser';
import type { RunInfo, Volume } from '../../src/core/types.js';
import { startServer } from '../../src/server/index.js';
import { ScannerBridge } from '../../src/bridge/index.js';
import { readScannerFile } from '../../src/scanner/index.js';
import { nicomData, pydicomData, runOracle } from '../scanner/oracle.js';
import { captureLog, slowWrite, tempDir, waitFor } from '../server/helpers.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
let mosaic: Uint8Array;

/** The mosaic with a string element overwritten in place by a value of the same length (SeriesNumber, ScanningSequence). */
function patched(bytes: Uint8Array, changes: Record<string, string>): Uint8Array {
  const out = Uint8Array.from(bytes);
  const ds = dicomParser.parseDicom(out);
  for (const [tag, value] of Object.entries(changes)) {
    const el = ds.elements[tag];
    assert.ok(el && el.length === value.length, `${tag} has length ${el?.length}, not ${value.length}`);
    out.set(Buffer.from(value, 'latin1'), el.dataOffset);
  }
  return out;
}

before(() => {
  const src = tempDir('busy-src');
  runOracle([
    'dicom-variants',
    join(nicomData, 'siemens_dwi_1000.dcm.gz'),
    join(nicomData, 'philips_mprage.dcm.gz'),
    join(pydicomData, 'MR_small.dcm'),
    src,
  ]);
  mosaic = readFileSync(join(src, 'mosaic.dcm'));
});

async function busyFolder(
  series: number[] | undefined,
): Promise<{ vols: Volume[]; runs: RunInfo[]; logs: string[]; done: Map<string, number> }> {
  const dir = tempDir('busy');
  const vols: Volume[] = [];
  const runs: RunInfo[] = [];
  const logs: string[] = [];
  const srv = await startServer({
    port: 0,
    log: captureLog().log,
    onHub: (h) => {
      h.volumes$.subscribe((v) => vols.push(v));
      h.runs$.subscribe((r) => runs.push(r));
    },
  });
  let bridge: ScannerBridge | undefined;
  try {
    const localizer = patched(mosaic, { x00200011: ' 2', x00180020: 'GR' });
    const epi12 = mosaic; // SeriesNumber 12, ScanningSequence EP
    const epi13 = patched(mosaic, { x00200011: '13' });
    assert.equal(readScannerFile(localizer).status, 'complete');
    const name = (s: number, i: number) =>
      join(dir, `001_${String(s).padStart(6, '0')}_${String(i).padStart(6, '0')}.dcm`);
    // the bridge starts late: the localizer, all of series 12 and the first volume of series 13 are already there; by
    // volume number alone their names interleave (12/1, 13/1, 12/2, ...), which would end run 12 before its last files
    writeFileSync(name(2, 1), localizer);
    writeFileSync(name(2, 2), localizer);
    for (const i of [1, 2, 3]) writeFileSync(name(12, i), epi12);
    writeFileSync(name(13, 1), epi13);
    bridge = new ScannerBridge({
      dir,
      url: srv.url,
      tr: 2,
      series,
      giveUpMs: 400,
      log: (l, m) => logs.push(`${l} ${m}`),
    }).start();
    const done = new Map<string, number>();
    // a stuck file: the scanner died mid-write; it is given up after giveUpMs and does not hold back the rest
    writeFileSync(name(13, 9), epi13.subarray(0, 500_000));
    // series 13 goes on, each file written in pieces
    for (const i of [2, 3]) done.set(`13-${i}`, await slowWrite(name(13, i), epi13, 3, 25));
    const want = series ? 3 : 6;
    await waitFor(
      () => vols.length === want && logs.some((l) => l.includes('given up')),
      8000,
      `${want} volumes and the stuck file given up (have ${vols.length}; log: ${logs.join(' | ')})`,
    );
    await sleep(100);
    await bridge.stop();
    bridge = undefined;
    return { vols, runs, logs, done };
  } finally {
    await bridge?.abort();
    await srv.close();
  }
}

test('busy folder: every EPI series streams as its own run, the localizer is skipped, a half-written file is never sent, a stuck one is given up with a warning', async () => {
  const { vols, runs, logs, done } = await busyFolder(undefined);
  assert.deepEqual(
    runs.map((r) => r.run),
    ['task-vision_run-12', 'task-vision_run-13'],
  );
  const byRun = (run: string) => vols.filter((v) => v.run === run).map((v) => v.index);
  assert.deepEqual(byRun('task-vision_run-12'), [0, 1, 2]);
  assert.deepEqual(byRun('task-vision_run-13'), [0, 1, 2]);
  assert.ok(
    logs.some((l) => /^info series 2 .* is not an EPI series/.test(l)),
    logs.join('\n'),
  );
  const stuck = logs.filter((l) => l.includes('given up'));
  assert.equal(stuck.length, 1);
  assert.match(
    stuck[0],
    /^warn .*001_000013_000009\.dcm stayed incomplete for 0 s and was given up \(it is read again if it changes\): /,
  );
  for (const v of vols) {
    const key = `${v.run.slice(-2)}-${v.index + 1}`;
    if (done.has(key)) assert.ok(v.times.read! >= done.get(key)!, `${key} was read only once complete`);
  }
  assert.ok(!logs.some((l) => l.includes('already ended')), 'no volume was dropped for arriving after its run ended');
});

test('busy folder with --series 13: only that series is streamed', async () => {
  const { vols, runs, logs } = await busyFolder([13]);
  assert.deepEqual(
    runs.map((r) => r.run),
    ['task-vision_run-13'],
  );
  assert.deepEqual(
    vols.map((v) => v.index),
    [0, 1, 2],
  );
  assert.ok(logs.some((l) => /series 12 .* is not among --series 13/.test(l)));
  assert.ok(logs.some((l) => /series 2 .* is not among --series 13/.test(l)));
});
