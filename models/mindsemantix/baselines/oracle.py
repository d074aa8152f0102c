"""Test oracle for streams/: writes float32 raw volumes (x fastest) + meta.json for the TS tests.

  python -m mindsemantix.baselines.oracle motion --src FILE --out DIR [--cases N --seed S]
      reference = volume 0 of FILE; N moved copies with random rigid motion up to 3 mm / 3°, plus the real
      volumes of FILE registered to volume 0 by scipy (independent registration).
  python -m mindsemantix.baselines.oracle detrend --data F.f32 --T T --V V --tr TR --times t.json --motion m.f32 --max-order D --out F
"""
import argparse
import json
import os

import nibabel as nib
import numpy as np

from .registration import register
from .rigid import apply_motion


def write_f32(path, vol):
    np.asarray(vol, dtype="<f4").ravel(order="F").tofile(path)


def motion(args):
    img = nib.load(args.src)
    data = np.asarray(img.dataobj, dtype=np.float64)
    vox = [float(z) for z in img.header.get_zooms()[:3]]
    ref = data[..., 0]
    os.makedirs(args.out, exist_ok=True)
    write_f32(os.path.join(args.out, "ref.f32"), ref)
    rng = np.random.default_rng(args.seed)
    cases = []
    for c in range(args.cases):
        p = np.concatenate([rng.uniform(-3, 3, 3), rng.uniform(-3, 3, 3)])
        if c == 0:
            p = np.array([3.0, -3.0, 3.0, 3.0, -3.0, 3.0])
        if args.inplane:
            p[[2, 3, 4]] = 0
        write_f32(os.path.join(args.out, f"moved{c}.f32"), apply_motion(ref, p, vox))
        cases.append({"file": f"moved{c}.f32", "params": p.tolist()})
    real = []
    for t in range(1, min(data.shape[3], 1 + args.real)):
        write_f32(os.path.join(args.out, f"real{t}.f32"), data[..., t])
        real.append({"file": f"real{t}.f32", "params": register(data[..., t], ref, vox, sample_step=args.step).tolist()})
    for c in cases[: args.scipy_cases]:
        moved = np.fromfile(os.path.join(args.out, c["file"]), dtype="<f4").reshape(ref.shape, order="F")
        c["scipy"] = register(moved.astype(np.float64), ref, vox, sample_step=args.step).tolist()
    meta = {"dims": list(ref.shape), "vox": vox, "cases": cases, "real": real}
    with open(os.path.join(args.out, "meta.json"), "w") as f:
        json.dump(meta, f)


def legendre_design(times, order):
    t = np.asarray(times, float)
    span = t.max() - t.min()
    s = 2 * (t - t.min()) / span - 1 if span > 0 else np.zeros_like(t)
    return np.polynomial.legendre.legvander(s, order)


def detrend(args):
    """For every n, the residual of sample n after a batch lstsq fit of samples 0..n (the online definition)."""
    T, V = args.T, args.V
    Y = np.fromfile(args.data, dtype="<f4").reshape(T, V).astype(np.float64)
    times = np.asarray(json.load(open(args.times)), float)
    M = np.fromfile(args.motion, dtype="<f4").reshape(T, 6).astype(np.float64) if args.motion else None
    out = np.full((T, V), np.nan)
    for n in range(T):
        if args.every > 1 and n % args.every != args.every - 1 and n != T - 1:
            continue
        lo = 0 if not args.window else max(0, n + 1 - args.window)
        cnt = n + 1 - lo
        order = min(args.max_order, 1 + int(args.tr * cnt / 150))
        k = order + 1 + (6 if M is not None else 0)
        if cnt <= k:
            continue
        X = legendre_design(times[lo : n + 1], order)
        if M is not None:
            X = np.hstack([X, M[lo : n + 1]])
        beta, *_ = np.linalg.lstsq(X, Y[lo : n + 1], rcond=None)
        out[n] = Y[n] - X[-1] @ beta
    out.astype("<f8").tofile(args.out)


def zscore(args):
    """Prefix z-scores (population SD): z[n] = (x[n] − mean(x[:n+1])) / sd(x[:n+1]), or with the statistics of the
    first `baseline` samples once that many exist; 0 where sd is 0."""
    X = np.fromfile(args.data, dtype="<f4").reshape(args.T, args.V).astype(np.float64)
    out = np.zeros_like(X)
    for n in range(args.T):
        H = X[: args.baseline] if args.baseline and n + 1 >= args.baseline else X[: n + 1]
        mu, sd = H.mean(axis=0), H.std(axis=0)
        out[n] = np.where(sd > 0, (X[n] - mu) / np.where(sd > 0, sd, 1), 0.0)
    out.astype("<f8").tofile(args.out)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("motion")
    m.add_argument("--src", required=True)
    m.add_argument("--out", required=True)
    m.add_argument("--cases", type=int, default=4)
    m.add_argument("--real", type=int, default=3)
    m.add_argument("--seed", type=int, default=1)
    m.add_argument("--inplane", action="store_true", help="motion in the slice plane only (tx, ty, rz)")
    m.add_argument("--step", type=int, default=1, help="scipy registration on every step-th voxel")
    m.add_argument("--scipy-cases", type=int, default=0, help="also register this many moved cases with scipy")
    d = sub.add_parser("detrend")
    d.add_argument("--data", required=True)
    d.add_argument("--T", type=int, required=True)
    d.add_argument("--V", type=int, required=True)
    d.add_argument("--tr", type=float, required=True)
    d.add_argument("--times", required=True)
    d.add_argument("--motion")
    d.add_argument("--max-order", type=int, default=8)
    d.add_argument("--window", type=int, default=0, help="fit on the last W samples only")
    d.add_argument("--every", type=int, default=1, help="only every k-th n (and the last); others NaN")
    d.add_argument("--out", required=True)
    z = sub.add_parser("zscore")
    z.add_argument("--data", required=True)
    z.add_argument("--T", type=int, required=True)
    z.add_argument("--V", type=int, required=True)
    z.add_argument("--baseline", type=int, default=0)
    z.add_argument("--out", required=True)
    a = ap.parse_args()
    {"motion": motion, "detrend": detrend, "zscore": zscore}[a.cmd](a)


if __name__ == "__main__":
    main()
