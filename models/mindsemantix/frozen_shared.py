"""The frozen shared part of a bundle — brain encoder after the per-subject read-out (`to_tokens`, transformer blocks,
norms) and the Q-Former — rebuilt as PyTorch modules, so a new person's read-out can be fitted by gradient through them;
and (`load_bundle_model`, `load_bundle_weights`; train.py --init-bundle) a whole bundle's serving weights — plus every
subject's read-out from its encoder graph and the image generator from generator.onnx — back in a trainable
BrainCaptioner.

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
    # GroupNorm exports as InstanceNormalization (unit scale) → Reshape → Mul(weight [C,1,1]) → Add(bias [C,1,1]), the
    # affine parameters as anonymous initializers; the module is named by the scope of the nodes ("/g/net/net.2/Mul")
    consumers: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    for n in g.node:
        if n.op_type != "InstanceNormalization":
            continue
        rs = [c for c in consumers.get(n.output[0], []) if c.op_type == "Reshape"]
        mul = [c for r in rs for c in consumers.get(r.output[0], []) if c.op_type == "Mul"]
        add = [c for m in mul for c in consumers.get(m.output[0], []) if c.op_type == "Add"]
        if len(mul) != 1 or len(add) != 1:
            continue
        segs = [t for t in n.output[0].split("/") if t]
        if len(segs) < 3:
            continue
        name = f"{segs[0]}.{segs[-2]}"
        for node, what in ((mul[0], "weight"), (add[0], "bias")):
            w = next((i for i in node.input if i in init), None)
            if w is not None:
                out[f"{name}.{what}"] = np.asarray(init[w]).reshape(-1).copy()
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


# ---- a whole bundle back into a trainable BrainCaptioner (train.py --init-bundle) -------------------------------------

GENERATOR_SERVING = ("fc.", "net.")


def bundle_manifest(bundle: Path) -> dict:
    p = Path(bundle) / "manifest.json"
    if not p.exists():
        raise FileNotFoundError(f"{bundle} holds no manifest.json; --init-bundle takes a bundle folder (e.g. models/bundles/default).")
    return json.loads(p.read_text())


def bundle_identity(bundle: Path) -> dict:
    """What a run started from a bundle records (run.json, <stage>.pt, the exported manifest): which bundle, exactly."""
    from .util import sha256_file
    bundle = Path(bundle)
    m = bundle_manifest(bundle)
    tr = m.get("training", {})
    return {"path": str(bundle), "name": m.get("name"), "created": m.get("created"),
            "manifest_sha256": sha256_file(bundle / "manifest.json"), "command": m.get("command"),
            "checkpoint": tr.get("checkpoint"), "data": (tr.get("data") or {}).get("root")}


def check_bundle_subjects(bundle: Path, manifest: dict, voxels: dict[str, int]) -> None:
    """Every subject to train must have an encoder in the bundle, with the same voxel count as the data (its mask)."""
    have = manifest["subjects"]
    missing = [s for s in voxels if s not in have]
    if missing:
        raise ValueError(f"the bundle {bundle} has no encoder for subject(s) {', '.join(missing)} (it has {', '.join(have)}): "
                         f"train only the bundle's subjects (data.subjects) or start without --init-bundle.")
    for s, V in voxels.items():
        if int(have[s]["voxels"]) != int(V):
            raise ValueError(f"subject {s} has {V} voxels in the data but {have[s]['voxels']} in the bundle {bundle}: the data must "
                             f"be masked with the bundle's mask ({have[s]['mask']}).")


def bundle_state(bundle: Path, subjects: list[str] | None = None) -> tuple[dict, dict]:
    """The bundle's serving weights as a BrainCaptioner state dict (encoder.*, qformer.*, generator.*) for `subjects`
    (default: all of the bundle's), and where they came from. The shared encoder and Q-Former come from shared.safetensors
    when the bundle has it, else from the graphs; the subject read-outs from encoder-<subject>.onnx (only there); the
    image generator from generator.onnx when the bundle has one."""
    bundle = Path(bundle)
    manifest = bundle_manifest(bundle)
    subjects = list(subjects if subjects is not None else manifest["subjects"])
    check_bundle_subjects(bundle, manifest, {s: manifest["subjects"].get(s, {}).get("voxels", 0) for s in subjects})
    enc, q, source = shared_state(bundle, manifest)
    state = {f"encoder.{k}": v for k, v in enc.items()}
    state.update({f"qformer.{k}": v for k, v in q.items()})
    for s in subjects:
        f = manifest["subjects"][s]["encoder"]
        w = onnx_named_weights(bundle / f)
        for part in ("weight", "bias"):
            key = f"enc.adapters.{s}.read.{part}"
            if key not in w:
                raise ValueError(f"{bundle / f} holds no recoverable {key}, so subject {s}'s read-out cannot be rebuilt from this bundle.")
            state[f"encoder.adapters.{s}.read.{part}"] = torch.tensor(np.array(w[key], dtype=np.float32))
        # each subject's graph carries its own copy of the shared encoder: they must agree with what was loaded
        for k, v in _strip(w, "enc.", ENCODER_SHARED).items():
            ref = enc.get(k)
            if ref is not None and (ref.shape != v.shape or float((ref - v).abs().max()) > 1e-6):
                raise ValueError(f"the bundle's shared encoder weight {k} differs between {f} and {source}; re-export the bundle.")
    gen = manifest.get("generator", {}).get("onnx")
    gen_source = None
    if gen and (bundle / gen).exists():
        state.update({f"generator.{k}": v for k, v in _strip(onnx_named_weights(bundle / gen), "g.", GENERATOR_SERVING).items()})
        gen_source = gen
    return state, {"shared": source, "adapters": [manifest["subjects"][s]["encoder"] for s in subjects], "generator": gen_source}


def load_bundle_weights(model: BrainCaptioner, bundle: Path) -> dict:
    """Loads a bundle's serving weights into `model` (its subjects must all be in the bundle, with the same voxel counts,
    and its config the bundle's model_config). Every serving parameter must be recovered, exactly shaped; the others (MAE
    decoder, ITM / ITG heads, image projection, the subjects' MAE heads, ...) keep their fresh initialisation.
    Returns {"loaded": n, "fresh": [parameter names not in the bundle], "sources": ...}."""
    bundle = Path(bundle)
    manifest = bundle_manifest(bundle)
    subjects = {s: a.voxels for s, a in model.encoder.adapters.items()}
    check_bundle_subjects(bundle, manifest, subjects)
    state, sources = bundle_state(bundle, list(subjects))
    own = model.state_dict()
    serving = [k for k in own if (k.startswith("encoder.") and k[8:].startswith(ENCODER_SHARED))
               or (k.startswith("qformer.") and k[8:].startswith(QFORMER_SERVING))
               or any(k == f"encoder.adapters.{s}.read.{p}" for s in subjects for p in ("weight", "bias"))
               or (sources["generator"] and k.startswith("generator."))]
    missing = [k for k in serving if k not in state]
    if missing:
        raise ValueError(f"the bundle {bundle} lacks {len(missing)} serving weight(s) that its graphs should hold (first: {missing[0]}), "
                         f"so the model cannot be rebuilt from it exactly.")
    for k, v in state.items():
        if k not in own or tuple(own[k].shape) != tuple(v.shape):
            raise ValueError(f"the bundle's weight {k} {tuple(v.shape)} does not fit the model "
                             f"{tuple(own[k].shape) if k in own else '(no such parameter)'}; build it from the bundle's model_config.")
    model.load_state_dict(state, strict=False)
    return {"loaded": len(state), "fresh": [k for k in own if k not in state], "sources": sources}


def fresh_summary(names: list[str]) -> str:
    """Parameter names grouped by module, e.g. 'encoder.dec_blocks (12), qformer.itm_head (2)'."""
    groups: dict[str, int] = {}
    for n in names:
        parts = n.split(".")
        keep = parts[:4] if len(parts) > 2 and parts[1] == "adapters" else parts[:2]
        if len(keep) == len(parts) > 1 and parts[-1] in ("weight", "bias"):
            keep = keep[:-1]
        key = ".".join(keep)
        groups[key] = groups.get(key, 0) + 1
    return ", ".join(f"{k} ({v})" for k, v in groups.items())


def load_bundle_model(bundle: Path, subjects: list[str] | None = None, **overrides) -> BrainCaptioner:
    """A full BrainCaptioner (model_config and voxel counts from the manifest, `overrides` on top, e.g. dropout=0.0) whose
    serving parts hold the bundle's weights exactly; the other modules are freshly initialised (logged)."""
    from .util import log
    bundle = Path(bundle)
    manifest = bundle_manifest(bundle)
    subjects = list(subjects if subjects is not None else manifest["subjects"])
    check_bundle_subjects(bundle, manifest, {s: manifest["subjects"].get(s, {}).get("voxels", 0) for s in subjects})
    mc = {**manifest["model_config"], **overrides, "subjects": {s: int(manifest["subjects"][s]["voxels"]) for s in subjects}}
    model = BrainCaptioner(ModelConfig(**mc))
    rep = load_bundle_weights(model, bundle)
    log(f"bundle {manifest.get('name')}: {rep['loaded']} tensors loaded; not in the bundle (fresh): {fresh_summary(rep['fresh'])}")
    return model.eval()
