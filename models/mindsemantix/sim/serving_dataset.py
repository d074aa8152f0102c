"""Training data made the way live decoding sees a person: whole simulated sessions (4-D EPI with head motion and
thermal noise in volume space, as `simulate` writes them), each through the serving chain itself.

    .venv/bin/python -m mindsemantix.sim.serving_dataset --out data/sim-serving --subjects sim01,sim02,sim03 --seed 0

The experiment plan is `mindsemantix.sim.dataset`'s (each subject's own training scenes once, the shared test scenes
3 times, in runs of 62 trials), cut into sessions of --runs-per-session runs. Every session is a separate `simulate`
session with its own seed (its own motion, physiology and thermal noise draws: a new session, as NSD's 40 per subject
are), and its trial responses come from `mindsemantix responses` (streams/: motion correction, mask, causal detrend,
running z-score, window mean), exactly the vectors the decoder gets live. One implementation, no Python copy.

Writes DIR/stimuli.tsv, DIR/stimuli/, and per subject DIR/derivatives/mindsemantix/sub-<id>/sub-<id>_responses.h5 in
the layout `python -m mindsemantix.train --data DIR` reads (ARCHITECTURE.md), with a `session` dataset and the
responses' flags. The session folders are deleted once read (--keep-sessions keeps them).
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np

from . import output
from .dataset import RUN_TRIALS, Trials, subject_scenes, trial_order
from .forward import subject as get_subject
from .rng import stream, subject_index
from .world import scene_id

REPO = Path(__file__).resolve().parents[3]


def session_seed(seed: int, subject: str, k: int) -> int:
    """Seed of training session k: far from the small seeds used for demos and new-session evaluations."""
    return 1_000_000 + 10_000 * seed + 100 * (subject_index(subject) % 100) + k


def read_responses(resp_dir: Path, subject: str) -> list[tuple[np.ndarray, list[dict]]]:
    """Each run's (float32 [trials, V], rows) written by `mindsemantix responses`, in run order."""
    runs = []
    for tsv in sorted(resp_dir.glob(f"sub-{subject}/ses-*/sub-{subject}_ses-*_responses.tsv")):
        lines = tsv.read_text(encoding="utf-8").splitlines()
        head = lines[0].split("\t")
        rows = [dict(zip(head, ln.split("\t"))) for ln in lines[1:] if ln]
        data = np.load(tsv.with_suffix(".npy"))[: len(rows)]
        runs.append((data, rows))
    return runs


def responses_cli(session: Path, subject: str, bundle: str, mask: Path, out: Path) -> None:
    cmd = ["node", str(REPO / "bin" / "mindsemantix.mjs"), "responses", str(session), "--models", bundle,
           "--subject", subject, "--mask", str(mask), "--out", str(out)]
    r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        raise SystemExit(f"serving_dataset: `{' '.join(cmd)}` failed: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode}")


