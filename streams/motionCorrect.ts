// Rigid-body motion correction of one volume to a fixed reference: inverse-compositional Gauss–Newton on a
// subsampled set of high-gradient reference voxels (Jacobian precomputed once per run from the reference),
// cubic (Keys) sampling of the moving volume during estimation, then one trilinear (or cubic) resampling.
import { compose, invertRigid, matrixToParams, paramsToMatrix, type MotionParams } from './rigid.js';

export type Dims = [number, number, number];

export interface MotionOptions {
  /** Reference voxels used for estimation (the highest-gradient ones on a strided grid). */
  samples: number;
  maxIterations: number;
  /** Convergence: largest update below this many mm and degrees. */
  toleranceMm: number;
  toleranceDeg: number;
  /** Resampling of the output volume. */
  interpolation: 'trilinear' | 'cubic';
  /**
   * Volumes with fewer slices than this along an axis (thin slabs, e.g. 3 slices) cannot determine the
   * out-of-plane parameters: those are held at their starting value and only in-plane motion is estimated.
   */
  minSlicesFor6Dof: number;
  /** Interpolant of the moving volume during estimation: cubic B-spline (prefiltered, more accurate) or Keys cubic. */
  estimator: 'bspline' | 'keys';
}

export const DEFAULT_MOTION_OPTIONS: MotionOptions = {
  samples: 10000,
  maxIterations: 40,
  toleranceMm: 5e-4,
  toleranceDeg: 5e-4,
  interpolation: 'trilinear',
  minSlicesFor6Dof: 8,
  estimator: 'bspline',
};

export interface MotionEstimate {
  params: MotionParams;
  iterations: number;
  converged: boolean;
  /** Fraction of the sample points that stayed inside the moving volume's field of view. */
  overlap: number;
  /** RMS intensity difference at the sample points after alignment. */
  rms: number;
}

const DEG = Math.PI / 180;
/** Voxels at the moving volume's edge excluded from estimation (their stencil reaches outside the field of view). */
const EDGE_MARGIN = 1;

/** Keys (a = −0.5, Catmull–Rom) cubic weights for fractional offset t ∈ [0,1). */
function keys(t: number, w: Float64Array): void {
  const t2 = t * t,
    t3 = t2 * t;
  w[0] = -0.5 * t3 + t2 - 0.5 * t;
  w[1] = 1.5 * t3 - 2.5 * t2 + 1;
  w[2] = -1.5 * t3 + 2 * t2 + 0.5 * t;
  w[3] = 0.5 * t3 - 0.5 * t2;
}

/** Cubic B-spline weights for fractional offset t ∈ [0,1). */
function bsplineWeights(t: number, w: Float64Array): void {
  const u = 1 - t,
    t2 = t * t,
    t3 = t2 * t;
  w[0] = (u * u * u) / 6;
  w[1] = (3 * t3 - 6 * t2 + 4) / 6;
  w[2] = (-3 * t3 + 3 * t2 + 3 * t + 1) / 6;
  w[3] = t3 / 6;
}

const POLE = Math.sqrt(3) - 2;

/** In-place cubic B-spline prefilter (Unser 1993) of n samples at stride st, mirror boundary. */
function prefilterLine(c: Float32Array, off: number, n: number, st: number): void {
  if (n < 2) return;
  const z = POLE;
  // Causal initial value for the mirror-extended line: truncated sum (|z|^30 < 1e-17) or, for short lines,
  // the exact sum over one mirror period 2n−2.
  let sum = 0,
    zk = 1;
  if (n >= 30) {
    for (let k = 0; k < 30; k++) {
      sum += zk * c[off + k * st];
      zk *= z;
    }
  } else {
    const period = 2 * n - 2;
    for (let k = 0; k < period; k++) {
      sum += zk * c[off + (k < n ? k : period - k) * st];
      zk *= z;
    }
    sum /= 1 - zk;
  }
  let prev = sum;
  c[off] = prev;
  for (let k = 1; k < n; k++) {
    prev = c[off + k * st] + z * prev;
    c[off + k * st] = prev;
  }
  let next = (z / (z * z - 1)) * (c[off + (n - 1) * st] + z * c[off + (n - 2) * st]);
  c[off + (n - 1) * st] = 6 * next;
  for (let k = n - 2; k >= 0; k--) {
    next = z * (next - c[off + k * st]);
    c[off + k * st] = 6 * next;
  }
}

