"""Training from an exported bundle (`python -m mindsemantix.train --init-bundle DIR`): the rebuilt PyTorch model
reproduces the bundle's ONNX graphs (brain tokens, soft prompt, caption embedding, image) from shared.safetensors or from
the graphs alone; a run starts from exactly those weights and records which bundle it started from; a subject the bundle
lacks, or a voxel count that differs from the bundle's, stops the run with one clear error."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from mindsemantix import fixtures as FX
from mindsemantix.export import TINY_SUBJECTS, export_networks, export_tiny
from mindsemantix.frozen_shared import bundle_state, load_bundle_model, shared_tensors
from mindsemantix.onnx_util import ort_session

torch.set_num_threads(1)

NETWORKS = ["manifest.json", "qformer.onnx", "generator.onnx"] + [f"encoder-{s}.onnx" for s in TINY_SUBJECTS]


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    """fresh: the tiny bundle as exported (norms at their default ones/zeros, merged by the exporter);
    perturbed: every parameter moved off its initial value, networks and shared.safetensors re-exported (a loader that
    misses a norm or a folded weight cannot pass by accident); graphs: perturbed without shared.safetensors (bundles
    exported before it existed, like b‴, the default bundle before session 10)."""
    from safetensors.numpy import save_file
    root = tmp_path_factory.mktemp("bundles")
    objs = export_tiny(root / "fresh", seed=5)
    model = objs["model"]
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g))
    pert = root / "perturbed"
    pert.mkdir()
    shutil.copyfile(root / "fresh" / "manifest.json", pert / "manifest.json")
    export_networks(model, pert)
    save_file(shared_tensors(model), str(pert / "shared.safetensors"))
    graphs = root / "graphs"
    graphs.mkdir()
    for f in NETWORKS:
        shutil.copyfile(pert / f, graphs / f)
    m = json.loads((graphs / "manifest.json").read_text())
    del m["shared"]
    (graphs / "manifest.json").write_text(json.dumps(m))
    return {"fresh": root / "fresh", "perturbed": pert, "graphs": graphs, "model": model}


@pytest.mark.parametrize("which", ["fresh", "perturbed", "graphs"])
def test_rebuilt_model_reproduces_the_bundle_graphs(bundles, which):
    b = bundles[which]
    m = json.loads((b / "manifest.json").read_text())
    model = load_bundle_model(b)
    assert set(model.encoder.adapters) == set(TINY_SUBJECTS)
    qs, gs = ort_session(b / "qformer.onnx"), ort_session(b / "generator.onnx")
    rng = np.random.default_rng(2)
    for s, e in m["subjects"].items():
        x = rng.normal(size=(3, e["voxels"])).astype(np.float32)
        bt = ort_session(b / e["encoder"]).run(None, {"voxels": x})[0]
        sp, ce = qs.run(None, {"brain_tokens": bt})
        img = gs.run(None, {"caption_embedding": ce, "brain_tokens": bt})[0]
        with torch.no_grad():
            t = model.encoder(s, torch.from_numpy(x))
            q = model.qformer.queries(t)
            np.testing.assert_allclose(t.numpy(), bt, atol=1e-5)
            np.testing.assert_allclose(model.qformer.lm_proj(q).numpy(), sp, atol=1e-5)
            np.testing.assert_allclose(model.qformer.caption_embedding(q).numpy(), ce, atol=1e-5)
            np.testing.assert_allclose(model.generator(torch.from_numpy(ce), torch.from_numpy(bt)).numpy(), img, atol=1e-5)
    if which != "fresh":  # the serving weights themselves, not only the outputs
        ref = bundles["model"].state_dict()
        got = model.state_dict()
        for k in [k for k in ref if k.startswith(("encoder.to_tokens", "encoder.pos", "encoder.adapters.sim02.read", "qformer.query",
                                                  "qformer.lm_proj", "generator.net.2", "generator.net.14"))]:
            torch.testing.assert_close(got[k], ref[k], atol=1e-6, rtol=0)
        # modules outside the bundle keep their fresh initialisation (not the perturbed values)
        assert not torch.allclose(got["qformer.itm_head.weight"], ref["qformer.itm_head.weight"])


def test_a_missing_serving_weight_is_one_clear_error(bundles, tmp_path):
    import onnx
    b = tmp_path / "cut"
    shutil.copytree(bundles["graphs"], b)
    g = onnx.load(str(b / "generator.onnx"))
    keep = [i for i in g.graph.initializer if i.name != "g.fc.2.bias"]
    del g.graph.initializer[:]
    g.graph.initializer.extend(keep)
    onnx.save(g, str(b / "generator.onnx"))
    with pytest.raises(ValueError, match=r"lacks 1 serving weight\(s\) .*first: generator.fc.2.bias"):
        load_bundle_model(b)


def _train_args(subjects, bundle, data, out, *extra):
    cfg = str(Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml")
    return ["--config", cfg, "--data", str(data), "--out", str(out), "--accelerator", "cpu", "--devices", "1", "--no-progress-bar",
            "--stage", "stage2", "--init-bundle", str(bundle), "--set", f"data.subjects=[{','.join(subjects)}]", *extra]


def test_training_starts_from_the_bundle_weights(bundles, tmp_path, monkeypatch):
    import sys
    from mindsemantix.export_trained import reproduce_commands
    from mindsemantix.train import main
    data = FX.write_sim(tmp_path / "sim", dict(TINY_SUBJECTS), n_stim=16, n_test=4)
    out = tmp_path / "run"
    # learning rate 0: the one step's weights are the starting weights
    args = _train_args(TINY_SUBJECTS, bundles["perturbed"], data, out, "--set", "train.stage2.steps=1",
                       "--set", "train.stage2.lr=0", "--set", "train.stage2.batch_size=4")
    monkeypatch.setattr(sys, "argv", ["train.py", *args])  # run.json records the command line
    assert main(args) == 0
    blob = torch.load(out / "stage2.pt", weights_only=False)
    state, _ = bundle_state(bundles["perturbed"])
    w = blob["weights"]["model"]
    assert len(state) > 40
    for k, v in state.items():
        torch.testing.assert_close(w[k], v, atol=0, rtol=0)
    assert blob["model_config"]["image_size"] == 16 and blob["model_config"]["subjects"] == TINY_SUBJECTS
    ident = blob["init_bundle"]
    assert ident["name"] == "tiny-random" and len(ident["manifest_sha256"]) == 64
    run = json.loads((out / "run.json").read_text())
    assert run["init_bundle"]["manifest_sha256"] == ident["manifest_sha256"]
    cmds = reproduce_commands(out)
    assert cmds[0] == "python -m mindsemantix.export --tiny-random " + str(bundles["fresh"]) + " --seed 5"
    assert f"--init-bundle {bundles['perturbed']}" in cmds[-1]


def test_subjects_and_voxels_must_match_the_bundle(bundles, tmp_path):
    from mindsemantix.train import main
    data = FX.write_sim(tmp_path / "sim", {"sim01": 100, "sim03": 60}, n_stim=12, n_test=3)
    with pytest.raises(ValueError, match=r"has no encoder for subject\(s\) sim03 \(it has sim01, sim02\)"):
        main(_train_args(["sim01", "sim03"], bundles["graphs"], data, tmp_path / "a"))
    data = FX.write_sim(tmp_path / "sim2", {"sim01": 90}, n_stim=12, n_test=3)
    with pytest.raises(ValueError, match=r"subject sim01 has 90 voxels in the data but 100 in the bundle"):
        main(_train_args(["sim01"], bundles["graphs"], data, tmp_path / "b"))
    with pytest.raises(SystemExit):  # --init and --init-bundle exclude each other
        main(_train_args(["sim01"], bundles["graphs"], data, tmp_path / "c", "--init", str(tmp_path / "x.pt")))
