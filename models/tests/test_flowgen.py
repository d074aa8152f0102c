"""Flow-matching generator: sampler shapes and range, ONNX export parity (fixed noise seed), training + resume."""
from pathlib import Path

import numpy as np
import pytest
import torch

from mindsemantix.flowgen import FlowGenConfig, FlowUNet, fixed_noise, sample

TINY = FlowGenConfig(channels=(16, 16, 32), cond_dim=32, steps=3, guidance=2.0)


def _trained_like(cfg=TINY, seed=0):
    torch.manual_seed(seed)
    net = FlowUNet(cfg)
    # the zero-initialised output layers would make every sample the noise itself: give them weights
    with torch.no_grad():
        for p in net.parameters():
            if p.abs().sum() == 0 and p.ndim > 1:
                p.normal_(0, 0.05)
    return net.eval()


def test_sample_shape_range_and_determinism():
    net = _trained_like()
    e = torch.nn.functional.normalize(torch.randn(2, 384), dim=-1)
    n = fixed_noise(2, 32, seed=5)
    assert torch.equal(n, fixed_noise(2, 32, seed=5))
    with torch.no_grad():
        a = sample(net, e, n, TINY.steps, TINY.guidance)
        b = sample(net, e, n, TINY.steps, TINY.guidance)
    assert a.shape == (2, 3, 64, 64)
    assert float(a.min()) >= 0 and float(a.max()) <= 1
    assert torch.equal(a, b)
    # the caption conditions the image
    with torch.no_grad():
        c = sample(net, -e, n, TINY.steps, TINY.guidance)
    assert float((a - c).abs().max()) > 1e-3


def test_onnx_export_matches_pytorch_for_a_fixed_noise_seed(tmp_path: Path):
    pytest.importorskip("onnxruntime")
    from mindsemantix.export_flowgen import export
    r = export(_trained_like(), tmp_path, noise_seed=3)
    assert r["parity_max_abs"] < 1e-3
    noise = np.load(tmp_path / "flowgen_noise.npy")
    assert noise.shape == (1, 3, 32, 32) and noise.dtype == np.float32
    assert np.array_equal(noise, fixed_noise(1, 32, 3).numpy())


def test_train_then_resume(tmp_path: Path):
    from mindsemantix import train_flowgen
    out = tmp_path / "run"
    args = ["--out", str(out), "--scenes", "6", "--batch", "4", "--channels", "16,16,32", "--ckpt-every", "2"]
    train_flowgen.main(args + ["--steps", "3"])
    first = torch.load(out / "flowgen.pt", weights_only=False)
    assert first["step"] == 3
    train_flowgen.main(args + ["--steps", "5", "--resume"])
    second = torch.load(out / "flowgen.pt", weights_only=False)
    assert second["step"] == 5
    assert any(not torch.equal(first["ema"][k], second["ema"][k]) for k in first["ema"])


def test_install_in_bundle_lists_the_files_with_checksums(tmp_path: Path):
    pytest.importorskip("onnxruntime")
    import json
    from mindsemantix.export_flowgen import install_in_bundle
    from mindsemantix.util import sha256_file
    net = _trained_like()
    weights = tmp_path / "flowgen.pt"
    ck = {"ema": net.state_dict(), "config": TINY.to_dict(), "step": 7, "seconds": 1.0, "seed": 0, "command": "python -m x"}
    torch.save(ck, weights)
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "manifest.json").write_text(json.dumps({"files": {"qformer.onnx": "abc"}}))
    install_in_bundle(net, ck, weights, bundle, noise_seed=4)
    m = json.loads((bundle / "manifest.json").read_text())
    fg = m["flow_generator"]
    assert fg["inputs"] == ["caption_embedding", "noise"] and fg["noise_seed"] == 4 and fg["steps"] == TINY.steps
    assert fg["parity_max_abs"] < 1e-3
    for f in ("flow_generator.onnx", "flow_generator_noise.npy"):
        assert m["files"][f] == sha256_file(bundle / f)
    assert m["files"]["qformer.onnx"] == "abc" and not (bundle / ".flowgen-export").exists()


