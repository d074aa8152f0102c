"""NSD-style training data from simulated subjects, fast: ROI voxel time series only (no volumes are written).

    .venv/bin/python -m mindsemantix.sim.dataset --out data/sim --subjects sim01,sim02,sim03,sim04,sim05,sim06,sim07,sim08 --seed 0

writes DIR/stimuli.tsv, DIR/stimuli/<id>.png, DIR/dataset_description.json and per subject
DIR/derivatives/mindsemantix/sub-<id>/sub-<id>_responses.h5 (+ _roi-mask.nii.gz), as in docs/ARCHITECTURE.md.
Each subject sees its own training scenes once (NSD-like: mostly unique images per subject) and the shared test scenes
3 times, in runs of 62 trials grouped into sessions of 12 runs; the same forward and noise model as `simulate`.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass

import numpy as np

from .design import make_run
from .estimate import WINDOW, detrend_zscore, lss_betas, window_mean, zscore_rows
from .features import scene_features
from .forward import Subject, subject as get_subject
from .rng import stream, subject_index
from .timeseries import simulate_run
from .world import N_SCENES, N_TEST, WORLD_SEED

RUN_TRIALS = 62
RUNS_PER_SESSION = 12
ESTIMATOR = ("responses: per run, quadratic (Legendre order 2) detrend, z-score per voxel over the run, mean of volumes "
             f"acquired in [onset+{WINDOW[0]:g} s, onset+{WINDOW[1]:g} s]; betas: least-squares-separate single-trial GLM, "
             "canonical double-gamma HRF, 3 s boxcar, quadratic trend, z-scored per voxel per session (12 runs)")


@dataclass
class Trials:
    scenes: np.ndarray      # [N] scene index
    repeat: np.ndarray      # [N] 0-based presentation number
    responses: np.ndarray   # [N, V] float32
    betas: np.ndarray       # [N, V] float32
    run: np.ndarray         # [N] run number (0-based)
    onsets: np.ndarray      # [N] s from run start


class FeatureCache:
    """Low-level maps and semantic features per scene index, shared by all subjects of one process."""

    def __init__(self, world_seed: int = WORLD_SEED):
        self.world_seed = world_seed
        self.low: dict[int, np.ndarray] = {}
        self.sem: dict[int, np.ndarray] = {}
        self.images: dict[int, np.ndarray] | None = None

    def get(self, indices):
        missing = [int(i) for i in dict.fromkeys(indices) if int(i) not in self.low]
        if missing:
            low, sem = scene_features(missing, self.world_seed, self.images)
            for k, i in enumerate(missing):
                self.low[i], self.sem[i] = low[k], sem[k]
        return np.stack([self.low[int(i)] for i in indices]), np.stack([self.sem[int(i)] for i in indices])


def trial_order(train: list[int], test: list[int], rng: np.random.Generator, repeats: int = 3):
    """All presentations in a random order, the repeats of a test scene spread over the whole experiment."""
    items = [(s, 0) for s in train] + [(s, r) for s in test for r in range(repeats)]
    order = rng.permutation(len(items))
    return renumber_repeats([items[k] for k in order])


def renumber_repeats(seq: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Repeat numbers by order of appearance (the first showing of a scene is repeat 0)."""
    seen: dict[int, int] = {}
    out = []
    for s, _ in seq:
        out.append((s, seen.get(s, 0)))
        seen[s] = seen.get(s, 0) + 1
    return out