/**
 * The same recursion applied to whole rows at once: `rows` lines of `len` samples where sample k of every line
 * starts at off + k·st and the lines are contiguous (length rowLen). Keeps the y and z passes cache-friendly.
 */
function prefilterRows(c: Float32Array, off: number, n: number, st: number, rowLen: number, acc: Float64Array): void {
  if (n < 2) return;
  const z = POLE;
  const period = 2 * n - 2,
    terms = n >= 30 ? 30 : period;
  acc.fill(0, 0, rowLen);
  let zk = 1;
  for (let k = 0; k < terms; k++) {
    const o = off + (k < n ? k : period - k) * st;
    for (let r = 0; r < rowLen; r++) acc[r] += zk * c[o + r];
    zk *= z;
  }
  const norm = n >= 30 ? 1 : 1 / (1 - zk);
  for (let r = 0; r < rowLen; r++) c[off + r] = acc[r] * norm;
  for (let k = 1; k < n; k++) {
    const o = off + k * st,
      p = o - st;
    for (let r = 0; r < rowLen; r++) c[o + r] += z * c[p + r];
  }
  const last = off + (n - 1) * st,
    prev = last - st,
    g = z / (z * z - 1);
  for (let r = 0; r < rowLen; r++) {
    acc[r] = g * (c[last + r] + z * c[prev + r]);
    c[last + r] = 6 * acc[r];
  }
  for (let k = n - 2; k >= 0; k--) {
    const o = off + k * st;
    for (let r = 0; r < rowLen; r++) {
      acc[r] = z * (acc[r] - c[o + r]);
      c[o + r] = 6 * acc[r];
    }
  }
}

/** Cubic B-spline coefficients of a volume (x fastest) into out (mirror boundary, like scipy's mode='mirror'). */
export function bsplineCoefficients(vol: Float32Array, dims: readonly number[], out: Float32Array): Float32Array {
  const [nx, ny, nz] = dims;
  const nxy = nx * ny;
  out.set(vol);
  for (let k = 0; k < nz; k++) for (let j = 0; j < ny; j++) prefilterLine(out, j * nx + k * nxy, nx, 1);
  const acc = new Float64Array(nxy);
  for (let k = 0; k < nz; k++) prefilterRows(out, k * nxy, ny, nx, nx, acc);
  prefilterRows(out, 0, nz, nxy, nxy, acc);
  return out;
}

const mirror = (i: number, n: number): number => {
  if (n === 1) return 0;
  const p = 2 * (n - 1);
  i = ((i % p) + p) % p;
  return i < n ? i : p - i;
};

export class MotionCorrector {
  readonly dims: Dims;
  readonly voxelSize: [number, number, number];
  readonly opts: MotionOptions;
  private readonly centre: [number, number, number];
  private n = 0; // sample points in use
  private px = new Float64Array(0); // sample coordinates, mm (centred)
  private py = new Float64Array(0);
  private pz = new Float64Array(0);
  private rv = new Float64Array(0); // reference values at the samples
  // 6 per sample: ∂R(W(x;p))/∂p at p = 0 (per mm, per radian), from central differences of R. (The B-spline's own
  // slopes amplify high frequencies and overestimate the curvature: many more, shorter Gauss–Newton steps.)
  private jac = new Float64Array(0);
  private hasReference = false;
  /** Parameters estimated (1) or held (0), from the slab geometry. */
  readonly active: Uint8Array;
  // scratch
  private readonly wx = new Float64Array(4);
  private readonly wy = new Float64Array(4);
  private readonly wz = new Float64Array(4);
  private readonly ix = new Int32Array(4);
  private readonly iy = new Int32Array(4);
  private readonly iz = new Int32Array(4);
  private readonly h = new Float64Array(36);
  private readonly b = new Float64Array(6);
  private readonly a = new Float64Array(12);
  private readonly step = new Float64Array(12);
  private coeffs: Float32Array | null = null;

