"""Ways of choosing a caption among the LM's candidates, scored offline on a pool (docs/experiments.md E10, E12).

The pool comes from `node scripts/experiments/candidatePool.mjs` (one JSON line per single trial: candidates as live
reranking draws them, with their token log-probabilities, and the read-out and ridge embeddings). Every candidate gets
its CIDEr-D against the scene's references (pycocoevalcap, document frequencies over the pool's trials), so any
selection rule, and any number of candidates (the first n of the pool are exactly what `--rerank n` draws), is scored
without decoding again. Every rule (`RULES`) uses only what live decoding has: the candidates' texts and log-probs, the
two predicted embeddings, the training caption bank and its embeddings. The trials are also reported in halves (first /
second), so a rule chosen on the first half has an honest figure on the second.

The live rule `soft-references` (`SoftReferenceScorer` in src/inference/referenceScorer.ts) is `soft_reference_weights`
+ `CorpusCider.score` + `choose`; test/fixtures/rerank/soft-references.json holds cases both languages must agree on.
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

# The live rule's constants (selected on the first half of the seed-201 pool: docs/experiments.md E12).
SOFT_POOL = 200
SOFT_TEMPERATURE = 0.05
SOFT_LM_WEIGHT = 0.1


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

    def prepare(self, text: str):
        """A candidate's tf-idf vectors, norms and length, for `pair`."""
        c, length = self._ngrams(text)
        return (*self._vec(c), length)

    def pair(self, cand, i: int) -> float:
        """CIDEr-D (x1 scale, as `score`) of a prepared candidate against corpus caption i alone."""
        return _pair_vectors(cand, self.vecs[i], self.cooked[i][1])

    def score(self, text: str, refs, weights=None) -> float:
        """CIDEr-D against corpus captions `refs`, each weighted (default equally): sum w * pair / sum w."""
        refs = list(refs)
        if not refs:
            return 0.0
        w = np.ones(len(refs)) if weights is None else np.asarray(weights, dtype=float)
        cand = self.prepare(text)
        return float(sum(wi * self.pair(cand, i) for wi, i in zip(w, refs)) / w.sum()) if w.sum() > 0 else 0.0


def centred_bank(bank: np.ndarray):
    """The bank's mean row and its rows minus that mean, unit length (bank rows are unit length); float64, as Node."""
    bank = np.asarray(bank, dtype=np.float64)
    mu = bank.mean(0)
    return mu, _unit(bank - mu)


def soft_reference_weights(target, mu, centred, pool: int = SOFT_POOL, temperature: float = SOFT_TEMPERATURE):
    """The `pool` training captions nearest to the target after removing the bank's mean direction, each weighted by
    exp((similarity - best) / temperature). Read-outs regress towards the bank's mean, so raw cosines mostly measure that
    shared direction; centred, they rank the bank by what is specific to this prediction."""
    t = _unit(_unit(np.asarray(target, dtype=np.float64)) - mu)
    sims = centred @ t
    idx = np.argsort(-sims, kind="stable")[:pool]
    return idx, np.exp((sims[idx] - sims[idx[0]]) / temperature)


def mean_logprob(lp) -> float:
    """A candidate's mean token log-probability (0 without tokens), as the live decoder computes it."""
    return float(np.mean(lp)) if len(lp) else 0.0


def choose(scores, logprobs, lm_weight: float) -> int:
    """The candidate kept live: the first with the highest score + lm_weight x mean token log-probability."""
    total = [s + lm_weight * mean_logprob(lp) for s, lp in zip(scores, logprobs)]
    return int(np.argmax(total))


def soft_reference_scores(corpus: CorpusCider, texts, target, mu, centred, pool=SOFT_POOL,
                          temperature=SOFT_TEMPERATURE) -> list[float]:
    """The live score of each candidate before the log-prob term (an empty candidate scores -1, as in Node)."""
    idx, w = soft_reference_weights(target, mu, centred, pool, temperature)
    return [corpus.score(t, idx, w) if t.strip() else -1.0 for t in texts]


