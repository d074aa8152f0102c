"""Measures a simulated subject's data: NSD noise-ceiling SNR and a ridge baseline decoder.

    .venv/bin/python -m mindsemantix.sim.evaluate --data data/sim --subject sim01 [--estimator responses|betas]

Baseline: ridge regression from voxels to a TF-IDF bag-of-words embedding of the 5 reference captions, trained on the
training trials; each test scene's 3 repeats are averaged; the prediction is scored by (a) identification among the test
scenes (top-1, chance = 1/n) and (b) nearest-caption retrieval from the training captions (is the retrieved caption's
scene of the same primary category / colour / count as the truth).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys

import h5py
import numpy as np

from ..ridge import Ridge, choose_penalty
from .estimate import ncsnr, noise_ceiling
from .world import scene, scene_index

_TOK = re.compile(r"[a-z]+")


def tokens(c: str) -> list[str]:
    return _TOK.findall(c.lower())


class BagOfWords:
    def __init__(self, caption_sets: list[list[str]]):
        vocab = sorted({w for caps in caption_sets for c in caps for w in tokens(c)})
        self.index = {w: k for k, w in enumerate(vocab)}
        counts = self._counts(caption_sets)
        df = (counts > 0).mean(0)
        self.idf = np.log(1.0 / (df + 1e-3))

    def _counts(self, caption_sets):
        M = np.zeros((len(caption_sets), len(self.index)))
        for n, caps in enumerate(caption_sets):
            for c in caps:
                for w in tokens(c):
                    k = self.index.get(w)
                    if k is not None:
                        M[n, k] += 1
        return M

    def embed(self, caption_sets) -> np.ndarray:
        E = self._counts(caption_sets) * self.idf
        return E / (np.linalg.norm(E, axis=1, keepdims=True) + 1e-12)


def ridge_baseline(X, scenes, split, lam=None, n_val=0.1, seed=0) -> dict:
    """X [trials, V]; scenes int [trials]; split str [trials]. λ picked on held-out training scenes when None."""
    tr = split == "train"
    te_ids = np.unique(scenes[~tr])
    caps = {int(s): list(scene(int(s)).captions) for s in np.unique(scenes)}
    bow = BagOfWords([caps[int(s)] for s in np.unique(scenes[tr])])
    Xtr, Str = X[tr].astype(np.float64), scenes[tr]
    Ytr = bow.embed([caps[int(s)] for s in Str])
    Xte = np.stack([X[scenes == s].mean(0) for s in te_ids]).astype(np.float64)
    Yte = bow.embed([caps[int(s)] for s in te_ids])
    if lam is None:
        lam = choose_penalty(Xtr, Ytr, (1e2, 3e2, 1e3, 3e3, 1e4, 3e4, 1e5), _identification, val_frac=n_val, min_val=20, seed=seed)
    # factor decoding (one-vs-rest ridge classifiers on the same voxels): the headroom a structured decoder can use;
    # fitted with the caption embedding as one solve (the columns are independent)
    factors = {"category": lambda sc: sc.primary.category, "colour": lambda sc: sc.primary.colour,
               "count": lambda sc: sc.primary.count, "background": lambda sc: sc.background}
    labels = {name: sorted({get(scene(int(s))) for s in np.unique(scenes)}, key=str) for name, get in factors.items()}
    onehot = [np.array([[get(scene(int(s))) == lab for lab in labels[name]] for s in Str], np.float64) for name, get in factors.items()]
    W, icpt = Ridge(Xtr).fit(np.hstack([Ytr, *onehot]), lam)
    out = np.split(Xte @ W + icpt, np.cumsum([Ytr.shape[1]] + [len(v) for v in labels.values()])[:-1], axis=1)
    P = out[0]
    S = _cos(P, Yte)
    n = len(te_ids)
    top1 = float((S.argmax(1) == np.arange(n)).mean())
    rank = np.array([(S[i] > S[i, i]).sum() for i in range(n)])
    # nearest-caption retrieval from the training scenes' captions
    tr_ids = np.unique(Str)
    Ypool = bow.embed([caps[int(s)] for s in tr_ids])
    hit = _cos(P, Ypool).argmax(1)
    same = {"category": 0, "colour": 0, "count": 0, "background": 0}
    for i, s in enumerate(te_ids):
        a, b = scene(int(s)), scene(int(tr_ids[hit[i]]))
        same["category"] += a.primary.category == b.primary.category
        same["colour"] += a.primary.colour == b.primary.colour
        same["count"] += a.primary.count == b.primary.count
        same["background"] += a.background == b.background
    factor_acc = {}
    for k, (name, get) in enumerate(factors.items()):
        pred = out[k + 1].argmax(1)
        factor_acc[name] = float(np.mean([labels[name][pred[i]] == get(scene(int(s))) for i, s in enumerate(te_ids)]))
    return {"test_scenes": n, "lambda": lam, "factor_accuracy": factor_acc, "top1": top1, "chance": 1.0 / n, "top5": float((rank < 5).mean()),
            "mean_rank": float(rank.mean()), "retrieval_match": {k: v / n for k, v in same.items()},
            "retrieved_examples": [[scene(int(te_ids[i])).captions[0], scene(int(tr_ids[hit[i]])).captions[0]] for i in range(3)]}


def _identification(P, Y) -> float:
    """How often a prediction is closest (cosine) to its own trial's target among the held-out trials'."""
    return float((_cos(P, Y).argmax(1) == np.arange(len(Y))).mean())


def _cos(P, Y):
    P = P / (np.linalg.norm(P, axis=1, keepdims=True) + 1e-12)
    return P @ Y.T


def load(path: str):
    with h5py.File(path, "r") as f:
        ids = np.array([scene_index(s.decode() if isinstance(s, bytes) else s) for s in f["stimulus_ids"][:]])
        split = np.array([s.decode() if isinstance(s, bytes) else s for s in f["split"][:]])
        return {"responses": f["responses"][:], "betas": f["betas"][:], "scenes": ids, "split": split}


def measure(d: dict, estimator: str) -> dict:
    X = d[estimator]
    te = d["split"] == "test"
    snr = ncsnr(X[te], d["scenes"][te])
    return {"ncsnr_median": float(np.median(snr)), "ncsnr_p90": float(np.percentile(snr, 90)),
            "noise_ceiling_3_median_pct": float(np.median(noise_ceiling(snr, 3))),
            "noise_ceiling_1_median_pct": float(np.median(noise_ceiling(snr, 1))),
            "ridge": ridge_baseline(X, d["scenes"], d["split"])}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m mindsemantix.sim.evaluate")
    p.add_argument("--data", required=True)
    p.add_argument("--subject", default="sim01")
    p.add_argument("--estimator", choices=["responses", "betas"], nargs="*", default=["responses", "betas"])
    a = p.parse_args(argv)
    path = os.path.join(a.data, "derivatives", "mindsemantix", f"sub-{a.subject}", f"sub-{a.subject}_responses.h5")
    d = load(path)
    out = {e: measure(d, e) for e in a.estimator}
    json.dump(out, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
