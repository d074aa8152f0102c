"""Trains the caption-conditioned flow-matching generator (flowgen.py) on the simulator world's training-split scenes.

  nice -n 10 python -m mindsemantix.train_flowgen --out models/runs/flowgen --seed 0 --scenes 4000 --minutes 28
  ... --resume                      # continues from <out>/ckpt.pt (written every --ckpt-every steps and at the end)
  ... --image-size 64 --predict x --init-from W.pt   # a 64² flow predicting the clean image, from other weights

Data (cached in <out>/data-<scenes>-<size>.pt): --scenes scenes of the training split (never a test scene: 0..299; those
whose captions --caption-cache already embeds first, then 300, 301, ...), each rendered by sim.world and box-downsampled to --image-size², with the MiniLM embeddings of its 5 reference captions. Conditioning
per example: the normalised mean of the 5 embeddings (what the Q-Former's caption_embedding regresses onto) or, half
the time, one reference's embedding, plus Gaussian noise so that the imperfect decoded embeddings at test time are in
distribution; 10 % of examples get a zero embedding (classifier-free guidance). Output: <out>/flowgen.pt (EMA weights,
config, step count, command).

A layout flow (--layout-data DATA:SUBJECT,... --layout-bundle BUNDLE; flowgen.py) also trains on brain trials: every
training-split trial of the given response files is decoded by the bundle (encoder → Q-Former caption embedding +
brain tokens → regression generator image, the `layout`), cached in <out>/layout-<hash>.pt. A batch then takes
--layout-frac of its examples from those trials, conditioned on the trial's decoded caption embedding or (half the
time) its scene's references, and on its layout plus Gaussian pixel noise (the bundle was fitted on these trials, so
their layouts are better than a new trial's; the noise keeps the flow from trusting them blindly); --p-layout-drop of
them and every caption-only example get a zero layout (what the guidance can fall back on). Never a test-split trial."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .flowgen import FlowGenConfig, FlowUNet, add_layout_input, param_count, velocity, widen_patch
from .util import log


def _render(index: int, size: int) -> torch.Tensor:
    """The world's scene image box-downsampled to size², uint8 [3,size,size]."""
    from PIL import Image
    from .sim import world
    return torch.from_numpy(np.array(Image.fromarray(world.image_array(index)).resize((size, size), Image.Resampling.BOX))).permute(2, 0, 1)


def _embed_missing(known: dict, captions, t0: float) -> None:
    """Adds to `known` the MiniLM embeddings of the captions it lacks."""
    todo = sorted({c for c in captions if c not in known})
    if not todo:
        return
    from .textenc import embed_texts, load_minilm, load_tokenizer
    enc, tok = load_minilm(), load_tokenizer()
    for j in range(0, len(todo), 500):
        known.update(zip(todo[j:j + 500], embed_texts(enc, tok, todo[j:j + 500])))
        log(f"embedded {min(j + 500, len(todo))}/{len(todo)} captions ({time.time() - t0:.0f}s)")


def build_data(n_scenes: int, size: int, cache: Path, caption_cache: Path | None = None) -> dict:
    """caption_cache: a {caption: MiniLM embedding} dict saved by torch (e.g. the training run's
    cache/minilm-captions.pt); scenes whose 5 captions are all in it come first and need no MiniLM pass."""
    if cache.exists():
        return torch.load(cache, weights_only=True)
    from .sim import world
    known = torch.load(caption_cache, weights_only=False) if caption_cache else {}
    train = [i for i in range(world.N_SCENES) if world.split_of(i) == "train"]
    cached = [i for i in train if all(c in known for c in world.scene(i).captions)]
    idx = (cached + [i for i in train if i not in set(cached)])[:n_scenes]
    idx.sort()
    log(f"{len(idx)} training scenes, {sum(1 for i in idx if i in set(cached))} with cached caption embeddings")
    imgs, caps = [], []
    t0 = time.time()
    for k, i in enumerate(idx):
        imgs.append(_render(i, size))
        caps += list(world.scene(i).captions)
        if k % 1000 == 999:
            log(f"rendered {k + 1}/{len(idx)} ({time.time() - t0:.0f}s)")
    _embed_missing(known, caps, t0)
    emb = torch.stack([torch.as_tensor(known[c]).float() for c in caps])
    data = {"images": torch.stack(imgs).contiguous(), "emb": emb.view(len(idx), 5, -1).half(), "scenes": torch.tensor(idx)}
    cache.parent.mkdir(parents=True, exist_ok=True)
    torch.save(data, cache)
    return data


