"""Noise model of the simulated BOLD signal (all amplitudes in % of the voxel's baseline unless said otherwise).

Components (see docs/simulator.md for the values and why):
- thermal: white Gaussian in image intensity units (constant across the image, so larger in % where the image is dark);
- intrinsic: AR(1) fluctuation (time constant TAU_AR s), part spatially shared through smooth low-rank loadings;
- physiological: cardiac (~1.1 Hz) and respiratory (~0.27 Hz) oscillations with wandering frequency, aliased by the TR;
- drift: slow scanner drift (linear + very-low-frequency random walk) with per-voxel weights;
- global: a slow shared fluctuation with per-voxel loading around 1;
- head motion: rigid 6-parameter traces (random walk with mean reversion, a respiration-locked component and occasional
  jumps); in volumes it moves the head; in ROI-only simulation it leaves the residual that realignment cannot remove
  (voxel-specific linear dependence on the parameters and spin-history spikes on jumps).
"""
from __future__ import annotations

import numpy as np
from scipy.signal import lfilter

THERMAL_SD = 9.0            # intensity units at 2.5 mm (GM baseline ≈ 760 → ≈ 1.2 %)
AR_SD = 0.9
TAU_AR = 2.0
AR_SHARED = 0.5             # fraction of AR variance carried by 8 spatially smooth latent sources
PHYS_CARDIAC_SD = 0.35
PHYS_RESP_SD = 0.35
DRIFT_SD = 1.0
GLOBAL_SD = 0.4
MOTION_RESID_PER_MM = 0.35  # % per mm (or per degree) of displacement, per voxel, sd
SPIN_HISTORY_PER_MM = 1.0   # % per mm of framewise displacement, sd


def rff_fields(rng: np.random.Generator, xyz_mm: np.ndarray, n: int, length_mm: float, n_freq: int = 64) -> np.ndarray:
    """[V, n] smooth random fields (unit variance) evaluated at positions — works on ROI or whole-brain voxels alike."""
    om = rng.standard_normal((n, n_freq, 3)) / length_mm
    ph = rng.uniform(0, 2 * np.pi, (n, n_freq))
    out = np.empty((xyz_mm.shape[0], n), np.float32)
    for k in range(n):
        out[:, k] = np.sqrt(2.0 / n_freq) * np.cos(xyz_mm @ om[k].T + ph[k]).sum(1)
    return out


def ar1(rng, T: int, n: int, rho: float) -> np.ndarray:
    """Stationary unit-variance AR(1) series, [T, n]."""
    s = np.sqrt(1 - rho ** 2)
    e = rng.standard_normal((T, n))
    e[0] /= s  # so that x[0] ~ N(0, 1): the process starts in its stationary state
    return lfilter([s], [1.0, -rho], e, axis=0)


def motion_trace(rng: np.random.Generator, T: int, tr: float, level: float = 1.0) -> np.ndarray:
    """[T, 6]: trans x, y, z (mm), rot x, y, z (deg). level scales the subject's motion."""
    m = np.zeros((T, 6))
    rho = 0.97
    innov = np.array([0.025, 0.035, 0.045, 0.03, 0.02, 0.02]) * level
    for k in range(6):
        m[:, k] = lfilter([1.0], [1.0, -rho], rng.standard_normal(T) * innov[k])
    t = np.arange(T) * tr
    m[:, :3] += np.outer(t / max(t[-1], 1), rng.normal(0, 0.15 * level, 3))            # slow creep
    f_resp = rng.normal(0.27, 0.03)
    m[:, 2] += 0.02 * level * np.sin(2 * np.pi * f_resp * t + rng.uniform(0, 2 * np.pi))  # breathing
    n_jump = rng.poisson(0.004 * T * level)
    for _ in range(n_jump):
        at = rng.integers(1, T)
        size = np.concatenate([rng.normal(0, 0.5, 3), rng.normal(0, 0.4, 3)]) * level
        back = rng.random() < 0.5   # half the jumps are brief (head returns)
        dur = rng.integers(1, 4) if back else T
        m[at:at + dur] += size
    return m


