"""Model pieces: per-subject adapters → the same token grid, masked brain modeling, the Q-Former's BLIP-2 attention masks."""
import torch

from mindsemantix.model import BrainCaptioner, ModelConfig


def tiny(**kw):
    c = dict(patch=8, dim=32, tokens=8, depth=2, heads=2, dec_dim=16, dec_depth=1, queries=4, qformer_depth=2, text_dim=32,
             image_feat_dim=16, image_embed_dim=16, lm_dim=24, image_size=16, gen_channels=16, dropout=0.0,
             subjects={"a": 100, "b": 37})
    c.update(kw)
    return BrainCaptioner(ModelConfig(**c)).eval()


def test_subjects_with_different_voxel_counts_share_the_token_grid():
    m = tiny()
    ta = m.encoder("a", torch.randn(3, 100))
    tb = m.encoder("b", torch.randn(3, 37))
    assert ta.shape == tb.shape == (3, 8, 32)
    shared = {n for n, _ in m.encoder.named_parameters() if not n.startswith("adapters.")}
    assert any(n.startswith("blocks.") for n in shared)


def test_masked_brain_modeling_hides_three_quarters_and_learns():
    torch.manual_seed(0)
    m = tiny()
    ad = m.encoder.adapters["a"]
    assert ad.n_patches == 13  # 100 voxels / 8, last patch padded
    x = torch.randn(16, 8) @ torch.randn(8, 100)  # low-rank signal: reconstructable from a quarter of the patches
    x = (x - x.mean(0)) / x.std(0)
    opt = torch.optim.Adam(m.encoder.parameters(), 1e-2)
    m.train()
    losses = []
    for i in range(80):
        loss = m.encoder.mae_loss("a", x)
        losses.append(float(loss.detach()))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert sum(losses[-10:]) < 0.85 * sum(losses[:10])
    # the encoder saw only the kept patches: zeroing the hidden ones changes nothing
    keep = torch.zeros(2, 13)
    keep[:, :3] = 1
    m.eval()
    x2 = x[:2].clone()
    a = m.encoder("a", x2, keep)
    x2[:, 3 * 8:] = 0
    assert torch.allclose(a, m.encoder("a", x2, keep), atol=1e-6)


def test_qformer_generation_mask_is_causal_and_queries_do_not_see_text():
    torch.manual_seed(0)
    m = tiny()
    q = m.qformer
    bt = torch.randn(2, 8, 32)
    t1 = torch.randn(2, 6, 24)
    t2 = t1.clone()
    t2[:, 4:] = torch.randn(2, 2, 24)  # change the last two text tokens
    qa, ta = q.joint(bt, t1, "gen")
    qb, tb = q.joint(bt, t2, "gen")
    assert torch.allclose(qa, qb, atol=1e-6)               # queries never see text
    assert torch.allclose(ta[:, :4], tb[:, :4], atol=1e-6)  # text sees only earlier text
    assert not torch.allclose(ta[:, 4:], tb[:, 4:])
    qm, _ = q.joint(bt, t1, "match")
    qm2, _ = q.joint(bt, t2, "match")
    assert not torch.allclose(qm, qm2)                      # matching: queries and text attend both ways
    pad = torch.zeros(2, 6, dtype=torch.bool)
    pad[:, 4:] = True                                       # padded text is invisible to everyone else
    qp, tp = q.joint(bt, t1, "match", pad)
    qp2, tp2 = q.joint(bt, t2, "match", pad)
    assert torch.allclose(qp, qp2, atol=1e-6) and torch.allclose(tp[:, :4], tp2[:, :4], atol=1e-6)


def test_exported_heads_shapes():
    m = tiny()
    bt = torch.randn(5, 8, 32)
    qo = m.qformer.queries(bt)
    ce = m.qformer.caption_embedding(qo)
    assert m.qformer.lm_proj(qo).shape == (5, 4, 24) and ce.shape == (5, 32)
    assert torch.allclose(ce.norm(dim=-1), torch.ones(5), atol=1e-5)
    img = m.generator(ce, bt)
    assert img.shape == (5, 3, 16, 16) and img.min() >= 0 and img.max() <= 1


