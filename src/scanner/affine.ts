// 4×4 affines are row-major number[16] (as nibabel's img.affine.ravel()), mapping voxel (i,j,k,1) to RAS+ mm.

export type Mat3 = [number, number, number, number, number, number, number, number, number];

/** Affine from three column vectors (the voxel axes in mm) and the position of voxel 0. */
export function affineFromColumns(cx: number[], cy: number[], cz: number[], origin: number[]): number[] {
  return [cx[0], cy[0], cz[0], origin[0], cx[1], cy[1], cz[1], origin[1], cx[2], cy[2], cz[2], origin[2], 0, 0, 0, 1];
}

export function column(a: number[], j: number): [number, number, number] {
  return [a[j], a[4 + j], a[8 + j]];
}

export function norm3(v: number[]): number {
  return Math.hypot(v[0], v[1], v[2]);
}

export function cross3(a: number[], b: number[]): [number, number, number] {
  return [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];
}

export function dot3(a: number[], b: number[]): number {
  return a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
}

function det3(m: Mat3): number {
  return m[0] * (m[4] * m[8] - m[5] * m[7]) - m[1] * (m[3] * m[8] - m[5] * m[6]) + m[2] * (m[3] * m[7] - m[4] * m[6]);
}

/** Inverse transpose of a 3×3 (row-major), used by the polar decomposition. */
function invTranspose3(m: Mat3): Mat3 {
  const d = det3(m);
  // cofactor matrix / det = inverse transpose
  return [
    (m[4] * m[8] - m[5] * m[7]) / d,
    -(m[3] * m[8] - m[5] * m[6]) / d,
    (m[3] * m[7] - m[4] * m[6]) / d,
    -(m[1] * m[8] - m[2] * m[7]) / d,
    (m[0] * m[8] - m[2] * m[6]) / d,
    -(m[0] * m[7] - m[1] * m[6]) / d,
    (m[1] * m[5] - m[2] * m[4]) / d,
    -(m[0] * m[5] - m[2] * m[3]) / d,
    (m[0] * m[4] - m[1] * m[3]) / d,
  ];
}

/** Nearest orthogonal matrix (polar decomposition by Newton iteration), so a slightly sheared affine still gives a valid qform. */
function nearestOrthogonal(m: Mat3): Mat3 {
  let x = m.slice() as Mat3;
  for (let it = 0; it < 50; it++) {
    const y = invTranspose3(x);
    let delta = 0;
    const next = x.map((v, i) => 0.5 * (v + y[i])) as Mat3;
    for (let i = 0; i < 9; i++) delta = Math.max(delta, Math.abs(next[i] - x[i]));
    x = next;
    if (delta < 1e-14) break;
  }
  return x;
}

export interface Qform {
  b: number;
  c: number;
  d: number;
  qfac: 1 | -1;
  pixdim: [number, number, number];
  offset: [number, number, number];
}

/** Affine → NIfTI quaternion parameters (same rules as nifti_mat44_to_quatern: column norms, polar decomposition, qfac). */
export function affineToQform(a: number[]): Qform {
  const cols = [column(a, 0), column(a, 1), column(a, 2)];
  const pixdim = cols.map((c) => norm3(c) || 1) as [number, number, number];
  const unit = cols.map((c, j) => c.map((v) => v / pixdim[j]));
  // row-major 3×3 with the unit columns
  let r: Mat3 = [
    unit[0][0],
    unit[1][0],
    unit[2][0],
    unit[0][1],
    unit[1][1],
    unit[2][1],
    unit[0][2],
    unit[1][2],
    unit[2][2],
  ];
  if (det3(r) === 0) r = [1, 0, 0, 0, 1, 0, 0, 0, 1];
  r = nearestOrthogonal(r);
  let qfac: 1 | -1 = 1;
  if (det3(r) < 0) {
    qfac = -1;
    r[2] = -r[2];
    r[5] = -r[5];
    r[8] = -r[8];
  }
  const [r11, r12, r13, r21, r22, r23, r31, r32, r33] = r;
  let qa: number, qb: number, qc: number, qd: number;
  const tr = r11 + r22 + r33 + 1;
  if (tr > 0.5) {
    qa = 0.5 * Math.sqrt(tr);
    qb = (0.25 * (r32 - r23)) / qa;
    qc = (0.25 * (r13 - r31)) / qa;
    qd = (0.25 * (r21 - r12)) / qa;
  } else {
    const xd = 1 + r11 - (r22 + r33),
      yd = 1 + r22 - (r11 + r33),
      zd = 1 + r33 - (r11 + r22);
    if (xd > 1) {
      qb = 0.5 * Math.sqrt(xd);
      qc = (0.25 * (r12 + r21)) / qb;
      qd = (0.25 * (r13 + r31)) / qb;
      qa = (0.25 * (r32 - r23)) / qb;
    } else if (yd > 1) {
      qc = 0.5 * Math.sqrt(yd);
      qb = (0.25 * (r12 + r21)) / qc;
      qd = (0.25 * (r23 + r32)) / qc;
      qa = (0.25 * (r13 - r31)) / qc;
    } else {
      qd = 0.5 * Math.sqrt(zd);
      qb = (0.25 * (r13 + r31)) / qd;
      qc = (0.25 * (r23 + r32)) / qd;
      qa = (0.25 * (r21 - r12)) / qd;
    }
    if (qa < 0) {
      qb = -qb;
      qc = -qc;
      qd = -qd;
    }
  }
  return { b: qb, c: qc, d: qd, qfac, pixdim, offset: [a[3], a[7], a[11]] };
}

/**
 * NIfTI quaternion → affine, as nibabel's get_qform: a = sqrt(1 - b² - c² - d²) (0 when within float32 rounding of 0),
 * rotation scaled by pixdim with qfac on the third column.
 */
export function qformToAffine(
  b: number,
  c: number,
  d: number,
  qfac: number,
  pixdim: number[],
  offset: number[],
): number[] {
  const w2 = 1 - (b * b + c * c + d * d);
  // As nibabel: |w²| below 3 float32 epsilons is float32 rounding of a 180° rotation, so w = 0 (sqrt would give up to 6e-4).
  const a = Math.abs(w2) < 3 * 2 ** -23 || w2 < 0 ? 0 : Math.sqrt(w2);
  const n = a * a + b * b + c * c + d * d;
  const s = n < 1e-12 ? 0 : 2 / n;
  let rot: Mat3;
  if (s === 0) rot = [1, 0, 0, 0, 1, 0, 0, 0, 1];
  else {
    const X = b * s,
      Y = c * s,
      Z = d * s;
    const wX = a * X,
      wY = a * Y,
      wZ = a * Z,
      xX = b * X,
      xY = b * Y,
      xZ = b * Z,
      yY = c * Y,
      yZ = c * Z,
      zZ = d * Z;
    rot = [1 - (yY + zZ), xY - wZ, xZ + wY, xY + wZ, 1 - (xX + zZ), yZ - wX, xZ - wY, yZ + wX, 1 - (xX + yY)];
  }
  const q = qfac === -1 ? -1 : 1;
  const [dx, dy, dz] = [pixdim[0], pixdim[1], pixdim[2] * q];
  return [
    rot[0] * dx,
    rot[1] * dy,
    rot[2] * dz,
    offset[0],
    rot[3] * dx,
    rot[4] * dy,
    rot[5] * dz,
    offset[1],
    rot[6] * dx,
    rot[7] * dy,
    rot[8] * dz,
    offset[2],
    0,
    0,
    0,
    1,
  ];
}
