"""Ways of choosing a caption among the LM's candidates, scored offline on a pool (docs/experiments.md E10).

The pool comes from `node scripts/experiments/candidatePool.mjs` (one JSON line per single trial: candidates as live
reranking draws them, read-out and ridge embeddings). Every candidate gets its CIDEr-D against the scene's references
(pycocoevalcap, document frequencies over the pool's trials), so any selection rule, and any number of candidates
(the first n of the pool are exactly what `--rerank n` draws), is scored without decoding again.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import re
from collections import Counter

import numpy as np

csv.field_size_limit(10**9)


def _norm(s: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9 ]+", " ", s.lower()).split())


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


class CorpusCider:
    """CIDEr-D of a candidate against chosen captions of a fixed corpus (document frequencies from the corpus)."""

    def __init__(self, captions: list[str]):
        self.cooked = [self._ngrams(c) for c in captions]
        self.df = Counter()
        for c, _ in self.cooked:
            self.df.update(c.keys())
        self.logn = math.log(len(captions))
        self.vecs = [self._vec(c) for c, _ in self.cooked]

    @staticmethod
    def _ngrams(s: str):
        w, c = _norm(s).split(), Counter()
        for k in range(1, 5):
            for i in range(len(w) - k + 1):
                c[tuple(w[i:i + k])] += 1
        return c, sum(v for g, v in c.items() if len(g) == 2)

    def _vec(self, c):
        v, n = [{} for _ in range(4)], [0.0] * 4
        for g, tf in c.items():
            x = tf * (self.logn - math.log(max(1.0, self.df.get(g, 0.0))))
            v[len(g) - 1][g] = x
            n[len(g) - 1] += x * x
        return v, [math.sqrt(x) for x in n]

    def score(self, text: str, refs) -> float:
        c, length = self._ngrams(text)
        va, na = self._vec(c)
        s = 0.0
        for i in refs:
            vb, nb = self.vecs[i]
            pen = math.exp(-((length - self.cooked[i][1]) ** 2) / 72.0)
            for k in range(4):
                if na[k] and nb[k]:
                    s += sum(min(x, vb[k].get(g, 0.0)) * vb[k].get(g, 0.0) for g, x in va[k].items()) / (na[k] * nb[k]) * pen
        return s / 4 / max(1, len(refs)) * 10


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mindsemantix.candidate_pool", description=__doc__.splitlines()[0])
    ap.add_argument("--pool", required=True, help="JSON lines from scripts/experiments/candidatePool.mjs")
    ap.add_argument("--stimuli", nargs="+", required=True, help="stimuli.tsv files with the scenes' reference captions")
    ap.add_argument("--bundle", default="models/bundles/default", help="bundle whose baseline captions are the corpus")
    ap.add_argument("--sizes", default="4,8,16", help="candidate counts to score")
    a = ap.parse_args(argv)
    from pycocoevalcap.cider.cider_scorer import CiderScorer
    from .textenc import embed_texts, load_minilm, load_tokenizer
    import torch

    refs = {}
    for f in a.stimuli:
        for r in csv.DictReader(open(f), delimiter="\t"):
            refs[r["stimulus_id"]] = json.loads(r["captions"])
    recs = [json.loads(line) for line in open(a.pool)]
    K = max(len(r["cands"]) for r in recs)
    texts = [([c["text"] for c in r["cands"]] + [r["cands"][0]["text"]] * K)[:K] for r in recs]
    valid = np.arange(K)[None] < np.array([len(r["cands"]) for r in recs])[:, None]
    sc = CiderScorer(n=4, sigma=6.0)
    for r, cs in zip(recs, texts):
        for c in cs:
            sc += (_norm(c), [_norm(x) for x in refs[r["stimulusId"]]])
    C = np.array(sc.compute_score()[1]).reshape(len(recs), K)

    def pick(score, n):
        s = np.where(valid[:, :n], score[:, :n], -1e9)
        return 100 * C[np.arange(len(recs)), s.argmax(1)].mean()

    enc, tok = load_minilm(), load_tokenizer()
    with torch.no_grad():
        E = _unit(embed_texts(enc, tok, [t for ts in texts for t in ts]).numpy().reshape(len(recs), K, -1))
    R = _unit(np.array([r["readout"] for r in recs]))
    G = _unit(np.array([r["ridge"] for r in recs]))
    target = _unit(R + G)
    captions = json.load(open(f"{a.bundle}/baseline_captions.json"))
    bank = _unit(np.load(f"{a.bundle}/baseline_embeddings.npy"))
    corpus = CorpusCider(captions)
    sizes = [int(x) for x in a.sizes.split(",")]
    rows = {"greedy (first candidate)": {n: 100 * C[:, 0].mean() for n in sizes},
            "oracle (best candidate by true CIDEr)": {n: 100 * np.where(valid[:, :n], C[:, :n], -1).max(1).mean() for n in sizes},
            "embedding cosine, read-out + ridge": {n: pick(np.einsum("tkd,td->tk", E, target), n) for n in sizes}}
    for k in (5, 20, 50):
        near = np.argsort(-(target @ bank.T), axis=1)[:, :k]
        S = np.array([[corpus.score(t, near[i]) if valid[i, j] else -1e9 for j, t in enumerate(ts)] for i, ts in enumerate(texts)])
        rows[f"CIDEr-D vs the {k} nearest training captions"] = {n: pick(S, n) for n in sizes}
    print(f"{len(recs)} single trials, CIDEr-D x100 of the kept caption")
    print("| choice | " + " | ".join(f"{n} candidates" for n in sizes) + " |")
    print("|---|" + "---|" * len(sizes))
    for name, v in rows.items():
        print(f"| {name} | " + " | ".join(f"{v[n]:.1f}" for n in sizes) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
