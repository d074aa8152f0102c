"""The brain-language model: per-subject adapters + shared brain encoder (MAE-pretrainable), Brain Q-Former, image generator.

Shapes: voxels [B, V_s] → adapter (linear read-out → hidden) → shared to_tokens (→ T tokens) → shared transformer → brain_tokens [B, T, D]
→ Q-Former (Q learned queries: self-attention, cross-attention to brain tokens) → query outputs [B, Q, D]
→ soft_prompt = Linear(D, D_lm) [B, Q, D_lm]; caption_embedding = normalize(Linear(D, E)(mean_q)) [B, E] (MiniLM space).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, asdict, field

import torch
from torch import nn
import torch.nn.functional as F


@dataclass
class ModelConfig:
    patch: int = 16            # voxels per masked patch (MinD-Vis SC-MBM)
    hidden: int = 256          # per-subject linear read-out width (voxels → hidden → shared T×D tokens)
    input_dropout: float = 0.2  # voxel dropout before the read-out (few trials per voxel weight)
    dim: int = 256             # D, brain token width
    tokens: int = 32           # T, brain tokens per trial (same for every subject)
    depth: int = 4             # shared encoder layers
    heads: int = 4
    mlp_ratio: float = 2.0
    dec_dim: int = 128         # MAE decoder width
    dec_depth: int = 2
    mask_ratio: float = 0.75
    queries: int = 16          # Q
    qformer_depth: int = 2
    text_dim: int = 384        # E, MiniLM sentence embedding
    image_feat_dim: int = 1280  # EfficientNet-Lite0 pooled features
    image_embed_dim: int = 256  # shared brain–image contrastive space
    lm_dim: int = 576          # D_lm
    max_text_len: int = 32
    image_size: int = 64       # generator output H = W
    gen_channels: int = 64
    dropout: float = 0.1
    # subject id → voxel count: set from the data, not a config setting (train_config skips fields marked config False)
    subjects: dict = field(default_factory=dict, metadata={"config": False})

    def to_dict(self):
        return asdict(self)


class Attention(nn.Module):
    """Multi-head attention written out (exports to plain ONNX MatMul/Softmax). mask: bool, True = blocked."""

    def __init__(self, dim, heads, dropout=0.0):
        super().__init__()
        self.h = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.o = nn.Linear(dim, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x, ctx, mask=None):
        B, N, Dm = x.shape
        M = ctx.shape[1]
        d = Dm // self.h
        q = self.q(x).view(B, N, self.h, d).transpose(1, 2)
        k, v = self.kv(ctx).view(B, M, 2, self.h, d).permute(2, 0, 3, 1, 4)
        a = torch.matmul(q, k.transpose(-1, -2)) * (d ** -0.5)
        if mask is not None:
            a = a.masked_fill(mask, -1e9)
        a = self.drop(torch.softmax(a, dim=-1))
        return self.o(torch.matmul(a, v).transpose(1, 2).reshape(B, N, Dm))


class Block(nn.Module):
    """Pre-LN transformer block; optional cross-attention (for Q-Former queries)."""

    def __init__(self, dim, heads, mlp_ratio, dropout=0.0, cross=False):
        super().__init__()
        self.n1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, dropout)
        self.cross = cross
        if cross:
            self.nc = nn.LayerNorm(dim)
            self.cattn = Attention(dim, heads, dropout)
        self.n2 = nn.LayerNorm(dim)
        hid = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hid), nn.GELU(), nn.Dropout(dropout), nn.Linear(hid, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, x, attn_mask=None, ctx=None):
        h = self.n1(x)
        x = x + self.drop(self.attn(h, h, attn_mask))
        if self.cross and ctx is not None:
            h = self.nc(x)
            x = x + self.drop(self.cattn(h, ctx))
        return x + self.drop(self.mlp(self.n2(x)))


class SubjectAdapter(nn.Module):
    """Per-subject input layer: a full-rank linear read-out of every voxel (ridge-like, so no voxel's weight is tied to
    another's) into a `hidden`-wide code; the shared `to_tokens` layer of the encoder turns that code into T tokens.
    Masked brain modeling hides voxel patches (contiguous runs of `patch` voxels in ROI order) at the input."""

    def __init__(self, voxels: int, cfg: ModelConfig):
        super().__init__()
        self.voxels = voxels
        self.patch = cfg.patch
        self.n_patches = math.ceil(voxels / cfg.patch)
        self.drop = nn.Dropout(cfg.input_dropout)
        self.read = nn.Linear(voxels, cfg.hidden)
        # MAE decoder head for this subject: tokens → patches
        self.unmix = nn.Linear(cfg.tokens, self.n_patches)
        self.dec_pos = nn.Parameter(torch.randn(self.n_patches, cfg.dec_dim) * 0.02)

    def patches(self, x):
        pad = self.n_patches * self.patch - self.voxels
        if pad:
            x = F.pad(x, (0, pad))
        return x.view(x.shape[0], self.n_patches, self.patch)

    @torch.no_grad()
    def fit_principal(self, x: torch.Tensor, scale: float = 0.6, exact_max: int = 50_000_000) -> float:
        """Closed-form linear autoencoder on unlabelled trials x [n, V]: the read-out becomes the top `hidden` principal
        directions of the centred trials (each row `scale` long, about a fresh layer's size), so the code keeps the
        directions the trials vary along most and drops the rest. Rows past rank(x) keep their initial weights.
        Returns the share of the trials' variance the kept directions carry."""
        x = x.float()
        mu = x.mean(0)
        xc = x - mu
        k = min(self.read.out_features, x.shape[0] - 1, x.shape[1])
        if x.shape[0] * x.shape[1] <= exact_max:
            _, S, Vt = torch.linalg.svd(xc, full_matrices=False)
            V = Vt[:k].T
        else:  # NSD-sized (tens of thousands of trials × ~15k voxels): randomised SVD
            _, S, V = torch.svd_lowrank(xc, q=min(k + 16, min(x.shape) - 1), niter=6)
            V = V[:, :k]
        W = V.T * scale
        self.read.weight[:k] = W
        self.read.bias[:k] = -(mu @ W.T)
        return float((xc @ V).pow(2).sum() / xc.pow(2).sum())

    def forward(self, x, keep=None):
        """x [B, V]; keep [B, N] float (1 = visible patch) for masked brain modeling → code [B, hidden]."""
        if keep is not None:
            vis = keep.repeat_interleave(self.patch, dim=1)[:, :self.voxels]
            x = x * vis / vis.mean(dim=1, keepdim=True).clamp_min(1e-6)
        return self.read(self.drop(x))


class BrainEncoder(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.adapters = nn.ModuleDict({s: SubjectAdapter(v, cfg) for s, v in cfg.subjects.items()})
        self.to_tokens = nn.Sequential(nn.LayerNorm(cfg.hidden), nn.Linear(cfg.hidden, cfg.tokens * cfg.dim))
        self.in_norm = nn.LayerNorm(cfg.dim)
        self.pos = nn.Parameter(torch.randn(cfg.tokens, cfg.dim) * 0.02)
        self.blocks = nn.ModuleList([Block(cfg.dim, cfg.heads, cfg.mlp_ratio, cfg.dropout) for _ in range(cfg.depth)])
        self.norm = nn.LayerNorm(cfg.dim)
        # MAE decoder (pretraining only, not exported)
        self.dec_in = nn.Linear(cfg.dim, cfg.dec_dim)
        self.dec_blocks = nn.ModuleList([Block(cfg.dec_dim, 4, cfg.mlp_ratio, 0.0) for _ in range(cfg.dec_depth)])
        self.dec_norm = nn.LayerNorm(cfg.dec_dim)
        self.dec_out = nn.Linear(cfg.dec_dim, cfg.patch)

    def forward(self, subject: str, voxels, keep=None):
        code = self.adapters[subject](voxels, keep)
        x = self.in_norm(self.to_tokens(code).view(-1, self.cfg.tokens, self.cfg.dim)) + self.pos
        for b in self.blocks:
            x = b(x)
        return self.norm(x)

    def mae_loss(self, subject: str, voxels, generator: torch.Generator | None = None, target=None, norm_patches: bool = False):
        """Masked brain modeling: hide mask_ratio of the voxel patches, reconstruct them; MSE on hidden patches only.
        target [B, V] (default: the input itself) may instead be another measurement of the same stimulus, e.g. the mean
        of the trial's other repeats: then only what the repeats share (the stimulus-driven signal) is predictable.
        norm_patches: each target patch is centred and scaled by its own mean and sd (MAE's normalised-pixel loss), so the
        smooth components that move a whole patch together (global signal, slow shared noise) are not worth learning."""
        return self.masked_modeling(subject, voxels, generator, target, norm_patches)["mae"]

    def masked_modeling(self, subject: str, voxels, generator: torch.Generator | None = None, target=None,
                        norm_patches: bool = False, partners=None, decode_partners: bool = True,
                        contrast_partners: bool = False, temperature: float = 0.1) -> dict:
        """{'mae': masked reconstruction (see mae_loss)} and, given partners — a list of (other subject, rows of this
        batch, that subject's trials [n, V_other] of the same stimuli):
        'cross' (decode_partners): how well the same masked code predicts every patch of the other subject's response to
        the stimulus. Trial noise is not shared between subjects, so only the stimulus-driven signal is predictable there.
        'contrast' (contrast_partners): InfoNCE between this trial's mean brain token and the partner trial's (encoded
        through its own subject's adapter, its own random mask); the other pairs in the batch are the negatives. Like
        hyperalignment it asks each subject's read-out for what identifies the stimulus across people, weighted by how
        reliably it does so rather than by its variance. Neither needs a caption or an image."""
        keep = self._random_keep(voxels.shape[0], self.adapters[subject].n_patches, generator, voxels.device)
        z = self.forward(subject, voxels, keep)
        err = self._patch_errors(subject, z, voxels if target is None else target, norm_patches)
        hidden = 1 - keep
        out = {"mae": (err * hidden).sum() / hidden.sum()}
        if partners and decode_partners:
            errs = [self._patch_errors(other, z[rows], px, norm_patches) for other, rows, px in partners]
            out["cross"] = torch.cat([e.mean(1) for e in errs]).mean()
        if partners and contrast_partners:
            rows = torch.cat([r for _, r, _ in partners])
            if len(rows) > 1:
                zp = torch.cat([self.forward(o, px, self._random_keep(len(px), self.adapters[o].n_patches, generator, px.device))
                                for o, _, px in partners])
                a, b = F.normalize(z[rows].mean(1), dim=-1), F.normalize(zp.mean(1), dim=-1)
                logits = a @ b.t() / temperature
                lab = torch.arange(len(rows), device=z.device)
                out["contrast"] = 0.5 * (F.cross_entropy(logits, lab) + F.cross_entropy(logits.t(), lab))
        return out

    def _random_keep(self, B: int, N: int, generator, device):
        """[B, N] 1 for the (1 - mask_ratio) share of patches left visible, drawn independently per row."""
        ids = torch.rand(B, N, generator=generator, device=device).argsort(dim=1)
        keep = torch.zeros(B, N, device=device)
        keep.scatter_(1, ids[:, :max(1, int(round(N * (1 - self.cfg.mask_ratio))))], 1.0)
        return keep

    def _patch_errors(self, subject: str, z, target, norm_patches: bool):
        """Decode brain tokens z [B, T, D] into `subject`'s voxel patches → per-patch MSE against target [B, V] → [B, N]."""
        ad = self.adapters[subject]
        N = ad.n_patches
        h = self.dec_in(z)                                   # [B, T, dec]
        h = ad.unmix(h.transpose(1, 2)).transpose(1, 2) + ad.dec_pos  # [B, N, dec]
        for b in self.dec_blocks:
            h = b(h)
        pred = self.dec_out(self.dec_norm(h))                # [B, N, patch]
        target = ad.patches(target)
        if norm_patches:
            target = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6).sqrt()
        # padded tail voxels are not data
        valid = torch.ones(N * ad.patch, device=z.device)
        valid[ad.voxels:] = 0
        valid = valid.view(N, ad.patch)
        return ((pred - target) ** 2 * valid).sum(-1) / valid.sum(-1).clamp_min(1)


class QFormer(nn.Module):
    """Learned queries with self-attention and cross-attention to brain tokens; a text stream shares the self-attention
    (for brain–text matching and brain-grounded generation, BLIP-2 style masks)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.query = nn.Parameter(torch.randn(cfg.queries, cfg.dim) * 0.02)
        self.blocks = nn.ModuleList([Block(cfg.dim, cfg.heads, cfg.mlp_ratio, cfg.dropout, cross=True)
                                     for _ in range(cfg.qformer_depth)])
        self.norm = nn.LayerNorm(cfg.dim)
        self.text_in = nn.Linear(cfg.lm_dim, cfg.dim)   # text tokens enter through the frozen LM's embedding table
        self.text_pos = nn.Parameter(torch.randn(cfg.max_text_len, cfg.dim) * 0.02)
        self.text_proj = nn.Linear(cfg.dim, cfg.text_dim)
        self.image_proj = nn.Linear(cfg.dim, cfg.image_embed_dim)
        self.itm_head = nn.Linear(cfg.dim, 2)
        self.gen_out = nn.Sequential(nn.LayerNorm(cfg.dim), nn.Linear(cfg.dim, cfg.lm_dim))
        self.lm_proj = nn.Linear(cfg.dim, cfg.lm_dim)   # stage 2: query outputs → soft prompt

    def queries(self, brain_tokens):
        """Query outputs [B, Q, D] (queries only)."""
        x = self.query.expand(brain_tokens.shape[0], -1, -1)
        for b in self.blocks:
            x = b(x, ctx=brain_tokens)
        return self.norm(x)

    def caption_embedding(self, q):
        return F.normalize(self.text_proj(q.mean(1)), dim=-1)

    def image_embedding(self, q):
        return F.normalize(self.image_proj(q.mean(1)), dim=-1)

    def joint(self, brain_tokens, text_emb, mode: str, text_pad=None):
        """Queries + text through the shared self-attention. text_emb [B, L, D_lm] (frozen LM embeddings);
        text_pad bool [B, L] (True = padding, never attended). mode 'match': all see all;
        'gen': queries see queries only, text sees queries and earlier text."""
        B, L = text_emb.shape[0], text_emb.shape[1]
        Q = self.cfg.queries
        n = Q + L
        t = self.text_in(text_emb) + self.text_pos[:L]
        x = torch.cat([self.query.expand(B, -1, -1), t], 1)
        m = torch.zeros(n, n, dtype=torch.bool, device=x.device)  # True = blocked
        if mode == "gen":
            m[:Q, Q:] = True
            m[Q:, Q:] = torch.triu(torch.ones(L, L, dtype=torch.bool, device=x.device), 1)
        mask = m[None, None].expand(B, 1, n, n)
        if text_pad is not None:
            keypad = torch.cat([torch.zeros(B, Q, dtype=torch.bool, device=x.device), text_pad], 1)
            mask = mask | keypad[:, None, None, :]
            eye = torch.eye(n, dtype=torch.bool, device=x.device)[None, None]
            mask = mask & ~eye  # a padded row may attend to itself (avoids an all-blocked softmax row)
        for b in self.blocks:
            # cross-attention only for the query part: run it on the whole sequence, then restore text rows
            h = b.n1(x)
            x = x + b.drop(b.attn(h, h, mask))
            hq = b.nc(x[:, :Q])
            xq = x[:, :Q] + b.drop(b.cattn(hq, brain_tokens))
            x = torch.cat([xq, x[:, Q:]], 1)
            x = x + b.drop(b.mlp(b.n2(x)))
        x = self.norm(x)
        return x[:, :Q], x[:, Q:]


class Generator(nn.Module):
    """Small conditional image generator: caption embedding (MiniLM space) + pooled brain tokens → RGB image in 0..1."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        c = cfg.gen_channels
        self.start = 4
        n_up = int(math.log2(cfg.image_size // self.start))
        self.fc = nn.Sequential(nn.Linear(cfg.text_dim + cfg.dim, 512), nn.GELU(), nn.Linear(512, c * 2 * self.start * self.start))
        layers = []
        ch = c * 2
        for i in range(n_up):
            out = max(c // (2 ** max(0, i - 1)), 16)
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(ch, out, 3, padding=1), nn.GroupNorm(4, out), nn.GELU()]
            ch = out
        layers += [nn.Conv2d(ch, 3, 3, padding=1), nn.Sigmoid()]
        self.net = nn.Sequential(*layers)
        self.c2 = c * 2

    def forward(self, caption_embedding, brain_tokens):
        h = self.fc(torch.cat([caption_embedding, brain_tokens.mean(1)], -1))
        return self.net(h.view(-1, self.c2, self.start, self.start))


class BrainCaptioner(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = BrainEncoder(cfg)
        self.qformer = QFormer(cfg)
        self.generator = Generator(cfg)


# ---- export wrappers: exactly the bundle IO -------------------------------------------------------------------------

class EncoderExport(nn.Module):
    def __init__(self, model: BrainCaptioner, subject: str):
        super().__init__()
        self.enc = model.encoder
        self.subject = subject

    def forward(self, voxels):
        return self.enc(self.subject, voxels)


class QFormerExport(nn.Module):
    def __init__(self, model: BrainCaptioner):
        super().__init__()
        self.q = model.qformer

    def forward(self, brain_tokens):
        q = self.q.queries(brain_tokens)
        return self.q.lm_proj(q), self.q.caption_embedding(q)


class GeneratorExport(nn.Module):
    def __init__(self, model: BrainCaptioner):
        super().__init__()
        self.g = model.generator

    def forward(self, caption_embedding, brain_tokens):
        return self.g(caption_embedding, brain_tokens)
