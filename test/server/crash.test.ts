// Lossless delivery across real failures: a `serve` child killed with -9 and restarted on the same --record folder,
// and network drops between sender and server (a TCP proxy cut at random).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { writeFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Volume } from '../../src/core/types.js';
import { startServer } from '../../src/server/index.js';
import { runPaths } from '../../src/server/recording.js';
import { ProtocolSender } from '../../src/sender/sender.js';
import { bytesOf, captureLog, int16Volume, nibLoad, niftiVolume, root, runInfo, tempDir, waitFor } from './helpers.js';

const bin = join(root, 'bin', 'mindsemantix.mjs');

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

function serveChild(
  port: number,
  rec: string,
  tokenFile: string,
): Promise<{ child: ChildProcess; stderr: () => string }> {
  const child = spawn(
    process.execPath,
    [bin, 'serve', '--port', String(port), '--record', rec, '--token-file', tokenFile],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let err = '';
  child.stderr!.on('data', (d) => {
    err += d;
  });
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`serve did not start: ${err}`)), 15000);
    child.stderr!.on('data', () => {
      if (err.includes('ready at')) {
        clearTimeout(t);
        resolve({ child, stderr: () => err });
      }
    });
    child.once('exit', (code) => {
      clearTimeout(t);
      reject(new Error(`serve exited with ${code}: ${err}`));
    });
  });
}

function kill9(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    child.kill('SIGKILL');
  });
}

test('serve killed with -9 mid-run: the recording loads in nibabel with every acknowledged volume; after restart the run continues with nothing lost, duplicated or reordered', async (t) => {
  const rec = tempDir('crash');
  const tokenFile = join(rec, '..', `${rec.split('/').pop()}.token`);
  writeFileSync(tokenFile, 'crash-secret\n');
  const port = await freePort();
  const info = runInfo({ subject: 'k01', dims: [16, 16, 10] });
  const n = 60;
  const sender = new ProtocolSender({
    url: `ws://127.0.0.1:${port}`,
    token: 'crash-secret',
    backoffMs: { initial: 20, max: 200 },
  });
  let acked = 0;
  sender.on('ack', (a: { next: number }) => {
    acked = Math.max(acked, a.next);
  });
  const p = runPaths(rec, info.subject, info.session, info.run);

  let srv = await serveChild(port, rec, tokenFile);
  t.after(() => {
    srv.child.kill('SIGKILL');
    void sender.close();
  });
  sender.start();
  sender.startRun(info);
  let sent = 0;
  const produce = async (upTo: number) => {
    for (; sent < upTo; sent++) {
      sender.sendVolume({
        session: info.session,
        run: info.run,
        index: sent,
        tr: info.tr,
        acquisitionTime: sent * info.tr,
        nifti: niftiVolume(info, sent),
      });
      if (sent % 10 === 0)
        sender.sendEvent(info.session, {
          run: info.run,
          trial: sent / 10,
          onset: sent * info.tr,
          duration: 2,
          stimulusId: `st${sent}`,
        });
      await new Promise((r) => setTimeout(r, 3));
    }
  };
  for (const killAt of [15, 38]) {
    await produce(killAt + 8);
    await waitFor(() => acked >= killAt, 10000, `ack of volume ${killAt}`);
    await kill9(srv.child);
    const ackedAtKill = acked;
    // Crash-safe: nibabel reads the file as it is on disk now, and it holds every acknowledged volume.
    const { report, raw } = nibLoad(p.bold, true);
    assert.ok(
      report.shape[3] >= ackedAtKill,
      `recording holds ${report.shape[3]} volumes after kill -9, ${ackedAtKill} were acknowledged`,
    );
    const want = Buffer.concat(Array.from({ length: report.shape[3] }, (_, i) => bytesOf(int16Volume(info.dims, i))));
    assert.ok(raw!.equals(want), 'recorded volumes are intact and in order after kill -9');
    await produce(killAt + 14); // the scanner does not wait for the server
    srv = await serveChild(port, rec, tokenFile);
  }
  await produce(n);
  sender.endRun(info.session, info.run, n, 6);
  await sender.flush();
  await sender.close();
  srv.child.kill('SIGTERM');
  await new Promise((r) => srv.child.once('exit', r));
  assert.match(srv.stderr(), /continues from the recording at volume \d+/);

  const { report, raw } = nibLoad(p.bold, true);
  assert.deepEqual(report.shape, [16, 16, 10, n]);
  assert.ok(
    raw!.equals(Buffer.concat(Array.from({ length: n }, (_, i) => bytesOf(int16Volume(info.dims, i))))),
    'every volume exactly once, in order',
  );
  const sidecar = JSON.parse(readFileSync(p.json, 'utf8')) as { AcquisitionTimes: number[]; MissingVolumes: number[] };
  assert.deepEqual(
    sidecar.AcquisitionTimes,
    Array.from({ length: n }, (_, i) => i * info.tr),
  );
  assert.deepEqual(sidecar.MissingVolumes, []);
  const rows = readFileSync(p.events, 'utf8')
    .trim()
    .split('\n')
    .slice(1)
    .map((l) => l.split('\t')[3]);
  assert.deepEqual(rows, ['st0', 'st10', 'st20', 'st30', 'st40', 'st50']);
  assert.ok(sender.stats.connects >= 3);
});

