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
    summary = next(json.loads(ln) for ln in reversed(lines.strip().splitlines()) if '"type":"summary"' in ln.replace(" ", ""))
    return {"subject": sub, "trials": trials, "arm": arm, "seed": seed, "calibration": {
                k: cal_summary.get(k) for k in ("trials", "voxels", "seconds", "epochs", "heldout", "heldout_retrieval", "anatomy_prior")},
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
        def f(x, k="CIDEr"):
            return f"{100 * x[k]:.1f}" if x else "–"
        ratio = f"{p['CIDEr'] / p['baseline_CIDEr']:.2f}" if p and p["baseline_CIDEr"] else "–"
        out.append(f"| {s} | {t} | {f(p)} | {f(r)} | {f(p, 'baseline_CIDEr')} | {ratio} | {third(p, 'CIDEr')} | {third(p, 'baseline_CIDEr')} |")
    return "\n".join(out)


def svg(rows: list[dict]) -> str:
    """A small line plot (no plotting library here): mean single-trial CIDEr over the people per arm vs trials (log2),
    each person's points faint."""
    W, H, L, B, T, R = 640, 320, 50, 40, 20, 220
    xs = sorted({r["trials"] for r in rows})
    series = {"(i) shared model + new read-out": ("pretrained", "CIDEr", "#1f77b4"),
              "(ii) untrained shared encoder": ("random", "CIDEr", "#999999"),
              "(iii) ridge, same trials": ("pretrained", "baseline_CIDEr", "#d62728")}
    vals = [100 * r["test"][k] for r in rows for _, (a, k, _) in series.items() if r["arm"] == a]
    lo, hi = 0.0, max(vals + [1]) * 1.15
    def px(t):
        return L + (W - L - R) * (xs.index(t) / max(1, len(xs) - 1))

    def py(v):
        return H - B - (H - B - T) * (v - lo) / (hi - lo)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="11">',
           f'<line x1="{L}" y1="{H - B}" x2="{W - R}" y2="{H - B}" stroke="black"/><line x1="{L}" y1="{T}" x2="{L}" y2="{H - B}" stroke="black"/>']
    for t in xs:
        out.append(f'<text x="{px(t)}" y="{H - B + 15}" text-anchor="middle">{t}</text>')
    for v in range(0, int(hi) + 1, 5):
        out.append(f'<text x="{L - 6}" y="{py(v) + 4}" text-anchor="end">{v}</text>'
                   f'<line x1="{L}" y1="{py(v)}" x2="{W - R}" y2="{py(v)}" stroke="#eee"/>')
    out.append(f'<text x="{(L + W - R) / 2}" y="{H - 6}" text-anchor="middle">calibration trials</text>')
    out.append(f'<text x="14" y="{(T + H - B) / 2}" transform="rotate(-90 14 {(T + H - B) / 2})" text-anchor="middle">CIDEr-D ×100, single trial</text>')
    for i, (name, (arm, k, col)) in enumerate(series.items()):
        pts = {}
        for r in rows:
            if r["arm"] == arm:
                pts.setdefault(r["trials"], []).append(100 * r["test"][k])
                out.append(f'<circle cx="{px(r["trials"])}" cy="{py(100 * r["test"][k])}" r="2" fill="{col}" opacity="0.35"/>')
        mean = [(t, sum(v) / len(v)) for t, v in sorted(pts.items())]
        if len(mean) > 1:
            out.append('<polyline fill="none" stroke-width="2" stroke="%s" points="%s"/>' % (col, " ".join(f"{px(t)},{py(v)}" for t, v in mean)))
        for t, v in mean:
            out.append(f'<circle cx="{px(t)}" cy="{py(v)}" r="3.5" fill="{col}"/>')
        out.append(f'<rect x="{W - R + 8}" y="{T + 18 * i}" width="10" height="10" fill="{col}"/>'
                   f'<text x="{W - R + 22}" y="{T + 18 * i + 9}" font-size="9">{name}</text>')
    out.append("</svg>")
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
    ap.add_argument("--svg", help="write the results so far as an SVG plot to this file and exit")
    a = ap.parse_args(argv)
    work, results = (ROOT / a.work).resolve(), (ROOT / a.results).resolve()
    rows = [json.loads(ln) for ln in results.read_text().splitlines()] if results.exists() else []
    if a.svg:
        Path(a.svg).write_text(svg(rows))
    if a.table:
        print(table(rows))
    if a.svg or a.table:
        return 0
    work.mkdir(parents=True, exist_ok=True)
    results.parent.mkdir(parents=True, exist_ok=True)
    done = set()
    if results.exists():
        for ln in results.read_text().splitlines():
            r = json.loads(ln)
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
