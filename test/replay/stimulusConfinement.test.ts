// A recording's stim_file is whatever a sender named: a replay of it reads only stimuli inside the dataset being
// replayed (no absolute paths, no "..", no symlink out).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, symlinkSync, writeFileSync, readFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import sharp from 'sharp';
import type { StimulusEvent } from '../../src/core/types.js';
import { startServer } from '../../src/server/index.js';
import { replaySession } from '../../src/replay/index.js';
import { captureLog, runInfo, tempDir, writeBidsRun } from '../server/helpers.js';

test('replay sends the images of stimuli inside the dataset only; absolute, ".." and symlinked-out paths are refused with a warning', async (t) => {
  const outside = tempDir('secret');
  const secret = join(outside, 'private.png');
  await sharp({ create: { width: 8, height: 8, channels: 3, background: '#ff0000' } })
    .png()
    .toFile(secret);
  const ds = tempDir('confine');
  const info = runInfo({ subject: 'c01' });
  const { bold } = writeBidsRun(ds, { info, volumes: 8, events: [] });
  mkdirSync(join(ds, 'stimuli'));
  await sharp({ create: { width: 8, height: 8, channels: 3, background: '#00ff00' } })
    .png()
    .toFile(join(ds, 'stimuli', 'ok.png'));
  symlinkSync(secret, join(ds, 'stimuli', 'link.png'));
  const rel = join('..', '..', '..', '..', outside.split('/').pop()!, 'private.png'); // from func/ up and over to the secret
  const rows = [
    ['0', 'ok', 'stimuli/ok.png'],
    ['1.5', 'abs', secret],
    ['3', 'dotdot', rel],
    ['4.5', 'link', 'stimuli/link.png'],
  ];
  const events = bold.replace('_bold.nii.gz', '_events.tsv');
  writeFileSync(
    events,
    [
      'onset\tduration\ttrial_type\tstimulus_id\treferences\tstim_file',
      ...rows.map(([o, id, f]) => `${o}\t1\tstimulus\t${id}\tn/a\t${f}`),
    ].join('\n') + '\n',
  );

  const got: StimulusEvent[] = [];
  const srv = await startServer({
    port: 0,
    log: captureLog().log,
    onHub: (h) => h.events$.subscribe((e) => got.push(e)),
  });
  t.after(() => srv.close());
  const logs: string[] = [];
  await replaySession({
    session: join(ds, 'sub-c01'),
    url: srv.url,
    speed: 'max',
    log: (l, m) => logs.push(`${l} ${m}`),
  });
  await srv.close();
  assert.deepEqual(
    got.map((e) => [e.stimulusId, e.imageData !== undefined]),
    [
      ['ok', true],
      ['abs', false],
      ['dotdot', false],
      ['link', false],
    ],
  );
  assert.ok(
    logs.some((l) => l.startsWith('warn') && l.includes(`stimulus ${secret}`) && l.includes('outside the dataset')),
  );
  assert.ok(logs.some((l) => l.startsWith('warn') && l.includes('stimuli/link.png') && l.includes(`inside ${ds}`)));
  assert.ok(readFileSync(join(ds, 'stimuli', 'ok.png')).length > 0);
  assert.ok(dirname(events).startsWith(ds));
});
