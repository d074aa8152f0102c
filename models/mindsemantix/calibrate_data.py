"""Calibration trials: the response files `mindsemantix responses` / `serve --record` write (the serving chain's
vectors, never offline estimates), joined with each stimulus's reference captions and embedded by the bundle's own
text encoder (text_encoder.onnx + text_tokenizer.json), so the targets live in exactly the space the bundle decodes to."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from .calibrate_fit import CalibrationData

# Trials without a usable window: no volume reached the estimator, or the window was cut by the run's end.
UNUSABLE_FLAGS = {"no-data", "incomplete-window"}
MIN_TRIALS = 50


class CalibrationInputError(ValueError):
    """Bad calibration input; the message is one sentence saying what to do."""


def read_response_files(root: Path, subject: str) -> tuple[np.ndarray, list[dict]]:
    """Every run's responses of sub-<subject> under `root` (OUT/sub-<id>/ses-*/..._responses.{npy,tsv}), rows in run
    order; an npy one row ahead of its TSV (a crash mid-write) is trimmed to the TSV."""
    tsvs = sorted(Path(root).glob(f"sub-{subject}/ses-*/sub-{subject}_*_responses.tsv"))
    if not tsvs:
        raise CalibrationInputError(f"no response files of sub-{subject} under {root}; record or compute the calibration runs first.")
    xs, rows = [], []
    for t in tsvs:
        with open(t, newline="") as f:
            r = list(csv.DictReader(f, delimiter="\t"))
        x = np.load(t.with_suffix(".npy"))[: len(r)]
        if x.ndim != 2 or len(x) != len(r):
            raise CalibrationInputError(f"{t.with_suffix('.npy')} has {len(x)} rows for {len(r)} trials in its TSV; recompute that run's responses.")
        for row in r:
            row["run_file"] = t.name
        xs.append(x.astype(np.float32))
        rows.extend(r)
    widths = {x.shape[1] for x in xs}
    if len(widths) != 1:
        raise CalibrationInputError(f"the runs' responses have different voxel counts {sorted(widths)}; compute every run with the same mask.")
    return np.concatenate(xs), rows


def usable_trials(rows: list[dict], captions: dict) -> np.ndarray:
    """Indices of trials with a usable window and a captioned stimulus."""
    keep = []
    for i, r in enumerate(rows):
        flags = set((r.get("flags") or "n/a").split(",")) - {"n/a", ""}
        if flags & UNUSABLE_FLAGS or not captions.get(r["stimulus_id"]):
            continue
        keep.append(i)
    return np.array(keep, dtype=np.int64)


class BundleTextEncoder:
    """The bundle's sentence encoder (ONNX), as the decoder uses it."""

    def __init__(self, bundle: Path, manifest: dict, threads: int = 1):
        from tokenizers import Tokenizer
        from .onnx_util import ort_session
        te = manifest.get("text_encoder", {"onnx": "text_encoder.onnx", "tokenizer": "text_tokenizer.json", "max_length": 64})
        self.tok = Tokenizer.from_file(str(bundle / te["tokenizer"]))
        self.max_len = int(te.get("max_length", 64))
        self.sess = ort_session(bundle / te["onnx"], threads)

    def __call__(self, texts: list[str], batch: int = 64) -> np.ndarray:
        out = []
        for i in range(0, len(texts), batch):
            encs = self.tok.encode_batch(texts[i:i + batch])
            L = min(self.max_len, max(len(e.ids) for e in encs))
            ids = np.zeros((len(encs), L), np.int64)
            att = np.zeros((len(encs), L), np.int64)
            for j, e in enumerate(encs):
                n = min(L, len(e.ids))
                ids[j, :n], att[j, :n] = e.ids[:n], e.attention_mask[:n]
            e = self.sess.run(None, {"input_ids": ids, "attention_mask": att})[0]
            out.append(e / (np.linalg.norm(e, axis=1, keepdims=True) + 1e-9))
        return np.concatenate(out).astype(np.float32)


def embed_references(encoder: BundleTextEncoder, captions: dict, stimulus_ids: list, k: int = 5) -> np.ndarray:
    """[S, k, E]: each stimulus's references embedded; fewer than k references are cycled (every stimulus weighs the same)."""
    texts = []
    for s in stimulus_ids:
        refs = list(captions[s])
        texts.extend(refs[j % len(refs)] for j in range(k))
    e = encoder(texts)
    return e.reshape(len(stimulus_ids), k, -1)


def load_calibration(responses: Path, subject: str, captions: dict, encoder: BundleTextEncoder,
                     columns: np.ndarray | None = None) -> tuple[CalibrationData, dict]:
    """CalibrationData for sub-<subject> (optionally only these voxel columns) and a report of what was dropped."""
    x, rows = read_response_files(responses, subject)
    keep = usable_trials(rows, captions)
    report = {"trials_recorded": len(rows), "trials_used": int(len(keep)), "runs": len({r["run_file"] for r in rows})}
    if len(keep) < MIN_TRIALS:
        raise CalibrationInputError(
            f"only {len(keep)} of {len(rows)} calibration trials are usable (a captioned stimulus and a complete response window); "
            f"calibration needs at least {MIN_TRIALS}: record more calibration runs.")
    x = x[keep] if columns is None else x[np.ix_(keep, columns)]
    sids = [rows[i]["stimulus_id"] for i in keep]
    uniq = sorted(set(sids))
    index = {s: i for i, s in enumerate(uniq)}
    data = CalibrationData(x=np.ascontiguousarray(x, dtype=np.float32), stim=np.array([index[s] for s in sids]),
                           stimulus_ids=uniq, cap_emb=embed_references(encoder, captions, uniq))
    report["stimuli"] = len(uniq)
    report["presentations_per_stimulus"] = round(len(sids) / len(uniq), 2)
    return data, report


def read_captions(path: Path) -> dict:
    return {k: [str(c) for c in v] for k, v in json.loads(Path(path).read_text()).items() if isinstance(v, list) and v}
