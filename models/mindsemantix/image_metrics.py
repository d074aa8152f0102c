"""Image reconstruction metrics as MindEye / MindEye2 report them (definitions and sizes: docs/metrics.md "Image metrics").

Every function takes images as float arrays [N,3,H,W] in 0..1, reconstruction i paired with stimulus i.
- pixcorr: Pearson correlation of the flattened RGB pixels of each pair, averaged over pairs.
- ssim: mean SSIM of greyscale (ITU-R BT.709 luma, as skimage.rgb2gray) pairs with an 11-tap Gaussian window, σ = 1.5,
  population covariances and data range 1 (skimage's `gaussian_weights=True, use_sample_covariance=False` settings that
  MindEye uses), averaged over the valid (unpadded) window positions.
- two_way: two-way identification on feature vectors — for each reconstruction, the fraction of the other stimuli j for
  which its feature correlation with its own stimulus is higher than with stimulus j; averaged over reconstructions."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

LUMA = np.array([0.2125, 0.7154, 0.0721], np.float64)   # skimage.color.rgb2gray weights


def _check(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape or a.ndim != 4 or a.shape[1] != 3:
        raise ValueError(f"image arrays must both be [N,3,H,W] of one shape; got {a.shape} and {b.shape}")


def pixcorr_each(recon: np.ndarray, stim: np.ndarray) -> np.ndarray:
    _check(recon, stim)
    a = recon.reshape(len(recon), -1).astype(np.float64)
    b = stim.reshape(len(stim), -1).astype(np.float64)
    a = a - a.mean(1, keepdims=True)
    b = b - b.mean(1, keepdims=True)
    den = np.sqrt((a * a).sum(1) * (b * b).sum(1))
    return (a * b).sum(1) / np.maximum(den, 1e-12)


def pixcorr(recon: np.ndarray, stim: np.ndarray) -> float:
    return float(pixcorr_each(recon, stim).mean())


def grey(x: np.ndarray) -> np.ndarray:
    """[N,3,H,W] → [N,H,W] luma."""
    return np.einsum("nchw,c->nhw", x.astype(np.float64), LUMA)


def _gauss_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(r ** 2) / (2 * sigma ** 2))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


def ssim_each(recon: np.ndarray, stim: np.ndarray, data_range: float = 1.0) -> np.ndarray:
    _check(recon, stim)
    x = torch.from_numpy(grey(recon))[:, None]
    y = torch.from_numpy(grey(stim))[:, None]
    w = _gauss_window()
    mu_x, mu_y = F.conv2d(x, w), F.conv2d(y, w)
    sxx = F.conv2d(x * x, w) - mu_x ** 2
    syy = F.conv2d(y * y, w) - mu_y ** 2
    sxy = F.conv2d(x * y, w) - mu_x * mu_y
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (sxx + syy + c2))
    return s.mean((1, 2, 3)).numpy()


def ssim(recon: np.ndarray, stim: np.ndarray) -> float:
    return float(ssim_each(recon, stim).mean())


def two_way(recon_feats: np.ndarray, stim_feats: np.ndarray, groups=None) -> float:
    """recon_feats, stim_feats [N, F] (any feature space, flattened). Chance 0.5, perfect 1. groups [N] (optional):
    trials with the same group (the same stimulus shown again) are not compared with each other."""
    if recon_feats.shape != stim_feats.shape or recon_feats.ndim != 2 or len(recon_feats) < 2:
        raise ValueError(f"feature arrays must both be [N,F] with N ≥ 2; got {recon_feats.shape} and {stim_feats.shape}")
    a = recon_feats.astype(np.float64)
    b = stim_feats.astype(np.float64)
    a = (a - a.mean(1, keepdims=True)) / np.maximum(a.std(1, keepdims=True), 1e-12)
    b = (b - b.mean(1, keepdims=True)) / np.maximum(b.std(1, keepdims=True), 1e-12)
    r = a @ b.T / a.shape[1]                                  # r[i, j] = corr(recon i, stimulus j)
    own = np.diag(r)[:, None]
    n = len(r)
    other = ~np.eye(n, dtype=bool)
    if groups is not None:
        g = np.asarray(groups)
        other &= g[:, None] != g[None, :]
    if not other.any(1).all():
        raise ValueError("every trial needs at least one trial of another stimulus to be compared with")
    wins = ((r < own) & other).sum(1)
    return float((wins / other.sum(1)).mean())


class EffNetFeatures:
    """EfficientNet-Lite0 features of images in 0..1, resized (bilinear) to 224²: `early` = the output of the second
    MBConv stage (24 channels × 56², flattened), `late` = the pooled 1280-d head (MindEye's EffNet-B column)."""

    EARLY_BLOCK = 2       # index into _blocks after which the early features are taken (end of stage 2)

    def __init__(self):
        from .effnet import load_effnet
        self.net = load_effnet()

    @torch.no_grad()
    def __call__(self, images: np.ndarray, batch: int = 50) -> tuple[np.ndarray, np.ndarray]:
        early, late = [], []
        n = self.net
        for i in range(0, len(images), batch):
            x = torch.from_numpy(np.ascontiguousarray(images[i:i + batch], np.float32))
            x = F.interpolate(x, size=(224, 224), mode="bilinear", align_corners=False)
            x = (x - 0.5) / 0.5
            x = F.relu6(n._bn0(n._conv_stem(x)))
            for k, b in enumerate(n._blocks):
                x = b(x)
                if k == self.EARLY_BLOCK:
                    early.append(x.flatten(1).numpy())
            x = F.relu6(n._bn1(n._conv_head(x)))
            late.append(x.mean((2, 3)).numpy())
        return np.concatenate(early), np.concatenate(late)


def fit_image_to_text(feats: np.ndarray, text_emb: np.ndarray, alpha: float = 10.0) -> tuple[np.ndarray, np.ndarray]:
    """Ridge from image features [N,F] to caption embeddings [N,E] (the caption-space image encoder); returns (W, b)."""
    mu = feats.mean(0)
    X = feats - mu
    ym = text_emb.mean(0)
    W = np.linalg.solve(X.T @ X + alpha * len(X) * np.eye(X.shape[1]), X.T @ (text_emb - ym))
    return W.astype(np.float32), (ym - mu @ W).astype(np.float32)


def to_text_space(feats: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray:
    y = feats @ W + b
    return y / np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-12)