test('network drops between sender and server (either side cut) lose, duplicate and reorder nothing', async (t) => {
  const got: Volume[] = [];
  const srv = await startServer({
    port: 0,
    log: captureLog().log,
    onHub: (h) => h.volumes$.subscribe((v) => got.push(v)),
  });
  t.after(() => srv.close());
  const target = Number(new URL(srv.url).port);
  const pairs = new Set<[net.Socket, net.Socket]>();
  const proxy = net.createServer((c) => {
    const s = net.connect(target, '127.0.0.1');
    const pair: [net.Socket, net.Socket] = [c, s];
    pairs.add(pair);
    c.pipe(s).pipe(c);
    const end = () => {
      c.destroy();
      s.destroy();
      pairs.delete(pair);
    };
    c.on('error', end);
    s.on('error', end);
    c.on('close', end);
    s.on('close', end);
  });
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', () => r()));
  const info = runInfo({ subject: 'n01' });
  const sender = new ProtocolSender({
    url: `ws://127.0.0.1:${(proxy.address() as net.AddressInfo).port}/bridge`,
    backoffMs: { initial: 10, max: 100 },
  }).start();
  sender.startRun(info);
  const n = 120;
  let welcomedAtCut = 0;
  let cuts = 0;
  for (let i = 0; i < n; i++) {
    sender.sendVolume({
      session: info.session,
      run: info.run,
      index: i,
      tr: info.tr,
      acquisitionTime: i,
      nifti: niftiVolume(info, i),
    });
    if (i % 17 === 5) {
      // Cut only once the sender is back on a new connection: on a fast machine a fixed pace would cut while it is
      // still reconnecting, and the test would exercise fewer drops than it claims.
      await waitFor(
        () => sender.stats.connects > welcomedAtCut && pairs.size > 0,
        10000,
        `reconnect before cut ${cuts + 1}`,
      );
      welcomedAtCut = sender.stats.connects;
      for (const [c, s] of pairs) (i % 2 ? c : s).destroy(); // cut the client side, then the server side
      cuts++;
    }
    await new Promise((r) => setTimeout(r, 2));
  }
  sender.endRun(info.session, info.run, n, 0);
  await sender.flush();
  await sender.close();
  proxy.close();
  await srv.close();
  assert.deepEqual(
    got.map((v) => v.index),
    [...Array(n).keys()],
  );
  assert.equal(cuts, 7);
  assert.ok(
    sender.stats.connects >= cuts + 1,
    `every cut is followed by a reconnect: ${sender.stats.connects} connections for ${cuts} cuts`,
  );
});
