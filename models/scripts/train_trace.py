"""Per-step training losses and final-weight checksums of the tiny config, for checking that a refactor of the training
code leaves training numerically the same (same seed, same order of random draws).

  PYTHONPATH=models .venv/bin/python models/scripts/train_trace.py --out /tmp/trace-before.json
  PYTHONPATH=models .venv/bin/python models/scripts/train_trace.py --out /tmp/trace-after.json --compare /tmp/trace-before.json

Runs covered: tiny.yaml `--stage all` (ssl → stage1 → stage2, 6 steps each), ssl with the cross-subject target and the
contrastive term, stage 2 with the consensus reference and the short captions. Every logged train/* value of every step
is recorded, plus sum, sum of squares and sha256 of each stage's final weights.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path

import torch

RUNS = {
    "all": ["--stage", "all", "--set", "train.ssl.steps=6", "--set", "train.stage1.steps=6", "--set", "train.stage2.steps=6"],
    "ssl-cross": ["--stage", "ssl", "--set", "train.ssl.steps=4", "--set", "train.ssl.target=cross",
                  "--set", "train.ssl.contrast_weight=0.5", "--set", "train.ssl.norm_patches=true"],
    "stage2-consensus": ["--stage", "stage2", "--no-ssl", "--set", "train.stage2.steps=4", "--set", "train.stage2.reference=consensus",
                         "--set", "train.stage2.short_captions=2", "--set", "train.stage2.lm_every=1"],
}


def trace(tmp: Path) -> dict:
    import lightning as L
    from mindsemantix import fixtures as FX
    from mindsemantix.train import main

    steps: list[dict] = []

    class Record(L.Callback):
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            row = {"step": trainer.global_step, "loss": float(outputs["loss"].detach())}
            row.update({k: float(v) for k, v in sorted(trainer.callback_metrics.items()) if k.startswith("train/")})
            steps.append(row)

    init = L.Trainer.__init__

    def with_record(self, *a, **kw):  # every Trainer the driver builds gets the recorder
        kw["callbacks"] = list(kw.get("callbacks") or []) + [Record()]
        init(self, *a, **kw)

    L.Trainer.__init__ = with_record
    data = FX.write_sim(tmp / "sim", {"sim01": 40, "sim02": 40})
    cfg = str(Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml")
    out: dict = {}
    try:
        for name, extra in RUNS.items():
            run = tmp / name
            steps.clear()
            main(["--config", cfg, "--data", str(data), "--out", str(run), "--accelerator", "cpu", "--devices", "1",
                  "--no-progress-bar", "--seed", "0", *extra])
            sums = {}
            for pt in sorted(run.glob("*.pt")):
                w = torch.load(pt, weights_only=False)["weights"]
                flat = {**{f"model.{k}": v for k, v in w["model"].items()}, **{f"img_side.{k}": v for k, v in w["img_side"].items()},
                        "scale_text": w["scale_text"], "scale_img": w["scale_img"]}
                h = hashlib.sha256()
                for k in sorted(flat):
                    h.update(k.encode())
                    h.update(flat[k].detach().contiguous().cpu().numpy().tobytes())
                sums[pt.stem] = {"sum": float(sum(v.double().sum() for v in flat.values())),
                                 "sumsq": float(sum(v.double().pow(2).sum() for v in flat.values())), "sha256": h.hexdigest()}
            out[name] = {"steps": list(steps), "weights": sums}
    finally:
        L.Trainer.__init__ = init
    return out


def compare(a: dict, b: dict, rtol: float) -> list[str]:
    bad, worst = [], 0.0
    for run in b:
        if len(a[run]["steps"]) != len(b[run]["steps"]):
            bad.append(f"{run}: {len(a[run]['steps'])} steps, reference {len(b[run]['steps'])}")
            continue
        for i, (x, y) in enumerate(zip(a[run]["steps"], b[run]["steps"])):
            if set(x) != set(y):
                bad.append(f"{run} row {i}: keys {sorted(set(x) ^ set(y))} differ")
            for k in set(x) & set(y):
                r = abs(x[k] - y[k]) / max(abs(y[k]), 1e-12)
                worst = max(worst, r)
                if r > rtol:
                    bad.append(f"{run} row {i} {k}: {x[k]!r} vs {y[k]!r} (rel {r:.2e})")
        for st, w in b[run]["weights"].items():
            got = a[run]["weights"].get(st)
            if got is None or any(abs(got[k] - w[k]) > rtol * max(abs(w[k]), 1e-12) for k in ("sum", "sumsq")):
                bad.append(f"{run} {st}: weights {got} vs {w}")
            elif got["sha256"] != w["sha256"]:
                bad.append(f"{run} {st}: weights within {rtol} but not bit-identical")
    print(f"largest relative difference of a logged value: {worst:.3e}")
    return bad


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--compare", help="a reference trace written by this script")
    ap.add_argument("--rtol", type=float, default=1e-6)
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        got = trace(Path(tmp))
    Path(a.out).write_text(json.dumps(got, indent=1))
    for run, r in got.items():
        for row in r["steps"]:
            print(run, json.dumps(row))
        print(run, "weights", json.dumps(r["weights"]))
    if a.compare:
        bad = compare(got, json.loads(Path(a.compare).read_text()), a.rtol)
        print("\n".join(bad) if bad else f"same as {a.compare} (rtol {a.rtol})")
        return 1 if bad else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
