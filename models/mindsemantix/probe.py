"""Linear probe of a brain encoder: ridge from its features (the subject adapter's code, or the encoder's brain tokens)
to the MiniLM caption embedding → nearest training caption, scored like the ridge-on-voxels baseline (a). Tells whether
a stage's representation keeps what captions need, e.g. what masked brain modeling alone learned.

  python -m mindsemantix.probe --checkpoint models/runs/c3/ssl.pt [--checkpoint ...] --data data/sim --out probe.json
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from .data import Corpus
from .util import log

FEATURES = ("code", "tokens")


@torch.no_grad()
def encoder_features(encoder, subject: str, x: np.ndarray, feature: str, batch: int = 500) -> np.ndarray:
    """code: the adapter's per-subject read-out [n, hidden]; tokens: the shared encoder's output, flattened [n, T·D]."""
    if feature not in FEATURES:
        raise ValueError(f"probe feature {feature!r} is not one of {', '.join(FEATURES)}")
    encoder.eval()
    out = []
    for i in range(0, len(x), batch):
        xb = torch.from_numpy(np.ascontiguousarray(x[i:i + batch]))
        f = encoder.adapters[subject].read(xb) if feature == "code" else encoder(subject, xb).reshape(len(xb), -1)
        out.append(f.numpy())
    return np.concatenate(out).astype(np.float32)


def probe_captions(encoder, corpus, cap_emb: torch.Tensor, bank_caps, bank_emb, feature: str) -> dict:
    """The ridge baseline (a) — fit_baselines + ridge_captions — with the encoder's features in place of the voxels."""
    from .evaluate import fit_baselines, ridge_captions
    feats = Corpus(corpus.stimuli, corpus.captions, corpus.split, meta=corpus.meta)
    for s, d in corpus.subjects.items():
        feats.subjects[s] = dataclasses.replace(d, train_x=encoder_features(encoder, s, d.train_x, feature),
                                                test_x=encoder_features(encoder, s, d.test_x, feature))
    return ridge_captions(feats, fit_baselines(feats, cap_emb), bank_caps, bank_emb)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m mindsemantix.probe", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", action="append", required=True, help="a <stage>.pt written by the trainer; repeatable")
    ap.add_argument("--data", help="override the data root of the first checkpoint's config")
    ap.add_argument("--out", required=True)
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    from .evaluate import load_weights, references, score, train_caption_bank
    from .lm_assets import generation_settings, load_frozen_lm
    from .targets import build_targets
    from .train import load_corpus, targets_config
    t0 = time.time()
    blob = torch.load(a.checkpoint[0], map_location="cpu", weights_only=False)
    cfg = blob["config"]
    if a.data:
        cfg["data"]["root"] = a.data
    corpus = load_corpus({k: v for k, v in cfg["data"].items() if k != "labeled_fraction"})
    cache = Path(cfg["train"].get("cache_dir") or "models/runs/cache")
    lm, tok = load_frozen_lm(cfg["lm"]["kind"], Path(cfg["lm"].get("cache_dir", "models/runs/cache")))
    targets = build_targets(corpus, tok, generation_settings(tok, lm)["eos_token_ids"][0], targets_config(cfg), cache)
    caps, bank = train_caption_bank(corpus, targets["cap_emb"])
    refs = references(corpus)
    results = {}
    for ck in a.checkpoint:
        model, b = load_weights(Path(ck))
        for feat in FEATURES:
            r = score(refs, probe_captions(model.encoder, corpus, targets["cap_emb"], caps, bank, feat))
            results[f"{ck} ({b['stage']}) {feat}"] = r
            log(f"probe {ck} {feat}: CIDEr {r['CIDEr']:.3f} BLEU-4 {r.get('BLEU4', r.get('BLEU-4', 0)):.3f}")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps({"pairs": len(refs), "results": results, "seconds": time.time() - t0}, indent=2))
    log(f"probe: wrote {a.out} ({time.time() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
