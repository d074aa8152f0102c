"""Training data: one in-memory `Corpus` from (a) the simulator's NSD-style HDF5s, (b) NSD as users hold it
(MindEye2-style betas HDF5 + behaviour rows + COCO captions; MindEye-1/UMBRAE webdataset tars), plus cross-subject batching.

Train on single trials; evaluate on the mean of each test stimulus's repeats (per subject)."""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler


@dataclass
class SubjectData:
    subject: str
    voxels: int
    train_x: np.ndarray          # float32 [n, V] single trials
    train_stim: np.ndarray       # int64 [n] index into Corpus.stimuli
    test_x: np.ndarray           # float32 [m, V] mean of repeats
    test_stim: np.ndarray        # int64 [m]
    test_repeats: np.ndarray     # int64 [m] how many trials were averaged
    mask: Path | None = None     # ROI mask NIfTI (bundle export)


@dataclass
class Corpus:
    stimuli: list[str]                        # stimulus ids (sim ids, or NSD 73k indices as strings)
    captions: list[list[str]]                 # references per stimulus
    split: list[str]                          # 'train' | 'test' per stimulus
    subjects: dict[str, SubjectData] = field(default_factory=dict)
    image: Callable[[int], "object"] | None = None   # stimulus index → PIL.Image (None: no images)
    meta: dict = field(default_factory=dict)

    def summary(self) -> str:
        parts = [f"{s}: V={d.voxels} train {len(d.train_x)} trials, test {len(d.test_x)} stimuli" for s, d in self.subjects.items()]
        return f"{len(self.stimuli)} stimuli ({self.split.count('train')} train / {self.split.count('test')} test); " + "; ".join(parts)


def _mean_repeats(x: np.ndarray, stim: np.ndarray):
    order = np.unique(stim)
    means = np.stack([x[stim == s].mean(0) for s in order]) if len(order) else np.zeros((0, x.shape[1]), np.float32)
    counts = np.array([(stim == s).sum() for s in order], np.int64)
    return means.astype(np.float32), order.astype(np.int64), counts


def _subject(sub: str, x: np.ndarray, stim: np.ndarray, is_test: np.ndarray, mask=None) -> SubjectData:
    x = np.asarray(x, np.float32)
    tm, ts, tc = _mean_repeats(x[is_test], stim[is_test])
    return SubjectData(sub, x.shape[1], np.ascontiguousarray(x[~is_test]), stim[~is_test].astype(np.int64), tm, ts, tc, mask)


def _pil_loader(paths: list[Path]):
    def load(i: int):
        from PIL import Image
        return Image.open(paths[i]).convert("RGB")
    return load


# ---- (a) simulator ----------------------------------------------------------------------------------------------------

SCENE_FACT_COLUMNS = ("object", "colour", "count", "background")   # stimuli.tsv columns the compositional metric scores


