// A failing disk (ENOSPC, EIO) never duplicates or shifts recorded volumes: a commit changes the recording's state
// only once it is on disk, a transient failure is retried, a lasting one is reported (log, notice for the dashboard,
// an error to the sender) while acks keep flowing, and the run completes exactly once the disk recovers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { dirname } from 'node:path';
import type { RunEnd } from '../../src/core/types.js';
import { startServer, type IngestNotice } from '../../src/server/index.js';
import { RunRecording, runPaths } from '../../src/server/recording.js';
import { storeStimulusImage } from '../../src/server/stimulusStore.js';
import { ProtocolSender } from '../../src/sender/sender.js';
import type { ErrorMessage } from '../../src/protocol/messages.js';
import {
  bytesOf,
  captureLog,
  faultyFs,
  int16Volume,
  nibLoad,
  niftiVolume,
  runInfo,
  tempDir,
  waitFor,
} from './helpers.js';

const PNG = Buffer.from(
  '89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c4890000000d4944415478da63f8cfc0f01f0005000201a0b5e3f40000000049454e44ae426082',
  'hex',
);

async function session(fail: (op: string, path: string) => string | undefined, n: number) {
  const rec = tempDir('fault');
  const { fs } = await faultyFs(fail);
  const notices: IngestNotice[] = [];
  const ends: RunEnd[] = [];
  const srv = await startServer({
    port: 0,
    recordDir: rec,
    recordFs: fs,
    log: captureLog().log,
    reorderWindowMs: 100,
    onHub: (h) => {
      h.status$.subscribe((x) => notices.push(x));
      h.runEnds$.subscribe((e) => ends.push(e));
    },
  });
  const info = runInfo({ subject: 'f01' });
  const sender = new ProtocolSender({ url: srv.url, backoffMs: { initial: 20, max: 200 } }).start();
  const serverErrors: ErrorMessage[] = [];
  let acks = 0;
  sender.on('server-error', (e: ErrorMessage) => serverErrors.push(e));
  sender.on('ack', () => {
    acks++;
  });
  sender.startRun(info);
  for (let i = 0; i < n; i++) {
    sender.sendVolume({
      session: info.session,
      run: info.run,
      index: i,
      tr: info.tr,
      acquisitionTime: i * info.tr,
      nifti: niftiVolume(info, i),
    });
    if (i % 5 === 0)
      sender.sendEvent(info.session, {
        run: info.run,
        trial: i / 5,
        onset: i * info.tr,
        duration: 1,
        stimulusId: `s${i}`,
      });
  }
  sender.endRun(info.session, info.run, n, Math.ceil(n / 5));
  return { rec, info, srv, sender, notices, ends, serverErrors, acks: () => acks };
}

function assertExact(rec: string, info: ReturnType<typeof runInfo>, n: number): void {
  const p = runPaths(rec, info.subject, info.session, info.run);
  const { report, raw } = nibLoad(p.bold, true);
  assert.deepEqual(report.shape, [...info.dims, n]);
  assert.ok(
    raw!.equals(Buffer.concat(Array.from({ length: n }, (_, i) => bytesOf(int16Volume(info.dims, i))))),
    'every volume once, in order',
  );
  const side = JSON.parse(readFileSync(p.json, 'utf8')) as { AcquisitionTimes: number[]; MissingVolumes: number[] };
  assert.deepEqual(
    side.AcquisitionTimes,
    Array.from({ length: n }, (_, i) => i * info.tr),
  );
  assert.deepEqual(side.MissingVolumes, []);
  const rows = readFileSync(p.events, 'utf8')
    .trim()
    .split('\n')
    .slice(1)
    .map((l) => l.split('\t')[3]);
  assert.deepEqual(
    rows,
    Array.from({ length: Math.ceil(n / 5) }, (_, k) => `s${k * 5}`),
    'every event row once',
  );
  assert.deepEqual(
    readdirSync(dirname(p.bold)).filter((f) => f.endsWith('.tmp')),
    [],
    'no temp file left',
  );
}

test('one ENOSPC on the header commit and one EIO on an events write: retried, recorded exactly, no alert', async () => {
  const left = new Map([
    ['write:_bold.nii.gz', 1],
    ['datasync:_events.tsv', 1],
  ]);
  const n = 80; // more than one batch of 32: the file exists when the header commit fails
  const s = await session((op, path) => {
    if (op === 'write' && path.endsWith('_bold.nii.gz') && left.get('write:_bold.nii.gz')) {
      left.set('write:_bold.nii.gz', 0);
      return 'ENOSPC';
    }
    if (op === 'datasync' && path.endsWith('_events.tsv') && left.get('datasync:_events.tsv')) {
      left.set('datasync:_events.tsv', 0);
      return 'EIO';
    }
    return undefined;
  }, n);
  await s.sender.flush();
  await s.sender.close();
  await s.srv.close();
  assert.deepEqual([...left.values()], [0, 0], 'both failures happened');
  assert.deepEqual(s.serverErrors, []);
  assert.equal(s.ends[0].accepted, n);
  assertExact(s.rec, s.info, n);
});

