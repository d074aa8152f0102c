// Offline and live are one computation: a session replayed into `serve --record` records, per trial, the response the
// decoder got; `responses` over the same session (and over the recording serve wrote) gives the same vectors to 1e-6,
// with head motion, gaps and a missing first volume. Bad input to `responses` is one clear sentence.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, truncateSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer } from '../../src/server/index.js';
import { replaySession } from '../../src/replay/index.js';
import { createServePipeline } from '../../src/app/serve.js';
import { loadBundle } from '../../src/inference/bundle.js';
import { findResponseRuns, type ResponseRunFile } from '../../src/pipeline/responseFiles.js';
import { writeSessionResponses } from '../../src/pipeline/sessionResponses.js';
import { DERIVATIVE } from '../../src/pipeline/captionFiles.js';
import { tinyBundle } from '../inference/tinyBundle.js';
import { writeSyntheticSession } from '../e2e/syntheticSession.js';

function assertSame(a: ResponseRunFile[], b: ResponseRunFile[], what: string): void {
  assert.equal(a.length, b.length, `${what}: runs`);
  for (const [k, ra] of a.entries()) {
    const rb = b[k];
    assert.equal(ra.run, rb.run);
    assert.deepEqual(ra.rows, rb.rows, `${what}: rows of ${ra.run}`);
    assert.equal(ra.voxels, rb.voxels);
    let worst = 0;
    for (let i = 0; i < ra.data.length; i++) worst = Math.max(worst, Math.abs(ra.data[i] - rb.data[i]));
    assert.ok(worst <= 1e-6, `${what}: max |live − offline| = ${worst}`);
  }
}

test('serve --record and `responses` write the same response vectors (motion, gaps, missing first volume)', async () => {
  const work = mkdtempSync(join(tmpdir(), 'msx-parity-'));
  const bundleDir = tinyBundle();
  try {
    const session = await writeSyntheticSession(
      join(work, 'session'),
      join(bundleDir, 'masks', 'sub-sim01_roi-mask.nii.gz'),
      { trials: 8, motionFrom: 20, missing: [0, 14, 15, 16] },
    );
    const record = join(work, 'record');
    const sp = createServePipeline({ log: () => {}, recordDir: record });
    const srv = await startServer({
      port: 0,
      log: () => {},
      recordDir: record,
      onHub: (hub) => sp.onHub(hub, { models: bundleDir }),
    });
    sp.attach(srv);
    try {
      const replay = await replaySession({ session: session.dir, url: srv.url, speed: 'max' });
      await sp.ready;
      await sp.pipeline()!.whenDone(replay.runs);
    } finally {
      await sp.close();
      await srv.close();
    }
    const live = findResponseRuns(join(record, 'derivatives', DERIVATIVE));
    assert.equal(live.length, 1);
    assert.equal(live[0].rows.length, session.trials, 'every trial recorded');
    assert.deepEqual(
      live[0].rows.map((r) => r.presentation),
      [1, 1, 1, 1, 2, 2, 2, 2],
      'the second showing of each stimulus',
    );
    assert.ok(
      live[0].rows.some((r) => r.flags.includes('missing-volume')),
      'the gap is flagged on the trials it touched',
    );
    assert.ok(live[0].rows.every((r) => r.bundle === 'tiny-random' && /^[0-9a-f]{64}$/.test(r.maskSha256)));

    const bundle = await loadBundle(bundleDir, { verify: false });
    const fromSession = join(work, 'offline-session');
    await writeSessionResponses({
      session: session.dir,
      manifest: bundle.manifest,
      bundlePath: bundle.path,
      out: fromSession,
    });
    assertSame(live, findResponseRuns(fromSession), 'original session');
    const fromRecording = join(work, 'offline-recording');
    await writeSessionResponses({
      session: record,
      manifest: bundle.manifest,
      bundlePath: bundle.path,
      out: fromRecording,
    });
    assertSame(live, findResponseRuns(fromRecording), 'the recording serve wrote');
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
});

test('`responses` refuses bad input with one sentence and writes nothing', async () => {
  const work = mkdtempSync(join(tmpdir(), 'msx-resp-bad-'));
  const bundleDir = tinyBundle();
  const bundle = await loadBundle(bundleDir, { verify: false });
  const maskPath = join(bundleDir, 'masks', 'sub-sim01_roi-mask.nii.gz');
  const run = (session: string, extra: { subject?: string; mask?: string } = {}) =>
    writeSessionResponses({
      session,
      manifest: bundle.manifest,
      bundlePath: bundle.path,
      out: join(work, `out-${Math.random()}`),
      ...extra,
    });
  try {
    const s = await writeSyntheticSession(join(work, 'ok'), maskPath, { trials: 2 });
    const stem = join(s.dir, `sub-${s.subject}`, 'ses-01', 'func', `sub-${s.subject}_ses-01_${s.run}`);

    const noEvents = await writeSyntheticSession(join(work, 'no-events'), maskPath, { trials: 2 });
    rmSync(join(noEvents.dir, `sub-${s.subject}`, 'ses-01', 'func', `sub-${s.subject}_ses-01_${s.run}_events.tsv`));
    await assert.rejects(run(noEvents.dir), /has no _events\.tsv beside .*; responses needs the stimulus events/);

    const stranger = await writeSyntheticSession(join(work, 'stranger'), maskPath, { trials: 2, subject: 'sim77' });
    await assert.rejects(run(stranger.dir), /the model bundle has no mask for sub-sim77 .*pass --mask FILE/);

    const wrongDims = join(work, 'wrong-mask.nii');
    const { encodeNifti1Volume } = await import('../../src/scanner/nifti.js');
    writeFileSync(
      wrongDims,
      encodeNifti1Volume({
        dims: [5, 5, 5],
        affine: [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1],
        tr: 1,
        data: new Uint8Array(125).fill(1),
      }),
    );
    await assert.rejects(run(s.dir, { mask: wrongDims }), /does not fit the mask/);

    const truncated = await writeSyntheticSession(join(work, 'truncated'), maskPath, { trials: 2 });
    const bold = join(
      truncated.dir,
      `sub-${s.subject}`,
      'ses-01',
      'func',
      `sub-${s.subject}_ses-01_${s.run}_bold.nii.gz`,
    );
    truncateSync(bold, Math.floor(statSync(bold).size / 2));
    await assert.rejects(run(truncated.dir), /could not be read .*is the file truncated\?/);

    assert.ok(readFileSync(`${stem}_events.tsv`, 'utf8').length > 0);
    const out = join(work, 'twice');
    await writeSessionResponses({ session: s.dir, manifest: bundle.manifest, bundlePath: bundle.path, out });
    await assert.rejects(
      writeSessionResponses({ session: s.dir, manifest: bundle.manifest, bundlePath: bundle.path, out }),
      /already exists; remove it or pass another --out/,
    );
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
});
