"""Image reconstruction metrics on the held-out trials (issue 20; definitions in docs/metrics.md "Image metrics").

  python -m mindsemantix.image_eval --data data/sim --subject sim01 --bundle models/bundles/default \
      [--flowgen models/flowgen/generator.onnx] [--out eval.json] [--grid docs/experiments/recon-grid.png]

Every single test trial of the subject (150 test scenes × 3 presentations = 450 pairs in `sim.dataset --seed 0`) is
decoded with the bundle (onnxruntime: encoder → Q-Former caption embedding + brain tokens) and reconstructed by
- `old`: the bundle's generator.onnx (caption embedding + brain tokens → 64² image),
- `retrieval`: the training scene whose caption (the bundle's baseline_captions.json / baseline_embeddings.npy) is
  nearest to the decoded caption embedding (cosine), its image drawn by sim.world,
- `flowgen` (with --flowgen): the flow-matching generator (flowgen.py; an exported .onnx graph or a trained .pt),
  from the fixed noise of seed --noise-seed, the same noise tensor for every trial; --noise-scale τ starts the ODE from
  τ·noise (τ < 1: nearer the posterior mean of an x-prediction), --noise-samples K averages K images from K noise
  tensors (the same K for every trial), --flowgen-steps / --flowgen-guidance override the trained config's sampler.
--scenes first-half|second-half keeps the trials of the first or the last half of the test scenes (in scene-index
order; every presentation of a scene in the same half): choose a sampler setting on one half, report it on the other.
Stimuli are the world's 256² images box-downsampled to 64², the size every reconstruction is scored at."""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from . import image_metrics as im
from .util import log

SIZE = 64


def load_trials(data: Path, subject: str, split: str = "test"):
    """The single trials of one split ("test" or "train") of a response file: responses [N,V] and stimulus ids."""
    import h5py
    fp = data / "derivatives" / "mindsemantix" / f"sub-{subject}" / f"sub-{subject}_responses.h5"
    if not fp.exists():
        raise SystemExit(f"{fp} is missing; write it with `python -m mindsemantix.sim.dataset --out {data} --subjects {subject} --seed 0`.")
    with h5py.File(fp, "r") as h:
        x = np.asarray(h["responses"], np.float32)
        sids = [s.decode() if isinstance(s, bytes) else str(s) for s in h["stimulus_ids"][()]]
        sp = [s.decode() if isinstance(s, bytes) else str(s) for s in h["split"][()]]
    keep = np.array([s == split for s in sp])
    return x[keep], [s for s, k in zip(sids, keep) if k]


def scene_image(index: int, size: int = SIZE) -> np.ndarray:
    """The world's scene image box-downsampled to size² as [3,size,size] float in 0..1."""
    from PIL import Image
    from .sim import world
    a = Image.fromarray(world.image_array(index)).resize((size, size), Image.Resampling.BOX)
    return np.asarray(a, np.float32).transpose(2, 0, 1) / 255.0


def caption_scene_map() -> dict[str, int]:
    """Every training-split scene's reference captions → its index (the retrieval baseline's caption bank is drawn from them)."""
    from .sim import world
    out = {}
    for i in range(world.N_SCENES):
        if world.split_of(i) == "train":
            for c in world.scene(i).captions:
                out.setdefault(c, i)
    return out


def text_space(cache: Path, eff: im.EffNetFeatures, n_scenes: int = 1200):
    """Ridge EffNet-Lite0 late features → normalised mean MiniLM reference embedding, fitted on training-split scenes
    (never a test scene); alpha chosen on the last 20 % of them. Cached as npz."""
    if cache.exists():
        z = np.load(cache)
        return z["W"], z["b"], float(z["alpha"]), float(z["val_cos"])
    from .sim import world
    from .textenc import embed_texts, load_minilm, load_tokenizer
    idx = [i for i in range(world.N_SCENES) if world.split_of(i) == "train"][-n_scenes:]   # the far end: unlike flowgen's training scenes
    imgs = np.stack([scene_image(i) for i in idx])
    _, late = eff(imgs)
    enc, tok = load_minilm(), load_tokenizer()
    caps = [c for i in idx for c in world.scene(i).captions]
    e = embed_texts(enc, tok, caps).view(len(idx), 5, -1).mean(1)
    e = torch.nn.functional.normalize(e, dim=-1).numpy()
    n_fit = int(0.8 * len(idx))
    best = None
    for alpha in (1e-3, 1e-2, 1e-1, 1.0):
        W, b = im.fit_image_to_text(late[:n_fit], e[:n_fit], alpha)
        cos = float((im.to_text_space(late[n_fit:], W, b) * e[n_fit:]).sum(1).mean())
        if best is None or cos > best[0]:
            best = (cos, alpha)
    W, b = im.fit_image_to_text(late, e, best[1])
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, W=W, b=b, alpha=best[1], val_cos=best[0])
    return W, b, best[1], best[0]