def test_cross_subject_target_decodes_the_other_subjects_patches_from_this_subjects_code():
    torch.manual_seed(0)
    m = tiny().train()
    xa, xb = torch.randn(4, 100), torch.randn(2, 37)
    out = m.encoder.masked_modeling("a", xa, partners=[("b", torch.tensor([0, 3]), xb)])
    assert set(out) == {"mae", "cross"} and torch.isfinite(out["cross"])
    out["cross"].backward()
    ad_a, ad_b = m.encoder.adapters["a"], m.encoder.adapters["b"]
    # the code comes from subject a's read-out; subject b's decoder head (not its read-out) predicts b's voxels
    assert ad_a.read.weight.grad.abs().sum() > 0 and ad_b.unmix.weight.grad.abs().sum() > 0
    assert ad_b.read.weight.grad is None
    assert "cross" not in m.encoder.masked_modeling("a", xa)


def test_normalised_patch_target_ignores_what_moves_a_whole_patch_together():
    torch.manual_seed(0)
    m = tiny(subjects={"a": 96})   # 12 whole patches of 8
    x = torch.randn(4, 96)
    def g():
        return torch.Generator().manual_seed(1)
    shift = torch.randn(4, 12).repeat_interleave(8, dim=1) * 5   # a per-patch offset (smooth, global signal)
    plain = [float(m.encoder.mae_loss("a", x, g(), target=t)) for t in (x, x + shift)]
    normed = [float(m.encoder.mae_loss("a", x, g(), target=t, norm_patches=True)) for t in (x, x + shift)]
    assert plain[1] > plain[0] + 1
    assert abs(normed[1] - normed[0]) < 1e-4


def test_cross_subject_contrast_learns_to_identify_a_stimulus_across_subjects():
    torch.manual_seed(0)
    m = tiny(subjects={"a": 96, "b": 64}, mask_ratio=0.5).train()
    S = torch.randn(48, 6)                      # 48 stimuli, 6 latent features both subjects respond to
    Ma, Mb = torch.randn(6, 96), torch.randn(6, 64)
    def trial(M):
        return S @ M + 2.0 * torch.randn(48, M.shape[1])   # each subject's own noise

    def identification():
        m.eval()
        with torch.no_grad():
            a = torch.nn.functional.normalize(m.encoder("a", trial(Ma)).mean(1), dim=-1)
            b = torch.nn.functional.normalize(m.encoder("b", trial(Mb)).mean(1), dim=-1)
        m.train()
        return float(((a @ b.t()).argmax(1) == torch.arange(48)).float().mean())

    before = identification()
    opt = torch.optim.Adam(m.encoder.parameters(), 3e-3)
    for _ in range(150):
        rows = torch.randperm(48)[:16]
        out = m.encoder.masked_modeling("a", trial(Ma)[rows], partners=[("b", torch.arange(16), trial(Mb)[rows])],
                                        decode_partners=False, contrast_partners=True)
        assert "cross" not in out
        opt.zero_grad()
        out["contrast"].backward()
        opt.step()
    after = identification()
    assert after > before + 0.2 and after > 0.3    # chance is 1/48


def test_principal_read_out_keeps_the_directions_the_trials_vary_along():
    # 120 trials of 100 voxels: 6 strong directions plus weak isotropic noise; a 16-wide read-out (rows past 6 hold noise)
    torch.manual_seed(0)
    m = tiny(hidden=16)
    ad = m.encoder.adapters["a"]
    basis = torch.linalg.qr(torch.randn(100, 6))[0]                      # [V, 6] orthonormal
    x = torch.randn(120, 6) * torch.tensor([9.0, 8, 7, 6, 5, 4]) @ basis.T + 0.05 * torch.randn(120, 100) + 3.0
    for exact_max in (10**9, 0):                                        # exact SVD, then the randomised one NSD sizes take
        share = ad.fit_principal(x, scale=0.6, exact_max=exact_max)
        assert share > 0.99
        W = ad.read.weight[:6]
        assert torch.allclose(W @ W.T, 0.36 * torch.eye(6), atol=1e-3)   # orthogonal rows of length 0.6
        assert torch.linalg.svdvals(W @ basis).min() > 0.599             # spanning exactly the strong directions
        code = ad.read(x)[:, :6]
        assert code.mean(0).abs().max() < 1e-3                           # centred on the trials' mean
    few = tiny(hidden=16).encoder.adapters["a"]
    before = few.read.weight[5:].clone()
    few.fit_principal(torch.randn(6, 100))                             # 6 trials: rank 5, the other rows keep their init
    assert torch.equal(few.read.weight[5:], before)
