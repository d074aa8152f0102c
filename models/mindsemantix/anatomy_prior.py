"""An anatomical prior for new people: what the trained people's data says about a voxel from where it sits.

Visual cortex is organised alike across people: after registration, a voxel's position predicts much of what drives it
(the simulator builds every person's semantic tuning as 0.75 a field over normalised anatomy shared by all, E21). The
prior learns that map once from the bundle's people and carries it to a new person before any of their trials:

1. `brain_frame`: a person's normalised coordinates — voxel positions (mm) relative to the brain's centre and divided
   by its semi-axes, both from the brain mask's moments (a solid ellipsoid of semi-axis a has variance a²/5 along it).
   That is an affine normalisation to the brain's own extent, the crudest registration; a template registration done
   elsewhere can be given instead as coordinates.
2. `fit_encoding`: per trained person, an encoding model (centred caption embedding → z-scored voxel response, ridge).
3. `AnatomyPrior.fit`: one map from a voxel's coordinates (random Fourier features) to its encoding weights, pooled
   over every trained person's voxels.
4. `synthesize`: for a new person, responses to captions the person never saw — the prior's predicted response at their
   voxels, scaled by one gain fitted on their calibration trials, plus noise drawn from their calibration residuals
   (whole rows, so the noise keeps its spatial structure). `calibrate` fits the person's read-out on these beside the
   real trials.

  python -m mindsemantix.anatomy_prior --data data/sim-serving --bundle models/bundles/default [--caption-cache F]
      [--extra-data DIR ...]
      (adds anatomy_prior.npz and a manifest `anatomy_prior` record to the bundle; --brain-mask ID=FILE per person, or,
       for simulated people without one, the simulator's noise-free mean EPI under calibrate_mask's threshold;
       --extra-data adds people the bundle was not trained on, e.g. `sim.serving_dataset --subjects sim04,...`)
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .util import log

FEATURES = 768        # random Fourier features of the coordinates
FREQUENCY = 3.6       # their frequency scale per normalised unit (E21: coordinates × 3, ω ~ N(0, 1.2²))
MAP_RIDGE = 0.1       # penalty of the coordinates → encoding-weights map
ENCODING_RIDGE = 1.0  # penalty of each trained person's encoding model


def brain_frame(brain: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(centre, semi-axes) in mm of a boolean brain mask: its centroid, and √(5·variance) along each world axis."""
    ijk = np.argwhere(brain > 0).astype(np.float64)
    if len(ijk) < 100:
        raise ValueError(f"the brain mask has {len(ijk)} voxels; it needs at least 100 to estimate the brain's extent")
    xyz = ijk @ affine[:3, :3].T + affine[:3, 3]
    return xyz.mean(0), np.sqrt(5.0 * xyz.var(0))


def roi_coordinates(roi: np.ndarray, affine: np.ndarray, centre: np.ndarray, axes: np.ndarray) -> np.ndarray:
    """[V, 3] normalised coordinates of the ROI's voxels in mask voxel order (x fastest, nibabel order 'F')."""
    flat = np.flatnonzero((np.asarray(roi) > 0).ravel(order="F"))
    ijk = np.stack(np.unravel_index(flat, roi.shape[:3], order="F"), 1).astype(np.float64)
    xyz = ijk @ affine[:3, :3].T + affine[:3, 3]
    return ((xyz - centre) / axes).astype(np.float32)


def person_coordinates(roi_img, brain_img) -> np.ndarray:
    """Normalised coordinates of an ROI mask's voxels, the frame taken from a brain mask on the same grid."""
    roi, brain = np.asarray(roi_img.dataobj), np.asarray(brain_img.dataobj)
    if roi.shape[:3] != brain.shape[:3] or not np.allclose(roi_img.affine, brain_img.affine, atol=1e-3):
        raise ValueError(f"the ROI mask (dims {roi.shape[:3]}) and the brain mask (dims {brain.shape[:3]}) are not on the same grid")
    centre, axes = brain_frame(brain, brain_img.affine)
    return roi_coordinates(roi, roi_img.affine, centre, axes)


