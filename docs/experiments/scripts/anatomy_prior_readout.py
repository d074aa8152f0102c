"""E22 (docs/experiments.md), an offline probe run from the repository root:
  PYTHONPATH=models .venv/bin/python docs/experiments/scripts/anatomy_prior_readout.py sim21,sim22 [--synthetic 0,1000,3000]
Inputs: the calibration/test sessions and responses of E21 (anatomy_prior_probe.py's docstring; RESP=/work/exp/s10).

The product path of the anatomical prior (mindsemantix.anatomy_prior): the prior fitted on the default bundle's people
with *estimated* normalised coordinates (brain frame from the mean-EPI brain mask, not the simulator's exact ones);
the new person's frame from calibrate_mask's automatic brain mask of their calibration session; calibrate's read-out
fit (calibrate_fit.fit_readout) on the 496 real calibration trials plus N responses synthesised from the prior. Scored
without the LM: retrieval of the read-out's caption embedding among the 100 test stimuli (single trials, means of 3),
beside calibrate's ridge baseline on the same 496 trials."""
import csv
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from mindsemantix.anatomy_prior import fit_from_bundle, person_coordinates, synthesize
from mindsemantix.calibrate_data import BundleTextEncoder, load_calibration
from mindsemantix.calibrate_fit import FitConfig, fit_readout, fit_ridge_baseline, retrieval_scores, ReadoutFitter
from mindsemantix.calibrate_mask import brain_mask
from mindsemantix.frozen_shared import load_frozen
from mindsemantix.ridge import ridge_predict

torch.set_num_threads(int(os.environ.get("THREADS", "2")))
bundle = Path("models/bundles/default")
manifest = json.loads((bundle / "manifest.json").read_text())
enc = BundleTextEncoder(bundle, manifest, 2)
RESP = Path(os.environ.get("RESP", "/work/exp/s10"))
SESS = Path(os.environ.get("SESS", "data/cal-s9"))
arg = lambda k, d: sys.argv[sys.argv.index(k) + 1] if k in sys.argv else d  # noqa: E731
counts = [int(v) for v in arg("--synthetic", "0,1000,3000").split(",")]

t0 = time.time()
extra = [Path(d) for d in os.environ.get("PRIOR_EXTRA", "").split(",") if d]   # more people for the map (E24)
prior, rep = fit_from_bundle(bundle, Path("data/sim-serving"), {}, Path("models/runs/cache/minilm-captions.pt"), extra=extra)
print(f"prior fitted ({time.time() - t0:.0f} s): {json.dumps(rep)}", flush=True)
bank = np.load(bundle / manifest["baseline"]["embeddings"]).astype(np.float32)
bank /= np.linalg.norm(bank, axis=1, keepdims=True)


def caps_of(sess):
    out = {}
    for t in Path(sess).rglob("*_events.tsv"):
        for r in csv.DictReader(open(t), delimiter="\t"):
            if r.get("references") and r["references"] != "n/a":
                out[r["stimulus_id"]] = json.loads(r["references"])
    return out


def scores(pred, test):
    T = test.target()
    s = retrieval_scores(pred, test.stim, T)
    p3 = np.stack([pred[test.stim == k].mean(0) for k in range(len(T))])
    s3 = retrieval_scores(p3, np.arange(len(T)), T)
    return f"single top1 {s['top1']:.3f} top5 {s['top5']:.3f} cos {s['cosine']:.3f} | mean3 top1 {s3['top1']:.3f} top5 {s3['top5']:.3f} cos {s3['cosine']:.3f}"


import nibabel as nib  # noqa: E402
for subj in sys.argv[1].split(","):
    cal_s = SESS / f"{subj}-cal"
    cal, _ = load_calibration(RESP / f"resp-{subj}-cal", subj, caps_of(cal_s), enc)
    test, _ = load_calibration(RESP / f"resp-{subj}-test", subj, caps_of(SESS / f"{subj}-test"), enc)
    roi = nib.load(str(cal_s / "derivatives/mindsemantix" / f"sub-{subj}" / f"sub-{subj}_roi-mask.nii.gz"))
    coords = person_coordinates(roi, brain_mask(cal_s, subj))
    W, b = fit_ridge_baseline(cal, 64, 0)
    print(f"{subj} ridge baseline (496 real): {scores(ridge_predict(test.x, W, b), test)}", flush=True)
    for n in counts:
        t1 = time.time()
        syn = None
        if n:
            xs, rows, r = synthesize(prior, coords, cal.x, cal.target()[cal.stim], bank, n, 0)
            syn = (xs, bank[rows])
        model, _ = load_frozen(bundle, subj, cal.x.shape[1])
        fit = fit_readout(model, subj, cal, FitConfig(seed=0, select=os.environ.get("SELECT", "top1"),
                                                     epochs=int(os.environ.get("EPOCHS", "60"))), syn)
        f = ReadoutFitter(model, subj, cal, FitConfig())
        print(f"{subj} [select {os.environ.get('SELECT', 'top1')}] read-out, 496 real + {n} synthetic{' (gain %.2f, explained %.3f)' % (r['gain'], r['explained']) if n else ''}, "
              f"{fit['epochs']} epochs, {time.time() - t1:.0f} s: {scores(f.predict(test.x), test)}", flush=True)
