"""Exports a trained flow-matching generator (train_flowgen.py's flowgen.pt) as one ONNX graph with the sampler unrolled,
plus the fixed starting noise, and checks ONNX against PyTorch.

  python -m mindsemantix.export_flowgen --weights models/flowgen/flowgen.pt --out DIR [--noise-seed 0]
  python -m mindsemantix.export_flowgen --weights models/flowgen/flowgen.pt --out models/bundles/default --bundle
  python -m mindsemantix.export_flowgen --node-fixture --out test/fixtures/flowgen     # the Node parity fixture

Writes DIR/flowgen.onnx (inputs caption_embedding f32 [B,E], noise f32 [B,3,S,S] → image f32 [B,3,64,64] in 0..1) and
DIR/flowgen_noise.npy (<f4 [1,3,S,S], the noise of --noise-seed that every reconstruction starts from, so Node needs no
random generator of torch's), and prints the parity (max |ONNX - PyTorch| over a few decoded-like embeddings).

A layout flow (flowgen.FlowGenConfig.layout) is exported as one graph with the regression generator in front of it
(`with_regression_layout`: the bundle's own generator.onnx, merged by onnx.compose), so the bundle's graph takes
caption_embedding, brain_tokens and noise, and Node feeds it as it feeds any generator (what the graph names)."""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from .flowgen import FlowGenConfig, FlowUNet, LayoutSamplerExport, SamplerExport, fixed_noise, sample
from .onnx_util import export_onnx, ort_session
from .util import log


def load_flowgen(path: Path) -> tuple[FlowUNet, dict]:
    ck = torch.load(path, weights_only=False)
    net = FlowUNet(FlowGenConfig.from_dict(ck["config"]))
    net.load_state_dict({k: v.float() for k, v in ck["ema"].items()})
    return net.eval(), ck


def export(net: FlowUNet, out_dir: Path, noise_seed: int = 0, generator_onnx: Path | None = None) -> dict:
    """Writes flowgen.onnx + flowgen_noise.npy; a layout flow needs the regression generator's graph (generator_onnx),
    which becomes the front of flowgen.onnx."""
    cfg = net.cfg
    out_dir.mkdir(parents=True, exist_ok=True)
    e = torch.nn.functional.normalize(torch.randn(2, cfg.emb_dim, generator=torch.Generator().manual_seed(1)), dim=-1)
    noise = fixed_noise(1, cfg.image_size, noise_seed)
    nz = noise.expand(2, -1, -1, -1).contiguous()
    axes = {"caption_embedding": {0: "batch"}, "noise": {0: "batch"}, "image": {0: "batch"}}
    if cfg.layout:
        if generator_onnx is None:
            raise ValueError("a layout flow is exported with the regression generator in front: pass generator_onnx")
        flow_only = out_dir / "flowgen-sampler.onnx"
        export_onnx(LayoutSamplerExport(net, cfg.steps, cfg.guidance), (e, torch.rand(2, 3, cfg.out_size, cfg.out_size), nz), flow_only,
                    ["caption_embedding", "layout", "noise"], ["image"], {**axes, "layout": {0: "batch"}})
        with_regression_layout(flow_only, generator_onnx, out_dir / "flowgen.onnx")
        flow_only.unlink()
    else:
        export_onnx(SamplerExport(net, cfg.steps, cfg.guidance), (e, nz), out_dir / "flowgen.onnx", ["caption_embedding", "noise"], ["image"], axes)
    np.save(out_dir / "flowgen_noise.npy", noise.numpy().astype("<f4"))
    return {"parity_max_abs": parity(net, out_dir / "flowgen.onnx", noise, generator_onnx=generator_onnx)}


def with_regression_layout(flow_onnx: Path, generator_onnx: Path, out: Path) -> None:
    """flow (caption_embedding, layout, noise) + regression generator (caption_embedding, brain_tokens → image) → one
    graph (caption_embedding, brain_tokens, noise → image) whose layout is the generator's image; both read the same
    caption_embedding."""
    import onnx
    from onnx import compose
    gen = compose.add_prefix(onnx.load(generator_onnx), "regression/")
    flow = onnx.load(flow_onnx)
    if [i.name for i in gen.graph.output] != ["regression/image"]:
        raise ValueError(f"{generator_onnx} must have one output named image")
    merged = compose.merge_models(gen, flow, io_map=[("regression/image", "layout")])
    rename = {"regression/caption_embedding": "caption_embedding", "regression/brain_tokens": "brain_tokens"}
    for node in merged.graph.node:
        for k, name in enumerate(node.input):
            node.input[k] = rename.get(name, name)
    by_name = {i.name: i for i in merged.graph.input}
    bt = by_name["regression/brain_tokens"]
    bt.name = "brain_tokens"
    inputs = [by_name["caption_embedding"], bt, by_name["noise"]]
    del merged.graph.input[:]
    merged.graph.input.extend(inputs)
    onnx.checker.check_model(merged)
    onnx.save(merged, out)


