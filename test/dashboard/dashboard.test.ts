import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Subject } from 'rxjs';
import { io as connect, type Socket } from 'socket.io-client';
import { createDashboard, isLoopbackHost } from '../../src/sinks/dashboard/dashboard.js';
import type { DashSnapshot } from '../../src/sinks/dashboard/dashboard-state.js';
import { bufferedHub } from '../../src/app/serve.js';
import type { IngestHub } from '../../src/server/hub.js';

async function serveDashboard(viewerToken?: string) {
  const server = http.createServer();
  const dash = createDashboard();
  dash.publish({
    type: 'run',
    data: {
      session: '01',
      run: 'task-vision_run-01',
      subject: 'sim01',
      tr: 1.5,
      dims: [8, 8, 8],
      startedAt: 1,
      expected: 30,
    },
  });
  dash.publish({
    type: 'trial',
    data: { run: 'task-vision_run-01', trial: 0, stimulusId: 's0', onset: 3, duration: 3, references: ['a dog'] },
  });
  dash.publish({
    type: 'caption',
    data: {
      run: 'task-vision_run-01',
      trial: 0,
      caption: { text: 'a dog on grass', confidence: 0.7, latencyMs: 120, flags: [] },
    },
  });
  dash.attach(server, { viewerToken });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    dash,
    url,
    close: async () => {
      await dash.close();
      await new Promise((r) => server.close(r));
    },
  };
}

function snapshotOf(url: string, auth?: Record<string, string>): Promise<{ socket: Socket; snap: DashSnapshot }> {
  return new Promise((resolve, reject) => {
    const socket = connect(url, { auth, transports: ['websocket'], reconnection: false });
    socket.on('snapshot', (snap: DashSnapshot) => resolve({ socket, snap }));
    socket.on('connect_error', (e) => {
      socket.close();
      reject(e);
    });
  });
}

test('a viewer joining late receives the session so far, then live updates', async () => {
  const s = await serveDashboard();
  try {
    const { socket, snap } = await snapshotOf(s.url);
    assert.equal(snap.runs[0].run, 'task-vision_run-01');
    assert.equal(snap.trials[0].caption?.text, 'a dog on grass');
    assert.deepEqual(snap.trials[0].references, ['a dog']);
    const got = new Promise((r) => socket.on('alert', r));
    s.dash.publish({
      type: 'alert',
      data: { level: 'warn', code: 'decode-lag', message: 'decoding is behind', at: 5 },
    });
    assert.deepEqual(await got, { level: 'warn', code: 'decode-lag', message: 'decoding is behind', at: 5 });
    assert.equal(s.dash.viewers(), 1);
    socket.close();
  } finally {
    await s.close();
  }
});

test('with a viewer token, viewers without it get a clear refusal and no data', async () => {
  const s = await serveDashboard('s3cret');
  try {
    await assert.rejects(snapshotOf(s.url), /viewer token missing or wrong/);
    await assert.rejects(snapshotOf(s.url, { token: 'nope' }), /viewer token missing or wrong/);
    const { socket, snap } = await snapshotOf(s.url, { token: 's3cret' });
    assert.equal(snap.trials.length, 1);
    socket.close();
  } finally {
    await s.close();
  }
  assert.ok(
    isLoopbackHost('127.0.0.1') &&
      isLoopbackHost('localhost') &&
      !isLoopbackHost('0.0.0.0') &&
      !isLoopbackHost('10.0.0.2'),
  );
});

test('the page, its scripts and the socket.io client are served; other paths are 404', async () => {
  const s = await serveDashboard();
  try {
    const page = await fetch(`${s.url}/`);
    assert.equal(page.status, 200);
    assert.match(page.headers.get('content-type') ?? '', /text\/html/);
    assert.match(await page.text(), /<script type="module" src="\/app.js">/);
    for (const p of ['/app.js', '/charts.js', '/style.css', '/socket.io/socket.io.min.js'])
      assert.equal((await fetch(`${s.url}${p}`)).status, 200, p);
    assert.equal((await fetch(`${s.url}/../package.json`)).status, 404);
    assert.equal((await fetch(`${s.url}/nothing-here`)).status, 404);
  } finally {
    await s.close();
  }
});

test('serve hook buffer: ingest messages that arrive while the model loads are replayed in order, then passed through', () => {
  const src = {
    runs$: new Subject(),
    volumes$: new Subject(),
    events$: new Subject(),
    runEnds$: new Subject(),
    status$: new Subject(),
  };
  const hub = { ...src, stats: () => ({}) } as unknown as IngestHub;
  const b = bufferedHub(hub);
  src.runs$.next('run-start');
  src.volumes$.next(0);
  src.events$.next('ev0');
  src.volumes$.next(1);
  const seen: unknown[] = [];
  b.hub.runs$.subscribe((x) => seen.push(x));
  b.hub.volumes$.subscribe((x) => seen.push(x));
  b.hub.events$.subscribe((x) => seen.push(x));
  assert.deepEqual(seen, []);
  b.release();
  assert.deepEqual(seen, ['run-start', 0, 'ev0', 1]);
  src.volumes$.next(2);
  assert.deepEqual(seen, ['run-start', 0, 'ev0', 1, 2]);
});