def test_img2img_starts_part_way_from_the_init_image():
    # A fresh network's output layer is zero, so its velocity is zero and the sample is exactly the starting point:
    # (1 - t0)·noise + t0·init on the -1..1 scale.
    torch.manual_seed(0)
    net = FlowUNet(FlowGenConfig(image_size=16, out_size=16, channels=(16, 32, 32), cond_dim=32)).eval()
    e = torch.randn(2, 384)
    noise = fixed_noise(2, 16, seed=3)
    init = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        np.testing.assert_allclose(sample(net, e, noise, 3, 2.0, init, 1.0).numpy(), init.numpy(), atol=1e-6)
        half = sample(net, e, noise, 3, 2.0, init, 0.5).numpy()
        want = ((0.5 * noise + 0.5 * (2 * init - 1) + 1) / 2).clamp(0, 1).numpy()
        np.testing.assert_allclose(half, want, atol=1e-6)
        # an init at another size is area-resized to the flow's size first
        big = init.repeat_interleave(2, -1).repeat_interleave(2, -2)
        np.testing.assert_allclose(sample(net, e, noise, 3, 2.0, big, 1.0).numpy(), init.numpy(), atol=1e-6)
        # without an init (or t0 = 0) the path starts from the noise
        np.testing.assert_allclose(sample(net, e, noise, 3, 2.0, init, 0.0).numpy(), sample(net, e, noise, 3, 2.0).numpy())


def test_widen_patch_gives_the_32px_flow_on_a_box_constant_64px_image():
    # On a 64² image whose 2×2 blocks are constant (a nearest-upsampled 32² image), the widened flow's velocity is the
    # 32² flow's velocity, nearest-upsampled: the warm start of a 64² run (train_flowgen --init-from) begins where the
    # 32² weights are.
    from mindsemantix.flowgen import widen_patch
    import torch.nn.functional as F
    src = _trained_like()
    dst_cfg = FlowGenConfig(**{**TINY.to_dict(), "channels": TINY.channels, "image_size": 64, "patch": 4})
    dst = FlowUNet(dst_cfg).eval()
    dst.load_state_dict(widen_patch(src.state_dict(), TINY, dst_cfg))
    x = torch.randn(2, 3, 32, 32)
    t, e = torch.tensor([0.2, 0.8]), torch.nn.functional.normalize(torch.randn(2, 384), dim=-1)
    with torch.no_grad():
        want = F.interpolate(src(x, t, e), scale_factor=2, mode="nearest")
        got = dst(F.interpolate(x, scale_factor=2, mode="nearest"), t, e)
    np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-5)
    with torch.no_grad():
        assert sample(dst, e, fixed_noise(2, 64, 0), 2, 2.0).shape == (2, 3, 64, 64)   # no upsampling at 64²
    with pytest.raises(ValueError):
        widen_patch(src.state_dict(), TINY, FlowGenConfig(image_size=64, patch=2, channels=TINY.channels))


def test_train_at_64px_from_32px_weights_then_resume(tmp_path: Path):
    from mindsemantix import train_flowgen
    small = tmp_path / "small"
    base = ["--scenes", "6", "--batch", "2", "--channels", "16,16,32", "--ckpt-every", "2"]
    train_flowgen.main(["--out", str(small), "--steps", "2"] + base)
    big = tmp_path / "big"
    args = ["--out", str(big), "--image-size", "64", "--init-from", str(small / "flowgen.pt")] + base
    train_flowgen.main(args + ["--steps", "2"])
    first = torch.load(big / "flowgen.pt", weights_only=False)
    assert first["config"]["image_size"] == 64 and first["config"]["patch"] == 4 and first["ema"]["inp.weight"].shape[1] == 48
    train_flowgen.main(args + ["--steps", "4", "--resume"])
    assert torch.load(big / "flowgen.pt", weights_only=False)["step"] == 4


def test_x_prediction_ends_on_the_networks_clean_image():
    # With predict "x" the velocity is (x̂ - x_t) / (1 - t), so the last Euler step (1 - t = dt) lands exactly on x̂:
    # no residual noise survives the sampler, whatever the noise was.
    cfg = FlowGenConfig(channels=(16, 16, 32), cond_dim=32, image_size=64, patch=4, predict="x", steps=3)
    net = FlowUNet(cfg).eval()
    clean = torch.rand(1, 3, 64, 64) * 2 - 1
    net.forward = lambda x, t, e, layout=None: clean.expand(x.shape[0], -1, -1, -1)
    e = torch.randn(2, 384)
    for seed in (0, 1):
        with torch.no_grad():
            out = sample(net, e, fixed_noise(2, 64, seed), cfg.steps, 2.0)
        np.testing.assert_allclose(out.numpy(), ((clean + 1) / 2).clamp(0, 1).expand(2, -1, -1, -1).numpy(), atol=1e-5)
    # a velocity network's output is used as it is
    vnet = FlowUNet(FlowGenConfig(channels=(16, 16, 32), cond_dim=32)).eval()
    from mindsemantix.flowgen import velocity
    x, t = torch.randn(2, 3, 32, 32), torch.tensor([0.5])
    with torch.no_grad():
        np.testing.assert_allclose(velocity(vnet, x, t, e).numpy(), vnet(x, t, e).numpy())
