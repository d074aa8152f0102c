// Per-voxel z-scoring with Welford running statistics (population SD), either over everything seen so far
// ('running') or frozen after the first `baselineVolumes` samples ('baseline'). Constant voxels give 0, never NaN.

export interface ZScoreOptions {
  mode: 'running' | 'baseline';
  baselineVolumes: number;
}

export const DEFAULT_ZSCORE_OPTIONS: ZScoreOptions = { mode: 'running', baselineVolumes: 20 };

export class RunningZScore {
  readonly nVox: number;
  readonly opts: ZScoreOptions;
  private n = 0;
  private readonly mean: Float64Array;
  private readonly m2: Float64Array;

  constructor(nVox: number, opts: Partial<ZScoreOptions> = {}) {
    this.nVox = nVox;
    this.opts = { ...DEFAULT_ZSCORE_OPTIONS, ...opts };
    this.mean = new Float64Array(nVox);
    this.m2 = new Float64Array(nVox);
  }

  get count(): number {
    return this.n;
  }

  /** True once the statistics stop changing (baseline mode after the baseline window). */
  get frozen(): boolean {
    return this.opts.mode === 'baseline' && this.n >= this.opts.baselineVolumes;
  }

  /** Updates the statistics with x (unless frozen) and writes (x − mean)/sd into out. */
  push(x: Float32Array, out: Float32Array): void {
    const V = this.nVox,
      mean = this.mean,
      m2 = this.m2;
    if (!this.frozen) {
      this.n++;
      const inv = 1 / this.n;
      for (let v = 0; v < V; v++) {
        const d = x[v] - mean[v];
        mean[v] += d * inv;
        m2[v] += d * (x[v] - mean[v]);
      }
    }
    const inv = 1 / this.n;
    for (let v = 0; v < V; v++) {
      const variance = m2[v] * inv;
      // Below ~1e-12 relative variance the voxel is constant up to float rounding: report 0, not amplified noise.
      const sd = Math.sqrt(variance);
      out[v] = sd > 1e-12 * (Math.abs(mean[v]) + 1e-30) && sd > 0 ? (x[v] - mean[v]) / sd : 0;
    }
  }
}
