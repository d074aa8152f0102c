"""Scores candidate captions against one reference set, reusing the tokenized references, the METEOR JVM and the
reference embeddings across calls (training loops and the conformance test score many candidate sets)."""
from __future__ import annotations

import sys

from . import coco, ptb
from .errors import EvalCapsError
from .io import match_ids, validate_candidates, validate_references

METRIC_KEYS = ("BLEU1", "BLEU2", "BLEU3", "BLEU4", "METEOR", "ROUGE_L", "CIDEr", "SentenceScore")
# Names accepted in `metrics`: a group name or one key; BLEU1..4 come from one BLEU computation anyway.
_GROUPS = {"bleu": "BLEU", "bleu1": "BLEU", "bleu2": "BLEU", "bleu3": "BLEU", "bleu4": "BLEU", "meteor": "METEOR",
           "rouge": "ROUGE_L", "rouge_l": "ROUGE_L", "cider": "CIDEr", "cider-d": "CIDEr",
           "sentencescore": "SentenceScore", "sentence": "SentenceScore"}
ALL_METRICS = ("BLEU", "METEOR", "ROUGE_L", "CIDEr", "SentenceScore")


def parse_metrics(metrics) -> tuple[set[str], set[str]]:
    """(groups to compute, output keys to report) from names such as ("BLEU4", "CIDEr") or "bleu,meteor"."""
    if isinstance(metrics, str):
        metrics = [m for m in metrics.split(",") if m.strip()]
    groups: set[str] = set()
    keys: set[str] = set()
    for m in metrics:
        name = m.strip()
        g = _GROUPS.get(name.lower())
        if g is None:
            raise EvalCapsError(f"unknown metric {name!r}; choose from BLEU, BLEU1..BLEU4, METEOR, ROUGE_L, CIDEr, SentenceScore.")
        groups.add(g)
        if g == "BLEU" and name.lower() != "bleu":
            keys.add(name.upper())
        elif g == "BLEU":
            keys.update(("BLEU1", "BLEU2", "BLEU3", "BLEU4"))
        else:
            keys.add(g)
    if not groups:
        raise EvalCapsError("no metrics selected; pass e.g. --metrics BLEU,METEOR,ROUGE_L,CIDEr.")
    return groups, keys


class Evaluator:
    def __init__(self, refs: dict[str, list[str]], metrics=ALL_METRICS) -> None:
        self.refs = validate_references(refs)
        self.groups, self.keys = parse_metrics(metrics)
        # With the default selection SentenceScore is optional: without its weights package it is left out with a note.
        self._sentence_optional = metrics is ALL_METRICS
        self._tok_refs: dict[str, list[str]] | None = None
        self._meteor: coco.MeteorProcess | None = None
        self._sentence = None

    def _tokenized_refs(self) -> dict[str, list[str]]:
        if self._tok_refs is None:
            ids = list(self.refs)
            flat = ptb.tokenize([r for i in ids for r in self.refs[i]])
            out, k = {}, 0
            for i in ids:
                n = len(self.refs[i])
                out[i] = flat[k:k + n]
                k += n
            self._tok_refs = out
        return self._tok_refs

    def score(self, cands: dict[str, str], subset: bool = False, per_image: bool = False) -> dict:
        return self.score_many([cands], subset=subset, per_image=per_image)[0]

    def score_many(self, cand_sets: list[dict[str, str]], subset: bool = False, per_image: bool = False) -> list[dict]:
        """Scores several candidate sets (e.g. methods or epochs) with one tokenizer call for all of them."""
        sets = [validate_candidates(c) for c in cand_sets]
        id_lists = [match_ids(self.refs, c, subset=subset) for c in sets]
        need_tok = self.groups & {"BLEU", "METEOR", "ROUGE_L", "CIDEr"}
        if "METEOR" in self.groups and self._meteor is None:
            # Start the JVM first: it loads its paraphrase table while we tokenize and load the sentence model.
            self._meteor = coco.MeteorProcess()
        tok_sets: list[dict[str, str]] = [{} for _ in sets]
        if need_tok:
            tok_refs = self._tokenized_refs()
            flat = ptb.tokenize([c[i] for c, ids in zip(sets, id_lists) for i in ids])
            k = 0
            for t, ids in zip(tok_sets, id_lists):
                for i in ids:
                    t[i] = flat[k]
                    k += 1
        results = []
        for cands, tok, ids in zip(sets, tok_sets, id_lists):
            scores: dict[str, float] = {}
            per: dict[str, list[float]] = {}
            if need_tok:
                gts = {i: tok_refs[i] for i in ids}
                res = {i: [tok[i]] for i in ids}
            if "BLEU" in self.groups:
                b, bp = coco.bleu(gts, res)
                for n in range(4):
                    scores[f"BLEU{n + 1}"], per[f"BLEU{n + 1}"] = b[n], bp[n]
            if "METEOR" in self.groups:
                scores["METEOR"], per["METEOR"] = self._meteor.score(gts, res)
            if "ROUGE_L" in self.groups:
                scores["ROUGE_L"], per["ROUGE_L"] = coco.rouge_l(gts, res)
            if "CIDEr" in self.groups:
                scores["CIDEr"], per["CIDEr"] = coco.cider_d(gts, res)
            if "SentenceScore" in self.groups:
                if self._sentence is None:
                    from .sentence import SentenceScorer
                    try:
                        self._sentence = SentenceScorer()
                    except EvalCapsError as e:
                        if not self._sentence_optional:
                            raise
                        print(f"evalcaps: note: SentenceScore left out: {e}", file=sys.stderr)
                        self.groups.discard("SentenceScore")
                        self.keys.discard("SentenceScore")
                if self._sentence is not None:
                    scores["SentenceScore"], per["SentenceScore"] = self._sentence.score(self.refs, cands, ids)
            out = {k: scores[k] for k in METRIC_KEYS if k in self.keys}
            if per_image:
                out = {"scores": out, "images": len(ids),
                       "per_image": {i: {k: per[k][n] for k in METRIC_KEYS if k in self.keys} for n, i in enumerate(ids)}}
            results.append(out)
        return results

    def close(self) -> None:
        if self._meteor is not None:
            self._meteor.close()
            self._meteor = None

    def __enter__(self) -> "Evaluator":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def score(refs: dict[str, list[str]], cands: dict[str, str], metrics=ALL_METRICS, subset: bool = False,
          per_image: bool = False) -> dict:
    """Caption metrics of `cands` ({id: caption}) against `refs` ({id: [ref, ...]}) on pycocoevalcap's 0..1 scale:
    {"BLEU1".."BLEU4", "METEOR", "ROUGE_L", "CIDEr", "SentenceScore"} (those selected by `metrics`).
    Every reference id needs a candidate unless `subset`. With `per_image`, returns
    {"scores": {...}, "images": n, "per_image": {id: {...}}}. Raises EvalCapsError for bad input or a missing Java."""
    with Evaluator(refs, metrics) as ev:
        return ev.score(cands, subset=subset, per_image=per_image)
