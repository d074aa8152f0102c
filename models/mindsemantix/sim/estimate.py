"""Trial-response estimators shared by the simulator's training data and documented for the online path.

- window-mean: per run, remove a quadratic (Legendre order 2) trend, z-score each voxel over the run, then average the
  volumes whose acquisition time lies in [onset + 4 s, onset + 8 s].
- lss-beta: least-squares-separate single-trial GLM (Mumford 2012): for each trial a model with that trial's regressor, one
  regressor for all other trials and the quadratic trend; canonical double-gamma HRF, 3 s boxcar.
"""
from __future__ import annotations

import numpy as np

from .design import STIM_S
from .hrf import boxcar_regressors

WINDOW = (4.0, 8.0)
DETREND_ORDER = 2


def trend_basis(n: int, order: int = DETREND_ORDER) -> np.ndarray:
    x = np.linspace(-1, 1, n)
    return np.stack([np.polynomial.legendre.Legendre.basis(k)(x) for k in range(order + 1)], 1)


def detrend_zscore(Y: np.ndarray, order: int = DETREND_ORDER) -> np.ndarray:
    B = trend_basis(Y.shape[0], order)
    coef, *_ = np.linalg.lstsq(B, Y, rcond=None)
    R = Y - B @ coef
    sd = R.std(0)
    sd[sd == 0] = 1
    return (R / sd).astype(np.float32)


def window_mean(Z: np.ndarray, times: np.ndarray, onsets: np.ndarray, window=WINDOW) -> np.ndarray:
    out = np.empty((len(onsets), Z.shape[1]), np.float32)
    for i, on in enumerate(onsets):
        sel = (times >= on + window[0] - 1e-6) & (times <= on + window[1] + 1e-6)
        if not sel.any():
            sel = np.abs(times - (on + sum(window) / 2)) == np.abs(times - (on + sum(window) / 2)).min()
        out[i] = Z[sel].mean(0)
    return out


def lss_betas(Y: np.ndarray, times: np.ndarray, onsets: np.ndarray, duration: float = STIM_S) -> np.ndarray:
    X = boxcar_regressors(times, onsets, duration)
    N = trend_basis(Y.shape[0])
    total = X.sum(1)
    rows = np.empty((len(onsets), Y.shape[0]))
    for i in range(len(onsets)):
        D = np.column_stack([X[:, i], total - X[:, i], N])
        rows[i] = np.linalg.pinv(D)[0]
    return (rows @ Y).astype(np.float32)


def zscore_rows(B: np.ndarray) -> np.ndarray:
    sd = B.std(0)
    sd[sd == 0] = 1
    return ((B - B.mean(0)) / sd).astype(np.float32)


def ncsnr(resp: np.ndarray, scene_ids: np.ndarray) -> np.ndarray:
    """NSD noise-ceiling SNR per voxel from trials of scenes shown ≥2 times (responses z-scored beforehand)."""
    ids, inv, counts = np.unique(scene_ids, return_inverse=True, return_counts=True)
    rep = counts[inv] >= 2
    r, inv_r = resp[rep], inv[rep]
    groups = np.unique(inv_r)
    var = np.zeros(resp.shape[1])
    for g in groups:
        var += r[inv_r == g].var(0, ddof=1)
    noise_var = var / len(groups)
    total_var = r.var(0, ddof=1)
    sig_var = np.clip(total_var - noise_var, 0, None)
    return np.sqrt(sig_var) / np.sqrt(noise_var)


def noise_ceiling(snr: np.ndarray, n: int) -> np.ndarray:
    """% of variance explainable when averaging n trials (Allen et al. 2022)."""
    return 100 * snr ** 2 / (snr ** 2 + 1.0 / n)
