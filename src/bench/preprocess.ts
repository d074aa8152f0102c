// Benchmark of the streaming preprocessing chain (motion correction + mask + detrend + z-score) per volume on a
// synthetic EPI-like phantom at NSD size (81×104×83, ~15k-voxel ROI) and at 64×64×40, plus the same steps done
// the straightforward way in numpy/scipy (models/mindsemantix/baselines/preprocess.py) for `baseline_ratio`.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Subject } from 'rxjs';
import type { StimulusEvent, Volume } from '../core/types.js';
import { createPreprocessor, parsePreprocessConfig, type VolumeTiming } from '../../streams/index.js';
import { MotionCorrector } from '../../streams/motionCorrect.js';
import { invertRigid, matrixToParams, paramsToMatrix, type MotionParams } from '../../streams/rigid.js';

/** Deterministic PRNG (mulberry32) and a standard normal from it. */
export function rng(seed: number): { uniform: () => number; normal: () => number } {
  let a = seed >>> 0;
  const uniform = (): number => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const normal = (): number => Math.sqrt(-2 * Math.log(uniform() + 1e-300)) * Math.cos(2 * Math.PI * uniform());
  return { uniform, normal };
}

export interface Phantom {
  dims: [number, number, number];
  voxelSize: [number, number, number];
  affine: number[];
  /** Motion-free template (x fastest). */
  template: Float32Array;
  /** ROI mask (1 in ~roiVoxels voxels near the occipital pole of the ellipsoid). */
  mask: Uint8Array;
}

/** A smooth EPI-like head: ellipsoid with blob texture, darker ventricles; ROI = the voxels nearest the back. */
export function makePhantom(
  dims: [number, number, number],
  voxelSize: [number, number, number],
  roiVoxels: number,
  seed = 1,
): Phantom {
  const [nx, ny, nz] = dims;
  const r = rng(seed);
  const n = nx * ny * nz;
  const template = new Float32Array(n);
  const blobs = Array.from({ length: 60 }, () => ({
    x: (r.uniform() - 0.5) * 0.7 * nx,
    y: (r.uniform() - 0.5) * 0.7 * ny,
    z: (r.uniform() - 0.5) * 0.7 * nz,
    s: 1.5 + 3 * r.uniform(),
    a: (r.uniform() - 0.4) * 250,
  }));
  const brain: number[] = [];
  const dist: number[] = [];
  for (let k = 0; k < nz; k++) {
    for (let j = 0; j < ny; j++) {
      for (let i = 0; i < nx; i++) {
        const x = i - (nx - 1) / 2,
          y = j - (ny - 1) / 2,
          z = k - (nz - 1) / 2;
        const e = (x / (0.42 * nx)) ** 2 + (y / (0.44 * ny)) ** 2 + (z / (0.42 * nz)) ** 2;
        let v = 40 + 960 / (1 + Math.exp((e - 1) * 25));
        if ((x / (0.1 * nx)) ** 2 + (y / (0.15 * ny)) ** 2 + (z / (0.12 * nz)) ** 2 < 1) v *= 0.4;
        if (e < 1)
          for (const b of blobs)
            v += b.a * Math.exp(-((x - b.x) ** 2 + (y - b.y) ** 2 + (z - b.z) ** 2) / (2 * b.s * b.s));
        const o = i + j * nx + k * nx * ny;
        template[o] = v;
        if (e < 0.8) {
          brain.push(o);
          dist.push((y + 0.4 * ny) ** 2 + x * x + z * z);
        }
      }
    }
  }
  const order = brain.map((_, i) => i).sort((p, q) => dist[p] - dist[q]);
  const mask = new Uint8Array(n);
  for (let i = 0; i < Math.min(roiVoxels, order.length); i++) mask[brain[order[i]]] = 1;
  const affine = [voxelSize[0], 0, 0, 0, 0, voxelSize[1], 0, 0, 0, 0, voxelSize[2], 0, 0, 0, 0, 1];
  return { dims, voxelSize, affine, template, mask };
}

