// Inline stimulus images at the server: a bad one is refused with a sentence to the sender and the event is kept
// (without it); good ones reach the hub and the recording's stimuli/, named by the events TSV's stim_file.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import WebSocket from 'ws';
import type { StimulusEvent } from '../../src/core/types.js';
import { startServer, runPaths, type IngestNotice } from '../../src/server/index.js';
import type { AckMessage, ErrorMessage, ServerMessage } from '../../src/protocol/messages.js';
import { captureLog, runInfo, tempDir, waitFor } from './helpers.js';

const picture = (colour: string, fmt: 'png' | 'jpeg') => {
  const img = sharp({ create: { width: 24, height: 16, channels: 3, background: colour } });
  return (fmt === 'png' ? img.png() : img.jpeg()).toBuffer();
};

test('bad inline images get a bad-image error and the event is still accepted and recorded; good ones are stored under stimuli/', async (t) => {
  const rec = tempDir('stimrec');
  const events: StimulusEvent[] = [];
  const notices: IngestNotice[] = [];
  const srv = await startServer({
    port: 0,
    recordDir: rec,
    log: captureLog().log,
    onHub: (h) => {
      h.events$.subscribe((e) => events.push(e));
      h.status$.subscribe((n) => notices.push(n));
    },
  });
  t.after(() => srv.close());
  const info = runInfo({ subject: 'i01' });
  const red = await picture('#c00', 'png');
  const blue = await picture('#00c', 'png');
  const green = await picture('#0c0', 'jpeg');
  const sends: [string, string | number][] = [
    ['s0', red.toString('base64')],
    ['s1', 'this is not base64!'],
    ['s2', Buffer.from('plain text, not an image').toString('base64')],
    ['s3', Buffer.alloc(600 * 1024, 9).toString('base64')],
    ['s0', red.toString('base64')], // the same stimulus again: the same file
    ['s0', blue.toString('base64')], // the same id with other pixels: nothing is overwritten
    ['odd/id 7', green.toString('base64')],
    ['s8', 12345],
  ];

  const ws = new WebSocket(srv.url);
  const msgs: ServerMessage[] = [];
  ws.on('message', (d) => msgs.push(JSON.parse(d.toString()) as ServerMessage));
  await new Promise((r) => ws.once('open', r));
  ws.send(JSON.stringify({ type: 'hello', v: 1, client: 'raw' }));
  ws.send(JSON.stringify({ type: 'run-start', ...info }));
  sends.forEach(([id, imageData], trial) =>
    ws.send(
      JSON.stringify({
        type: 'event',
        session: info.session,
        run: info.run,
        trial,
        onset: trial * 4,
        duration: 3,
        stimulusId: id,
        image: `stimuli/${id}.png`,
        imageData,
      }),
    ),
  );
  const acked = () => msgs.filter((m): m is AckMessage => m.type === 'ack').some((a) => a.eventsNext === sends.length);
  await waitFor(acked, 5000, 'every event acknowledged');
  ws.close();

  const errors = msgs.filter((m): m is ErrorMessage => m.type === 'error');
  assert.deepEqual(
    errors.map((e) => [e.code, e.fatal]),
    Array(4).fill(['bad-image', false]),
  );
  assert.match(
    errors[0].message,
    /^stimulus image of event 1 \(s1\) of run task-vision_run-01 refused: "imageData" is not valid base64.*The event was accepted without it\.$/,
  );
  assert.match(errors[1].message, /event 2 \(s2\).*not a PNG, JPEG or WebP file/);
  assert.match(errors[2].message, /event 3 \(s3\).*above the 512 KiB limit/);
  assert.match(errors[3].message, /event 7 \(s8\).*"imageData" must be a non-empty base64 string/);
  assert.ok(
    notices.some((n) => /^bad-image: stimulus image of event 1/.test(n.message)),
    'the operator sees it too',
  );

  assert.deepEqual(
    events.map((e) => e.trial),
    [...sends.keys()],
    'every event is accepted, in order',
  );
  assert.deepEqual(
    events.map((e) => e.imageData?.format ?? null),
    ['png', null, null, null, 'png', 'png', 'jpeg', null],
  );
  assert.ok(Buffer.from(events[0].imageData!.bytes).equals(red));

  await srv.close();
  const rows = readFileSync(runPaths(rec, 'i01', info.session, info.run).events, 'utf8')
    .trim()
    .split('\n')
    .slice(1)
    .map((l) => l.split('\t'));
  const stimFiles = rows.map((r) => r[5]);
  assert.equal(stimFiles[0], 'stimuli/s0.png');
  assert.deepEqual(
    stimFiles.slice(1, 4),
    ['stimuli/s1.png', 'stimuli/s2.png', 'stimuli/s3.png'],
    "without an image the sender's path is kept",
  );
  assert.equal(stimFiles[4], 'stimuli/s0.png');
  assert.match(stimFiles[5], /^stimuli\/s0-[0-9a-f]{12}\.png$/);
  assert.equal(stimFiles[6], 'stimuli/odd_id_7.jpg');
  const bytes = (rel: string) => readFileSync(join(rec, rel));
  assert.ok(bytes(stimFiles[0]).equals(red));
  assert.ok(bytes(stimFiles[5]).equals(blue));
  assert.ok(bytes(stimFiles[6]).equals(green));
});
