"""The frozen shared part of a bundle — brain encoder after the per-subject read-out (`to_tokens`, transformer blocks,
norms) and the Q-Former — rebuilt as PyTorch modules, so a new person's read-out can be fitted by gradient through them.

Two sources, in order of preference:
  shared.safetensors  written by export since calibration exists (manifest `shared.weights`, sha256 in `files`);
  the ONNX graphs     for bundles exported before (the default bundle): named initializers keep their module names
                      (biases, norms, Gemm weights); a Linear applied to a 3-D input exports as an anonymous MatMul
                      initializer that holds `X.weight` transposed — it is the MatMul whose output the Add consuming the
                      named `X.bias` adds to.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from .model import BrainCaptioner, ModelConfig

# State-dict prefixes of the shared modules as EncoderExport / QFormerExport name them in the ONNX graphs.
ENCODER_SHARED = ("to_tokens.", "in_norm.", "pos", "blocks.", "norm.")
QFORMER_SERVING = ("query", "blocks.", "norm.", "text_proj.", "lm_proj.")


def onnx_named_weights(path: Path) -> dict[str, np.ndarray]:
    """Every parameter of an exported graph under its PyTorch name (anonymous MatMul weights traced to their module)."""
    import onnx
    from onnx import numpy_helper
    g = onnx.load(str(path)).graph
    init = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    # the exporter merges identical initializers (e.g. freshly initialised norms, all ones) and names the others as
    # Identity outputs of the one it kept
    for n in g.node:
        if n.op_type == "Identity" and n.input[0] in init:
            init[n.output[0]] = init[n.input[0]]
    out = {k: v for k, v in init.items() if not k.startswith("onnx::")}
    producer = {o: n for n in g.node for o in n.output}
    for n in g.node:
        if n.op_type != "Add":
            continue
        bias = next((i for i in n.input if i.endswith(".bias") and i in init), None)
        if bias is None:
            continue
        other = next(i for i in n.input if i != bias)
        mm = producer.get(other)
        if mm is None or mm.op_type != "MatMul" or mm.input[1] not in init:
            continue
        out[bias[: -len(".bias")] + ".weight"] = init[mm.input[1]].T.copy()
    return out


def _config(manifest: dict, subjects: dict | None = None) -> ModelConfig:
    mc = dict(manifest["model_config"])
    return ModelConfig(**{**mc, "dropout": 0.0, "subjects": dict(subjects or {})})


def _strip(weights: dict, prefix: str, keep: tuple) -> dict:
    return {k[len(prefix):]: torch.tensor(np.array(v, dtype=np.float32)) for k, v in weights.items()
            if k.startswith(prefix) and k[len(prefix):].startswith(keep)}


def shared_state(bundle: Path, manifest: dict) -> tuple[dict, dict, str]:
    """(encoder shared state, Q-Former serving state, source) from shared.safetensors or from the ONNX graphs."""
    shared = manifest.get("shared", {}).get("weights")
    if shared and (bundle / shared).exists():
        from safetensors.numpy import load_file
        w = load_file(str(bundle / shared))
        return _strip(w, "enc.", ENCODER_SHARED), _strip(w, "q.", QFORMER_SERVING), shared
    any_encoder = bundle / next(iter(manifest["subjects"].values()))["encoder"]
    enc = _strip(onnx_named_weights(any_encoder), "enc.", ENCODER_SHARED)
    q = _strip(onnx_named_weights(bundle / "qformer.onnx"), "q.", QFORMER_SERVING)
    return enc, q, "onnx-graphs"


def load_frozen(bundle: Path, subject: str, voxels: int) -> tuple[BrainCaptioner, str]:
    """A BrainCaptioner holding the bundle's frozen shared encoder and Q-Former plus one fresh adapter for `subject`
    (voxels wide). Every loaded parameter is frozen; the caller trains `encoder.adapters[subject].read`."""
    bundle = Path(bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    model = BrainCaptioner(_config(manifest, {subject: voxels})).eval()
    enc, q, source = shared_state(bundle, manifest)
    _load_exact(model.encoder, enc, "encoder")
    _load_exact(model.qformer, q, "Q-Former")
    for p in model.parameters():
        p.requires_grad_(False)
    return model, source


def _load_exact(module: torch.nn.Module, state: dict, what: str) -> None:
    own = module.state_dict()
    missing = [k for k in own if k.startswith(ENCODER_SHARED if what == "encoder" else QFORMER_SERVING)
               and not k.startswith("adapters.") and k not in state]
    if missing:
        raise ValueError(f"the bundle's {what} lacks {len(missing)} shared weight(s) (first: {missing[0]}); re-export the bundle.")
    for k, v in state.items():
        if k not in own or own[k].shape != v.shape:
            raise ValueError(f"the bundle's {what} weight {k} {tuple(v.shape)} does not fit model_config; re-export the bundle.")
    module.load_state_dict(state, strict=False)


def shared_tensors(model: BrainCaptioner) -> dict[str, np.ndarray]:
    """The shared serving weights as export writes them to shared.safetensors (names as in the ONNX graphs)."""
    out = {f"enc.{k}": v for k, v in model.encoder.state_dict().items() if k.startswith(ENCODER_SHARED) and not k.startswith("adapters.")}
    out.update({f"q.{k}": v for k, v in model.qformer.state_dict().items() if k.startswith(QFORMER_SERVING)})
    return {k: v.detach().cpu().float().numpy().copy() for k, v in out.items()}
