// Senders find the stim_file an events row names (beside the TSV or in the folders above), read it when it fits the
// inline limits, shrink it when it does not (replay), and the bridge sends it with its event.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import type { StimulusEvent, Volume } from '../../src/core/types.js';
import { startServer } from '../../src/server/index.js';
import { ScannerBridge } from '../../src/bridge/index.js';
import {
  fitStimulusFile,
  readStimulusFile,
  resolveStimulusFile,
  RETRY_MS,
  StimulusFiles,
} from '../../src/bids/stimulusFile.js';
import { MAX_INLINE_IMAGE_BYTES } from '../../src/protocol/inlineImage.js';
import { captureLog, niftiVolume, runInfo, tempDir, waitFor } from '../server/helpers.js';

test('stim_file resolves beside the events TSV or up to the dataset root; oversize or other formats are re-encoded to fit', async () => {
  const root = tempDir('stimres');
  const func = join(root, 'sub-01', 'ses-01', 'func');
  mkdirSync(func, { recursive: true });
  mkdirSync(join(root, 'stimuli'));
  const tsv = join(func, 'sub-01_ses-01_task-v_run-01_events.tsv');
  const small = join(root, 'stimuli', 'a.png');
  await sharp({ create: { width: 30, height: 20, channels: 3, background: '#123456' } })
    .png()
    .toFile(small);
  assert.equal(resolveStimulusFile('stimuli/a.png', tsv), small);
  assert.equal(resolveStimulusFile(small, tsv), small, 'absolute paths are used as they are');
  assert.equal(resolveStimulusFile('stimuli/nope.png', tsv), undefined);

  const noise = randomBytes(900 * 700 * 3); // incompressible: the PNG is far above the limit
  const big = join(root, 'stimuli', 'big.png');
  await sharp(noise, { raw: { width: 900, height: 700, channels: 3 } })
    .png()
    .toFile(big);
  assert.throws(() => readStimulusFile(big), /big\.png is \d+ KiB, above the 512 KiB inline limit/);
  const fitted = await fitStimulusFile(big);
  assert.deepEqual([fitted.format, fitted.width, fitted.height], ['jpeg', 512, 398]);
  assert.ok(fitted.bytes.length <= MAX_INLINE_IMAGE_BYTES);
  const tiff = join(root, 'stimuli', 'c.tiff');
  await sharp({ create: { width: 10, height: 10, channels: 3, background: '#fff' } })
    .tiff()
    .toFile(tiff);
  assert.equal((await fitStimulusFile(tiff)).format, 'jpeg');
  writeFileSync(join(root, 'stimuli', 'text.png'), 'not an image');
  await assert.rejects(
    fitStimulusFile(join(root, 'stimuli', 'text.png')),
    /not a PNG, JPEG or WebP file.*could not be re-encoded/,
  );
});

test('the bridge sends the stimulus image next to the events TSV it follows, shrinks one above the limit, keeps trial order; a missing one is warned about once', async (t) => {
  const dir = tempDir('stimwatch');
  const pres = tempDir('presentation');
  mkdirSync(join(pres, 'stimuli'));
  const cat = await sharp({ create: { width: 16, height: 16, channels: 3, background: '#a52' } })
    .png()
    .toBuffer();
  writeFileSync(join(pres, 'stimuli', 'cat.png'), cat);
  await sharp(randomBytes(900 * 700 * 3), { raw: { width: 900, height: 700, channels: 3 } })
    .png()
    .toFile(join(pres, 'stimuli', 'big.png'));
  const tsv = join(pres, 'events.tsv');
  writeFileSync(
    tsv,
    'onset\tduration\ttrial_type\tstimulus_id\treferences\tstim_file\n' +
      '0.5\t3\tstimulus\tbig\tn/a\tstimuli/big.png\n' +
      '1\t3\tstimulus\tcat\t["a cat"]\tstimuli/cat.png\n2.1\t3\tstimulus\tdog\t["a dog"]\tstimuli/dog.png\n4\t3\tstimulus\tdog\tn/a\tstimuli/dog.png\n',
  );
  const events: StimulusEvent[] = [];
  const vols: Volume[] = [];
  const srv = await startServer({
    port: 0,
    log: captureLog().log,
    onHub: (h) => {
      h.events$.subscribe((e) => events.push(e));
      h.volumes$.subscribe((v) => vols.push(v));
    },
  });
  t.after(() => srv.close());
  const logs: string[] = [];
  const bridge = new ScannerBridge({
    dir,
    url: srv.url,
    eventsFile: tsv,
    log: (l, m) => logs.push(`${l} ${m}`),
  }).start();
  const info = runInfo({ dims: [6, 5, 4] });
  for (let i = 0; i < 3; i++)
    writeFileSync(join(dir, `001_000003_${String(i + 1).padStart(6, '0')}.nii`), niftiVolume(info, i));
  await waitFor(() => events.length === 4 && vols.length === 3, 5000, 'four events and three volumes');
  await bridge.stop();
  assert.deepEqual(
    events.map((e) => [e.trial, e.stimulusId, e.imageData?.format ?? null]),
    [
      [0, 'big', 'jpeg'],
      [1, 'cat', 'png'],
      [2, 'dog', null],
      [3, 'dog', null],
    ],
  );
  assert.deepEqual([events[0].imageData!.width, events[0].imageData!.height], [512, 398]);
  assert.ok(Buffer.from(events[1].imageData!.bytes).equals(cat));
  assert.equal(
    logs.filter((l) => /stimulus stimuli\/dog\.png named in .*events\.tsv is not next to it/.test(l)).length,
    1,
  );
});

test('a stim_file that appears after its events row is picked up for the later rows that name it; warned about once', async () => {
  const pres = tempDir('late-stim');
  mkdirSync(join(pres, 'stimuli'));
  const tsv = join(pres, 'events.tsv');
  const logs: string[] = [];
  const files = new StimulusFiles((l, m) => logs.push(`${l} ${m}`));
  assert.equal(await files.load('stimuli/late.png', tsv), undefined);
  await sharp({ create: { width: 12, height: 8, channels: 3, background: '#0a0' } })
    .png()
    .toFile(join(pres, 'stimuli', 'late.png'));
  assert.equal(await files.load('stimuli/late.png', tsv), undefined, 'not looked for again at once');
  await new Promise((r) => setTimeout(r, RETRY_MS + 50));
  const img = await files.load('stimuli/late.png', tsv);
  assert.deepEqual([img?.format, img?.width, img?.height], ['png', 12, 8]);
  assert.equal(logs.filter((l) => l.includes('late.png')).length, 1);
});