  constructor(dims: Dims, voxelSize: [number, number, number], opts: Partial<MotionOptions> = {}) {
    this.dims = [dims[0], dims[1], dims[2]];
    this.voxelSize = [voxelSize[0], voxelSize[1], voxelSize[2]];
    this.opts = { ...DEFAULT_MOTION_OPTIONS, ...opts };
    this.centre = [(dims[0] - 1) / 2, (dims[1] - 1) / 2, (dims[2] - 1) / 2];
    // A thin axis a: translation along a and rotations about the two other axes (which tilt the plane) are held.
    this.active = new Uint8Array([1, 1, 1, 1, 1, 1]);
    const thin = [0, 1, 2].filter((a) => this.dims[a] < this.opts.minSlicesFor6Dof);
    for (const a of thin) {
      this.active[a] = 0;
      for (const r of [0, 1, 2]) if (r !== a) this.active[3 + r] = 0;
    }
  }

  get ready(): boolean {
    return this.hasReference;
  }

  /** Fixes the reference: picks sample points and precomputes the inverse-compositional Jacobian. */
  setReference(ref: Float32Array): void {
    const [nx, ny, nz] = this.dims;
    const nxy = nx * ny;
    if (ref.length !== nxy * nz) throw new Error(`reference has ${ref.length} voxels, expected ${nxy * nz}`);
    const [sx, sy, sz] = this.voxelSize;
    const total = nxy * nz;
    const stride = Math.max(1, Math.floor(Math.cbrt(total / (4 * this.opts.samples))));
    const grad = (g: Float32Array, v: number, i: number, n: number, st: number): number => {
      if (n < 2) return 0;
      if (i === 0) return g[v + st] - g[v];
      if (i === n - 1) return g[v] - g[v - st];
      return (g[v + st] - g[v - st]) / 2;
    };
    const cand: number[] = [];
    const mag: number[] = [];
    // Samples start one voxel inside the validity margin used in estimate(): a sample sitting exactly on that
    // border would flip in and out of the fit with tiny parameter changes and make Gauss–Newton oscillate.
    const edge = (n: number) => (n >= this.opts.minSlicesFor6Dof ? EDGE_MARGIN + 1 : 0);
    const eU = edge(nx),
      eV = edge(ny),
      eW = edge(nz);
    for (let k = eW; k < nz - eW; k += stride) {
      for (let j = eV; j < ny - eV; j += stride) {
        for (let i = eU; i < nx - eU; i += stride) {
          const v = i + j * nx + k * nxy;
          const gx = grad(ref, v, i, nx, 1) / sx,
            gy = grad(ref, v, j, ny, nx) / sy,
            gz = grad(ref, v, k, nz, nxy) / sz;
          const m = gx * gx + gy * gy + gz * gz;
          if (m > 0 && Number.isFinite(m)) {
            cand.push(v);
            mag.push(m);
          }
        }
      }
    }
    let chosen = cand.map((_, i) => i);
    if (chosen.length > this.opts.samples) {
      chosen.sort((p, q) => mag[q] - mag[p]);
      chosen = chosen.slice(0, this.opts.samples).sort((p, q) => cand[p] - cand[q]);
    }
    const n = chosen.length;
    this.n = n;
    this.px = new Float64Array(n);
    this.py = new Float64Array(n);
    this.pz = new Float64Array(n);
    this.rv = new Float64Array(n);
    this.jac = new Float64Array(6 * n);
    for (let s = 0; s < n; s++) {
      const v = cand[chosen[s]];
      const k = Math.floor(v / nxy),
        j = Math.floor((v - k * nxy) / nx),
        i = v - k * nxy - j * nx;
      const x = (i - this.centre[0]) * sx,
        y = (j - this.centre[1]) * sy,
        z = (k - this.centre[2]) * sz;
      this.px[s] = x;
      this.py[s] = y;
      this.pz[s] = z;
      this.rv[s] = ref[v];
      const J = this.jac;
      const gx = grad(ref, v, i, nx, 1) / sx,
        gy = grad(ref, v, j, ny, nx) / sy,
        gz = grad(ref, v, k, nz, nxy) / sz;
      J[6 * s] = gx;
      J[6 * s + 1] = gy;
      J[6 * s + 2] = gz;
      J[6 * s + 3] = -gy * z + gz * y; // ∂/∂rx: (0, −z, y)
      J[6 * s + 4] = gx * z - gz * x; // ∂/∂ry: (z, 0, −x)
      J[6 * s + 5] = -gx * y + gy * x; // ∂/∂rz: (−y, x, 0)
    }
    this.hasReference = n >= 6;
    if (!this.hasReference)
      throw new Error('the reference volume has no structure to register to (fewer than 6 voxels with a gradient)');
  }