def build_layout_data(specs: list[str], bundle: Path, size: int, cache_dir: Path, caption_cache: Path | None) -> dict:
    """Training-split brain trials of `specs` ("DATA:SUBJECT") decoded by `bundle` (module docstring), cached by the
    specs and the bundle's manifest checksum: images/layout uint8 [N,3,S,S], emb (decoded) [N,E], refs [N,5,E] fp16."""
    import hashlib

    from .caption import BundleRunner
    from .image_eval import load_trials
    from .sim import world
    key = hashlib.sha1(("|".join(specs) + str(size) + hashlib.sha1((bundle / "manifest.json").read_bytes()).hexdigest()).encode()).hexdigest()[:12]
    cache = cache_dir / f"layout-{key}.pt"
    if cache.exists():
        return torch.load(cache, weights_only=True)
    runner = BundleRunner(bundle, threads=torch.get_num_threads())
    gen = runner.session(runner.m["generator"]["onnx"])
    known = torch.load(caption_cache, weights_only=False) if caption_cache else {}
    emb, lay, scenes = [], [], []
    t0 = time.time()
    for spec in specs:
        data, subject = spec.rsplit(":", 1)
        x, sids = load_trials(Path(data), subject, "train")
        for i in range(0, len(x), 100):
            bt = runner.brain_tokens(subject, x[i:i + 100])
            ce = runner.qform(bt)[1]
            emb.append(ce)
            lay.append(gen.run(None, {"caption_embedding": ce, "brain_tokens": bt})[0])
        scenes += [world.scene_index(s) for s in sids]
        log(f"layout data: {spec} {len(x)} training trials decoded ({time.time() - t0:.0f}s)")
    layout = torch.from_numpy(np.concatenate(lay))
    if layout.shape[-1] != size:
        layout = F.interpolate(layout, size=(size, size), mode="area")
    drawn = {s: _render(s, size) for s in sorted(set(scenes))}
    _embed_missing(known, (c for s in set(scenes) for c in world.scene(s).captions), t0)
    refs = torch.stack([torch.stack([torch.as_tensor(known[c]).float() for c in world.scene(s).captions]) for s in scenes])
    data = {"images": torch.stack([drawn[s] for s in scenes]), "layout": (layout.clamp(0, 1) * 255).round().to(torch.uint8),
            "emb": torch.from_numpy(np.concatenate(emb)).half(), "refs": refs.half(), "scenes": torch.tensor(scenes)}
    cache.parent.mkdir(parents=True, exist_ok=True)
    torch.save(data, cache)
    return data


def layout_condition(emb: torch.Tensor, refs: torch.Tensor, layout: torch.Tensor, g: torch.Generator, a) -> tuple[torch.Tensor, torch.Tensor]:
    """Brain trials' conditioning (module docstring): caption [B,E] and layout [B,3,S,S] in -1..1."""
    B = emb.shape[0]
    dec = F.normalize(emb + torch.randn(emb.shape, generator=g) * torch.rand(B, 1, generator=g) * a.noise_max * 0.5, dim=-1)
    ref = condition(refs, g, a.noise_max, 0.0)
    e = torch.where(torch.rand(B, 1, generator=g) < 0.5, dec, ref) * (torch.rand(B, 1, generator=g) >= a.p_uncond)
    lay = layout + torch.randn(layout.shape, generator=g) * torch.rand(B, 1, 1, 1, generator=g) * a.layout_noise
    return e, lay * (torch.rand(B, 1, 1, 1, generator=g) >= a.p_layout_drop)


