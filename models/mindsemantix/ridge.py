"""Ridge-retrieval baseline (BrainCap-style linear): voxels → MiniLM caption embedding → nearest training caption."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F


def fit_ridge(X: np.ndarray, Y: np.ndarray, alphas=(1e1, 1e2, 1e3, 1e4, 1e5), val_frac: float = 0.2, seed: int = 0):
    """Closed-form ridge with the penalty picked on a held-out part of the training trials (never the test set).
    Returns (W [V,E], b [E], alpha)."""
    rng = np.random.default_rng(seed)
    n = X.shape[0]
    idx = rng.permutation(n)
    nv = max(1, int(n * val_frac))
    va, tr = idx[:nv], idx[nv:]

    def solve(Xt, Yt, a):
        mx, my = Xt.mean(0), Yt.mean(0)
        Xc, Yc = Xt - mx, Yt - my
        # dual form when V > n: W = Xc^T (Xc Xc^T + a I)^-1 Yc
        if Xc.shape[1] > Xc.shape[0]:
            K = Xc @ Xc.T
            W = Xc.T @ np.linalg.solve(K + a * np.eye(K.shape[0]), Yc)
        else:
            W = np.linalg.solve(Xc.T @ Xc + a * np.eye(Xc.shape[1]), Xc.T @ Yc)
        return W, my - mx @ W

    best = None
    for a in alphas:
        W, b = solve(X[tr], Y[tr], a)
        P = X[va] @ W + b
        P /= np.linalg.norm(P, axis=1, keepdims=True) + 1e-9
        T = Y[va] / (np.linalg.norm(Y[va], axis=1, keepdims=True) + 1e-9)
        score = float((P * T).sum(1).mean())
        if best is None or score > best[0]:
            best = (score, a)
    W, b = solve(X, Y, best[1])
    return W.astype(np.float32), b.astype(np.float32), best[1]


def ridge_predict(x: np.ndarray, W, b: np.ndarray) -> np.ndarray:
    """W is a matrix [V,E] or reduced-rank factors (A [V,r], B [r,E])."""
    return (x @ W[0] @ W[1] if isinstance(W, tuple) else x @ W) + b


class RidgeExport(nn.Module):
    """voxels [B,V] → caption_embedding [B,E] (normalised). W: [V,E] or reduced-rank factors (A [V,r], B [r,E])."""

    def __init__(self, W, b: np.ndarray):
        super().__init__()
        f = W if isinstance(W, tuple) else (W,)
        self.n = len(f)
        for i, m in enumerate(f):
            self.register_buffer(f"W{i}", torch.from_numpy(np.ascontiguousarray(m, dtype=np.float32)))
        self.register_buffer("b", torch.from_numpy(np.ascontiguousarray(b, dtype=np.float32)))

    def forward(self, voxels):
        h = voxels @ self.W0
        if self.n == 2:
            h = h @ self.W1
        return F.normalize(h + self.b, dim=-1)


def retrieve(pred: np.ndarray, bank: np.ndarray, captions: list[str]) -> list[str]:
    """Nearest caption (cosine) for each predicted embedding."""
    p = pred / (np.linalg.norm(pred, axis=1, keepdims=True) + 1e-9)
    return [captions[i] for i in (p @ bank.T).argmax(1)]
