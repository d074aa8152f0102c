"""Calibrate a new person onto a bundle (the Python half of `mindsemantix calibrate`; the CLI computes the responses
with the serving chain first and passes them here).

  python -m mindsemantix.calibrate --responses DIR --captions CAPTIONS.json --bundle BUNDLE --subject ID --out NEW_BUNDLE
      (--mask FILE | --brain-mask FILE --voxels N) [--replace] [--summary FILE]

Fits the person's read-out onto the frozen shared encoder + Q-Former (calibrate_fit.py), that person's ridge baseline
on the same trials, and writes a complete new bundle (calibrate_bundle.py). Progress goes to stderr; the summary
(trials, voxels, held-out retrieval, seconds) to --summary as JSON.

--shared-encoder random (experiments only: the learning curve's "without pretraining" arm) replaces the bundle's
trained shared encoder by a randomly initialised one (seeded) inside the new person's encoder file; the Q-Former and
LM stay the bundle's.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from .calibrate_data import BundleTextEncoder, CalibrationInputError, load_calibration, read_captions
from .calibrate_fit import FitConfig, fit_readout, fit_ridge_baseline, heldout_split, retrieval_scores
from .schemas import check, manifest_problem_text
from .util import log

SYNTHETIC_TRIALS = 0  # opt-in: 1000 moved live CIDEr by −0.1 / +0.8 for two people, within the noise (E23)


class Progress:
    """One updating line on stderr: [#####.....] phase done/total note."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self.t0 = time.time()

    def __call__(self, done: int, total: int, note: str = "") -> None:
        if not self.enabled:
            return
        w = 24
        k = int(w * done / max(1, total))
        sys.stderr.write(f"\r[{'#' * k}{'.' * (w - k)}] {done}/{total} {note} ({time.time() - self.t0:.0f} s)\033[K")
        if done >= total or "stopped" in note:
            sys.stderr.write("\n")
        sys.stderr.flush()


def ridge_rank(manifest: dict) -> int | None:
    """The reduced rank the bundle's own baselines were exported with (None: full rank)."""
    r = (manifest.get("training") or {}).get("baseline_ridge_rank")
    return int(r) if r else None


def load_mask(path: Path):
    import nibabel as nib
    img = nib.load(str(path))
    return img, int((np.asarray(img.dataobj) > 0).sum())


def run(a) -> dict:
    t0 = time.time()
    torch.set_num_threads(max(1, a.threads))
    torch.manual_seed(a.seed)
    bundle, out = Path(a.bundle), Path(a.out)
    manifest = json.loads((bundle / "manifest.json").read_text())
    problem = check("bundle-manifest", manifest)
    if problem is not None:
        raise CalibrationInputError(f"{bundle}: {manifest_problem_text(problem)}; pass --bundle with a folder written by "
                                    "`python -m mindsemantix.export` (or re-export this one).")
    if out.exists():
        raise CalibrationInputError(f"{out} already exists; pass a new --out folder (calibrate never overwrites a bundle).")
    if a.subject in manifest["subjects"] and not a.replace:
        raise CalibrationInputError(f"the bundle already has sub-{a.subject}; pass --replace to calibrate that person again, or another --subject.")
    captions = read_captions(Path(a.captions))
    encoder = BundleTextEncoder(bundle, manifest, a.threads)
    log("calibrate: reading the calibration responses and embedding their captions with the bundle's text encoder")
    mask_info: dict
    if a.mask:
        mask_img, voxels = load_mask(Path(a.mask))
        data, report = load_calibration(Path(a.responses), a.subject, captions, encoder)
        if data.x.shape[1] != voxels:
            raise CalibrationInputError(f"the responses have {data.x.shape[1]} voxels but the mask {a.mask} has {voxels}; compute them with that mask.")
        mask_info = {"source": "given", "file": str(Path(a.mask).resolve())}
    else:
        from .calibrate_mask import select_voxels, subset_mask
        brain, _ = load_mask(Path(a.brain_mask))
        full, report = load_calibration(Path(a.responses), a.subject, captions, encoder)
        fit_idx, _ = heldout_split(full.stim, FitConfig.heldout_frac, FitConfig.min_heldout, a.seed)
        # voxels are chosen on the fitting trials only, so the held-out score stays honest
        cols, how = select_voxels(full.x[fit_idx], full.stim[fit_idx], full.target(), a.voxels)
        data = type(full)(x=np.ascontiguousarray(full.x[:, cols]), stim=full.stim, stimulus_ids=full.stimulus_ids, cap_emb=full.cap_emb)
        mask_img, voxels = subset_mask(brain, cols), len(cols)
        mask_info = {"source": "automatic", "brain_mask_voxels": int(full.x.shape[1]), **how,
                     "note": "no --mask given: voxels chosen from the calibration data inside an automatic brain mask (mean EPI intensity)"}
        log(f"calibrate: automatic mask: {voxels} of {full.x.shape[1]} brain voxels by {how['criterion']}")
    log(f"calibrate: {report['trials_used']} usable trials of {report['stimuli']} stimuli × {voxels} voxels from {report['runs']} run(s)")

    synthetic, prior_info = prior_trials(a, bundle, manifest, mask_img, data)
    no_align = getattr(a, "no_align", False)  # callers building their own argument namespace may omit the option
    if not no_align and "shared_latents" in manifest:
        attach_shared_code(data, bundle / manifest["shared_latents"]["file"])

    from .frozen_shared import load_frozen
    model, source = load_frozen(bundle, a.subject, voxels)
    if a.shared_encoder == "random":
        randomise_shared_encoder(model, a.seed)
        source += " (shared encoder replaced by a random one)"
    cfg = FitConfig(seed=a.seed, epochs=a.epochs, progress=Progress(not a.no_progress),
                    align_weight=0.0 if no_align else getattr(a, "align_weight", FitConfig.align_weight))
    fit = fit_readout(model, a.subject, data, cfg, synthetic)

    log("calibrate: fitting the ridge-retrieval baseline on the same trials")
    rank = ridge_rank(manifest)
    fit_idx, held_idx = heldout_split(data.stim, cfg.heldout_frac, cfg.min_heldout, cfg.seed)
    from .ridge import ridge_predict
    W, b = fit_ridge_baseline(data, rank, a.seed, fit_idx)
    fit["heldout"]["ridge"] = retrieval_scores(ridge_predict(data.x[held_idx], W, b), data.stim[held_idx], data.target())
    ridge = fit_ridge_baseline(data, rank, a.seed)

    seconds = time.time() - t0 + a.seconds_before
    record = {"session": a.session, "trials": report["trials_used"], "trials_recorded": report["trials_recorded"],
              "stimuli": report["stimuli"], "runs": report["runs"], "voxels": int(voxels), "mask": mask_info,
              "anatomy_prior": prior_info, "heldout_retrieval": fit["heldout"], "alignment": fit["alignment"],
              "epochs": fit["epochs"], "shared_weights": source,
              "ridge_rank": rank, "seed": a.seed, "seconds": round(seconds, 1), "command": a.command or " ".join(sys.argv),
              "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    from .calibrate_bundle import write_calibrated_bundle
    m = write_calibrated_bundle(bundle, out, manifest, a.subject, voxels, mask_img, model, ridge, record)
    seconds = time.time() - t0 + a.seconds_before
    h = fit["heldout"]
    log(f"calibrate: sub-{a.subject} added → {out} ({seconds:.0f} s); held-out single-trial top-1 retrieval "
        f"{h['model']['top1']:.2f} (ridge {h['ridge']['top1']:.2f}, chance {h['model']['chance_top1']:.2f}, {h['stimuli']} stimuli)")
    return {"bundle": str(out.resolve()), "name": m["name"], "subject": a.subject, "subjects": list(m["subjects"]),
            "trials": report["trials_used"], "trials_recorded": report["trials_recorded"], "stimuli": report["stimuli"],
            "voxels": int(voxels), "mask": mask_info, "anatomy_prior": prior_info, "heldout": h, "alignment": fit["alignment"],
            "epochs": fit["epochs"], "shared_weights": source,
            "seconds": round(seconds, 1)}


def attach_shared_code(data, path: Path) -> None:
    """Gives each calibration stimulus the bundle's shared code where the bundle's people saw it (shared_latents.py)."""
    from .shared_latents import load
    table = load(path)
    if not table:
        return
    hidden = len(next(iter(table.values())))
    data.latent = np.stack([table.get(s, np.zeros(hidden, np.float32)) for s in data.stimulus_ids]).astype(np.float32)
    data.has_latent = np.array([s in table for s in data.stimulus_ids])
    log(f"calibrate: {int(data.has_latent.sum())} of {len(data.stimulus_ids)} calibration stimuli have the bundle's shared code")


def prior_trials(a, bundle: Path, manifest: dict, roi_img, data) -> tuple[tuple | None, dict]:
    """Responses synthesised from the bundle's anatomical prior (anatomy_prior.py) at this person's voxels, for
    captions of the bundle's caption bank, to fit the read-out on beside the real trials; and what was done."""
    rec = manifest.get("anatomy_prior")
    if not rec or a.synthetic <= 0:
        return None, {"used": False, "why": "the bundle has no anatomical prior" if not rec else "--synthetic 0"}
    if not a.brain_mask:
        return None, {"used": False, "why": "no brain mask to place the voxels in the brain's frame"}
    import nibabel as nib
    from .anatomy_prior import AnatomyPrior, person_coordinates, synthesize
    try:
        coords = person_coordinates(roi_img, nib.load(a.brain_mask))
    except ValueError as e:
        raise CalibrationInputError(f"{e}; compute the mask on the calibration runs' grid.") from e
    prior = AnatomyPrior.load(bundle / rec["file"])
    bank = np.load(bundle / manifest["baseline"]["embeddings"]).astype(np.float32)
    x_syn, rows, info = synthesize(prior, coords, data.x, data.target()[data.stim], bank, a.synthetic, a.seed)
    if info["gain"] <= 0:  # the prior predicts this person's trials no better than its negation: it would mislead
        log(f"calibrate: the anatomical prior does not fit these trials (gain {info['gain']:.2f}); fitting on the real trials only")
        return None, {"used": False, "why": f"the prior does not predict these trials (gain {info['gain']:.2f} ≤ 0)"}
    log(f"calibrate: {len(rows)} responses synthesised from the anatomical prior (gain {info['gain']:.2f}, "
        f"{info['explained']:.1%} of the calibration trials' variance explained by it)")
    return (x_syn, bank[rows]), {"used": True, **info}


def randomise_shared_encoder(model, seed: int) -> None:
    """Re-initialise the shared encoder layers (to_tokens, blocks, norms, positions) as a fresh model would have them."""
    from .model import BrainEncoder
    torch.manual_seed(seed)
    fresh = BrainEncoder(model.cfg)
    state = {k: v for k, v in fresh.state_dict().items() if not k.startswith("adapters.")}
    model.encoder.load_state_dict(state, strict=False)
    for p in model.encoder.parameters():
        p.requires_grad_(False)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m mindsemantix.calibrate", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--responses", required=True, help="folder with sub-<id>/ses-*/..._responses.{npy,tsv}")
    ap.add_argument("--captions", required=True, help="JSON {stimulus_id: [reference, ...]}")
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--subject", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--mask", help="the ROI the responses were computed with")
    ap.add_argument("--brain-mask", help="the automatic brain mask: without --mask, the one the responses were computed "
                    "with; with it, only the brain's frame for the anatomical prior")
    ap.add_argument("--voxels", type=int, default=0, help="with --brain-mask: how many voxels to keep")
    ap.add_argument("--session", default="")
    ap.add_argument("--replace", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=FitConfig.epochs)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: the fit is small, and extra threads only contend on a busy machine)")
    ap.add_argument("--synthetic", type=int, default=SYNTHETIC_TRIALS,
                    help="responses to synthesise from the bundle's anatomical prior (default 0: real trials only; E23 used 1000)")
    ap.add_argument("--shared-encoder", choices=["bundle", "random"], default="bundle")
    ap.add_argument("--no-align", action="store_true",
                    help="experiments: ignore the bundle's shared code (shared_latents.npz) and fit on caption objectives alone")
    ap.add_argument("--align-weight", type=float, default=FitConfig.align_weight)
    ap.add_argument("--summary", help="write the JSON summary here")
    ap.add_argument("--command", default="", help="the user's command line, for the manifest's calibration record")
    ap.add_argument("--seconds-before", type=float, default=0.0, help="seconds already spent (responses) to include")
    ap.add_argument("--no-progress", action="store_true")
    a = ap.parse_args(argv)
    if not a.mask and not (a.brain_mask and a.voxels > 0):
        ap.error("give --mask FILE, or --brain-mask FILE with --voxels N")
    try:
        summary = run(a)
    except CalibrationInputError as e:
        if a.summary:  # the CLI prints it as its one-line error
            Path(a.summary).write_text(json.dumps({"error": str(e)}))
        else:
            sys.stderr.write(f"calibrate: {e}\n")
        return 2
    if a.summary:
        Path(a.summary).write_text(json.dumps(summary))
    else:
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
