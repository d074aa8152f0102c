import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DecodeQueue, type DecodeAlarm, type DecodeResult } from '../../src/inference/queue.js';
import type { TrialResponse } from '../../src/core/types.js';

const t = (n: number): TrialResponse => ({
  run: 'r',
  subject: 's',
  trial: n,
  stimulusId: `x${n}`,
  vector: new Float32Array(1),
  method: 'window-mean',
  window: { start: 0, end: 1 },
  volumes: [],
  flags: [],
  readyAt: Date.now(),
  event: { run: 'r', trial: n, onset: n, duration: 1, stimulusId: `x${n}` },
});
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('trials arriving faster than they decode wait in order, none dropped, and a lag alarm is raised then cleared', async () => {
  const q = new DecodeQueue<string>(async (tr) => {
    await sleep(15);
    return `c${tr.trial}`;
  });
  const results: DecodeResult<string>[] = [];
  const alarms: DecodeAlarm[] = [];
  q.results$.subscribe((r) => results.push(r));
  q.alarms$.subscribe((a) => alarms.push(a));
  for (let i = 0; i < 5; i++) q.push(t(i));
  assert.ok(q.backlog >= 3);
  await q.idle();
  assert.deepEqual(
    results.map((r) => r.result),
    ['c0', 'c1', 'c2', 'c3', 'c4'],
  );
  assert.ok(results[4].waitedMs >= 40, 'the last trial waited for the others');
  assert.deepEqual(
    alarms.map((a) => a.code),
    ['decode-lag', 'decode-caught-up'],
  );
  assert.equal(alarms[0].level, 'warn');
});

test('a trial that fails to decode is reported, and the queue carries on', async () => {
  const q = new DecodeQueue<string>(async (tr) => {
    if (tr.trial === 1) throw new Error('boom');
    return 'ok';
  });
  const results: DecodeResult<string>[] = [];
  const alarms: DecodeAlarm[] = [];
  q.results$.subscribe((r) => results.push(r));
  q.alarms$.subscribe((a) => alarms.push(a));
  q.push(t(0));
  q.push(t(1));
  q.push(t(2));
  await q.idle();
  assert.deepEqual(
    results.map((r) => r.result ?? r.error),
    ['ok', 'boom', 'ok'],
  );
  assert.ok(alarms.some((a) => a.code === 'decode-failed' && a.trial === 1 && /boom/.test(a.message)));
});

test('past its bound the queue gives up the oldest waiting trial loudly, never silently', async () => {
  const q = new DecodeQueue<number>(
    async (tr) => {
      await sleep(10);
      return tr.trial;
    },
    { capacity: 2 },
  );
  const results: DecodeResult<number>[] = [];
  const alarms: DecodeAlarm[] = [];
  q.results$.subscribe((r) => results.push(r));
  q.alarms$.subscribe((a) => alarms.push(a));
  for (let i = 0; i < 5; i++) q.push(t(i));
  await q.idle();
  assert.equal(results.length, 5, 'every trial is accounted for');
  const dropped = results.filter((r) => r.error);
  assert.ok(dropped.length >= 1);
  assert.equal(alarms.filter((a) => a.code === 'decode-queue-overflow').length, dropped.length);
  assert.deepEqual(
    results.filter((r) => !r.error).map((r) => r.result),
    results.filter((r) => !r.error).map((r) => r.trial.trial),
  );
});

test('with batch work, a backlog is decoded in batches and every trial still gets its own result in order', async () => {
  const batches: number[][] = [];
  const q = new DecodeQueue<string>(
    async (tr) => {
      await sleep(10);
      return `one${tr.trial}`;
    },
    {
      maxBatch: 3,
      batchWork: async (trs) => {
        batches.push(trs.map((x) => x.trial));
        await sleep(10);
        return trs.map((x) => `b${x.trial}`);
      },
    },
  );
  const results: DecodeResult<string>[] = [];
  q.results$.subscribe((r) => results.push(r));
  for (let i = 0; i < 7; i++) q.push(t(i));
  await q.idle();
  assert.deepEqual(
    results.map((r) => r.trial.trial),
    [0, 1, 2, 3, 4, 5, 6],
  );
  assert.equal(results[0].result, 'one0', 'a lone trial is decoded alone');
  assert.deepEqual(batches, [
    [1, 2, 3],
    [4, 5, 6],
  ]);
  assert.deepEqual(
    results.slice(1).map((r) => r.result),
    ['b1', 'b2', 'b3', 'b4', 'b5', 'b6'],
  );
});

test('lossless trials (a replay) wait past the live bound; live trials among them are shed oldest first; a hard bound holds', async () => {
  const q = new DecodeQueue<number>(
    async (tr) => {
      await sleep(5);
      return tr.trial;
    },
    { capacity: 2, losslessCapacity: 8 },
  );
  const results: DecodeResult<number>[] = [];
  q.results$.subscribe((r) => results.push(r));
  for (let i = 0; i < 6; i++) q.push(t(i), { lossless: true });
  for (let i = 10; i < 14; i++) q.push(t(i));
  await q.idle();
  const shed = results.filter((r) => r.error).map((r) => r.trial.trial);
  assert.deepEqual(shed, [10, 11], 'only live trials are shed, the oldest first, once 2 live ones wait');
  assert.ok(
    [0, 1, 2, 3, 4, 5].every((n) => results.some((r) => r.trial.trial === n && !r.error)),
    'every lossless trial decoded',
  );

  const hard = new DecodeQueue<number>(
    async (tr) => {
      await sleep(5);
      return tr.trial;
    },
    { capacity: 2, losslessCapacity: 4 },
  );
  const out: DecodeResult<number>[] = [];
  hard.results$.subscribe((r) => out.push(r));
  for (let i = 0; i < 8; i++) hard.push(t(i), { lossless: true });
  await hard.idle();
  assert.ok(out.filter((r) => r.error).length > 0, 'past the hard bound even lossless trials are shed, loudly');
});
