"""Oracle for the TypeScript metrics tests (test/metrics): reads {"refs": {...}, "cand_sets": [{...}, ...],
"sentences": [...]} as JSON on stdin and writes {"tokenized": [...], "scores": [...]} on stdout: the PTB tokenization
of `sentences` (pycocoevalcap's jar and punctuation list) and BLEU-1..4 / ROUGE-L / CIDEr-D of each candidate set
(scored with --subset semantics: only the ids present in that set)."""
from __future__ import annotations

import json
import sys

from . import ptb
from .errors import EvalCapsError
from .evaluator import Evaluator


def main() -> int:
    req = json.load(sys.stdin)
    try:
        out: dict = {"tokenized": ptb.tokenize(req.get("sentences", []))}
        if req.get("cand_sets"):
            with Evaluator(req["refs"], ["BLEU", "ROUGE_L", "CIDEr"]) as ev:
                out["scores"] = ev.score_many(req["cand_sets"], subset=True)
    except EvalCapsError as e:
        print(f"evalcaps.oracle: {e}", file=sys.stderr)
        return 2
    json.dump(out, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