def parity(net: FlowUNet, onnx_path: Path, noise: torch.Tensor, n: int = 4, generator_onnx: Path | None = None) -> float:
    """max |ONNX − PyTorch| of the sampled images for n random unit embeddings, the given noise; a layout flow also gets
    random brain tokens, and its PyTorch side reads the layout that generator_onnx (the graph's front) draws from them."""
    cfg = net.cfg
    g = torch.Generator().manual_seed(2)
    e = torch.nn.functional.normalize(torch.randn(n, cfg.emb_dim, generator=g), dim=-1)
    nz = noise.expand(n, -1, -1, -1).contiguous()
    feeds = {"caption_embedding": e.numpy(), "noise": nz.numpy()}
    layout = None
    if cfg.layout:
        gen = ort_session(generator_onnx)
        shape = [n if isinstance(d, str) or d is None else d for d in gen.get_inputs()[1].shape]
        feeds["brain_tokens"] = torch.randn(*shape, generator=g).numpy()
        layout = torch.from_numpy(gen.run(None, {"caption_embedding": feeds["caption_embedding"], "brain_tokens": feeds["brain_tokens"]})[0])
    with torch.no_grad():
        ref = sample(net, e, nz, cfg.steps, cfg.guidance, layout=layout).numpy()
    got = ort_session(onnx_path).run(None, feeds)[0]
    return float(np.abs(got - ref).max())


def install_in_bundle(net: FlowUNet, ck: dict, weights: Path, bundle: Path, noise_seed: int = 0) -> dict:
    """Adds the sampler to a bundle as flow_generator.onnx + flow_generator_noise.npy with a manifest `flow_generator`
    entry (the Node decoder prefers it to generator.onnx, which stays: the regression generator the exporter writes and
    `--init-bundle` reads) and the two files' sha256 in `files`."""
    import json
    from .util import sha256_file
    tmp = bundle / ".flowgen-export"
    mp = bundle / "manifest.json"
    m = json.loads(mp.read_text())
    generator_onnx = None
    if net.cfg.layout:
        generator_onnx = bundle / m.get("generator", {}).get("onnx", "generator.onnx")
        if not generator_onnx.exists():
            raise SystemExit(f"{bundle} has no regression generator ({generator_onnx.name}) for the layout flow to read; export the bundle first.")
    r = export(net, tmp, noise_seed, generator_onnx)
    if r["parity_max_abs"] > 1e-3:
        raise SystemExit(f"ONNX and PyTorch images differ by {r['parity_max_abs']:.2e} (> 1e-3); not installed.")
    (tmp / "flowgen.onnx").replace(bundle / "flow_generator.onnx")
    (tmp / "flowgen_noise.npy").replace(bundle / "flow_generator_noise.npy")
    tmp.rmdir()
    cfg = ck["config"]
    m["flow_generator"] = {
        "onnx": "flow_generator.onnx", "output": "image",
        "inputs": ["caption_embedding", "brain_tokens", "noise"] if net.cfg.layout else ["caption_embedding", "noise"],
        "noise": "flow_generator_noise.npy", "noise_seed": noise_seed, "method": "rectified-flow",
        "steps": cfg["steps"], "guidance": cfg["guidance"], "image_size": cfg["image_size"], "out_size": cfg["out_size"],
        "weights": str(weights), "weights_sha256": sha256_file(weights), "train_steps": ck["step"],
        "train_seconds": round(ck["seconds"]), "seed": ck["seed"], "command": ck["command"],
        "parity_max_abs": r["parity_max_abs"]}
    if net.cfg.layout:
        m["flow_generator"]["layout"] = f"the regression generator's image ({generator_onnx.name}, merged into the graph)"
    for f in ("flow_generator.onnx", "flow_generator_noise.npy"):
        m["files"][f] = sha256_file(bundle / f)
    mp.write_text(json.dumps(m, indent=2))
    return r


def to_rgb8(images: np.ndarray) -> np.ndarray:
    """[B,3,H,W] in 0..1 → uint8 [B,H,W,3], rounded half up as src/inference/image.ts planarToRgb does."""
    return np.floor(np.clip(images, 0, 1) * 255 + 0.5).astype(np.uint8).transpose(0, 2, 3, 1)


