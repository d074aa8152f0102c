// Before hello nobody is known: a large unauthenticated frame is cut off after a few KiB, any bad pre-hello message
// ends the connection, and a flood of bad messages becomes a bounded number of notices plus one aggregate.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, type IngestNotice } from '../../src/server/index.js';
import { captureLog, rawClient, waitFor } from './helpers.js';

test('a text frame far above the pre-hello cap is refused before it is buffered; a bad pre-hello message is fatal', async (t) => {
  const cap = captureLog();
  const srv = await startServer({ port: 0, log: cap.log });
  t.after(() => srv.close());
  const big = await rawClient(srv.url, null);
  const t0 = Date.now();
  big.ws.send('x'.repeat(8 * 1024 * 1024));
  await waitFor(() => big.closed.code !== undefined, 5000, 'close');
  assert.equal(big.errors()[0]?.code, 'not-authenticated');
  assert.match(big.errors()[0].message, /more than 4096 bytes arrived before hello/);
  assert.ok(Date.now() - t0 < 3000);
  assert.ok(srv.hub.stats().bytesReceived === 0, 'the frame never reached message handling');

  const bad = await rawClient(srv.url, null);
  bad.ws.send('{not json');
  await waitFor(() => bad.closed.code !== undefined, 3000, 'close after a bad pre-hello message');
  assert.equal(bad.closed.code, 1008);
  assert.deepEqual(
    bad.errors().map((e) => [e.code, e.fatal]),
    [['bad-message', true]],
  );

  const ok = await rawClient(srv.url, { type: 'hello', v: 1, client: 'raw' });
  assert.equal(ok.msgs[0].type, 'welcome');
  ok.ws.send('x'.repeat(64 * 1024)); // after hello the frame limits apply, not the pre-hello cap
  await waitFor(() => ok.errors().length === 1, 3000, 'non-fatal error');
  assert.equal(ok.errors()[0].fatal, false);
  assert.equal(ok.closed.code, undefined);
  ok.ws.close();
});

test('repeated bad messages are aggregated: a bounded number of notices and log lines, then one count', async (t) => {
  const cap = captureLog();
  const notices: IngestNotice[] = [];
  const srv = await startServer({ port: 0, log: cap.log, onHub: (h) => h.status$.subscribe((n) => notices.push(n)) });
  t.after(() => srv.close());
  const c = await rawClient(srv.url, { type: 'hello', v: 1, client: 'raw' });
  for (let i = 0; i < 300; i++) c.ws.send(JSON.stringify({ type: 'frobnicate', i }));
  await waitFor(() => c.errors().length === 300, 5000, 'every message answered');
  const unknown = () => notices.filter((n) => n.message.includes('unknown-type'));
  assert.equal(unknown().length, 20);
  assert.equal(cap.lines.filter((l) => l.includes('unknown-type')).length, 20);
  c.ws.close();
  await srv.close();
  assert.ok(
    notices.some((n) =>
      /^280 more unknown-type notice\(s\) in the last 10 s were not shown one by one/.test(n.message),
    ),
    notices
      .map((n) => n.message)
      .slice(-3)
      .join('\n'),
  );
});