def simulate_trials(subj: Subject, seq: list[tuple[int, int]], seed: int, cache: FeatureCache,
                    run_trials: int = RUN_TRIALS, progress=None) -> Trials:
    rng_design = stream(seed, "dataset-design", subject_index(subj.id))
    uniq = sorted({s for s, _ in seq})
    low, sem = cache.get(uniq)
    drive_all = subj.stimulus_drive(low, sem)
    row = {s: k for k, s in enumerate(uniq)}
    R, B, runs, onsets = [], [], [], []
    n_runs = (len(seq) + run_trials - 1) // run_trials
    for r in range(n_runs):
        part = seq[r * run_trials:(r + 1) * run_trials]
        design = make_run([s for s, _ in part], [k for _, k in part], rng_design)
        rs = simulate_run(subj, design, drive_all[[row[s] for s, _ in part]], stream(seed, "dataset-run", subject_index(subj.id), r))
        R.append(window_mean(detrend_zscore(rs.psc), design.times, design.onsets))
        B.append(lss_betas(rs.psc, design.times, design.onsets))
        runs.append(np.full(len(part), r))
        onsets.append(design.onsets)
        if progress and (r % 10 == 9 or r == n_runs - 1):
            progress(f"{subj.id}: run {r + 1}/{n_runs}")
    betas = np.concatenate(B)
    run_idx = np.concatenate(runs)
    for sess in range(0, n_runs, RUNS_PER_SESSION):
        sel = (run_idx >= sess) & (run_idx < sess + RUNS_PER_SESSION)
        betas[sel] = zscore_rows(betas[sel])
    return Trials(np.array([s for s, _ in seq]), np.array([k for _, k in seq]), np.concatenate(R), betas, run_idx, np.concatenate(onsets))


def subject_scenes(subject: str, n_train: int, n_test: int, seed: int) -> tuple[list[int], list[int]]:
    rng = stream(seed, "dataset-scenes", subject_index(subject))
    train = sorted(int(i) for i in rng.choice(np.arange(N_TEST, N_SCENES), n_train, replace=False))
    return train, list(range(n_test))


def main(argv: list[str] | None = None) -> int:
    from . import output  # imported late: only writers need nibabel/h5py

    p = argparse.ArgumentParser(prog="python -m mindsemantix.sim.dataset", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--subjects", default="sim01,sim02,sim03,sim04,sim05,sim06,sim07,sim08")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-scenes", type=int, default=3000, help="training scenes for the first subject (default 3000)")
    p.add_argument("--train-scenes-other", type=int, default=1500, help="training scenes for each other subject (default 1500)")
    p.add_argument("--test-scenes", type=int, default=150, help="shared test scenes, each shown 3 times (default 150)")
    p.add_argument("--grid", choices=["default", "nsd"], default="default")
    p.add_argument("--no-images", action="store_true", help="skip writing stimulus PNGs")
    a = p.parse_args(argv)
    if not 1 <= a.test_scenes <= N_TEST:
        p.error(f"--test-scenes must be 1..{N_TEST}")
    subjects = [s.strip() for s in a.subjects.split(",") if s.strip()]
    t0 = time.time()

    def log(msg):
        print(f"[sim.dataset {time.time() - t0:6.1f}s] {msg}", file=sys.stderr, flush=True)

    cache = FeatureCache()
    cache.images = {}
    used: set[int] = set()
    for k, sid in enumerate(subjects):
        n_train = a.train_scenes if k == 0 else a.train_scenes_other
        train, test = subject_scenes(sid, n_train, a.test_scenes, a.seed)
        seq = trial_order(train, test, stream(a.seed, "dataset-order", subject_index(sid)))
        log(f"{sid}: {len(train)} train scenes + {len(test)} test scenes × 3 = {len(seq)} trials")
        subj = get_subject(sid, a.grid)
        tr = simulate_trials(subj, seq, a.seed, cache, progress=log)
        output.write_responses(a.out, subj, tr, a.seed)
        output.write_mask(a.out, subj)
        used.update(int(s) for s in tr.scenes)
        if not a.no_images:
            output.write_stimuli(a.out, sorted(used), cache.images)
        output.write_stimuli_tsv(a.out, sorted(used))  # after every subject, so early subjects are usable at once
        cache.images = {i: im for i, im in cache.images.items() if i < N_TEST}  # keep memory bounded
        log(f"{sid}: wrote sub-{sid}_responses.h5 ({len(seq)} trials × {subj.anat.voxels} voxels)")
    output.write_stimuli_tsv(a.out, sorted(used))
    output.write_description(a.out, {"GeneratedBy": [{"Name": "mindsemantix.sim.dataset", "Seed": a.seed, "Subjects": subjects}]})
    log(f"done in {time.time() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