  /** Keys-cubic sample of `vol` at voxel coordinates (u,v,w) (clamped stencil); caller checks bounds. */
  private sampleCubic(vol: Float32Array, u: number, v: number, w: number): number {
    const [nx, ny, nz] = this.dims;
    const nxy = nx * ny;
    const fu = Math.floor(u),
      fv = Math.floor(v),
      fw = Math.floor(w);
    keys(u - fu, this.wx);
    keys(v - fv, this.wy);
    keys(w - fw, this.wz);
    const ix = this.ix,
      iy = this.iy,
      iz = this.iz;
    for (let t = 0; t < 4; t++) {
      const a = fu - 1 + t,
        b = fv - 1 + t,
        c = fw - 1 + t;
      ix[t] = a < 0 ? 0 : a >= nx ? nx - 1 : a;
      iy[t] = (b < 0 ? 0 : b >= ny ? ny - 1 : b) * nx;
      iz[t] = (c < 0 ? 0 : c >= nz ? nz - 1 : c) * nxy;
    }
    const wx = this.wx,
      wy = this.wy,
      wz = this.wz;
    const x0 = ix[0],
      x1 = ix[1],
      x2 = ix[2],
      x3 = ix[3];
    const a0 = wx[0],
      a1 = wx[1],
      a2 = wx[2],
      a3 = wx[3];
    let acc = 0;
    for (let c = 0; c < 4; c++) {
      const zc = wz[c];
      if (zc === 0) continue;
      let accy = 0;
      for (let b = 0; b < 4; b++) {
        const o = iz[c] + iy[b];
        accy += wy[b] * (a0 * vol[o + x0] + a1 * vol[o + x1] + a2 * vol[o + x2] + a3 * vol[o + x3]);
      }
      acc += zc * accy;
    }
    return acc;
  }

  /** Cubic B-spline sample of coefficient volume c at voxel coordinates (u,v,w) (mirror boundary). */
  private sampleBspline(c: Float32Array, u: number, v: number, w: number): number {
    const [nx, ny, nz] = this.dims;
    const nxy = nx * ny;
    const fu = Math.floor(u),
      fv = Math.floor(v),
      fw = Math.floor(w);
    bsplineWeights(u - fu, this.wx);
    bsplineWeights(v - fv, this.wy);
    bsplineWeights(w - fw, this.wz);
    const ix = this.ix,
      iy = this.iy,
      iz = this.iz;
    const inner = fu >= 1 && fu + 2 < nx;
    for (let t = 0; t < 4; t++) {
      ix[t] = inner ? fu - 1 + t : mirror(fu - 1 + t, nx);
      iy[t] = (fv >= 1 && fv + 2 < ny ? fv - 1 + t : mirror(fv - 1 + t, ny)) * nx;
      iz[t] = (fw >= 1 && fw + 2 < nz ? fw - 1 + t : mirror(fw - 1 + t, nz)) * nxy;
    }
    const wx = this.wx,
      wy = this.wy,
      wz = this.wz;
    const x0 = ix[0],
      x1 = ix[1],
      x2 = ix[2],
      x3 = ix[3];
    const a0 = wx[0],
      a1 = wx[1],
      a2 = wx[2],
      a3 = wx[3];
    let acc = 0;
    for (let q = 0; q < 4; q++) {
      let accy = 0;
      for (let b = 0; b < 4; b++) {
        const o = iz[q] + iy[b];
        accy += wy[b] * (a0 * c[o + x0] + a1 * c[o + x1] + a2 * c[o + x2] + a3 * c[o + x3]);
      }
      acc += wz[q] * accy;
    }
    return acc;
  }

