// The decoder server: one HTTP server; WebSocket ingest on /bridge (protocol v1); other paths are left to the
// dashboard (socket.io attaches to `http`). Bad input is answered with an error message and a log line, never a crash.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocketServer, type WebSocket, type RawData } from 'ws';
import { BRIDGE_PATH, PROTOCOL_VERSION, type ServerMessage } from '../protocol/messages.js';
import { decodeVolumeFrame, peekFrameIdentity } from '../protocol/frame.js';
import { ProtocolError, parseClientMessage, parseVolumeHeader } from '../protocol/validate.js';
import { IngestHubSubjects, type IngestHub } from './hub.js';
import { Ingest, type Peer } from './ingest.js';
import { DEFAULT_LIMITS, RateLimiter, type ServerLimits } from './limits.js';
import { stderrLogger, type Logger } from './log.js';
import { tokenMatches } from './auth.js';
import { reportRxErrorsTo } from './rxErrors.js';
import { decodeFrameVolume, inflateFramePayload, isGzip, type CheckedVolume } from './volumeDecode.js';
import { checkBridgeOrigin, checkHost, isLoopbackHost } from './requestGuard.js';
import { nowMs } from '../core/clock.js';
import type { Duplex } from 'node:stream';
import type { RecordingFs } from './recording.js';

/** Messages one connection may have waiting behind inflating volumes (the sender's window is 32 volumes). */
const MAX_QUEUED_MESSAGES = 256;

/** A volume frame whose NIfTI payload is gzip (its header length is in bytes 4..7). */
function isGzipFrame(buf: Buffer): boolean {
  if (buf.length < 8) return false;
  const at = 8 + buf.readUInt32LE(4);
  return buf.length >= at + 2 && buf[at] === 0x1f && buf[at + 1] === 0x8b;
}

export interface ServerOptions {
  host?: string;
  /** 0 picks a free port. */
  port?: number;
  /** Shared secret bridges must present; undefined = no authentication (only sensible on loopback). */
  token?: string;
  /** Record every run as BIDS under this folder (continuing runs already there). */
  recordDir?: string;
  limits?: Partial<ServerLimits>;
  log?: Logger;
  reorderWindowMs?: number;
  maxReorder?: number;
  /** File system the recording writes through (tests inject failures); node:fs/promises by default. */
  recordFs?: RecordingFs;
  /** Called with the hub before the server listens, so no message is missed: the pipeline subscribes here. */
  onHub?: (hub: IngestHub) => void;
}

export interface DecoderServer {
  http: http.Server;
  /** ws://host:port/bridge */
  url: string;
  port: number;
  hub: IngestHub;
  close(): Promise<void>;
}

