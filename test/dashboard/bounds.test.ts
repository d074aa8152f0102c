// The dashboard's record tells runs apart by (subject, session, run) and stays bounded over an 8-hour session:
// trials kept, images only on the most recent trials, alerts capped.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DashboardState, type DashTrial } from '../../src/sinks/dashboard/dashboard-state.js';

const trial = (i: number, o: Partial<DashTrial> = {}): DashTrial => ({
  run: 'task-x_run-01',
  subject: 'a',
  session: '01',
  trial: i,
  stimulusId: `s${i}`,
  onset: i,
  duration: 1,
  ...o,
});

test('two sessions reusing one run label keep their own trials and captions', () => {
  const st = new DashboardState();
  st.apply({ type: 'trial', data: trial(0) });
  st.apply({ type: 'trial', data: trial(0, { session: '02', stimulusId: 'other' }) });
  st.apply({ type: 'trial', data: trial(0, { subject: 'b', stimulusId: 'third' }) });
  st.apply({
    type: 'caption',
    data: {
      run: 'task-x_run-01',
      subject: 'a',
      session: '02',
      trial: 0,
      caption: { text: 'a dog', confidence: 0.5, latencyMs: 1, flags: [] },
    },
  });
  assert.equal(st.snapshot().trials.length, 3);
  assert.equal(st.trial({ run: 'task-x_run-01', subject: 'a', session: '01', trial: 0 })?.caption, undefined);
  assert.equal(st.trial({ run: 'task-x_run-01', subject: 'a', session: '02', trial: 0 })?.caption?.text, 'a dog');
  assert.equal(st.trial({ run: 'task-x_run-01', subject: 'b', session: '01', trial: 0 })?.stimulusId, 'third');
});

test('an 8-hour session keeps the late-joiner snapshot bounded: 1000 trials, images on the last 100, 200 alerts', () => {
  const st = new DashboardState();
  const img = `data:image/webp;base64,${'A'.repeat(8000)}`;
  for (let i = 0; i < 3600; i++) {
    st.apply({ type: 'trial', data: trial(i, { stimulusImage: img }) });
    st.apply({
      type: 'caption',
      data: {
        run: 'task-x_run-01',
        subject: 'a',
        session: '01',
        trial: i,
        caption: { text: `c${i}`, confidence: 0.5, latencyMs: 1, flags: [] },
      },
    });
    st.apply({
      type: 'reconstruction',
      data: { run: 'task-x_run-01', subject: 'a', session: '01', trial: i, reconstruction: { image: img, ms: 40 } },
    });
    st.apply({ type: 'alert', data: { level: 'warn', code: 'x', message: `alert ${i}`, at: i } });
  }
  // A thumbnail that arrives late for an old trial is not kept either.
  st.apply({ type: 'trial', data: trial(3000, { stimulusImage: img }) });
  const snap = st.snapshot();
  assert.equal(snap.trials.length, 1000);
  assert.equal(snap.trials[0].trial, 2600);
  assert.equal(snap.trials.filter((t) => t.stimulusImage).length, 100);
  assert.equal(snap.trials.filter((t) => t.reconstruction?.image).length, 100);
  assert.ok(snap.trials.slice(-100).every((t) => t.stimulusImage && t.reconstruction?.image));
  assert.ok(
    snap.trials.every((t) => t.reconstruction?.ms === 40),
    'older cards keep the generation time without the image',
  );
  assert.equal(snap.alerts.length, 200);
  assert.ok(JSON.stringify(snap).length < 3_000_000, `snapshot ${JSON.stringify(snap).length} bytes`);
  assert.equal(
    st.trial({ run: 'task-x_run-01', subject: 'a', session: '01', trial: 5 }),
    undefined,
    'dropped trials leave the index too',
  );
});
