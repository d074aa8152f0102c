// Soak: a simulated 8-hour scan session through a real `serve` child process, to show that nothing grows with time.
// 18 000 volumes at TR 1.6 s (small volumes: the point is the count, not the size) with a stimulus event every 8 s
// (3600 trials, each with an inline stimulus image), replayed at --speed max by a `replay` child, recorded with
// --record, decoded when --models names a bundle, watched by a dashboard viewer from the start, and joined by a late
// viewer at the end. Reports the server's RSS over time, the late joiner's snapshot size, and whether every volume
// was recorded exactly (voxel for voxel, in order, none missing). Not a CI test: it takes minutes and a CPU.
//
//   node dist/src/bench/soak.js [--volumes 18000] [--tr 1.6] [--models DIR] [--keep]
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import sharp from 'sharp';
import { io as connect } from 'socket.io-client';
import { decodeNifti, encodeNifti1Series } from '../scanner/nifti.js';
import { runPaths } from '../server/recording.js';
import { boolFlag, numberFlag, parseArgs, stringFlag } from '../cli/args.js';
import { UserError } from '../core/errors.js';
import type { DashSnapshot } from '../sinks/dashboard/dashboard-state.js';

const BIN = fileURLToPath(new URL('../../../bin/mindsemantix.mjs', import.meta.url));

interface Args {
  volumes: number;
  tr: number;
  models?: string;
  keep: boolean;
  trialEvery: number;
}

function soakArgs(argv: string[]): Args {
  const p = parseArgs(
    'soak',
    argv,
    {
      volumes: { type: 'string', default: '18000' },
      tr: { type: 'string', default: '1.6' },
      models: { type: 'string' },
      keep: { type: 'boolean' },
    },
    'the options are --volumes N, --tr S, --models DIR and --keep',
  );
  return {
    volumes: numberFlag('soak', p, 'volumes', { integer: true, min: 1, max: 32767 })!, // one run: the series' volume count is int16
    tr: numberFlag('soak', p, 'tr', { min: 0.1 })!,
    models: stringFlag(p, 'models'),
    keep: boolFlag(p, 'keep'),
    trialEvery: 8,
  };
}

/** The session's volumes: 8×8×8 int16 (the tiny bundle's mask grid), a smooth anatomy plus noise. */
function volumes(n: number): Int16Array[] {
  let s = 12345;
  const rand = () => {
    s = (Math.imul(s ^ (s >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) >>> 0;
    return s / 4294967296;
  };
  const out: Int16Array[] = [];
  for (let v = 0; v < n; v++) {
    const a = new Int16Array(512);
    for (let i = 0; i < 512; i++) a[i] = 600 + (i % 64) * 3 + Math.round(20 * rand());
    out.push(a);
  }
  return out;
}

async function writeSession(dir: string, a: Args, vols: Int16Array[]): Promise<{ bold: string; trials: number }> {
  const info = { subject: 'sim01', session: '01', run: 'task-vision_run-01', task: 'vision' };
  const func = join(dir, `sub-${info.subject}`, `ses-${info.session}`, 'func');
  mkdirSync(func, { recursive: true });
  mkdirSync(join(dir, 'stimuli'));
  writeFileSync(join(dir, 'dataset_description.json'), JSON.stringify({ Name: 'soak', BIDSVersion: '1.9.0' }));
  const stem = join(func, `sub-${info.subject}_ses-${info.session}_${info.run}`);
  const nii = encodeNifti1Series({
    dims: [8, 8, 8],
    affine: [3, 0, 0, 0, 0, 3, 0, 0, 0, 0, 3, 0, 0, 0, 0, 1],
    tr: a.tr,
    volumes: vols,
  });
  writeFileSync(`${stem}_bold.nii.gz`, gzipSync(nii, { level: 1 }));
  writeFileSync(
    `${stem}_bold.json`,
    JSON.stringify({
      RepetitionTime: a.tr,
      TaskName: info.task,
      AcquisitionTimes: vols.map((_, i) => Number((i * a.tr).toFixed(3))),
    }),
  );
  for (let k = 0; k < 20; k++) {
    await sharp({ create: { width: 96, height: 96, channels: 3, background: { r: 10 * k, g: 255 - 10 * k, b: 128 } } })
      .png()
      .toFile(join(dir, 'stimuli', `stim-${k}.png`));
  }
  const seconds = vols.length * a.tr;
  const rows: string[] = [];
  for (let t = 4, k = 0; t < seconds - 12; t += a.trialEvery, k++) {
    rows.push(
      [
        t.toFixed(3),
        '3.000',
        'stimulus',
        `stim-${k % 20}`,
        JSON.stringify([`a picture number ${k % 20}`, `stimulus ${k % 20}`]),
        `stimuli/stim-${k % 20}.png`,
      ].join('\t'),
    );
  }
  writeFileSync(
    `${stem}_events.tsv`,
    ['onset\tduration\ttrial_type\tstimulus_id\treferences\tstim_file', ...rows].join('\n') + '\n',
  );
  return { bold: `${stem}_bold.nii.gz`, trials: rows.length };
}

function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

function startServe(
  port: number,
  rec: string,
  models?: string,
): Promise<{ child: ChildProcess; stderr: () => string }> {
  const args = [BIN, 'serve', '--port', String(port), '--record', rec, ...(models ? ['--models', models] : [])];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (d) => {
    err += d;
    if (err.length > 4_000_000) err = err.slice(-1_000_000);
  });
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`serve did not start: ${err.slice(-2000)}`)), 120_000);
    child.stderr!.on('data', () => {
      if (err.includes('ready at')) {
        clearTimeout(t);
        resolve({ child, stderr: () => err });
      }
    });
    child.once('exit', (code) => {
      clearTimeout(t);
      reject(new Error(`serve exited with ${code}: ${err.slice(-2000)}`));
    });
  });
}

