"""Choosing a new person's voxels from the calibration data when no ROI mask is given.

1. `brain_mask`: an automatic brain mask from the mean EPI intensity of the first calibration runs (voxels brighter than a
   fraction of the robust maximum; the scanner background is dark).
2. `select_voxels`: inside it, the voxels whose responses carry the stimulus most reliably:
   - with repeats (≥ MIN_REPEATED stimuli shown at least twice): repeat reliability — per voxel, the one-way ANOVA F of
     the responses over the repeated stimuli (between-stimulus over between-presentation variance);
   - without: split-half predictability — a ridge from the caption embeddings to every voxel, fitted on half the
     stimuli and correlated with the responses of the other half (both ways, averaged).
The responses under the brain mask come from the serving chain; the chosen voxels' columns are exactly what that
chain computes under the smaller mask (motion is estimated on the whole volume and every later step is per voxel).

  python -m mindsemantix.calibrate_mask --session DIR --subject ID --out brain-mask.nii.gz
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from .util import log

MIN_REPEATED = 2
BRAIN_FRACTION = 0.3


def bold_runs(session: Path, subject: str) -> list[Path]:
    return sorted(p for p in Path(session).rglob(f"sub-{subject}_*_bold.nii*") if "derivatives" not in p.parts)


def mask_from_mean_epi(mean: np.ndarray, fraction: float = BRAIN_FRACTION) -> np.ndarray:
    """Brain voxels of a mean EPI: brighter than a fraction of its robust maximum (the scanner background is dark)."""
    return mean > fraction * np.percentile(mean, 99)


def brain_mask(session: Path, subject: str, fraction: float = BRAIN_FRACTION, max_runs: int = 2):
    """uint8 NIfTI: mean EPI of the first `max_runs` runs > fraction × its 99th percentile. Each run is read once, whole
    (a .nii.gz cannot be sliced per volume without inflating it again from the start)."""
    import nibabel as nib
    runs = bold_runs(session, subject)
    if not runs:
        raise ValueError(f"no runs of sub-{subject} under {session}")
    means, ref = [], None
    for p in runs[:max_runs]:
        img = nib.load(str(p))
        data = np.asarray(img.dataobj, dtype=np.float32)
        means.append(data.mean(3) if data.ndim == 4 else data)
        ref = ref or img
    mask = mask_from_mean_epi(np.mean(means, axis=0), fraction).astype(np.uint8)
    out = nib.Nifti1Image(mask, ref.affine)
    out.header.set_xyzt_units("mm", "sec")
    return out


def repeat_reliability(x: np.ndarray, stim: np.ndarray) -> np.ndarray | None:
    """Per voxel one-way ANOVA F over the repeated stimuli: variance of the stimulus means over the variance of the
    presentations around them (noise is not shared between presentations). None with fewer than MIN_REPEATED."""
    uniq, counts = np.unique(stim, return_counts=True)
    rep = uniq[counts >= 2]
    if len(rep) < MIN_REPEATED:
        return None
    rows = np.isin(stim, rep)
    xs, ss = x[rows], stim[rows]
    means = np.stack([xs[ss == s].mean(0) for s in rep])
    within = sum(((xs[ss == s] - means[i]) ** 2).sum(0) for i, s in enumerate(rep)) / max(1, len(xs) - len(rep))
    between = (counts[np.isin(uniq, rep)][:, None] * (means - xs.mean(0)) ** 2).sum(0) / max(1, len(rep) - 1)
    return between / (within + 1e-9)


def predictability(x: np.ndarray, stim: np.ndarray, target: np.ndarray, alpha: float = 10.0, seed: int = 0) -> np.ndarray:
    """Split-half (by stimulus) correlation of a caption-embedding → voxel ridge's predictions, averaged both ways."""
    uniq = np.unique(stim)
    half = np.isin(stim, np.random.default_rng(seed).permutation(uniq)[: len(uniq) // 2])
    Y = target[stim]
    r = np.zeros(x.shape[1])
    for tr, te in ((half, ~half), (~half, half)):
        Yt = Y[tr] - Y[tr].mean(0)
        W = np.linalg.solve(Yt.T @ Yt + alpha * np.eye(Y.shape[1]), Yt.T @ (x[tr] - x[tr].mean(0)))
        r += _colcorr((Y[te] - Y[tr].mean(0)) @ W, x[te]) / 2
    return r


def _colcorr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a - a.mean(0)
    b = b - b.mean(0)
    return (a * b).sum(0) / (np.sqrt((a * a).sum(0) * (b * b).sum(0)) + 1e-9)


def select_voxels(x: np.ndarray, stim: np.ndarray, target: np.ndarray, count: int) -> tuple[np.ndarray, dict]:
    """Column indices (ascending, i.e. mask voxel order) of the `count` most reliable voxels, and how they were chosen."""
    rel = repeat_reliability(x, stim)
    how = "repeat reliability (ANOVA F over repeated stimuli)"
    if rel is None:
        rel = predictability(x, stim, target)
        how = "split-half predictability from the captions (no repeated stimuli)"
    rel = np.nan_to_num(rel, nan=-1.0)
    count = min(count, x.shape[1])
    cols = np.sort(np.argsort(-rel)[:count])
    return cols, {"criterion": how, "candidates": int(x.shape[1]), "chosen": int(count),
                  "reliability_chosen_mean": float(rel[cols].mean()), "reliability_all_mean": float(rel.mean())}


def subset_mask(brain, cols: np.ndarray):
    """The brain mask with only the chosen columns (mask voxel order = x-fastest, nibabel order 'F') left on."""
    import nibabel as nib
    flat = (np.asarray(brain.dataobj) > 0).ravel(order="F")
    on = np.flatnonzero(flat)
    out = np.zeros(flat.size, np.uint8)
    out[on[cols]] = 1
    img = nib.Nifti1Image(out.reshape(brain.shape[:3], order="F"), brain.affine)
    img.header.set_xyzt_units("mm", "sec")
    return img


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m mindsemantix.calibrate_mask", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--session", required=True)
    ap.add_argument("--subject", required=True)
    ap.add_argument("--out", required=True, help="brain mask to write (.nii.gz)")
    a = ap.parse_args(argv)
    import nibabel as nib
    img = brain_mask(Path(a.session), a.subject)
    nib.save(img, a.out)
    log(f"calibrate: automatic brain mask of sub-{a.subject}: {int(np.asarray(img.dataobj).sum())} voxels → {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