def scene_half_mask(sids: list[str], which: str = "all", key=None) -> np.ndarray:
    """Boolean mask of the trials kept by --scenes: `all`, or the trials of the first / second half of the distinct
    scenes sorted by `key` (default: the world's scene index); an odd count puts the middle scene in the second half."""
    if which == "all":
        return np.ones(len(sids), bool)
    if which not in ("first-half", "second-half"):
        raise ValueError(f"--scenes must be all, first-half or second-half; got {which!r}")
    if key is None:
        from .sim import world
        key = world.scene_index
    scenes = sorted(set(sids), key=key)
    half = set(scenes[:len(scenes) // 2] if which == "first-half" else scenes[len(scenes) // 2:])
    return np.array([s in half for s in sids], bool)


def flowgen_noise(size: int, noise_seed: int, samples: int = 1, noise_scale: float = 1.0) -> torch.Tensor:
    """The K = samples starting noises [K,3,S,S]: fixed_noise(K, S, seed) × noise_scale (K = 1: the bundle's noise)."""
    from .flowgen import fixed_noise
    return fixed_noise(samples, size, noise_seed) * noise_scale


def flowgen_images(path: Path, cap_emb: np.ndarray, noise_seed: int, batch: int = 50, init: np.ndarray | None = None,
                   t0: float = 0.0, steps: int | None = None, guidance: float | None = None, noise_scale: float = 1.0,
                   samples: int = 1, brain_tokens: np.ndarray | None = None, layout: np.ndarray | None = None) -> np.ndarray:
    """Reconstructions [N,3,64,64]; with samples K > 1 each is the mean of the K images sampled from the K noises.
    A layout flow reads `brain_tokens` (an exported graph, which draws its layout itself) or `layout` (the regression
    generator's images, for trained .pt weights)."""
    if path.suffix == ".onnx":
        if init is not None:
            raise SystemExit("--flowgen-init needs the trained .pt weights (the exported graph starts from noise).")
        if steps is not None or guidance is not None:
            raise SystemExit("--flowgen-steps / --flowgen-guidance need the trained .pt weights (the exported graph has its own).")
        from .onnx_util import ort_session
        s = ort_session(path)
        names = [i.name for i in s.get_inputs()]
        size = s.get_inputs()[names.index("noise")].shape[-1]
        noise = flowgen_noise(size, noise_seed, samples, noise_scale).numpy()
        out = []
        for i in range(0, len(cap_emb), batch):
            e = cap_emb[i:i + batch]
            feeds = {"caption_embedding": e, **({"brain_tokens": brain_tokens[i:i + batch]} if "brain_tokens" in names else {})}
            acc = sum(s.run(None, {**feeds, "noise": np.repeat(noise[k:k + 1], len(e), 0)})[0] for k in range(samples))
            out.append(acc / samples)
        return np.concatenate(out)
    from .flowgen import FlowGenConfig, FlowUNet, sample
    ck = torch.load(path, weights_only=False)
    cfg = FlowGenConfig.from_dict(ck["config"])
    net = FlowUNet(cfg)
    net.load_state_dict(ck["ema"])
    net.eval()
    if cfg.layout and layout is None:
        raise ValueError("a layout flow needs the regression generator's images (layout)")
    noise = flowgen_noise(cfg.image_size, noise_seed, samples, noise_scale)
    g = cfg.guidance if guidance is None else guidance
    out = []
    with torch.no_grad():
        for i in range(0, len(cap_emb), batch):
            e = torch.from_numpy(cap_emb[i:i + batch])
            im = torch.from_numpy(init[i:i + batch]) if init is not None else None
            lay = torch.from_numpy(layout[i:i + batch]) if cfg.layout else None
            acc = sum(sample(net, e, noise[k:k + 1].expand(len(e), -1, -1, -1), steps or cfg.steps, g, im, t0, lay) for k in range(samples))
            out.append((acc / samples).numpy())
    return np.concatenate(out)


def cached_features(eff: im.EffNetFeatures, images: np.ndarray, cache: Path | None):
    """EffNet (early, late) features of `images`, cached under `cache` by the images' sha1 (reruns with a new generator
    only pay for its own images)."""
    if cache is None:
        return eff(images)
    import hashlib
    f = cache / f"effnet-{hashlib.sha1(np.ascontiguousarray(images, np.float32).tobytes()).hexdigest()[:16]}.npz"
    if f.exists():
        z = np.load(f)
        return z["early"], z["late"]
    early, late = eff(images)
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(f, early=early, late=late)
    return early, late


def score_all(methods: dict[str, np.ndarray], stim: np.ndarray, groups, eff: im.EffNetFeatures, W, b, cache: Path | None = None) -> dict:
    s_early, s_late = cached_features(eff, stim, cache)
    s_text = im.to_text_space(s_late, W, b)
    out = {}
    for name, rec in methods.items():
        r_early, r_late = cached_features(eff, rec, cache)
        out[name] = {"PixCorr": im.pixcorr(rec, stim), "SSIM": im.ssim(rec, stim),
                     "EffNet-early 2-way": im.two_way(r_early, s_early, groups), "EffNet-late 2-way": im.two_way(r_late, s_late, groups),
                     "caption-space 2-way": im.two_way(im.to_text_space(r_late, W, b), s_text, groups)}
    return out


def table(scores: dict) -> str:
    cols = ["PixCorr", "SSIM", "EffNet-early 2-way", "EffNet-late 2-way", "caption-space 2-way"]
    lines = ["| generator | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
    for name, s in scores.items():
        lines.append(f"| {name} | " + " | ".join(f"{s[c]:.3f}" for c in cols) + " |")
    return "\n".join(lines)


def grid_png(path: Path, rows: list[int], stim_ids: list[str], cols: dict[str, np.ndarray], tile: int = 96) -> None:
    """Trials `rows` in two blocks of columns [stimulus, *cols]; the stimulus is drawn from the 256² original."""
    from PIL import Image, ImageDraw
    from .sim import world
    names = ["stimulus", *cols]
    per = (len(rows) + 1) // 2
    head, gap = 18, 12
    W = 2 * len(names) * tile + gap
    H = head + per * tile
    canvas = Image.new("RGB", (W, H), (255, 255, 255))
    d = ImageDraw.Draw(canvas)
    for block in range(2):
        x0 = block * (len(names) * tile + gap)
        for c, n in enumerate(names):
            d.text((x0 + c * tile + 4, 3), n, fill=(0, 0, 0))
        for r, t in enumerate(rows[block * per:(block + 1) * per]):
            y = head + r * tile
            st = Image.fromarray(world.image_array(world.scene_index(stim_ids[t]))).resize((tile, tile), Image.Resampling.BOX)
            canvas.paste(st, (x0, y))
            for c, n in enumerate(cols, start=1):
                a = (np.clip(cols[n][t], 0, 1).transpose(1, 2, 0) * 255).round().astype(np.uint8)
                canvas.paste(Image.fromarray(a).resize((tile, tile), Image.Resampling.BILINEAR), (x0 + c * tile, y))
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path, optimize=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("data/sim"))
    ap.add_argument("--subject", default="sim01")
    ap.add_argument("--bundle", type=Path, default=Path("models/bundles/default"))
    ap.add_argument("--flowgen", type=Path, help="the flow-matching generator: exported .onnx or trained .pt")
    ap.add_argument("--noise-seed", type=int, default=0)
    ap.add_argument("--flowgen-init", choices=["old"], help="start the flow part way from the old generator's image (img2img)")
    ap.add_argument("--flowgen-t0", type=float, default=0.5, help="with --flowgen-init: where on the path to start (0..1)")
    ap.add_argument("--flowgen-steps", type=int, help="Euler steps (default: the trained config's; .pt only)")
    ap.add_argument("--flowgen-guidance", type=float, help="classifier-free guidance scale (default: the trained config's; .pt only)")
    ap.add_argument("--noise-scale", type=float, default=1.0, help="start the flow from noise × this (noise temperature τ)")
    ap.add_argument("--noise-samples", type=int, default=1, help="average this many samples from different fixed noises")
    ap.add_argument("--scenes", choices=["all", "first-half", "second-half"], default="all",
                    help="score the trials of all test scenes or of the first / second half of them (scene-index order)")
    ap.add_argument("--cache", type=Path, default=Path("data/image-eval"), help="where the caption-space ridge and image features are cached")
    ap.add_argument("--out", type=Path, help="write the scores as JSON")
    ap.add_argument("--grid", type=Path, help="write a PNG: stimulus / old / flowgen / retrieval for --grid-trials trials")
    ap.add_argument("--grid-trials", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    from .caption import BundleRunner
    from .sim import world
    t0 = time.time()
    x, sids = load_trials(a.data, a.subject)
    keep = scene_half_mask(sids, a.scenes)
    x, sids = x[keep], [s for s, k in zip(sids, keep) if k]
    runner = BundleRunner(a.bundle, threads=a.threads)
    V = runner.m["subjects"][a.subject]["voxels"]
    if x.shape[1] != V:
        raise SystemExit(f"{a.subject} has {x.shape[1]} voxels in {a.data} but {V} in the bundle; use data written with the bundle's mask.")
    bt = np.concatenate([runner.brain_tokens(a.subject, x[i:i + 50]) for i in range(0, len(x), 50)])
    ce = np.concatenate([runner.qform(bt[i:i + 50])[1] for i in range(0, len(bt), 50)])
    log(f"{len(x)} test trials decoded ({time.time() - t0:.0f}s)")
    gen = runner.session(runner.m["generator"]["onnx"])
    old = np.concatenate([gen.run(None, {"caption_embedding": ce[i:i + 50], "brain_tokens": bt[i:i + 50]})[0] for i in range(0, len(ce), 50)])
    bank = np.load(a.bundle / runner.m["baseline"]["embeddings"])
    caps = json.loads((a.bundle / runner.m["baseline"]["captions"]).read_text())
    cmap = caption_scene_map()
    missing = [c for c in caps if c not in cmap]
    if missing:
        raise SystemExit(f"{len(missing)} baseline captions (e.g. {missing[0]!r}) are no training scene's caption; the bundle was not trained on this world.")
    nearest = (ce @ bank.T).argmax(1)
    ret_scene = [cmap[caps[j]] for j in nearest]
    drawn = {s: scene_image(s) for s in set(ret_scene)}
    retrieval = np.stack([drawn[s] for s in ret_scene])
    stim = np.stack([scene_image(world.scene_index(s)) for s in sids])
    flow_ms = None
    methods = {"old (bundle generator.onnx)": old, "retrieval (nearest training caption's image)": retrieval}
    if a.flowgen:
        t1 = time.time()
        new = flowgen_images(a.flowgen, ce, a.noise_seed, init=old if a.flowgen_init == "old" else None,
                             t0=a.flowgen_t0, steps=a.flowgen_steps, guidance=a.flowgen_guidance,
                             noise_scale=a.noise_scale, samples=a.noise_samples, brain_tokens=bt, layout=old)
        flow_ms = 1000 * (time.time() - t1) / len(new)
        log(f"flowgen: {len(new)} images in {time.time() - t1:.1f}s ({flow_ms:.1f} ms/image, {a.threads} thread(s))")
        methods = {"flowgen (new)": new, **methods}
    eff = im.EffNetFeatures()
    W, b, alpha, vcos = text_space(a.cache / "text-space.npz", eff)
    log(f"caption-space ridge: alpha {alpha:g}, held-out cosine {vcos:.3f}")
    scores = score_all(methods, stim, sids, eff, W, b, a.cache)
    print(table(scores))
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps({"pairs": len(stim), "subject": a.subject, "bundle": str(a.bundle),
                                     "flowgen": str(a.flowgen) if a.flowgen else None, "noise_seed": a.noise_seed,
                                     "scenes": a.scenes, "noise_scale": a.noise_scale, "noise_samples": a.noise_samples,
                                     "flowgen_steps": a.flowgen_steps, "flowgen_guidance": a.flowgen_guidance,
                                     "flowgen_ms_per_image": round(flow_ms, 2) if a.flowgen else None,
                                     "text_space": {"alpha": alpha, "heldout_cosine": vcos}, "scores": scores}, indent=1))
    if a.grid:
        rows = list(np.linspace(0, len(stim) - 1, a.grid_trials).round().astype(int))
        cols = {"old": old}
        if a.flowgen:
            cols["new"] = methods["flowgen (new)"]
        cols["retrieval"] = retrieval
        grid_png(a.grid, rows, sids, cols)
        log(f"grid → {a.grid}")
    log(f"done in {time.time() - t0:.0f}s")


if __name__ == "__main__":
    main()