  /** Estimates the parameters that align `moving` to the reference, starting from `init` (warm start). */
  estimate(moving: Float32Array, init: ArrayLike<number> = [0, 0, 0, 0, 0, 0]): MotionEstimate {
    if (!this.hasReference) throw new Error('motion reference not set');
    const [nx, ny, nz] = this.dims;
    const [sx, sy, sz] = this.voxelSize;
    const [cx, cy, cz] = this.centre;
    const A = paramsToMatrix(init, this.a);
    const bspline = this.opts.estimator === 'bspline';
    let src = moving;
    if (bspline) {
      if (!this.coeffs || this.coeffs.length !== moving.length) this.coeffs = new Float32Array(moving.length);
      src = bsplineCoefficients(moving, this.dims, this.coeffs);
    }
    const J = this.jac,
      H = this.h,
      bb = this.b;
    // Samples whose interpolation stencil would reach past the moving volume's edge are skipped: there the scanner
    // saw no tissue (or the values are extrapolated), so they would bias the fit. Thin axes keep their full range.
    const margin = EDGE_MARGIN;
    const mU = nx >= this.opts.minSlicesFor6Dof ? margin : 0,
      mV = ny >= this.opts.minSlicesFor6Dof ? margin : 0;
    const mW = nz >= this.opts.minSlicesFor6Dof ? margin : 0;
    const loU = mU,
      loV = mV,
      loW = mW,
      hiU = nx - 1 - mU,
      hiV = ny - 1 - mV,
      hiW = nz - 1 - mW;
    let iterations = 0,
      converged = false,
      valid = 0,
      sse = 0;
    const dp = [0, 0, 0, 0, 0, 0];
    // If Gauss–Newton does not settle (e.g. samples entering/leaving the field of view), keep the best iterate.
    let bestRms = Infinity;
    const best = new Float64Array(12);
    for (; iterations < this.opts.maxIterations; ) {
      iterations++;
      H.fill(0);
      bb.fill(0);
      valid = 0;
      sse = 0;
      const a00 = A[0],
        a01 = A[1],
        a02 = A[2],
        a03 = A[3],
        a10 = A[4],
        a11 = A[5],
        a12 = A[6],
        a13 = A[7];
      const a20 = A[8],
        a21 = A[9],
        a22 = A[10],
        a23 = A[11];
      for (let s = 0; s < this.n; s++) {
        const x = this.px[s],
          y = this.py[s],
          z = this.pz[s];
        const u = (a00 * x + a01 * y + a02 * z + a03) / sx + cx;
        const v = (a10 * x + a11 * y + a12 * z + a13) / sy + cy;
        const w = (a20 * x + a21 * y + a22 * z + a23) / sz + cz;
        if (u < loU || u > hiU || v < loV || v > hiV || w < loW || w > hiW) continue;
        const e = (bspline ? this.sampleBspline(src, u, v, w) : this.sampleCubic(src, u, v, w)) - this.rv[s];
        valid++;
        sse += e * e;
        const o = 6 * s;
        const j0 = J[o],
          j1 = J[o + 1],
          j2 = J[o + 2],
          j3 = J[o + 3],
          j4 = J[o + 4],
          j5 = J[o + 5];
        bb[0] += j0 * e;
        bb[1] += j1 * e;
        bb[2] += j2 * e;
        bb[3] += j3 * e;
        bb[4] += j4 * e;
        bb[5] += j5 * e;
        H[0] += j0 * j0;
        H[1] += j0 * j1;
        H[2] += j0 * j2;
        H[3] += j0 * j3;
        H[4] += j0 * j4;
        H[5] += j0 * j5;
        H[7] += j1 * j1;
        H[8] += j1 * j2;
        H[9] += j1 * j3;
        H[10] += j1 * j4;
        H[11] += j1 * j5;
        H[14] += j2 * j2;
        H[15] += j2 * j3;
        H[16] += j2 * j4;
        H[17] += j2 * j5;
        H[21] += j3 * j3;
        H[22] += j3 * j4;
        H[23] += j3 * j5;
        H[28] += j4 * j4;
        H[29] += j4 * j5;
        H[35] += j5 * j5;
      }
      if (valid < 6) break;
      const rmsNow = Math.sqrt(sse / valid);
      if (rmsNow < bestRms) {
        bestRms = rmsNow;
        best.set(A);
      }
      for (let r = 0; r < 6; r++) for (let c = 0; c < r; c++) H[r * 6 + c] = H[c * 6 + r];
      for (let r = 0; r < 6; r++) {
        if (this.active[r]) continue;
        for (let c = 0; c < 6; c++) {
          H[r * 6 + c] = 0;
          H[c * 6 + r] = 0;
        }
        H[r * 6 + r] = 1;
        bb[r] = 0;
      }
      if (!solve6(H, bb)) break;
      dp[0] = bb[0];
      dp[1] = bb[1];
      dp[2] = bb[2];
      dp[3] = bb[3] / DEG;
      dp[4] = bb[4] / DEG;
      dp[5] = bb[5] / DEG;
      // Inverse compositional update: A ← A ∘ W(Δp)⁻¹.
      paramsToMatrix(dp, this.step);
      invertRigid(this.step, this.step);
      compose(A, this.step, A);
      const dMm = Math.max(Math.abs(dp[0]), Math.abs(dp[1]), Math.abs(dp[2]));
      const dDeg = Math.max(Math.abs(dp[3]), Math.abs(dp[4]), Math.abs(dp[5]));
      if (dMm < this.opts.toleranceMm && dDeg < this.opts.toleranceDeg) {
        converged = true;
        break;
      }
    }
    if (!converged && bestRms < Infinity) A.set(best);
    return {
      params: matrixToParams(A),
      iterations,
      converged,
      overlap: this.n ? valid / this.n : 0,
      rms: valid ? Math.sqrt(sse / valid) : NaN,
    };
  }

