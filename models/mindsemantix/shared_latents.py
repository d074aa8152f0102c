"""The shared code of the bundle's people per training stimulus: what a new person's read-out should map into.

  python -m mindsemantix.shared_latents --bundle models/bundles/default --data data/sim [--data DIR ...]
      (adds shared_latents.npz and a manifest `shared_latents` record to the bundle)

Every person's read-out (`encoder.adapters[<id>].read`, voxels → the 256-wide code the shared encoder reads) lands in
one shared code: two trained people's codes of the same scene agree (single trials, centred cosine ~0.2) and those of
different scenes do not (~0). A read-out calibrated on caption objectives alone reaches the captions through a code of
its own (cosine ~0.03 with the shared one, docs/experiments.md E35), so the Q-Former and the LM read it out of their
training distribution. Where a new person's calibration images are ones the bundle's people saw (NSD's shared images;
the simulator's training scenes), the table gives each such image's code, the mean over the people's training trials
of it, and calibrate fits the read-out into it (calibrate_fit.ReadoutFitter.align_loss).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from .util import log

FILE = "shared_latents.npz"


def person_codes(model, subject: str, x: np.ndarray, batch: int = 512) -> np.ndarray:
    """[n, hidden] read-out codes of one person's trials (eval mode: no input dropout)."""
    read = model.encoder.adapters[subject].read
    with torch.no_grad():
        return np.concatenate([read(torch.from_numpy(np.ascontiguousarray(x[i:i + batch], np.float32))).numpy()
                               for i in range(0, len(x), batch)])


def latent_table(per_person: dict[str, tuple[np.ndarray, list[str]]]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(stimulus ids, [S, hidden] mean code, [S] people) from {person: (codes [n, hidden], stimulus id per trial)}:
    each person's trials of a stimulus are averaged first, so a person with more repeats does not outweigh the others."""
    sums: dict[str, np.ndarray] = {}
    people: dict[str, int] = {}
    for codes, ids in per_person.values():
        mine: dict[str, list[np.ndarray]] = {}
        for c, sid in zip(codes, ids):
            mine.setdefault(sid, []).append(c)
        for sid, cs in mine.items():
            m = np.mean(cs, 0)
            sums[sid] = sums[sid] + m if sid in sums else m.astype(np.float64)
            people[sid] = people.get(sid, 0) + 1
    ids = sorted(sums)
    return ids, np.stack([sums[s] / people[s] for s in ids]).astype(np.float32), np.array([people[s] for s in ids], np.int16)


def save(path: Path, ids: list[str], latents: np.ndarray, people: np.ndarray) -> None:
    np.savez_compressed(path, stimulus_ids=np.array(ids), latents=latents.astype(np.float16), people=people)


def load(path: Path) -> dict[str, np.ndarray]:
    """{stimulus id: code [hidden] float32}."""
    with np.load(path, allow_pickle=False) as z:
        return dict(zip((str(s) for s in z["stimulus_ids"]), z["latents"].astype(np.float32)))


def training_responses(roots: list[Path], subject: str) -> tuple[np.ndarray, list[str], Path]:
    """The person's training-split trials and their stimulus ids, from the first dataset root that has the person."""
    from .data import load_sim
    for root in roots:
        if (root / "derivatives" / "mindsemantix" / f"sub-{subject}").is_dir():
            corpus = load_sim(root, subjects=[subject])
            d = corpus.subjects[subject]
            return d.train_x, [corpus.stimuli[int(i)] for i in d.train_stim], root
    raise FileNotFoundError(f"no --data folder has sub-{subject}'s responses (derivatives/mindsemantix/sub-{subject}); "
                            "pass the dataset each of the bundle's people was trained on")


def build(bundle: Path, roots: list[Path]) -> tuple[list[str], np.ndarray, np.ndarray, dict]:
    from .frozen_shared import load_bundle_model
    manifest = json.loads((bundle / "manifest.json").read_text())
    subjects = sorted(manifest["subjects"])
    model = load_bundle_model(bundle, subjects=subjects).eval()
    per, report = {}, {}
    for s in subjects:
        x, ids, root = training_responses(roots, s)
        if x.shape[1] != model.encoder.adapters[s].voxels:
            raise ValueError(f"sub-{s}: {root} has {x.shape[1]} voxels but the bundle's read-out takes "
                             f"{model.encoder.adapters[s].voxels}; pass the dataset that person was trained on")
        per[s] = (person_codes(model, s, x), ids)
        report[s] = {"trials": int(len(x)), "stimuli": len(set(ids)), "data": str(root)}
        log(f"shared latents: sub-{s}: {len(x)} training trials of {len(set(ids))} stimuli")
    ids, lat, people = latent_table(per)
    return ids, lat, people, report


def install(bundle: Path, ids: list[str], latents: np.ndarray, people: np.ndarray, record: dict) -> None:
    """Writes shared_latents.npz into the bundle and records it (with its sha256) in the manifest."""
    from .schemas import validate_manifest
    from .util import sha256_file
    path = bundle / FILE
    save(path, ids, latents, people)
    m = json.loads((bundle / "manifest.json").read_text())
    m["files"][FILE] = sha256_file(path)
    m["files"] = dict(sorted(m["files"].items()))
    m["shared_latents"] = {"file": FILE, "stimuli": len(ids), "hidden": int(latents.shape[1]), **record}
    validate_manifest(m, f"bundle {bundle}")
    (bundle / "manifest.json").write_text(json.dumps(m, indent=2))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mindsemantix.shared_latents", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--data", action="append", required=True,
                    help="dataset with derivatives/mindsemantix/sub-<id>/sub-<id>_responses.h5 of the bundle's people (repeatable)")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    torch.set_num_threads(max(1, a.threads))
    t0 = time.time()
    bundle = Path(a.bundle)
    try:
        ids, lat, people, report = build(bundle, [Path(d) for d in a.data])
    except (FileNotFoundError, ValueError) as e:
        sys.stderr.write(f"shared_latents: {e}\n")
        return 2
    install(bundle, ids, lat, people, {"people": report, "command": " ".join(["python -m mindsemantix.shared_latents", *(argv or sys.argv[1:])]),
                                       "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    log(f"shared latents: {len(ids)} stimuli ({int((people > 1).sum())} seen by more than one person) → {bundle / FILE} "
        f"({time.time() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
