"""Ridge-retrieval baseline and the full-rank / reduced-rank ridge export used by the bundle."""
import numpy as np
import torch

from mindsemantix import data as D
from mindsemantix import fixtures as FX
from mindsemantix.evaluate import fit_baselines, ridge_captions, train_caption_bank, references
from mindsemantix.export import RidgeExport
from mindsemantix.ridge import ridge_predict
from mindsemantix.train import contrastive


def test_ridge_retrieval_recovers_the_stimulus_attributes(tmp_path):
    c = D.load_sim(FX.write_sim(tmp_path / "sim", {"sim01": 60}, n_stim=36, n_test=12))
    # caption "embeddings": one-hot colour + shape words (a stand-in for MiniLM that makes the expected answer exact)
    words = FX.COLOURS + FX.SHAPES
    emb = torch.tensor([[[float(w in cap.split()) for w in words] for cap in caps] for caps in c.captions])
    emb = torch.nn.functional.normalize(emb, dim=-1)
    base = fit_baselines(c, emb)
    caps, bank = train_caption_bank(c, emb)
    out = ridge_captions(c, base, caps, bank)
    refs = references(c)
    hits = 0
    for k, cand in out.items():
        ref = refs[k][0].split()
        hits += all(w in cand.split() for w in ref if w in words)
    assert hits >= 0.8 * len(out)                       # right colour and shape for most held-out stimuli
    W, b = fit_baselines(c, emb, rank=3)["sim01"]
    assert isinstance(W, tuple) and W[0].shape == (60, 3) and W[1].shape == (3, len(words))
    x = c.subjects["sim01"].test_x
    got = RidgeExport(W, b)(torch.from_numpy(x)).numpy()
    ref = ridge_predict(x, W, b)
    np.testing.assert_allclose(got, ref / np.linalg.norm(ref, axis=1, keepdims=True), atol=1e-5)


def test_ridge_on_principal_components_folds_into_one_voxel_matrix(tmp_path):
    from mindsemantix.ridge import fit_ridge
    c = D.load_sim(FX.write_sim(tmp_path / "sim", {"sim01": 60}, n_stim=36, n_test=12))
    words = FX.COLOURS + FX.SHAPES
    emb = torch.tensor([[[float(w in cap.split()) for w in words] for cap in caps] for caps in c.captions])
    emb = torch.nn.functional.normalize(emb, dim=-1)
    W, b = fit_baselines(c, emb, pca=8)["sim01"]
    assert W.shape == (60, len(words)) and np.linalg.matrix_rank(W) <= 8
    d = c.subjects["sim01"]
    mu = d.train_x.mean(0)
    Vk = np.linalg.svd(d.train_x - mu, full_matrices=False)[2][:8].T
    Wk, bk, _ = fit_ridge((d.train_x - mu) @ Vk, emb.mean(1).numpy()[d.train_stim] / np.linalg.norm(emb.mean(1).numpy()[d.train_stim], axis=1, keepdims=True))
    np.testing.assert_allclose(d.test_x @ W + b, (d.test_x - mu) @ Vk @ Wk + bk, atol=1e-4)  # the same predictions
    caps, bank = train_caption_bank(c, emb)
    out = ridge_captions(c, {"sim01": (W, b)}, caps, bank)
    refs = references(c)
    hits = sum(all(w in cand.split() for w in refs[k][0].split() if w in words) for k, cand in out.items())
    assert hits >= 0.8 * len(out)                                        # 8 components still carry colour and shape


def test_contrastive_counts_every_trial_of_the_same_stimulus_as_positive():
    a = torch.nn.functional.normalize(torch.randn(4, 8), dim=-1)
    stim = torch.tensor([0, 0, 1, 2])
    same = stim[:, None] == stim[None, :]
    b = a.clone()
    b[1] = a[0]  # the two trials of stimulus 0 share the text target
    good = contrastive(a, b, same, torch.tensor(20.0), smoothing=0.0)
    wrong = contrastive(a, b[[2, 3, 0, 1]], same, torch.tensor(20.0), smoothing=0.0)
    assert good < wrong


