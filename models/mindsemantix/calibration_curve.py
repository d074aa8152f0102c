"""Learning curve of new-person calibration (issue 15): CIDEr on a held-out test session vs calibration trials.

For each new simulated person (any id outside sim01–sim08 is a new brain): a calibration session of training scenes
(`simulate --split train --runs 8 --trials 62`) and a test session of held-out scenes (`simulate --split test --runs 5
--trials 60`: 100 scenes × 3). For 62/124/248/496 trials (the first 1/2/4/8 runs), `mindsemantix calibrate` with the
simulator's ROI mask, then `demo --once --json` on the test session, which decodes every trial live and reports the
model's CIDEr and that person's ridge-retrieval baseline (fitted by calibrate on the same trials):
  (i)   pretrained: the bundle's trained shared encoder + Q-Former, new read-out
  (ii)  random:     the same calibration onto a randomly initialised shared encoder (--shared-encoder random)
  (iii) ridge:      the summary's baseline of run (i)
Results are appended to --results (JSON lines) and skipped when already there, so the script can be resumed.

  PYTHONPATH=models .venv/bin/python -m mindsemantix.calibration_curve --work data/calibration-curve \
      --results docs/experiments/calibration_curve.jsonl [--subjects sim21,sim22,sim23] [--trials 62,124,248,496]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from .util import log

ROOT = Path(__file__).resolve().parents[2]
CLI = ["node", str(ROOT / "bin" / "mindsemantix.mjs")]
SEEDS = {"sim21": 21, "sim22": 22, "sim23": 23}


def sh(args: list[str], capture: bool = False) -> str:
    log("$ " + " ".join(args))
    r = subprocess.run(args, cwd=ROOT, text=True, stdout=subprocess.PIPE if capture else None)
    if r.returncode != 0:
        raise RuntimeError(f"command failed ({r.returncode}): {' '.join(args)}")
    return r.stdout if capture else ""


def sessions(work: Path, sub: str) -> tuple[Path, Path]:
    seed = SEEDS.get(sub, int("".join(c for c in sub if c.isdigit()) or 0))
    cal, test = work / f"{sub}-cal", work / f"{sub}-test"
    if not (cal / "stimuli.tsv").exists():
        sh(CLI + ["simulate", "--out", str(cal), "--subject", sub, "--seed", str(seed), "--runs", "8", "--trials", "62", "--split", "train"])
    if not (test / "stimuli.tsv").exists():
        sh(CLI + ["simulate", "--out", str(test), "--subject", sub, "--seed", str(1000 + seed), "--runs", "5", "--trials", "60", "--split", "test"])
    return cal, test


def one(work: Path, models: str, sub: str, trials: int, arm: str, seed: int) -> dict:
    cal, test = sessions(work, sub)
    runs = ",".join(f"task-vision_run-{i:02d}" for i in range(1, trials // 62 + 1))
    mask = cal / "derivatives" / "mindsemantix" / f"sub-{sub}" / f"sub-{sub}_roi-mask.nii.gz"
    out = work / f"bundle-{sub}-{trials}-{arm}"
    if not (out / "manifest.json").exists():
        cmd = CLI + ["calibrate", "--session", str(cal), "--subject", sub, "--models", models, "--out", str(out), "--mask", str(mask),
                     "--runs", runs, "--seed", str(seed), "--json"] + (["--shared-encoder", "random"] if arm == "random" else [])
        cal_summary = json.loads(sh(cmd, capture=True).strip().splitlines()[-1])
    else:
        cal_summary = json.loads((out / "manifest.json").read_text())["calibration"][sub]
    t0 = time.time()
    lines = sh(CLI + ["demo", "--session", str(test), "--models", str(out), "--once", "--json", "--port", "0"], capture=True)
    summary = next(json.loads(l) for l in reversed(lines.strip().splitlines()) if '"type":"summary"' in l.replace(" ", ""))
    return {"subject": sub, "trials": trials, "arm": arm, "seed": seed, "calibration": {
                k: cal_summary.get(k) for k in ("trials", "voxels", "seconds", "epochs", "heldout", "heldout_retrieval")},
            "test": {"session": str(test), "decoded": summary["decoded"], "of": summary["trials"],
                     "CIDEr": summary["metrics"]["CIDEr"], "BLEU4": summary["metrics"]["BLEU4"],
                     "baseline_CIDEr": summary["baseline"]["CIDEr"], "baseline_BLEU4": summary["baseline"]["BLEU4"],
                     "by_presentation": summary.get("by_presentation")},
            "demo_seconds": round(time.time() - t0, 1)}


def table(rows: list[dict]) -> str:
    """CIDEr-D ×100 on the test session: single trial for (i) pretrained, (ii) random shared encoder, (iii) ridge, and
    at the third presentation (decoded from the mean of the three) for (i) and (iii)."""
    cell = {(r["subject"], r["trials"], r["arm"]): r["test"] for r in rows}
    keys = sorted({(s, t) for s, t, _ in cell}, key=lambda k: (k[0], k[1]))
    out = ["| person | calibration trials | (i) shared model + new read-out | (ii) same, untrained shared encoder | "
           "(iii) ridge, same trials | (i) / (iii) | mean of 3: (i) | mean of 3: (iii) |",
           "|---|---|---|---|---|---|---|---|"]

    def third(x, k):
        bp = [b for b in (x or {}).get("by_presentation") or [] if b["presentation"] == 3]
        return f"{100 * bp[0][k]:.1f}" if bp else "–"

    for s, t in keys:
        p, r = cell.get((s, t, "pretrained")), cell.get((s, t, "random"))
        f = lambda x, k="CIDEr": f"{100 * x[k]:.1f}" if x else "–"
        ratio = f"{p['CIDEr'] / p['baseline_CIDEr']:.2f}" if p and p["baseline_CIDEr"] else "–"
        out.append(f"| {s} | {t} | {f(p)} | {f(r)} | {f(p, 'baseline_CIDEr')} | {ratio} | {third(p, 'CIDEr')} | {third(p, 'baseline_CIDEr')} |")
    return "\n".join(out)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m mindsemantix.calibration_curve", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default="data/calibration-curve")
    ap.add_argument("--results", default="docs/experiments/calibration_curve.jsonl")
    ap.add_argument("--models", default="models/bundles/default")
    ap.add_argument("--subjects", default="sim21,sim22,sim23")
    ap.add_argument("--trials", default="62,124,248,496")
    ap.add_argument("--arms", default="pretrained,random")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--plan", default="", help="explicit order: comma list of sub:trials:arm (default: every combination)")
    ap.add_argument("--table", action="store_true", help="print the results so far as a markdown table and exit")
    a = ap.parse_args(argv)
    work, results = (ROOT / a.work).resolve(), (ROOT / a.results).resolve()
    if a.table:
        print(table([json.loads(l) for l in results.read_text().splitlines()] if results.exists() else []))
        return 0
    work.mkdir(parents=True, exist_ok=True)
    results.parent.mkdir(parents=True, exist_ok=True)
    done = set()
    if results.exists():
        for l in results.read_text().splitlines():
            r = json.loads(l)
            done.add((r["subject"], r["trials"], r["arm"], r["seed"]))
    plan = ([tuple(p.split(":")) for p in a.plan.split(",") if p] if a.plan else
            [(s, t, arm) for arm in a.arms.split(",") for s in a.subjects.split(",") for t in a.trials.split(",")])
    for sub, t, arm in plan:
        if (sub, int(t), arm, a.seed) in done:
            continue
        r = one(work, a.models, sub, int(t), arm, a.seed)
        with open(results, "a") as f:
            f.write(json.dumps(r) + "\n")
        log(f"{sub} {t} {arm}: CIDEr {r['test']['CIDEr']:.3f} (ridge {r['test']['baseline_CIDEr']:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
