"""E21 (docs/experiments.md), a one-off probe run from the repository root:
  .venv/bin/python docs/experiments/scripts/anatomy_prior_probe.py sim21,sim22 [--no-fold]
Inputs: data/sim-serving (python -m mindsemantix.sim.serving_dataset ... --seed 0), the calibration and test sessions of
calibration_curve (data/cal-s9/<id>-{cal,test}) and their responses, written by
  node bin/mindsemantix.mjs responses data/cal-s9/<id>-cal --models models/bundles/default --subject <id> \
      --mask data/cal-s9/<id>-cal/derivatives/mindsemantix/sub-<id>/sub-<id>_roi-mask.nii.gz --out RESP/resp-<id>-cal
(and -test likewise), RESP = $RESP or /work/exp/s10.

Offline proxy (issue 15): does an anatomical prior transfer tuning to a new person? Encoding models (caption embedding
-> voxel) of sim01-03 from data/sim-serving's training trials; a map from normalised anatomical coordinates (random
Fourier features) to encoding weights, pooled over the three; the new person's encoding weights predicted at its voxels'
coordinates (zero-shot), or that prediction as the prior of a ridge on the 496 calibration trials. Scored by
identification on the person's 300 test trials among the 100 test stimuli (Kay-style: correlation of the trial with each
stimulus's predicted response), beside the ridge decoder (calibrate's baseline) scored by retrieval of its predicted
caption embedding. Uses the simulator's true normalised coordinates (an upper bound on what registration gives)."""
import csv, json, os, sys, time
from pathlib import Path
import numpy as np, h5py
sys.path.insert(0, "models")
from mindsemantix.sim.brain import anatomy
from mindsemantix.calibrate_data import BundleTextEncoder, load_calibration, embed_references
from mindsemantix.calibrate_fit import fit_ridge_baseline, retrieval_scores
from mindsemantix.ridge import ridge_predict

bundle = Path("models/bundles/default"); manifest = json.loads((bundle / "manifest.json").read_text())
enc = BundleTextEncoder(bundle, manifest, 2)
FOLD = "--no-fold" not in sys.argv

def coords(s):
    n = anatomy(s, "default").norm
    return np.column_stack([np.abs(n[:, 0]) if FOLD else n[:, 0], n[:, 1], n[:, 2]]) * 3.0

rng = np.random.default_rng(0)
D = 768
OM = rng.standard_normal((D, 3)) * 1.2
PH = rng.uniform(0, 2 * np.pi, D)
def phi(c): return np.sqrt(2.0 / D) * np.cos(c @ OM.T + PH)

def zs(x, m=None, s=None):
    m = x.mean(0) if m is None else m; s = x.std(0) + 1e-6 if s is None else s
    return (x - m) / s, m, s

def ridge_enc(E, X, lam):
    # B [E_dim, V] = (E'E + lam I)^-1 E'X
    return np.linalg.solve(E.T @ E + lam * np.eye(E.shape[1]), E.T @ X)

import torch
CACHE = torch.load("models/runs/cache/minilm-captions.pt", weights_only=False)
def enc_one(c): return embed_references(enc, {"x": [c]}, ["x"])[0, 0]
t0 = time.time()
Phis, Bs = [], []
for s in ("sim01", "sim02", "sim03"):
    with h5py.File(f"data/sim-serving/derivatives/mindsemantix/sub-{s}/sub-{s}_responses.h5", "r") as h:
        sp = np.array([v.decode() if isinstance(v, bytes) else v for v in h["split"][()]])
        keep = sp == "train"
        X = np.asarray(h["responses"], np.float32)[keep]
        sid = [v.decode() if isinstance(v, bytes) else v for v in h["stimulus_ids"][()]]
        caps = [v.decode() if isinstance(v, bytes) else v for v in h["captions"][()]]
    sid = [x for x, k in zip(sid, keep) if k]; caps = [c for c, k in zip(caps, keep) if k]
    cd = {a: json.loads(c) if c.startswith("[") else c.split("|") for a, c in zip(sid, caps)}
    uniq = sorted(set(sid)); idx = {a: i for i, a in enumerate(uniq)}
    ce = np.stack([np.mean([np.asarray(CACHE[c], np.float32) if c in CACHE else enc_one(c) for c in cd[a]], 0) for a in uniq])
    ce /= np.linalg.norm(ce, axis=1, keepdims=True)
    E = ce[[idx[a] for a in sid]]
    X, _, _ = zs(X)
    B = ridge_enc(E - E.mean(0), X, 1.0)
    Phis.append(phi(coords(s))); Bs.append(B.T)
    print(f"{s}: {X.shape} encoding fitted ({time.time()-t0:.0f}s)", flush=True)
P = np.concatenate(Phis); Bt = np.concatenate(Bs)
A = np.linalg.solve(P.T @ P + 1e-1 * np.eye(D), P.T @ Bt)     # [D, E]
for s, Ph, B in zip(("sim01", "sim02", "sim03"), Phis, Bs):
    pr = Ph @ A; r = np.mean([np.corrcoef(pr[v], B[v])[0, 1] for v in range(0, len(B), 7)])
    print(f"{s}: in-sample map corr of voxel encoding weights {r:.3f}")

def caps_of(sess):
    out = {}
    for t in Path(sess).rglob("*_events.tsv"):
        for r in csv.DictReader(open(t), delimiter="\t"):
            if r.get("references") and r["references"] != "n/a":
                out[r["stimulus_id"]] = json.loads(r["references"])
    return out

