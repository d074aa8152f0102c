"""A simulated scanning session written as BIDS: 4-D int16 EPI runs with head motion, events, sidecars, stimuli,
ground-truth motion, the ROI mask and the NSD-style responses file (estimated from the written volumes after
realignment with the ground-truth motion, i.e. what a perfect motion correction would give)."""
from __future__ import annotations

import json
import os
import time

import nibabel as nib
import numpy as np
from scipy.ndimage import affine_transform, map_coordinates

from . import output
from .dataset import RUNS_PER_SESSION, Trials, renumber_repeats
from .design import STIM_S, make_run
from .estimate import detrend_zscore, lss_betas, window_mean, zscore_rows
from .features import scene_features
from .forward import subject as get_subject
from .noise import NoiseModel, framewise_displacement
from .rng import stream, subject_index
from .timeseries import simulate_run, thermal_sd
from .world import N_SCENES, N_TEST, scene, scene_id, split_of

SPLITS = ("test", "train", "nsd")


def rotation(rx: float, ry: float, rz: float) -> np.ndarray:
    """R = Rz · Ry · Rx, angles in degrees (about the x, y, z axes of the RAS grid)."""
    a, b, c = np.deg2rad([rx, ry, rz])
    Rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    Ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    Rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return Rz @ Ry @ Rx


def move(vol: np.ndarray, params: np.ndarray, centre_vox: np.ndarray, vs: float, inverse: bool = False) -> np.ndarray:
    """Rigid head motion: the object moves by R about the brain centre, then by t (mm). inverse=True undoes it."""
    R = rotation(*params[3:])
    t = params[:3] / vs
    if not inverse:  # out[o] = in[Rᵀ(o − c − t) + c]
        return affine_transform(vol, R.T, offset=centre_vox - R.T @ (centre_vox + t), order=1, mode="constant", cval=0.0)
    return affine_transform(vol, R, offset=centre_vox + t - R @ centre_vox, order=1, mode="constant", cval=0.0)


def sample_unmoved(vol: np.ndarray, params: np.ndarray, centre_vox: np.ndarray, vs: float, ijk: np.ndarray) -> np.ndarray:
    """Values of the moved volume at the head's original voxel positions ijk [3, n] (realignment with the true motion,
    evaluated only where it is needed)."""
    R = rotation(*params[3:])
    pos = R @ (ijk - centre_vox[:, None]) + (centre_vox + params[:3] / vs)[:, None]
    return map_coordinates(vol, pos, order=1, mode="constant", cval=0.0)


