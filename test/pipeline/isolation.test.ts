// One faulty sink never ends the process or the session: a hub subscriber that throws (RxJS 7 rethrows it from a
// timer) is reported and isolated, and a caption write that fails once does not stop caption recording for good.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { map } from 'rxjs';
import { startServer } from '../../src/server/index.js';
import { CaptionRecorder } from '../../src/pipeline/captionFiles.js';
import { ProtocolSender } from '../../src/sender/sender.js';
import { captureLog, niftiVolume, runInfo, tempDir, waitFor } from '../server/helpers.js';

test('a throwing hub subscriber and an erroring operator chain are logged; ingest, acks and the other subscribers go on', async (t) => {
  const cap = captureLog();
  const good: number[] = [];
  let thrown = 0;
  const srv = await startServer({
    port: 0,
    log: cap.log,
    onHub: (h) => {
      h.volumes$.subscribe(() => {
        thrown++;
        throw new Error('dashboard renderer exploded');
      });
      h.volumes$
        .pipe(
          map((v) => {
            if (v.index === 2) throw new Error('operator failed on volume 2');
            return v;
          }),
        )
        .subscribe(() => {});
      h.volumes$.subscribe((v) => good.push(v.index));
    },
  });
  t.after(() => srv.close());
  const info = runInfo({ subject: 'i01' });
  const s = new ProtocolSender({ url: srv.url }).start();
  s.startRun(info);
  const n = 6;
  for (let i = 0; i < n; i++)
    s.sendVolume({
      session: info.session,
      run: info.run,
      index: i,
      tr: info.tr,
      acquisitionTime: i,
      nifti: niftiVolume(info, i),
    });
  s.endRun(info.session, info.run, n, 0);
  await s.flush();
  await s.close();
  await waitFor(
    () => cap.lines.filter((l) => l.includes('(it was isolated; the session goes on)')).length >= n + 1,
    3000,
    'reports',
  );
  assert.deepEqual(good, [0, 1, 2, 3, 4, 5]);
  assert.equal(thrown, n);
  assert.ok(cap.lines.some((l) => l.startsWith('error') && l.includes('dashboard renderer exploded')));
  assert.ok(cap.lines.some((l) => l.includes('operator failed on volume 2')));
  await srv.close();
});

test('a caption write that fails (the folder is not writable for a moment) fails alone; the next captions are recorded', async () => {
  const root = tempDir('captions');
  const rec = new CaptionRecorder(root);
  const c = (trial: number) => ({
    subject: 's1',
    session: '01',
    run: 'task-x_run-01',
    trial,
    stimulusId: `s${trial}`,
    onset: trial,
    text: `caption ${trial}`,
    confidence: 0.5,
    tokenLogprobs: [],
    flags: [],
    latencyMs: 1,
  });
  mkdirSync(root, { recursive: true });
  writeFileSync(join(root, 'derivatives'), 'a file where the folder should be');
  await assert.rejects(rec.record(c(0)));
  rmSync(join(root, 'derivatives'));
  await rec.record(c(1));
  await rec.record(c(2));
  await rec.flush();
  const tsv = readFileSync(rec.paths('s1', '01', 'task-x_run-01').tsv, 'utf8')
    .trim()
    .split('\n');
  assert.deepEqual(
    tsv.slice(1).map((l) => l.split('\t')[0]),
    ['1', '2'],
  );
});
