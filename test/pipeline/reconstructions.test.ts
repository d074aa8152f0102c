// Caption first, image after (issue 20): the pipeline emits each caption as soon as it is decoded and the reconstruction
// follows on reconstructions$, so a slow generator delays no caption and a failing one leaves every caption standing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer } from '../../src/server/index.js';
import { replaySession } from '../../src/replay/index.js';
import type { DecodedTrial, Pipeline, PipelineAlert, ReconstructedTrial } from '../../src/pipeline/pipeline.js';
import { startDecoding } from '../../src/app/decoding.js';
import { BrainDecoder } from '../../src/inference/decoder.js';
import { tinyBundle } from '../inference/tinyBundle.js';
import { writeSyntheticSession } from '../e2e/syntheticSession.js';

const TRIALS = 6;

/** `real` with `reconstructEncoded` replaced (the generator's step the pipeline calls after the caption). */
function withGenerator(real: BrainDecoder, reconstructEncoded: BrainDecoder['reconstructEncoded']): BrainDecoder {
  return new Proxy(real, {
    get(target, prop) {
      if (prop === 'reconstructEncoded') return reconstructEncoded;
      const v = Reflect.get(target, prop) as unknown;
      return typeof v === 'function' ? (v as (...x: unknown[]) => unknown).bind(target) : v;
    },
  });
}

async function replayWith(
  decoder: BrainDecoder,
  work: string,
  during: (p: Pipeline, replay: Promise<{ runs: string[] }>) => Promise<void>,
  record?: string,
): Promise<void> {
  const bundle = decoder.bundle.dir;
  let pipeline!: Pipeline;
  const srv = await startServer({
    port: 0,
    log: () => {},
    onHub: (hub) => {
      pipeline = startDecoding(hub, { decoder, lossless: true, liveMetrics: false, recordDir: record, log: () => {} });
    },
  });
  try {
    const s = await writeSyntheticSession(join(work, 'session'), join(bundle, 'masks', 'sub-sim01_roi-mask.nii.gz'), {
      trials: TRIALS,
    });
    await during(
      pipeline,
      Promise.resolve().then(() => replaySession({ session: s.dir, url: srv.url, speed: 'max' })),
    );
  } finally {
    await pipeline.close();
    await srv.close();
  }
}

async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test('captions are emitted without waiting for a slow generator; each reconstruction follows its caption with its time', async () => {
  const work = mkdtempSync(join(tmpdir(), 'msx-recon-'));
  const real = await BrainDecoder.load(tinyBundle());
  assert.ok(real.hasGenerator, 'the tiny bundle has an image generator');
  // The generator is held until every caption has been seen: captions that waited for their image would never arrive.
  let release!: () => void;
  const held = new Promise<void>((r) => {
    release = r;
  });
  let calls = 0;
  const slow = withGenerator(real, async (c, o) => {
    calls++;
    await held;
    return real.reconstructEncoded(c, o);
  });
  const order: string[] = [];
  const captions: DecodedTrial[] = [];
  const recons: ReconstructedTrial[] = [];
  try {
    await replayWith(slow, work, async (p, replaying) => {
      p.decoded$.subscribe((d) => {
        captions.push(d);
        order.push(`caption ${d.trial}`);
      });
      p.reconstructions$.subscribe((r) => {
        recons.push(r);
        order.push(`recon ${r.trial}`);
      });
      const replay = await replaying;
      let done = false;
      const finished = p.whenDone(replay.runs).then(() => {
        done = true;
      });
      await until(() => captions.length === TRIALS, 60_000, 'every caption');
      assert.ok(captions.every((c) => !c.error && typeof c.caption === 'string' && c.latencyMs! >= 0));
      assert.equal(recons.length, 0, 'no reconstruction yet: the generator is held');
      assert.ok(calls >= 1, 'the generator was started after the captions');
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(done, false, 'the run is not done while reconstructions are pending');
      release();
      await finished;
    });
    assert.equal(recons.length, TRIALS);
    for (const c of captions) {
      const r = recons.find(
        (x) => x.trial === c.trial && x.run === c.run && x.session === c.session && x.subject === c.subject,
      );
      assert.ok(r, `trial ${c.trial} has its reconstruction`);
      assert.ok(
        order.indexOf(`caption ${c.trial}`) < order.indexOf(`recon ${c.trial}`),
        `trial ${c.trial}: caption before image`,
      );
      assert.equal(r.stimulusId, c.stimulusId);
      assert.equal(r.error, undefined);
      assert.equal(r.imageFormat, 'webp');
      assert.ok(r.image && r.image.length > 100);
      assert.ok(r.ms! > 0 && r.ms! < 60_000, `generation time ${r.ms} ms`);
    }
  } finally {
    await real.release();
    rmSync(work, { recursive: true, force: true });
  }
});

test('a failing generator leaves every caption intact, says so in one line, and the recording keeps the captions', async () => {
  const work = mkdtempSync(join(tmpdir(), 'msx-recon-fail-'));
  const real = await BrainDecoder.load(tinyBundle());
  const broken = withGenerator(real, async (c, o) => {
    if (broken.failNext) {
      broken.failNext = false;
      throw new Error('generator exploded');
    }
    return real.reconstructEncoded(c, o);
  }) as BrainDecoder & { failNext?: boolean };
  broken.failNext = true;
  const captions: DecodedTrial[] = [];
  const recons: ReconstructedTrial[] = [];
  const alerts: PipelineAlert[] = [];
  const record = join(work, 'record');
  try {
    await replayWith(
      broken,
      work,
      async (p, replaying) => {
        p.decoded$.subscribe((d) => captions.push(d));
        p.reconstructions$.subscribe((r) => recons.push(r));
        p.alerts$.subscribe((a) => alerts.push(a));
        const replay = await replaying;
        await p.whenDone(replay.runs);
      },
      record,
    );
    assert.equal(captions.length, TRIALS);
    assert.ok(
      captions.every((c) => !c.error && typeof c.caption === 'string'),
      'every caption stands',
    );
    assert.equal(recons.length, TRIALS);
    const failed = recons.filter((r) => r.error);
    assert.equal(failed.length, 1);
    assert.equal(failed[0].error, 'generator exploded');
    assert.equal(failed[0].image, undefined);
    assert.ok(
      recons.filter((r) => !r.error).every((r) => r.image && r.ms! > 0),
      'later trials still get their image',
    );
    const notice = alerts.filter((a) => a.code === 'reconstruction-failed');
    assert.equal(notice.length, 1);
    assert.match(
      notice[0].message,
      /^the reconstruction of trial \d+ of \S+ failed \(generator exploded\); its caption stands\.$/,
    );
    assert.doesNotMatch(notice[0].message, /\n/);
    const dir = join(record, 'derivatives', 'mindsemantix-decoder', 'sub-sim01', 'ses-01');
    const run = captions[0].run;
    const rows = (f: string) =>
      readFileSync(join(dir, `sub-sim01_ses-01_${run}_${f}.tsv`), 'utf8')
        .trim()
        .split('\n')
        .slice(1)
        .map((l) => l.split('\t'));
    assert.equal(rows('captions').length, TRIALS, 'every caption is recorded');
    const reconRows = rows('recons');
    assert.equal(reconRows.length, TRIALS);
    assert.deepEqual(
      reconRows.filter((r) => r[4] !== 'n/a').map((r) => [r[2], r[4]]),
      [['n/a', 'generator exploded']],
    );
  } finally {
    await real.release();
    rmSync(work, { recursive: true, force: true });
  }
});