/**
 * Volume t of a synthetic run: the template moved by params (head motion), with slow drift, a task signal in the
 * ROI and thermal noise. Writes into out.
 */
export function phantomVolume(
  ph: Phantom,
  mc: MotionCorrector,
  params: MotionParams,
  t: number,
  noise: { normal: () => number },
  out: Float32Array,
  tmp: Float32Array,
): Float32Array {
  // moved(y) = template(T⁻¹ y): resampling with the inverse parameters' matrix.
  mc.resample(ph.template, inverseParams(params), tmp);
  const drift = 1 + 0.01 * Math.sin(t / 50) + 0.0001 * t;
  const task = 1 + 0.01 * Math.sin((2 * Math.PI * t) / 12);
  for (let i = 0; i < out.length; i++) out[i] = tmp[i] * drift * (ph.mask[i] ? task : 1) + 5 * noise.normal();
  return out;
}

/** Parameters of the inverse rigid transform. */
export function inverseParams(p: ArrayLike<number>): MotionParams {
  return matrixToParams(invertRigid(paramsToMatrix(p)));
}

function percentile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))];
}

export interface BenchSize {
  /** Wall ms per volume, received → z-scored. */
  p50: number;
  p99: number;
  mean: number;
  /** CPU ms per volume of this process (what the chain costs when the machine is not shared). */
  cpu_p50: number;
  cpu_p99: number;
  dims: [number, number, number];
  roi_voxels: number;
  volumes: number;
}
export interface PreprocessBench {
  nsd: BenchSize;
  small: BenchSize;
  /** numpy/scipy per-volume p50 ÷ this chain's per-volume p50 at NSD size (how many times faster). */
  baseline_ratio: number | null;
  baseline: {
    p50: number;
    volumes: number;
    dims: [number, number, number];
    steps_ms?: Record<string, number | null>;
  } | null;
  baseline_error?: string;
  /** 1-minute load average and core count while the benchmark ran (the machine may be shared). */
  load: { before: number; after: number; cores: number };
}

async function benchOne(
  dims: [number, number, number],
  vox: [number, number, number],
  roi: number,
  warmup: number,
  timed: number,
  keep: number,
): Promise<{ ms: number[]; cpu: number[]; ph: Phantom; kept: Float32Array[]; keptParams: MotionParams[] }> {
  const ph = makePhantom(dims, vox, roi);
  const cfg = parsePreprocessConfig({ tr: 1.6, discard_volumes: 0, subject: 'bench' });
  const pre = createPreprocessor(cfg, { dims, data: ph.mask, affine: ph.affine });
  const vols = new Subject<Volume>();
  const events = new Subject<StimulusEvent>();
  const out = pre.attach(vols, events);
  const ms: number[] = [],
    cpu: number[] = [];
  let seen = 0;
  out.timing$.subscribe((t) => {
    if (t.kind === 'volume' && seen++ >= warmup) ms.push((t as VolumeTiming).totalMs);
  });
  const sub = out.connect();
  const mc = new MotionCorrector(dims, vox, { interpolation: 'trilinear' });
  const noise = rng(7);
  const n = dims[0] * dims[1] * dims[2];
  const tmp = new Float32Array(n);
  const p: MotionParams = [0, 0, 0, 0, 0, 0];
  const kept: Float32Array[] = [];
  const keptParams: MotionParams[] = [];
  for (let t = 0; t < warmup + timed; t++) {
    for (let i = 0; i < 6; i++) p[i] += 0.03 * noise.normal();
    const data = phantomVolume(ph, mc, p, t, noise, new Float32Array(n), tmp);
    if (t < keep) {
      kept.push(data);
      keptParams.push([...p]);
    }
    const c0 = process.cpuUsage();
    vols.next({
      run: 'bench',
      index: t,
      dims,
      affine: ph.affine,
      tr: 1.6,
      acquisitionTime: t * 1.6,
      data,
      times: { received: performance.timeOrigin + performance.now() },
    });
    const c = process.cpuUsage(c0);
    if (t >= warmup) cpu.push((c.user + c.system) / 1000);
    // Let timers/GC breathe between volumes as they would between TRs.
    if (t % 10 === 9) await new Promise((r) => setImmediate(r));
  }
  vols.complete();
  sub.unsubscribe();
  return { ms, cpu, ph, kept, keptParams };
}

