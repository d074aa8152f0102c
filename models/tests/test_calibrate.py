"""Calibration's Python side: the frozen shared modules rebuilt from a bundle equal onnxruntime (from shared.safetensors
and, for bundles exported before it existed, from the ONNX graphs alone); voxel selection finds the voxels that carry
the stimulus; the held-out slice never splits a stimulus; the read-out fit learns a decodable mapping."""
import json
import shutil

import numpy as np
import pytest
import torch

from mindsemantix.calibrate_fit import CalibrationData, FitConfig, fit_readout, heldout_split, retrieval_scores
from mindsemantix.calibrate_mask import predictability, repeat_reliability, select_voxels
from mindsemantix.export import export_tiny
from mindsemantix.frozen_shared import load_frozen, onnx_named_weights
from mindsemantix.onnx_util import ort_session

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("bundle")
    export_tiny(out, seed=3)
    return out


def _max_diff_to_onnx(bundle, subject):
    m = json.loads((bundle / "manifest.json").read_text())
    V = m["subjects"][subject]["voxels"]
    model, source = load_frozen(bundle, subject, V)
    w = onnx_named_weights(bundle / m["subjects"][subject]["encoder"])
    read = model.encoder.adapters[subject].read
    read.weight.data = torch.tensor(np.array(w[f"enc.adapters.{subject}.read.weight"]))
    read.bias.data = torch.tensor(np.array(w[f"enc.adapters.{subject}.read.bias"]))
    x = np.random.default_rng(1).normal(size=(4, V)).astype(np.float32)
    bt = ort_session(bundle / m["subjects"][subject]["encoder"]).run(None, {"voxels": x})[0]
    sp, ce = ort_session(bundle / "qformer.onnx").run(None, {"brain_tokens": bt})
    with torch.no_grad():
        t = model.encoder(subject, torch.from_numpy(x))
        q = model.qformer.queries(t)
        diffs = [np.abs(t.numpy() - bt).max(), np.abs(model.qformer.lm_proj(q).numpy() - sp).max(),
                 np.abs(model.qformer.caption_embedding(q).numpy() - ce).max()]
    return max(diffs), source


def test_frozen_modules_from_shared_weights_equal_onnxruntime(tiny):
    d, source = _max_diff_to_onnx(tiny, "sim02")
    assert source == "shared.safetensors"
    assert d < 1e-4


