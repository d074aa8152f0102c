"""The cross-language contracts as JSON Schema: src/core/schemas/<name>.schema.json, kept once in the repository and
read by both sides (TS: src/core/schemas/validator.ts with ajv; here with jsonschema).

The first violation is reported the way the TS side reports it: the field's dotted path and the schema's description
of a valid value (each field's `description` is the noun phrase that follows "must be"), so both languages name the
same field for the same broken document (models/tests/test_schemas.py and test/core/schemas.test.ts share fixtures).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field as dc_field
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urldefrag

# models/mindsemantix/schemas.py → the repository root → src/core/schemas
SCHEMA_DIR = Path(__file__).resolve().parents[2] / "src" / "core" / "schemas"
# Base of every schema's $id (`.invalid`: never fetched; references between the files resolve against it).
SCHEMA_BASE = "https://mindsemantix.invalid/schemas/"


@dataclass
class Problem:
    """The first violation in words. kind: 'missing' | 'unknown' | 'invalid'; field: dotted path, arrays as [i]."""
    kind: str
    field: str
    expected: str
    value: Any = None
    known: list = dc_field(default_factory=list)


class SchemaViolation(ValueError):
    """A document that breaks its contract; the message is one sentence, `problem` says which field and why."""

    def __init__(self, message: str, problem: Problem):
        super().__init__(message)
        self.problem = problem


@lru_cache(maxsize=None)
def load(name: str) -> dict:
    """The parsed `<name>.schema.json`."""
    path = SCHEMA_DIR / f"{name}.schema.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; run from a full mindsemantix checkout (models/ reads the schemas in src/core/schemas).")
    return json.loads(path.read_text())


def _uri(name: str) -> str:
    return f"{SCHEMA_BASE}{name}.schema.json"


def _doc_by_uri(uri: str) -> dict:
    return load(uri[len(SCHEMA_BASE):].removesuffix(".schema.json"))


@lru_cache(maxsize=None)
def _registry():
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012
    # every schema file, keyed by the URI its $id names (the other files' $refs resolve against it)
    names = sorted(p.name.removesuffix(".schema.json") for p in SCHEMA_DIR.glob("*.schema.json"))
    return Registry().with_resources((_uri(n), Resource.from_contents(load(n), default_specification=DRAFT202012)) for n in names)


@lru_cache(maxsize=None)
def _validator(name: str, pointer: str):
    from jsonschema import Draft202012Validator
    return Draft202012Validator({"$ref": f"{_uri(name)}{pointer}"}, registry=_registry())


def _resolve_pointer(doc: dict, pointer: str):
    node = doc
    for seg in [s for s in pointer.lstrip("#").split("/") if s]:
        node = node[seg.replace("~1", "/").replace("~0", "~")]
    return node


def _chain(node: dict, base: str) -> list:
    """The node, then what its $ref points to (and so on): where its keywords and description may be."""
    out = [(node, base)]
    while isinstance(node.get("$ref"), str):
        url, frag = urldefrag(urljoin(base, node["$ref"]))
        node, base = _resolve_pointer(_doc_by_uri(url), frag or ""), url
        out.append((node, base))
    return out


def _child(frame, seg):
    for node, base in _chain(*frame):
        props = node.get("properties")
        if isinstance(props, dict) and isinstance(props.get(seg), dict):
            return props[seg], base
        if isinstance(seg, int):
            prefix = node.get("prefixItems")
            if isinstance(prefix, list) and seg < len(prefix) and isinstance(prefix[seg], dict):
                return prefix[seg], base
            if isinstance(node.get("items"), dict):
                return node["items"], base
        if isinstance(node.get("additionalProperties"), dict):
            return node["additionalProperties"], base
    return None


def _description(frame):
    for node, _ in _chain(*frame):
        if isinstance(node.get("description"), str):
            return node["description"]
    return None


def _field_path(segs) -> str:
    out = ""
    for s in segs:
        out = f"{out}[{s}]" if isinstance(s, int) else (f"{out}.{s}" if out else str(s))
    return out


def check(name: str, doc, pointer: str = "") -> Problem | None:
    """None if `doc` satisfies schema `name` (or its sub-schema at `pointer`, e.g. '#/$defs/event'), else the problem."""
    from jsonschema.exceptions import best_match
    err = best_match(_validator(name, pointer).iter_errors(doc))
    if err is None:
        return None
    segs = list(err.absolute_path)
    frames = [(_resolve_pointer(load(name), pointer), _uri(name))]
    for s in segs:
        nxt = _child(frames[-1], s)
        if nxt is None:
            break
        frames.append(nxt)
    complete = len(frames) == len(segs) + 1
    if err.validator == "required" and complete and isinstance(err.instance, dict):
        key = next(k for k in err.validator_value if k not in err.instance)
        f = _child(frames[-1], key)
        return Problem("missing", _field_path(segs + [key]), (f and _description(f)) or "present")
    if err.validator == "additionalProperties" and complete and isinstance(err.instance, dict):
        known = [k for node, _ in _chain(*frames[-1]) for k in node.get("properties", {})]
        patterns = [re.compile(p) for node, _ in _chain(*frames[-1]) for p in node.get("patternProperties", {})]
        key = next(k for k in err.instance if k not in known and not any(p.search(k) for p in patterns))
        return Problem("unknown", _field_path(segs + [key]), "absent", err.instance[key], known)
    for i in range(len(frames) - 1, 0, -1):
        d = _description(frames[i])
        if d:
            value = doc
            for s in segs[:i]:
                value = value[s]
            return Problem("invalid", _field_path(segs[:i]), d, value)
    return Problem("invalid", "", "a JSON object", doc)


def short_json(v, limit: int = 40) -> str:
    s = json.dumps(v, ensure_ascii=False, separators=(",", ":"))
    return s if len(s) <= limit else s[: limit - 1] + "…"


def manifest_problem_text(p: Problem) -> str:
    """The problem as the TS bundle loader words it (without its 'model bundle DIR:' prefix and fix)."""
    if p.field == "":
        return "manifest.json must be a JSON object"
    if p.kind == "missing":
        return f'manifest.json has no field "{p.field}" ({p.expected})'
    if p.kind == "unknown":
        return f'manifest.json has an unknown field "{p.field}" (known: {", ".join(p.known)})'
    return f'manifest.json field "{p.field}" must be {p.expected} (it is {short_json(p.value)})'


def validate_manifest(manifest: dict, where: str) -> dict:
    """Raises SchemaViolation (one sentence naming `where`) unless `manifest` satisfies bundle-manifest.schema.json —
    the check src/inference/bundle.ts makes when it loads the bundle. Returns the manifest."""
    p = check("bundle-manifest", manifest)
    if p is not None:
        raise SchemaViolation(f"{where}: {manifest_problem_text(p)}; the bundle would not load, fix the exporter or its inputs.", p)
    return manifest
