import { accessSync, constants, mkdirSync } from 'node:fs';
import type { Command } from '../command.js';
import { UserError } from '../../core/errors.js';
import { numberFlag, parseArgs, stringFlag } from '../args.js';
import { parseRerank, rerankFlagSpecs, rerankHelp } from '../rerankFlags.js';
import { startServer, readTokenFile, type DecoderServer, type IngestHub } from '../../server/index.js';
import { createServePipeline, type HubHookOptions } from '../../app/serve.js';
import { DEVICES, type Device } from '../../inference/sessions.js';
import { LM_PRECISIONS, type LmPrecision } from '../../inference/decoder.js';

const help = `mindsemantix serve [--host 127.0.0.1] [--port 8080] [--models DIR] [--record DIR] [--token-file F] [--device D] [--lm-precision P] [--rerank N]

Decoder server. Bridges and replays connect over WebSocket (protocol v1, docs/protocol.md) at ws://HOST:PORT/bridge.

  --host H         address to bind (default 127.0.0.1; any other address needs --token-file)
  --port P         TCP port (default 8080; 0 picks a free one)
  --models DIR     model bundle folder for the decoding pipeline
  --record DIR     write every run as BIDS under DIR (crash-safe; a restart continues the same run)
  --token-file F   file holding the shared secret that bridges must present
  --device D       cpu (default), webgpu or cuda; falls back to cpu with a log line when unavailable
  --lm-precision P auto (default: the bundle's 8-bit LM graph when it has one), fp32 (exact PyTorch parity) or int8
${rerankHelp}`;

/** Where the decoding pipeline attaches to ingest (the serve command passes src/app/serve.ts's hook). */
export type HubHook = (hub: IngestHub, opts: HubHookOptions) => void | Promise<void>;

export async function runServe(argv: string[], hooks: { onHub?: HubHook } = {}): Promise<DecoderServer> {
  const p = parseArgs('serve', argv, {
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string', default: '8080' },
    models: { type: 'string' },
    record: { type: 'string' },
    'token-file': { type: 'string' },
    device: { type: 'string', default: 'cpu', choices: DEVICES },
    'lm-precision': { type: 'string', default: 'auto', choices: LM_PRECISIONS },
    ...rerankFlagSpecs,
  });
  if (p.positionals.length)
    throw new UserError(`serve: unexpected argument "${p.positionals[0]}"; run \`mindsemantix serve --help\`.`, 2);
  const host = stringFlag(p, 'host')!;
  const port = numberFlag('serve', p, 'port', { min: 0, max: 65535, integer: true })!;
  const tokenFile = stringFlag(p, 'token-file');
  let token: string | undefined;
  if (tokenFile) {
    try {
      token = readTokenFile(tokenFile);
    } catch (e) {
      throw new UserError(`serve: ${(e as Error).message}`);
    }
  }
  const loopback = host === '127.0.0.1' || host === '::1' || host === 'localhost';
  if (!loopback && token === undefined)
    throw new UserError(
      `serve: binding ${host} exposes the server to the network; pass --token-file with a shared secret (or bind 127.0.0.1).`,
      2,
    );
  const record = stringFlag(p, 'record');
  if (record) {
    try {
      mkdirSync(record, { recursive: true });
      accessSync(record, constants.W_OK);
    } catch (e) {
      throw new UserError(
        `serve: cannot write to --record ${record} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}); choose a writable folder.`,
      );
    }
  }
  const models = stringFlag(p, 'models');
  const rerank = parseRerank('serve', p);
  const hook = hooks.onHub;
  let hubReady: Promise<void> = Promise.resolve();
  let srv: DecoderServer;
  try {
    srv = await startServer({
      host,
      port,
      token,
      recordDir: record,
      // The pipeline subscribes synchronously (nothing is missed); its promise settles once it is running.
      onHub: hook
        ? (hub) => {
            hubReady = Promise.resolve(
              hook(hub, {
                models,
                record,
                device: stringFlag(p, 'device') as Device,
                lmPrecision: stringFlag(p, 'lm-precision') as LmPrecision,
                rerank,
              }),
            );
            hubReady.catch(() => {});
          }
        : undefined,
    });
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'EADDRINUSE')
      throw new UserError(`serve: port ${port} on ${host} is already in use; stop the other server or pass --port.`);
    if (err.code === 'EADDRNOTAVAIL' || err.code === 'EACCES')
      throw new UserError(`serve: cannot bind ${host}:${port} (${err.code}); choose another --host or --port.`);
    throw e;
  }
  try {
    await hubReady;
  } catch (e) {
    await srv.close(); // a pipeline that cannot start must not leave a listening server behind
    throw e;
  }
  return srv;
}

export const command: Command = {
  name: 'serve',
  summary: 'decoder server: bridge ingest over WebSocket, pipeline, dashboard, BIDS recording',
  help,
  async run(argv) {
    // The decoding pipeline and dashboard (src/app/serve.ts): subscribes via the hub hook, serves the dashboard.
    const pipeline = createServePipeline();
    const srv = await runServe(argv, { onHub: (hub, o) => pipeline.onHub(hub, o) });
    const dashboard = pipeline.attach(srv);
    process.stderr.write(`mindsemantix serve: ready at ${srv.url}\n`);
    process.stderr.write(`mindsemantix serve: dashboard at ${dashboard}\n`);
    await new Promise<void>((resolve) => {
      const stop = () => resolve();
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
    });
    await pipeline.close();
    await srv.close();
    return 0;
  },
};