export async function startServer(opts: ServerOptions = {}): Promise<DecoderServer> {
  const host = opts.host ?? '127.0.0.1';
  const limits: ServerLimits = { ...DEFAULT_LIMITS, ...opts.limits };
  const log = opts.log ?? stderrLogger();
  const hub = new IngestHubSubjects();
  const stopRxReports = reportRxErrorsTo((m) => log('error', m));
  const ingest = new Ingest({
    hub,
    log,
    recordDir: opts.recordDir,
    reorderWindowMs: opts.reorderWindowMs ?? 2000,
    maxReorder: opts.maxReorder ?? 16,
    limits,
    recordFs: opts.recordFs,
  });
  opts.onHub?.(hub);

  const loopbackBind = isLoopbackHost(host);
  const server = http.createServer((req, res) => {
    const refusal = checkHost(req, loopbackBind);
    if (refusal) {
      res.writeHead(refusal.status, { 'content-type': 'text/plain; charset=utf-8' });
      res.end(`${refusal.message}\n`);
      return;
    }
    if (req.url === '/healthz') {
      res.writeHead(200, { 'content-type': 'application/json' });
      const m = process.memoryUsage();
      // Memory in MiB, so a long session can be watched from outside (scripts, the soak).
      const memory = {
        rssMb: Math.round(m.rss / 2 ** 20),
        heapUsedMb: Math.round(m.heapUsed / 2 ** 20),
        externalMb: Math.round(m.external / 2 ** 20),
      };
      res.end(JSON.stringify({ ok: true, protocol: PROTOCOL_VERSION, ...hub.stats(), memory }));
      return;
    }
    // Other request listeners (the dashboard) answer everything else; alone, we answer 404.
    if (server.listenerCount('request') === 1) {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('not found\n');
    }
  });
  // ws enforces a hard cap itself (closing with 1009); below it, we answer oversize frames with an error message.
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: limits.maxFrameBytes * 2 + 1024 * 1024,
    perMessageDeflate: false,
  });
  const perIp = new Map<string, number>();
  const sockets = new Set<WebSocket>();

  server.on('upgrade', (req, socket, head) => {
    const path = (req.url ?? '').split('?')[0];
    if (path !== BRIDGE_PATH) return; // someone else's (socket.io checks its own requests) or nobody's
    const refusal = checkHost(req, loopbackBind) ?? checkBridgeOrigin(req);
    if (refusal) {
      log('warn', `refused a /bridge upgrade from ${req.socket.remoteAddress ?? '?'}: ${refusal.message}`);
      const body = `${refusal.message}\n`;
      socket.end(
        `HTTP/1.1 ${refusal.status} ${refusal.status === 403 ? 'Forbidden' : 'Misdirected Request'}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
      );
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) =>
      onConnection(ws, req.socket, req.socket.remoteAddress ?? 'unknown', req.socket.remotePort ?? 0),
    );
  });

  function send(ws: WebSocket, m: ServerMessage): void {
    if (ws.readyState === ws.OPEN) ws.send(JSON.stringify(m));
  }

  function onConnection(ws: WebSocket, rawSocket: Duplex, ip: string, port: number): void {
    const name = `${ip}:${port}`;
    const count = (perIp.get(ip) ?? 0) + 1;
    if (count > limits.maxConnectionsPerIp) {
      log(
        'warn',
        `refused connection from ${name}: ${count - 1} connections from ${ip} already open (limit ${limits.maxConnectionsPerIp})`,
      );
      send(ws, {
        type: 'error',
        code: 'too-many-connections',
        message: `too many connections from ${ip} (limit ${limits.maxConnectionsPerIp}); close the others and retry.`,
        fatal: true,
      });
      ws.close(1008, 'too many connections');
      return;
    }
    perIp.set(ip, count);
    sockets.add(ws);
    hub.counters.connections++;
    let authed = false;
    let client = '?';
    const rate = new RateLimiter(limits.maxMessagesPerSecond);
    const peer: Peer = {
      name,
      get client() {
        return client === '?' ? undefined : client;
      },
      send: (m) => send(ws, m),
      isOpen: () => ws.readyState === ws.OPEN,
      runs: new Map(),
    };
    const helloTimer = setTimeout(
      () => fatal('hello-timeout', `no hello within ${limits.helloTimeoutMs} ms; a client must send hello first.`),
      limits.helloTimeoutMs,
    );
    helloTimer.unref();
    // Before hello nobody is known: a few KiB, counted as bytes arrive, so a large unauthenticated frame is cut off
    // instead of being buffered up to the frame limit. (ws delivers messages synchronously from the data event, so
    // a hello followed in the same packet by volume frames counts only up to the hello.)
    let preHelloBytes = 0;
    const countPreHello = (chunk: Buffer): void => {
      if (authed) {
        rawSocket.off('data', countPreHello);
        return;
      }
      preHelloBytes += chunk.length;
      if (preHelloBytes > limits.maxPreHelloBytes) {
        rawSocket.off('data', countPreHello);
        rawSocket.pause();
        fatal(
          'not-authenticated',
          `more than ${limits.maxPreHelloBytes} bytes arrived before hello; a client must send hello (a small JSON message) first.`,
        );
        setTimeout(() => ws.terminate(), 200).unref();
      }
    };
    rawSocket.on('data', countPreHello);

    function fatal(code: ProtocolError['code'], message: string): void {
      ingest.notice(
        { kind: code.startsWith('auth') ? 'auth' : 'error', level: 'warn', message: `${code}: ${message}`, peer: name },
        code,
      );
      send(ws, { type: 'error', code, message, fatal: true });
      ws.close(1008, code);
    }

    ws.on('error', (e) => log('warn', `connection ${name}: ${e.message}`));
    ws.on('close', () => {
      clearTimeout(helloTimer);
      sockets.delete(ws);
      hub.counters.connections--;
      const n = (perIp.get(ip) ?? 1) - 1;
      if (n > 0) perIp.set(ip, n);
      else perIp.delete(ip);
      if (authed) ingest.notice({ kind: 'connection', level: 'info', message: `${client} disconnected`, peer: name });
    });
    ws.on('message', (data: RawData, isBinary: boolean) => {
      if (ws.readyState !== ws.OPEN) return;
      const receivedAt = nowMs(); // the clock the pipeline's stage stamps use (src/core/clock.ts)
      const buf = Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data);
      hub.counters.bytesReceived += buf.length;
      if (!rate.take()) {
        fatal('rate-limited', `more than ${limits.maxMessagesPerSecond} messages per second; slow down and reconnect.`);
        return;
      }
      try {
        if (!authed) {
          if (isBinary)
            throw new ProtocolError(
              'not-authenticated',
              'the first message must be hello (JSON), not a binary frame.',
              true,
            );
          const m = parseClientMessage(buf.toString('utf8'));
          if (m.type !== 'hello')
            throw new ProtocolError('not-authenticated', `the first message must be hello, not ${m.type}.`, true);
          if (opts.token !== undefined) {
            if (m.token === undefined)
              throw new ProtocolError(
                'auth-required',
                'this server needs a token; pass --token-file with the shared secret.',
                true,
              );
            if (!tokenMatches(opts.token, m.token))
              throw new ProtocolError(
                'auth-failed',
                "the token does not match the server's; check --token-file on both sides.",
                true,
              );
          }
          authed = true;
          client = m.client;
          clearTimeout(helloTimer);
          send(ws, {
            type: 'welcome',
            v: PROTOCOL_VERSION,
            server: 'mindsemantix',
            limits: {
              maxFrameBytes: limits.maxFrameBytes,
              maxDim: limits.maxDim,
              maxVoxels: limits.maxVoxels,
              maxMessagesPerSecond: limits.maxMessagesPerSecond,
              maxConnectionsPerIp: limits.maxConnectionsPerIp,
              maxRunVolumes: limits.maxRunVolumes,
            },
          });
          ingest.notice({
            kind: 'connection',
            level: 'info',
            message: `${client} connected${opts.token !== undefined ? ' (token ok)' : ''}`,
            peer: name,
          });
          return;
        }
        if (waiting > MAX_QUEUED_MESSAGES) {
          fatal(
            'rate-limited',
            `more than ${MAX_QUEUED_MESSAGES} messages are waiting behind compressed volumes; slow down and reconnect.`,
          );
          return;
        }
        // Messages take effect in arrival order: while a gzip volume inflates, what follows it waits (a run-end
        // never overtakes the run's last volume).
        if (waiting === 0 && !(isBinary && isGzipFrame(buf))) handle(buf, isBinary, receivedAt);
        else inOrder(() => handle(buf, isBinary, receivedAt));
      } catch (e) {
        report(e);
      }
    });

    /** Work queued behind an inflating volume: one inflation at a time per connection, results in order. */
    let order: Promise<void> = Promise.resolve();
    let waiting = 0;
    function inOrder(step: () => void | Promise<void>): void {
      waiting++;
      order = order
        .then(step)
        .catch(report)
        .finally(() => {
          waiting--;
        });
    }

    function report(e: unknown): void {
      if (e instanceof ProtocolError) {
        // Before hello any bad message ends the connection: an unknown client gets no second try on this socket.
        if (e.fatal || !authed) fatal(e.code, e.message);
        else {
          ingest.notice({ kind: 'error', level: 'warn', message: `${e.code}: ${e.message}`, peer: name }, e.code);
          send(ws, { type: 'error', code: e.code, message: e.message, fatal: false });
        }
      } else {
        log('error', `connection ${name}: internal error ${(e as Error)?.stack ?? String(e)}`);
        send(ws, {
          type: 'error',
          code: 'server-error',
          message: `the server failed on this message: ${(e as Error)?.message}`,
          fatal: false,
        });
      }
    }

    /** One message after hello; a volume frame with a gzip payload resolves once it is inflated and handed on. */
    function handle(buf: Buffer, isBinary: boolean, receivedAt: number): void | Promise<void> {
      if (isBinary) return onFrame(buf, receivedAt);
      const m = parseClientMessage(buf.toString('utf8'));
      switch (m.type) {
        case 'hello':
          throw new ProtocolError('bad-message', 'hello was already received on this connection.');
        case 'run-start':
          ingest.runStart(m, peer);
          break;
        case 'event':
          ingest.event(m, peer);
          break;
        case 'run-end':
          ingest.runEnd(m, peer);
          break;
      }
    }

    function onFrame(buf: Buffer, receivedAt: number): void | Promise<void> {
      if (buf.length > limits.maxFrameBytes) {
        const id = peekFrameIdentity(buf);
        const err = new ProtocolError(
          'frame-too-large',
          `frame of ${buf.length} bytes exceeds the ${limits.maxFrameBytes}-byte limit.`,
        );
        if (id.session && id.run && id.index !== undefined) {
          try {
            const h = parseVolumeHeader({
              ...(JSON.parse(buf.subarray(8, 8 + buf.readUInt32LE(4)).toString('utf8')) as object),
            });
            ingest.volume(h, err, peer, receivedAt);
            return;
          } catch {
            /* fall through: unattributable */
          }
        }
        throw err;
      }
      const { header, nifti } = decodeVolumeFrame(buf);
      const decode = (bytes: Uint8Array): CheckedVolume | ProtocolError => {
        try {
          return decodeFrameVolume(bytes, limits);
        } catch (e) {
          if (!(e instanceof ProtocolError)) throw e;
          return e;
        }
      };
      if (!isGzip(nifti)) {
        ingest.volume(header, decode(nifti), peer, receivedAt);
        return;
      }
      return inflateFramePayload(nifti, limits).then(
        (bytes) => ingest.volume(header, decode(bytes), peer, receivedAt),
        (e: unknown) => {
          if (!(e instanceof ProtocolError)) throw e;
          ingest.volume(header, e, peer, receivedAt);
        },
      );
    }
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 8080, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  server.on('error', (e) => log('error', `http server: ${e.message}`));
  const addr = server.address() as AddressInfo;
  const urlHost = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  const url = `ws://${urlHost}:${addr.port}${BRIDGE_PATH}`;
  log(
    'info',
    `listening on ${url}${opts.token !== undefined ? ' (token required)' : ''}${opts.recordDir ? `, recording to ${opts.recordDir}` : ''}`,
  );

  let closed: Promise<void> | undefined;
  return {
    http: server,
    url,
    port: addr.port,
    hub,
    close() {
      closed ??= (async () => {
        for (const ws of sockets) ws.terminate();
        wss.close();
        await ingest.close();
        const done = new Promise<void>((resolve) => server.close(() => resolve()));
        server.closeAllConnections();
        await done;
        hub.complete();
        stopRxReports();
      })();
      return closed;
    },
  };
}