class Pool:
    """A candidate pool with everything the rules may use; CIDEr-D pairs against bank captions are cached."""

    def __init__(self, recs, C, E, bank, captions):
        self.T, self.K = C.shape
        self.C, self.E, self.bank = C, E, bank
        self.texts = [([c["text"] for c in r["cands"]] + [r["cands"][0]["text"]] * self.K)[:self.K] for r in recs]
        self.lps = [([c["lp"] for c in r["cands"]] + [[]] * self.K)[:self.K] for r in recs]
        self.valid = np.arange(self.K)[None] < np.array([len(r["cands"]) for r in recs])[:, None]
        self.R = _unit(np.array([r["readout"] for r in recs]))
        self.G = _unit(np.array([r["ridge"] for r in recs]))
        self.target = _unit(self.R + self.G)
        self.corpus = CorpusCider(captions)
        self.mu, self.centred = centred_bank(bank)
        self.prepared = [[self.corpus.prepare(t) for t in ts] for ts in self.texts]
        self._pairs = [dict() for _ in range(self.T)]
        self.mlp = np.array([[mean_logprob(lp) for lp in lps] for lps in self.lps])

    def pairs(self, t: int, idx) -> np.ndarray:
        """[K, len(idx)] CIDEr-D of trial t's candidates against bank captions idx."""
        out = np.empty((self.K, len(idx)))
        for j, i in enumerate(idx):
            col = self._pairs[t].get(int(i))
            if col is None:
                col = self._pairs[t][int(i)] = np.array([self.corpus.pair(c, int(i)) for c in self.prepared[t]])
            out[:, j] = col
        return out

    def references(self, sims, k: int, temperature: float | None = None) -> np.ndarray:
        """[T, K] CIDEr-D against the k bank captions most similar (rows of `sims`), flat or softmax-weighted."""
        out = np.zeros((self.T, self.K))
        for t in range(self.T):
            idx = np.argsort(-sims[t], kind="stable")[:k]
            w = np.ones(len(idx)) if temperature is None else np.exp((sims[t, idx] - sims[t, idx[0]]) / temperature)
            out[t] = self.pairs(t, idx) @ w / w.sum()
        return out

    def raw_sims(self, x=None):
        return (self.target if x is None else x) @ self.bank.T

    def centred_sims(self, x=None):
        return _unit((self.target if x is None else x) - self.mu) @ self.centred.T

    def consensus(self) -> np.ndarray:
        """[T, K] mean CIDEr-D (bank document frequencies) of each candidate against the trial's other candidates."""
        out = np.zeros((self.T, self.K))
        for t in range(self.T):
            n = int(self.valid[t].sum())
            vecs = [(v, nn) for v, nn, _ in self.prepared[t][:n]]
            lens = [ln for _, _, ln in self.prepared[t][:n]]
            for a in range(n):
                s = 0.0
                for b in range(n):
                    if a != b:
                        s += _pair_vectors(self.prepared[t][a], vecs[b], lens[b])
                out[t, a] = s / max(1, n - 1)
        return out


def _pair_vectors(cand, ref, ref_len) -> float:
    va, na, length = cand
    vb, nb = ref
    pen = math.exp(-((length - ref_len) ** 2) / 72.0)
    s = 0.0
    for k in range(4):
        if na[k] and nb[k]:
            s += sum(min(x, vb[k].get(g, 0.0)) * vb[k].get(g, 0.0) for g, x in va[k].items()) / (na[k] * nb[k]) * pen
    return s / 4 * 10


def _ranks(p: Pool, s):
    return np.where(p.valid, s, -1e9).argsort(1).argsort(1).astype(float)


def _degenerate(s: str) -> bool:
    """A line break inside, fewer than 2 or more than 20 words, or a repeated word pair."""
    w = re.findall(r"[a-z0-9]+", s.lower())
    if "\n" in s.strip() or not 2 <= len(w) <= 20:
        return True
    pairs = list(zip(w, w[1:]))
    return len(set(pairs)) < len(pairs)


def _soft(p: Pool, centred: bool, temperature: float, pool: int = SOFT_POOL):
    return p.references(p.centred_sims() if centred else p.raw_sims(), pool, temperature)


