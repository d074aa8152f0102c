// Who may connect: browser pages cannot drive /bridge (cross-site WebSocket hijacking), a loopback server answers
// only requests addressed to a loopback name (DNS rebinding), the dashboard's socket.io serves only its own page,
// and a bridge on another machine with a token still gets in.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { WebSocket } from 'ws';
import { io as connect } from 'socket.io-client';
import { startServer, type DecoderServer } from '../../src/server/index.js';
import { createDashboard } from '../../src/sinks/dashboard/dashboard.js';
import { ProtocolSender } from '../../src/sender/sender.js';
import { captureLog, niftiVolume, rawClient, runInfo } from './helpers.js';

/** The HTTP status a WebSocket upgrade gets (101 when it opens). */
function upgradeStatus(url: string, headers: Record<string, string>): Promise<number> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers });
    ws.on('open', () => {
      ws.close();
      resolve(101);
    });
    ws.on('unexpected-response', (_req, res) => {
      resolve(res.statusCode ?? 0);
      res.resume();
    });
    ws.on('error', (e) => {
      if (!/Unexpected server response/.test(e.message)) reject(e);
    });
  });
}

function get(port: number, path: string, host: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path, headers: { host } }, (res) => {
        let body = '';
        res.on('data', (d) => {
          body += d;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      })
      .on('error', reject);
  });
}

async function sendsARun(srv: DecoderServer, token?: string): Promise<number[]> {
  const info = runInfo({ subject: 'o01', dims: [4, 4, 3] });
  const got: number[] = [];
  const sub = srv.hub.volumes$.subscribe((v) => got.push(v.index));
  const s = new ProtocolSender({ url: srv.url.replace('0.0.0.0', '127.0.0.1'), token }).start();
  s.startRun(info);
  for (let i = 0; i < 3; i++)
    s.sendVolume({
      session: info.session,
      run: info.run,
      index: i,
      tr: info.tr,
      acquisitionTime: i,
      nifti: niftiVolume(info, i),
    });
  s.endRun(info.session, info.run, 3, 0);
  await s.flush();
  await s.close();
  sub.unsubscribe();
  return got;
}

async function serve(t: TestContext, o: Parameters<typeof startServer>[0] = {}) {
  const cap = captureLog();
  const srv = await startServer({ port: 0, log: cap.log, ...o });
  t.after(() => srv.close());
  return { srv, lines: cap.lines };
}

test('loopback bind without a token: a browser Origin on /bridge gets 403, a foreign Host gets 421, the real bridge streams', async (t) => {
  const { srv, lines } = await serve(t);
  const p = srv.port;
  assert.equal(await upgradeStatus(srv.url, { origin: 'https://evil.example' }), 403);
  assert.equal(
    await upgradeStatus(srv.url, { origin: `http://127.0.0.1:${p}` }),
    403,
    'even the dashboard page may not open /bridge',
  );
  assert.equal(await upgradeStatus(srv.url, { host: `rebound.evil.example:${p}` }), 421);
  assert.equal(await upgradeStatus(srv.url, { host: `localhost:${p}` }), 101);
  assert.ok(lines.some((l) => /refused a \/bridge upgrade .*web page \(origin "https:\/\/evil.example"\)/.test(l)));
  const foreign = await get(p, '/healthz', `rebound.evil.example:${p}`);
  assert.equal(foreign.status, 421);
  assert.match(foreign.body, /answers requests for localhost or 127\.0\.0\.1, not for "rebound\.evil\.example:\d+"/);
  assert.equal((await get(p, '/healthz', `127.0.0.1:${p}`)).status, 200);
  assert.equal((await get(p, '/healthz', `[::1]:${p}`)).status, 200);
  assert.deepEqual(await sendsARun(srv), [0, 1, 2]);
});

test('non-loopback bind with a token: a sender from another machine (any Host, no Origin) streams; a browser Origin is still refused', async (t) => {
  const { srv } = await serve(t, { host: '0.0.0.0', token: 'remote-secret' });
  const url = `ws://127.0.0.1:${srv.port}/bridge`;
  const c = await rawClient(
    url,
    { type: 'hello', v: 1, client: 'bridge', token: 'remote-secret' },
    { headers: { host: `decoder.lab.example:${srv.port}` } },
  );
  assert.equal(c.msgs[0].type, 'welcome');
  c.ws.close();
  assert.equal((await get(srv.port, '/healthz', `decoder.lab.example:${srv.port}`)).status, 200);
  assert.equal(await upgradeStatus(url, { origin: 'https://evil.example' }), 403);
  assert.deepEqual(await sendsARun(srv, 'remote-secret'), [0, 1, 2]);
});

test('dashboard socket.io: its own page and non-browser clients get the data; another origin or a foreign Host does not', async (t) => {
  const server = http.createServer();
  const dash = createDashboard();
  dash.attach(server, { loopbackBind: true });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(async () => {
    await dash.close();
    await new Promise((r) => server.close(r));
  });
  const port = (server.address() as { port: number }).port;
  const url = `http://127.0.0.1:${port}`;
  const attempt = (headers: Record<string, string>) =>
    new Promise<string>((resolve) => {
      const s = connect(url, { transports: ['websocket'], reconnection: false, extraHeaders: headers });
      s.on('snapshot', () => {
        s.close();
        resolve('snapshot');
      });
      s.on('connect_error', (e) => {
        s.close();
        resolve(`refused: ${e.message}`);
      });
    });
  assert.equal(await attempt({}), 'snapshot');
  assert.equal(await attempt({ origin: url }), 'snapshot');
  assert.match(await attempt({ origin: 'https://evil.example' }), /^refused/);
  assert.match(await attempt({ host: `rebound.evil.example:${port}` }), /^refused/);
  // Long polling (socket.io-client in Node cannot set Origin on XHR): the handshake request itself.
  const poll = (headers: Record<string, string>) =>
    new Promise<number>((resolve, reject) => {
      http
        .get({ host: '127.0.0.1', port, path: '/socket.io/?EIO=4&transport=polling', headers }, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        })
        .on('error', reject);
    });
  assert.equal(await poll({ host: `127.0.0.1:${port}` }), 200);
  assert.equal(await poll({ host: `127.0.0.1:${port}`, origin: url }), 200);
  assert.equal(await poll({ host: `127.0.0.1:${port}`, origin: 'https://evil.example' }), 403);
  assert.equal(await poll({ host: `rebound.evil.example:${port}` }), 403);
});
