"""Where new sessions lose: a linear read-out (ridge voxels → mean MiniLM caption embedding, retrieval among training
captions, as the bundle's baseline) trained on one training set, scored on (a) that set's own test trials and (b) new
sessions' response files (`mindsemantix responses` / `serve --record`), single trial and mean of presentations.

    .venv/bin/python -m mindsemantix.session_gap --train old=data/sim --train serving=data/sim-serving \
        --sessions data/eval-sessions/responses/default --subject sim01 --out data/session-gap.json

Cheap (minutes) next to a deep-model retrain: it tells whether a training set closes the new-session gap at all.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import h5py
import numpy as np
import torch

from .evalcaps.evaluator import score
from .ridge import fit_ridge, retrieve, ridge_predict
from .sim.world import scene, scene_index
from .textenc import embed_texts, load_minilm, load_tokenizer
from .util import log


def read_h5(root: Path, subject: str):
    with h5py.File(root / "derivatives" / "mindsemantix" / f"sub-{subject}" / f"sub-{subject}_responses.h5", "r") as h:
        x = np.asarray(h["responses"], np.float32)
        ids = [s.decode() if isinstance(s, bytes) else str(s) for s in h["stimulus_ids"][()]]
        split = [s.decode() if isinstance(s, bytes) else str(s) for s in h["split"][()]]
        flags = [f.decode() if isinstance(f, bytes) else str(f) for f in h["flags"][()]] if "flags" in h else [""] * len(ids)
    keep = np.array(["no-data" not in f for f in flags])
    return x[keep], [i for i, k in zip(ids, keep) if k], [s for s, k in zip(split, keep) if k]


def read_sessions(root: Path, subject: str):
    """Each session folder under root: rows in recorded order (stimulus id, presentation) and vectors."""
    out = {}
    for sdir in sorted(p for p in root.iterdir() if p.is_dir()):
        xs, ids = [], []
        for tsv in sorted(sdir.glob(f"sub-{subject}/ses-*/sub-{subject}_ses-*_responses.tsv")):
            lines = tsv.read_text().splitlines()
            head = lines[0].split("\t")
            rows = [dict(zip(head, ln.split("\t"))) for ln in lines[1:] if ln]
            xs.append(np.load(tsv.with_suffix(".npy"))[: len(rows)])
            ids += [r["stimulus_id"] for r in rows]
        if ids:
            out[sdir.name] = (np.concatenate(xs), ids)
    return out


def conditions(x: np.ndarray, ids: list[str]):
    """single trials, and by presentation k ≥ 2 the mean of the k presentations so far (as live decoding forms it)."""
    sums, counts = {}, {}
    single = [(i, x[n]) for n, i in enumerate(ids)]
    means: dict[int, list] = {}
    for n, i in enumerate(ids):
        sums[i] = sums.get(i, 0) + x[n].astype(np.float64)
        counts[i] = counts.get(i, 0) + 1
        if counts[i] >= 2:
            means.setdefault(counts[i], []).append((i, (sums[i] / counts[i]).astype(np.float32)))
    return {"single_trial": single, **{f"mean_of_{k}": v for k, v in sorted(means.items())}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mindsemantix.session_gap", description=__doc__.split("\n\n")[0])
    ap.add_argument("--train", action="append", required=True, help="NAME=DATA_ROOT (sim.dataset or sim.serving_dataset output)")
    ap.add_argument("--sessions", required=True, help="folder of per-session response folders (eval sessions' work/responses/<bundle>)")
    ap.add_argument("--subject", default="sim01")
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    t0 = time.time()
    enc, tok = load_minilm(), load_tokenizer()
    emb_cache: dict[str, np.ndarray] = {}

    def emb(texts):
        new = [t for t in dict.fromkeys(texts) if t not in emb_cache]
        if new:
            with torch.no_grad():
                for t, e in zip(new, embed_texts(enc, tok, new).numpy()):
                    emb_cache[t] = e
        return np.stack([emb_cache[t] for t in texts])

    sessions = read_sessions(Path(a.sessions), a.subject)
    log(f"new sessions: {', '.join(f'{k} ({len(v[1])} trials)' for k, v in sessions.items())}")
    results = {}
    for spec in a.train:
        name, root = spec.split("=", 1)
        x, ids, split = read_h5(Path(root), a.subject)
        tr = np.array([s == "train" for s in split])
        stim = sorted(set(ids))
        caps = {i: list(scene(scene_index(i)).captions) for i in stim}
        target = {}
        for i in stim:
            e = emb(caps[i]).mean(0)
            target[i] = e / np.linalg.norm(e)
        W, b, alpha = fit_ridge(x[tr], np.stack([target[i] for i, t in zip(ids, tr) if t]))
        bank_caps = list(dict.fromkeys(caps[i][0] for i, t in zip(ids, tr) if t))
        bank = emb(bank_caps)
        log(f"{name}: ridge on {tr.sum()} training trials (alpha {alpha:g}), bank of {len(bank_caps)} captions")

        def cider(items):
            keys = [f"{k}" for k in range(len(items))]
            pred = ridge_predict(np.stack([v for _, v in items]), W, b)
            got = retrieve(pred, bank, bank_caps)
            refs = {k: list(scene(scene_index(i)).captions) for k, (i, _) in zip(keys, items)}
            return round(100 * score(refs, dict(zip(keys, got)), metrics=("CIDEr",))["CIDEr"], 1), len(items)  # CIDEr only: no METEOR JVM per call

        own = conditions(x[~tr], [i for i, t in zip(ids, tr) if not t])
        res = {"own_test": {k: cider(v) for k, v in own.items()}}
        pooled: dict[str, list] = {}
        for sname, (sx, sids) in sessions.items():
            c = conditions(sx, sids)
            res[sname] = {k: cider(v) for k, v in c.items()}
            for k, v in c.items():
                pooled.setdefault(k, []).extend(v)
        res["new_pooled"] = {k: cider(v) for k, v in pooled.items()}
        results[name] = res
        log(f"{name}: {json.dumps(res)}")
    Path(a.out).write_text(json.dumps(results, indent=1))
    log(f"done in {time.time() - t0:.0f} s → {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