def test_masked_brain_modeling_can_pretrain_on_more_subjects_than_the_captioning_stages(tmp_path):
    import pytest
    from pathlib import Path
    from mindsemantix.train import main
    data = FX.write_sim(tmp_path / "sim", {"sim01": 40, "sim02": 40, "sim03": 40})
    cfg = str(Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml")
    out = tmp_path / "run"
    common = ["--config", cfg, "--data", str(data), "--out", str(out), "--accelerator", "cpu", "--devices", "1",
              "--no-progress-bar", "--set", "data.subjects=[sim01,sim02]"]
    with pytest.raises(ValueError, match=r"data.ssl_subjects lacks \['sim02'\]"):
        main(common + ["--stage", "ssl", "--set", "data.ssl_subjects=[sim01,sim03]"])
    with pytest.raises(ValueError, match=r"train.ssl.target is 'other'"):
        main(common + ["--stage", "ssl", "--set", "train.ssl.target=other"])
    assert main(common + ["--stage", "ssl", "--set", "data.ssl_subjects=[sim01,sim02,sim03]", "--set", "train.ssl.target=repeats"]) == 0
    cross = [str(tmp_path / "cross") if a == str(out) else a for a in common]
    assert main(cross + ["--stage", "ssl", "--set", "train.ssl.target=cross", "--set", "train.ssl.steps=3"]) == 0
    assert main(cross + ["--stage", "ssl", "--set", "train.ssl.contrast_weight=1.0", "--set", "train.ssl.steps=3"]) == 0
    with pytest.raises(ValueError, match=r"target=cross and train.ssl.contrast_weight need training stimuli that more than one subject saw"):
        main(cross + ["--stage", "ssl", "--set", "train.ssl.target=cross", "--set", "data.subjects=[sim01]"])
    once = FX.write_sim(tmp_path / "once", {"sim01": 40, "sim02": 40}, train_repeats=1)  # the simulator's design: seen once
    with pytest.raises(ValueError, match=r"repeats needs training stimuli shown more than once .* use train.ssl.target=self"):
        main(["--config", cfg, "--data", str(once), "--out", str(tmp_path / "once-run"), "--accelerator", "cpu", "--devices", "1",
              "--no-progress-bar", "--stage", "ssl", "--set", "data.subjects=[sim01,sim02]", "--set", "train.ssl.target=repeats"])
    ssl = torch.load(out / "ssl.pt", weights_only=False)["weights"]["model"]
    assert {k.split(".")[2] for k in ssl if k.startswith("encoder.adapters.")} == {"sim01", "sim02", "sim03"}
    assert main(common + ["--stage", "stage1"]) == 0
    s1 = torch.load(out / "stage1.pt", weights_only=False)["weights"]["model"]
    assert {k.split(".")[2] for k in s1 if k.startswith("encoder.adapters.")} == {"sim01", "sim02"}
    # stage 1 started from the pretrained shared encoder: 3 small steps leave it close to it, far from a fresh init
    k = "encoder.blocks.0.mlp.0.weight"
    assert (s1[k] - ssl[k]).norm() < 0.1 * ssl[k].norm()


def test_principal_read_outs_are_fitted_without_captions_and_kept_through_training(tmp_path):
    import pytest
    from pathlib import Path
    from mindsemantix.train import main
    data = FX.write_sim(tmp_path / "sim", {"sim01": 40, "sim02": 50})
    cfg = str(Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml")
    out = tmp_path / "run"
    common = ["--config", cfg, "--data", str(data), "--out", str(out), "--accelerator", "cpu", "--devices", "1", "--no-progress-bar"]
    with pytest.raises(ValueError, match=r"train.ssl.readout is 'svd'; use learned .* or pca"):
        main(common + ["--stage", "ssl", "--set", "train.ssl.readout=svd"])
    assert main(common + ["--stage", "ssl", "--set", "train.ssl.readout=pca"]) == 0
    ssl = torch.load(out / "ssl.pt", weights_only=False)["weights"]["model"]
    c = D.load_sim(data)
    for s in ("sim01", "sim02"):
        x = c.subjects[s].train_x.astype(np.float64)
        k = min(32, len(x) - 1)                                          # tiny.yaml: hidden 32
        top = np.linalg.svd(x - x.mean(0), full_matrices=False)[2][:k]
        W = ssl[f"encoder.adapters.{s}.read.weight"].double().numpy()[:k]
        # the read-out spans the trials' top principal directions, after masked brain modeling trained the rest
        assert np.linalg.svd(W @ top.T, compute_uv=False).min() > 0.6 * 0.999
    assert main(common + ["--stage", "stage1", "--set", "train.stage1.readout_lr_mult=0"]) == 0
    s1 = torch.load(out / "stage1.pt", weights_only=False)["weights"]["model"]
    assert torch.equal(s1["encoder.adapters.sim01.read.weight"], ssl["encoder.adapters.sim01.read.weight"])
    k = "encoder.blocks.0.mlp.0.weight"
    assert not torch.equal(s1[k], ssl[k])                                # the rest of the encoder still learns


def test_consensus_reference_is_the_caption_closest_to_the_others():
    from mindsemantix.train import consensus_reference
    odd = torch.nn.functional.normalize(torch.tensor([1.0, 0.0, 0.0]), dim=0)
    a = torch.nn.functional.normalize(torch.tensor([0.0, 1.0, 0.2]), dim=0)
    b = torch.nn.functional.normalize(torch.tensor([0.0, 1.0, 0.0]), dim=0)
    c = torch.nn.functional.normalize(torch.tensor([0.0, 1.0, -0.2]), dim=0)
    emb = torch.stack([torch.stack([odd, a, b, c]), torch.stack([b, odd, a, c])])
    assert consensus_reference(emb).tolist() == [2, 0]   # b sits between a and c, far from the odd one out


def test_a_continued_run_reproduces_with_the_commands_of_the_runs_it_started_from(tmp_path):
    import json
    from mindsemantix.export_trained import reproduce_commands
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "run.json").write_text(json.dumps({"argv": ["train.py", "--out", str(tmp_path / "a"), "--stage", "all"]}))
    (tmp_path / "b" / "run.json").write_text(json.dumps({"argv": ["train.py", "--out", str(tmp_path / "b"), "--stage", "stage2",
                                                                  "--init", str(tmp_path / "a" / "stage2.pt")]}))
    cmds = reproduce_commands(tmp_path / "b")
    assert len(cmds) == 2 and "--stage all" in cmds[0] and f"--init {tmp_path / 'a' / 'stage2.pt'}" in cmds[1]
    assert all(c.startswith("python -m mindsemantix.train ") for c in cmds)


def test_linear_probe_reads_the_stimulus_out_of_encoder_features(tmp_path):
    from mindsemantix.model import BrainEncoder, ModelConfig
    from mindsemantix.probe import encoder_features, probe_captions
    import pytest
    c = D.load_sim(FX.write_sim(tmp_path / "sim", {"sim01": 60}, n_stim=36, n_test=12))
    words = FX.COLOURS + FX.SHAPES
    emb = torch.tensor([[[float(w in cap.split()) for w in words] for cap in caps] for caps in c.captions])
    emb = torch.nn.functional.normalize(emb, dim=-1)
    caps, bank = train_caption_bank(c, emb)
    torch.manual_seed(0)
    enc = BrainEncoder(ModelConfig(subjects={"sim01": c.subjects["sim01"].voxels}, hidden=32, dim=16, tokens=4, depth=1, heads=2))
    assert encoder_features(enc, "sim01", c.subjects["sim01"].test_x, "tokens").shape == (12, 64)
    refs = references(c)
    for feat in ("code", "tokens"):
        out = probe_captions(enc, c, emb, caps, bank, feat)
        hits = sum(all(w in out[k].split() for w in refs[k][0].split() if w in words) for k in out)
        assert hits >= 0.6 * len(out), feat   # a random but wide read-out keeps the linear signal
    # a 1-wide code cannot hold 7 attributes: the probe must say so
    narrow = BrainEncoder(ModelConfig(subjects={"sim01": c.subjects["sim01"].voxels}, hidden=1, dim=16, tokens=4, depth=1, heads=2))
    out = probe_captions(narrow, c, emb, caps, bank, "code")
    assert sum(all(w in out[k].split() for w in refs[k][0].split() if w in words) for k in out) < 0.6 * len(out)
    with pytest.raises(ValueError, match="not one of code, tokens"):
        encoder_features(enc, "sim01", c.subjects["sim01"].test_x, "queries")


def test_a_lightning_checkpoint_written_before_the_losses_moved_into_the_training_model_still_resumes(tmp_path):
    from pathlib import Path
    from mindsemantix.train import main
    data = FX.write_sim(tmp_path / "sim", {"sim01": 40})
    cfg = str(Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml")
    common = ["--config", cfg, "--data", str(data), "--accelerator", "cpu", "--devices", "1", "--no-progress-bar", "--stage", "stage1",
              "--no-ssl"]
    assert main(common + ["--out", str(tmp_path / "a")]) == 0
    ck = torch.load(tmp_path / "a" / "stage1" / "checkpoints" / "last.ckpt", weights_only=False)
    assert all(k.startswith("net.") for k in ck["state_dict"])
    # the earlier layout: BrainLM held model, img_side, scale_text, scale_img itself
    ck["state_dict"] = {k.removeprefix("net."): v for k, v in ck["state_dict"].items()}
    torch.save(ck, tmp_path / "old.ckpt")
    steps = ck["global_step"]                                # nothing left to train: the run ends with the checkpoint's weights
    assert main(common + ["--out", str(tmp_path / "b"), "--resume", str(tmp_path / "old.ckpt"), "--set", f"train.stage1.steps={steps}"]) == 0
    got = torch.load(tmp_path / "b" / "stage1.pt", weights_only=False)["weights"]
    assert all(torch.equal(v, ck["state_dict"][f"model.{k}"]) for k, v in got["model"].items())
    assert torch.equal(got["scale_text"], ck["state_dict"]["scale_text"])
