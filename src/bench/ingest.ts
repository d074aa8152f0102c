// Ingest benchmark: file appears in the watched folder → volume accepted by the server (p50/p99) for two volume sizes
// and for every input path at 64×64×40 int16 (NIfTI folder, Philips XTC PAR/REC, MRD stream, AFNI real-time; for the
// network paths "appears" is the first byte of the volume on the socket), replay throughput over loopback, and peak
// RSS. Everything runs in this process on 127.0.0.1.
import { nowMs } from '../core/clock.js';
import { mkdtempSync, rmSync, openSync, writeSync, closeSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { startServer } from '../server/index.js';
import { ScannerBridge } from '../bridge/bridge.js';
import { replaySession } from '../replay/index.js';
import { encodeNifti1Series, encodeNifti1Volume } from '../scanner/nifti.js';
import { MrdListener } from '../bridge/mrdListener.js';
import { AfniListener } from '../bridge/afniListener.js';
import type { SourceHandlers, VolumeSource } from '../bridge/source.js';
import { afniHeader, connectWithRetry, freePort, mrdHeaderMessage, mrdImageMessage, xtcPar } from './senders.js';
import type { Socket } from 'node:net';

export interface BenchIngestOptions {
  /** Volumes per size for the file→accept measurement. */
  volumes?: number;
  /** Pause between files (ms): the scanner's pace. */
  intervalMs?: number;
  /** Volumes of the replayed run. */
  replayVolumes?: number;
  /** Record while measuring (BIDS, fdatasync per volume). */
  record?: boolean;
  log?: (message: string) => void;
}

export interface Percentiles {
  p50: number;
  p99: number;
  n: number;
  dims: [number, number, number];
  dtype: string;
}

export interface BenchIngestResult {
  file_to_accept_ms: {
    small: Percentiles;
    large: Percentiles;
    by_path: Record<'nifti' | 'parrec_xtc' | 'mrd' | 'afni', Percentiles>;
  };
  replay_volumes_per_s: number;
  replay: { volumes: number; dims: [number, number, number]; seconds: number };
  rss_mb: number;
  recording: boolean;
}

const AFFINE = [-3, 0, 0, 96, 0, 3, 0, -96, 0, 0, 3, -60, 0, 0, 0, 1];

function pct(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))];
}

function volumeData(dims: [number, number, number], i: number, float: boolean): Int16Array | Float32Array {
  const n = dims[0] * dims[1] * dims[2];
  const a = float ? new Float32Array(n) : new Int16Array(n);
  let s = (i * 2654435761) >>> 0;
  for (let k = 0; k < n; k++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[k] = float ? 1000 + (s >>> 8) / 16777216 : 800 + ((s >>> 20) & 511);
  }
  return a;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitAccepted(accepted: Map<string, number>, run: string, n: number, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    let all = true;
    for (let i = 0; i < n && all; i++) all = accepted.has(`${run}/${i}`);
    if (all) return;
    await sleep(10);
  }
}

