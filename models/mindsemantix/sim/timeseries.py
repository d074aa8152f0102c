"""ROI voxel time series of one run: trial amplitudes → HRF → BOLD at the TR, plus the full noise model.

Used both by the BIDS session writer (which then places these values into whole volumes and moves the head) and by the
fast training-data path (ROI voxels only; head motion enters as its post-realignment residual)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .design import STIM_S, RunDesign
from .forward import Subject
from .hrf import boxcar_regressors
from .noise import THERMAL_SD, motion_trace

N_HRF_BINS = 5


def thermal_sd(grid_voxel_mm: float) -> float:
    """Thermal noise (intensity units) grows as voxels shrink (∝ volume^-1/2 at fixed time; 1.8 mm ≈ 7T-like tSNR)."""
    return THERMAL_SD * (2.5 / grid_voxel_mm) ** 1.5


@dataclass
class RunSignals:
    psc: np.ndarray          # [T, V] % signal change in ROI voxels (signal + structured noise + thermal)
    signal: np.ndarray       # [T, V] noise-free BOLD (% signal change)
    motion: np.ndarray       # [T, 6] ground-truth rigid motion (mm, deg)
    amplitudes: np.ndarray   # [n_trials, V] neural amplitudes used


def bold_signal(subj: Subject, design: RunDesign, amps: np.ndarray) -> np.ndarray:
    times = design.times
    dil = subj.hrf_dilation
    edges = np.quantile(dil, np.linspace(0, 1, N_HRF_BINS + 1))
    bins = np.clip(np.searchsorted(edges[1:-1], dil, side="right"), 0, N_HRF_BINS - 1)
    out = np.zeros((len(times), amps.shape[1]), np.float32)
    for b in range(N_HRF_BINS):
        sel = bins == b
        if not sel.any():
            continue
        X = boxcar_regressors(times, design.onsets, STIM_S, dilation=float(np.median(dil[sel]))).astype(np.float32)
        out[:, sel] = X @ amps[:, sel]
    return out


def simulate_run(subj: Subject, design: RunDesign, drive: np.ndarray, rng: np.random.Generator,
                 residual_motion: bool = True, thermal: bool = True) -> RunSignals:
    """drive: [n_trials, V] standardised stimulus drive of the run's trials (Subject.stimulus_drive)."""
    amps = subj.amplitudes(drive, rng)
    sig = bold_signal(subj, design, amps)
    motion = motion_trace(rng, design.n_volumes, design.tr, subj.motion_level)
    Y = sig + subj.noise.run(rng, design.times, motion, residual_motion=residual_motion)
    if thermal:
        base = subj.anat.baseline.ravel(order="F")[subj.anat.roi_index]
        Y += rng.standard_normal(Y.shape).astype(np.float32) * (100.0 * thermal_sd(subj.anat.voxel_mm) / base)[None]
    return RunSignals(Y, sig, motion, amps)
