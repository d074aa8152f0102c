// `bridge --afni-listen [HOST:]PORT`: stands where AFNI's real-time plugin stands, so `Dimon -rt -host ...` or
// `rtfeedme -host ...` can send to mindsemantix. The sender opens the control port (AFNI's is 7954) and sends the
// name of its data channel ("tcp:HOST:PORT", NUL-terminated), then connects to that port and sends header commands
// and images (src/scanner/afni.ts). Each dataset is one run, ended by the end marker or by the data channel closing.
// Written from AFNI's published description (README.realtime, rtfeedme.c); not run against AFNI's own senders.
import { createServer, type Server, type Socket } from 'node:net';
import { AfniDataStream, AfniError } from '../scanner/afni.js';
import type { ListenerOptions } from './mrdListener.js';
import type { VolumeSource } from './source.js';

const MAX_CONTROL_BYTES = 4096;
const MAX_DATA_CONNECTIONS = 4;

export class AfniListener implements VolumeSource {
  private control: Server | undefined;
  private data = new Map<number, Server>();
  private sockets = new Set<Socket>();
  private connections = 0;
  constructor(private readonly o: ListenerOptions) {}

  start(): void {
    this.control = createServer((s) => this.onControl(s));
    this.control.on('error', (e) => this.listenError(this.o.port, e));
    this.control.listen(this.o.port, this.o.host, () => {
      const a = this.control!.address();
      const port = typeof a === 'object' && a ? a.port : this.o.port;
      this.o.log?.('info', `listening for AFNI real-time senders (control channel) on ${this.o.host}:${port}`);
      this.o.onListening?.(port);
    });
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    const servers = [this.control, ...this.data.values()].filter((s): s is Server => !!s);
    await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
  }

  private listenError(port: number, e: Error): void {
    const msg = `cannot listen for AFNI real-time senders on ${this.o.host}:${port} (${(e as NodeJS.ErrnoException).code ?? e.message}); choose another port or stop what holds it.`;
    if (this.o.onListenError) this.o.onListenError(msg);
    else this.o.log?.('error', msg);
  }

  /** The control channel carries one NUL-terminated string naming the data channel (plus optional extra lines). */
  private onControl(socket: Socket): void {
    const peer = `${socket.remoteAddress}:${socket.remotePort}`;
    let text = '';
    socket.on('data', (chunk: Buffer) => {
      text += chunk.toString('latin1');
      if (text.length > MAX_CONTROL_BYTES) {
        this.o.onInvalid?.(
          `afni://${peer}`,
          `the AFNI control message ran past ${MAX_CONTROL_BYTES} bytes without its closing NUL byte; the connection was closed.`,
        );
        socket.destroy();
        return;
      }
      const nul = text.indexOf('\0');
      if (nul < 0) return;
      const channel = text.slice(0, nul).split('\n')[0].trim();
      socket.end();
      const m = /^tcp:([^:]+):(\d{1,5})$/.exec(channel);
      if (!m) {
        const why = channel.startsWith('shm:')
          ? `the sender asked for a shared-memory data channel (${channel}), which only an AFNI process on the same machine can open; make it send over TCP (Dimon -rt -host HOST, rtfeedme -host HOST).`
          : `the AFNI control message "${channel.slice(0, 80)}" does not name a tcp:HOST:PORT data channel.`;
        this.o.onInvalid?.(`afni://${peer}`, why);
        return;
      }
      this.openData(Number(m[2]));
    });
    socket.on('error', () => {
      /* a control socket that breaks carries no data */
    });
  }

  private openData(port: number): void {
    if (this.data.has(port)) return;
    const server = createServer((s) => this.onData(s));
    server.on('error', (e) => this.listenError(port, e));
    server.listen(port, this.o.host);
    this.data.set(port, server);
  }

  private onData(socket: Socket): void {
    const peer = `${socket.remoteAddress}:${socket.remotePort}`;
    if (this.sockets.size >= MAX_DATA_CONNECTIONS) {
      this.o.log?.(
        'warn',
        `AFNI data connection from ${peer} refused: ${MAX_DATA_CONNECTIONS} senders are already connected.`,
      );
      socket.destroy();
      return;
    }
    this.sockets.add(socket);
    const conn = ++this.connections;
    const stream = new AfniDataStream();
    let dataset = 0;
    let volumes = 0;
    let failed = false;
    const key = () => `afni-${conn}-${dataset}`;
    this.o.log?.('info', `AFNI data channel opened by ${peer}`);
    socket.on('data', (chunk: Buffer) => {
      if (failed) return;
      let events;
      try {
        events = stream.push(chunk);
      } catch (e) {
        if (!(e instanceof AfniError)) throw e;
        failed = true;
        this.o.onInvalid?.(
          `afni://${peer}`,
          `${e.message} The connection was closed; the ${volumes} volume(s) received before are kept.`,
        );
        this.o.onRunEnd?.(key());
        socket.destroy();
        return;
      }
      for (const ev of events) {
        if (ev.kind === 'header') {
          dataset++;
          const a = ev.acq;
          if (a.ignored.length)
            this.o.log?.('info', `AFNI header commands not used by the bridge: ${[...new Set(a.ignored)].join(', ')}`);
        } else if (ev.kind === 'end') {
          this.o.onRunEnd?.(key());
        } else {
          volumes++;
          this.o.onVolume({
            path: `afni://${peer}/${dataset}`,
            volume: ev.volume,
            positionInFile: 0,
            growing: false,
            seenAt: ev.firstByteAt,
            readAt: Date.now(),
            runKey: key(),
          });
        }
      }
    });
    socket.on('error', () => {
      /* reported on close */
    });
    socket.on('close', () => {
      this.sockets.delete(socket);
      if (failed) return;
      const left = stream.pending() ? `; a partly received image (${stream.pending()} bytes) was dropped` : '';
      this.o.log?.(left ? 'warn' : 'info', `AFNI data channel from ${peer} closed after ${volumes} volume(s)${left}`);
      if (dataset > 0) this.o.onRunEnd?.(key());
    });
  }
}