def zscore(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    m, s = x.mean(0), x.std(0) + 1e-6
    return (x - m) / s, m, s


def fit_encoding(x: np.ndarray, emb: np.ndarray, lam: float = ENCODING_RIDGE) -> np.ndarray:
    """[E, V] ridge encoding weights: centred embeddings [n, E] → z-scored responses [n, V]."""
    e = emb - emb.mean(0)
    z, _, _ = zscore(x)
    return np.linalg.solve(e.T @ e + lam * np.eye(e.shape[1]), e.T @ z)


@dataclass
class AnatomyPrior:
    omega: np.ndarray    # [D, 3] Fourier frequencies
    phase: np.ndarray    # [D]
    weights: np.ndarray  # [D, E] features → encoding weights

    @staticmethod
    def basis(seed: int = 0, features: int = FEATURES) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(seed)
        return rng.standard_normal((features, 3)) * FREQUENCY, rng.uniform(0, 2 * np.pi, features)

    def features(self, coords: np.ndarray) -> np.ndarray:
        return np.sqrt(2.0 / len(self.phase)) * np.cos(coords @ self.omega.T + self.phase)

    def encoding(self, coords: np.ndarray) -> np.ndarray:
        """[E, V] predicted encoding weights at these voxels."""
        return (self.features(coords) @ self.weights).T

    @classmethod
    def fit(cls, people: list[tuple[np.ndarray, np.ndarray]], seed: int = 0, lam: float = MAP_RIDGE) -> "AnatomyPrior":
        """people: (coords [V, 3], encoding weights [E, V]) per trained person."""
        omega, phase = cls.basis(seed)
        p = cls(omega, phase, np.zeros((len(phase), people[0][1].shape[0])))
        F = np.concatenate([p.features(c) for c, _ in people])
        B = np.concatenate([b.T for _, b in people])
        p.weights = np.linalg.solve(F.T @ F + lam * np.eye(F.shape[1]), F.T @ B)
        return p

    def save(self, path: Path) -> None:
        np.savez(path, omega=self.omega.astype("<f4"), phase=self.phase.astype("<f4"), weights=self.weights.astype("<f4"))

    @classmethod
    def load(cls, path: Path) -> "AnatomyPrior":
        with np.load(path) as z:
            return cls(z["omega"].astype(np.float64), z["phase"].astype(np.float64), z["weights"].astype(np.float64))


def synthesize(prior: AnatomyPrior, coords: np.ndarray, x: np.ndarray, emb: np.ndarray, bank: np.ndarray, n: int,
               seed: int = 0) -> tuple[np.ndarray, np.ndarray, dict]:
    """n responses of this person to n captions drawn from `bank` [N, E], in the scale of their real trials x [m, V]
    (embeddings emb [m, E]). Returns (responses [n, V] float32, bank rows used, report)."""
    B = prior.encoding(coords)                     # [E, V]
    z, m, s = zscore(x)
    ebar = emb.mean(0)
    pred = (emb - ebar) @ B
    gain = float((z * pred).sum() / max((pred * pred).sum(), 1e-12))
    resid = z - gain * pred
    explained = 1.0 - float((resid ** 2).sum() / max((z ** 2).sum(), 1e-12))
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(bank), size=min(n, len(bank)), replace=False)
    noise = resid[rng.integers(0, len(resid), len(rows))]
    out = m + s * (gain * ((bank[rows] - ebar) @ B) + noise)
    return out.astype(np.float32), rows, {"gain": round(gain, 4), "explained": round(explained, 4), "trials": int(len(rows))}


# ---- fitting the prior on a bundle's people ----

def simulated_mean_epi_mask(subject: str, affine: np.ndarray, shape) -> np.ndarray:
    """calibrate_mask's threshold on the simulator's noise-free mean EPI (what a recorded run's mean approximates)."""
    from .calibrate_mask import mask_from_mean_epi
    from .sim.brain import anatomy
    a = anatomy(subject)
    if tuple(a.baseline.shape) != tuple(shape[:3]) or not np.allclose(a.affine, affine, atol=1e-3):
        raise ValueError(f"sub-{subject}'s mask is not on the simulator's grid; pass --brain-mask {subject}=FILE")
    return mask_from_mean_epi(a.baseline)


def training_trials(data: Path, subject: str, encoder, cache: dict) -> tuple[np.ndarray, np.ndarray]:
    """(responses [n, V], normalised mean reference embedding per trial [n, E]) of the person's training-split trials,
    read as training reads them (data.load_sim); embeddings from `cache` where it has every reference."""
    from .calibrate_data import embed_references
    from .data import load_sim
    corpus = load_sim(data, subjects=[subject])
    d = corpus.subjects[subject]
    uniq = [int(i) for i in np.unique(d.train_stim)]
    missing = [i for i in uniq if any(c not in cache for c in corpus.captions[i])]
    embedded = dict(zip(missing, embed_references(encoder, {i: corpus.captions[i] for i in missing}, missing))) if missing else {}
    rows = {}
    for i in uniq:
        e = embedded[i] if i in embedded else np.stack([np.asarray(cache[c], np.float32) for c in corpus.captions[i]])
        v = e.mean(0)
        rows[i] = v / (np.linalg.norm(v) + 1e-9)
    return d.train_x, np.stack([rows[int(i)] for i in d.train_stim])


