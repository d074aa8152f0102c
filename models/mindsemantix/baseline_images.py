"""The nearest-training-image baseline's pictures for Node (CONTRACT.md summary `image.retrieval`; docs/metrics.md
"Image metrics"). Node has no renderer of the simulator's world, so the bundle carries them:

  python -m mindsemantix.baseline_images [--bundle models/bundles/default]

writes <bundle>/baseline_images.npy.gz — a gzip-compressed .npy, uint8 C-order [N, 64, 64, 3] (RGB, rows of pixels),
row i the image of the training scene of baseline_captions.json[i] (image_eval.caption_scene_map: the first training
scene with that caption, as image_eval's retrieval baseline takes it), box-downsampled 256² → 64² (image_eval.scene_image)
— and names it in manifest.json (`baseline.images`, sha256 in `files`). Pixel-major rows compress to ~2 KB a scene."""
from __future__ import annotations

import argparse
import gzip
import io
import json
import sys
from pathlib import Path

import numpy as np

from .util import log, sha256_file

IMAGES_FILE = "baseline_images.npy.gz"


def caption_images(captions: list[str], size: int = 64) -> np.ndarray:
    """uint8 [N, size, size, 3]: each caption's training scene as image_eval scores it (float = uint8 / 255 exactly)."""
    from .image_eval import caption_scene_map, scene_image
    cmap = caption_scene_map()
    missing = [c for c in captions if c not in cmap]
    if missing:
        raise ValueError(f"{len(missing)} baseline captions (e.g. {missing[0]!r}) are no training scene's caption; "
                         "the bundle was not trained on this world, so it has no baseline images.")
    drawn: dict[int, np.ndarray] = {}
    out = np.empty((len(captions), size, size, 3), np.uint8)
    for i, c in enumerate(captions):
        s = cmap[c]
        if s not in drawn:
            drawn[s] = np.round(scene_image(s, size) * 255).astype(np.uint8).transpose(1, 2, 0)
        out[i] = drawn[s]
    return out


def add_baseline_images(bundle: Path) -> dict:
    """Writes the file and updates manifest.json (validated before it is written); returns the manifest."""
    from .schemas import validate_manifest
    bundle = Path(bundle)
    mp = bundle / "manifest.json"
    m = json.loads(mp.read_text())
    spec = m.get("baseline") or {}
    captions = json.loads((bundle / spec.get("captions", "baseline_captions.json")).read_text())
    imgs = caption_images(captions)
    buf = io.BytesIO()
    np.save(buf, imgs)
    # mtime 0: the same images give the same bytes (and sha256) on every export
    with gzip.GzipFile(bundle / IMAGES_FILE, "wb", compresslevel=9, mtime=0) as f:
        f.write(buf.getvalue())
    m["baseline"] = {**spec, "images": IMAGES_FILE}
    m["files"][IMAGES_FILE] = sha256_file(bundle / IMAGES_FILE)
    m["files"] = dict(sorted(m["files"].items()))
    validate_manifest(m, f"baseline images for {bundle}")
    mp.write_text(json.dumps(m, indent=2))
    log(f"baseline images: {len(imgs)} → {bundle / IMAGES_FILE} ({(bundle / IMAGES_FILE).stat().st_size / 1e6:.1f} MB)")
    return m


def read_baseline_images(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        return np.load(io.BytesIO(f.read()))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mindsemantix.baseline_images", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", type=Path, default=Path("models/bundles/default"))
    a = ap.parse_args(argv)
    try:
        add_baseline_images(a.bundle)
    except (ValueError, FileNotFoundError) as e:
        sys.stderr.write(f"[baseline_images] {e}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
