"""The preprocessing chain written the straightforward way in numpy/scipy, timed per volume for the benchmark ratio.

Per volume: rigid registration to the reference (scipy.optimize.least_squares on cubic-spline samples of a
2-voxel grid, warm-started, scipy's default tolerances), trilinear resampling (ndimage.map_coordinates order 1), ROI mask, detrending by
numpy lstsq of the whole history on constant + Legendre (+ motion), z-score of the history.

  python -m mindsemantix.baselines.preprocess --dir DIR
DIR holds volumes.f32 (N volumes, x fastest), mask.u8, meta.json {dims, vox, tr, volumes, timed};
the first N−timed volumes build the history untimed; result.json gets {"ms": [...]} for the timed ones.
"""
import argparse
import json
import os
import time

import numpy as np

from .oracle import legendre_design
from .registration import register
from .rigid import params_to_matrix, warp


def run(d):
    meta = json.load(open(os.path.join(d, "meta.json")))
    dims, vox, tr, n, timed = meta["dims"], meta["vox"], meta["tr"], meta["volumes"], meta["timed"]
    vols = np.fromfile(os.path.join(d, "volumes.f32"), dtype="<f4").reshape(n, *dims[::-1])
    vols = np.ascontiguousarray(vols.transpose(0, 3, 2, 1))  # → [n, x, y, z]
    mask = np.fromfile(os.path.join(d, "mask.u8"), dtype=np.uint8).reshape(dims[::-1]).transpose(2, 1, 0) > 0
    ref = vols[0].astype(np.float64)
    roi_hist, motion_hist, ms = [], [], []
    steps = {"register": [], "resample_mask": [], "detrend_zscore": []}
    p = np.zeros(6)
    for t in range(n):
        t0 = time.perf_counter()
        vol = vols[t].astype(np.float64)
        if t > 0 and t >= n - timed:  # history volumes only need their ROI values, not a timed registration
            p = register(vol, ref, vox, init=p, sample_step=2, tight=False)
        t1 = time.perf_counter()
        corrected = warp(vol, params_to_matrix(p), vox, order=1)
        roi = corrected.ravel(order="F")[mask.ravel(order="F")]
        t2 = time.perf_counter()
        roi_hist.append(roi)
        motion_hist.append(p.copy())
        Y = np.asarray(roi_hist)
        cnt = len(roi_hist)
        order = 1 + int(tr * cnt / 150)
        X = np.hstack([legendre_design(np.arange(cnt), order), np.asarray(motion_hist)])
        if cnt > X.shape[1]:
            beta, *_ = np.linalg.lstsq(X, Y, rcond=None)
            resid = Y - X @ beta
            sd = resid.std(axis=0)
            _z = np.where(sd > 0, (resid[-1] - resid.mean(axis=0)) / np.where(sd > 0, sd, 1), 0.0)
        if t >= n - timed:
            t3 = time.perf_counter()
            ms.append((t3 - t0) * 1000)
            steps["register"].append((t1 - t0) * 1000)
            steps["resample_mask"].append((t2 - t1) * 1000)
            steps["detrend_zscore"].append((t3 - t2) * 1000)
    med = {k: float(np.median(v)) if v else None for k, v in steps.items()}
    json.dump({"ms": ms, "steps_ms": med}, open(os.path.join(d, "result.json"), "w"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    run(ap.parse_args().dir)


if __name__ == "__main__":
    main()
