"""Caption-conditioned flow-matching image generator (issue 20): a small U-Net flow on 32×32 or 64×64 RGB (the bundle's 64×64), conditioned
on the MiniLM caption embedding, sampled with a fixed number of Euler steps and classifier-free guidance.

Rectified flow: x_t = (1 - t)·noise + t·image (image scaled to -1..1), the velocity is v = image - noise (predicted
directly, or derived from a predicted clean image: FlowGenConfig.predict); sampling
integrates dx/dt = v from t = 0 (the given noise) to t = 1. The sampler is a plain loop over `steps` Euler steps, so the
ONNX export (`SamplerExport`) is the whole sampler unrolled in one graph: caption_embedding + noise → image in 0..1.

Without a layout (FlowGenConfig.layout False) the brain reaches the image only through the decoded caption embedding,
and the flow trains on every training-split scene of the simulator's world (images and reference captions need no brain
data). With a layout the flow also reads the bundle's regression generator's image (caption embedding + brain tokens →
a blurred 64² picture of where the colours are) as three more input channels: the caption says what, the brain's low-
level picture says where. Those pairs need brain trials (train_flowgen --layout-data); the exported graph computes the
layout itself (export_flowgen), so it takes caption_embedding, brain_tokens and noise."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn
import torch.nn.functional as F


@dataclass
class FlowGenConfig:
    emb_dim: int = 384
    image_size: int = 32                 # the flow runs on 32² or 64² pixels ...
    out_size: int = 64                   # ... and a 32² sampler's last op upsamples bilinearly to the bundle's 64²
    channels: tuple = (64, 128, 192)     # U-Net widths at S/p, S/2p, S/4p
    patch: int = 2                       # the image enters pixel-unshuffled by p (32² / 2 or 64² / 4: the U-Net runs at 16²
                                         # either way, so a 64² flow costs about what a 32² one does on these cores)
    predict: str = "v"                   # what the network outputs: "v" (velocity) or "x" (the clean image; the velocity
                                         # is then (x̂ - x_t) / (1 - t)). At patch 4 a 48-value patch meets a 48-channel
                                         # first layer, too narrow to carry the noise a v-prediction must cancel; an
                                         # x-prediction never has to (Li & He 2025, "let denoising models denoise")
    cond_dim: int = 256
    steps: int = 6                       # Euler steps of the sampler
    guidance: float = 2.0                # classifier-free guidance scale (1 = none)
    layout: bool = False                 # the regression generator's image is a second input (module docstring)
    guide_layout: bool = False           # the guidance's unconditional branch drops the layout too (else only the caption)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["channels"] = list(self.channels)
        return d

    @staticmethod
    def from_dict(d: dict) -> "FlowGenConfig":
        d = dict(d)
        d["channels"] = tuple(d.get("channels", (64, 128, 192)))
        return FlowGenConfig(**d)


def _gn(c: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, c // 8), c)


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, cond: int):
        super().__init__()
        self.n1, self.c1 = _gn(cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.film = nn.Linear(cond, 2 * cout)
        self.n2, self.c2 = _gn(cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()
        nn.init.zeros_(self.c2.weight)
        nn.init.zeros_(self.c2.bias)

    def forward(self, x, c):
        h = self.c1(F.silu(self.n1(x)))
        scale, shift = self.film(c)[:, :, None, None].chunk(2, 1)
        h = self.n2(h) * (1 + scale) + shift
        return self.skip(x) + self.c2(F.silu(h))


def time_features(t: torch.Tensor, dim: int = 64) -> torch.Tensor:
    """t [B] in 0..1 → sinusoidal features [B, dim]."""
    half = dim // 2
    freqs = torch.exp(-math.log(1000.0) * torch.arange(half, dtype=t.dtype, device=t.device) / half)
    a = (t[:, None] * 1000.0) * freqs[None]
    return torch.cat([a.sin(), a.cos()], -1)


class FlowUNet(nn.Module):
    """Velocity field v(x_t, t, caption_embedding). x [B,3,S,S] in -1..1 scale; t [B]; e [B,E] (zeros = unconditional)."""

    def __init__(self, cfg: FlowGenConfig):
        super().__init__()
        self.cfg = cfg
        c0, c1, c2 = cfg.channels
        cd = cfg.cond_dim
        self.t_mlp = nn.Sequential(nn.Linear(64, cd), nn.SiLU(), nn.Linear(cd, cd))
        self.e_mlp = nn.Sequential(nn.Linear(cfg.emb_dim, cd), nn.SiLU(), nn.Linear(cd, cd))
        pp = 3 * cfg.patch * cfg.patch
        self.inp = nn.Conv2d(2 * pp if cfg.layout else pp, c0, 3, padding=1)
        self.d0 = ResBlock(c0, c0, cd)
        self.down0 = nn.Conv2d(c0, c1, 3, stride=2, padding=1)
        self.d1 = ResBlock(c1, c1, cd)
        self.down1 = nn.Conv2d(c1, c2, 3, stride=2, padding=1)
        self.m1 = ResBlock(c2, c2, cd)
        self.m2 = ResBlock(c2, c2, cd)
        self.up1 = nn.ConvTranspose2d(c2, c1, 2, stride=2)
        self.u1 = ResBlock(2 * c1, c1, cd)
        self.up0 = nn.ConvTranspose2d(c1, c0, 2, stride=2)
        self.u0 = ResBlock(2 * c0, c0, cd)
        self.out_norm = _gn(c0)
        self.out = nn.Conv2d(c0, pp, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x, t, e, layout=None):
        """layout: [B,3,S,S] in -1..1, zeros = none (a layout flow only)."""
        c = F.silu(self.t_mlp(time_features(t)) + self.e_mlp(e))
        p = self.cfg.patch
        u = F.pixel_unshuffle(x, p)
        if self.cfg.layout:   # the image's channels first, then the layout's: add_layout_input widens inp in that order
            u = torch.cat([u, F.pixel_unshuffle(torch.zeros_like(x) if layout is None else layout, p)], 1)
        h0 = self.d0(self.inp(u), c)                                  # S/p
        h1 = self.d1(self.down0(h0), c)                               # S/2p
        h = self.m2(self.m1(self.down1(h1), c), c)                    # S/4p
        h = self.u1(torch.cat([self.up1(h), h1], 1), c)
        h = self.u0(torch.cat([self.up0(h), h0], 1), c)
        return F.pixel_shuffle(self.out(F.silu(self.out_norm(h))), p)


def widen_patch(state: dict, src: FlowGenConfig, dst: FlowGenConfig) -> dict:
    """Weights of a flow at src (e.g. 32², patch 2) → the same U-Net at dst (64², patch 4; same widths): the input layer
    reads each 4×4 block as the 2×2 block of its box-downsampled pixels, and the output layer writes each coarse pixel's
    velocity to the 2×2 fine pixels it covers. A warm start for training at the finer size, not an exact equivalent (the
    box filter halves the noise's std)."""
    if src.channels != dst.channels or dst.patch * src.image_size != src.patch * dst.image_size:
        raise ValueError("widen_patch: the two flows must share widths and the U-Net's working size")
    k = dst.patch // src.patch
    fine = torch.arange(3 * dst.patch * dst.patch)
    ch, a, b = fine // (dst.patch ** 2), (fine // dst.patch) % dst.patch, fine % dst.patch
    coarse = ch * src.patch ** 2 + (a // k) * src.patch + (b // k)     # pixel_unshuffle's channel order: c·p² + i·p + j
    out = {n: v.float().clone() for n, v in state.items()}
    out["inp.weight"] = state["inp.weight"].float()[:, coarse] / (k * k)
    out["out.weight"] = state["out.weight"].float()[coarse]
    out["out.bias"] = state["out.bias"].float()[coarse]
    return out


T_CLAMP = 0.05   # 1 - t is clamped here when an x-prediction is turned into a velocity (the loss's and the sampler's)


def add_layout_input(state: dict, cfg: FlowGenConfig) -> dict:
    """Weights of a flow without a layout → the same flow reading a layout (cfg.layout): the layout's input channels
    start at zero, so the widened flow begins exactly where the old one was and learns what the layout adds."""
    out = {n: v.float().clone() for n, v in state.items()}
    w = out["inp.weight"]
    out["inp.weight"] = torch.cat([w, torch.zeros_like(w)], 1)
    return out


def velocity(net: FlowUNet, x: torch.Tensor, t: torch.Tensor, e: torch.Tensor, layout: torch.Tensor | None = None) -> torch.Tensor:
    """The velocity at (x, t) whatever the network predicts (FlowGenConfig.predict); t is [B] or [1]."""
    out = net(x, t, e, layout)
    if net.cfg.predict == "x":
        return (out - x) / (1 - t).clamp(min=T_CLAMP).view(-1, 1, 1, 1)
    return out


def sample(net: FlowUNet, caption_embedding: torch.Tensor, noise: torch.Tensor, steps: int, guidance: float,
           init: torch.Tensor | None = None, t0: float = 0.0, layout: torch.Tensor | None = None) -> torch.Tensor:
    """Euler integration from noise [B,3,S,S] (t = 0) to an image (t = 1) with classifier-free guidance, then bilinear
    upsampling to out_size; returns [B,3,out,out] in 0..1.

    With `init` (an image [B,3,*,*] in 0..1, e.g. the brain's low-level reconstruction) and t0 > 0 the path starts part
    way, at x = (1 - t0)·noise + t0·init, as img2img does (SDEdit): the layout comes from `init`, the rest from the caption.

    `layout` (a layout flow: the regression generator's image [B,3,*,*] in 0..1) is read at every step; the guidance's
    unconditional branch keeps it unless cfg.guide_layout."""
    B = noise.shape[0]
    x = noise
    start = 0.0
    if init is not None and t0 > 0:
        S = noise.shape[-1]
        im = F.interpolate(init, size=(S, S), mode="area") if init.shape[-1] != S else init
        x = (1 - t0) * noise + t0 * (im * 2 - 1)
        start = t0
    cond = torch.cat([caption_embedding, torch.zeros_like(caption_embedding)], 0) if guidance != 1.0 else caption_embedding
    lay = None
    if net.cfg.layout and layout is not None:
        S = noise.shape[-1]
        lay = (F.interpolate(layout, size=(S, S), mode="area") if layout.shape[-1] != S else layout) * 2 - 1
        if guidance != 1.0:
            lay = torch.cat([lay, torch.zeros_like(lay) if net.cfg.guide_layout else lay], 0)
    dt = (1.0 - start) / steps
    for k in range(steps):
        t = torch.full((1,), start + k * dt, dtype=noise.dtype)   # broadcast over the batch (keeps the ONNX graph batch-free)
        if guidance != 1.0:
            v = velocity(net, torch.cat([x, x], 0), t, cond, lay)
            vc, vu = v[:B], v[B:]
            v = vu + guidance * (vc - vu)
        else:
            v = velocity(net, x, t, cond, lay)
        x = x + dt * v
    x = ((x + 1) * 0.5).clamp(0, 1)
    if net.cfg.out_size != x.shape[-1]:
        x = F.interpolate(x, size=(net.cfg.out_size, net.cfg.out_size), mode="bilinear", align_corners=False).clamp(0, 1)
    return x


def fixed_noise(batch: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    """The sampler's starting noise for `batch` images: the same seed gives the same tensor (CPU torch generator)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, size, size, generator=g)


class SamplerExport(nn.Module):
    """ONNX graph: caption_embedding [B,E], noise [B,3,S,S] → image [B,3,out,out] in 0..1 (all Euler steps unrolled)."""

    def __init__(self, net: FlowUNet, steps: int, guidance: float):
        super().__init__()
        self.net, self.steps, self.guidance = net, steps, guidance

    def forward(self, caption_embedding, noise):
        return sample(self.net, caption_embedding, noise, self.steps, self.guidance)


class LayoutSamplerExport(SamplerExport):
    """A layout flow's sampler: caption_embedding [B,E], layout [B,3,L,L] in 0..1, noise [B,3,S,S] → image. The bundle's
    graph feeds `layout` from the regression generator inside the same graph (export_flowgen.with_regression_layout)."""

    def forward(self, caption_embedding, layout, noise):
        return sample(self.net, caption_embedding, noise, self.steps, self.guidance, layout=layout)


def param_count(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())