def condition(emb5: torch.Tensor, g: torch.Generator, noise_max: float, p_uncond: float) -> torch.Tensor:
    """emb5 [B,5,E] → per-example conditioning [B,E] (module docstring)."""
    B = emb5.shape[0]
    mean = F.normalize(emb5.mean(1), dim=-1)
    one = emb5[torch.arange(B), torch.randint(0, 5, (B,), generator=g)]
    e = torch.where(torch.rand(B, 1, generator=g) < 0.5, mean, one)
    e = F.normalize(e + torch.randn(e.shape, generator=g) * torch.rand(B, 1, generator=g) * noise_max, dim=-1)
    return e * (torch.rand(B, 1, generator=g) >= p_uncond)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--scenes", type=int, default=4000)
    ap.add_argument("--steps", type=int, default=100000, help="upper bound; --minutes usually ends the run first")
    ap.add_argument("--minutes", type=float, default=28.0, help="wall-clock budget of the training loop (data building excluded)")
    ap.add_argument("--batch", type=int, default=48)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--ema", type=float, default=0.998)
    ap.add_argument("--noise-max", type=float, default=0.04, help="max std per dimension of the conditioning noise")
    ap.add_argument("--p-uncond", type=float, default=0.1)
    ap.add_argument("--channels", default="48,96,160")
    ap.add_argument("--caption-cache", type=Path, help="{caption: MiniLM embedding} torch file to reuse (build_data)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--ckpt-every", type=int, default=100)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--image-size", type=int, default=32, help="32 (patch 2) or 64 (patch 4): the U-Net works at 16² either way")
    ap.add_argument("--predict", choices=["v", "x"], default="v", help="the network predicts the velocity or the clean image (flowgen.FlowGenConfig.predict)")
    ap.add_argument("--init-from", type=Path, help="a flowgen.pt (e.g. the 32² weights) to start from (flowgen.widen_patch)")
    ap.add_argument("--layout-data", help="DATA:SUBJECT,...: train a layout flow on these response files' training trials")
    ap.add_argument("--layout-bundle", type=Path, default=Path("models/bundles/default"), help="the bundle that decodes them")
    ap.add_argument("--layout-frac", type=float, default=0.6, help="share of each batch from the brain trials")
    ap.add_argument("--layout-noise", type=float, default=0.3, help="max std of the pixel noise added to a training layout (-1..1 scale)")
    ap.add_argument("--p-layout-drop", type=float, default=0.15)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    if a.image_size not in (32, 64):
        sys.exit(f"--image-size {a.image_size}: use 32 or 64.")
    layout = bool(a.layout_data)
    cfg = FlowGenConfig(channels=tuple(int(c) for c in a.channels.split(",")), image_size=a.image_size, patch=a.image_size // 16, predict=a.predict, layout=layout)
    ck = a.out / "ckpt.pt"
    s = src = None
    if a.resume:
        if not ck.exists():
            sys.exit(f"--resume: {ck} does not exist; start without --resume.")
        s = torch.load(ck, weights_only=False)
        cfg = FlowGenConfig.from_dict(s["config"]) if "config" in s else cfg   # the run's own (e.g. widths from --init-from)
    elif a.init_from:
        src = torch.load(a.init_from, weights_only=False)
        scfg = FlowGenConfig.from_dict(src["config"])
        cfg = FlowGenConfig(**{**scfg.to_dict(), "channels": scfg.channels, "image_size": cfg.image_size, "patch": cfg.patch, "predict": cfg.predict,
                               "layout": layout})
    data = build_data(a.scenes, cfg.image_size, a.out / f"data-{a.scenes}-{cfg.image_size}.pt", a.caption_cache)
    X = data["images"].float() / 127.5 - 1
    E = data["emb"].float()
    if layout:
        ld = build_layout_data(a.layout_data.split(","), a.layout_bundle, cfg.image_size, a.out, a.caption_cache)
        LX, LL = ld["images"].float() / 127.5 - 1, ld["layout"].float() / 127.5 - 1
        LE, LR = ld["emb"].float(), ld["refs"].float()
        n_lay = round(a.batch * a.layout_frac)
        log(f"layout flow: {len(LX)} brain trials ({n_lay} per batch) + {len(X)} caption-only scenes")
    torch.manual_seed(a.seed)
    net = FlowUNet(cfg)
    if src is not None:
        w = widen_patch(src["ema"], scfg, cfg) if scfg.patch != cfg.patch else {k: v.float() for k, v in src["ema"].items()}
        net.load_state_dict(add_layout_input(w, cfg) if cfg.layout and not scfg.layout else w)
        if scfg.predict != cfg.predict:   # the output layer meant the other quantity: start it at zero, as a fresh one
            with torch.no_grad():
                net.out.weight.zero_()
                net.out.bias.zero_()
        log(f"started from {a.init_from} ({scfg.image_size}², step {src.get('step')})")
    ema = FlowUNet(cfg)
    ema.load_state_dict(net.state_dict())
    opt = torch.optim.AdamW(net.parameters(), lr=a.lr, weight_decay=0.01)
    g = torch.Generator().manual_seed(a.seed)
    step, spent, cpu0 = 0, 0.0, 0.0
    if s is not None:
        net.load_state_dict(s["net"])
        ema.load_state_dict(s["ema"])
        opt.load_state_dict(s["opt"])
        g.set_state(s["gen"])
        step, spent, cpu0 = s["step"], s["seconds"], s.get("cpu_seconds", 0.0)
        log(f"resumed at step {step} ({spent:.0f}s spent)")
    cpu_start = time.process_time() - cpu0   # CPU seconds of the training loops (this process's and the resumed ones')
    log(f"flowgen: {param_count(net) / 1e6:.2f}M parameters, {len(X)} scenes, batch {a.batch}, budget {a.minutes} min")

    def save(path: Path, final: bool):
        # written beside and renamed: a run stopped mid-write (a session's end) keeps its previous checkpoint whole
        tmp = path.with_name(path.name + ".tmp")
        _save(tmp, final)
        tmp.replace(path)

    def _save(path: Path, final: bool):
        cpu = time.process_time() - cpu_start
        if final:
            torch.save({"ema": ema.state_dict(), "config": cfg.to_dict(), "step": step, "seconds": spent, "cpu_seconds": cpu, "seed": a.seed,
                        "scenes": a.scenes, "command": "python -m mindsemantix.train_flowgen " + " ".join(argv if argv is not None else sys.argv[1:])}, path)
        else:
            torch.save({"net": net.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(), "gen": g.get_state(), "config": cfg.to_dict(),
                        "step": step, "seconds": spent, "cpu_seconds": cpu}, path)

    t_start = time.time() - spent
    run_loss = None
    while step < a.steps and time.time() - t_start < a.minutes * 60:
        i = torch.randint(0, len(X), (a.batch - (n_lay if layout else 0),), generator=g)
        x1, e = X[i], condition(E[i], g, a.noise_max, a.p_uncond)
        lay = None
        if layout:
            j = torch.randint(0, len(LX), (n_lay,), generator=g)
            ej, lj = layout_condition(LE[j], LR[j], LL[j], g, a)
            x1, e = torch.cat([LX[j], x1]), torch.cat([ej, e])
            lay = torch.cat([lj, torch.zeros(len(i), *lj.shape[1:])])
        x0 = torch.randn(x1.shape, generator=g)
        t = torch.sigmoid(torch.randn(a.batch, generator=g))              # logit-normal: most weight mid-way
        xt = (1 - t)[:, None, None, None] * x0 + t[:, None, None, None] * x1
        loss = F.mse_loss(velocity(net, xt, t, e, lay), x1 - x0)
        for pg in opt.param_groups:
            pg["lr"] = a.lr * min(1.0, (step + 1) / 100)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        step += 1
        d = min(a.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, p in zip(ema.parameters(), net.parameters()):
                pe.mul_(d).add_(p, alpha=1 - d)
        run_loss = loss.item() if run_loss is None else 0.98 * run_loss + 0.02 * loss.item()
        spent = time.time() - t_start
        if step % 20 == 0:
            log(f"step {step} loss {run_loss:.4f} ({spent / step:.2f} s/step, {spent / 60:.1f} min)")
        if step % a.ckpt_every == 0:
            save(ck, False)
    save(ck, False)
    save(a.out / "flowgen.pt", True)
    (a.out / "train.json").write_text(json.dumps({"step": step, "seconds": round(spent), "cpu_seconds": round(time.process_time() - cpu_start), "loss": run_loss, "seed": a.seed,
                                                    "scenes": a.scenes, "batch": a.batch, "config": cfg.to_dict()}, indent=1))
    log(f"done: {step} steps in {spent / 60:.1f} min → {a.out / 'flowgen.pt'}")


if __name__ == "__main__":
    main()
