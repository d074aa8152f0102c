// Decode benchmark: per-trial latency (TrialResponse ready → caption emitted, reconstruction included) on the bundle,
// for captions capped at 20 tokens, over z-scored-like random responses; and the demo replay at --speed max with every
// stage on (ingest over WebSocket, preprocessing, decoding, reconstruction, dashboard, live metrics) as × real time.
import { existsSync } from 'node:fs';
import type { TrialResponse } from '../core/types.js';
import { BrainDecoder, type LmPrecision } from '../inference/decoder.js';
import { RidgeRetrieval } from '../inference/baseline.js';
import { DEFAULT_RERANK, rerankOptions, type RerankSetting } from '../inference/rerankSetting.js';
import type { Device } from '../inference/sessions.js';
import { runSessionThroughServe } from '../app/session.js';
import { percentile } from '../pipeline/summary.js';

export interface DecodeBenchOptions {
  models?: string;
  /** Session replayed for the real-time factor (default data/demo); skipped when missing. */
  session?: string;
  device?: Device;
  threads?: number;
  /** LM graph: 'auto' (the bundle's int8 graph when it has one), 'fp32' or 'int8'. */
  lmPrecision?: LmPrecision;
  /** Run the int8 LM as its decode-step graph when the bundle has it (default true, as serve does). */
  lmStepGraph?: boolean;
  trials?: number;
  warmup?: number;
  maxNewTokens?: number;
  /** Replay the session too (default true). */
  replay?: boolean;
  /** How the caption is chosen among the LM's candidates (default: what serve does, DEFAULT_RERANK). */
  rerank?: RerankSetting;
  log?: (line: string) => void;
}

export interface DecodeBench {
  decode_ms: {
    p50: number;
    p99: number;
    mean: number;
    trials: number;
    max_new_tokens: number;
    mean_tokens: number;
    provider: string;
    /** The LM graph that ran (lm/decoder.onnx = fp32, lm/decoder.int8.onnx = 8-bit weights) — the figures depend on it. */
    lm: string;
    /** The caption choice timed (candidates 1 = greedy alone). */
    rerank: RerankSetting;
  };
  /**
   * Trial ready → caption, the reconstruction left out: what a viewer waits for, since serve emits each caption before
   * it reconstructs (src/pipeline/pipeline.ts). decode_ms minus recon_ms, trial by trial.
   */
  caption_ms: { p50: number; p99: number };
  /** Reconstruction alone (generator graph + WebP encoding at 128 px) per trial, inside decode_ms; null without a generator. */
  recon_ms: { p50: number; p99: number; trials: number; generator: string } | null;
  /** Acquired seconds ÷ wall seconds for the whole replay (null when no session was available). */
  replay_realtime_factor: number | null;
  replay?: { session: string; volumes: number; trials: number; wall_s: number; decode_p50: number; volume_p50: number };
}

function normalVector(n: number, seed: number): Float32Array {
  let a = seed >>> 0;
  const u = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return Float32Array.from({ length: n }, () => Math.sqrt(-2 * Math.log(u() + 1e-12)) * Math.cos(2 * Math.PI * u()));
}