  /**
   * Resamples `moving` only at the reference-grid voxels `indices` (x-fastest linear indices), e.g. the ROI:
   * out[j] = moving(T(x_indices[j])). Same interpolation and edge rule as resample().
   */
  resampleAt(moving: Float32Array, params: ArrayLike<number>, indices: Uint32Array, out: Float32Array): Float32Array {
    const [nx, ny, nz] = this.dims;
    const nxy = nx * ny;
    const { mv, off } = this.voxelMatrix(params);
    const hiU = nx - 1,
      hiV = ny - 1,
      hiW = nz - 1;
    const cubic = this.opts.interpolation === 'cubic';
    for (let q = 0; q < indices.length; q++) {
      const idx = indices[q];
      const k = Math.floor(idx / nxy),
        rem = idx - k * nxy,
        j = Math.floor(rem / nx),
        i = rem - j * nx;
      let u = mv[0] * i + mv[1] * j + mv[2] * k + off[0];
      let v = mv[3] * i + mv[4] * j + mv[5] * k + off[1];
      let w = mv[6] * i + mv[7] * j + mv[8] * k + off[2];
      u = u < 0 ? 0 : u > hiU ? hiU : u;
      v = v < 0 ? 0 : v > hiV ? hiV : v;
      w = w < 0 ? 0 : w > hiW ? hiW : w;
      out[q] = cubic ? this.sampleCubic(moving, u, v, w) : trilinear(moving, nx, nxy, hiU, hiV, hiW, u, v, w);
    }
    return out;
  }

  /** The rigid transform as voxel-index → voxel-index: u = mv·i + off. */
  private voxelMatrix(params: ArrayLike<number>): { mv: Float64Array; off: Float64Array } {
    const s = this.voxelSize,
      c = this.centre;
    const R = paramsToMatrix(params);
    const mv = new Float64Array(9),
      off = new Float64Array(3);
    for (let r = 0; r < 3; r++) {
      let o = R[r * 4 + 3] / s[r] + c[r];
      for (let q = 0; q < 3; q++) {
        mv[r * 3 + q] = (R[r * 4 + q] * s[q]) / s[r];
        o -= mv[r * 3 + q] * c[q];
      }
      off[r] = o;
    }
    return { mv, off };
  }