def fit_from_bundle(bundle: Path, data: Path, brain_masks: dict, cache_path: Path | None, seed: int = 0,
                    extra: list[Path] = ()) -> tuple[AnatomyPrior, dict]:
    """The prior from the bundle's people (their masks from the bundle, responses from `data`) and from every person
    of each `extra` dataset (unlabelled by the bundle: mask and responses from that dataset's derivatives)."""
    import nibabel as nib
    import torch
    from .calibrate_data import BundleTextEncoder
    manifest = json.loads((bundle / "manifest.json").read_text())
    encoder = BundleTextEncoder(bundle, manifest, 2)
    cache = torch.load(cache_path, weights_only=False) if cache_path else {}
    sources = [(s, bundle / e["mask"], data) for s, e in sorted(manifest["subjects"].items())]
    for d in extra:
        for sub in sorted((Path(d) / "derivatives" / "mindsemantix").glob("sub-*")):
            sid = sub.name[4:]
            if not any(sid == s for s, _, _ in sources):
                sources.append((sid, sub / f"sub-{sid}_roi-mask.nii.gz", Path(d)))
    people, report = [], {}
    for subject, mask_path, source in sources:
        roi = nib.load(str(mask_path))
        if subject in brain_masks:
            brain_img = nib.load(brain_masks[subject])
            coords, frame = person_coordinates(roi, brain_img), "given brain mask"
        else:
            brain = simulated_mean_epi_mask(subject, roi.affine, roi.shape)
            coords = person_coordinates(roi, nib.Nifti1Image(brain.astype(np.uint8), roi.affine))
            frame = "simulator's noise-free mean EPI, calibrate_mask's threshold"
        x, emb = training_trials(source, subject, encoder, cache)
        if x.shape[1] != len(coords):
            raise ValueError(f"sub-{subject}: the responses have {x.shape[1]} voxels, its mask {len(coords)}")
        B = fit_encoding(x, emb)
        people.append((coords, B))
        report[subject] = {"trials": int(len(x)), "voxels": int(len(coords)), "frame": frame, "data": str(source)}
        log(f"anatomy prior: sub-{subject}: encoding model on {len(x)} training trials × {len(coords)} voxels")
    prior = AnatomyPrior.fit(people, seed)
    for (coords, B), (subject, _, _) in zip(people, sources):
        pr = prior.encoding(coords)
        r = np.mean([np.corrcoef(pr[:, v], B[:, v])[0, 1] for v in range(0, B.shape[1], 7)])
        report[subject]["map_correlation"] = round(float(r), 4)
        log(f"anatomy prior: sub-{subject}: predicted vs fitted encoding weights, mean voxel correlation {r:.3f}")
    return prior, report


def install(bundle: Path, prior: AnatomyPrior, record: dict) -> None:
    """Writes anatomy_prior.npz into the bundle and records it (with its sha256) in the manifest."""
    from .schemas import validate_manifest
    from .util import sha256_file
    path = bundle / "anatomy_prior.npz"
    prior.save(path)
    m = json.loads((bundle / "manifest.json").read_text())
    m["files"]["anatomy_prior.npz"] = sha256_file(path)
    m["files"] = dict(sorted(m["files"].items()))
    m["anatomy_prior"] = {"file": "anatomy_prior.npz", **record}
    validate_manifest(m, f"bundle {bundle}")
    (bundle / "manifest.json").write_text(json.dumps(m, indent=2))


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m mindsemantix.anatomy_prior", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="dataset with derivatives/mindsemantix/sub-<id>/sub-<id>_responses.h5 of the bundle's people")
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--brain-mask", action="append", default=[], help="ID=FILE: a person's brain mask on their ROI mask's grid")
    ap.add_argument("--caption-cache", help="torch-saved {caption: embedding} of the bundle's text encoder (speed only)")
    ap.add_argument("--extra-data", action="append", default=[],
                    help="another dataset whose people (not in the bundle) the map also learns from")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    t0 = time.time()
    masks = dict(s.split("=", 1) for s in a.brain_mask)
    prior, report = fit_from_bundle(Path(a.bundle), Path(a.data), masks, Path(a.caption_cache) if a.caption_cache else None, a.seed,
                                    [Path(d) for d in a.extra_data])
    record = {"features": FEATURES, "frequency": FREQUENCY, "map_ridge": MAP_RIDGE, "encoding_ridge": ENCODING_RIDGE,
              "seed": a.seed, "people": report, "seconds": round(time.time() - t0, 1),
              "command": "python -m mindsemantix.anatomy_prior " + " ".join(argv if argv is not None else sys.argv[1:])}
    install(Path(a.bundle), prior, record)
    log(f"anatomy prior: written to {a.bundle}/anatomy_prior.npz ({time.time() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
