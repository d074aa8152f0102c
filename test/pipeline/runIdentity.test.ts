// Two sessions of one subject reuse the run label task-vision_run-01 (every session has a run-01): the pipeline
// keeps them apart — each gets its own preprocessing, its own dashboard trials, and its captions are recorded under
// its own session, so the second never overwrites the first's reconstructions.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer } from '../../src/server/index.js';
import { replaySession } from '../../src/replay/index.js';
import { createServePipeline } from '../../src/app/serve.js';
import { CaptionRecorder } from '../../src/pipeline/captionFiles.js';
import { tinyBundle } from '../inference/tinyBundle.js';
import { writeSyntheticSession } from '../e2e/syntheticSession.js';
import { waitFor } from '../server/helpers.js';

test('two sessions reusing a run label are decoded, shown and recorded separately', async () => {
  const work = mkdtempSync(join(tmpdir(), 'msx-runid-'));
  const bundle = tinyBundle();
  const mask = join(bundle, 'masks', 'sub-sim01_roi-mask.nii.gz');
  const a = await writeSyntheticSession(join(work, 'a'), mask, { session: '01', trials: 4, seed: 1 });
  const b = await writeSyntheticSession(join(work, 'b'), mask, { session: '02', trials: 4, seed: 2 });
  const rec = join(work, 'record');
  const sp = createServePipeline({ log: () => {} });
  const srv = await startServer({
    port: 0,
    log: () => {},
    recordDir: rec,
    onHub: (hub) => sp.onHub(hub, { models: bundle, record: rec }),
  });
  sp.attach(srv);
  try {
    await sp.ready;
    const sessions: string[] = [];
    sp.pipeline()!.decoded$.subscribe((d) => sessions.push(d.session));
    for (const s of [a, b]) {
      const r = await replaySession({ session: s.dir, url: srv.url, speed: 'max' });
      await sp.pipeline()!.whenDone(r.runs);
    }
    const st = sp.pipeline()!.stats();
    assert.equal(st.trialsDecoded, a.trials + b.trials);
    assert.deepEqual(sessions.sort(), [...Array(a.trials).fill('01'), ...Array(b.trials).fill('02')]);
    const trials = sp.dashboard.state.snapshot().trials;
    assert.equal(trials.length, a.trials + b.trials, 'one card per trial of each session');
    assert.deepEqual([...new Set(trials.map((t) => t.session))].sort(), ['01', '02']);
    const paths = new CaptionRecorder(rec);
    const rows = (f: string) => (existsSync(f) ? readFileSync(f, 'utf8').trim().split('\n').length - 1 : 0);
    // Captions are written off the decode path: wait until both files have settled.
    await waitFor(
      () => ['01', '02'].every((ses) => rows(paths.paths('sim01', ses, a.run).tsv) >= 4),
      10000,
      'caption rows',
    );
    await new Promise((r) => setTimeout(r, 300));
    for (const ses of ['01', '02']) {
      const p = paths.paths('sim01', ses, a.run);
      assert.equal(rows(p.tsv), 4, `ses-${ses} has its own captions`);
      assert.equal(readdirSync(join(p.dir, 'recon')).length, 4, `ses-${ses} has its own reconstructions`);
    }
  } finally {
    await sp.close();
    await srv.close();
    rmSync(work, { recursive: true, force: true });
  }
});
