// Rigid-body (6 DOF) transforms. Convention (documented in docs/preprocessing.md):
// coordinates are mm along the image's voxel axes, centred on the volume centre; parameters
// [tx, ty, tz] mm and [rx, ry, rz] degrees give y = Rz·Ry·Rx·x + t, mapping a point of the reference
// to where the same tissue sits in the moving volume (the head's displacement since the reference).

export type MotionParams = [number, number, number, number, number, number];

const DEG = Math.PI / 180;

/** 3×4 row-major matrix [R | t] (12 numbers) from parameters. */
export function paramsToMatrix(p: ArrayLike<number>, out: Float64Array = new Float64Array(12)): Float64Array {
  const cx = Math.cos(p[3] * DEG),
    sx = Math.sin(p[3] * DEG);
  const cy = Math.cos(p[4] * DEG),
    sy = Math.sin(p[4] * DEG);
  const cz = Math.cos(p[5] * DEG),
    sz = Math.sin(p[5] * DEG);
  out[0] = cz * cy;
  out[1] = cz * sy * sx - sz * cx;
  out[2] = cz * sy * cx + sz * sx;
  out[3] = p[0];
  out[4] = sz * cy;
  out[5] = sz * sy * sx + cz * cx;
  out[6] = sz * sy * cx - cz * sx;
  out[7] = p[1];
  out[8] = -sy;
  out[9] = cy * sx;
  out[10] = cy * cx;
  out[11] = p[2];
  return out;
}

/** Parameters from a 3×4 rigid matrix (inverse of paramsToMatrix for |ry| < 90°). */
export function matrixToParams(m: ArrayLike<number>, out: number[] | MotionParams = [0, 0, 0, 0, 0, 0]): MotionParams {
  const ry = Math.asin(Math.max(-1, Math.min(1, -m[8])));
  const rx = Math.atan2(m[9], m[10]);
  const rz = Math.atan2(m[4], m[0]);
  out[0] = m[3];
  out[1] = m[7];
  out[2] = m[11];
  out[3] = rx / DEG;
  out[4] = ry / DEG;
  out[5] = rz / DEG;
  return out as MotionParams;
}

/** a∘b (apply b, then a), both 3×4. */
export function compose(
  a: ArrayLike<number>,
  b: ArrayLike<number>,
  out: Float64Array = new Float64Array(12),
): Float64Array {
  const r = new Float64Array(12);
  for (let i = 0; i < 3; i++) {
    for (let j = 0; j < 4; j++) {
      let s = j === 3 ? a[i * 4 + 3] : 0;
      for (let k = 0; k < 3; k++) s += a[i * 4 + k] * b[k * 4 + j];
      r[i * 4 + j] = s;
    }
  }
  out.set(r);
  return out;
}

/** Inverse of a rigid 3×4 matrix: [Rᵀ | −Rᵀt]. */
export function invertRigid(a: ArrayLike<number>, out: Float64Array = new Float64Array(12)): Float64Array {
  const r = new Float64Array(12);
  for (let i = 0; i < 3; i++) {
    for (let j = 0; j < 3; j++) r[i * 4 + j] = a[j * 4 + i];
    r[i * 4 + 3] = -(a[0 * 4 + i] * a[3] + a[1 * 4 + i] * a[7] + a[2 * 4 + i] * a[11]);
  }
  out.set(r);
  return out;
}

/** Framewise displacement (Power et al. 2012): Σ|Δt| + radius·Σ|Δr| (r in radians), default radius 50 mm. */
export function framewiseDisplacement(prev: ArrayLike<number>, cur: ArrayLike<number>, radiusMm = 50): number {
  let fd = 0;
  for (let i = 0; i < 3; i++) fd += Math.abs(cur[i] - prev[i]);
  for (let i = 3; i < 6; i++) fd += radiusMm * Math.abs(cur[i] - prev[i]) * DEG;
  return fd;
}

/** Voxel sizes (mm) from a row-major 4×4 affine: the norms of its first three columns. */
export function voxelSizes(affine: ArrayLike<number>): [number, number, number] {
  const s: number[] = [];
  for (let j = 0; j < 3; j++) s.push(Math.hypot(affine[j], affine[4 + j], affine[8 + j]) || 1);
  return s as [number, number, number];
}
