// Issue 6's trial timeline in replays: `replay` to a separately started `serve` carries each stimulus image inline,
// the dashboard shows it beside the reconstruction, `--record` keeps it, and the recording replays with its images.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import type { StimulusEvent } from '../../src/core/types.js';
import { startServer, runPaths } from '../../src/server/index.js';
import { replaySession } from '../../src/replay/index.js';
import { createServePipeline } from '../../src/app/serve.js';
import { tinyBundle } from '../inference/tinyBundle.js';
import { writeSyntheticSession } from '../e2e/syntheticSession.js';
import { waitFor } from '../server/helpers.js';

test("a replay to serve shows every trial's stimulus image on the dashboard, records it, and the recording replays with it", async () => {
  const work = mkdtempSync(join(tmpdir(), 'msx-stim-'));
  const bundle = tinyBundle();
  const session = await writeSyntheticSession(
    join(work, 'session'),
    join(bundle, 'masks', 'sub-sim01_roi-mask.nii.gz'),
    { trials: 5 },
  );
  const record = join(work, 'record');
  const sp = createServePipeline({ log: () => {} });
  const srv = await startServer({
    port: 0,
    recordDir: record,
    log: () => {},
    onHub: (hub) => sp.onHub(hub, { models: bundle, record }),
  });
  const source = (k: number) => readFileSync(join(session.dir, 'stimuli', `stim${k % 4}.png`));
  try {
    sp.attach(srv);
    const warnings: string[] = [];
    const replay = await replaySession({
      session: session.dir,
      url: srv.url,
      speed: 'max',
      log: (l, m) => {
        if (l === 'warn') warnings.push(m);
      },
    });
    assert.deepEqual(warnings, [], 'every stimulus file was found and sent');
    await sp.ready;
    await sp.pipeline()!.whenDone(replay.runs);
    const trials = () => sp.dashboard.state.snapshot().trials;
    await waitFor(
      () => trials().length === session.trials && trials().every((t) => t.stimulusImage),
      10_000,
      'every trial with its stimulus image',
    );
    for (const t of trials()) {
      assert.match(t.stimulusImage!, /^data:image\/webp;base64,/);
      const meta = await sharp(Buffer.from(t.stimulusImage!.split(',')[1], 'base64')).metadata();
      assert.deepEqual([meta.format, meta.width, meta.height], ['webp', 256, 256]);
      assert.ok(t.reconstruction?.image, `trial ${t.trial} has its reconstruction beside it`);
      // the thumbnail keeps the stimulus' colour (the synthetic shapes differ by colour)
      const px = await sharp(Buffer.from(t.stimulusImage!.split(',')[1], 'base64'))
        .extract({ left: 128, top: 140, width: 1, height: 1 })
        .raw()
        .toBuffer();
      const src = await sharp(source(t.trial)).extract({ left: 32, top: 36, width: 1, height: 1 }).raw().toBuffer();
      for (let c = 0; c < 3; c++) assert.ok(Math.abs(px[c] - src[c]) < 24, `trial ${t.trial} shows its own stimulus`);
    }
  } finally {
    await sp.close();
    await srv.close();
  }
  try {
    // The recording holds the images, and its events TSV points at them.
    const rows = readFileSync(runPaths(record, session.subject, '01', session.run).events, 'utf8')
      .trim()
      .split('\n')
      .slice(1)
      .map((l) => l.split('\t'));
    assert.deepEqual(
      rows.map((r) => r[5]),
      rows.map((_, i) => `stimuli/stim${i % 4}.png`),
    );
    for (let k = 0; k < 4; k++)
      assert.ok(
        readFileSync(join(record, 'stimuli', `stim${k}.png`)).equals(source(k)),
        `stim${k} recorded byte for byte`,
      );
    // A replay of the recording carries them again.
    const events: StimulusEvent[] = [];
    const again = await startServer({
      port: 0,
      log: () => {},
      onHub: (h) => h.events$.subscribe((e) => events.push(e)),
    });
    try {
      await replaySession({ session: record, url: again.url, speed: 'max' });
    } finally {
      await again.close();
    }
    assert.equal(events.length, session.trials);
    for (const e of events)
      assert.ok(
        e.imageData && Buffer.from(e.imageData.bytes).equals(source(e.trial)),
        `trial ${e.trial} replayed with its image`,
      );
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
});