export async function benchDecode(opts: DecodeBenchOptions = {}): Promise<DecodeBench> {
  const log = opts.log ?? (() => {});
  const maxNew = opts.maxNewTokens ?? 20;
  const decoder = await BrainDecoder.load(opts.models ?? 'models/bundles/default', {
    device: opts.device,
    threads: opts.threads,
    log,
    generation: { max_new_tokens: maxNew },
    lmPrecision: opts.lmPrecision,
    lmStepGraph: opts.lmStepGraph,
  });
  const baseline = await RidgeRetrieval.load(decoder.bundle, decoder.sessions);
  const setting = opts.rerank ?? DEFAULT_RERANK;
  const rerank = rerankOptions(setting, baseline);
  try {
    const subject = decoder.subjects[0];
    const V = decoder.bundle.manifest.subjects[subject].voxels;
    const n = opts.trials ?? 20;
    const times: number[] = [];
    const captionTimes: number[] = [];
    const recon: number[] = [];
    let tokens = 0;
    for (let i = -(opts.warmup ?? 2); i < n; i++) {
      const trial: TrialResponse = {
        run: 'bench',
        subject,
        trial: i,
        stimulusId: `bench-${i}`,
        vector: normalVector(V, 1000 + i),
        method: 'window-mean',
        window: { start: 4, end: 8 },
        volumes: [],
        flags: [],
        readyAt: Date.now(),
        event: { run: 'bench', trial: i, onset: 0, duration: 3, stimulusId: `bench-${i}` },
      };
      const t0 = performance.now();
      const c = await decoder.decode(trial, { imageFormat: 'webp', imageWidth: 128, ...(rerank ? { rerank } : {}) });
      if (i >= 0) {
        const ms = performance.now() - t0;
        times.push(ms);
        captionTimes.push(ms - (c.latencyMs.reconstruction ?? 0));
        tokens += c.tokens.length;
        if (c.latencyMs.reconstruction !== undefined) recon.push(c.latencyMs.reconstruction);
      }
    }
    const decode_ms = {
      p50: percentile(times, 50),
      p99: percentile(times, 99),
      mean: times.reduce((a, b) => a + b, 0) / times.length,
      trials: n,
      max_new_tokens: maxNew,
      mean_tokens: tokens / n,
      provider: decoder.provider,
      lm: decoder.lmFile,
      rerank: setting,
    };
    const caption_ms = { p50: percentile(captionTimes, 50), p99: percentile(captionTimes, 99) };
    log(
      `bench: caption (what serve shows before the image) p50 ${caption_ms.p50.toFixed(1)} ms, p99 ${caption_ms.p99.toFixed(1)} ms`,
    );
    log(
      `bench: decode p50 ${decode_ms.p50.toFixed(1)} ms, p99 ${decode_ms.p99.toFixed(1)} ms (${decode_ms.mean_tokens.toFixed(1)} tokens/caption, ${decoder.provider}, ${decoder.lmFile})`,
    );
    const recon_ms = recon.length
      ? {
          p50: percentile(recon, 50),
          p99: percentile(recon, 99),
          trials: recon.length,
          generator: decoder.generatorFile ?? '',
        }
      : null;
    if (recon_ms)
      log(
        `bench: reconstruction p50 ${recon_ms.p50.toFixed(1)} ms, p99 ${recon_ms.p99.toFixed(1)} ms (${recon_ms.generator})`,
      );
    const session = opts.session ?? 'data/demo';
    if (opts.replay === false || !existsSync(session)) {
      if (opts.replay !== false)
        log(
          `bench: no session at ${session}; replay_realtime_factor not measured (run \`npm start\` once to simulate it).`,
        );
      return { decode_ms, caption_ms, recon_ms, replay_realtime_factor: null };
    }
    const run = await runSessionThroughServe({
      session,
      decoder,
      baseline,
      speed: 'max',
      decode: rerank ? { rerank } : {},
      log: (level, m) => {
        if (level !== 'info') log(m);
      },
    });
    await run.close();
    const st = run.stats;
    const factor = run.wallSeconds > 0 ? run.acquiredSeconds / run.wallSeconds : 0;
    log(
      `bench: replay of ${session} at --speed max: ${run.acquiredSeconds.toFixed(0)} s of scanning in ${run.wallSeconds.toFixed(1)} s = ${factor.toFixed(1)}× real time`,
    );
    return {
      decode_ms,
      caption_ms,
      recon_ms,
      replay_realtime_factor: factor,
      replay: {
        session,
        volumes: st.volumesReceived,
        trials: st.trialsDecoded,
        wall_s: run.wallSeconds,
        decode_p50: percentile(st.decodeMs, 50),
        volume_p50: percentile(st.volumeMs, 50),
      },
    };
  } finally {
    await baseline?.release();
    await decoder.release();
  }
}
