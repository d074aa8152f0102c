// Bad input: each case gets a clear message to the sender and a log line; the server keeps serving; nothing accepted is lost.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { gzipSync } from 'node:zlib';
import type { Volume } from '../../src/core/types.js';
import { startServer, type DecoderServer, type IngestNotice } from '../../src/server/index.js';
import { encodeVolumeFrame } from '../../src/protocol/frame.js';
import type { VolumeFrameHeader } from '../../src/protocol/messages.js';
import { ProtocolSender } from '../../src/sender/sender.js';
import { encodeNifti1Volume, niftiHeader } from '../../src/scanner/nifti.js';
import { updateNiftiHeader } from '../../src/scanner/niftiHeader.js';
import { captureLog, niftiVolume, rawClient, runInfo, waitFor, type RawClient } from './helpers.js';

type Raw = RawClient;

const raw = (url: string, hello: object | null = { type: 'hello', v: 1, client: 'raw', token: 'tok' }): Promise<Raw> =>
  rawClient(url, hello);

const info = runInfo({ subject: 'b01', dims: [6, 5, 4] });
const start = { type: 'run-start', ...info };
function header(index: number): VolumeFrameHeader {
  return {
    v: 1,
    session: info.session,
    run: info.run,
    index,
    seq: index,
    tr: info.tr,
    acquisitionTime: index * info.tr,
    sentAt: Date.now(),
  };
}
const frame = (index: number, nifti: Uint8Array = niftiVolume(info, index)) => encodeVolumeFrame(header(index), nifti);

async function server(t: TestContext, extra: Parameters<typeof startServer>[0] = {}) {
  const cap = captureLog();
  const vols: Volume[] = [];
  const notices: IngestNotice[] = [];
  const srv = await startServer({
    port: 0,
    token: 'tok',
    log: cap.log,
    reorderWindowMs: 150,
    ...extra,
    onHub: (h) => {
      h.volumes$.subscribe((v) => vols.push(v));
      h.status$.subscribe((n) => notices.push(n));
    },
  });
  t.after(() => srv.close());
  return { srv, vols, notices, lines: cap.lines };
}

/** The server still serves: a proper sender completes a fresh run. */
async function stillServes(srv: DecoderServer, run = 'task-vision_run-99'): Promise<void> {
  const got: number[] = [];
  const sub = srv.hub.volumes$.subscribe((v) => {
    if (v.run === run) got.push(v.index);
  });
  const i2 = { ...info, run };
  const s = new ProtocolSender({ url: srv.url, token: 'tok' }).start();
  s.startRun(i2);
  for (let i = 0; i < 3; i++)
    s.sendVolume({ session: i2.session, run, index: i, tr: i2.tr, acquisitionTime: i, nifti: niftiVolume(i2, i) });
  s.endRun(i2.session, run, 3, 0);
  await s.flush();
  await s.close();
  sub.unsubscribe();
  assert.deepEqual(got, [0, 1, 2]);
}