def write_node_fixture(out_dir: Path, emb_dim: int = 32, seed: int = 0, layout: bool = False) -> None:
    """test/fixtures/flowgen (or flowgen-layout): a tiny flow generator for the tiny bundle's E (random weights, seed),
    its noise, and the PyTorch reference pixels for two caption embeddings (cases.json) — what the Node decoder must
    reproduce. With `layout`, a tiny random regression generator sits in front (with_regression_layout) and each case
    also holds the brain tokens it reads."""
    import base64
    import json
    torch.manual_seed(seed)
    # the default bundle's kind of sampler (64², patch 4, x-prediction), tiny
    cfg = FlowGenConfig(emb_dim=emb_dim, channels=(16, 16, 32), cond_dim=32, steps=3, guidance=2.0, image_size=64, patch=4, predict="x",
                        layout=layout)
    net = FlowUNet(cfg)
    with torch.no_grad():   # the zero-initialised output layers would return the noise itself: give them weights
        for p in net.parameters():
            if p.ndim > 1 and p.abs().sum() == 0:
                p.normal_(0, 0.05, generator=torch.Generator().manual_seed(seed + 1))
    g = torch.Generator().manual_seed(seed + 2)
    e = torch.nn.functional.normalize(torch.randn(2, emb_dim, generator=g), dim=-1)
    regression, bt, lay = None, None, None
    if layout:
        from .model import Generator, ModelConfig
        reg = Generator(ModelConfig(text_dim=emb_dim, dim=32, image_size=64, gen_channels=8)).eval()   # the tiny bundle's D
        bt = torch.randn(2, 8, 32, generator=g)                 # [B, T, D] of the tiny bundle
        regression = out_dir / "regression.onnx"
        export_onnx(reg, (e, bt), regression, ["caption_embedding", "brain_tokens"], ["image"],
                    {"caption_embedding": {0: "batch"}, "brain_tokens": {0: "batch", 1: "tokens"}, "image": {0: "batch"}})
        with torch.no_grad():
            lay = reg(e, bt)
    export(net.eval(), out_dir, noise_seed=seed, generator_onnx=regression)
    if regression is not None:
        regression.unlink()
    (out_dir / "flowgen.onnx").rename(out_dir / "flow_generator.onnx")
    (out_dir / "flowgen_noise.npy").rename(out_dir / "flow_generator_noise.npy")
    noise = torch.from_numpy(np.load(out_dir / "flow_generator_noise.npy"))
    with torch.no_grad():
        ref = sample(net, e, noise.expand(2, -1, -1, -1), cfg.steps, cfg.guidance, layout=lay).numpy()
    rgb = to_rgb8(ref)
    cases = [{"caption_embedding": e[i].tolist(), "width": int(rgb.shape[2]), "height": int(rgb.shape[1]),
              "rgb_base64": base64.b64encode(rgb[i].tobytes()).decode()} for i in range(len(e))]
    if layout:
        for i, c in enumerate(cases):
            c["brain_tokens"] = bt[i].flatten().tolist()
            c["brain_tokens_dims"] = [1, *bt.shape[1:]]
    (out_dir / "cases.json").write_text(json.dumps({"config": cfg.to_dict(), "seed": seed, "cases": cases}))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", type=Path, help="a trained flowgen.pt")
    ap.add_argument("--node-fixture", action="store_true", help="write the tiny Node test fixture to --out instead")
    ap.add_argument("--layout", action="store_true", help="with --node-fixture: a layout flow (test/fixtures/flowgen-layout)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--noise-seed", type=int, default=0)
    ap.add_argument("--bundle", action="store_true", help="--out is a bundle: add the sampler to it (install_in_bundle)")
    a = ap.parse_args(argv)
    if a.node_fixture:
        write_node_fixture(a.out, layout=a.layout)
        return
    if a.weights is None:
        ap.error("--weights is required (or --node-fixture)")
    net, ck = load_flowgen(a.weights)
    r = install_in_bundle(net, ck, a.weights, a.out, a.noise_seed) if a.bundle else export(net, a.out, a.noise_seed)
    log(f"exported {a.out / ('flow_generator.onnx' if a.bundle else 'flowgen.onnx')} ({ck['config']['steps']} Euler steps, guidance {ck['config']['guidance']}); "
        f"ONNX vs PyTorch max |Δ| {r['parity_max_abs']:.2e}")
    if r["parity_max_abs"] > 1e-3:
        raise SystemExit(f"ONNX and PyTorch images differ by {r['parity_max_abs']:.2e} (> 1e-3); check the onnxruntime and torch versions.")


if __name__ == "__main__":
    main()
