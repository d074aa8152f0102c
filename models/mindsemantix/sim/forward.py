"""Forward model: scene → per-voxel neural response amplitude (% BOLD signal change for a 3 s presentation).

Early-visual voxels: compressive-spatial-summation pRFs (Kay 2013) over contrast-energy and colour-opponent maps.
Higher-level voxels: a smooth random readout of the world's semantic space (categories, colours, count, size, relation,
background). Readout weights = a field over normalised anatomy shared by all subjects + a subject-specific field +
voxel-specific noise, so that anatomically corresponding voxels are similarly tuned across subjects (cross-subject
pretraining helps) without being identical. Each voxel mixes the two by its hierarchy level.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from .brain import IMAGE_HALF_DEG, Anatomy, anatomy
from .features import CHANNELS, MAP_N, SEM_HIDDEN, scene_features
from .noise import NoiseModel
from .rng import stream, subject_index
from .world import N_TEST, WORLD_SEED

EVOKED_PSC = 1.5        # mean evoked response (% signal change) to any image in V1; less in higher areas
SIGNAL_PSC = 0.6        # sd across images of the stimulus-specific part (calibrated for NSD-like single-trial SNR)
TRIAL_GAIN_SD = 0.12    # trial-to-trial multiplicative gain of the evoked response (arousal/attention), shared by voxels
SEM_NOISE_SD = 1.5      # trial-to-trial variability inside the semantic space (× the space's sd across scenes): noise that
                        # lies along the tuning itself, so averaging voxels cannot remove it (information-limiting)
CSS_EXPONENT = 0.5      # compressive spatial summation exponent (applied as sqrt)
SHARED_TUNING = 0.75    # weight of the cross-subject shared tuning field
SUBJECT_TUNING = 0.45
VOXEL_TUNING = 0.35
N_REFERENCE = 160       # training scenes used to standardise drives (fixed, so every session standardises alike)
REFERENCE = list(range(N_TEST, N_TEST + N_REFERENCE))


def _prf_matrix(a: Anatomy) -> np.ndarray:
    g = (np.arange(MAP_N) - (MAP_N - 1) / 2) / (MAP_N - 1) * 2 * IMAGE_HALF_DEG
    gx, gy = np.meshgrid(g, -g)               # row 0 = top of the image = upper visual field
    cell = 2 * IMAGE_HALF_DEG / (MAP_N - 1)
    sig = np.sqrt(a.prf_size ** 2 + (cell / 2) ** 2)[:, None]
    d2 = (gx.ravel()[None] - a.prf_xy[:, :1]) ** 2 + (gy.ravel()[None] - a.prf_xy[:, 1:]) ** 2
    P = np.exp(-d2 / (2 * sig ** 2)) * (cell ** 2) / (2 * np.pi * sig ** 2)   # a pRF partly off the image gets less
    return P.astype(np.float32)


def _fourier_fields(rng, coords: np.ndarray, n: int, scale: float, n_freq: int = 24) -> np.ndarray:
    om = rng.standard_normal((n_freq, coords.shape[1])) * scale
    ph = rng.uniform(0, 2 * np.pi, n_freq)
    basis = np.sqrt(2.0 / n_freq) * np.cos(coords @ om.T + ph)        # [V, n_freq]
    return (basis @ rng.standard_normal((n_freq, n))).astype(np.float32)


class Subject:
    """One virtual subject: anatomy, forward model and noise model (deterministic in subject id and world seed)."""

    def __init__(self, subject: str, grid: str = "default", world_seed: int = WORLD_SEED):
        self.id = subject
        self.grid = grid
        self.world_seed = world_seed
        self.anat = a = anatomy(subject, grid, world_seed)
        sidx = subject_index(subject)
        rng = stream(world_seed, "forward", sidx, grid)
        V = a.voxels
        self.P = _prf_matrix(a)
        lv = a.level
        # channel weights: contrast dominates early, colour grows toward hV4 and beyond
        base = np.stack([np.full(V, 1.0), 0.5 + 0.6 * lv, 0.25 + 0.9 * lv, 0.25 + 0.9 * lv, 0.25 + 0.9 * lv, 0.25 + 0.9 * lv], 1)
        self.chan_w = (base * np.exp(0.35 * rng.standard_normal((V, len(CHANNELS))))).astype(np.float32)
        # semantic readout: the shared field depends only on the world seed and normalised anatomy (with hemisphere folded,
        # as in the ventral stream's mirrored maps); the subject field depends on the subject too.
        coords = np.column_stack([np.abs(a.norm[:, 0]), a.norm[:, 1], a.norm[:, 2]]) * 3.0
        shared = _fourier_fields(stream(world_seed, "shared-tuning"), coords, SEM_HIDDEN, 1.0)
        own = _fourier_fields(stream(world_seed, "subject-tuning", sidx), coords, SEM_HIDDEN, 1.5)
        self.sem_w = (SHARED_TUNING * shared + SUBJECT_TUNING * own + VOXEL_TUNING * rng.standard_normal((V, SEM_HIDDEN))).astype(np.float32)
        self.sem_mix = (1 / (1 + np.exp(-(lv - 0.42) / 0.07))).astype(np.float32)
        self.evoked = (EVOKED_PSC * (1 - 0.45 * lv) * np.exp(0.25 * rng.standard_normal(V))).astype(np.float32)
        # voxel "quality": how strongly its response depends on the image (skewed, as NSD's ncsnr is)
        self.gain = (SIGNAL_PSC * np.exp(0.55 * rng.standard_normal(V) - 0.15) * (1 - 0.25 * lv)).astype(np.float32)
        self.hrf_dilation = np.clip(1 + 0.08 * rng.standard_normal(V), 0.8, 1.25).astype(np.float32)
        self.motion_level = float(np.exp(0.3 * rng.standard_normal()))
        self.noise = NoiseModel(stream(world_seed, "noise-model", sidx, grid), a.xyz_mm, a.level)
        self._norm = None

    # -------------------------------------------------------------- drives
    def _raw(self, low: np.ndarray, sem: np.ndarray):
        # low [n, C, M²] → per-voxel CSS pRF drive [n, V]
        n = low.shape[0]
        drive = np.zeros((n, self.anat.voxels), np.float32)
        for c in range(low.shape[1]):
            drive += np.sqrt(np.maximum(low[:, c] @ self.P.T, 0)) * self.chan_w[:, c]  # CSS exponent 0.5
        sdrive = sem @ self.sem_w.T
        return drive, sdrive

    def _normalisers(self, images: dict | None = None):
        if self._norm is None:
            low, sem = reference_features(self.world_seed, images)
            d, s = self._raw(low, sem)
            m = (d.mean(0), d.std(0) + 1e-6, s.mean(0), s.std(0) + 1e-6)
            z = self._mix((d - m[0]) / m[1], (s - m[2]) / m[3])
            self._norm = m + (z.std(0) + 1e-6,)
            self._sem_sd = sem.std(0)
        return self._norm

    def _mix(self, zl, zs):
        w = self.sem_mix
        return (1 - 0.75 * w) * zl + w * zs

    def stimulus_drive(self, low: np.ndarray, sem: np.ndarray, images: dict | None = None) -> np.ndarray:
        """[n, V] standardised stimulus-specific drive (unit sd over the world's training scenes)."""
        m = self._normalisers(images)
        d, s = self._raw(low, sem)
        return (self._mix((d - m[0]) / m[1], (s - m[2]) / m[3]) / m[4]).astype(np.float32)

    def amplitudes(self, drive: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """[n, V] response amplitude (% signal change) of each trial: evoked × trial gain + stimulus-specific part
        + semantic-space trial variability."""
        n = drive.shape[0]
        m = self._normalisers()
        gain = 1 + TRIAL_GAIN_SD * rng.standard_normal(n).astype(np.float32)
        eps = (rng.standard_normal((n, SEM_HIDDEN)) * (SEM_NOISE_SD * self._sem_sd)).astype(np.float32)
        noise = (eps @ self.sem_w.T) * (self.sem_mix / (m[3] * m[4]))[None]
        return gain[:, None] * self.evoked[None] + (drive + noise) * self.gain[None]


@lru_cache(maxsize=2)
def _reference(world_seed: int):
    return scene_features(REFERENCE, world_seed)


def reference_features(world_seed: int, images: dict | None = None):
    return _reference(world_seed)


@lru_cache(maxsize=16)
def subject(subject_id: str, grid: str = "default", world_seed: int = WORLD_SEED) -> Subject:
    return Subject(subject_id, grid, world_seed)
