// Dashboard hosting: static files from dashboard/ over HTTP and live updates over socket.io. A viewer token guards
// the data channel when the server is bound beyond localhost (the page itself holds no data).
import { createHash, timingSafeEqual } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { IncomingMessage, Server as HttpServer, ServerResponse } from 'node:http';
import { extname, join, normalize, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Server as IoServer } from 'socket.io';
import { DashboardState, type DashSnapshot, type DashUpdate } from './dashboard-state.js';
import { checkDashboardOrigin, checkHost, isLoopbackHost } from '../../server/requestGuard.js';

export const DASHBOARD_DIR = resolve(fileURLToPath(new URL('.', import.meta.url)), '..', '..', '..', '..', 'dashboard');

const MIME: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
};

export interface DashboardOptions {
  /** Required from viewers (socket.io `auth.token` or `?token=`) when set. */
  viewerToken?: string;
  /** Folder with index.html, app.js, style.css (default: the repo's dashboard/). */
  staticDir?: string;
  /** The server is bound to a loopback address: socket.io requests must name a loopback Host (DNS rebinding guard). */
  loopbackBind?: boolean;
}

export interface Dashboard {
  readonly state: DashboardState;
  /** Applies an update to the session record and pushes it to every viewer (if attached). */
  publish(u: DashUpdate): void;
  /** Serves the dashboard on `http` (static files + socket.io). Updates published before are kept for late joiners. */
  attach(http: HttpServer, opts?: DashboardOptions): void;
  viewers(): number;
  close(): Promise<void>;
}

export { isLoopbackHost };

function tokenOk(expected: string, given: unknown): boolean {
  if (typeof given !== 'string') return false;
  const a = createHash('sha256').update(expected).digest();
  const b = createHash('sha256').update(given).digest();
  return timingSafeEqual(a, b);
}

export function createDashboard(): Dashboard {
  const state = new DashboardState();
  let io: IoServer | null = null;
  return {
    state,
    publish(u) {
      state.apply(u);
      io?.emit(u.type, u.data);
    },
    attach(http, opts = {}) {
      if (io) throw new Error('dashboard already attached');
      io = attachDashboard(http, state, opts);
    },
    viewers: () => io?.engine.clientsCount ?? 0,
    close: async () => {
      if (!io) return;
      io.disconnectSockets(true);
      // io.close() would also close the shared HTTP server; close only the engine.
      io.engine.close();
      io = null;
    },
  };
}

function attachDashboard(http: HttpServer, state: DashboardState, opts: DashboardOptions): IoServer {
  // `cors` covers only XHR polling; allowRequest also sees WebSocket upgrades, where browsers send Origin but no CORS
  // check applies: only the dashboard's own page (or a non-browser client, with no Origin) gets the live data.
  const io = new IoServer(http, {
    serveClient: true,
    maxHttpBufferSize: 1e6,
    cors: { origin: false },
    allowRequest: (req, done) => {
      const refusal = checkHost(req, opts.loopbackBind ?? false) ?? checkDashboardOrigin(req);
      done(refusal ? refusal.message : null, !refusal);
    },
  });
  const staticDir = resolve(opts.staticDir ?? DASHBOARD_DIR);
  if (opts.viewerToken) {
    const token = opts.viewerToken;
    io.use((socket, next) => {
      const given = (socket.handshake.auth as Record<string, unknown>)?.token ?? socket.handshake.query?.token;
      if (tokenOk(token, given)) next();
      else
        next(
          new Error(
            'viewer token missing or wrong: open the dashboard URL printed by `serve` (it ends in ?token=...).',
          ),
        );
    });
  }
  io.on('connection', (socket) => {
    const snap: DashSnapshot = state.snapshot();
    socket.emit('snapshot', snap);
  });
  function handleHttp(req: IncomingMessage, res: ServerResponse): boolean {
    if (req.method !== 'GET' && req.method !== 'HEAD') return false;
    const url = new URL(req.url ?? '/', 'http://x');
    let p = url.pathname;
    if (p === '/' || p === '/dashboard' || p === '/dashboard/') p = '/index.html';
    else if (p.startsWith('/dashboard/')) p = p.slice('/dashboard'.length);
    else if (!['/index.html', '/app.js', '/charts.js', '/style.css', '/favicon.svg'].includes(p)) return false;
    const file = normalize(join(staticDir, p));
    if (!file.startsWith(staticDir + sep)) return false;
    readFile(file).then(
      (body) => {
        res.writeHead(200, {
          'content-type': MIME[extname(file)] ?? 'application/octet-stream',
          'cache-control': 'no-cache',
          'x-content-type-options': 'nosniff',
        });
        res.end(req.method === 'HEAD' ? undefined : body);
      },
      () => {
        res.writeHead(404, { 'content-type': 'text/plain' });
        res.end('not found');
      },
    );
    return true;
  }

  // The ingest server answers only its own paths when another request listener exists; socket.io answers /socket.io/.
  http.on('request', (req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path.startsWith('/socket.io/') || path === '/healthz' || res.headersSent) return;
    if (!handleHttp(req, res)) {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('not found\n');
    }
  });

  return io;
}
