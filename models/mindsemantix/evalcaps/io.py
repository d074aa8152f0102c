"""Loading and validating caption files (BrainHub format).

References: ``{id: [ref, ...]}`` (a bare string is taken as one reference, as BrainHub's eval_caption.py does).
Candidates: ``{id: caption}`` (a one-element list is accepted too).
"""
from __future__ import annotations

import json
import os
from typing import Any

from .errors import EvalCapsError


def _load_json(path: str, what: str) -> Any:
    if not os.path.exists(path):
        raise EvalCapsError(f"{what} file {path} does not exist; check the path.")
    if os.path.isdir(path):
        raise EvalCapsError(f"{what} file {path} is a directory; pass a JSON file.")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except UnicodeDecodeError as e:
        raise EvalCapsError(f"{what} file {path} is not UTF-8 text ({e.reason} at byte {e.start}); save it as UTF-8 JSON.") from None
    except json.JSONDecodeError as e:
        raise EvalCapsError(f"{what} file {path} is not valid JSON ({e.msg} at line {e.lineno} column {e.colno}); fix the file.") from None


def _sample(ids: list[str], n: int = 3) -> str:
    shown = ", ".join(json.dumps(i) for i in ids[:n])
    return shown + (", ..." if len(ids) > n else "")


def validate_references(data: Any, source: str = "references") -> dict[str, list[str]]:
    """Checks ``{id: [ref, ...]}`` and returns it with string ids; raises EvalCapsError with the first problem found."""
    if not isinstance(data, dict):
        raise EvalCapsError(
            f"{source} must be a JSON object {{id: [reference, ...]}} (got a JSON {type(data).__name__}); "
            "convert it to the BrainHub format of caption/fmri_cococap.json.")
    if not data:
        raise EvalCapsError(f"{source} has no ids; it must map every image id to its reference captions.")
    out: dict[str, list[str]] = {}
    for key, value in data.items():
        refs = [value] if isinstance(value, str) else value
        if not isinstance(refs, list) or not refs:
            raise EvalCapsError(f"{source}: id {json.dumps(key)} must map to a non-empty list of reference strings.")
        for r in refs:
            if not isinstance(r, str):
                raise EvalCapsError(f"{source}: id {json.dumps(key)} has a reference that is not a string ({json.dumps(r)[:60]}).")
        out[str(key)] = list(refs)
    return out


def validate_candidates(data: Any, source: str = "candidates") -> dict[str, str]:
    """Checks ``{id: caption}`` and returns it with string ids; raises EvalCapsError with the first problem found."""
    if not isinstance(data, dict):
        raise EvalCapsError(
            f"{source} must be a JSON object {{id: caption}} (got a JSON {type(data).__name__}); "
            "write one caption string per image id.")
    if not data:
        raise EvalCapsError(f"{source} has no ids; it must map image ids to one caption each.")
    out: dict[str, str] = {}
    for key, value in data.items():
        if isinstance(value, list) and len(value) == 1:
            value = value[0]
        if not isinstance(value, str):
            raise EvalCapsError(f"{source}: id {json.dumps(key)} must map to one caption string (got {json.dumps(value)[:60]}).")
        out[str(key)] = value
    return out


def match_ids(refs: dict[str, list[str]], cands: dict[str, str], subset: bool = False) -> list[str]:
    """The ids to score, in reference order. Every candidate id must have references; every reference id must have a
    candidate unless ``subset`` (then only candidate ids are scored, and CIDEr's document frequencies use their refs)."""
    missing = [i for i in cands if i not in refs]
    if missing:
        raise EvalCapsError(
            f"{len(missing)} candidate id(s) are not in the references ({_sample(missing)}); "
            "check that both files use the same ids (BrainHub uses test-set positions \"0\"..\"981\").")
    uncaptioned = [i for i in refs if i not in cands]
    if uncaptioned and not subset:
        raise EvalCapsError(
            f"{len(uncaptioned)} of {len(refs)} reference id(s) have no candidate caption ({_sample(uncaptioned)}); "
            "caption every image, or pass --subset to score only the candidates' ids (scores are then not comparable "
            "with full-test-set results).")
    return [i for i in refs if i in cands]


def load_references(path: str) -> dict[str, list[str]]:
    return validate_references(_load_json(path, "references"), f"references file {path}")


def load_candidates(path: str) -> dict[str, str]:
    return validate_candidates(_load_json(path, "candidates"), f"candidates file {path}")
