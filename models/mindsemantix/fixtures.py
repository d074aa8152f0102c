"""Small files in exactly the layouts users hold (for tests): the simulator's training data, MindEye2-style NSD HDF5 +
behaviour rows + COCO captions, MindEye-1/UMBRAE webdataset tars. Responses carry a real, learnable signal: a fixed
random linear map of the stimulus's attributes plus noise."""
from __future__ import annotations

import csv
import io
import json
import tarfile
from pathlib import Path

import numpy as np

COLOURS = ["red", "green", "blue", "yellow"]
SHAPES = ["circle", "square", "triangle"]
RGB = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (40, 60, 220), "yellow": (230, 220, 40)}


def stimuli(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        c, s = COLOURS[i % 4], SHAPES[(i // 4) % 3]
        caps = [f"a {c} {s} on a grey background", f"a {s} coloured {c}", f"one {c} {s}", f"a picture of a {c} {s}",
                f"a {c} {s} in the middle"]
        feat = np.zeros(7, np.float32)
        feat[COLOURS.index(c)] = 1
        feat[4 + SHAPES.index(s)] = 1
        out.append((f"s{i:03d}", caps, feat + rng.normal(0, 0.05, 7).astype(np.float32), c))
    return out


def image_png(colour: str, size: int = 32) -> bytes:
    from PIL import Image
    a = np.full((size, size, 3), 128, np.uint8)
    a[size // 4: 3 * size // 4, size // 4: 3 * size // 4] = RGB[colour]
    b = io.BytesIO()
    Image.fromarray(a).save(b, format="PNG")
    return b.getvalue()


def responses(stims, V: int, seed: int, repeats: dict, noise: float = 0.3):
    """(x [n, V], stimulus indices, repeat numbers) for the listed stimulus indices with their repeat counts."""
    rng = np.random.default_rng(seed)
    W = rng.normal(0, 1, (7, V)).astype(np.float32)
    xs, idx, rep = [], [], []
    for i, r in repeats.items():
        for j in range(r):
            xs.append(stims[i][2] @ W + rng.normal(0, noise, V).astype(np.float32))
            idx.append(i)
            rep.append(j)
    return np.stack(xs).astype(np.float32), np.array(idx), np.array(rep)


def roi_mask(V: int, seed: int, shape=(10, 10, 8)):
    import nibabel as nib
    rng = np.random.default_rng(seed)
    flat = np.zeros(int(np.prod(shape)), np.uint8)
    flat[rng.choice(flat.size, V, replace=False)] = 1
    return nib.Nifti1Image(flat.reshape(shape, order="F"), np.diag([2.0, 2.0, 2.0, 1.0]))


def write_sim(root: Path, subjects: dict[str, int] | None = None, n_stim: int = 24, n_test: int = 6, seed: int = 0,
              train_repeats: int = 2) -> Path:
    """DIR/stimuli.tsv, DIR/stimuli/<id>.png, DIR/derivatives/mindsemantix/sub-<id>/sub-<id>_responses.h5 (+ roi mask).
    subjects: id → voxel count. Test stimuli are shown 3 times, training stimuli train_repeats times."""
    import h5py
    import nibabel as nib
    subjects = subjects or {"sim01": 70, "sim02": 53}
    root = Path(root)
    (root / "stimuli").mkdir(parents=True, exist_ok=True)
    st = stimuli(n_stim, seed)
    split = ["test" if i >= n_stim - n_test else "train" for i in range(n_stim)]
    with open(root / "stimuli.tsv", "w", newline="") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        w.writerow(["stimulus_id", "split", "captions"])
        for (sid, caps, _, colour), sp in zip(st, split):
            w.writerow([sid, sp, json.dumps(caps)])
            (root / "stimuli" / f"{sid}.png").write_bytes(image_png(colour))
    (root / "dataset_description.json").write_text(json.dumps({"Name": "tiny sim fixture", "BIDSVersion": "1.9.0"}))
    for k, (sub, V) in enumerate(subjects.items()):
        reps = {i: (3 if split[i] == "test" else train_repeats) for i in range(n_stim)}
        x, idx, rep = responses(st, V, seed + 10 + k, reps)
        d = root / "derivatives" / "mindsemantix" / f"sub-{sub}"
        d.mkdir(parents=True, exist_ok=True)
        with h5py.File(d / f"sub-{sub}_responses.h5", "w") as h:
            h["responses"] = x
            h["betas"] = (x - x.mean(0)) / (x.std(0) + 1e-6)
            h["stimulus_ids"] = np.array([st[i][0] for i in idx], dtype=h5py.string_dtype("utf-8"))
            h["split"] = np.array([split[i] for i in idx], dtype=h5py.string_dtype("utf-8"))
            h["repeat"] = rep.astype(np.int64)
            h.attrs.update({"subject": sub, "voxels": V, "tr": 1.5, "estimator": "fixture", "seed": seed})
        nib.save(roi_mask(V, seed + k), d / f"sub-{sub}_roi-mask.nii.gz")
    return root


def write_nsd_hdf5(root: Path, V: int = 40, n_stim: int = 12, seed: int = 0) -> dict:
    """MindEye2-style betas_all_subj01_fp32_renorm.hdf5 ['betas' trials×V], NSD responses.tsv (73KID 1-based),
    COCO captions_train2017.json-style annotations and nsd_stim_info_merged.csv. Returns the paths."""
    import h5py
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    st = stimuli(n_stim, seed)
    nsd_ids = [1000 + 7 * i for i in range(n_stim)]          # 73k indices (0-based)
    coco_ids = [500000 + 13 * i for i in range(n_stim)]
    shared = [i >= n_stim - 3 for i in range(n_stim)]
    reps = {i: 3 for i in range(n_stim)}
    x, idx, _ = responses(st, V, seed + 5, reps)
    order = np.random.default_rng(seed).permutation(len(idx))   # trials interleaved as in a real session
    x, idx = x[order], idx[order]
    with h5py.File(root / "betas_all_subj01_fp32_renorm.hdf5", "w") as h:
        h["betas"] = x
    with open(root / "responses.tsv", "w", newline="") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        w.writerow(["SUBJECT", "SESSION", "RUN", "TRIAL", "73KID", "10KID", "TIME", "ISOLD", "ISCORRECT", "RT"])
        for t, i in enumerate(idx):
            w.writerow([1, 1 + t // 750, 1, t % 63 + 1, nsd_ids[i] + 1, i + 1, 0.0, 0, 1, 800])
    with open(root / "nsd_stim_info_merged.csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["", "cocoId", "cocoSplit", "nsdId", "shared1000"])
        for i in range(n_stim):
            w.writerow([i, coco_ids[i], "train2017", nsd_ids[i], str(shared[i])])
    ann = {"images": [{"id": c} for c in coco_ids], "annotations": []}
    for i, c in enumerate(coco_ids):
        for j, cap in enumerate(st[i][1]):
            ann["annotations"].append({"image_id": c, "id": 10 * c + j, "caption": cap})
    (root / "captions_train2017.json").write_text(json.dumps(ann))
    return {"betas": root / "betas_all_subj01_fp32_renorm.hdf5", "behaviour": root / "responses.tsv",
            "captions": root / "captions_train2017.json", "stim_info": root / "nsd_stim_info_merged.csv",
            "nsd_ids": nsd_ids, "stimuli": st, "x": x, "idx": idx}


def write_nsd_wds(root: Path, V: int = 30, n_train: int = 8, n_test: int = 3, seed: int = 0) -> dict:
    """MindEye-1 / UMBRAE webdataset tars (train/train_subj01_{0,1}.tar, test/test_subj01_0.tar) whose samples hold
    `<key>.nsdgeneral.npy` [3, V], `<key>.coco73k.npy` and `<key>.jpg`, plus COCO_73k_annots_curated.npy [73k-subset, 5]."""
    from PIL import Image
    root = Path(root)
    st = stimuli(n_train + n_test, seed)
    nsd_ids = [2 * i + 1 for i in range(len(st))]
    reps = {i: 3 for i in range(len(st))}
    x, idx, _ = responses(st, V, seed + 3, reps)
    caps = np.array([[""] * 5 for _ in range(max(nsd_ids) + 1)], dtype=object)
    for i, n in enumerate(nsd_ids):
        caps[n] = st[i][1]
    root.mkdir(parents=True, exist_ok=True)
    np.save(root / "COCO_73k_annots_curated.npy", caps.astype("U64"))

    def add(tf, name, data: bytes):
        ti = tarfile.TarInfo(name)
        ti.size = len(data)
        tf.addfile(ti, io.BytesIO(data))

    def npy(a) -> bytes:
        b = io.BytesIO()
        np.save(b, a)
        return b.getvalue()

    groups = {"train/train_subj01_0.tar": list(range(0, n_train // 2)), "train/train_subj01_1.tar": list(range(n_train // 2, n_train)),
              "test/test_subj01_0.tar": list(range(n_train, n_train + n_test))}
    for rel, items in groups.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(p, "w") as tf:
            for i in items:
                key = f"sample{i:06d}"
                reps_i = x[idx == i]
                add(tf, f"{key}.nsdgeneral.npy", npy(reps_i.astype(np.float32)))
                add(tf, f"{key}.coco73k.npy", npy(np.array([nsd_ids[i]], np.int64)))
                b = io.BytesIO()
                Image.fromarray(np.full((16, 16, 3), 100 + i, np.uint8)).save(b, format="JPEG")
                add(tf, f"{key}.jpg", b.getvalue())
    return {"train": [root / k for k in groups if k.startswith("train")], "test": [root / k for k in groups if k.startswith("test")],
            "captions": root / "COCO_73k_annots_curated.npy", "nsd_ids": nsd_ids, "stimuli": st, "x": x, "idx": idx}
