// onnxruntime-node sessions with an execution-provider choice that degrades to CPU with a log line naming the
// provider actually in use (the npm package ships CPU and WebGPU; CUDA needs libraries it does not ship).
import { availableParallelism } from 'node:os';
import * as ort from 'onnxruntime-node';

export type Device = 'cpu' | 'webgpu' | 'cuda';
export const DEVICES: readonly Device[] = ['cpu', 'webgpu', 'cuda'];

export interface SessionFactory {
  /** The provider every session of this factory uses. */
  readonly provider: Device;
  create(path: string): Promise<ort.InferenceSession>;
}

export interface SessionOptions {
  device?: Device;
  /** Intra-op threads per session (default min(2, cores): decode steps are small, more threads mostly add sync cost). */
  threads?: number;
  log?: (line: string) => void;
}

function baseOptions(threads?: number): ort.InferenceSession.SessionOptions {
  // Spinning worker threads burn cores that the per-volume path and other processes need; decode steps are short.
  return {
    graphOptimizationLevel: 'all',
    intraOpNumThreads: threads ?? Math.min(2, availableParallelism()),
    interOpNumThreads: 1,
    executionMode: 'sequential',
    extra: { session: { intra_op: { allow_spinning: '0' }, inter_op: { allow_spinning: '0' } } },
  };
}

/**
 * Picks the execution provider by creating the first session with it; if the provider is not in this build or fails
 * to initialise, logs one line and continues on CPU. `probePath` is a small model of the bundle.
 */
export async function createSessionFactory(probePath: string, opts: SessionOptions = {}): Promise<SessionFactory> {
  const log = opts.log ?? ((l: string) => process.stderr.write(`${l}\n`));
  const wanted = opts.device ?? 'cpu';
  let provider: Device = 'cpu';
  if (wanted !== 'cpu') {
    const backend = ort.listSupportedBackends().find((b) => b.name === wanted);
    if (!backend || !backend.bundled) {
      log(
        `inference: --device ${wanted} is not available in this onnxruntime-node build (no ${wanted} provider libraries); using the cpu execution provider.`,
      );
    } else {
      try {
        const s = await ort.InferenceSession.create(probePath, {
          ...baseOptions(opts.threads),
          executionProviders: [wanted],
        });
        await s.release();
        provider = wanted;
      } catch (e) {
        log(`inference: --device ${wanted} failed to start (${firstLine(e)}); using the cpu execution provider.`);
      }
    }
  }
  log(`inference: execution provider ${provider}`);
  const options: ort.InferenceSession.SessionOptions = { ...baseOptions(opts.threads), executionProviders: [provider] };
  return {
    provider,
    create: (path) => ort.InferenceSession.create(path, options),
  };
}

function firstLine(e: unknown): string {
  return String((e as Error)?.message ?? e)
    .split('\n')[0]
    .slice(0, 200);
}
