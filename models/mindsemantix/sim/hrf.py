"""Canonical double-gamma haemodynamic response (SPM's shape: response gamma shape 6, undershoot shape 16, ratio 1/6)."""
from __future__ import annotations

import numpy as np
from math import lgamma


def _gamma_pdf(t: np.ndarray, shape: float) -> np.ndarray:
    out = np.zeros_like(t, dtype=np.float64)
    pos = t > 0
    out[pos] = np.exp((shape - 1) * np.log(t[pos]) - t[pos] - lgamma(shape))
    return out


def hrf(t: np.ndarray, dilation: float = 1.0) -> np.ndarray:
    """HRF at times t (s), peak-normalised to 1. dilation > 1 stretches it (later peak)."""
    t = np.atleast_1d(np.asarray(t, np.float64)) / dilation
    h = _gamma_pdf(t, 6.0) - _gamma_pdf(t, 16.0) / 6.0
    five = np.array([5.0])
    peak = (_gamma_pdf(five, 6.0) - _gamma_pdf(five, 16.0) / 6.0)[0]
    return h / peak


def boxcar_regressors(times: np.ndarray, onsets: np.ndarray, duration: float, dilation: float = 1.0, dt: float = 0.1) -> np.ndarray:
    """[len(times), len(onsets)]: each event's boxcar (`duration` s) convolved with the HRF, sampled at `times`
    (unit = response to a sustained input of amplitude 1 normalised so that a 3 s event peaks near 1)."""
    kern_t = np.arange(0, 32, dt)
    k = hrf(kern_t, dilation)
    box_t = np.arange(0, duration, dt)
    resp = np.convolve(np.ones_like(box_t), k)[: len(kern_t) + len(box_t) - 1] * dt
    resp_t = np.arange(len(resp)) * dt
    resp /= max(resp.max(), 1e-12)
    out = np.zeros((len(times), len(onsets)))
    for j, on in enumerate(onsets):
        out[:, j] = np.interp(np.asarray(times) - on, resp_t, resp, left=0.0, right=0.0)
    return out
