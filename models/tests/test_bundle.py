"""The committed default bundle: every listed file present with its sha256, masks match the voxel counts, the networks run."""
import json
from pathlib import Path

import numpy as np
import pytest

from mindsemantix import schemas
from mindsemantix.onnx_util import ort_session
from mindsemantix.util import sha256_file

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "default"


@pytest.fixture(scope="module")
def manifest():
    return json.loads((BUNDLE / "manifest.json").read_text())


def test_default_bundle_files_and_checksums(manifest):
    import nibabel as nib
    assert manifest["format"] == "mindsemantix-bundle" and manifest["version"] == 1 and "random" not in manifest
    assert schemas.check("bundle-manifest", manifest) is None  # src/core/schemas/bundle-manifest.schema.json
    for rel, sha in manifest["files"].items():
        assert sha256_file(BUNDLE / rel) == sha, f"{rel} changed since export"
    for sub, e in manifest["subjects"].items():
        assert int((np.asarray(nib.load(BUNDLE / e["mask"]).dataobj) > 0).sum()) == e["voxels"]
    caps = json.loads((BUNDLE / "baseline_captions.json").read_text())
    emb = np.load(BUNDLE / "baseline_embeddings.npy")
    assert emb.shape == (len(caps), manifest["dims"]["E"]) and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-4)
    assert "--seed 0" in manifest["command"] and manifest["seed"] == 0


def test_default_bundle_networks_run(manifest):
    d = manifest["dims"]
    rng = np.random.default_rng(0)
    for sub, e in manifest["subjects"].items():
        v = rng.normal(size=(2, e["voxels"])).astype(np.float32)
        bt = ort_session(BUNDLE / e["encoder"]).run(None, {"voxels": v})[0]
        assert bt.shape == (2, d["T"], d["D"]) and np.isfinite(bt).all()
        ce = ort_session(BUNDLE / e["baseline"]).run(None, {"voxels": v})[0]
        assert ce.shape == (2, d["E"])
    sp, ce = ort_session(BUNDLE / "qformer.onnx").run(None, {"brain_tokens": bt})
    assert sp.shape == (2, d["Q"], d["D_lm"]) and np.allclose(np.linalg.norm(ce, axis=1), 1, atol=1e-5)
    img = ort_session(BUNDLE / "generator.onnx").run(None, {"caption_embedding": ce, "brain_tokens": bt})[0]
    assert img.shape == (2, *d["image"]) and img.min() >= 0 and img.max() <= 1


def test_default_bundle_flow_generator_runs_from_its_fixed_noise(manifest):
    fg = manifest["flow_generator"]
    assert fg["inputs"] == ["caption_embedding", "noise"] and fg["noise"] in manifest["files"] and fg["onnx"] in manifest["files"]
    noise = np.load(BUNDLE / fg["noise"])
    assert noise.shape == (1, 3, fg["image_size"], fg["image_size"]) and noise.dtype == np.float32
    rng = np.random.default_rng(0)
    ce = rng.normal(size=(2, manifest["dims"]["E"])).astype(np.float32)
    ce /= np.linalg.norm(ce, axis=1, keepdims=True)
    img = ort_session(BUNDLE / fg["onnx"]).run(None, {"caption_embedding": ce, "noise": np.repeat(noise, 2, 0)})[0]
    assert img.shape == (2, *manifest["dims"]["image"]) and img.min() >= 0 and img.max() <= 1
    assert np.abs(img[0] - img[1]).max() > 0.05, "the caption embedding conditions the image"
