"""Conformance with BrainHub's published caption scores (test/fixtures/brainhub/published.csv, a copy of shared/brainhub).

    python -m mindsemantix.evalcaps.conformance [--metrics BLEU,METEOR,ROUGE_L,CIDEr,SentenceScore] [--tolerance 0.0005]

prints, per row of published.csv, our score minus the published one, and the largest deviation per metric; exits 1 if
any deviation exceeds the tolerance. BrainHub scores every one of the 982 test images against all of its references in
caption/fmri_cococap.json (5 each, 6 for three images), candidates and references PTB-tokenized (eval_caption.py →
metrics.get_all_metrics), SentenceScore on the raw text.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

from .errors import EvalCapsError
from .evaluator import METRIC_KEYS, Evaluator

TOLERANCE = 0.0005
REPO_ROOT = Path(__file__).resolve().parents[3]


def brainhub_dir() -> Path:
    """The BrainHub files kept in the repository (test/fixtures/brainhub, MIT licence; see its SOURCE.md)."""
    d = REPO_ROOT / "test" / "fixtures" / "brainhub"
    if not (d / "published.csv").is_file():
        raise EvalCapsError(f"BrainHub conformance files not found at {d}; restore test/fixtures/brainhub from the repository (git checkout -- test/fixtures).")
    return d


def published_rows(d: Path | None = None) -> list[dict]:
    d = d or brainhub_dir()
    with open(d / "published.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r["path"] = d / r["candidates_file"]
    return rows


def references(d: Path | None = None) -> dict[str, list[str]]:
    d = d or brainhub_dir()
    with open(d / "caption" / "fmri_cococap.json", encoding="utf-8") as f:
        return json.load(f)


def deviations(rows: list[dict], metrics, refs=None) -> list[dict]:
    """[{method, subject, scores, delta: {metric: ours - published}}] for the given rows of published.csv."""
    refs = refs if refs is not None else references()
    cand_sets = []
    for r in rows:
        with open(r["path"], encoding="utf-8") as f:
            cand_sets.append(json.load(f))
    with Evaluator(refs, metrics) as ev:
        results = ev.score_many(cand_sets)
    out = []
    for r, s in zip(rows, results):
        out.append({"method": r["method"], "subject": r["subject"], "scores": s,
                    "delta": {k: v - float(r[k]) for k, v in s.items() if r.get(k)}})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mindsemantix.evalcaps.conformance", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--metrics", default="BLEU,METEOR,ROUGE_L,CIDEr,SentenceScore")
    ap.add_argument("--tolerance", type=float, default=TOLERANCE)
    a = ap.parse_args(argv)
    t0 = time.time()
    try:
        res = deviations(published_rows(), a.metrics)
    except EvalCapsError as e:
        print(f"conformance: {e}", file=sys.stderr)
        return 2
    keys = [k for k in METRIC_KEYS if k in res[0]["delta"]]
    print(f"{'method':<24}{'sub':>4} " + " ".join(f"{k:>13}" for k in keys))
    for r in res:
        print(f"{r['method']:<24}{r['subject']:>4} " + " ".join(f"{r['delta'][k]:>+13.6f}" for k in keys))
    worst = {k: max(abs(r["delta"][k]) for r in res) for k in keys}
    print(f"{'max |ours - published|':<28} " + " ".join(f"{worst[k]:>13.6f}" for k in keys))
    print(f"{len(res)} rows, {time.time() - t0:.0f} s, tolerance {a.tolerance}")
    return 0 if all(v <= a.tolerance for v in worst.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
