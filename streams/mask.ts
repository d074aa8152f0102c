// ROI masking (voxel values at the mask's nonzero voxels, x fastest) and optional separable Gaussian smoothing.

/** Indices of the mask's nonzero voxels in x-fastest order. */
export function maskIndices(mask: Uint8Array): Uint32Array {
  let n = 0;
  for (let i = 0; i < mask.length; i++) if (mask[i]) n++;
  const idx = new Uint32Array(n);
  for (let i = 0, j = 0; i < mask.length; i++) if (mask[i]) idx[j++] = i;
  return idx;
}

/** Gathers the ROI vector of `vol` at `indices` into out. */
export function maskVolume(
  vol: Float32Array,
  indices: Uint32Array,
  out: Float32Array = new Float32Array(indices.length),
): Float32Array {
  for (let j = 0; j < indices.length; j++) out[j] = vol[indices[j]];
  return out;
}

/** 1-D Gaussian kernel for a FWHM in voxels, truncated at 3σ and normalised to sum 1. */
export function gaussianKernel(fwhmVoxels: number): Float64Array {
  const sigma = fwhmVoxels / (2 * Math.sqrt(2 * Math.log(2)));
  const r = Math.max(1, Math.ceil(3 * sigma));
  const k = new Float64Array(2 * r + 1);
  let s = 0;
  for (let i = -r; i <= r; i++) s += k[i + r] = Math.exp(-(i * i) / (2 * sigma * sigma));
  for (let i = 0; i < k.length; i++) k[i] /= s;
  return k;
}

/**
 * Separable Gaussian smoothing with FWHM in mm, in place on `vol` (x fastest); `tmp` is a scratch buffer of the
 * same length. Edges renormalise the truncated kernel, so a constant image stays constant.
 */
export function gaussianSmooth(
  vol: Float32Array,
  dims: readonly [number, number, number],
  voxelSize: readonly [number, number, number],
  fwhmMm: number,
  tmp: Float32Array = new Float32Array(vol.length),
): Float32Array {
  if (!(fwhmMm > 0)) return vol;
  const [nx, ny, nz] = dims;
  const strides = [1, nx, nx * ny];
  for (let axis = 0; axis < 3; axis++) {
    const n = dims[axis];
    if (n < 2) continue;
    const k = gaussianKernel(fwhmMm / voxelSize[axis]);
    const r = (k.length - 1) / 2,
      st = strides[axis];
    const src = vol,
      dst = tmp;
    for (let z = 0; z < nz; z++) {
      for (let y = 0; y < ny; y++) {
        for (let x = 0; x < nx; x++) {
          const pos = axis === 0 ? x : axis === 1 ? y : z;
          const o = x + y * nx + z * nx * ny;
          let s = 0,
            ws = 0;
          const lo = Math.max(-r, -pos),
            hi = Math.min(r, n - 1 - pos);
          for (let i = lo; i <= hi; i++) {
            const w = k[i + r];
            s += w * src[o + i * st];
            ws += w;
          }
          dst[o] = s / ws;
        }
      }
    }
    vol.set(dst);
  }
  return vol;
}
