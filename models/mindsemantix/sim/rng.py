"""Deterministic random streams: every random quantity is drawn from a stream named by (seed, purpose, indices),
so that e.g. scene 123 is the same image whichever session, subject or process renders it."""
from __future__ import annotations

import zlib

import numpy as np


def _tag(x: object) -> int:
    if isinstance(x, (int, np.integer)):
        return int(x) & 0xFFFFFFFF
    return zlib.crc32(str(x).encode("utf-8"))


def stream(*keys: object) -> np.random.Generator:
    """A numpy Generator determined only by the keys (ints or strings)."""
    return np.random.default_rng(np.random.SeedSequence([_tag(k) for k in keys]))


def subject_index(subject: str) -> int:
    """sim01 → 1; any other id is hashed (still deterministic)."""
    if subject.startswith("sim") and subject[3:].isdigit():
        return int(subject[3:])
    return 1000 + (_tag(subject) % 100000)