function size(r: { ms: number[]; cpu: number[] }, dims: [number, number, number], roi: number): BenchSize {
  const ms = r.ms;
  return {
    p50: +percentile(ms, 0.5).toFixed(2),
    p99: +percentile(ms, 0.99).toFixed(2),
    cpu_p50: +percentile(r.cpu, 0.5).toFixed(2),
    cpu_p99: +percentile(r.cpu, 0.99).toFixed(2),
    mean: +(ms.reduce((a, b) => a + b, 0) / ms.length).toFixed(2),
    dims,
    roi_voxels: roi,
    volumes: ms.length,
  };
}

export async function benchPreprocess(
  opts: { volumes?: number; warmup?: number; baselineVolumes?: number; python?: string } = {},
): Promise<PreprocessBench> {
  const timed = opts.volumes ?? 100,
    warmup = opts.warmup ?? 20,
    bVols = opts.baselineVolumes ?? 2;
  const loadBefore = loadavg()[0];
  const nsdDims: [number, number, number] = [81, 104, 83];
  const nsd = await benchOne(nsdDims, [1.8, 1.8, 1.8], 15000, warmup, timed, warmup + bVols);
  const roiCount = nsd.ph.mask.reduce((a, b) => a + b, 0);
  const small = await benchOne([64, 64, 40], [3, 3, 3], 5000, warmup, timed, 0);
  const smallRoi = small.ph.mask.reduce((a, b) => a + b, 0);
  const res: PreprocessBench = {
    nsd: size(nsd, nsdDims, roiCount),
    small: size(small, [64, 64, 40], smallRoi),
    baseline_ratio: null,
    baseline: null,
    load: { before: loadBefore, after: loadavg()[0], cores: cpus().length },
  };
  // Baseline: the same volumes (the first `warmup` give it the same history), timed on the last bVols.
  const dir = mkdtempSync(join(tmpdir(), 'msx-bench-'));
  try {
    const n = nsdDims[0] * nsdDims[1] * nsdDims[2];
    const all = new Float32Array(nsd.kept.length * n);
    nsd.kept.forEach((v, i) => all.set(v, i * n));
    writeFileSync(join(dir, 'volumes.f32'), Buffer.from(all.buffer));
    writeFileSync(join(dir, 'mask.u8'), Buffer.from(nsd.ph.mask.buffer));
    writeFileSync(
      join(dir, 'meta.json'),
      JSON.stringify({ dims: nsdDims, vox: [1.8, 1.8, 1.8], tr: 1.6, volumes: nsd.kept.length, timed: bVols }),
    );
    const py = opts.python ?? join(process.cwd(), '.venv', 'bin', 'python');
    if (bVols <= 0) return res;
    const r = spawnSync(py, ['-m', 'mindsemantix.baselines.preprocess', '--dir', dir], {
      encoding: 'utf8',
      timeout: 600_000,
    });
    if (r.status !== 0) {
      res.baseline_error = `numpy baseline failed: ${(r.stderr || r.error?.message || '').trim().split('\n').pop()}`;
    } else {
      const b = JSON.parse(readFileSync(join(dir, 'result.json'), 'utf8')) as {
        ms: number[];
        steps_ms?: Record<string, number | null>;
      };
      const p50 = percentile(b.ms, 0.5);
      res.baseline = { p50: +p50.toFixed(1), volumes: b.ms.length, dims: nsdDims, steps_ms: b.steps_ms };
      res.baseline_ratio = +(p50 / res.nsd.p50).toFixed(1);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return res;
}