# name -> (what it is, [T, K] scores from a Pool; the kept candidate is the first with the highest score)
RULES = {
    "greedy": ("the greedy caption (first candidate)", lambda p: np.tile(-np.arange(p.K, dtype=float), (p.T, 1))),
    "oracle": ("best candidate by true CIDEr-D (not available live: the ceiling)", lambda p: p.C),
    "cosine": ("embedding cosine with the read-out + ridge target (E6)",
               lambda p: np.einsum("tkd,td->tk", p.E, p.target)),
    **{f"references-{k}": (f"CIDEr-D vs the {k} nearest training captions" + (" (E10)" if k == 20 else ""),
                           lambda p, k=k: p.references(p.raw_sims(), k)) for k in (5, 10, 20, 50, 100)},
    **{f"softmax-{tau}": (f"references weighted by softmax(cosine / {tau}) over the {SOFT_POOL} nearest",
                          lambda p, tau=tau: _soft(p, False, tau)) for tau in (0.02, 0.05, 0.1)},
    "centred-references-20": ("CIDEr-D vs the 20 nearest by cosine after removing the bank's mean direction",
                              lambda p: p.references(p.centred_sims(), 20)),
    "centred-softmax-0.05": ("as softmax-0.05, similarities centred on the bank's mean", lambda p: _soft(p, True, 0.05)),
    "split-neighbourhoods": ("sum of CIDEr-D vs the 10 nearest to the read-out and vs the 10 nearest to the ridge",
                             lambda p: p.references(p.raw_sims(p.R), 10) + p.references(p.raw_sims(p.G), 10)),
    "references-20+consensus": ("references-20 + 0.25 x mean CIDEr-D against the other candidates (MBR)",
                                lambda p: p.references(p.raw_sims(), 20) + 0.25 * p.consensus()),
    "rank(references-20)+rank(cosine)": ("sum of the two ranks among the trial's candidates",
                                         lambda p: _ranks(p, p.references(p.raw_sims(), 20))
                                         + _ranks(p, np.einsum("tkd,td->tk", p.E, p.target))),
    "references-20+2cosine": ("references-20 + 2 x embedding cosine",
                              lambda p: p.references(p.raw_sims(), 20) + 2 * np.einsum("tkd,td->tk", p.E, p.target)),
    "references-20+0.05lp": ("references-20 + 0.05 x mean token log-prob",
                             lambda p: p.references(p.raw_sims(), 20) + 0.05 * p.mlp),
    "references-20-degenerate": ("references-20, degenerate candidates (line breaks, <2 or >20 words, a repeated "
                                 "word pair) never kept while another exists",
                                 lambda p: p.references(p.raw_sims(), 20) - 1e6 * np.array(
                                     [[_degenerate(s) for s in ts] for ts in p.texts])),
    "soft-references": (f"centred-softmax-0.05 + {SOFT_LM_WEIGHT} x mean token log-prob (live: --rerank-score "
                        "soft-references)", lambda p: _soft(p, True, SOFT_TEMPERATURE) + SOFT_LM_WEIGHT * p.mlp),
}
DEFAULT_RULES = ["greedy", "oracle", "cosine", "references-5", "references-20", "references-50", "soft-references"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mindsemantix.candidate_pool", description=__doc__.splitlines()[0])
    ap.add_argument("--pool", required=True, help="JSON lines from scripts/experiments/candidatePool.mjs")
    ap.add_argument("--stimuli", nargs="+", required=True, help="stimuli.tsv files with the scenes' reference captions")
    ap.add_argument("--bundle", default="models/bundles/default", help="bundle whose baseline captions are the corpus")
    ap.add_argument("--sizes", default="4,8,16", help="candidate counts to score")
    ap.add_argument("--rules", default=",".join(DEFAULT_RULES),
                    help=f"comma-separated rules to score, or 'all' ({', '.join(RULES)})")
    a = ap.parse_args(argv)
    names = list(RULES) if a.rules == "all" else a.rules.split(",")
    unknown = [n for n in names if n not in RULES]
    if unknown:
        ap.error(f"unknown rule(s) {', '.join(unknown)}; choose from {', '.join(RULES)}")
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
    sc = CiderScorer(n=4, sigma=6.0)
    for r, cs in zip(recs, texts):
        for c in cs:
            sc += (_norm(c), [_norm(x) for x in refs[r["stimulusId"]]])
    C = np.array(sc.compute_score()[1]).reshape(len(recs), K)
    enc, tok = load_minilm(), load_tokenizer()
    with torch.no_grad():
        E = _unit(embed_texts(enc, tok, [t for ts in texts for t in ts]).numpy().reshape(len(recs), K, -1))
    captions = json.load(open(f"{a.bundle}/baseline_captions.json"))
    bank = _unit(np.load(f"{a.bundle}/baseline_embeddings.npy"))
    p = Pool(recs, C, E, bank, captions)
    sizes = [int(x) for x in a.sizes.split(",")]
    half = p.T // 2

    def kept(score, n):
        s = np.where(p.valid[:, :n], score[:, :n], -1e9)
        return 100 * C[np.arange(p.T), s.argmax(1)]

    rows = {}
    for name in names:
        s = RULES[name][1](p)
        rows[name] = {n: kept(s, n) for n in sizes}
    n = max(sizes)
    print(f"{p.T} single trials, CIDEr-D x100 of the kept caption; halves: trials 1-{half} / {half + 1}-{p.T}")
    print("| rule | " + " | ".join(f"{k} candidates" for k in sizes) + f" | {n}: first half | {n}: second half |")
    print("|---|" + "---|" * (len(sizes) + 2))
    for name, v in rows.items():
        print(f"| {name} | " + " | ".join(f"{v[k].mean():.1f}" for k in sizes)
              + f" | {v[n][:half].mean():.1f} | {v[n][half:].mean():.1f} |")
    print()
    for name in names:
        print(f"- {name}: {RULES[name][0]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
