// Incremental detrending of ROI voxels: every TR, the newest sample's residual after a least-squares fit of
// each voxel on constant + Legendre polynomials of order 1 + int(TR·n/150) (+ the 6 motion parameters),
// fitted on the run so far ('cumulative') or on the last W volumes ('window').
// Cumulative mode never stores the history: it accumulates XᵀX (shared) and Xᵀy per voxel in a Legendre basis
// on a horizon H ≥ the elapsed time, and re-expresses the sums exactly when H grows (fitted values do not depend
// on the basis, only on its span, and a horizon close to the data span keeps the normal equations well conditioned).
import { gaussLegendre, legendre, symPinv } from './linalg.js';

export interface DetrendOptions {
  tr: number;
  /** 'cumulative': refit on the whole run so far; 'window': on the last `windowVolumes` volumes. */
  mode: 'cumulative' | 'window';
  windowVolumes: number;
  /** Cap on the Legendre order (the 1 + int(TR·n/150) rule grows without bound on long runs). */
  maxOrder: number;
  /** Seconds of data per polynomial order (150 in AFNI's rule). */
  secondsPerOrder: number;
  /** Include the 6 motion parameters as regressors. */
  motion: boolean;
}

export const DEFAULT_DETREND_OPTIONS: Omit<DetrendOptions, 'tr'> = {
  mode: 'cumulative',
  windowVolumes: 100,
  maxOrder: 8,
  secondsPerOrder: 150,
  motion: true,
};

/** Legendre order used after n samples. */
export function polynomialOrder(n: number, tr: number, maxOrder: number, secondsPerOrder = 150): number {
  return Math.min(maxOrder, 1 + Math.floor((tr * n) / secondsPerOrder));
}

export class IncrementalDetrender {
  readonly nVox: number;
  readonly opts: DetrendOptions;
  private readonly dp: number; // polynomial columns (maxOrder + 1)
  private readonly nm: number; // motion columns
  private readonly K: number;
  private n = 0;
  private t0 = 0;
  private horizon = 16;
  private readonly mom: Float64Array; // cumulative: V×K
  private readonly gram: Float64Array; // cumulative: K×K
  private readonly first: Float32Array; // first value per voxel (constant-voxel detection)
  private readonly varied: Uint8Array;
  // window mode
  private readonly ringY: Float32Array;
  private readonly ringT: Float64Array;
  private readonly ringM: Float64Array;
  // scratch
  private readonly x: Float64Array;
  private readonly sub: Float64Array;
  private readonly pinv: Float64Array;
  private readonly work: Float64Array;
  private readonly w: Float64Array;
  private readonly idx: Int32Array;
  private readonly xr: Float64Array;
  private readonly hat: Float64Array;
  private readonly acc: Float64Array;

  constructor(nVox: number, opts: Partial<DetrendOptions> & { tr: number }) {
    this.nVox = nVox;
    this.opts = { ...DEFAULT_DETREND_OPTIONS, ...opts };
    if (!(this.opts.tr > 0)) throw new Error('detrend needs a positive TR');
    this.dp = this.opts.maxOrder + 1;
    this.nm = this.opts.motion ? 6 : 0;
    this.K = this.dp + this.nm;
    const K = this.K;
    const cumulative = this.opts.mode === 'cumulative';
    this.mom = new Float64Array(cumulative ? nVox * K : 0);
    this.gram = new Float64Array(K * K);
    this.first = new Float32Array(nVox);
    this.varied = new Uint8Array(nVox);
    const W = cumulative ? 0 : this.opts.windowVolumes;
    this.ringY = new Float32Array(W * nVox);
    this.ringT = new Float64Array(W);
    this.ringM = new Float64Array(W * 6);
    this.x = new Float64Array(K);
    this.sub = new Float64Array(K * K);
    this.pinv = new Float64Array(K * K);
    this.work = new Float64Array(2 * K * K + K);
    this.w = new Float64Array(K);
    this.idx = new Int32Array(K);
    this.xr = new Float64Array(Math.max(W, 1) * K);
    this.hat = new Float64Array(Math.max(W, 1));
    this.acc = new Float64Array(cumulative ? 0 : nVox);
  }

