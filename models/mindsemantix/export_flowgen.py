"""Exports a trained flow-matching generator (train_flowgen.py's flowgen.pt) as one ONNX graph with the sampler unrolled,
plus the fixed starting noise, and checks ONNX against PyTorch.

  python -m mindsemantix.export_flowgen --weights models/flowgen/flowgen.pt --out DIR [--noise-seed 0]
  python -m mindsemantix.export_flowgen --weights models/flowgen/flowgen.pt --out models/bundles/default --bundle
  python -m mindsemantix.export_flowgen --node-fixture --out test/fixtures/flowgen     # the Node parity fixture

Writes DIR/flowgen.onnx (inputs caption_embedding f32 [B,E], noise f32 [B,3,S,S] → image f32 [B,3,64,64] in 0..1) and
DIR/flowgen_noise.npy (<f4 [1,3,S,S], the noise of --noise-seed that every reconstruction starts from, so Node needs no
random generator of torch's), and prints the parity (max |ONNX - PyTorch| over a few decoded-like embeddings)."""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from .flowgen import FlowGenConfig, FlowUNet, SamplerExport, fixed_noise, sample
from .onnx_util import export_onnx, ort_session
from .util import log


def load_flowgen(path: Path) -> tuple[FlowUNet, dict]:
    ck = torch.load(path, weights_only=False)
    net = FlowUNet(FlowGenConfig.from_dict(ck["config"]))
    net.load_state_dict({k: v.float() for k, v in ck["ema"].items()})
    return net.eval(), ck


def export(net: FlowUNet, out_dir: Path, noise_seed: int = 0) -> dict:
    cfg = net.cfg
    out_dir.mkdir(parents=True, exist_ok=True)
    e = torch.nn.functional.normalize(torch.randn(2, cfg.emb_dim, generator=torch.Generator().manual_seed(1)), dim=-1)
    noise = fixed_noise(1, cfg.image_size, noise_seed)
    export_onnx(SamplerExport(net, cfg.steps, cfg.guidance), (e, noise.expand(2, -1, -1, -1).contiguous()), out_dir / "flowgen.onnx",
                ["caption_embedding", "noise"], ["image"],
                {"caption_embedding": {0: "batch"}, "noise": {0: "batch"}, "image": {0: "batch"}})
    np.save(out_dir / "flowgen_noise.npy", noise.numpy().astype("<f4"))
    return {"parity_max_abs": parity(net, out_dir / "flowgen.onnx", noise)}


def parity(net: FlowUNet, onnx_path: Path, noise: torch.Tensor, n: int = 4) -> float:
    """max |ONNX − PyTorch| of the sampled images for n random unit embeddings, the given noise for each."""
    cfg = net.cfg
    e = torch.nn.functional.normalize(torch.randn(n, cfg.emb_dim, generator=torch.Generator().manual_seed(2)), dim=-1)
    nz = noise.expand(n, -1, -1, -1).contiguous()
    with torch.no_grad():
        ref = sample(net, e, nz, cfg.steps, cfg.guidance).numpy()
    got = ort_session(onnx_path).run(None, {"caption_embedding": e.numpy(), "noise": nz.numpy()})[0]
    return float(np.abs(got - ref).max())


