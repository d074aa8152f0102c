"""Writes test/fixtures/image-metrics/cases.json: small inputs scored by mindsemantix.image_metrics and PIL's BOX resize,
which the TypeScript metrics (src/metrics/imageMetrics.ts, test/metrics/imageMetrics.test.ts) must reproduce within 1e-5
and models/tests/test_image_metrics.py re-checks against the Python code.

  PYTHONPATH=models .venv/bin/python models/scripts/image_metrics_fixture.py"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from mindsemantix import image_metrics as im

OUT = Path(__file__).resolve().parents[2] / "test" / "fixtures" / "image-metrics" / "cases.json"


def build() -> dict:
    rng = np.random.default_rng(20)
    # non-square images so a transposed axis shows; recon 0 near its stimulus, 1 noisier, 2 unrelated
    stim = rng.random((3, 3, 14, 17)).round(4)
    recon = np.stack([np.clip(stim[0] + rng.normal(0, 0.05, stim[0].shape), 0, 1), np.clip(0.6 * stim[1] + 0.2 + rng.normal(0, 0.2, stim[1].shape), 0, 1),
                      rng.random(stim[2].shape)]).round(4)
    pairs = {"shape": list(stim.shape), "recon": recon.ravel().tolist(), "stim": stim.ravel().tolist(),
             "pixcorr_each": im.pixcorr_each(recon, stim).tolist(), "ssim_each": im.ssim_each(recon, stim).tolist(),
             "pixcorr": im.pixcorr(recon, stim), "ssim": im.ssim(recon, stim)}
    s = rng.normal(size=(4, 9))
    stim_f = np.concatenate([s, s[:2]]).round(4)                      # stimuli 0 and 1 shown twice
    groups = ["a", "b", "c", "d", "a", "b"]
    recon_f = (stim_f + rng.normal(0, 2.0, stim_f.shape)).round(4)
    two_way = {"shape": list(stim_f.shape), "recon": recon_f.ravel().tolist(), "stim": stim_f.ravel().tolist(), "groups": groups,
               "two_way": im.two_way(recon_f, stim_f), "two_way_grouped": im.two_way(recon_f, stim_f, groups)}
    box = []
    for h, w, H, W in [(40, 52, 16, 16), (32, 32, 8, 8), (30, 17, 7, 5), (5, 6, 9, 8), (12, 12, 12, 12)]:
        a = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        out = np.asarray(Image.fromarray(a).resize((W, H), Image.Resampling.BOX))
        box.append({"height": h, "width": w, "out_height": H, "out_width": W, "rgb": a.ravel().tolist(), "expected": out.ravel().tolist()})
    return {"about": __doc__.split("\n\n")[0], "pairs": pairs, "two_way": two_way, "box": box}


if __name__ == "__main__":
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(build()) + "\n")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")
