"""Virtual subjects' anatomy in the functional (EPI) space: brain mask, tissue, baseline EPI intensity and the visual ROI
with each ROI voxel's visual area, retinotopic position and normalised anatomical coordinates.

The brain is a perturbed ellipsoid (subject-specific size, position and folding texture) with a cortical ribbon, a medial
wall and ventricles. The visual ROI (the analogue of NSD's nsdgeneral) is the grey matter of the occipital lobe and the
ventral/lateral occipito-temporal cortex, chosen as the top-K voxels of a smooth "visualness" score, with K from the NSD
nsdgeneral voxel counts of subjects 1–8 scaled to the voxel size. Early areas (V1–V3) lie along the medial calcarine
region with a log-polar retinotopic map; higher areas lie laterally/ventrally and anteriorly.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy.ndimage import gaussian_filter

from .rng import stream, subject_index
from .world import WORLD_SEED

GRIDS = {
    "default": ((64, 64, 40), 2.5),
    "nsd": ((81, 104, 83), 1.8),
}
# NSD nsdgeneral ROI sizes at 1.8 mm for subjects 1–8 (NSD data manual).
NSD_ROI_VOXELS = [15724, 14278, 15226, 13153, 13039, 17907, 12682, 14386]
AREAS = ["V1", "V2", "V3", "hV4", "higher"]
AREA_QUANTILES = [0.0, 0.15, 0.28, 0.40, 0.50, 1.0]   # fraction of ROI voxels per area, ordered by hierarchy level
IMAGE_HALF_DEG = 4.2                                  # NSD images subtend 8.4° × 8.4°


def smooth_field(rng: np.random.Generator, shape, sigma_vox: float) -> np.ndarray:
    f = gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma_vox, mode="wrap")
    return (f - f.mean()) / (f.std() + 1e-12)


@dataclass
class Anatomy:
    subject: str
    grid: str
    shape: tuple[int, int, int]
    voxel_mm: float
    affine: np.ndarray            # 4×4 RAS mm
    brain: np.ndarray             # bool volume
    baseline: np.ndarray          # float32 EPI intensity (no noise)
    roi: np.ndarray               # bool volume (visual ROI)
    roi_index: np.ndarray         # flat F-order indices of ROI voxels (ARCHITECTURE voxel order)
    xyz_mm: np.ndarray            # [V, 3] ROI voxel positions (mm)
    norm: np.ndarray              # [V, 3] normalised anatomical coords (x/ax, y/ay, z/az) — shared meaning across subjects
    level: np.ndarray             # [V] hierarchy level 0 (V1) … 1 (highest)
    area: np.ndarray              # [V] index into AREAS
    prf_xy: np.ndarray            # [V, 2] pRF centre in degrees (x right, y up)
    prf_size: np.ndarray          # [V] pRF sigma in degrees
    centre_mm: np.ndarray         # brain centre (rotation centre for head motion)

    @property
    def voxels(self) -> int:
        return int(self.roi_index.size)

    @property
    def brain_index(self) -> np.ndarray:
        return np.flatnonzero(self.brain.ravel(order="F"))


def grid_affine(shape, vs) -> np.ndarray:
    a = np.diag([vs, vs, vs, 1.0])
    a[:3, 3] = [-(shape[0] - 1) / 2 * vs, -(shape[1] - 1) / 2 * vs, -(shape[2] - 1) / 2 * vs]
    return a


def roi_size(subject: str, grid: str) -> int:
    idx = subject_index(subject)
    n = NSD_ROI_VOXELS[(idx - 1) % 8] if idx >= 1 else NSD_ROI_VOXELS[0]
    vs = GRIDS[grid][1]
    return int(round(n * (1.8 / vs) ** 3))


@lru_cache(maxsize=16)
def anatomy(subject: str, grid: str = "default", world_seed: int = WORLD_SEED) -> Anatomy:
    shape, vs = GRIDS[grid]
    rng = stream(world_seed, "anatomy", subject_index(subject))
    affine = grid_affine(shape, vs)
    scale = rng.uniform(0.94, 1.0)
    axes = np.array([64.0, 78.0, 56.0]) * scale * rng.uniform(0.97, 1.03, 3)
    centre = np.array([rng.normal(0, 1.5), 2.0 + rng.normal(0, 1.5), 12.0 + rng.normal(0, 1.5)])
    ii, jj, kk = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    x = affine[0, 0] * ii + affine[0, 3]
    y = affine[1, 1] * jj + affine[1, 3]
    z = affine[2, 2] * kk + affine[2, 3]
    xn, yn, zn = (x - centre[0]) / axes[0], (y - centre[1]) / axes[1], (z - centre[2]) / axes[2]
    # Temporal lobes: the ellipsoid is narrower at the bottom front; folding texture perturbs the surface.
    r = np.sqrt(xn ** 2 + yn ** 2 + zn ** 2) * (1 + 0.12 * np.clip(-zn, 0, None) * np.clip(yn, 0, None))
    surf = smooth_field(rng, shape, 6.0 / vs)
    fold = smooth_field(rng, shape, 3.0 / vs)
    brain = r < 1.0 + 0.03 * surf
    depth_mm = (1.0 + 0.03 * surf - r) * axes.mean()
    ribbon = depth_mm < 6.0 + 2.5 * fold
    medial = np.abs(x - centre[0]) < 5.0 + 1.5 * fold
    gm = brain & (ribbon | (medial & (r < 0.97)))
    vent = (((np.abs(x - centre[0]) - 9) / 6) ** 2 + ((y - centre[1] - 5) / 22) ** 2 + ((z - centre[2] - 8) / 9) ** 2) < 1
    csf = brain & vent & ~ribbon
    wm = brain & ~gm & ~csf
    bias = 1.0 + 0.12 * smooth_field(rng, shape, 25.0 / vs) + 0.1 * np.clip(-zn, 0, None)  # coil sensitivity
    base = np.full(shape, 25.0, np.float32)
    base[gm] = 760.0
    base[wm] = 600.0
    base[csf] = 1150.0
    base = gaussian_filter(base, 0.6) * bias * (1 + 0.03 * fold)
    base[~brain] = np.minimum(base[~brain], 40.0)
    base = base.astype(np.float32)

    # Visual ROI: posterior grey matter plus ventral occipito-temporal extension, top-K by a smooth score.
    score = -yn + 0.7 * np.clip(-zn - 0.1, 0, None) * (yn < 0.25) - 0.6 * np.clip(zn - 0.35, 0, None) + 0.12 * smooth_field(rng, shape, 8.0 / vs)
    K = roi_size(subject, grid)
    cand = np.flatnonzero((gm & (np.abs(x - centre[0]) > 0.5 * vs)).ravel(order="F"))
    sc = score.ravel(order="F")[cand]
    keep = np.sort(cand[np.argsort(-sc, kind="stable")[:K]])
    roi = np.zeros(int(np.prod(shape)), bool)
    roi[keep] = True
    roi = roi.reshape(shape, order="F")

    F = lambda a: a.ravel(order="F")[keep]  # noqa: E731
    xyz = np.stack([F(x), F(y), F(z)], 1).astype(np.float32)
    norm = np.stack([F(xn), F(yn), F(zn)], 1).astype(np.float32)
    # Hierarchy: distance from the medial calcarine line (in the normalised x–z plane) plus distance from the pole.
    zc = -0.12 + rng.normal(0, 0.03)
    dz = norm[:, 2] - zc
    dl = np.abs(norm[:, 0])
    dp = (norm[:, 1] - norm[:, 1].min()) / (np.ptp(norm[:, 1]) + 1e-9)
    q = np.sqrt((dz / 0.22) ** 2 + (dl / 0.30) ** 2) + 1.1 * dp + 0.25 * F(fold)
    level = np.empty(K, np.float32)
    level[np.argsort(q, kind="stable")] = (np.arange(K) + 0.5) / K
    area = np.searchsorted(AREA_QUANTILES[1:-1], level, side="right").astype(np.int8)
    # Retinotopy: eccentricity grows from the occipital pole forward (log map); polar angle from the calcarine offset
    # (dorsal → lower field, ventral → upper field); each hemisphere sees the contralateral hemifield.
    ecc = 0.2 * np.exp(3.2 * np.clip(dp + 0.08 * rng.standard_normal(K), 0, 1.1))
    theta = -np.pi / 2 * np.tanh(dz / 0.14) + np.deg2rad(12) * rng.standard_normal(K)
    hemi = np.sign(norm[:, 0] + 1e-6)
    prf_xy = np.stack([-hemi * ecc * np.abs(np.cos(theta)), ecc * np.sin(theta)], 1).astype(np.float32)
    prf_size = ((0.12 + 0.16 * ecc) * (1 + 3.0 * level ** 1.5) * np.exp(0.15 * rng.standard_normal(K))).astype(np.float32)
    return Anatomy(subject, grid, shape, vs, affine, brain, base, roi, keep, xyz, norm, level, area, prf_xy, prf_size, centre)
