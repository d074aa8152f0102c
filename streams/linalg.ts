// Small dense linear algebra in float64 for the per-volume hot path (k ≤ ~40): no allocation in the loops.

/**
 * Pseudo-inverse of a symmetric positive semi-definite k×k matrix (row-major) by cyclic Jacobi eigen-decomposition.
 * Columns are first scaled to unit diagonal so regressors of very different scale (motion in mm, Legendre in [-1,1])
 * do not decide the rank cut; eigenvalues below `rcond`·max are dropped, which gives the same fitted values as
 * numpy's lstsq on a rank-deficient design (e.g. motion regressors that are all zero).
 */
export function symPinv(a: Float64Array, k: number, out: Float64Array, work: Float64Array, rcond = 1e-12): number {
  // work layout: [0,k²) matrix copy, [k², 2k²) eigenvectors, [2k², 2k²+k) scale
  const m = work.subarray(0, k * k),
    v = work.subarray(k * k, 2 * k * k),
    d = work.subarray(2 * k * k, 2 * k * k + k);
  for (let i = 0; i < k; i++) d[i] = a[i * k + i] > 0 ? 1 / Math.sqrt(a[i * k + i]) : 0;
  for (let i = 0; i < k; i++) for (let j = 0; j < k; j++) m[i * k + j] = a[i * k + j] * d[i] * d[j];
  v.fill(0);
  for (let i = 0; i < k; i++) v[i * k + i] = 1;
  for (let sweep = 0; sweep < 60; sweep++) {
    let off = 0;
    for (let p = 0; p < k; p++) for (let q = p + 1; q < k; q++) off += m[p * k + q] * m[p * k + q];
    if (off < 1e-30) break;
    for (let p = 0; p < k; p++) {
      for (let q = p + 1; q < k; q++) {
        const apq = m[p * k + q];
        if (Math.abs(apq) < 1e-300) continue;
        const app = m[p * k + p],
          aqq = m[q * k + q];
        const theta = (aqq - app) / (2 * apq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1),
          s = t * c;
        for (let r = 0; r < k; r++) {
          const mrp = m[r * k + p],
            mrq = m[r * k + q];
          m[r * k + p] = c * mrp - s * mrq;
          m[r * k + q] = s * mrp + c * mrq;
        }
        for (let r = 0; r < k; r++) {
          const mpr = m[p * k + r],
            mqr = m[q * k + r];
          m[p * k + r] = c * mpr - s * mqr;
          m[q * k + r] = s * mpr + c * mqr;
        }
        for (let r = 0; r < k; r++) {
          const vrp = v[r * k + p],
            vrq = v[r * k + q];
          v[r * k + p] = c * vrp - s * vrq;
          v[r * k + q] = s * vrp + c * vrq;
        }
      }
    }
  }
  let emax = 0;
  for (let i = 0; i < k; i++) emax = Math.max(emax, m[i * k + i]);
  const cut = emax * rcond;
  let rank = 0;
  out.fill(0, 0, k * k);
  for (let e = 0; e < k; e++) {
    const lam = m[e * k + e];
    if (!(lam > cut)) continue;
    rank++;
    const inv = 1 / lam;
    for (let i = 0; i < k; i++) {
      const vi = v[i * k + e] * inv;
      if (vi === 0) continue;
      for (let j = 0; j < k; j++) out[i * k + j] += vi * v[j * k + e];
    }
  }
  for (let i = 0; i < k; i++) for (let j = 0; j < k; j++) out[i * k + j] *= d[i] * d[j];
  return rank;
}

/** Legendre polynomials P_0..P_d at s ∈ [-1,1] by the three-term recurrence. */
export function legendre(s: number, d: number, out: Float64Array, offset = 0): void {
  out[offset] = 1;
  if (d >= 1) out[offset + 1] = s;
  for (let n = 2; n <= d; n++)
    out[offset + n] = ((2 * n - 1) * s * out[offset + n - 1] - (n - 1) * out[offset + n - 2]) / n;
}

/** Gauss–Legendre nodes and weights on [-1,1] (n points, exact for polynomials of degree ≤ 2n−1). */
export function gaussLegendre(n: number): { x: Float64Array; w: Float64Array } {
  const x = new Float64Array(n),
    w = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let z = Math.cos((Math.PI * (i + 0.75)) / (n + 0.5));
    let dp = 0;
    for (let it = 0; it < 100; it++) {
      let p0 = 1,
        p1 = z;
      for (let k = 2; k <= n; k++) {
        const p2 = ((2 * k - 1) * z * p1 - (k - 1) * p0) / k;
        p0 = p1;
        p1 = p2;
      }
      if (n === 1) {
        p1 = z;
        p0 = 1;
      }
      dp = (n * (z * p1 - p0)) / (z * z - 1);
      const dz = p1 / dp;
      z -= dz;
      if (Math.abs(dz) < 1e-16) break;
    }
    let p0 = 1,
      p1 = z;
    for (let k = 2; k <= n; k++) {
      const p2 = ((2 * k - 1) * z * p1 - (k - 1) * p0) / k;
      p0 = p1;
      p1 = p2;
    }
    dp = n === 1 ? 1 : (n * (z * p1 - p0)) / (z * z - 1);
    x[i] = z;
    w[i] = 2 / ((1 - z * z) * dp * dp);
  }
  return { x, w };
}
