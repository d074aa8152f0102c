// Evidence accumulates over repeats (RepeatMeans), quality is reported by presentation (byPresentation), and a replay
// loses no decode however far decoding falls behind (a 300-trial replay through serve with decoding held back).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RepeatMeans } from '../../streams/index.js';
import { byPresentation } from '../../src/pipeline/summary.js';
import { startServer } from '../../src/server/index.js';
import { replaySession } from '../../src/replay/index.js';
import type { DecodedTrial, Pipeline } from '../../src/pipeline/pipeline.js';
import { startDecoding, type DecodingOptions } from '../../src/app/decoding.js';
import { BrainDecoder } from '../../src/inference/decoder.js';

import { tinyBundle } from '../inference/tinyBundle.js';
import { writeSyntheticSession } from '../e2e/syntheticSession.js';

const trial = (stimulusId: string, values: number[], flags: string[] = []) => ({
  subject: 's1',
  stimulusId,
  vector: Float32Array.from(values),
  flags,
});

test("RepeatMeans: the mean of a stimulus's presentations so far, per session, skipping trials without data", () => {
  const r = new RepeatMeans();
  assert.deepEqual(r.add('ses1', trial('a', [1, 2])), { presentation: 1 });
  assert.deepEqual(r.add('ses1', trial('b', [9, 9])), { presentation: 1 });
  const second = r.add('ses1', trial('a', [3, 6]));
  assert.equal(second.presentation, 2);
  assert.equal(second.meanOf, 2);
  assert.deepEqual([...second.mean!], [2, 4]);
  const third = r.add('ses1', trial('a', [0, 0], ['no-data']));
  assert.equal(third.presentation, 3);
  assert.deepEqual([...third.mean!], [2, 4], 'a trial without data does not pull the mean to zero');
  assert.equal(third.meanOf, 2);
  assert.deepEqual(r.add('ses2', trial('a', [5, 5])), { presentation: 1 }, 'another session starts again');
});

test('byPresentation scores single trials at presentation 1 and the means from presentation 2 on', () => {
  const scenes = [
    ['a red car parked on a street', 'a small red car by the road'],
    ['a brown dog running on green grass', 'a dog runs across a lawn'],
    ['a bowl of fruit on a wooden table', 'apples and bananas in a bowl'],
  ];
  const wrong = ['a person riding a bicycle', 'a boat on a lake', 'a cat on a sofa'];
  const rows = byPresentation(
    scenes.flatMap((refs, i) => [
      { key: `r/${i}`, presentation: 1, references: refs, caption: wrong[i], baseline: refs[0] },
      {
        key: `r/${i + 3}`,
        presentation: 2,
        references: refs,
        caption: wrong[i],
        baseline: refs[0],
        mean: { caption: refs[1], baseline: wrong[i] },
      },
    ]),
  );
  assert.deepEqual(
    rows.map((r) => [r.presentation, r.trials]),
    [
      [1, 3],
      [2, 3],
    ],
  );
  assert.ok(
    rows[1].CIDEr > rows[0].CIDEr + 1,
    `presentation 2 is scored on the mean captions (${rows[0].CIDEr} → ${rows[1].CIDEr})`,
  );
  assert.ok(rows[0].baseline_CIDEr! > rows[1].baseline_CIDEr! + 1, 'and the baseline on the mean too');
});

async function replayHeld(
  lossless: DecodingOptions['lossless'],
): Promise<{ seen: number; decoded: number; shed: number; withMean: number }> {
  const work = mkdtempSync(join(tmpdir(), 'msx-lossless-'));
  const bundle = tinyBundle();
  const real = await BrainDecoder.load(bundle);
  // Decoding waits until the replay has sent every volume: all 300 trials are then waiting, past the live bound of 256.
  let release!: () => void;
  const gate = new Promise<void>((r) => {
    release = r;
  });
  const held = new Proxy(real, {
    get(target, prop) {
      if (prop === 'decodeBatch')
        return async (...a: Parameters<BrainDecoder['decodeBatch']>) => {
          await gate;
          return target.decodeBatch(...a);
        };
      const v = Reflect.get(target, prop) as unknown;
      return typeof v === 'function' ? (v as (...x: unknown[]) => unknown).bind(target) : v;
    },
  });
  let pipeline!: Pipeline;
  const srv = await startServer({
    port: 0,
    log: () => {},
    onHub: (hub) => {
      pipeline = startDecoding(hub, { decoder: held, lossless, liveMetrics: false, log: () => {} });
    },
  });
  try {
    const s = await writeSyntheticSession(join(work, 'session'), join(bundle, 'masks', 'sub-sim01_roi-mask.nii.gz'), {
      trials: 300,
      tr: 2,
    });
    const decoded: DecodedTrial[] = [];
    pipeline.decoded$.subscribe((d) => decoded.push(d));
    const replay = await replaySession({ session: s.dir, url: srv.url, speed: 'max' });
    release();
    await pipeline.whenDone(replay.runs);
    const st = pipeline.stats();
    return {
      seen: st.trialsSeen,
      decoded: st.trialsDecoded,
      shed: decoded.filter((d) => d.error).length,
      withMean: decoded.filter((d) => d.mean).length,
    };
  } finally {
    await pipeline.close();
    await srv.close();
    await real.release();
    rmSync(work, { recursive: true, force: true });
  }
}

test('a 300-trial replay at full speed is decoded whole while decoding is held back; a live pipeline sheds past 256', async () => {
  // serve's rule: runs sent by a replay client (its hello says 'replay') are lossless
  const replayed = await replayHeld((info) => info.source === 'replay');
  assert.deepEqual(
    { seen: replayed.seen, decoded: replayed.decoded, shed: replayed.shed },
    { seen: 300, decoded: 300, shed: 0 },
  );
  assert.ok(replayed.withMean > 200, `repeated stimuli also get the mean caption (${replayed.withMean})`);
  const live = await replayHeld(false);
  assert.equal(live.seen, 300);
  assert.ok(
    live.shed > 0 && live.decoded === 300 - live.shed,
    `the live bound sheds the oldest waiting trials (${live.shed} shed)`,
  );
});