test('corrupt volumes (truncated, wrong magic, NaN/Inf, changed dims, gzip bomb) are refused with a message and a log line, reported as gaps, never filled; good volumes around them are kept', async (t) => {
  const { srv, vols, notices, lines } = await server(t, { limits: { maxInflatedBytes: 2 * 1024 * 1024 } });
  const c = await raw(srv.url);
  c.ws.send(JSON.stringify(start));
  const good = niftiVolume(info, 0);
  const wrongMagic = Uint8Array.from(good);
  updateNiftiHeader(wrongMagic, (h) => {
    h.fields.magic = 'xxx';
  });
  const nan = new Float32Array(6 * 5 * 4).fill(1);
  nan[7] = NaN;
  nan[9] = Infinity;
  const otherDims = encodeNifti1Volume({
    dims: [6, 5, 3],
    affine: [...info.affine],
    tr: info.tr,
    data: new Int16Array(90),
  });
  const bombHeader = niftiHeader({ dims: [512, 512, 256], affine: [...info.affine], tr: info.tr, datatype: 'float32' });
  const bomb = gzipSync(Buffer.concat([Buffer.from(bombHeader), Buffer.alloc(32 * 1024 * 1024)]), { level: 9 });
  assert.ok(bomb.length < 100_000);
  const sends: [number, Uint8Array][] = [
    [0, good],
    [1, good.subarray(0, 400)],
    [2, wrongMagic],
    [3, encodeNifti1Volume({ dims: info.dims, affine: [...info.affine], tr: info.tr, data: nan })],
    [4, otherDims],
    [5, bomb],
    [6, niftiVolume(info, 6)],
  ];
  for (const [i, n] of sends) c.ws.send(frame(i, n));
  await waitFor(() => c.msgs.some((m) => m.type === 'ack' && m.next === 7), 3000, 'ack after volume 6');
  assert.deepEqual(
    vols.map((v) => v.index),
    [0, 6],
  );
  const codes = c.errors().map((e) => `${e.index}:${e.code}`);
  // The bomb's header claims 512×512×256 voxels: refused from the header, before its body is inflated.
  assert.deepEqual(codes, ['1:bad-volume', '2:bad-volume', '3:non-finite', '4:dims-changed', '5:dims-too-large']);
  const msg = (i: number) => c.errors().find((e) => e.index === i)!.message;
  assert.match(msg(1), /truncated/);
  assert.match(msg(2), /magic/);
  assert.match(msg(3), /2 NaN\/Inf voxel/);
  assert.match(msg(4), /6×5×3 but the run started with 6×5×4/);
  assert.match(msg(5), /limit/);
  const gaps = c.msgs.filter((m) => m.type === 'gap');
  assert.deepEqual(
    gaps.map((g) => g.type === 'gap' && [g.from, g.to]),
    [
      [1, 2],
      [2, 3],
      [3, 4],
      [4, 5],
      [5, 6],
    ],
  );
  assert.equal(notices.filter((n) => n.kind === 'gap').length, 5);
  for (const i of [1, 2, 3, 4, 5])
    assert.ok(
      lines.some((l) => l.startsWith('warn') && l.includes(`volume ${i} of run`)),
      `log line for volume ${i}`,
    );
  const ack = c.msgs.filter((m) => m.type === 'ack').pop();
  assert.ok(ack && ack.type === 'ack' && ack.next === 7);
  c.ws.close();
  await stillServes(srv);
  await srv.close();
});

test('out-of-order volumes are put in order, duplicates dropped with a notice, a missing index reported as a gap after the reorder window', async (t) => {
  const { srv, vols, lines } = await server(t);
  const c = await raw(srv.url);
  c.ws.send(JSON.stringify(start));
  for (const i of [0, 2, 1, 1, 3, 5, 6]) c.ws.send(frame(i));
  await waitFor(
    () => vols.length === 6 && c.msgs.some((m) => m.type === 'ack' && m.next === 7),
    3000,
    'six volumes and their ack',
  );
  assert.deepEqual(
    vols.map((v) => v.index),
    [0, 1, 2, 3, 5, 6],
  );
  const dup = c.errors().filter((e) => e.code === 'duplicate');
  assert.equal(dup.length, 1);
  assert.equal(dup[0].index, 1);
  const gap = c.msgs.find((m) => m.type === 'gap');
  assert.ok(gap && gap.type === 'gap' && gap.from === 4 && gap.to === 5, 'gap 4 reported');
  assert.ok(lines.some((l) => /gap in run task-vision_run-01: volume 4 missing/.test(l)));
  c.ws.send(frame(4));
  await waitFor(() => c.errors().some((e) => e.index === 4), 2000, 'late reply');
  assert.equal(c.errors().find((e) => e.index === 4)!.code, 'duplicate');
  assert.equal(vols.length, 6, 'a gap is never filled later');
  c.ws.send(JSON.stringify({ type: 'run-end', session: info.session, run: info.run, volumes: 9, events: 0 }));
  await waitFor(() => c.msgs.some((m) => m.type === 'ack' && m.ended), 2000, 'run end');
  const last = c.msgs.filter((m) => m.type === 'gap').pop();
  assert.ok(last && last.type === 'gap' && last.from === 7 && last.to === 9, 'volumes missing at run end are reported');
  c.ws.close();
  await srv.close();
});

