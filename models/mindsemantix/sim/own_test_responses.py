"""The training set's own held-out trials as response files, so `eval sessions` scores them as it scores new sessions.

    .venv/bin/python -m mindsemantix.sim.own_test_responses --data data/sim-serving --subject sim01 --out data/own-test/sim01
    node bin/mindsemantix.mjs eval sessions --models BUNDLE --session data/own-test/sim01 --responses data/own-test/sim01

Issue 14 compares live decoding on new sessions with "the training sessions' own test trials". With a serving-chain
training set (`sim.serving_dataset`) those trials are already the serving chain's vectors; this writes the test-split
rows of the subject's responses.h5 in the layout `mindsemantix responses` writes (one run file per recorded run, the
test trials only, in recorded order), all as one session so that a stimulus's presentations accumulate across the
training sessions the way its 3 repeats were recorded, and copies the dataset's stimuli.tsv beside them for the
references. The vectors are the h5's float32 rows unchanged; the response rows keep the h5's onset and flags."""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import h5py
import numpy as np

COLUMNS = ["trial", "stimulus_id", "onset", "presentation", "estimator", "window_start", "window_end", "volumes",
           "flags", "bundle", "mask_sha256"]


def _text(a) -> list[str]:
    return [s.decode() if isinstance(s, bytes) else str(s) for s in a]


def write_own_test(data: Path, subject: str, out: Path) -> dict:
    h5 = data / "derivatives" / "mindsemantix" / f"sub-{subject}" / f"sub-{subject}_responses.h5"
    if not h5.exists():
        raise SystemExit(f"{h5} is missing; build the training set with `python -m mindsemantix.sim.serving_dataset --out {data}`.")
    if not (data / "stimuli.tsv").exists():
        raise SystemExit(f"{data / 'stimuli.tsv'} is missing; the references come from it.")
    if out.exists():
        raise SystemExit(f"{out} exists; pass a new folder.")
    with h5py.File(h5, "r") as h:
        split, sids = _text(h["split"][()]), _text(h["stimulus_ids"][()])
        n = len(sids)
        # sim.dataset's ROI-time-series sets have one session and no flags; serving-chain sets have both
        flags = _text(h["flags"][()]) if "flags" in h else [""] * n
        session = h["session"][()] if "session" in h else np.zeros(n, np.int32)
        run, onset = h["run"][()], h["onset"][()]
        test = np.flatnonzero(np.array([s == "test" for s in split]))
        x = np.asarray(h["responses"][test.tolist()], np.float32) if len(test) else np.zeros((0, 0), np.float32)
        estimator = str(h.attrs.get("estimator", "serving chain"))
    if not len(test):
        raise SystemExit(f"{h5} has no test-split trials.")
    seen: dict[str, int] = {}
    d = out / f"sub-{subject}" / "ses-owntest"
    d.mkdir(parents=True)
    runs = 0
    by_run: dict[tuple[int, int], list[int]] = {}     # recorded run → its test rows' positions in `test`, in order
    for k, i in enumerate(test):
        by_run.setdefault((int(session[i]), int(run[i])), []).append(k)
    for key, idx in by_run.items():
        rows = []
        for t, k in enumerate(idx):
            i = test[k]
            seen[sids[i]] = seen.get(sids[i], 0) + 1
            fl = flags[i] if flags[i] else "n/a"
            rows.append([str(t), sids[i], f"{float(onset[i]):g}", str(seen[sids[i]]), "window-mean", "n/a", "n/a", "n/a",
                         fl, "training-set", "n/a"])
        name = f"sub-{subject}_ses-owntest_task-vision_run-{key[0]:02d}{key[1]:02d}_responses"
        np.save(d / f"{name}.npy", np.ascontiguousarray(x[idx].astype("<f4")))
        (d / f"{name}.tsv").write_text("\t".join(COLUMNS) + "\n" + "".join("\t".join(r) + "\n" for r in rows), encoding="utf-8")
        runs += 1
    shutil.copyfile(data / "stimuli.tsv", out / "stimuli.tsv")
    return {"trials": int(len(test)), "scenes": len(seen), "runs": runs, "estimator": estimator,
            "presentations": {str(k): sum(1 for v in seen.values() if v >= k) for k in range(1, max(seen.values()) + 1)}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mindsemantix.sim.own_test_responses", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True, help="a training set (sim.serving_dataset or sim.dataset --out)")
    p.add_argument("--subject", required=True)
    p.add_argument("--out", type=Path, required=True, help="a new folder")
    a = p.parse_args(argv)
    s = write_own_test(a.data, a.subject, a.out)
    print(f"{s['trials']} test trials of {s['scenes']} scenes in {s['runs']} run file(s) → {a.out} "
          f"(scenes shown ≥ k times: {s['presentations']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
