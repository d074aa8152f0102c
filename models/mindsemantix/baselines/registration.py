"""Independent rigid registration with scipy: least squares over all voxels inside the field of view of
cubic-spline-interpolated moving values against the reference (scipy.optimize.least_squares, numeric Jacobian)."""
import numpy as np
from scipy import ndimage, optimize

from .rigid import grid, matrix_to_params, params_to_matrix, voxel_affine


def register(moving, ref, vox, init=None, sample_step=1, tight=True):
    """tight: tolerances for an oracle; tight=False uses scipy's defaults (the benchmark baseline)."""
    dims = ref.shape
    coeffs = ndimage.spline_filter(moving.astype(np.float64), order=3, mode="nearest")
    g = grid(dims)
    if sample_step > 1:
        sel = np.all(np.indices(dims).reshape(3, -1) % sample_step == 0, axis=0)
        g = g[:, sel]
    rvals = ref.reshape(-1, order="C")[np.ravel_multi_index(g.astype(int), dims)]
    hi = np.asarray(dims, float)[:, None] - 1

    def resid(p):
        A = voxel_affine(params_to_matrix(p), dims, vox)
        c = A[:3, :3] @ g + A[:3, 3:4]
        inside = np.all((c >= 0) & (c <= hi), axis=0)
        v = ndimage.map_coordinates(coeffs, c, order=3, mode="nearest", prefilter=False)
        return np.where(inside, v - rvals, 0.0)

    p0 = np.zeros(6) if init is None else np.asarray(init, float)
    tol = dict(xtol=1e-12, ftol=1e-14, gtol=1e-12) if tight else {}
    r = optimize.least_squares(resid, p0, method="trf", diff_step=1e-4, x_scale=np.ones(6), **tol)
    return matrix_to_params(params_to_matrix(r.x))
