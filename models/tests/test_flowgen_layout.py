"""The layout flow (flowgen.FlowGenConfig.layout): the regression generator's image as a second input — its warm start,
its export with the bundle's generator in front (parity with PyTorch), its training data and loop."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mindsemantix.flowgen import FlowGenConfig, FlowUNet, add_layout_input, fixed_noise, sample

TINY = FlowGenConfig(channels=(16, 16, 32), cond_dim=32, steps=3, guidance=2.0, image_size=64, patch=4, predict="x")
LAYOUT = FlowGenConfig(**{**TINY.to_dict(), "channels": TINY.channels, "layout": True})


def _trained_like(cfg, seed=0):
    torch.manual_seed(seed)
    net = FlowUNet(cfg)
    with torch.no_grad():   # zero-initialised layers would hide what the test looks at: give them weights
        for p in net.parameters():
            if p.abs().sum() == 0 and p.ndim > 1:
                p.normal_(0, 0.05)
    return net.eval()


def test_add_layout_input_starts_where_the_flow_was_then_the_layout_conditions():
    plain = _trained_like(TINY)
    lay = FlowUNet(LAYOUT).eval()
    lay.load_state_dict(add_layout_input(plain.state_dict(), LAYOUT))
    e = torch.nn.functional.normalize(torch.randn(2, 384), dim=-1)
    noise, layout = fixed_noise(2, 64, 1), torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        want = sample(plain, e, noise, 3, 2.0)
        np.testing.assert_allclose(sample(lay, e, noise, 3, 2.0, layout=layout).numpy(), want.numpy(), atol=1e-6)
        lay.inp.weight[:, 48:].normal_(0, 0.05)   # once trained, the layout moves the image
        assert float((sample(lay, e, noise, 3, 2.0, layout=layout) - want).abs().max()) > 1e-3
        # a layout at another size is area-resized to the flow's
        big = layout.repeat_interleave(2, -1).repeat_interleave(2, -2)
        np.testing.assert_allclose(sample(lay, e, noise, 3, 2.0, layout=big).numpy(), sample(lay, e, noise, 3, 2.0, layout=layout).numpy(), atol=1e-5)


def _regression_onnx(path: Path, emb_dim=384, dim=16):
    from mindsemantix.model import Generator, ModelConfig
    from mindsemantix.onnx_util import export_onnx
    torch.manual_seed(5)
    reg = Generator(ModelConfig(text_dim=emb_dim, dim=dim, image_size=64, gen_channels=8)).eval()
    export_onnx(reg, (torch.randn(2, emb_dim), torch.randn(2, 4, dim)), path, ["caption_embedding", "brain_tokens"], ["image"],
                {"caption_embedding": {0: "batch"}, "brain_tokens": {0: "batch"}, "image": {0: "batch"}})
    return reg


def test_layout_flow_exports_with_the_bundles_generator_in_front(tmp_path: Path):
    pytest.importorskip("onnxruntime")
    from mindsemantix.export_flowgen import install_in_bundle
    from mindsemantix.onnx_util import ort_session
    from mindsemantix.util import sha256_file
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    reg = _regression_onnx(bundle / "generator.onnx")
    (bundle / "manifest.json").write_text(json.dumps({"files": {"generator.onnx": "x"}, "generator": {"onnx": "generator.onnx"}}))
    net = _trained_like(LAYOUT)
    weights = tmp_path / "flowgen.pt"
    ck = {"ema": net.state_dict(), "config": LAYOUT.to_dict(), "step": 3, "seconds": 1.0, "seed": 0, "command": "python -m x"}
    torch.save(ck, weights)
    r = install_in_bundle(net, ck, weights, bundle, noise_seed=2)
    assert r["parity_max_abs"] < 1e-3
    m = json.loads((bundle / "manifest.json").read_text())
    assert m["flow_generator"]["inputs"] == ["caption_embedding", "brain_tokens", "noise"]
    assert m["files"]["flow_generator.onnx"] == sha256_file(bundle / "flow_generator.onnx")
    s = ort_session(bundle / "flow_generator.onnx")
    assert [i.name for i in s.get_inputs()] == ["caption_embedding", "brain_tokens", "noise"]
    # the graph's layout is the regression generator's image: PyTorch with that layout gives the same pixels
    e = torch.nn.functional.normalize(torch.randn(3, 384), dim=-1)
    bt = torch.randn(3, 4, 16)
    noise = torch.from_numpy(np.load(bundle / "flow_generator_noise.npy")).expand(3, -1, -1, -1).contiguous()
    got = s.run(None, {"caption_embedding": e.numpy(), "brain_tokens": bt.numpy(), "noise": noise.numpy()})[0]
    with torch.no_grad():
        want = sample(net, e, noise, LAYOUT.steps, LAYOUT.guidance, layout=reg(e, bt)).numpy()
    assert np.abs(got - want).max() < 1e-3
    other = s.run(None, {"caption_embedding": e.numpy(), "brain_tokens": (bt + 1).numpy(), "noise": noise.numpy()})[0]
    assert np.abs(other - got).max() > 1e-3   # the brain tokens reach the image


def test_layout_flow_needs_the_bundles_regression_generator(tmp_path: Path):
    from mindsemantix.export_flowgen import install_in_bundle
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "manifest.json").write_text(json.dumps({"files": {}}))
    net = _trained_like(LAYOUT)
    ck = {"ema": net.state_dict(), "config": LAYOUT.to_dict(), "step": 1, "seconds": 1.0, "seed": 0, "command": "x"}
    with pytest.raises(SystemExit, match="no regression generator"):
        install_in_bundle(net, ck, tmp_path / "w.pt", bundle)
    assert json.loads((bundle / "manifest.json").read_text()) == {"files": {}}


def _fake_layout_data(n=10, size=64, e=384):
    g = torch.Generator().manual_seed(0)
    return {"images": torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g),
            "layout": torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g),
            "emb": torch.nn.functional.normalize(torch.randn(n, e, generator=g), dim=-1).half(),
            "refs": torch.nn.functional.normalize(torch.randn(n, 5, e, generator=g), dim=-1).half(), "scenes": torch.arange(n)}


def test_train_a_layout_flow_from_plain_weights_then_resume(tmp_path: Path, monkeypatch):
    # The loop and its checkpoints; the brain trials are synthetic here (build_layout_data is tested on a real tiny
    # bundle below, whose caption space is too small for a flow of MiniLM's).
    from mindsemantix import train_flowgen
    seen = []
    monkeypatch.setattr(train_flowgen, "build_layout_data", lambda specs, *a: seen.append(specs) or _fake_layout_data())
    plain = tmp_path / "plain"
    base = ["--scenes", "6", "--batch", "4", "--channels", "16,16,32", "--ckpt-every", "2", "--image-size", "64", "--predict", "x"]
    train_flowgen.main(["--out", str(plain), "--steps", "2"] + base)
    lay = tmp_path / "layout"
    args = ["--out", str(lay), "--init-from", str(plain / "flowgen.pt"), "--layout-data", "d1:sim01,d2:sim02"] + base
    train_flowgen.main(args + ["--steps", "2"])
    first = torch.load(lay / "flowgen.pt", weights_only=False)
    assert seen[0] == ["d1:sim01", "d2:sim02"]
    assert first["config"]["layout"] is True and first["ema"]["inp.weight"].shape[1] == 96
    train_flowgen.main(args + ["--steps", "4", "--resume"])
    second = torch.load(lay / "flowgen.pt", weights_only=False)
    assert second["step"] == 4 and not torch.equal(first["ema"]["inp.weight"], second["ema"]["inp.weight"])


def test_layout_condition_drops_and_perturbs_as_configured():
    from types import SimpleNamespace
    from mindsemantix.train_flowgen import layout_condition
    d = _fake_layout_data(n=400)
    lay = d["layout"].float() / 127.5 - 1
    g = torch.Generator().manual_seed(1)
    a = SimpleNamespace(noise_max=0.04, p_uncond=0.1, layout_noise=0.3, p_layout_drop=0.25)
    e, out = layout_condition(d["emb"].float(), d["refs"].float(), lay, g, a)
    dropped = (out.flatten(1).abs().sum(1) == 0).float().mean()
    assert 0.15 < float(dropped) < 0.35
    assert 0.03 < float((e.abs().sum(1) == 0).float().mean()) < 0.2
    kept = out.flatten(1).abs().sum(1) > 0
    assert float((out[kept] - lay[kept]).abs().max()) > 0   # noisy, never the trial's layout as it was
    assert float((out[kept] - lay[kept]).std()) < 0.3


def test_build_layout_data_decodes_only_training_trials_with_the_bundle(tmp_path: Path):
    pytest.importorskip("onnxruntime")
    import h5py
    from mindsemantix.caption import BundleRunner
    from mindsemantix.export import export_tiny
    from mindsemantix.sim import world
    from mindsemantix.train_flowgen import build_layout_data
    bundle = tmp_path / "bundle"
    export_tiny(bundle, seed=3)
    runner = BundleRunner(bundle)
    subject, V = next(iter((s, e["voxels"]) for s, e in runner.m["subjects"].items()))
    sids = [world.scene_id(i) for i in (1, 300, 301, 2, 302)]      # scenes 1 and 2 are test scenes
    x = np.random.default_rng(0).normal(size=(len(sids), V)).astype(np.float32)
    fp = tmp_path / "data" / "derivatives" / "mindsemantix" / f"sub-{subject}" / f"sub-{subject}_responses.h5"
    fp.parent.mkdir(parents=True)
    with h5py.File(fp, "w") as h:
        h["responses"] = x
        h["stimulus_ids"] = np.array(sids, dtype="S")
        h["split"] = np.array([world.split_of(world.scene_index(s)) for s in sids], dtype="S")
    spec = f"{tmp_path / 'data'}:{subject}"
    d = build_layout_data([spec], bundle, 16, tmp_path / "run", None)
    assert d["scenes"].tolist() == [300, 301, 302]
    train = x[[1, 2, 4]]
    bt = runner.brain_tokens(subject, train)
    ce = runner.qform(bt)[1]
    img = runner.session(runner.m["generator"]["onnx"]).run(None, {"caption_embedding": ce, "brain_tokens": bt})[0]
    assert np.abs(d["layout"].float().numpy() / 255 - img).max() <= 0.5 / 255 + 1e-6   # the tiny bundle's image is 16²
    assert np.allclose(d["emb"].float().numpy(), ce, atol=2e-3)
    assert d["refs"].shape == (3, 5, 384) and d["images"].shape == (3, 3, 16, 16)
    again = build_layout_data([spec], bundle, 16, tmp_path / "run", None)   # cached
    assert torch.equal(again["layout"], d["layout"])