def install_in_bundle(net: FlowUNet, ck: dict, weights: Path, bundle: Path, noise_seed: int = 0) -> dict:
    """Adds the sampler to a bundle as flow_generator.onnx + flow_generator_noise.npy with a manifest `flow_generator`
    entry (the Node decoder prefers it to generator.onnx, which stays: the regression generator the exporter writes and
    `--init-bundle` reads) and the two files' sha256 in `files`."""
    import json
    from .util import sha256_file
    tmp = bundle / ".flowgen-export"
    r = export(net, tmp, noise_seed)
    if r["parity_max_abs"] > 1e-3:
        raise SystemExit(f"ONNX and PyTorch images differ by {r['parity_max_abs']:.2e} (> 1e-3); not installed.")
    (tmp / "flowgen.onnx").replace(bundle / "flow_generator.onnx")
    (tmp / "flowgen_noise.npy").replace(bundle / "flow_generator_noise.npy")
    tmp.rmdir()
    mp = bundle / "manifest.json"
    m = json.loads(mp.read_text())
    cfg = ck["config"]
    m["flow_generator"] = {
        "onnx": "flow_generator.onnx", "inputs": ["caption_embedding", "noise"], "output": "image",
        "noise": "flow_generator_noise.npy", "noise_seed": noise_seed, "method": "rectified-flow",
        "steps": cfg["steps"], "guidance": cfg["guidance"], "image_size": cfg["image_size"], "out_size": cfg["out_size"],
        "weights": str(weights), "weights_sha256": sha256_file(weights), "train_steps": ck["step"],
        "train_seconds": round(ck["seconds"]), "seed": ck["seed"], "command": ck["command"],
        "parity_max_abs": r["parity_max_abs"]}
    for f in ("flow_generator.onnx", "flow_generator_noise.npy"):
        m["files"][f] = sha256_file(bundle / f)
    mp.write_text(json.dumps(m, indent=2))
    return r


def to_rgb8(images: np.ndarray) -> np.ndarray:
    """[B,3,H,W] in 0..1 → uint8 [B,H,W,3], rounded half up as src/inference/image.ts planarToRgb does."""
    return np.floor(np.clip(images, 0, 1) * 255 + 0.5).astype(np.uint8).transpose(0, 2, 3, 1)


def write_node_fixture(out_dir: Path, emb_dim: int = 32, seed: int = 0) -> None:
    """test/fixtures/flowgen: a tiny flow generator for the tiny bundle's E (random weights, seed), its noise, and the
    PyTorch reference pixels for two caption embeddings (cases.json) — what the Node decoder must reproduce."""
    import base64
    import json
    torch.manual_seed(seed)
    # the default bundle's kind of sampler (64², patch 4, x-prediction), tiny
    cfg = FlowGenConfig(emb_dim=emb_dim, channels=(16, 16, 32), cond_dim=32, steps=3, guidance=2.0, image_size=64, patch=4, predict="x")
    net = FlowUNet(cfg)
    with torch.no_grad():   # the zero-initialised output layers would return the noise itself: give them weights
        for p in net.parameters():
            if p.ndim > 1 and p.abs().sum() == 0:
                p.normal_(0, 0.05, generator=torch.Generator().manual_seed(seed + 1))
    export(net.eval(), out_dir, noise_seed=seed)
    (out_dir / "flowgen.onnx").rename(out_dir / "flow_generator.onnx")
    (out_dir / "flowgen_noise.npy").rename(out_dir / "flow_generator_noise.npy")
    noise = torch.from_numpy(np.load(out_dir / "flow_generator_noise.npy"))
    e = torch.nn.functional.normalize(torch.randn(2, emb_dim, generator=torch.Generator().manual_seed(seed + 2)), dim=-1)
    with torch.no_grad():
        ref = sample(net, e, noise.expand(2, -1, -1, -1), cfg.steps, cfg.guidance).numpy()
    rgb = to_rgb8(ref)
    cases = [{"caption_embedding": e[i].tolist(), "width": int(rgb.shape[2]), "height": int(rgb.shape[1]),
              "rgb_base64": base64.b64encode(rgb[i].tobytes()).decode()} for i in range(len(e))]
    (out_dir / "cases.json").write_text(json.dumps({"config": cfg.to_dict(), "seed": seed, "cases": cases}))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", type=Path, help="a trained flowgen.pt")
    ap.add_argument("--node-fixture", action="store_true", help="write the tiny Node test fixture to --out instead")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--noise-seed", type=int, default=0)
    ap.add_argument("--bundle", action="store_true", help="--out is a bundle: add the sampler to it (install_in_bundle)")
    a = ap.parse_args(argv)
    if a.node_fixture:
        write_node_fixture(a.out)
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
