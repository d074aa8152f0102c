// `bridge --mrd-listen [HOST:]PORT`: accepts MRD streaming connections (Siemens FIRE sends images this way) and turns
// their image messages into volumes for the bridge. A run is one MRD measurement (measurementID of the XML header): a
// sender that reconnects mid-run with the same measurement continues the same run.
import { createServer, type Server, type Socket } from 'node:net';
import {
  MRD,
  MrdError,
  MrdStreamParser,
  MrdVolumeAssembler,
  parseMrdHeader,
  type MrdHeaderInfo,
} from '../scanner/mrd.js';
import type { SourceHandlers, VolumeSource } from './source.js';

export interface ListenerOptions extends SourceHandlers {
  host: string;
  port: number;
  /** Repetition time when the stream does not say. */
  tr?: number;
  log?: (level: 'debug' | 'info' | 'warn' | 'error', message: string) => void;
  /** Called once the port is bound, with the port (0 asks the system for one). */
  onListening?(port: number): void;
  /** The port cannot be bound (in use, not allowed): one sentence. */
  onListenError?(message: string): void;
}

/** Senders served at once; a scanner has one, a second is a reconnect overlapping the old socket's end. */
const MAX_CONNECTIONS = 4;
const CLOSE_MESSAGE = Buffer.from([MRD.CLOSE, 0]);

/** Parses "[HOST:]PORT" for the listeners; host defaults to 127.0.0.1 (listening wider is a choice made explicitly). */
export function parseListenAddress(s: string): { host: string; port: number } | undefined {
  const m = /^(?:(\[[^\]]+\]|[^:]+):)?(\d{1,5})$/.exec(s.trim());
  if (!m) return undefined;
  const port = Number(m[2]);
  if (port > 65535) return undefined;
  return { host: (m[1] ?? '127.0.0.1').replace(/^\[|\]$/g, ''), port };
}

export class MrdListener implements VolumeSource {
  private server: Server | undefined;
  private sockets = new Set<Socket>();
  private connections = 0;
  constructor(private readonly o: ListenerOptions) {}

  start(): void {
    this.server = createServer((s) => this.accept(s));
    this.server.on('error', (e) => {
      const msg = `cannot listen for MRD streams on ${this.o.host}:${this.o.port} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}); choose another port or stop what holds it.`;
      if (this.o.onListenError) this.o.onListenError(msg);
      else this.o.log?.('error', msg);
    });
    this.server.listen(this.o.port, this.o.host, () => {
      const a = this.server!.address();
      const port = typeof a === 'object' && a ? a.port : this.o.port;
      this.o.log?.('info', `listening for MRD image streams on ${this.o.host}:${port}`);
      this.o.onListening?.(port);
    });
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
  }

  private accept(socket: Socket): void {
    const peer = `${socket.remoteAddress}:${socket.remotePort}`;
    if (this.sockets.size >= MAX_CONNECTIONS) {
      this.o.log?.('warn', `MRD connection from ${peer} refused: ${MAX_CONNECTIONS} senders are already connected.`);
      socket.destroy();
      return;
    }
    this.sockets.add(socket);
    const conn = ++this.connections;
    const parser = new MrdStreamParser();
    const assembler = new MrdVolumeAssembler(undefined);
    let header: MrdHeaderInfo = {};
    let closed = false;
    const warned = new Set<string>();
    const warnOnce = (key: string, msg: string) => {
      if (!warned.has(key)) {
        warned.add(key);
        this.o.log?.('warn', msg);
      }
    };
    let volumes = 0;
    this.o.log?.('info', `MRD sender connected from ${peer}`);
    socket.on('data', (chunk: Buffer) => {
      if (closed) return;
      let messages;
      try {
        messages = parser.push(chunk);
      } catch (e) {
        if (!(e instanceof MrdError)) throw e;
        closed = true;
        this.o.onInvalid?.(`mrd://${peer}`, `${e.message} The ${volumes} volume(s) received before it are kept.`);
        socket.destroy();
        return;
      }
      for (const m of messages) {
        if (m.kind === 'header') {
          header = parseMrdHeader(m.xml);
          assembler.setSlicesPerVolume(header.slicesPerVolume);
        } else if (m.kind === 'skipped') {
          warnOnce(
            `skip-${m.id}`,
            `MRD ${m.name} messages (id ${m.id}) from ${peer} are not used by the bridge and are skipped; it reads reconstructed images (id ${MRD.IMAGE}).`,
          );
        } else if (m.kind === 'image') {
          const img = m.image;
          if (img.refused) {
            warnOnce(`refused-${img.refused}`, `MRD images from ${peer} are skipped because ${img.refused}.`);
            continue;
          }
          let done;
          try {
            done = assembler.add(img, m.firstByteAt, header.tr ?? this.o.tr);
          } catch (e) {
            if (!(e instanceof MrdError)) throw e;
            this.o.onInvalid?.(`mrd://${peer}`, e.message);
            continue;
          }
          if (!done) continue;
          volumes++;
          const key = header.measurementId ?? `connection-${conn}`;
          this.o.onVolume({
            path: `mrd://${peer}/${key}`,
            volume: done.volume,
            positionInFile: 0,
            growing: false,
            seenAt: done.firstByteAt,
            readAt: Date.now(),
            runKey: `mrd-${key}`,
          });
        } else if (m.kind === 'close') {
          closed = true;
          this.o.log?.('info', `MRD sender ${peer} closed its stream after ${volumes} volume(s)`);
          socket.end(CLOSE_MESSAGE);
        }
      }
    });
    socket.on('error', () => {
      /* reported on close */
    });
    socket.on('close', () => {
      this.sockets.delete(socket);
      if (!closed) {
        const left = parser.pending() ? ` (a ${parser.pending()}-byte partial message was dropped)` : '';
        this.o.log?.(
          'warn',
          `the MRD sender at ${peer} went away without a close message after ${volumes} volume(s)${left}; they are kept, and a reconnect with the same measurement continues the run.`,
        );
      }
    });
  }
}