  /** Samples pushed so far. */
  get count(): number {
    return this.n;
  }

  /** Regressors in the fit after n samples (constant + Legendre + motion). */
  regressors(n = this.n): number {
    const nEff = this.opts.mode === 'window' ? Math.min(n, this.opts.windowVolumes) : n;
    return polynomialOrder(nEff, this.opts.tr, this.opts.maxOrder, this.opts.secondsPerOrder) + 1 + this.nm;
  }

  /**
   * Adds sample y (ROI vector) at time t (volume index) with its motion parameters, and writes the residual of y
   * after the refit into `out`. Returns false (out untouched) while n does not yet exceed the regressor count.
   */
  push(t: number, y: Float32Array, motion: ArrayLike<number> | null, out: Float32Array): boolean {
    const V = this.nVox;
    if (y.length !== V) throw new Error(`detrend: expected ${V} voxels, got ${y.length}`);
    if (this.n === 0) {
      this.t0 = t;
      this.first.set(y);
    } else {
      const first = this.first,
        varied = this.varied;
      for (let v = 0; v < V; v++) if (y[v] !== first[v]) varied[v] = 1;
    }
    this.n++;
    return this.opts.mode === 'cumulative'
      ? this.pushCumulative(t, y, motion, out)
      : this.pushWindow(t, y, motion, out);
  }

  private pushCumulative(t: number, y: Float32Array, motion: ArrayLike<number> | null, out: Float32Array): boolean {
    const V = this.nVox,
      K = this.K,
      dp = this.dp,
      nm = this.nm;
    const rel = t - this.t0;
    if (rel > this.horizon) this.rescale(Math.ceil(rel * 1.25));
    const x = this.x;
    legendre((2 * rel) / this.horizon - 1, dp - 1, x);
    for (let m = 0; m < nm; m++) x[dp + m] = motion ? motion[m] : 0;
    const G = this.gram;
    for (let i = 0; i < K; i++) for (let j = 0; j < K; j++) G[i * K + j] += x[i] * x[j];
    const mom = this.mom;
    for (let v = 0, o = 0; v < V; v++, o += K) {
      const yv = y[v];
      for (let i = 0; i < K; i++) mom[o + i] += x[i] * yv;
    }
    const d = polynomialOrder(this.n, this.opts.tr, this.opts.maxOrder, this.opts.secondsPerOrder);
    const k = d + 1 + nm;
    if (this.n <= k) return false;
    const idx = this.idx;
    for (let i = 0; i <= d; i++) idx[i] = i;
    for (let m = 0; m < nm; m++) idx[d + 1 + m] = dp + m;
    const sub = this.sub;
    for (let i = 0; i < k; i++) for (let j = 0; j < k; j++) sub[i * k + j] = G[idx[i] * K + idx[j]];
    symPinv(sub, k, this.pinv, this.work);
    const w = this.w,
      P = this.pinv;
    for (let i = 0; i < k; i++) {
      let s = 0;
      for (let j = 0; j < k; j++) s += P[i * k + j] * x[idx[j]];
      w[i] = s;
    }
    const varied = this.varied;
    for (let v = 0, o = 0; v < V; v++, o += K) {
      if (!varied[v]) {
        out[v] = 0;
        continue;
      }
      let fit = 0;
      for (let i = 0; i < k; i++) fit += w[i] * mom[o + idx[i]];
      out[v] = y[v] - fit;
    }
    return true;
  }

