"""Caption metrics as BrainHub reports them: BLEU-1..4, METEOR 1.5, ROUGE-L, CIDEr-D (pycocoevalcap 1.2 on PTB-tokenized
text) and SentenceScore (all-MiniLM-L6-v2). See docs/metrics.md.

    from mindsemantix.evalcaps import score
    score({"0": ["a dog runs", "a brown dog"]}, {"0": "a dog is running"})   # {"BLEU1": ..., "CIDEr": ..., ...}
"""
from .errors import EvalCapsError
from .evaluator import ALL_METRICS, METRIC_KEYS, Evaluator, score
from .io import load_candidates, load_references, match_ids, validate_candidates, validate_references

__all__ = ["score", "Evaluator", "EvalCapsError", "ALL_METRICS", "METRIC_KEYS", "load_references", "load_candidates",
           "validate_references", "validate_candidates", "match_ids"]