export async function benchIngest(o: BenchIngestOptions = {}): Promise<BenchIngestResult> {
  const n = o.volumes ?? 60;
  const interval = o.intervalMs ?? 100;
  const log = o.log ?? (() => {});
  const root = mkdtempSync(join(tmpdir(), 'msx-bench-ingest-'));
  let rss = process.memoryUsage().rss;
  const rssTimer = setInterval(() => {
    rss = Math.max(rss, process.memoryUsage().rss);
  }, 50);
  const accepted = new Map<string, number>();
  const srv = await startServer({
    port: 0,
    log: () => {},
    recordDir: o.record ? join(root, 'rec') : undefined,
    onHub: (h) => h.volumes$.subscribe((v) => accepted.set(`${v.run}/${v.index}`, v.times.accepted!)),
  });
  try {
    const measure = async (dims: [number, number, number], float: boolean, task: string): Promise<Percentiles> => {
      const dir = join(root, task);
      mkdirSync(dir);
      const bridge = new ScannerBridge({ dir, url: srv.url, task, tr: 2 }).start();
      const started: number[] = [];
      for (let i = 0; i < n; i++) {
        const path = join(dir, `001_000001_${String(i + 1).padStart(6, '0')}.nii`);
        const bytes = encodeNifti1Volume({ dims, affine: AFFINE, tr: 2, data: volumeData(dims, i, float) });
        started.push(nowMs());
        const fd = openSync(path, 'w');
        writeSync(fd, bytes);
        closeSync(fd);
        await sleep(interval);
      }
      await bridge.stop();
      const run = `task-${task}_run-01`;
      const lat = started.map((t, i) => accepted.get(`${run}/${i}`)! - t);
      if (lat.some((x) => !Number.isFinite(x)))
        throw new Error(`bench: not every ${dims.join('×')} volume was accepted.`);
      const r: Percentiles = { p50: pct(lat, 0.5), p99: pct(lat, 0.99), n, dims, dtype: float ? 'float32' : 'int16' };
      log(`file→accept ${dims.join('×')} ${r.dtype}: p50 ${r.p50} ms, p99 ${r.p99} ms (n=${n})`);
      return r;
    };
    const small = await measure([64, 64, 40], false, 'small');
    const large = await measure([81, 104, 83], true, 'large');

    // every other input path, same size and pace; t0 = the moment the volume starts to appear
    const dims: [number, number, number] = [64, 64, 40];
    // `connect` (a stream's connection and header) runs before the clock starts: a volume's latency is from the moment
    // its bytes start to be written, as for a file, not the once-per-run connection set-up.
    const path = async (
      task: string,
      bridgeFor: (url: string) => ScannerBridge,
      send: (i: number, data: Int16Array) => Promise<void>,
      done: () => Promise<void>,
      connect: () => Promise<void> = async () => {},
    ): Promise<Percentiles> => {
      const bridge = bridgeFor(srv.url).start();
      const started: number[] = [];
      try {
        await connect();
        for (let i = 0; i < n; i++) {
          const data = volumeData(dims, i, false) as Int16Array;
          started.push(nowMs());
          await send(i, data);
          await sleep(interval);
        }
        await done();
        await waitAccepted(accepted, `task-${task}_run-01`, n, 10000);
      } finally {
        await bridge.stop();
      }
      const lat = started.map((t, i) => accepted.get(`task-${task}_run-01/${i}`)! - t);
      if (lat.some((x) => !Number.isFinite(x))) throw new Error(`bench: not every ${task} volume was accepted.`);
      const r: Percentiles = { p50: pct(lat, 0.5), p99: pct(lat, 0.99), n, dims, dtype: 'int16' };
      log(`file→accept ${task} ${dims.join('×')} int16: p50 ${r.p50} ms, p99 ${r.p99} ms (n=${n})`);
      return r;
    };
    // Philips XTC: series folder 0001 with Dump-NNNN.par then .rec (the REC completes the pair)
    const xtcDir = join(root, 'xtc');
    const series = join(xtcDir, '0001');
    mkdirSync(series, { recursive: true });
    const xtc = await path(
      'xtc',
      (url) => new ScannerBridge({ dir: xtcDir, layout: 'series-folders', url, task: 'xtc' }),
      async (i, data) => {
        const stem = join(series, `Dump-${String(i).padStart(4, '0')}`);
        writeFileSync(`${stem}.par`, xtcPar(dims, i, 2000), 'latin1');
        const fd = openSync(`${stem}.rec`, 'w');
        writeSync(fd, new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
        closeSync(fd);
      },
      async () => {},
    );
    // MRD: one connection, a 3-D image per volume; AFNI: control + data channel, 3D+t volumes
    const listening = (make: (h: SourceHandlers, onPort: (p: number) => void) => VolumeSource) => {
      let port = 0;
      return {
        port: () => port,
        source: (h: SourceHandlers) =>
          make(h, (p) => {
            port = p;
          }),
      };
    };
    let sock: Socket | undefined;
    const mrdL = listening((h, onListening) => new MrdListener({ ...h, host: '127.0.0.1', port: 0, onListening }));
    const mrd = await path(
      'mrd',
      (url) => new ScannerBridge({ source: mrdL.source, url, task: 'mrd' }),
      async (i, data) => {
        sock!.write(mrdImageMessage(dims, i, data));
      },
      async () => {
        sock?.end(Buffer.from([4, 0]));
        sock = undefined;
      },
      async () => {
        while (!mrdL.port()) await sleep(5);
        sock = await connectWithRetry(mrdL.port());
        sock.write(mrdHeaderMessage('bench-1', 2000, dims[2]));
      },
    );
    const afniL = listening((h, onListening) => new AfniListener({ ...h, host: '127.0.0.1', port: 0, onListening }));
    const afni = await path(
      'afni',
      (url) => new ScannerBridge({ source: afniL.source, url, task: 'afni' }),
      async (_i, data) => {
        sock!.write(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
      },
      async () => {},
      async () => {
        while (!afniL.port()) await sleep(5);
        const dataPort = await freePort();
        const control = await connectWithRetry(afniL.port());
        control.end(Buffer.from(`tcp:127.0.0.1:${dataPort}\0`, 'latin1'));
        sock = await connectWithRetry(dataPort);
        sock.write(afniHeader(dims, 2));
      },
    );
    sock?.end();
    const byPath = { nifti: small, parrec_xtc: xtc, mrd, afni };

    const rv = o.replayVolumes ?? 200;
    const func = join(root, 'bids', 'sub-bench', 'ses-01', 'func');
    mkdirSync(func, { recursive: true });
    const vols = Array.from({ length: rv }, (_, i) => volumeData(dims, i, false) as Int16Array);
    writeFileSync(
      join(func, 'sub-bench_ses-01_task-replay_run-01_bold.nii.gz'),
      gzipSync(encodeNifti1Series({ dims, affine: AFFINE, tr: 2, volumes: vols }), { level: 1 }),
    );
    writeFileSync(join(func, 'sub-bench_ses-01_task-replay_run-01_bold.json'), JSON.stringify({ RepetitionTime: 2 }));
    const rep = await replaySession({ session: join(root, 'bids'), url: srv.url, speed: 'max' });
    log(`replay ${rv} × ${dims.join('×')} int16 at max speed: ${rep.volumesPerSecond.toFixed(1)} volumes/s`);
    rss = Math.max(rss, process.memoryUsage().rss);
    return {
      file_to_accept_ms: { small, large, by_path: byPath },
      replay_volumes_per_s: Math.round(rep.volumesPerSecond * 10) / 10,
      replay: { volumes: rep.volumes, dims, seconds: Math.round(rep.seconds * 1000) / 1000 },
      rss_mb: Math.round(rss / 1024 / 1024),
      recording: !!o.record,
    };
  } finally {
    clearInterval(rssTimer);
    await srv.close();
    rmSync(root, { recursive: true, force: true });
  }
}