def load_sim(root: Path, field_name: str = "responses", subjects: list[str] | None = None) -> Corpus:
    """DIR/stimuli.tsv + DIR/stimuli/<id>.png + DIR/derivatives/mindsemantix/sub-<id>/sub-<id>_responses.h5 (ARCHITECTURE.md)."""
    import h5py
    root = Path(root)
    tsv = root / "stimuli.tsv"
    if not tsv.exists():
        raise FileNotFoundError(f"{tsv} is missing; write the training data with `python -m mindsemantix.sim.dataset --out {root}`.")
    ids, caps, split, facts = [], [], [], {}
    with open(tsv, newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            ids.append(row["stimulus_id"])
            caps.append([str(c) for c in json.loads(row["captions"])])
            split.append(row["split"].strip())
            if all(row.get(k) for k in SCENE_FACT_COLUMNS):   # written by the simulator since the compositional metric
                facts[row["stimulus_id"]] = {k: int(row[k]) if k == "count" else row[k] for k in SCENE_FACT_COLUMNS}
    index = {s: i for i, s in enumerate(ids)}
    meta = {"source": "sim", "root": str(root), "field": field_name}
    if facts:
        meta["scene_facts"] = facts   # {stimulus id: {object, colour, count, background}}
    corpus = Corpus(ids, caps, split, image=_pil_loader([root / "stimuli" / f"{s}.png" for s in ids]), meta=meta)
    deriv = root / "derivatives" / "mindsemantix"
    files = sorted(deriv.glob("sub-*/sub-*_responses.h5"))
    if not files:
        raise FileNotFoundError(f"no sub-*/sub-*_responses.h5 under {deriv}; run `python -m mindsemantix.sim.dataset --out {root}`.")
    for fp in files:
        sub = fp.parent.name[len("sub-"):]
        if subjects and sub not in subjects:
            continue
        with h5py.File(fp, "r") as h:
            x = np.asarray(h[field_name], np.float32)
            sids = [s.decode() if isinstance(s, bytes) else str(s) for s in h["stimulus_ids"][()]]
            sp = [s.decode() if isinstance(s, bytes) else str(s) for s in h["split"][()]]
            for a in ("tr",):
                if a in h.attrs:
                    corpus.meta.setdefault("tr", float(h.attrs[a]))
            if "estimator" in h.attrs:
                corpus.meta.setdefault("estimator", str(h.attrs["estimator"]))
            # Serving-chain data (sim.serving_dataset) flags trials whose window had no usable volume (a zero vector).
            keep = None
            if "flags" in h:
                fl = [f.decode() if isinstance(f, bytes) else str(f) for f in h["flags"][()]]
                keep = np.array(["no-data" not in f.split(",") for f in fl])
        if keep is not None and not keep.all():
            x, sids, sp = x[keep], [s for s, k in zip(sids, keep) if k], [s for s, k in zip(sp, keep) if k]
        stim = np.array([index[s] for s in sids], np.int64)
        is_test = np.array([s == "test" for s in sp])
        mask = fp.parent / f"sub-{sub}_roi-mask.nii.gz"
        corpus.subjects[sub] = _subject(sub, x, stim, is_test, mask if mask.exists() else None)
    if subjects:
        corpus = _only_seen(corpus)
    return corpus


def labeled_subset(c: Corpus, fraction: float, seed: int = 0) -> Corpus:
    """The same corpus with captions for only `fraction` of the training stimuli (seeded; every subject keeps all repeats
    of the kept stimuli and none of the others): the semi-supervised setting, where masked brain modeling still
    pretrains on every trial. Test stimuli are untouched."""
    if not 0 < fraction <= 1:
        raise ValueError(f"data.labeled_fraction is {fraction}; give a fraction in (0, 1].")
    train = np.array([i for i, sp in enumerate(c.split) if sp == "train"])
    rng = np.random.default_rng(seed)
    keep = np.zeros(len(c.stimuli), bool)
    keep[rng.choice(train, max(1, int(round(fraction * len(train)))), replace=False)] = True
    out = Corpus(c.stimuli, c.captions, c.split, image=c.image, meta={**c.meta, "labeled_fraction": fraction})
    for s, d in c.subjects.items():
        m = keep[d.train_stim]
        out.subjects[s] = dataclasses.replace(d, train_x=np.ascontiguousarray(d.train_x[m]), train_stim=d.train_stim[m])
    return out


def _only_seen(c: Corpus) -> Corpus:
    """Drop stimuli that none of the loaded subjects saw (a subset of subjects then gives the same corpus whichever
    other subjects the folder holds)."""
    seen = sorted({int(i) for d in c.subjects.values() for i in np.concatenate([d.train_stim, d.test_stim])})
    if len(seen) == len(c.stimuli):
        return c
    new = {old: k for k, old in enumerate(seen)}
    remap = np.vectorize(new.__getitem__, otypes=[np.int64])
    img = c.image
    out = Corpus([c.stimuli[i] for i in seen], [c.captions[i] for i in seen], [c.split[i] for i in seen],
                 image=(lambda k, _img=img, _s=seen: _img(_s[k])) if img is not None else None, meta=c.meta)
    for s, d in c.subjects.items():
        d.train_stim = remap(d.train_stim) if len(d.train_stim) else d.train_stim
        d.test_stim = remap(d.test_stim) if len(d.test_stim) else d.test_stim
        out.subjects[s] = d
    return out


# ---- (b1) NSD, MindEye2-style HDF5 -------------------------------------------------------------------------------------

def read_behaviour(path: Path) -> np.ndarray:
    """73k image index (0-based) per trial, in trial order. Accepts NSD `responses.tsv` (column 73KID, 1-based) or a
    .npy with one 0-based index per trial ([n] or MindEye2 behaviour rows [n, k] with the 73k index in column 0)."""
    path = Path(path)
    if path.suffix == ".npy":
        a = np.load(path)
        return (a[:, 0] if a.ndim == 2 else a).astype(np.int64)
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    if not rows or "73KID" not in rows[0]:
        raise ValueError(f"{path} has no 73KID column; give NSD's responses.tsv or an .npy of 0-based 73k indices.")
    return np.array([int(float(r["73KID"])) - 1 for r in rows], np.int64)


def read_coco_captions(path: Path, stim_info: Path | None = None) -> dict[int, list[str]]:
    """73k index → captions. Accepts COCO annotations JSON (`annotations[].image_id/caption`, needs NSD's
    nsd_stim_info_merged.csv for nsdId → cocoId), a JSON {"<73k index>": [captions]}, or MindEye's
    COCO_73k_annots_curated.npy ([73000, 5] strings)."""
    path = Path(path)
    if path.suffix == ".npy":
        a = np.load(path, allow_pickle=True)
        return {i: [str(c).strip() for c in row if str(c).strip()] for i, row in enumerate(a)}
    data = json.loads(path.read_text())
    if isinstance(data, dict) and "annotations" in data:
        if stim_info is None:
            raise ValueError("COCO annotations need --stim-info nsd_stim_info_merged.csv to map NSD 73k indices to COCO ids.")
        by_coco: dict[int, list[str]] = {}
        for a in data["annotations"]:
            by_coco.setdefault(int(a["image_id"]), []).append(str(a["caption"]).strip())
        out = {}
        for nsd, coco, _ in read_stim_info(stim_info):
            if coco in by_coco:
                out[nsd] = by_coco[coco]
        return out
    return {int(k): [str(c) for c in v] for k, v in data.items()}


def read_stim_info(path: Path):
    """(nsdId 0-based, cocoId, shared1000) rows of NSD's nsd_stim_info_merged.csv."""
    out = []
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            shared = str(r.get("shared1000", "False")).strip().lower() in ("true", "1")
            out.append((int(r["nsdId"]), int(r["cocoId"]), shared))
    return out


def load_nsd_hdf5(subjects: dict[str, dict], captions: Path, stim_info: Path | None = None, test_ids: set[int] | None = None,
                  stimuli_h5: Path | None = None) -> Corpus:
    """subjects: id → {"betas": HDF5 with dataset 'betas' [trials, V], "behaviour": rows (see read_behaviour), "mask": optional}.
    Test split: `test_ids` (73k indices), else the shared1000 images of the stim info; everything else trains."""
    import h5py
    caps = read_coco_captions(captions, stim_info)
    if test_ids is None:
        if stim_info is None:
            raise ValueError("give test_ids or nsd_stim_info_merged.csv (its shared1000 column defines the test images)")
        test_ids = {n for n, _, s in read_stim_info(stim_info) if s}
    per = {}
    used: set[int] = set()
    for sub, spec in subjects.items():
        with h5py.File(spec["betas"], "r") as h:
            x = np.asarray(h["betas"], np.float32)
        idx = read_behaviour(spec["behaviour"])
        if len(idx) != len(x):
            raise ValueError(f"subject {sub}: {len(x)} beta rows but {len(idx)} behaviour rows; they must align trial by trial.")
        keep = np.array([i in caps for i in idx])
        per[sub] = (x[keep], idx[keep], spec.get("mask"))
        used |= set(int(i) for i in idx[keep])
    order = sorted(used)
    index = {n: i for i, n in enumerate(order)}
    corpus = Corpus([str(n) for n in order], [caps[n] for n in order], ["test" if n in test_ids else "train" for n in order],
                    meta={"source": "nsd-hdf5"})
    if stimuli_h5 is not None:
        def load(i, _p=stimuli_h5, _o=order):
            from PIL import Image
            with h5py.File(_p, "r") as h:
                return Image.fromarray(np.asarray(h["imgBrick"][_o[i]], np.uint8))
        corpus.image = load
    for sub, (x, idx, mask) in per.items():
        stim = np.array([index[int(i)] for i in idx], np.int64)
        is_test = np.array([int(i) in test_ids for i in idx])
        corpus.subjects[sub] = _subject(sub, x, stim, is_test, Path(mask) if mask else None)
    return corpus


# ---- (b2) NSD, MindEye-1 / UMBRAE webdataset tars ----------------------------------------------------------------------

def read_wds(tars: list[Path]):
    """Samples of webdataset tars: key → {"nsdgeneral.npy": [3, V], "coco73k.npy": index, "jpg": bytes}."""
    samples: dict[str, dict] = {}
    for t in tars:
        with tarfile.open(t) as tf:
            for m in tf.getmembers():
                if not m.isfile():
                    continue
                base = Path(m.name).name
                key, _, ext = base.partition(".")
                data = tf.extractfile(m).read()
                if ext.endswith(".npy"):
                    samples.setdefault(f"{t}:{key}", {})[ext] = np.load(io.BytesIO(data), allow_pickle=False)
                else:
                    samples.setdefault(f"{t}:{key}", {})[ext] = data
    return samples


def load_nsd_wds(subjects: dict[str, dict], captions: Path, stim_info: Path | None = None) -> Corpus:
    """subjects: id → {"train": [tars], "test": [tars], "mask": optional}. Each sample's `nsdgeneral.npy` holds the
    3 repeats [3, V]: training uses every repeat as a single trial, testing their mean."""
    caps = read_coco_captions(captions, stim_info)
    per = {}
    jpgs: dict[int, bytes] = {}
    used: set[int] = set()
    for sub, spec in subjects.items():
        rows = []
        for split in ("train", "test"):
            for key, s in sorted(read_wds([Path(p) for p in spec.get(split, [])]).items()):
                if "nsdgeneral.npy" not in s or "coco73k.npy" not in s:
                    continue
                n = int(np.asarray(s["coco73k.npy"]).reshape(-1)[0])
                if n not in caps:
                    continue
                reps = np.asarray(s["nsdgeneral.npy"], np.float32)
                reps = reps[~np.all(reps == 0, axis=1)] if reps.ndim == 2 else reps[None]  # zero rows: repeat not acquired
                rows.append((split, n, reps))
                if "jpg" in s:
                    jpgs.setdefault(n, s["jpg"])
                used.add(n)
        per[sub] = (rows, spec.get("mask"))
    order = sorted(used)
    index = {n: i for i, n in enumerate(order)}
    test_set = {n for rows, _ in per.values() for sp, n, _ in rows if sp == "test"}
    corpus = Corpus([str(n) for n in order], [caps[n] for n in order], ["test" if n in test_set else "train" for n in order],
                    meta={"source": "nsd-wds"})
    if jpgs:
        def load(i, _o=order):
            from PIL import Image
            return Image.open(io.BytesIO(jpgs[_o[i]])).convert("RGB")
        corpus.image = load
    for sub, (rows, mask) in per.items():
        xs, st, te = [], [], []
        for sp, n, reps in rows:
            for r in reps:
                xs.append(r)
                st.append(index[n])
                te.append(sp == "test")
        corpus.subjects[sub] = _subject(sub, np.stack(xs), np.array(st, np.int64), np.array(te), Path(mask) if mask else None)
    return corpus


# ---- datasets and cross-subject batching --------------------------------------------------------------------------------

class TrialDataset(Dataset):
    """All subjects' training trials, concatenated; item = (subject index, voxels, stimulus index)."""

    def __init__(self, corpus: Corpus, split: str = "train", repeat_targets: bool = False, cross_targets: bool = False,
                 seed: int = 0):
        """repeat_targets: items also carry the mean of the trial's other repeats (masked brain modeling's target).
        cross_targets: items also carry another subject's trial of the same stimulus (subject index, voxels), drawn at
        random each time; -1 and an empty tensor where no other subject saw the stimulus."""
        self.subjects = list(corpus.subjects)
        self.xs, self.stims, self.offsets, self.ys = [], [], [0], []
        for s in self.subjects:
            d = corpus.subjects[s]
            x, st = (d.train_x, d.train_stim) if split == "train" else (d.test_x, d.test_stim)
            self.xs.append(torch.from_numpy(x))
            self.stims.append(torch.from_numpy(st))
            if repeat_targets:
                self.ys.append(torch.from_numpy(other_repeats_mean(x, st)))
            self.offsets.append(self.offsets[-1] + len(x))
        self.partners = cross_subject_partners(self.stims) if cross_targets else None
        self.rng = np.random.default_rng(seed)

    def __len__(self):
        return self.offsets[-1]

    def locate(self, i: int):
        k = int(np.searchsorted(self.offsets, i, side="right") - 1)
        return k, i - self.offsets[k]

    def __getitem__(self, i):
        k, j = self.locate(i)
        item = (k, self.xs[k][j], self.stims[k][j])
        if self.ys:
            item += (self.ys[k][j],)
        if self.partners is not None:
            cand = self.partners.get((k, int(self.stims[k][j])), ())
            if cand:
                pk, pj = cand[int(self.rng.integers(len(cand)))]
                item += ((pk, self.xs[pk][pj]),)
            else:
                item += ((-1, torch.zeros(0)),)
        return item


def cross_subject_partners(stims: list[torch.Tensor]) -> dict[tuple[int, int], list[tuple[int, int]]]:
    """(subject index, stimulus) → every (other subject index, row) whose trial showed the same stimulus."""
    rows: dict[int, list[tuple[int, int]]] = {}
    for k, st in enumerate(stims):
        for j, s in enumerate(st.tolist()):
            rows.setdefault(s, []).append((k, j))
    out = {}
    for s, r in rows.items():
        subs = {k for k, _ in r}
        if len(subs) > 1:
            for k in subs:
                out[(k, s)] = [(pk, pj) for pk, pj in r if pk != k]
    return out


def other_repeats_mean(x: np.ndarray, stim: np.ndarray) -> np.ndarray:
    """[n, V] for each trial the mean of the other trials of the same stimulus (the trial itself where it has none).
    A self-supervised target that needs no caption or image: only which trials repeat a stimulus."""
    order, inv, counts = np.unique(stim, return_inverse=True, return_counts=True)
    sums = np.zeros((len(order), x.shape[1]), np.float64)
    np.add.at(sums, inv, x)
    c = counts[inv][:, None]
    out = np.where(c > 1, (sums[inv] - x) / np.maximum(c - 1, 1), x)
    return out.astype(np.float32)


def repeated_share(corpus: Corpus) -> float:
    """Share of the training trials whose stimulus the same subject saw in another training trial too."""
    n = rep = 0
    for d in corpus.subjects.values():
        _, inv, counts = np.unique(d.train_stim, return_inverse=True, return_counts=True)
        n += len(inv)
        rep += int((counts[inv] > 1).sum())
    return rep / max(n, 1)


def collate_single_subject(items):
    ks = {it[0] for it in items}
    assert len(ks) == 1, "a batch must hold one subject (voxel counts differ)"
    out = {"subject_index": items[0][0], "voxels": torch.stack([it[1] for it in items]),
           "stim": torch.stack([it[2] for it in items])}
    rest = [it[3:] for it in items]  # optional extras, in TrialDataset.__getitem__'s order
    if rest[0] and torch.is_tensor(rest[0][0]):
        out["target"] = torch.stack([r[0] for r in rest])
        rest = [r[1:] for r in rest]
    if rest[0]:
        out["partner_subject"] = torch.tensor([r[0][0] for r in rest])
        out["partner_voxels"] = [r[0][1] for r in rest]
    return out


class SubjectBatchSampler(Sampler):
    """Batches that each hold one subject, interleaved across subjects in a seeded random order (every epoch sees every
    subject's trials once). Under DDP each rank takes every world-th batch; all ranks get the same number of batches."""

    def __init__(self, ds: TrialDataset, batch_size: int, seed: int = 0, rank: int = 0, world: int = 1, drop_last: bool = True):
        self.ds, self.bs, self.seed, self.rank, self.world, self.drop_last = ds, batch_size, seed, rank, world, drop_last
        self.epoch = 0
        if len(self._all_batches()) // world == 0:
            # Lightning would otherwise "train" zero steps and save untouched weights without a word
            sizes = ", ".join(f"{s}: {ds.offsets[k + 1] - ds.offsets[k]}" for k, s in enumerate(ds.subjects))
            raise ValueError(f"batch size {batch_size} is larger than every subject's training trials ({sizes}) across {world} "
                             f"process(es): no full batch can be formed; lower train.batch_size (or the stage's batch_size) with --set.")

    def set_epoch(self, epoch: int):
        self.epoch = epoch

    def _all_batches(self):
        g = np.random.default_rng(self.seed + 1000 * self.epoch)
        batches = []
        for k in range(len(self.ds.subjects)):
            lo, hi = self.ds.offsets[k], self.ds.offsets[k + 1]
            idx = g.permutation(np.arange(lo, hi))
            n = (len(idx) // self.bs) if self.drop_last else math.ceil(len(idx) / self.bs)
            batches += [idx[i * self.bs:(i + 1) * self.bs].tolist() for i in range(n)]
        order = g.permutation(len(batches))
        return [batches[i] for i in order]

    def __iter__(self):
        b = self._all_batches()
        n = len(b) // self.world
        self.epoch += 1
        return iter(b[self.rank:n * self.world:self.world])

    def __len__(self):
        return len(self._all_batches()) // self.world
