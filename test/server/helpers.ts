// Shared by the protocol/server/bridge/replay tests: deterministic volumes, BIDS runs on disk, the nibabel oracle.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, openSync, writeFileSync, writeSync, readFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { gzipSync } from 'node:zlib';
import type { RunInfo } from '../../src/core/types.js';
import { encodeNifti1Series, encodeNifti1Volume } from '../../src/scanner/nifti.js';
import type { Logger } from '../../src/server/log.js';

export const root = new URL('../../../', import.meta.url).pathname;
export const python = join(root, '.venv', 'bin', 'python');
export const oracle = join(root, 'models', 'mindsemantix', 'oracles', 'nib_load_bold.py');

export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), `msx-${prefix}-`));
}

export const AFFINE = [-3, 0, 0, 90, 0, 3, 0, -120, 0, 0, 3.5, -60, 0, 0, 0, 1];

export function runInfo(o: Partial<RunInfo> = {}): RunInfo {
  return {
    session: '01',
    run: 'task-vision_run-01',
    subject: 't01',
    task: 'vision',
    tr: 1.5,
    dims: [8, 7, 5],
    voxelSize: [3, 3, 3.5],
    affine: AFFINE,
    ...o,
  };
}

/** Volume i of a deterministic int16 series (distinct per index, so order errors show). */
export function int16Volume(dims: readonly number[], i: number, seed = 1): Int16Array {
  const n = dims[0] * dims[1] * dims[2];
  const a = new Int16Array(n);
  let s = (seed * 7919 + i * 104729) >>> 0;
  for (let k = 0; k < n; k++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[k] = 500 + i + ((s >>> 16) % 2000) - 1000;
  }
  return a;
}

export function niftiVolume(
  info: RunInfo,
  i: number,
  data: Int16Array | Float32Array = int16Volume(info.dims, i),
): Uint8Array {
  return encodeNifti1Volume({ dims: info.dims, affine: [...info.affine], tr: info.tr, data });
}

export function captureLog(): { log: Logger; lines: string[] } {
  const lines: string[] = [];
  return { lines, log: (level, message) => lines.push(`${level} ${message}`) };
}

export async function waitFor(cond: () => boolean, timeoutMs = 5000, what = 'condition'): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

export interface NibReport {
  shape: number[];
  dtype: string;
  affine: number[];
  zooms: number[];
  tr: number;
  qform_equals_sform: boolean;
  finite: boolean;
}

/** Loads a NIfTI with nibabel; returns its report and, when asked, its voxels (stored dtype, x fastest). */
export function nibLoad(path: string, withData = false): { report: NibReport; raw?: Buffer } {
  const rawPath = withData ? `${path}.oracle.raw` : undefined;
  const r = spawnSync(python, [oracle, path, ...(rawPath ? [rawPath] : [])], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`nibabel could not load ${path}: ${r.stderr.trim().split('\n').pop()}`);
  return { report: JSON.parse(r.stdout) as NibReport, raw: rawPath ? readFileSync(rawPath) : undefined };
}

export interface BidsRunSpec {
  info: RunInfo;
  volumes: number;
  /** [onset, stimulusId] pairs. */
  events?: [number, string][];
  acquisitionTimes?: number[];
}

/** Writes a BIDS run (4-D int16 .nii.gz, events.tsv, _bold.json) under `dir`; returns the bold path and the volumes. */
export function writeBidsRun(dir: string, s: BidsRunSpec): { bold: string; volumes: Int16Array[] } {
  const { info } = s;
  const stem = join(
    dir,
    `sub-${info.subject}`,
    `ses-${info.session}`,
    'func',
    `sub-${info.subject}_ses-${info.session}_${info.run}`,
  );
  mkdirSync(dirname(stem), { recursive: true });
  writeFileSync(join(dir, 'dataset_description.json'), JSON.stringify({ Name: 'test', BIDSVersion: '1.9.0' }));
  const volumes = Array.from({ length: s.volumes }, (_, i) => int16Volume(info.dims, i, 3));
  const nii = encodeNifti1Series({ dims: info.dims, affine: [...info.affine], tr: info.tr, volumes });
  writeFileSync(`${stem}_bold.nii.gz`, gzipSync(nii, { level: 1 }));
  const acq = s.acquisitionTimes ?? volumes.map((_, i) => i * info.tr);
  writeFileSync(
    `${stem}_bold.json`,
    JSON.stringify({ RepetitionTime: info.tr, AcquisitionTimes: acq, TaskName: info.task }),
  );
  const rows = (s.events ?? []).map(([onset, id]) =>
    [onset, 3, 'stimulus', id, JSON.stringify([`a photo of ${id}`, `picture ${id}`]), `stimuli/${id}.png`].join('\t'),
  );
  writeFileSync(
    `${stem}_events.tsv`,
    ['onset\tduration\ttrial_type\tstimulus_id\treferences\tstim_file', ...rows].join('\n') + '\n',
  );
  return { bold: `${stem}_bold.nii.gz`, volumes };
}

