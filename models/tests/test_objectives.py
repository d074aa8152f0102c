"""The training-time model: one method per loss, a step's losses as one named record whose total is the weighted sum
of its parts, and a weight of 0 that switches a loss off."""
import dataclasses
from pathlib import Path

import torch
import torch.nn.functional as F

from mindsemantix.lm_assets import generation_settings, load_frozen_lm
from mindsemantix.objectives import Losses, TrainingModel
from mindsemantix.train_config import load_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
WEIGHT = {"itc_text": "itc_text", "emb": "emb", "itc_image": "itc_image", "itm": "itm", "itg": "itg", "align": "align", "lm": "lm",
          "gen_mse": "generator"}


def _net(stage, *sets):
    cfg = load_config(CONFIGS / "tiny.yaml", list(sets))
    lm, tok = load_frozen_lm("tiny-random")
    g = torch.Generator().manual_seed(0)
    S, K, L = 6, 5, 8
    tok_ids = torch.randint(5, 400, (S, K, L), generator=g)
    tok_ids[:, :, 6:] = -1                                             # padded tails
    targets = {"cap_emb": F.normalize(torch.randn(S, K, cfg.model.text_dim, generator=g), dim=-1), "cap_tok": tok_ids,
               "img_feat": torch.randn(S, cfg.model.image_feat_dim, generator=g), "img": torch.rand(S, 3, 16, 16, generator=g),
               "kw_tok": torch.randint(5, 400, (S, cfg.model.queries), generator=g)}
    torch.manual_seed(0)
    net = TrainingModel(dataclasses.replace(cfg.model, subjects={"a": 20}), cfg.train, stage, ["a"], targets, lm,
                        generation_settings(tok, lm))
    net.prepare("cpu")
    batch = {"subject_index": 0, "voxels": torch.randn(8, 20, generator=g), "stim": torch.tensor([0, 0, 1, 2, 3, 4, 5, 5])}
    return net, cfg, batch


def _weighted_sum(losses: Losses, cfg) -> torch.Tensor:
    return sum(getattr(cfg.train.weights, WEIGHT[k]) * v for k, v in losses.parts().items())


def test_stage1_returns_each_named_loss_and_their_weighted_sum():
    net, cfg, batch = _net("stage1")
    out = net(batch, step=0)
    assert list(out.parts()) == ["itc_text", "emb", "itc_image", "itm", "itg", "gen_mse"]
    assert all(v.ndim == 0 and torch.isfinite(v) for v in out.parts().values())
    torch.testing.assert_close(out.total, _weighted_sum(out, cfg))
    out.total.backward()
    assert net.model.qformer.itm_head.weight.grad is not None and net.img_side.weight.grad is not None
    off = _net("stage1", "train.weights.itm=0", "train.weights.itg=0")[0](batch, step=0)
    assert off.itm is None and off.itg is None and off.itc_text is not None


def test_stage2_has_the_lm_and_alignment_losses_every_lm_every_steps():
    net, cfg, batch = _net("stage2")
    assert cfg.train.stage2.lm_every == 2
    on, between = net(batch, step=0), net(batch, step=1)
    assert list(on.parts()) == ["itc_text", "emb", "itc_image", "align", "lm", "gen_mse"]
    assert between.lm is None and between.align is not None
    torch.testing.assert_close(on.total, _weighted_sum(on, cfg))
    on.total.backward()                                                # stage 2 keeps the encoder fixed (default.yaml)
    assert all(p.grad is None for p in net.model.encoder.parameters()) and net.model.qformer.lm_proj.weight.grad is not None


def test_masked_brain_modeling_returns_its_reconstruction_loss_alone_without_partners():
    net, _, batch = _net("ssl")
    out = net(batch, step=0)
    assert list(out.parts()) == ["mae"] and out.total is out.mae