test('ENOSPC on every write for a while: reported once as a notice and to the sender, acks still sent; once the disk recovers the run completes exactly', async () => {
  // The disk fills up once the recording exists (its first commit renamed the file into place) and stays full.
  let phase: 'before' | 'full' | 'freed' = 'before';
  const n = 80;
  const s = await session((op, path) => {
    if (phase === 'before' && op === 'rename' && path.endsWith('_bold.nii.gz')) phase = 'full';
    return phase === 'full' && /^(writev|write|writeFile)$/.test(op) && path.includes('func') ? 'ENOSPC' : undefined;
  }, n);
  try {
    await waitFor(() => s.serverErrors.length >= 2, 10000, 'the failure reported to the sender');
    const acksWhileFailing = s.acks();
    // on a loaded machine the next ack may take a while: wait for it rather than for a fixed time
    await waitFor(() => s.acks() > acksWhileFailing, 10000, 'acks keep coming (the sender is told where things stand)');
    const alerts = s.notices.filter((x) => x.kind === 'record' && x.level === 'error');
    assert.equal(alerts.length, 1, 'one dashboard notice for the outage, not one per try');
    assert.match(
      alerts[0].message,
      /recording .* of run task-vision_run-01 \(sub-f01\) failed \(ENOSPC: .*\); nothing past the last acknowledged volume was committed, the server retries: free disk space/,
    );
    assert.equal(s.serverErrors[0].code, 'server-error');
    assert.ok(s.ends.length === 0, 'the run cannot end while its volumes are not recorded');
  } catch (e) {
    // a failed check must not leave the server and sender running: the test file would never exit
    phase = 'freed';
    await s.sender.close();
    await s.srv.close();
    throw e;
  }
  phase = 'freed';
  await s.sender.flush();
  await s.sender.close();
  await s.srv.close();
  assert.ok(s.notices.some((x) => x.kind === 'record' && /works again/.test(x.message)));
  assert.equal(s.ends[0].accepted, n);
  assertExact(s.rec, s.info, n);
});

test('durability: temp files are fsynced before their rename, the directory after it; concurrent stimulus writes never collide', async () => {
  const rec = tempDir('durable');
  const { fs, calls } = await faultyFs(() => undefined);
  const info = runInfo({ subject: 'd01' });
  const r = await RunRecording.open(rec, info, fs);
  await r.appendVolumes([{ data: int16Volume(info.dims, 0), acquisitionTime: 0 }]);
  await r.appendVolumes([{ data: int16Volume(info.dims, 1), acquisitionTime: 1.5 }]);
  await r.close();
  const renames = calls.map((c, i) => [c, i] as const).filter(([c]) => c.op === 'rename');
  assert.ok(renames.length >= 3, 'sidecar twice and the bold file');
  for (const [c, i] of renames) {
    const before = calls.slice(0, i);
    const tmpOpen = before
      .map((x) => x.path)
      .filter((p) => p.endsWith('.tmp'))
      .pop()!;
    assert.ok(
      before.some((x) => x.path === tmpOpen && (x.op === 'sync' || x.op === 'datasync')),
      `${tmpOpen} fsynced before rename`,
    );
    const after = calls[i + 2];
    assert.deepEqual(
      [calls[i + 1].op, after.op, after.path],
      ['open', 'sync', dirname(c.path)],
      `directory of ${c.path} fsynced after the rename`,
    );
  }
  // Two runs store the same stimulus at once; then two different images under one id.
  const img = { format: 'png' as const, bytes: new Uint8Array(PNG), width: 1, height: 1 };
  const same = await Promise.all([storeStimulusImage(rec, 'nsd-1', img), storeStimulusImage(rec, 'nsd-1', img)]);
  assert.deepEqual(same, ['stimuli/nsd-1.png', 'stimuli/nsd-1.png']);
  const other = { ...img, bytes: new Uint8Array([...PNG, 0]) };
  const both = await Promise.all([storeStimulusImage(rec, 'nsd-2', img), storeStimulusImage(rec, 'nsd-2', other)]);
  assert.notEqual(both[0], both[1]);
  assert.deepEqual(readFileSync(`${rec}/${both[0]}`), Buffer.from(img.bytes));
  assert.deepEqual(readFileSync(`${rec}/${both[1]}`), Buffer.from(other.bytes));
  assert.deepEqual(
    readdirSync(`${rec}/stimuli`).filter((f) => f.endsWith('.tmp')),
    [],
  );
});
