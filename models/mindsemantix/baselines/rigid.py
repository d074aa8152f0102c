"""Rigid transforms with the same convention as streams/rigid.ts: mm along the voxel axes, centred on the volume
centre; y = Rz·Ry·Rx·x + t maps a reference point to where it sits in the moving volume."""
import numpy as np
from scipy import ndimage


def params_to_matrix(p):
    tx, ty, tz = p[:3]
    rx, ry, rz = np.deg2rad(np.asarray(p[3:6], dtype=float))
    cx, sx, cy, sy, cz, sz = np.cos(rx), np.sin(rx), np.cos(ry), np.sin(ry), np.cos(rz), np.sin(rz)
    Rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    Ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    Rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    m = np.eye(4)
    m[:3, :3] = Rz @ Ry @ Rx
    m[:3, 3] = [tx, ty, tz]
    return m


def matrix_to_params(m):
    ry = np.arcsin(np.clip(-m[2, 0], -1, 1))
    rx = np.arctan2(m[2, 1], m[2, 2])
    rz = np.arctan2(m[1, 0], m[0, 0])
    return np.array([m[0, 3], m[1, 3], m[2, 3], np.rad2deg(rx), np.rad2deg(ry), np.rad2deg(rz)])


def voxel_affine(m, dims, vox):
    """The mm-space rigid matrix as a voxel-index → voxel-index affine (4×4)."""
    c = (np.asarray(dims, float) - 1) / 2
    S = np.diag(list(vox) + [1.0])
    C = np.eye(4)
    C[:3, 3] = -c
    return np.linalg.inv(C) @ np.linalg.inv(S) @ m @ S @ C


def grid(dims):
    return np.indices(dims, dtype=float).reshape(3, -1)


def warp(vol, m, vox, order=3, mode="mirror"):
    """out(x) = vol(T(x)) for every voxel x of vol's grid (T given as mm matrix m)."""
    A = voxel_affine(m, vol.shape, vox)
    g = grid(vol.shape)
    coords = A[:3, :3] @ g + A[:3, 3:4]
    return ndimage.map_coordinates(vol, coords, order=order, mode=mode).reshape(vol.shape)


def apply_motion(ref, params, vox, order=3):
    """A volume whose content is the reference moved by `params`: moved(y) = ref(T⁻¹(y))."""
    return warp(ref, np.linalg.inv(params_to_matrix(params)), vox, order=order)