  /** Re-expresses the accumulated sums in the Legendre basis of a longer horizon. */
  private rescale(newHorizon: number): void {
    const dp = this.dp,
      K = this.K,
      V = this.nVox;
    const alpha = this.horizon / newHorizon;
    // C[j][k]: coefficient of old P_j in new P_k(s') with s' = α(s+1) − 1, by exact Gauss–Legendre projection.
    const { x: nodes, w: wts } = gaussLegendre(dp + 1);
    const C = new Float64Array(dp * dp);
    const pOld = new Float64Array(dp),
      pNew = new Float64Array(dp);
    for (let q = 0; q < nodes.length; q++) {
      legendre(nodes[q], dp - 1, pOld);
      legendre(alpha * (nodes[q] + 1) - 1, dp - 1, pNew);
      for (let j = 0; j < dp; j++)
        for (let k = 0; k < dp; k++) C[j * dp + k] += ((2 * j + 1) / 2) * wts[q] * pOld[j] * pNew[k];
    }
    const tmp = new Float64Array(dp);
    for (let v = 0, o = 0; v < V; v++, o += K) {
      for (let k = 0; k < dp; k++) {
        let s = 0;
        for (let j = 0; j < dp; j++) s += C[j * dp + k] * this.mom[o + j];
        tmp[k] = s;
      }
      for (let k = 0; k < dp; k++) this.mom[o + k] = tmp[k];
    }
    // Gram: polynomial block Cᵀ G C, cross block Cᵀ G_pm (and its transpose), motion block unchanged.
    const G = this.gram,
      G2 = new Float64Array(K * K);
    for (let a = 0; a < K; a++) {
      for (let b = 0; b < K; b++) {
        let s = 0;
        if (a < dp && b < dp) {
          for (let i = 0; i < dp; i++) for (let j = 0; j < dp; j++) s += C[i * dp + a] * G[i * K + j] * C[j * dp + b];
        } else if (a < dp) {
          for (let i = 0; i < dp; i++) s += C[i * dp + a] * G[i * K + b];
        } else if (b < dp) {
          for (let j = 0; j < dp; j++) s += G[a * K + j] * C[j * dp + b];
        } else {
          s = G[a * K + b];
        }
        G2[a * K + b] = s;
      }
    }
    G.set(G2);
    this.horizon = newHorizon;
  }

  private pushWindow(t: number, y: Float32Array, motion: ArrayLike<number> | null, out: Float32Array): boolean {
    const V = this.nVox,
      W = this.opts.windowVolumes,
      nm = this.nm;
    const slot = (this.n - 1) % W;
    this.ringY.set(y, slot * V);
    this.ringT[slot] = t;
    for (let m = 0; m < 6; m++) this.ringM[slot * 6 + m] = motion ? motion[m] : 0;
    const nw = Math.min(this.n, W);
    const d = polynomialOrder(nw, this.opts.tr, this.opts.maxOrder, this.opts.secondsPerOrder);
    const k = d + 1 + nm;
    if (nw <= k) return false;
    const oldest = this.n <= W ? 0 : this.n % W;
    const tFirst = this.ringT[oldest],
      span = t - tFirst;
    const xr = this.xr,
      G = this.sub;
    G.fill(0, 0, k * k);
    for (let r = 0; r < nw; r++) {
      const sl = (oldest + r) % W;
      const o = r * k;
      legendre(span > 0 ? (2 * (this.ringT[sl] - tFirst)) / span - 1 : 0, d, xr, o);
      for (let m = 0; m < nm; m++) xr[o + d + 1 + m] = this.ringM[sl * 6 + m];
      for (let i = 0; i < k; i++) for (let j = 0; j < k; j++) G[i * k + j] += xr[o + i] * xr[o + j];
    }
    symPinv(G, k, this.pinv, this.work);
    // hat-matrix row of the newest sample: h_r = x_newᵀ (XᵀX)⁺ x_r.
    const last = (nw - 1) * k,
      P = this.pinv,
      w = this.w;
    for (let i = 0; i < k; i++) {
      let s = 0;
      for (let j = 0; j < k; j++) s += P[i * k + j] * xr[last + j];
      w[i] = s;
    }
    const hat = this.hat;
    for (let r = 0; r < nw; r++) {
      let s = 0;
      for (let i = 0; i < k; i++) s += w[i] * xr[r * k + i];
      hat[r] = s;
    }
    const acc = this.acc;
    acc.fill(0);
    for (let r = 0; r < nw; r++) {
      const h = hat[r],
        base = ((oldest + r) % W) * V,
        Y = this.ringY;
      for (let v = 0; v < V; v++) acc[v] += h * Y[base + v];
    }
    const varied = this.varied;
    for (let v = 0; v < V; v++) out[v] = varied[v] ? y[v] - acc[v] : 0;
    return true;
  }
}
