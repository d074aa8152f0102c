"""Caption quality on the held-out test stimuli (mean of each stimulus's repeats, every subject):
(a) ridge regression → MiniLM caption embedding → nearest training caption, and trained models (stage-2 weights).
On simulator data every result also gets the compositional rates (`composition`: object, colour, count, background,
exact, copied, novel_exact; docs/metrics.md).

  python -m mindsemantix.evaluate --run models/runs/default [--run models/runs/nossl ...] --out models/runs/eval.json
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from .model import BrainCaptioner, ModelConfig
from .ridge import fit_ridge, retrieve, ridge_predict
from .util import log


def train_caption_bank(corpus, cap_emb: torch.Tensor, per_stimulus: int = 1):
    """The first `per_stimulus` reference(s) of every training stimulus (deduplicated) with their MiniLM embeddings
    (one per stimulus keeps the bundle's baseline_embeddings.npy small; the same bank serves every retrieval read-out)."""
    caps, embs, seen = [], [], set()
    for i, sp in enumerate(corpus.split):
        if sp != "train":
            continue
        for k, c in enumerate(corpus.captions[i][:per_stimulus]):
            if c in seen:
                continue
            seen.add(c)
            caps.append(c)
            embs.append(cap_emb[i, k].numpy())
    return caps, np.stack(embs).astype(np.float32)


def fit_baselines(corpus, cap_emb: torch.Tensor, rank: int | None = None, seed: int = 0, pca: int | None = None):
    """Per subject ridge voxels → mean MiniLM embedding of the stimulus's captions. rank: reduced-rank ridge
    (SVD of the fitted predictions' coefficient matrix), to keep the exported matrix small. pca: ridge on the top `pca`
    principal components of the subject's training trials (found without captions), folded back into a voxel matrix."""
    target = torch.nn.functional.normalize(cap_emb.mean(1), dim=-1).numpy()
    out = {}
    for s, d in corpus.subjects.items():
        if pca:
            mu = d.train_x.mean(0)
            xc = d.train_x - mu
            Vk = np.linalg.svd(xc, full_matrices=False)[2][:pca].T      # [V, k]
            Wk, bk, alpha = fit_ridge(xc @ Vk, target[d.train_stim], seed=seed)
            W, b = (Vk @ Wk).astype(np.float32), (bk - mu @ Vk @ Wk).astype(np.float32)
            out[s] = (W, b)
            log(f"ridge on {pca} principal components {s}: alpha={alpha:g}")
            continue
        W, b, alpha = fit_ridge(d.train_x, target[d.train_stim], seed=seed)
        if rank is not None and rank < min(W.shape):
            # reduced-rank: project the coefficients onto the top right-singular directions of the fitted predictions
            P = d.train_x @ W
            _, _, Vt = np.linalg.svd(P - P.mean(0), full_matrices=False)
            R = Vt[:rank].T @ Vt[:rank]
            xw = d.train_x.mean(0) @ W
            b = (b + xw - xw @ R).astype(np.float32)  # same mean prediction
            W = ((W @ Vt[:rank].T).astype(np.float32), Vt[:rank].astype(np.float32))  # factors [V,r] [r,E]
        out[s] = (W, b)
        log(f"ridge {s}: alpha={alpha:g}")
    return out


def score(refs: dict, cands: dict) -> dict:
    try:
        from .evalcaps import score as ev  # the shared caption metrics (pycocoevalcap-equal) when present
        return ev(refs, cands)
    except ImportError:
        return _score_fallback(refs, cands)


def _score_fallback(refs, cands):
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.cider.cider import Cider
    tok = PTBTokenizer()
    gts = tok.tokenize({k: [{"caption": c} for c in v] for k, v in refs.items()})
    res = tok.tokenize({k: [{"caption": cands[k]}] for k in refs})
    out = {}
    b, _ = Bleu(4).compute_score(gts, res)
    out.update({"BLEU-1": b[0], "BLEU-4": b[3]})
    out["METEOR"], _ = Meteor().compute_score(gts, res)
    out["ROUGE-L"], _ = Rouge().compute_score(gts, res)
    out["CIDEr"], _ = Cider().compute_score(gts, res)
    from .textenc import load_minilm, load_tokenizer, embed_texts
    enc, tk = load_minilm(), load_tokenizer()
    keys = list(refs)
    ce = embed_texts(enc, tk, [cands[k] for k in keys])
    ss = []
    for i, k in enumerate(keys):
        re = embed_texts(enc, tk, refs[k])
        ss.append(float((re @ ce[i]).mean()))
    out["SentenceScore"] = float(np.mean(ss))
    return {k: float(v) for k, v in out.items()}


def load_weights(path: Path) -> tuple[BrainCaptioner, dict]:
    blob = torch.load(path, map_location="cpu", weights_only=False)
    cfg = ModelConfig(**blob["model_config"])
    m = BrainCaptioner(cfg)
    m.load_state_dict(blob["weights"]["model"])
    return m.eval(), blob


@torch.no_grad()
def model_captions(model: BrainCaptioner, corpus, lm, tok, gen, batch: int = 50, subjects=None, limit: int = 0) -> dict:
    from .caption import greedy_torch
    out = {}
    for s, d in corpus.subjects.items():
        if subjects and s not in subjects:
            continue
        n = min(limit, len(d.test_x)) if limit else len(d.test_x)
        for i0 in range(0, n, batch):
            x = torch.from_numpy(d.test_x[i0:min(n, i0 + batch)])
            sp = model.qformer.lm_proj(model.qformer.queries(model.encoder(s, x)))
            ids = greedy_torch(lm, lm.embed_tokens, sp, gen)
            for j, seq in enumerate(ids):
                out[f"{s}:{corpus.stimuli[d.test_stim[i0 + j]]}"] = tok.decode(seq, skip_special_tokens=True).strip()
            log(f"captions {s}: {min(n, i0 + batch)}/{n}")
    return out


@torch.no_grad()
def embedding_captions(model: BrainCaptioner, corpus, bank_caps, bank_emb) -> dict:
    """Q-Former caption_embedding → nearest training caption (the same read-out as the ridge baseline, no LM)."""
    out = {}
    for s, d in corpus.subjects.items():
        ce = model.qformer.caption_embedding(model.qformer.queries(model.encoder(s, torch.from_numpy(d.test_x)))).numpy()
        for j, c in enumerate(retrieve(ce, bank_emb, bank_caps)):
            out[f"{s}:{corpus.stimuli[d.test_stim[j]]}"] = c
    return out


def ridge_captions(corpus, baselines, bank_caps, bank_emb) -> dict:
    out = {}
    for s, d in corpus.subjects.items():
        W, b = baselines[s]
        pred = ridge_predict(d.test_x, W, b)
        for j, c in enumerate(retrieve(pred, bank_emb, bank_caps)):
            out[f"{s}:{corpus.stimuli[d.test_stim[j]]}"] = c
    return out


class CompositionScorer:
    """The compositional rates (docs/metrics.md) of a candidate set on this corpus's test stimuli; adds nothing where
    the corpus does not know its scenes (NSD)."""

    def __init__(self, corpus):
        from . import composition as C
        self._rates = C.rates
        self.facts = C.corpus_facts(corpus) or {}
        self.train = C.training_captions(corpus)
        self.stim = {f"{s}:{corpus.stimuli[i]}": corpus.stimuli[i] for s, d in corpus.subjects.items() for i in d.test_stim}
        self.split = dict(zip(corpus.stimuli, corpus.split))

    def __call__(self, scores: dict, cands: dict) -> dict:
        keys = [k for k in cands if self.stim.get(k) in self.facts]
        if not keys:
            return scores
        rates = self._rates({k: cands[k] for k in keys}, {k: self.facts[self.stim[k]] for k in keys},
                            novel={k: self.split[self.stim[k]] == "test" for k in keys}, training_captions=self.train)
        return {**scores, "composition": rates}


def references(corpus) -> dict:
    return {f"{s}:{corpus.stimuli[i]}": corpus.captions[i] for s, d in corpus.subjects.items() for i in d.test_stim}


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m mindsemantix.evaluate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", action="append", default=[], help="a training output folder (uses its stage2.pt); repeatable")
    ap.add_argument("--name", action="append", default=[], help="a label per --run")
    ap.add_argument("--data", help="override the data root of the first run's config")
    ap.add_argument("--out", required=True)
    ap.add_argument("--ridge-rank", type=int, default=0, help="also score the reduced-rank ridge that the bundle exports")
    ap.add_argument("--ridge-pca", type=int, default=0, help="also score ridge on each subject's top K principal components")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--lm-subjects", default="", help="comma list: LM captions only for these subjects (CPU budget)")
    ap.add_argument("--lm-limit", type=int, default=0, help="LM captions for the first N test stimuli per subject (0 = all)")
    ap.add_argument("--no-lm", action="store_true", help="skip LM captioning (retrieval read-outs only)")
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    from .train import load_corpus
    from .targets import build_targets
    from .lm_assets import load_frozen_lm
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    first = json.loads((Path(a.run[0]) / "run.json").read_text())
    cfg = first["config"]
    if a.data:
        cfg["data"]["root"] = a.data
    t0 = time.time()
    corpus = load_corpus(cfg["data"])
    lm, tok = load_frozen_lm(cfg["lm"]["kind"], Path(cfg["lm"].get("cache_dir", "models/runs/cache")))
    gen = first["generation"]
    from .train import targets_config
    tcfg = targets_config(cfg)
    targets = build_targets(corpus, tok, gen["eos_token_ids"][0], tcfg, Path(cfg["train"].get("cache_dir") or Path(a.run[0]) / "cache"))
    refs = references(corpus)
    with_composition = CompositionScorer(corpus)  # object, colour, count, background, exact, copied, novel_exact
    results, samples = {}, {}
    bank_caps, bank_emb = train_caption_bank(corpus, targets["cap_emb"])
    rc = ridge_captions(corpus, fit_baselines(corpus, targets["cap_emb"]), bank_caps, bank_emb)
    results["ridge-retrieval"] = with_composition(score(refs, rc), rc)
    samples["ridge-retrieval"] = dict(list(rc.items())[:8])
    log(f"ridge-retrieval: {results['ridge-retrieval']}")
    if a.ridge_pca:
        rp = ridge_captions(corpus, fit_baselines(corpus, targets["cap_emb"], pca=a.ridge_pca), bank_caps, bank_emb)
        results[f"ridge-retrieval-pca{a.ridge_pca}"] = with_composition(score(refs, rp), rp)
        log(f"ridge-retrieval-pca{a.ridge_pca}: {results[f'ridge-retrieval-pca{a.ridge_pca}']}")
    if a.ridge_rank:
        rc2 = ridge_captions(corpus, fit_baselines(corpus, targets["cap_emb"], rank=a.ridge_rank), bank_caps, bank_emb)
        results[f"ridge-retrieval-rank{a.ridge_rank}"] = with_composition(score(refs, rc2), rc2)
    subs = [x for x in a.lm_subjects.split(",") if x]
    for i, run in enumerate(a.run):
        name = a.name[i] if i < len(a.name) else Path(run).name
        ck = Path(run) / "stage2.pt"
        if not ck.exists():
            ck = Path(run) / "stage1.pt"
        model, blob = load_weights(ck)
        ec = embedding_captions(model, corpus, bank_caps, bank_emb)
        results[f"{name} (caption_embedding → nearest train caption)"] = with_composition(score(refs, ec), ec)
        log(f"{name} retrieval: {results[f'{name} (caption_embedding → nearest train caption)']}")
        if a.no_lm or blob["stage"] != "stage2":
            continue
        caps = model_captions(model, corpus, lm, tok, gen, subjects=subs, limit=a.lm_limit)
        sub_refs = {k: refs[k] for k in caps}
        results[f"{name} (LM captions)"] = with_composition(score(sub_refs, caps), caps)
        # the baselines on exactly the same subset, for a like-for-like comparison
        results[f"ridge-retrieval on the LM subset ({len(caps)})"] = with_composition(score(sub_refs, {k: rc[k] for k in caps}), {k: rc[k] for k in caps})
        results[f"{name} retrieval on the LM subset ({len(caps)})"] = with_composition(score(sub_refs, {k: ec[k] for k in caps}), {k: ec[k] for k in caps})
        samples[name] = dict(list(caps.items())[:8])
        log(f"{name}: {results[f'{name} (LM captions)']}")
        Path(a.out).write_text(json.dumps({"partial": True, "results": results, "samples": samples}, indent=2))
    out = {"test": {"stimuli": corpus.split.count("test"), "subjects": list(corpus.subjects),
                    "pairs": len(refs), "response": "mean of repeats"}, "results": results, "samples": samples,
           "references": {k: refs[k] for k in list(samples.get("ridge-retrieval", {}))}, "seconds": time.time() - t0}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=2))
    log(f"evaluate: wrote {a.out} ({time.time() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
