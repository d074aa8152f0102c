"""python -m mindsemantix.evalcaps --refs R.json --cands C.json [--json] [--metrics LIST] [--subset] [--per-image OUT.json]"""
from __future__ import annotations

import argparse
import json
import sys

from .errors import EvalCapsError
from .evaluator import ALL_METRICS, score
from .io import load_candidates, load_references

LABELS = {"BLEU1": "BLEU-1", "BLEU2": "BLEU-2", "BLEU3": "BLEU-3", "BLEU4": "BLEU-4", "METEOR": "METEOR",
          "ROUGE_L": "ROUGE-L", "CIDEr": "CIDEr-D", "SentenceScore": "SentenceScore"}


def table(scores: dict, images: int) -> str:
    lines = [f"{'metric':<14} {'score':>8} {'x100':>7}", "-" * 31]
    lines += [f"{LABELS.get(k, k):<14} {v:>8.4f} {100 * v:>7.2f}" for k, v in scores.items()]
    how = []
    if any(k != "SentenceScore" for k in scores):
        how.append("pycocoevalcap 1.2 on PTB tokens" + (" (METEOR 1.5)" if "METEOR" in scores else ""))
    if "SentenceScore" in scores:
        how.append("SentenceScore: all-MiniLM-L6-v2")
    lines.append(f"{images} images; " + "; ".join(how))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mindsemantix.evalcaps", description=__doc__)
    ap.add_argument("--refs", required=True, help="references JSON {id: [ref, ...]}")
    ap.add_argument("--cands", required=True, help="candidates JSON {id: caption}")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--metrics", help="comma list of BLEU, METEOR, ROUGE_L, CIDEr, SentenceScore (default: all)")
    ap.add_argument("--subset", action="store_true", help="score only the ids present in --cands")
    ap.add_argument("--per-image", metavar="OUT", help="also write per-image scores to this JSON file")
    a = ap.parse_args(argv)
    try:
        refs = load_references(a.refs)
        cands = load_candidates(a.cands)
        r = score(refs, cands, metrics=a.metrics or ALL_METRICS, subset=a.subset, per_image=True)
        if a.per_image:
            with open(a.per_image, "w", encoding="utf-8") as f:
                json.dump(r["per_image"], f)
    except EvalCapsError as e:
        print(f"evalcaps: {e}", file=sys.stderr)
        return 2
    print(json.dumps(r["scores"]) if a.json else table(r["scores"], r["images"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