  /**
   * Writes `moving` resampled onto the reference grid with the given parameters into `out`
   * (out(x) = moving(T(x))); outside the moving field of view the nearest edge value is used.
   */
  resample(moving: Float32Array, params: ArrayLike<number>, out: Float32Array): Float32Array {
    const [nx, ny, nz] = this.dims;
    const nxy = nx * ny;
    const { mv: Mv, off } = this.voxelMatrix(params);
    const hiU = nx - 1,
      hiV = ny - 1,
      hiW = nz - 1;
    const cubic = this.opts.interpolation === 'cubic';
    let o = 0;
    for (let k = 0; k < nz; k++) {
      for (let j = 0; j < ny; j++) {
        let u = Mv[1] * j + Mv[2] * k + off[0];
        let v = Mv[4] * j + Mv[5] * k + off[1];
        let w = Mv[7] * j + Mv[8] * k + off[2];
        for (let i = 0; i < nx; i++, o++, u += Mv[0], v += Mv[3], w += Mv[6]) {
          const uu = u < 0 ? 0 : u > hiU ? hiU : u;
          const vv = v < 0 ? 0 : v > hiV ? hiV : v;
          const ww = w < 0 ? 0 : w > hiW ? hiW : w;
          out[o] = cubic ? this.sampleCubic(moving, uu, vv, ww) : trilinear(moving, nx, nxy, hiU, hiV, hiW, uu, vv, ww);
        }
      }
    }
    return out;
  }
}

/** Trilinear sample at in-range voxel coordinates (u,v,w). */
function trilinear(
  m: Float32Array,
  nx: number,
  nxy: number,
  hiU: number,
  hiV: number,
  hiW: number,
  u: number,
  v: number,
  w: number,
): number {
  const iu = Math.floor(u),
    iv = Math.floor(v),
    iw = Math.floor(w);
  const fu = u - iu,
    fv = v - iv,
    fw = w - iw;
  const du = iu < hiU ? 1 : 0,
    dv = iv < hiV ? nx : 0,
    dw = iw < hiW ? nxy : 0;
  const p = iu + iv * nx + iw * nxy;
  const c00 = m[p] + fu * (m[p + du] - m[p]);
  const c10 = m[p + dv] + fu * (m[p + dv + du] - m[p + dv]);
  const c01 = m[p + dw] + fu * (m[p + dw + du] - m[p + dw]);
  const c11 = m[p + dw + dv] + fu * (m[p + dw + dv + du] - m[p + dw + dv]);
  const c0 = c00 + fv * (c10 - c00),
    c1 = c01 + fv * (c11 - c01);
  return c0 + fw * (c1 - c0);
}

/** 6×6 SPD solve (Cholesky) in place on copies; returns false when singular. */
const hs = new Float64Array(36);
function solve6(H: Float64Array, b: Float64Array): boolean {
  hs.set(H);
  for (let j = 0; j < 6; j++) {
    let s = hs[j * 6 + j];
    for (let p = 0; p < j; p++) s -= hs[j * 6 + p] * hs[j * 6 + p];
    if (!(s > 1e-300)) return false;
    const l = Math.sqrt(s);
    hs[j * 6 + j] = l;
    for (let i = j + 1; i < 6; i++) {
      let t = hs[i * 6 + j];
      for (let p = 0; p < j; p++) t -= hs[i * 6 + p] * hs[j * 6 + p];
      hs[i * 6 + j] = t / l;
    }
  }
  for (let i = 0; i < 6; i++) {
    let t = b[i];
    for (let p = 0; p < i; p++) t -= hs[i * 6 + p] * b[p];
    b[i] = t / hs[i * 6 + i];
  }
  for (let i = 5; i >= 0; i--) {
    let t = b[i];
    for (let p = i + 1; p < 6; p++) t -= hs[p * 6 + i] * b[p];
    b[i] = t / hs[i * 6 + i];
  }
  return true;
}