def build_subject(out: Path, sid: str, seq: list[tuple[int, int]], seed: int, runs_per_session: int, run_trials: int,
                  bundle: str, grid: str, keep: bool, log) -> Trials:
    from .session import simulate_session

    per_session = runs_per_session * run_trials
    R, B, scenes, repeat, run_idx, onsets, sess_idx, flags = [], [], [], [], [], [], [], []
    work = out / "sessions" / f"sub-{sid}"
    n_sessions = -(-len(seq) // per_session)
    t0 = time.time()
    for k in range(n_sessions):
        part = seq[k * per_session:(k + 1) * per_session]
        runs = -(-len(part) // run_trials)
        sdir = work / f"ses-{k + 1:02d}"
        resp = sdir / "responses"
        if not (resp / "done").exists():
            shutil.rmtree(sdir, ignore_errors=True)
            simulate_session(str(sdir), sid, session_seed(seed, sid, k), run_trials, runs, grid=grid, seq=part, log=lambda m: None)
            mask = sdir / "derivatives" / "mindsemantix" / f"sub-{sid}" / f"sub-{sid}_roi-mask.nii.gz"
            responses_cli(sdir, sid, bundle, mask, resp)
            (resp / "done").write_text("ok")
        runs_read = read_responses(resp, sid)
        if sum(len(r) for _, r in runs_read) != len(part):
            raise SystemExit(f"serving_dataset: session {sdir} gave {sum(len(r) for _, r in runs_read)} responses for {len(part)} trials; delete it and run again.")
        with h5py.File(sdir / "derivatives" / "mindsemantix" / f"sub-{sid}" / f"sub-{sid}_responses.h5", "r") as h:
            betas = np.asarray(h["betas"], np.float32)  # the session's own offline LSS betas, z-scored per session
        i = 0
        for r, (data, rows) in enumerate(runs_read):
            for j, row in enumerate(rows):
                s, rep = part[i]
                if row["stimulus_id"] != scene_id(s):
                    raise SystemExit(f"serving_dataset: {sdir} run {r + 1} trial {j} is {row['stimulus_id']}, the plan says {scene_id(s)}.")
                scenes.append(s)
                repeat.append(rep)
                onsets.append(float(row["onset"]))
                run_idx.append(k * runs_per_session + r)
                sess_idx.append(k)
                flags.append("" if row["flags"] == "n/a" else row["flags"])
                i += 1
            R.append(data)
        B.append(betas)
        if not keep:
            for child in sdir.iterdir():
                if child.name != "responses":
                    shutil.rmtree(child) if child.is_dir() else child.unlink()
        log(f"{sid}: session {k + 1}/{n_sessions} ({runs} runs, {len(part)} trials) from the serving chain ({time.time() - t0:.0f} s)")
    tr = Trials(np.array(scenes), np.array(repeat), np.concatenate(R), np.concatenate(B), np.array(run_idx), np.array(onsets, np.float32))
    tr.session = np.array(sess_idx)  # type: ignore[attr-defined]
    tr.flags = flags  # type: ignore[attr-defined]
    return tr


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mindsemantix.sim.serving_dataset", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--subjects", default="sim01,sim02,sim03")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-scenes", type=int, default=3000)
    p.add_argument("--train-scenes-other", type=int, default=1500)
    p.add_argument("--test-scenes", type=int, default=150)
    p.add_argument("--runs-per-session", type=int, default=8)
    p.add_argument("--run-trials", type=int, default=RUN_TRIALS)
    p.add_argument("--bundle", default=str(REPO / "models" / "bundles" / "default"),
                   help="bundle whose preprocessing block the serving chain uses (default: the default bundle)")
    p.add_argument("--grid", choices=["default", "nsd"], default="default")
    p.add_argument("--keep-sessions", action="store_true", help="keep each session's BIDS volumes")
    a = p.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()

    def log(msg):
        print(f"[serving_dataset {time.time() - t0:6.0f}s] {msg}", file=sys.stderr, flush=True)

    bundle_name = json.loads((Path(a.bundle) / "manifest.json").read_text())["name"]
    used: set[int] = set()
    subjects = [s.strip() for s in a.subjects.split(",") if s.strip()]
    for k, sid in enumerate(subjects):
        n_train = a.train_scenes if k == 0 else a.train_scenes_other
        train, test = subject_scenes(sid, n_train, a.test_scenes, a.seed)
        seq = trial_order(train, test, stream(a.seed, "dataset-order", subject_index(sid)))
        log(f"{sid}: {len(train)} train scenes + {len(test)} test scenes × 3 = {len(seq)} trials in sessions of {a.runs_per_session} runs")
        tr = build_subject(out, sid, seq, a.seed, a.runs_per_session, a.run_trials, a.bundle, a.grid, a.keep_sessions, log)
        subj = get_subject(sid, a.grid)
        path = output.write_responses(str(out), subj, tr, a.seed)
        with h5py.File(path, "a") as h:
            h.create_dataset("session", data=tr.session.astype(np.int32))  # type: ignore[attr-defined]
            h.create_dataset("flags", data=np.array(tr.flags, dtype=object), dtype=h5py.string_dtype())  # type: ignore[attr-defined]
            h.attrs["estimator"] = (f"serving chain: `mindsemantix responses` with bundle {bundle_name}'s preprocessing (motion correction, "
                                    "causal cumulative detrend, running z-score, window mean) on simulated 4-D sessions; betas: each "
                                    "session's offline LSS betas")
            h.attrs["sessions"] = int(tr.session.max() + 1)  # type: ignore[attr-defined]
        output.write_mask(str(out), subj)
        used.update(int(s) for s in tr.scenes)
        output.write_stimuli_tsv(str(out), sorted(used))
        log(f"{sid}: wrote {path} ({len(seq)} trials × {tr.responses.shape[1]} voxels)")
    output.write_stimuli(str(out), sorted(used))  # rendered from the world seed
    output.write_description(str(out), {"GeneratedBy": [{"Name": "mindsemantix.sim.serving_dataset", "Seed": a.seed, "Subjects": subjects,
                                                         "RunsPerSession": a.runs_per_session, "Bundle": bundle_name}]})
    log(f"done in {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