def choose_trials(split: str, total: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """(scene index, repeat) per trial. test: held-out scenes each shown 3×; train: distinct training scenes;
    nsd: NSD's mix (about 10 % of trials are test scenes shown 3×)."""
    if split == "test":
        n = -(-total // 3)
        if n > N_TEST:
            raise ValueError(f"--split test has {N_TEST} scenes × 3 = {3 * N_TEST} trials at most; use --split nsd for more")
        items = [(int(s), r) for s in rng.choice(N_TEST, n, replace=False) for r in range(3)]
    elif split == "train":
        items = [(int(s), 0) for s in rng.choice(np.arange(N_TEST, N_SCENES), total, replace=False)]
    else:
        n_test = min(N_TEST, max(1, round(total * 0.1 / 3)))
        items = [(int(s), r) for s in rng.choice(N_TEST, n_test, replace=False) for r in range(3)]
        items += [(int(s), 0) for s in rng.choice(np.arange(N_TEST, N_SCENES), total - len(items), replace=False)]
    return renumber_repeats([items[k] for k in rng.permutation(len(items))][:total])


def simulate_session(out: str, subject_id: str, seed: int, trials: int, runs: int, split: str = "test",
                     grid: str = "default", log=print, seq: list[tuple[int, int]] | None = None) -> dict:
    """`seq` (scene index, repeat) per trial, in order, replaces the split's random choice (training sessions built
    from a fixed experiment plan: mindsemantix.sim.serving_dataset)."""
    t0 = time.time()
    subj = get_subject(subject_id, grid)
    a = subj.anat
    sidx = subject_index(subject_id)
    if seq is None:
        seq = choose_trials(split, trials * runs, stream(seed, "session-scenes", sidx))
    elif len(seq) > trials * runs:
        raise ValueError(f"seq has {len(seq)} trials but {runs} run(s) × {trials} trials hold {trials * runs}")
    uniq = sorted({s for s, _ in seq})
    images: dict[int, np.ndarray] = {}
    low, sem = scene_features(uniq, subj.world_seed, images)
    drive_all = subj.stimulus_drive(low, sem)
    row = {s: k for k, s in enumerate(uniq)}
    log(f"sub-{subject_id}: {len(uniq)} scenes, features and forward model ready ({time.time() - t0:.1f} s)")
    output.write_stimuli(out, uniq, images)
    output.write_stimuli_tsv(out, uniq)
    output.write_mask(out, subj)

    # Non-ROI brain voxels get the same structured noise (their own draw), no stimulus signal.
    brain_f = a.brain.ravel(order="F")
    roi_f = a.roi.ravel(order="F")
    other = np.flatnonzero(brain_f & ~roi_f)
    ijk = np.stack(np.unravel_index(other, a.shape, order="F"), 1).astype(np.float32)
    other_xyz = ijk * a.voxel_mm + a.affine[:3, 3]
    other_noise = NoiseModel(stream(subj.world_seed, "noise-model-other", sidx, grid), other_xyz, n_freq=16)
    roi_ijk = np.stack(np.unravel_index(a.roi_index, a.shape, order="F")).astype(np.float64)
    base_f = a.baseline.ravel(order="F")
    centre_vox = (a.centre_mm - a.affine[:3, 3]) / a.voxel_mm
    sd_th = thermal_sd(a.voxel_mm)
    func = os.path.join(out, f"sub-{subject_id}", "ses-01", "func")
    os.makedirs(func, exist_ok=True)
    rng_design = stream(seed, "session-design", sidx)
    motion_rows = []
    R, B, runs_idx, onsets_all = [], [], [], []
    for r in range(runs):
        part = seq[r * trials:(r + 1) * trials]
        design = make_run([s for s, _ in part], [k for _, k in part], rng_design)
        rng = stream(seed, "session-run", sidx, r)
        rs = simulate_run(subj, design, drive_all[[row[s] for s, _ in part]], rng, residual_motion=False, thermal=False)
        other_psc = other_noise.run(rng, design.times, rs.motion, residual_motion=False)
        T = design.n_volumes
        data = np.empty(a.shape + (T,), np.int16)
        roi_ts = np.empty((T, a.voxels), np.float32)
        for t in range(T):
            flat = base_f.copy()
            flat[a.roi_index] *= 1 + rs.psc[t] / 100.0
            flat[other] *= 1 + other_psc[t] / 100.0
            vol = move(flat.reshape(a.shape, order="F"), rs.motion[t], centre_vox, a.voxel_mm)
            # magnitude image of complex thermal noise (Rician in the background)
            vol = np.hypot(vol + rng.standard_normal(a.shape).astype(np.float32) * sd_th,
                           rng.standard_normal(a.shape).astype(np.float32) * sd_th)
            vol = np.clip(np.rint(vol), 0, 32767)
            data[..., t] = vol.astype(np.int16)
            roi_ts[t] = sample_unmoved(vol, rs.motion[t], centre_vox, a.voxel_mm, roi_ijk)
        name = f"sub-{subject_id}_ses-01_task-vision_run-{r + 1:02d}"
        img = nib.Nifti1Image(data, a.affine)
        img.header.set_xyzt_units("mm", "sec")
        img.header.set_zooms((a.voxel_mm,) * 3 + (design.tr,))
        img.header.set_qform(a.affine, code=1)
        img.header.set_sform(a.affine, code=1)
        img.header["descrip"] = b"mindsemantix simulated EPI"
        nib.save(img, os.path.join(func, name + "_bold.nii.gz"))
        with open(os.path.join(func, name + "_bold.json"), "w", encoding="utf-8") as f:
            json.dump({"TaskName": "vision", "RepetitionTime": design.tr,
                       "AcquisitionTimes": [round(float(x), 4) for x in design.times],
                       "VolumeTiming_note": "each volume is acquired at once at its AcquisitionTime (no slice timing)",
                       "MagneticFieldStrength": 7 if grid == "nsd" else 3, "Manufacturer": "mindsemantix simulator",
                       "VoxelSizeMM": a.voxel_mm, "Simulated": True, "Seed": seed, "Subject": subject_id,
                       "StimulusDuration": STIM_S}, f, indent=1)
        with open(os.path.join(func, name + "_events.tsv"), "w", newline="", encoding="utf-8") as f:
            # plain TSV (no CSV quoting): the JSON array has no tabs or newlines
            f.write("onset\tduration\ttrial_type\tstimulus_id\treferences\tstim_file\tsplit\trepeat\n")
            for (s, k), on in zip(part, design.onsets):
                f.write(f"{on:.3f}\t{STIM_S:.3f}\timage\t{scene_id(s)}\t{json.dumps(list(scene(s).captions))}\t"
                        f"stimuli/{scene_id(s)}.png\t{split_of(s)}\t{k}\n")
        fd = framewise_displacement(rs.motion)
        for t in range(T):
            motion_rows.append([r + 1, t, *[f"{v:.5f}" for v in rs.motion[t]], f"{fd[t]:.5f}"])
        Z = roi_ts
        R.append(window_mean(detrend_zscore(Z), design.times, design.onsets))
        B.append(lss_betas(Z, design.times, design.onsets))
        runs_idx.append(np.full(len(part), r))
        onsets_all.append(design.onsets)
        log(f"sub-{subject_id}: run {r + 1}/{runs} written ({T} volumes, {time.time() - t0:.1f} s)")
    with open(os.path.join(output.subject_deriv(out, subject_id), f"sub-{subject_id}_motion.tsv"), "w", encoding="utf-8") as f:
        f.write("run\tvolume\ttrans_x\ttrans_y\ttrans_z\trot_x\trot_y\trot_z\tframewise_displacement\n")
        for row_ in motion_rows:
            f.write("\t".join(str(v) for v in row_) + "\n")
    betas = np.concatenate(B)
    run_idx = np.concatenate(runs_idx)
    for s0 in range(0, runs, RUNS_PER_SESSION):
        sel = (run_idx >= s0) & (run_idx < s0 + RUNS_PER_SESSION)
        betas[sel] = zscore_rows(betas[sel])
    trials_out = Trials(np.array([s for s, _ in seq]), np.array([k for _, k in seq]), np.concatenate(R), betas, run_idx,
                        np.concatenate(onsets_all))
    output.write_responses(out, subj, trials_out, seed)
    # written last: its presence tells `npm start` that the session is complete
    output.write_description(out, {"GeneratedBy": [{"Name": "mindsemantix simulate", "Seed": seed, "Subject": subject_id,
                                                    "Split": split, "Grid": grid, "Trials": trials, "Runs": runs}]})
    return {"subject": subject_id, "runs": runs, "trials": len(seq), "voxels": a.voxels, "seconds": time.time() - t0}
