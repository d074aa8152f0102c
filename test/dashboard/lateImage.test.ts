// The reconstruction reaches the dashboard after its caption (issue 20): the feed turns reconstructions$ into
// 'reconstruction' updates keyed like the trial, and the session record fills the card in without touching the caption.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Subject } from 'rxjs';
import { DashboardState, type DashTrial, type DashUpdate } from '../../src/sinks/dashboard/dashboard-state.js';
import { feedDashboard } from '../../src/sinks/dashboard/feed.js';
import type { Dashboard } from '../../src/sinks/dashboard/dashboard.js';
import type { DecodedTrial, Pipeline, ReconstructedTrial } from '../../src/pipeline/pipeline.js';

const key = { run: 'task-x_run-01', subject: 'a', session: '01' };
const trial = (i: number): DashTrial => ({ ...key, trial: i, stimulusId: `s${i}`, onset: i, duration: 1 });

test('a reconstruction that arrives after its caption fills in the card and keeps the caption', () => {
  const st = new DashboardState();
  st.apply({ type: 'trial', data: trial(0) });
  st.apply({ type: 'trial', data: trial(1) });
  st.apply({
    type: 'caption',
    data: { ...key, trial: 0, caption: { text: 'a red car', confidence: 0.7, latencyMs: 90, flags: [] } },
  });
  assert.equal(st.trial({ ...key, trial: 0 })?.reconstruction, undefined, 'the caption is shown before any image');
  st.apply({
    type: 'reconstruction',
    data: { ...key, trial: 0, reconstruction: { image: 'data:image/webp;base64,AAAA', ms: 41.2 } },
  });
  const t = st.trial({ ...key, trial: 0 })!;
  assert.deepEqual(t.reconstruction, { image: 'data:image/webp;base64,AAAA', ms: 41.2 });
  assert.equal(t.caption?.text, 'a red car');
  assert.equal(st.trial({ ...key, trial: 1 })?.reconstruction, undefined, 'only its own trial');
  // a failed image: the caption stands, the card says why
  st.apply({
    type: 'caption',
    data: { ...key, trial: 1, caption: { text: 'a dog', confidence: 0.4, latencyMs: 80, flags: [] } },
  });
  st.apply({ type: 'reconstruction', data: { ...key, trial: 1, reconstruction: { error: 'generator exploded' } } });
  assert.equal(st.trial({ ...key, trial: 1 })?.caption?.text, 'a dog');
  assert.equal(st.trial({ ...key, trial: 1 })?.reconstruction?.error, 'generator exploded');
  // a reconstruction for a trial the record no longer has is ignored
  st.apply({ type: 'reconstruction', data: { ...key, trial: 9, reconstruction: { ms: 1 } } });
  assert.equal(st.snapshot().trials.length, 2);
});

test('the feed publishes the caption at once and the reconstruction as its own update, as a data: URL with its time', () => {
  const decoded = new Subject<DecodedTrial>();
  const reconstructions = new Subject<ReconstructedTrial>();
  const never = new Subject<never>();
  const pipeline = {
    model: { name: 'm', provider: 'cpu', subjects: ['a'] },
    decoded$: decoded,
    reconstructions$: reconstructions,
    responses$: never,
    alerts$: never,
    status$: never,
    runStarts$: never,
    received$: never,
    processed$: never,
    events$: never,
    report: () => {},
  } as unknown as Pipeline;
  const sent: DashUpdate[] = [];
  const dashboard = { publish: (u: DashUpdate) => sent.push(u), viewers: () => 0 } as unknown as Dashboard;
  const subs = feedDashboard(pipeline, dashboard, { liveMetrics: false, log: () => {} });
  try {
    decoded.next({
      ...key,
      trial: 3,
      stimulusId: 's3',
      onset: 3,
      flags: [],
      caption: 'a red car',
      confidence: 0.7,
      latencyMs: 90,
      presentation: 1,
    });
    const caption = sent.find((u) => u.type === 'caption');
    assert.ok(caption && caption.type === 'caption');
    assert.equal(caption.data.caption.text, 'a red car');
    assert.equal('image' in caption.data.caption, false, 'the caption carries no image');
    assert.equal(
      sent.some((u) => u.type === 'reconstruction'),
      false,
    );
    reconstructions.next({
      ...key,
      trial: 3,
      stimulusId: 's3',
      image: Uint8Array.from([1, 2, 3]),
      imageFormat: 'webp',
      ms: 41.6,
    });
    reconstructions.next({ ...key, trial: 4, stimulusId: 's4', error: 'generator exploded' });
    const recons = sent.filter((u) => u.type === 'reconstruction');
    assert.deepEqual(
      recons.map((u) => u.data),
      [
        { ...key, trial: 3, reconstruction: { image: 'data:image/webp;base64,AQID', ms: 41.6, error: undefined } },
        { ...key, trial: 4, reconstruction: { image: undefined, ms: undefined, error: 'generator exploded' } },
      ],
    );
  } finally {
    for (const s of subs) s.unsubscribe();
  }
});