export function bytesOf(a: Int16Array | Float32Array): Buffer {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength);
}

/** One call the recording made through a FaultyFs: the operation and the path it touched. */
export interface FsCall {
  op: string;
  path: string;
}

/**
 * node:fs/promises for a recording, with failures on demand: `fail(op, path)` returns an errno code (ENOSPC, EIO) to
 * throw for that call, or undefined to let it through. Every call is listed in `calls`, in order.
 */
export async function faultyFs(
  fail: (op: string, path: string) => string | undefined,
): Promise<{ fs: import('../../src/server/recording.js').RecordingFs; calls: FsCall[] }> {
  const fsp = await import('node:fs/promises');
  const calls: FsCall[] = [];
  const check = (op: string, path: string): void => {
    calls.push({ op, path });
    const code = fail(op, path);
    if (code) throw Object.assign(new Error(`${code}: injected failure, ${op} ${path}`), { code });
  };
  const HANDLE_OPS = new Set(['write', 'writev', 'writeFile', 'datasync', 'sync', 'truncate']);
  const wrap = (fh: import('node:fs/promises').FileHandle, path: string) =>
    new Proxy(fh, {
      get(target, key) {
        const v = Reflect.get(target, key) as unknown;
        if (typeof v !== 'function') return v;
        return (...args: unknown[]) => {
          if (typeof key === 'string' && HANDLE_OPS.has(key)) {
            try {
              check(key, path);
            } catch (e) {
              return Promise.reject(e);
            }
          }
          return (v as (...a: unknown[]) => unknown).apply(target, args);
        };
      },
    });
  const fs = {
    ...fsp,
    open: async (p: import('node:fs').PathLike, flags?: string | number) => {
      check('open', String(p));
      return wrap(await fsp.open(p, flags), String(p));
    },
    rename: async (a: import('node:fs').PathLike, b: import('node:fs').PathLike) => {
      check('rename', String(b));
      return fsp.rename(a, b);
    },
    link: async (a: import('node:fs').PathLike, b: import('node:fs').PathLike) => {
      check('link', String(b));
      return fsp.link(a, b);
    },
  } as import('../../src/server/recording.js').RecordingFs;
  return { fs, calls };
}

export interface RawClient {
  ws: import('ws').WebSocket;
  msgs: import('../../src/protocol/messages.js').ServerMessage[];
  closed: { code?: number };
  errors(): import('../../src/protocol/messages.js').ErrorMessage[];
  acks(): import('../../src/protocol/messages.js').AckMessage[];
}

/** A bare protocol client (no resend logic): sends what a test says, keeps every server message. */
export async function rawClient(
  url: string,
  hello: object | null,
  wsOptions: import('ws').ClientOptions = {},
): Promise<RawClient> {
  const { WebSocket } = await import('ws');
  const ws = new WebSocket(url, wsOptions);
  const msgs: RawClient['msgs'] = [];
  const closed: { code?: number } = {};
  ws.on('message', (d, bin) => {
    if (!bin) msgs.push(JSON.parse(d.toString()) as RawClient['msgs'][number]);
  });
  ws.on('close', (code) => {
    closed.code = code;
  });
  ws.on('error', () => {});
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  if (hello) {
    ws.send(JSON.stringify(hello));
    await waitFor(() => msgs.length > 0 || closed.code !== undefined, 3000, 'hello reply');
  }
  return {
    ws,
    msgs,
    closed,
    errors: () => msgs.filter((m): m is import('../../src/protocol/messages.js').ErrorMessage => m.type === 'error'),
    acks: () => msgs.filter((m): m is import('../../src/protocol/messages.js').AckMessage => m.type === 'ack'),
  };
}

/** Writes a file the way a scanner does: in pieces, with pauses, never atomically. Returns when the last byte is written. */
export async function slowWrite(path: string, bytes: Uint8Array, pieces = 3, pauseMs = 40): Promise<number> {
  const fd = openSync(path, 'w');
  const step = Math.ceil(bytes.length / pieces);
  for (let off = 0; off < bytes.length; off += step) {
    writeSync(fd, bytes, off, Math.min(step, bytes.length - off));
    if (off + step < bytes.length) await new Promise((r) => setTimeout(r, pauseMs));
  }
  closeSync(fd);
  return Date.now();
}

/** `mindsemantix <args>` as a child process (stderr kept); with a test context it is killed when the test ends. */
export function cliChild(
  args: string[],
  t?: { after(fn: () => void): void },
): { p: ChildProcess; err: () => string; exited: Promise<number | null> } {
  const p = spawn(process.execPath, [join(root, 'bin', 'mindsemantix.mjs'), ...args], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let err = '';
  p.stderr!.on('data', (d) => {
    err += d;
  });
  const exited = new Promise<number | null>((r) => p.once('exit', (code) => r(code)));
  t?.after(() => {
    p.kill('SIGKILL');
  });
  return { p, err: () => err, exited };
}
