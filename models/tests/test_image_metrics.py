"""Image reconstruction metrics (models/mindsemantix/image_metrics.py): known values on constructed inputs."""
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