def ident(X, Bv, T):
    """top-1/top-5 of each trial among the stimuli T [K,E] by correlation of x with T @ Bv."""
    R = T @ Bv                       # [K, V]
    R = (R - R.mean(1, keepdims=True)) / (R.std(1, keepdims=True) + 1e-9)
    Xz = (X - X.mean(1, keepdims=True)) / (X.std(1, keepdims=True) + 1e-9)
    return Xz @ R.T / X.shape[1]     # [n, K]

def topk(S, stim, k):
    order = np.argsort(-S, 1)[:, :k]
    return float(np.mean([stim[i] in order[i] for i in range(len(stim))]))

for subj in sys.argv[1].split(","):
    cal, _ = load_calibration(Path(os.environ.get("RESP", "/work/exp/s10")) / f"resp-{subj}-cal", subj, caps_of(f"data/cal-s9/{subj}-cal"), enc)
    test, _ = load_calibration(Path(os.environ.get("RESP", "/work/exp/s10")) / f"resp-{subj}-test", subj, caps_of(f"data/cal-s9/{subj}-test"), enc)
    T = test.target(); Tc = T - cal.target().mean(0)
    Xc, m, sd = zs(cal.x); Xt, _, _ = zs(test.x, m, sd)
    W, b = fit_ridge_baseline(cal, 64, 0)
    s = retrieval_scores(ridge_predict(test.x, W, b), test.stim, T)
    P3 = np.stack([ridge_predict(test.x, W, b)[test.stim == k].mean(0) for k in range(len(T))])
    s3 = retrieval_scores(P3, np.arange(len(T)), T)
    print(f"{subj} ridge decoder (calibrate's baseline): single top1 {s['top1']:.3f} top5 {s['top5']:.3f} | mean3 top1 {s3['top1']:.3f} top5 {s3['top5']:.3f}")
    Xm = np.stack([Xt[test.stim == k].mean(0) for k in range(len(T))])
    Bprior = (phi(coords(subj)) @ A).T                          # [E, V]
    Ec = cal.target()[cal.stim]; Ecc = Ec - Ec.mean(0)
    for name, Bv in [("anatomy prior, zero-shot", Bprior)] + [
        (f"encoding ridge on calibration, lam {lam:g}", ridge_enc(Ecc, Xc, lam)) for lam in (1, 10)] + [
        (f"prior + calibration residual, lam {lam:g}", Bprior + ridge_enc(Ecc, Xc - Ecc @ Bprior, lam)) for lam in (1, 10, 100)]:
        S = ident(Xt, Bv, Tc); S3 = ident(Xm, Bv, Tc)
        print(f"{subj} {name:42s}: single top1 {topk(S, test.stim, 1):.3f} top5 {topk(S, test.stim, 5):.3f} | mean3 top1 {topk(S3, np.arange(len(T)), 1):.3f} top5 {topk(S3, np.arange(len(T)), 5):.3f}", flush=True)

    if "--synth" in sys.argv:
        # The prior used as calibration data: responses synthesised for the bundle's training captions (its baseline
        # caption bank), scaled to this person by one gain fitted on the calibration trials, with each voxel's residual
        # noise; a ridge decoder (the baseline's fit) on real + synthetic trials, scored as the ridge decoder is.
        from mindsemantix.ridge import fit_ridge
        bank = np.load(bundle / manifest["baseline"]["embeddings"]).astype(np.float32)
        bank /= np.linalg.norm(bank, axis=1, keepdims=True)
        Ebar = cal.target().mean(0)
        P = Ecc @ Bprior
        gain = float((Xc * P).sum() / (P * P).sum())
        sig = (Xc - gain * P).std(0)
        for n_syn in (1000, 4000):
            g = np.random.default_rng(1)
            E_syn = bank[g.choice(len(bank), n_syn, replace=False)]
            X_syn = gain * (E_syn - Ebar) @ Bprior + g.standard_normal((n_syn, Xc.shape[1])) * sig
            Wr, br, alpha = fit_ridge(np.concatenate([Xc, X_syn]).astype(np.float32), np.concatenate([Ec, E_syn]).astype(np.float32))
            pr = ridge_predict(Xt, Wr, br)
            s = retrieval_scores(pr, test.stim, T)
            P3 = np.stack([pr[test.stim == k].mean(0) for k in range(len(T))])
            s3 = retrieval_scores(P3, np.arange(len(T)), T)
            print(f"{subj} ridge decoder on calibration + {n_syn} synthetic (gain {gain:.2f}, alpha {alpha:g}): single top1 {s['top1']:.3f} top5 {s['top5']:.3f} cos {s['cosine']:.3f} | mean3 top1 {s3['top1']:.3f} top5 {s3['top5']:.3f}", flush=True)
        Wr, br, alpha = fit_ridge(Xc.astype(np.float32), Ec.astype(np.float32))
        pr = ridge_predict(Xt, Wr, br)
        s = retrieval_scores(pr, test.stim, T)
        P3 = np.stack([pr[test.stim == k].mean(0) for k in range(len(T))])
        s3 = retrieval_scores(P3, np.arange(len(T)), T)
        print(f"{subj} ridge decoder on calibration only, same fit (alpha {alpha:g}): single top1 {s['top1']:.3f} top5 {s['top5']:.3f} cos {s['cosine']:.3f} | mean3 top1 {s3['top1']:.3f} top5 {s3['top5']:.3f}", flush=True)