test('protocol violations: unknown type, bad JSON, wrong version, missing or wrong token, binary before hello, oversize frames', async (t) => {
  const { srv, lines, notices } = await server(t, { limits: { maxFrameBytes: 64 * 1024, maxVoxels: 200 } });
  const noTok = await raw(srv.url, { type: 'hello', v: 1, client: 'x' });
  assert.equal(noTok.errors()[0].code, 'auth-required');
  const badTok = await raw(srv.url, { type: 'hello', v: 1, client: 'x', token: 'nope' });
  assert.equal(badTok.errors()[0].code, 'auth-failed');
  assert.match(badTok.errors()[0].message, /--token-file/);
  const v2 = await raw(srv.url, { type: 'hello', v: 2, client: 'x', token: 'tok' });
  assert.equal(v2.errors()[0].code, 'unsupported-version');
  assert.ok(v2.errors()[0].fatal);
  const bin = await raw(srv.url, null);
  bin.ws.send(Buffer.from([1, 2, 3]));
  await waitFor(() => bin.closed.code !== undefined, 2000, 'close');
  assert.equal(bin.errors()[0].code, 'not-authenticated');
  await waitFor(
    () => [noTok, badTok, v2].every((c) => c.closed.code === 1008),
    2000,
    'fatal errors close the connection',
  );
  assert.equal(notices.filter((n) => n.kind === 'auth').length, 2);

  const c = await raw(srv.url);
  c.ws.send(JSON.stringify({ type: 'frobnicate' }));
  c.ws.send('{not json');
  c.ws.send(JSON.stringify({ ...start, dims: [6, 5] }));
  c.ws.send(JSON.stringify(start));
  c.ws.send(frame(0));
  c.ws.send(encodeVolumeFrame(header(1), new Uint8Array(100 * 1024)));
  c.ws.send(Buffer.from('MSXVgarbage'));
  c.ws.send(
    frame(
      2,
      encodeNifti1Volume({ dims: [20, 20, 1], affine: [...info.affine], tr: info.tr, data: new Int16Array(400) }),
    ),
  );
  await waitFor(() => c.errors().length >= 6, 2000, 'six errors');
  assert.deepEqual(
    c
      .errors()
      .map((e) => e.code)
      .sort(),
    ['bad-frame', 'bad-message', 'bad-message', 'dims-too-large', 'frame-too-large', 'unknown-type'],
  );
  assert.match(c.errors().find((e) => e.code === 'dims-too-large')!.message, /20×20×1 exceed the server limit/);
  assert.match(c.errors().find((e) => e.code === 'unknown-type')!.message, /unknown message type "frobnicate"/);
  assert.match(c.errors()[2].message, /"dims" must be an array of 3/);
  assert.equal(c.errors().find((e) => e.code === 'frame-too-large')!.index, 1);
  assert.equal(c.closed.code, undefined, 'non-fatal errors keep the connection');
  // Beyond the hard cap ws itself closes the connection (1009); the server carries on.
  c.ws.send(Buffer.alloc(64 * 1024 * 2 + 1024 * 1024 + 10));
  await waitFor(() => c.closed.code !== undefined, 3000, 'hard cap close');
  assert.equal(c.closed.code, 1009);
  assert.ok(lines.some((l) => l.includes('frame-too-large')));
  assert.ok(lines.some((l) => l.includes('unknown-type')));
  await stillServes(srv);
  await srv.close();
});

test('connection floods and message floods are refused with a message; an established bridge keeps streaming', async (t) => {
  const { srv, lines } = await server(t, {
    limits: { maxConnectionsPerIp: 4, maxMessagesPerSecond: 200, helloTimeoutMs: 300 },
  });
  const legit = await raw(srv.url);
  const flood = await Promise.all(Array.from({ length: 8 }, () => raw(srv.url, null)));
  await waitFor(() => flood.filter((f) => f.closed.code !== undefined).length >= 5, 3000, 'refusals');
  const refused = flood.filter((f) => f.errors()[0]?.code === 'too-many-connections');
  assert.equal(refused.length, 5);
  await waitFor(() => flood.every((f) => f.closed.code !== undefined), 3000, 'hello timeouts');
  assert.ok(flood.some((f) => f.errors()[0]?.code === 'hello-timeout'));
  legit.ws.send(JSON.stringify(start));
  legit.ws.send(frame(0));
  await waitFor(() => legit.msgs.some((m) => m.type === 'ack' && m.next === 1), 2000, 'legit ack');
  const spam = await raw(srv.url);
  for (let i = 0; i < 400; i++) spam.ws.send(JSON.stringify({ type: 'frobnicate' }));
  await waitFor(() => spam.closed.code !== undefined, 3000, 'rate limit close');
  assert.ok(spam.errors().some((e) => e.code === 'rate-limited' && e.fatal));
  assert.ok(lines.some((l) => l.includes('too many connections') || l.includes('refused connection')));
  assert.ok(lines.some((l) => l.includes('rate-limited')));
  legit.ws.send(frame(1));
  await waitFor(() => legit.msgs.some((m) => m.type === 'ack' && m.next === 2), 2000, 'legit still served');
  legit.ws.close();
  await srv.close();
});