def framewise_displacement(m: np.ndarray, radius_mm: float = 50.0) -> np.ndarray:
    d = np.abs(np.diff(m, axis=0, prepend=m[:1]))
    return d[:, :3].sum(1) + np.deg2rad(d[:, 3:]).sum(1) * radius_mm


class NoiseModel:
    """Structured (non-thermal) noise for a fixed set of voxels; one instance per subject, new time courses per run."""

    def __init__(self, rng: np.random.Generator, xyz_mm: np.ndarray, level: np.ndarray | None = None, n_freq: int = 64):
        V = xyz_mm.shape[0]
        self.V = V
        self.ar_load = rff_fields(rng, xyz_mm, 8, 15.0, n_freq) * np.sqrt(AR_SHARED / 8)
        self.ar_indep = np.sqrt(1 - AR_SHARED)
        f = rff_fields(rng, xyz_mm, 4, 20.0, n_freq)
        self.card_load = PHYS_CARDIAC_SD * np.sqrt(2) * np.abs(f[:, 0]) * 0.8
        self.resp_load = PHYS_RESP_SD * np.sqrt(2) * np.abs(f[:, 1]) * 0.8
        self.card_phase = f[:, 2] * 1.5
        self.resp_phase = f[:, 3] * 1.5
        self.drift_load = rng.standard_normal((V, 3)) * DRIFT_SD / np.sqrt(3)
        self.global_load = 1 + 0.3 * rng.standard_normal(V)
        self.motion_load = rng.standard_normal((V, 6)) * MOTION_RESID_PER_MM * np.abs(rng.standard_t(3, (V, 1))) / 1.7
        self.spin_load = np.abs(rng.standard_normal(V)) * SPIN_HISTORY_PER_MM

    def run(self, rng: np.random.Generator, times: np.ndarray, motion: np.ndarray | None, residual_motion: bool) -> np.ndarray:
        """[T, V] float32 % signal change of all structured components for one run."""
        T, V = len(times), self.V
        tr = times[1] - times[0] if T > 1 else 1.6
        rho = np.exp(-tr / TAU_AR)
        lat = ar1(rng, T, 8, rho)
        Y = (lat @ self.ar_load.T) * AR_SD
        Y += ar1(rng, T, V, rho).astype(np.float32) * (AR_SD * self.ar_indep)
        # physiology: frequencies wander slowly; sampling at the TR aliases them.
        fc = rng.normal(1.1, 0.08) + 0.03 * np.cumsum(rng.standard_normal(T)) / np.sqrt(T)
        fr = rng.normal(0.27, 0.03) + 0.01 * np.cumsum(rng.standard_normal(T)) / np.sqrt(T)
        pc = 2 * np.pi * np.cumsum(fc * tr) + rng.uniform(0, 2 * np.pi)
        pr = 2 * np.pi * np.cumsum(fr * tr) + rng.uniform(0, 2 * np.pi)
        Y += np.sin(pc[:, None] + self.card_phase[None]) * self.card_load[None]
        Y += np.sin(pr[:, None] + self.resp_phase[None]) * self.resp_load[None]
        # drift: linear, quadratic-ish random walk, very slow sinusoid
        x = np.linspace(-1, 1, T)
        rw = np.cumsum(rng.standard_normal(T))
        rw = lfilter([0.05], [1, -0.95], rw - rw.mean())
        rw = (rw - rw.mean()) / (rw.std() + 1e-9)
        D = np.stack([x, rw, np.cos(np.pi * x * rng.uniform(0.5, 1.5))], 1)
        Y += D @ self.drift_load.T
        g = ar1(rng, T, 1, np.exp(-tr / 6.0))[:, 0] * GLOBAL_SD
        Y += g[:, None] * self.global_load[None]
        if residual_motion and motion is not None:
            mc = motion - motion.mean(0)
            Y += mc @ self.motion_load.T
            Y += framewise_displacement(motion)[:, None] * self.spin_load[None]  # spin-history spikes at jumps
        return Y.astype(np.float32)
