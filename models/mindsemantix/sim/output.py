"""Writers for the simulator's outputs, in the layout fixed by docs/ARCHITECTURE.md."""
from __future__ import annotations

import json
import os

import h5py
import nibabel as nib
import numpy as np
from PIL import Image

from .world import WORLD_SEED, image_array, scene, scene_id, scene_index, split_of

DERIV = os.path.join("derivatives", "mindsemantix")


def subject_deriv(out: str, sid: str) -> str:
    d = os.path.join(out, DERIV, f"sub-{sid}")
    os.makedirs(d, exist_ok=True)
    return d


def write_stimuli(out: str, indices, images: dict | None = None, world_seed: int = WORLD_SEED) -> None:
    d = os.path.join(out, "stimuli")
    os.makedirs(d, exist_ok=True)
    for i in indices:
        path = os.path.join(d, f"{scene_id(i)}.png")
        if os.path.exists(path):
            continue
        arr = images[i] if images is not None and i in images else image_array(i, world_seed)
        tmp = path + ".tmp"
        Image.fromarray(arr).save(tmp, format="PNG", compress_level=1)
        os.replace(tmp, path)


STIMULI_COLUMNS = ["stimulus_id", "split", "captions", "object", "colour", "count", "background", "objects", "relation"]


def scene_columns(index: int, world_seed: int = WORLD_SEED) -> dict[str, str]:
    """The scene's facts for stimuli.tsv: the main object's category, colour and count, the background (what the
    compositional metric scores), every object group as JSON (main first) and the main group's relation to the other."""
    s = scene(index, world_seed)
    groups = [g for g in (s.primary, s.secondary) if g is not None]
    objects = [{"category": g.category, "colour": g.colour, "size": g.size, "count": g.count} for g in groups]
    return {"object": s.primary.category, "colour": s.primary.colour, "count": str(s.primary.count),
            "background": s.background, "objects": json.dumps(objects), "relation": s.relation or "n/a"}


def write_stimuli_tsv(out: str, indices, world_seed: int = WORLD_SEED) -> None:
    """stimuli.tsv: merged with any existing rows so that repeated runs into the same folder accumulate (rows from
    before the scene columns existed get them from the world, which their stimulus id fixes)."""
    path = os.path.join(out, "stimuli.tsv")
    rows: dict[str, dict[str, str]] = {}
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            head = next(f, "").rstrip("\n").split("\t")
            for line in f:
                row = dict(zip(head, line.rstrip("\n").split("\t")))
                rows[row["stimulus_id"]] = row
    for i in indices:
        rows[scene_id(i)] = {"stimulus_id": scene_id(i), "split": split_of(i), "captions": json.dumps(list(scene(i, world_seed).captions))}
    for sid, row in rows.items():
        if any(c not in row for c in STIMULI_COLUMNS):
            row.update(scene_columns(scene_index(sid), world_seed))
    os.makedirs(out, exist_ok=True)
    with open(path + ".tmp", "w", encoding="utf-8") as f:  # plain TSV: JSON arrays contain no tabs or newlines
        f.write("\t".join(STIMULI_COLUMNS) + "\n")
        for k in sorted(rows):
            f.write("\t".join(rows[k][c] for c in STIMULI_COLUMNS) + "\n")
    os.replace(path + ".tmp", path)


def write_description(out: str, extra: dict | None = None) -> None:
    os.makedirs(out, exist_ok=True)
    desc = {"Name": "mindsemantix simulated visual fMRI experiment", "BIDSVersion": "1.8.0", "DatasetType": "raw",
            "License": "CC0", "Authors": ["mindsemantix simulator"], "WorldSeed": WORLD_SEED}
    desc.update(extra or {})
    with open(os.path.join(out, "dataset_description.json"), "w", encoding="utf-8") as f:
        json.dump(desc, f, indent=2)


def write_mask(out: str, subj) -> str:
    a = subj.anat
    img = nib.Nifti1Image(a.roi.astype(np.uint8), a.affine)
    img.header.set_xyzt_units("mm", "sec")
    img.header.set_qform(a.affine, code=1)
    img.header.set_sform(a.affine, code=1)
    path = os.path.join(subject_deriv(out, subj.id), f"sub-{subj.id}_roi-mask.nii.gz")
    nib.save(img, path)
    return path


def write_responses(out: str, subj, trials, seed: int) -> str:
    from .dataset import ESTIMATOR
    from .design import TR

    path = os.path.join(subject_deriv(out, subj.id), f"sub-{subj.id}_responses.h5")
    tmp = path + ".tmp"
    with h5py.File(tmp, "w") as f:
        f.create_dataset("responses", data=trials.responses.astype(np.float32), chunks=True)
        f.create_dataset("betas", data=trials.betas.astype(np.float32), chunks=True)
        str_t = h5py.string_dtype("utf-8")
        f.create_dataset("stimulus_ids", data=np.array([scene_id(int(s)) for s in trials.scenes], dtype=object), dtype=str_t)
        f.create_dataset("split", data=np.array([split_of(int(s)) for s in trials.scenes], dtype=object), dtype=str_t)
        f.create_dataset("repeat", data=trials.repeat.astype(np.int32))
        f.create_dataset("run", data=trials.run.astype(np.int32))
        f.create_dataset("onset", data=trials.onsets.astype(np.float32))
        caps = [json.dumps(list(scene(int(s)).captions)) for s in trials.scenes]
        f.create_dataset("captions", data=np.array(caps, dtype=object), dtype=str_t)
        f.attrs["subject"] = subj.id
        f.attrs["voxels"] = int(subj.anat.voxels)
        f.attrs["tr"] = float(TR)
        f.attrs["estimator"] = ESTIMATOR
        f.attrs["seed"] = int(seed)
        f.attrs["world_seed"] = int(subj.world_seed)
        f.attrs["grid"] = subj.grid
        f.attrs["mask"] = f"sub-{subj.id}_roi-mask.nii.gz"
    os.replace(tmp, path)
    return path