async function healthz(port: number): Promise<{
  volumesAccepted: number;
  gaps: number;
  memory: { rssMb: number; heapUsedMb: number; externalMb: number };
}> {
  const r = await fetch(`http://127.0.0.1:${port}/healthz`);
  return (await r.json()) as {
    volumesAccepted: number;
    gaps: number;
    memory: { rssMb: number; heapUsedMb: number; externalMb: number };
  };
}

function lateJoiner(port: number): Promise<{ snap: DashSnapshot; bytes: number; ms: number }> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const s = connect(`http://127.0.0.1:${port}`, { transports: ['websocket'], reconnection: false });
    s.on('snapshot', (snap: DashSnapshot) => {
      s.close();
      resolve({ snap, bytes: Buffer.byteLength(JSON.stringify(snap)), ms: performance.now() - t0 });
    });
    s.on('connect_error', (e) => {
      s.close();
      reject(e);
    });
  });
}

async function main(): Promise<void> {
  const a = soakArgs(process.argv.slice(2));
  const work = mkdtempSync(join(tmpdir(), 'msx-soak-'));
  const say = (m: string) => process.stderr.write(`soak: ${m}\n`);
  try {
    const vols = volumes(a.volumes);
    const session = await writeSession(join(work, 'session'), a, vols);
    say(
      `session: ${a.volumes} volumes 8×8×8 int16 at TR ${a.tr} s (${((a.volumes * a.tr) / 3600).toFixed(2)} h), ${session.trials} trials with images`,
    );
    const port = 20000 + Math.floor(Math.random() * 20000);
    const rec = join(work, 'record');
    const serve = await startServe(port, rec, a.models);
    const pid = serve.child.pid!;
    // The dashboard, open from the start: receives every live update.
    let updates = 0;
    const viewer = connect(`http://127.0.0.1:${port}`, { transports: ['websocket'] });
    viewer.onAny(() => {
      updates++;
    });
    await new Promise((r) => setTimeout(r, 2000));
    const samples: { t: number; rss: number; heap: number; accepted: number }[] = [];
    const t0 = performance.now();
    const sample = async () => {
      const h = await healthz(port);
      samples.push({
        t: (performance.now() - t0) / 1000,
        rss: rssMb(pid),
        heap: h.memory.heapUsedMb,
        accepted: h.volumesAccepted,
      });
    };
    await sample();
    const timer = setInterval(() => {
      void sample();
    }, 2000);
    const replay = spawn(
      process.execPath,
      [BIN, 'replay', join(work, 'session'), '--server', `ws://127.0.0.1:${port}/bridge`, '--speed', 'max'],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let replayErr = '';
    replay.stderr!.on('data', (d) => {
      replayErr += d;
      if (replayErr.length > 1_000_000) replayErr = replayErr.slice(-100_000);
    });
    const code = await new Promise<number | null>((r) => replay.once('exit', r));
    const replaySeconds = (performance.now() - t0) / 1000;
    say(`replay exited with ${code} after ${replaySeconds.toFixed(1)} s`);
    // Let decoding drain (if any), then the late joiner.
    let lastUpdates = -1;
    for (let i = 0; i < 600 && updates !== lastUpdates; i++) {
      lastUpdates = updates;
      await new Promise((r) => setTimeout(r, 2000));
    }
    clearInterval(timer);
    await sample();
    const late = await lateJoiner(port);
    const health = await healthz(port);
    viewer.close();
    serve.child.kill('SIGINT');
    await new Promise((r) => serve.child.once('exit', r));

    // Every volume recorded exactly: the recording's voxels equal the session's, in order, none missing.
    const p = runPaths(rec, 'sim01', '01', 'task-vision_run-01');
    const img = decodeNifti(new Uint8Array(readFileSync(p.bold)), { maxBytes: 2 ** 31 });
    const side = JSON.parse(readFileSync(p.json, 'utf8')) as { AcquisitionTimes: number[]; MissingVolumes: number[] };
    let mismatched = 0;
    for (let v = 0; v < Math.min(a.volumes, img.dims[3] ?? 1); v++) {
      for (let i = 0; i < 512; i++)
        if (img.data[v * 512 + i] !== vols[v][i]) {
          mismatched++;
          break;
        }
    }
    const rows = readFileSync(p.events, 'utf8').trim().split('\n').length - 1;
    const rss = samples.map((s) => s.rss);
    const report = {
      volumes: a.volumes,
      tr: a.tr,
      hours: (a.volumes * a.tr) / 3600,
      trials: session.trials,
      decoding: a.models ?? 'off (no --models)',
      replay: { exit: code, seconds: replaySeconds, volumes_per_s: a.volumes / replaySeconds },
      server_rss_mb: {
        start: rss[0],
        after_first_quarter: samples.find((s) => s.accepted >= a.volumes / 4)?.rss,
        peak: Math.max(...rss),
        end: rss[rss.length - 1],
      },
      // heapUsed is sampled without forcing a collection: compare the lows, not single samples.
      server_heap_used_mb: {
        start: samples[0].heap,
        min_second_half: Math.min(...samples.filter((s) => s.accepted >= a.volumes / 2).map((s) => s.heap)),
        peak: Math.max(...samples.map((s) => s.heap)),
        end: samples[samples.length - 1].heap,
      },
      samples: samples
        .filter((_, i) => i % Math.max(1, Math.floor(samples.length / 12)) === 0)
        .map((s) => `${s.t.toFixed(0)} s: rss ${s.rss.toFixed(0)} MB, heap ${s.heap} MB, ${s.accepted} volumes`),
      late_joiner: {
        snapshot_bytes: late.bytes,
        ms: Math.round(late.ms),
        trials: late.snap.trials.length,
        with_images: late.snap.trials.filter((t) => t.stimulusImage || t.reconstruction?.image).length,
        captions: late.snap.trials.filter((t) => t.caption).length,
        volumes: late.snap.volumes.length,
        alerts: late.snap.alerts.length,
      },
      live_updates_received: updates,
      recording: {
        volumes: img.dims[3] ?? 1,
        acquisition_times: side.AcquisitionTimes.length,
        missing: side.MissingVolumes.length,
        mismatched_volumes: mismatched,
        event_rows: rows,
        exact:
          (img.dims[3] ?? 1) === a.volumes &&
          mismatched === 0 &&
          side.MissingVolumes.length === 0 &&
          side.AcquisitionTimes.length === a.volumes,
      },
      server: health,
      loadavg: loadavg().map((x) => Number(x.toFixed(2))),
    };
    process.stdout.write(JSON.stringify(report, null, 1) + '\n');
    if (!report.recording.exact) process.exitCode = 1;
  } finally {
    if (!a.keep) rmSync(work, { recursive: true, force: true });
    else say(`kept ${work}`);
  }
}

try {
  await main();
} catch (err) {
  if (!(err instanceof UserError)) throw err;
  process.stderr.write(`${err.message}\n`);
  process.exitCode = err.exitCode;
}
