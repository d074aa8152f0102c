// Who may talk to the server over HTTP and WebSocket, from the request line alone:
// - a loopback bind answers only requests addressed to a loopback name (Host), so a web page that rebinds its own
//   DNS name to 127.0.0.1 cannot reach it (DNS rebinding);
// - /bridge takes no connection that carries a browser Origin (bridges and replays send none), so a web page cannot
//   open it (cross-site WebSocket hijacking);
// - the dashboard's socket.io takes browser connections only from the dashboard's own origin.
import type { IncomingMessage } from 'node:http';

export interface Refusal {
  status: 403 | 421;
  message: string;
}

/** A host that is reachable only from this machine (no viewer token needed, Host checked). */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  return (
    h === 'localhost' ||
    h.endsWith('.localhost') ||
    h === '::1' ||
    /^127\.\d+\.\d+\.\d+$/.test(h) ||
    h === '::ffff:127.0.0.1'
  );
}

/** The name in a Host header, without port or IPv6 brackets. */
export function hostnameOf(host: string): string {
  const m = /^\[([^\]]+)\](?::\d+)?$/.exec(host) ?? /^([^:]+)(?::\d+)?$/.exec(host);
  return m ? m[1] : host;
}

/** On a loopback bind, a request addressed to any other name is refused (421 Misdirected Request). */
export function checkHost(req: IncomingMessage, loopbackBind: boolean): Refusal | undefined {
  if (!loopbackBind) return undefined;
  const host = req.headers.host;
  if (host && isLoopbackHost(hostnameOf(host))) return undefined;
  return {
    status: 421,
    message: `this server listens on this machine only and answers requests for localhost or 127.0.0.1, not for ${JSON.stringify(clean(host ?? ''))}; open it as http://127.0.0.1:<port>/.`,
  };
}

/** /bridge: a browser always sends Origin on a WebSocket upgrade; mindsemantix senders never do. */
export function checkBridgeOrigin(req: IncomingMessage): Refusal | undefined {
  const origin = req.headers.origin;
  if (origin === undefined) return undefined;
  return {
    status: 403,
    message: `a web page (origin ${JSON.stringify(clean(origin))}) may not open /bridge; it takes connections from mindsemantix bridge and replay only.`,
  };
}

/** Dashboard sockets: no Origin (a script, socket.io-client) or the page's own origin (the Host it was served under). */
export function checkDashboardOrigin(req: IncomingMessage): Refusal | undefined {
  const origin = req.headers.origin;
  if (origin === undefined) return undefined;
  const host = (req.headers.host ?? '').toLowerCase();
  const o = origin.toLowerCase();
  if (host && (o === `http://${host}` || o === `https://${host}`)) return undefined;
  return {
    status: 403,
    message: `the dashboard's live data is served only to its own page; origin ${JSON.stringify(clean(origin))} is not ${JSON.stringify(clean(`http://${host}`))}.`,
  };
}

/** Header values from a client end up in log lines: printable characters only, bounded. */
function clean(s: string): string {
  return s.replace(/[^\x20-\x7e]/g, '?').slice(0, 100);
}