def test_frozen_modules_from_onnx_graphs_alone_equal_onnxruntime(tiny, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(tiny, old)
    m = json.loads((old / "manifest.json").read_text())
    (old / m.pop("shared")["weights"]).unlink()  # a bundle exported before shared.safetensors existed
    (old / "manifest.json").write_text(json.dumps(m))
    d, source = _max_diff_to_onnx(old, "sim01")
    assert source == "onnx-graphs"
    assert d < 1e-4


def _signal_data(seed=0, stimuli=40, repeats=3, voxels=200, signal=30, noise=1.0):
    """Stimulus-driven patterns in the first `signal` voxels only, trial noise everywhere."""
    rng = np.random.default_rng(seed)
    pattern = np.zeros((stimuli, voxels))
    pattern[:, :signal] = rng.normal(size=(stimuli, signal))
    stim = np.repeat(np.arange(stimuli), repeats)
    x = pattern[stim] + noise * rng.normal(size=(len(stim), voxels))
    return x.astype(np.float32), stim, pattern


def test_select_voxels_by_repeats_finds_the_signal_voxels():
    x, stim, _ = _signal_data()
    cols, how = select_voxels(x, stim, np.zeros((40, 8)), 30)
    assert "repeat" in how["criterion"]
    assert (cols < 30).mean() > 0.9
    assert list(cols) == sorted(cols)


def test_select_voxels_without_repeats_uses_caption_predictability():
    rng = np.random.default_rng(2)
    S, E, V = 300, 16, 150
    target = rng.normal(size=(S, E))
    W = np.zeros((E, V))
    W[:, :25] = rng.normal(size=(E, 25))
    stim = np.arange(S)
    x = (target @ W + rng.normal(size=(S, V))).astype(np.float32)
    assert repeat_reliability(x, stim) is None
    cols, how = select_voxels(x, stim, target, 25)
    assert "predictability" in how["criterion"]
    assert (cols < 25).mean() > 0.9
    assert predictability(x, stim, target)[:25].mean() > 0.5


def test_heldout_split_keeps_stimuli_whole():
    stim = np.repeat(np.arange(30), 3)
    fit, held = heldout_split(stim, 0.1, 5, seed=0)
    assert len(set(stim[fit]) & set(stim[held])) == 0
    assert len(set(stim[held])) == 5 and len(fit) + len(held) == len(stim)


def _teacher_data(tiny) -> CalibrationData:
    """Caption embeddings the frozen tiny network can reach: targets made by a hidden 'true' read-out, responses a
    noisy linear image of it."""
    rng = np.random.default_rng(0)
    S, V = 80, 60
    x_stim = rng.normal(size=(S, V)).astype(np.float32)
    teacher, _ = load_frozen(tiny, "new", V)
    torch.manual_seed(5)
    teacher.encoder.adapters["new"].read.reset_parameters()
    with torch.no_grad():
        ce = teacher.qformer.caption_embedding(teacher.qformer.queries(teacher.encoder("new", torch.from_numpy(x_stim)))).numpy()
    cap = np.repeat(ce[:, None, :], 5, axis=1)
    stim = np.repeat(np.arange(S), 2)
    x = x_stim[stim] + 0.3 * rng.normal(size=(len(stim), V)).astype(np.float32)
    return CalibrationData(x=x.astype(np.float32), stim=stim, stimulus_ids=[str(i) for i in range(S)], cap_emb=cap)


def test_readout_fit_beats_its_start_on_held_out_stimuli(tiny):
    """The fitted read-out must retrieve held-out stimuli far above chance."""
    m = json.loads((tiny / "manifest.json").read_text())
    model, _ = load_frozen(tiny, "new", 60)
    data = _teacher_data(tiny)
    cap = data.cap_emb
    report = fit_readout(model, "new", data, FitConfig(epochs=40, patience=40, heldout_frac=0.2, seed=0))
    h = report["heldout"]
    assert m["dims"]["E"] == cap.shape[-1]
    assert h["model"]["top1"] >= 2 * h["model"]["chance_top1"] and h["model"]["top5"] > 0.5, h
    assert h["model"]["cosine"] > h["model_at_init"]["cosine"], h
    score = retrieval_scores(np.eye(3), np.array([0, 1, 2]), np.eye(3))
    assert score["top1"] == 1.0 and score["chance_top1"] == pytest.approx(1 / 3)


def test_readout_fit_with_select_last_runs_every_epoch(tiny):
    """select="last" (docs/experiments.md E28): no early stopping, whatever the held-out slice says. With targets
    shuffled across stimuli the held-out score cannot keep improving, so the default criterion stops early."""
    data = _teacher_data(tiny)
    data.cap_emb = data.cap_emb[np.random.default_rng(1).permutation(len(data.cap_emb))]
    epochs = {}
    for select in ("top1", "last"):
        model, _ = load_frozen(tiny, "new", 60)
        epochs[select] = fit_readout(model, "new", data, FitConfig(epochs=12, patience=1, heldout_frac=0.2, seed=0,
                                                                   select=select))["epochs"]
    assert epochs["last"] == 12 and epochs["top1"] < 12, epochs


def test_copy_input_links_every_bootstrap_generated_root_file(tmp_path):
    """A calibrated bundle carries lm/lm-manifest.json, so every root file it lists (effnet_lite0.onnx, the text
    encoder) must be there too, or the Node loader refuses the new bundle."""
    from mindsemantix.calibrate_bundle import copy_input
    src, dst = tmp_path / "src", tmp_path / "dst"
    (src / "lm").mkdir(parents=True)
    (src / "committed.json").write_text("{}")
    (src / "lm" / "decoder.onnx").write_bytes(b"lm")
    for f in ("text_encoder.onnx", "effnet_lite0.onnx"):
        (src / f).write_bytes(f.encode())
    (src / "lm" / "lm-manifest.json").write_text(json.dumps({"files": {"decoder.onnx": "0" * 64},
                                                             "root_files": {"text_encoder.onnx": "1" * 64, "effnet_lite0.onnx": "2" * 64}}))
    dst.mkdir()
    manifest = {"files": {"committed.json": "3" * 64}, "text_encoder": {"onnx": "text_encoder.onnx"}}
    how = copy_input(src, dst, manifest, set())
    assert (dst / "effnet_lite0.onnx").read_bytes() == b"effnet_lite0.onnx"
    assert (dst / "text_encoder.onnx").exists() and (dst / "lm" / "lm-manifest.json").exists()
    assert how == {"copy": 1, "hard link": 4}


def test_latent_table_averages_each_person_first():
    """A stimulus's shared code is the mean over people of each person's mean code of it: a person who saw it twice
    does not outweigh one who saw it once."""
    from mindsemantix.shared_latents import latent_table
    a = (np.array([[1.0, 0.0], [3.0, 0.0], [0.0, 5.0]], np.float32), ["s1", "s1", "s2"])
    b = (np.array([[0.0, 4.0]], np.float32), ["s1"])
    ids, lat, people = latent_table({"p1": a, "p2": b})
    assert ids == ["s1", "s2"] and list(people) == [2, 1]
    np.testing.assert_allclose(lat[0], [1.0, 2.0])  # (mean(1, 3) = 2, 0) and (0, 4) → (1, 2)
    np.testing.assert_allclose(lat[1], [0.0, 5.0])


def test_latent_file_round_trips_and_is_recorded_in_the_manifest(tiny, tmp_path):
    from mindsemantix.shared_latents import FILE, install, load
    from mindsemantix.util import sha256_file
    b = tmp_path / "b"
    shutil.copytree(tiny, b)
    lat = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
    install(b, ["x", "y", "z"], lat, np.array([1, 2, 1], np.int16), {"command": "test"})
    table = load(b / FILE)
    np.testing.assert_allclose(table["y"], lat[1], atol=2e-3)  # stored as float16
    m = json.loads((b / "manifest.json").read_text())
    assert m["files"][FILE] == sha256_file(b / FILE) and m["shared_latents"]["stimuli"] == 3


def test_aligned_fit_maps_a_new_person_into_the_shared_code(tiny):
    """Where the bundle has the shared code of calibration stimuli (here the hidden 'true' read-out's code of them,
    for 60 % of the stimuli), the fitted read-out lands in that code on held-out stimuli, far nearer than a fit on
    the caption objectives alone, and still retrieves above chance."""
    data = _teacher_data(tiny)
    teacher, _ = load_frozen(tiny, "new", 60)
    torch.manual_seed(5)
    teacher.encoder.adapters["new"].read.reset_parameters()
    rng = np.random.default_rng(0)
    x_stim = rng.normal(size=(80, 60)).astype(np.float32)  # _teacher_data's stimuli (same seed, first draw)
    with torch.no_grad():
        code = teacher.encoder.adapters["new"].read(torch.from_numpy(x_stim)).numpy()
    has = rng.random(80) < 0.6
    reports = {}
    for align in (True, False):
        d = CalibrationData(x=data.x, stim=data.stim, stimulus_ids=data.stimulus_ids, cap_emb=data.cap_emb,
                            latent=code * has[:, None], has_latent=has)
        model, _ = load_frozen(tiny, "new", 60)
        cfg = FitConfig(epochs=20, patience=20, heldout_frac=0.2, seed=0, align_weight=1.0 if align else 0.0,
                        align_min_trials=20)
        reports[align] = fit_readout(model, "new", d, cfg)
        if not align:
            from mindsemantix.calibrate_fit import ReadoutFitter
            f = ReadoutFitter(model, "new", d, cfg)
            reports[align]["alignment"]["code_cosine"] = f.code_cosine(np.arange(len(d.stim)))
    a, n = reports[True], reports[False]
    assert n["alignment"]["used"] is False
    assert a["alignment"]["trials"] > 0 and a["alignment"]["heldout_code_cosine"] > 0.6, a["alignment"]
    assert a["alignment"]["heldout_code_cosine"] > n["alignment"]["code_cosine"] + 0.3, (a["alignment"], n["alignment"])
    h = a["heldout"]["model"]
    assert h["top1"] >= 2 * h["chance_top1"], h
