"""Ridge regression with its penalty chosen on held-out training trials: the one implementation behind the bundle's
ridge-retrieval baseline (BrainCap-style linear: voxels → MiniLM caption embedding → nearest training caption) and the
simulator's ridge decoder (sim/evaluate.py).

Not scikit-learn's RidgeCV: it picks the penalty by leave-one-out squared error, while both users here pick it by what
they are judged on (mean cosine to the target embedding; identification among held-out trials), and the exported
baselines are kept numerically as they were."""
from __future__ import annotations

from typing import Callable

import numpy as np


class Ridge:
    """Ridge with an intercept (X and Y centred), solved in the smaller form: dual W = Xcᵀ (Xc Xcᵀ + aI)⁻¹ Yc when there
    are more voxels than trials, primal W = (XcᵀXc + aI)⁻¹ XcᵀYc otherwise. The Gram matrix is computed once, so each
    further penalty or target costs one solve."""

    def __init__(self, X: np.ndarray):
        self.mx = X.mean(0)
        self.Xc = X - self.mx
        self.dual = self.Xc.shape[1] > self.Xc.shape[0]
        self.gram = self.Xc @ self.Xc.T if self.dual else self.Xc.T @ self.Xc

    def fit(self, Y: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
        """(W [V,E], b [E]) for targets Y [trials, E]; predictions are X @ W + b."""
        my = Y.mean(0)
        Yc = Y - my
        A = self.gram + alpha * np.eye(self.gram.shape[0])
        W = self.Xc.T @ np.linalg.solve(A, Yc) if self.dual else np.linalg.solve(A, self.Xc.T @ Yc)
        return W, my - self.mx @ W


def choose_penalty(X: np.ndarray, Y: np.ndarray, alphas, score: Callable[[np.ndarray, np.ndarray], float],
                   val_frac: float = 0.2, min_val: int = 1, seed: int = 0) -> float:
    """The penalty whose fit on the other training trials scores best on a random held-out part of them (val_frac, at
    least min_val trials; never the test set). score(pred, truth): higher is better; a tie keeps the earlier penalty."""
    idx = np.random.default_rng(seed).permutation(X.shape[0])
    nv = max(min_val, int(X.shape[0] * val_frac))
    va, tr = idx[:nv], idx[nv:]
    r = Ridge(X[tr])
    best = None
    for a in alphas:
        W, b = r.fit(Y[tr], a)
        s = score(X[va] @ W + b, Y[va])
        if best is None or s > best[0]:
            best = (s, a)
    return best[1]


def mean_cosine(P: np.ndarray, T: np.ndarray) -> float:
    """Mean cosine similarity of matching rows."""
    P = P / (np.linalg.norm(P, axis=1, keepdims=True) + 1e-9)
    T = T / (np.linalg.norm(T, axis=1, keepdims=True) + 1e-9)
    return float((P * T).sum(1).mean())


def fit_ridge(X: np.ndarray, Y: np.ndarray, alphas=(1e1, 1e2, 1e3, 1e4, 1e5), val_frac: float = 0.2, seed: int = 0):
    """The bundle's baseline fit: penalty by mean cosine on held-out training trials, then refit on all of them.
    Returns (W [V,E], b [E], alpha)."""
    alpha = choose_penalty(X, Y, alphas, mean_cosine, val_frac=val_frac, seed=seed)
    W, b = Ridge(X).fit(Y, alpha)
    return W.astype(np.float32), b.astype(np.float32), alpha


def ridge_predict(x: np.ndarray, W, b: np.ndarray) -> np.ndarray:
    """W is a matrix [V,E] or reduced-rank factors (A [V,r], B [r,E])."""
    return (x @ W[0] @ W[1] if isinstance(W, tuple) else x @ W) + b


def retrieve(pred: np.ndarray, bank: np.ndarray, captions: list[str]) -> list[str]:
    """Nearest caption (cosine) for each predicted embedding."""
    p = pred / (np.linalg.norm(pred, axis=1, keepdims=True) + 1e-9)
    return [captions[i] for i in (p @ bank.T).argmax(1)]
