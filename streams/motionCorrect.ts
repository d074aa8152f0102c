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
}

export const DEFAULT_MOTION_OPTIONS: MotionOptions = {
  samples: 20000, maxIterations: 40, toleranceMm: 1e-4, toleranceDeg: 1e-4, interpolation: 'trilinear',
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

/** Keys (a = −0.5, Catmull–Rom) cubic weights for fractional offset t ∈ [0,1). */
function keys(t: number, w: Float64Array): void {
  const t2 = t * t, t3 = t2 * t;
  w[0] = -0.5 * t3 + t2 - 0.5 * t;
  w[1] = 1.5 * t3 - 2.5 * t2 + 1;
  w[2] = -1.5 * t3 + 2 * t2 + 0.5 * t;
  w[3] = 0.5 * t3 - 0.5 * t2;
}

export class MotionCorrector {
  readonly dims: Dims;
  readonly voxelSize: [number, number, number];
  readonly opts: MotionOptions;
  private readonly centre: [number, number, number];
  private n = 0;                       // sample points in use
  private px = new Float64Array(0);    // sample coordinates, mm (centred)
  private py = new Float64Array(0);
  private pz = new Float64Array(0);
  private rv = new Float64Array(0);    // reference values at the samples
  private jac = new Float64Array(0);   // 6 per sample: ∂R(W(x;p))/∂p at p = 0 (per mm, per radian)
  private hasReference = false;
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

  constructor(dims: Dims, voxelSize: [number, number, number], opts: Partial<MotionOptions> = {}) {
    this.dims = [dims[0], dims[1], dims[2]];
    this.voxelSize = [voxelSize[0], voxelSize[1], voxelSize[2]];
    this.opts = { ...DEFAULT_MOTION_OPTIONS, ...opts };
    this.centre = [(dims[0] - 1) / 2, (dims[1] - 1) / 2, (dims[2] - 1) / 2];
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
    // Candidates on a strided grid; gradient = central differences (the Keys interpolant's slope at the nodes).
    const cand: number[] = [];
    const mag: number[] = [];
    const grad = (v: number, i: number, n: number, st: number): number => {
      if (n < 2) return 0;
      if (i === 0) return ref[v + st] - ref[v];
      if (i === n - 1) return ref[v] - ref[v - st];
      return (ref[v + st] - ref[v - st]) / 2;
    };
    for (let k = 0; k < nz; k += stride) {
      for (let j = 0; j < ny; j += stride) {
        for (let i = 0; i < nx; i += stride) {
          const v = i + j * nx + k * nxy;
          const gx = grad(v, i, nx, 1) / sx, gy = grad(v, j, ny, nx) / sy, gz = grad(v, k, nz, nxy) / sz;
          const m = gx * gx + gy * gy + gz * gz;
          if (m > 0 && Number.isFinite(m)) { cand.push(v); mag.push(m); }
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
    this.px = new Float64Array(n); this.py = new Float64Array(n); this.pz = new Float64Array(n);
    this.rv = new Float64Array(n); this.jac = new Float64Array(6 * n);
    for (let s = 0; s < n; s++) {
      const v = cand[chosen[s]];
      const k = Math.floor(v / nxy), j = Math.floor((v - k * nxy) / nx), i = v - k * nxy - j * nx;
      const x = (i - this.centre[0]) * sx, y = (j - this.centre[1]) * sy, z = (k - this.centre[2]) * sz;
      const gx = grad(v, i, nx, 1) / sx, gy = grad(v, j, ny, nx) / sy, gz = grad(v, k, nz, nxy) / sz;
      this.px[s] = x; this.py[s] = y; this.pz[s] = z; this.rv[s] = ref[v];
      const J = this.jac;
      J[6 * s] = gx; J[6 * s + 1] = gy; J[6 * s + 2] = gz;
      J[6 * s + 3] = -gy * z + gz * y;   // ∂/∂rx: (0, −z, y)
      J[6 * s + 4] = gx * z - gz * x;    // ∂/∂ry: (z, 0, −x)
      J[6 * s + 5] = -gx * y + gy * x;   // ∂/∂rz: (−y, x, 0)
    }
    this.hasReference = n >= 6;
    if (!this.hasReference) throw new Error('the reference volume has no structure to register to (fewer than 6 voxels with a gradient)');
  }

  /** Keys-cubic sample of `vol` at voxel coordinates (u,v,w) (clamped stencil); caller checks bounds. */
  private sampleCubic(vol: Float32Array, u: number, v: number, w: number): number {
    const [nx, ny, nz] = this.dims;
    const nxy = nx * ny;
    const fu = Math.floor(u), fv = Math.floor(v), fw = Math.floor(w);
    keys(u - fu, this.wx); keys(v - fv, this.wy); keys(w - fw, this.wz);
    const ix = this.ix, iy = this.iy, iz = this.iz;
    for (let t = 0; t < 4; t++) {
      const a = fu - 1 + t, b = fv - 1 + t, c = fw - 1 + t;
      ix[t] = a < 0 ? 0 : a >= nx ? nx - 1 : a;
      iy[t] = (b < 0 ? 0 : b >= ny ? ny - 1 : b) * nx;
      iz[t] = (c < 0 ? 0 : c >= nz ? nz - 1 : c) * nxy;
    }
    const wx = this.wx, wy = this.wy, wz = this.wz;
    const x0 = ix[0], x1 = ix[1], x2 = ix[2], x3 = ix[3];
    const a0 = wx[0], a1 = wx[1], a2 = wx[2], a3 = wx[3];
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

  /** Estimates the parameters that align `moving` to the reference, starting from `init` (warm start). */
  estimate(moving: Float32Array, init: ArrayLike<number> = [0, 0, 0, 0, 0, 0]): MotionEstimate {
    if (!this.hasReference) throw new Error('motion reference not set');
    const [nx, ny, nz] = this.dims;
    const [sx, sy, sz] = this.voxelSize;
    const [cx, cy, cz] = this.centre;
    const A = paramsToMatrix(init, this.a);
    const H = this.h, bb = this.b, J = this.jac;
    const hiU = nx - 1, hiV = ny - 1, hiW = nz - 1;
    let iterations = 0, converged = false, valid = 0, sse = 0;
    const dp = [0, 0, 0, 0, 0, 0];
    for (; iterations < this.opts.maxIterations;) {
      iterations++;
      H.fill(0); bb.fill(0); valid = 0; sse = 0;
      const a00 = A[0], a01 = A[1], a02 = A[2], a03 = A[3], a10 = A[4], a11 = A[5], a12 = A[6], a13 = A[7];
      const a20 = A[8], a21 = A[9], a22 = A[10], a23 = A[11];
      for (let s = 0; s < this.n; s++) {
        const x = this.px[s], y = this.py[s], z = this.pz[s];
        const u = (a00 * x + a01 * y + a02 * z + a03) / sx + cx;
        const v = (a10 * x + a11 * y + a12 * z + a13) / sy + cy;
        const w = (a20 * x + a21 * y + a22 * z + a23) / sz + cz;
        if (u < 0 || u > hiU || v < 0 || v > hiV || w < 0 || w > hiW) continue;
        const e = this.sampleCubic(moving, u, v, w) - this.rv[s];
        valid++;
        sse += e * e;
        const o = 6 * s;
        const j0 = J[o], j1 = J[o + 1], j2 = J[o + 2], j3 = J[o + 3], j4 = J[o + 4], j5 = J[o + 5];
        bb[0] += j0 * e; bb[1] += j1 * e; bb[2] += j2 * e; bb[3] += j3 * e; bb[4] += j4 * e; bb[5] += j5 * e;
        H[0] += j0 * j0; H[1] += j0 * j1; H[2] += j0 * j2; H[3] += j0 * j3; H[4] += j0 * j4; H[5] += j0 * j5;
        H[7] += j1 * j1; H[8] += j1 * j2; H[9] += j1 * j3; H[10] += j1 * j4; H[11] += j1 * j5;
        H[14] += j2 * j2; H[15] += j2 * j3; H[16] += j2 * j4; H[17] += j2 * j5;
        H[21] += j3 * j3; H[22] += j3 * j4; H[23] += j3 * j5;
        H[28] += j4 * j4; H[29] += j4 * j5;
        H[35] += j5 * j5;
      }
      if (valid < 6) break;
      for (let r = 0; r < 6; r++) for (let c = 0; c < r; c++) H[r * 6 + c] = H[c * 6 + r];
      if (!solve6(H, bb)) break;
      dp[0] = bb[0]; dp[1] = bb[1]; dp[2] = bb[2];
      dp[3] = bb[3] / DEG; dp[4] = bb[4] / DEG; dp[5] = bb[5] / DEG;
      // Inverse compositional update: A ← A ∘ W(Δp)⁻¹.
      paramsToMatrix(dp, this.step);
      invertRigid(this.step, this.step);
      compose(A, this.step, A);
      const dMm = Math.max(Math.abs(dp[0]), Math.abs(dp[1]), Math.abs(dp[2]));
      const dDeg = Math.max(Math.abs(dp[3]), Math.abs(dp[4]), Math.abs(dp[5]));
      if (dMm < this.opts.toleranceMm && dDeg < this.opts.toleranceDeg) { converged = true; break; }
    }
    return {
      params: matrixToParams(A),
      iterations,
      converged,
      overlap: this.n ? valid / this.n : 0,
      rms: valid ? Math.sqrt(sse / valid) : NaN,
    };
  }

  /**
   * Writes `moving` resampled onto the reference grid with the given parameters into `out`
   * (out(x) = moving(T(x))); outside the moving field of view the nearest edge value is used.
   */
  resample(moving: Float32Array, params: ArrayLike<number>, out: Float32Array): Float32Array {
    const [nx, ny, nz] = this.dims;
    const nxy = nx * ny;
    const s = this.voxelSize, c = this.centre;
    const R = paramsToMatrix(params);
    // Voxel-space affine: u = Mv·i + off.
    const Mv = new Float64Array(9), off = new Float64Array(3);
    for (let r = 0; r < 3; r++) {
      let o = R[r * 4 + 3] / s[r] + c[r];
      for (let q = 0; q < 3; q++) {
        Mv[r * 3 + q] = R[r * 4 + q] * s[q] / s[r];
        o -= Mv[r * 3 + q] * c[q];
      }
      off[r] = o;
    }
    const hiU = nx - 1, hiV = ny - 1, hiW = nz - 1;
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
          if (cubic) { out[o] = this.sampleCubic(moving, uu, vv, ww); continue; }
          const iu = Math.floor(uu), iv = Math.floor(vv), iw = Math.floor(ww);
          const fu = uu - iu, fv = vv - iv, fw = ww - iw;
          const du = iu < hiU ? 1 : 0, dv = iv < hiV ? nx : 0, dw = iw < hiW ? nxy : 0;
          const p = iu + iv * nx + iw * nxy;
          const c00 = moving[p] + fu * (moving[p + du] - moving[p]);
          const c10 = moving[p + dv] + fu * (moving[p + dv + du] - moving[p + dv]);
          const c01 = moving[p + dw] + fu * (moving[p + dw + du] - moving[p + dw]);
          const c11 = moving[p + dw + dv] + fu * (moving[p + dw + dv + du] - moving[p + dw + dv]);
          const c0 = c00 + fv * (c10 - c00), c1 = c01 + fv * (c11 - c01);
          out[o] = c0 + fw * (c1 - c0);
        }
      }
    }
    return out;
  }
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
