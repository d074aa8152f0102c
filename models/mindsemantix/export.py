"""Export a model bundle directory (docs/ARCHITECTURE.md "Model bundle"; docs/model.md).

  python -m mindsemantix.export --tiny-random OUT_DIR
      a complete bundle with tiny randomly initialised networks (encoder, Q-Former, generator, ridge baselines, MiniLM-shaped
      text encoder, 2-layer Llama) and the real SmolLM2 / MiniLM tokenizers — for tests of the inference side.
  python -m mindsemantix.export --checkpoint models/runs/default/final.pt --data data/sim --out models/bundles/default
      the trained bundle (lm/ comes from `python -m mindsemantix.bootstrap`).
"""
from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

from .model import BrainCaptioner, ModelConfig, EncoderExport, QFormerExport, GeneratorExport
from .onnx_util import export_onnx, OPSET
from .schemas import validate_manifest
from .util import sha256_file, log

# Keys as streams/config.ts reads them. The training data's estimator (sim/estimate.py) detrends (Legendre order 2)
# and z-scores per run offline; online, streams/ approximates that causally (cumulative detrend, running z-score).
DEFAULT_PREPROCESSING = {
    "tr": 1.6,
    "discard_volumes": 0,
    "detrend": {"mode": "cumulative", "max_order": 2},
    "zscore": {"mode": "running"},
    "response": {"method": "window-mean", "window": [4, 8]},
    "fd_threshold_mm": 0.5,
}


SHARED_WEIGHTS = "shared.safetensors"


class RidgeExport(torch.nn.Module):
    """The ridge baseline's graph (mindsemantix.ridge): voxels [B,V] → caption_embedding [B,E] (normalised).
    W: [V,E] or reduced-rank factors (A [V,r], B [r,E])."""

    def __init__(self, W, b: np.ndarray):
        super().__init__()
        f = W if isinstance(W, tuple) else (W,)
        self.n = len(f)
        for i, m in enumerate(f):
            self.register_buffer(f"W{i}", torch.from_numpy(np.ascontiguousarray(m, dtype=np.float32)))
        self.register_buffer("b", torch.from_numpy(np.ascontiguousarray(b, dtype=np.float32)))

    def forward(self, voxels):
        h = voxels @ self.W0
        if self.n == 2:
            h = h @ self.W1
        return torch.nn.functional.normalize(h + self.b, dim=-1)


def versions() -> dict:
    import onnx
    import onnxruntime
    import transformers
    return {"mindsemantix": "0.1.0", "bundle": 1, "torch": torch.__version__, "transformers": transformers.__version__,
            "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__, "opset": OPSET, "python": platform.python_version()}


def export_networks(model: BrainCaptioner, out: Path) -> dict:
    """encoder-<subject>.onnx, qformer.onnx, generator.onnx; returns {subject: encoder file}."""
    cfg = model.cfg
    model.eval()
    encoders = {}
    for sub, V in cfg.subjects.items():
        f = f"encoder-{sub}.onnx"
        export_onnx(EncoderExport(model, sub), (torch.randn(2, V),), out / f, ["voxels"], ["brain_tokens"],
                    {"voxels": {0: "batch"}, "brain_tokens": {0: "batch"}})
        encoders[sub] = f
    bt = torch.randn(2, cfg.tokens, cfg.dim)
    export_onnx(QFormerExport(model), (bt,), out / "qformer.onnx", ["brain_tokens"], ["soft_prompt", "caption_embedding"],
                {"brain_tokens": {0: "batch"}, "soft_prompt": {0: "batch"}, "caption_embedding": {0: "batch"}})
    ce = torch.nn.functional.normalize(torch.randn(2, cfg.text_dim), dim=-1)
    export_onnx(GeneratorExport(model), (ce, bt), out / "generator.onnx", ["caption_embedding", "brain_tokens"], ["image"],
                {"caption_embedding": {0: "batch"}, "brain_tokens": {0: "batch"}, "image": {0: "batch"}})
    return encoders


def write_bundle(out: Path, *, name: str, model: BrainCaptioner, masks: dict, text_encoder, text_tokenizer_json: Path,
                 baselines: dict, baseline_captions: list, baseline_embeddings: np.ndarray, generation: dict,
                 preprocessing: dict, seed: int, command: str, extra: dict | None = None) -> dict:
    """Writes every committed bundle file and manifest.json (lm/ is written separately). masks: subject → NIfTI path."""
    from .textenc import export_text_encoder
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for stale in list(out.glob("encoder-*.onnx")) + list(out.glob("baseline-*.onnx")):
        stale.unlink()
    cfg = model.cfg
    log(f"export: networks → {out}")
    encoders = export_networks(model, out)
    # the frozen shared encoder + Q-Former as named tensors: `mindsemantix calibrate` fits a new person's read-out
    # through them (frozen_shared.py; bundles without this file are rebuilt from their ONNX graphs)
    from safetensors.numpy import save_file
    from .frozen_shared import shared_tensors
    save_file(shared_tensors(model), str(out / SHARED_WEIGHTS))
    # generated on each machine by the bootstrap (lm/lm-manifest.json root_files), so never listed as a bundle file
    from .effnet_onnx import EFFNET_FILE
    generated = {EFFNET_FILE}
    text_encoder_generated = text_encoder is None
    if text_encoder is not None:
        log("export: text encoder")
        export_text_encoder(text_encoder, out / "text_encoder.onnx")
    else:  # the real MiniLM and its tokenizer are generated by `python -m mindsemantix.bootstrap` (lm/lm-manifest.json root_files)
        generated.update({"text_encoder.onnx", "text_tokenizer.json"})
    shutil.copyfile(text_tokenizer_json, out / "text_tokenizer.json")
    (out / "masks").mkdir(exist_ok=True)
    subjects = {}
    for sub, V in cfg.subjects.items():
        mask_rel = f"masks/sub-{sub}_roi-mask.nii.gz"
        if Path(masks[sub]).resolve() != (out / mask_rel).resolve():
            shutil.copyfile(masks[sub], out / mask_rel)
        import nibabel as nib
        nvox = int((np.asarray(nib.load(out / mask_rel).dataobj) > 0).sum())
        if nvox != V:
            raise ValueError(f"mask of subject {sub} has {nvox} voxels but the model expects {V}")
        entry = {"voxels": int(V), "mask": mask_rel, "encoder": encoders[sub]}
        if sub in baselines:
            W, b = baselines[sub]
            f = f"baseline-{sub}.onnx"
            export_onnx(RidgeExport(W, b), (torch.randn(2, V),), out / f, ["voxels"], ["caption_embedding"],
                        {"voxels": {0: "batch"}, "caption_embedding": {0: "batch"}})
            entry["baseline"] = f
        subjects[sub] = entry
    (out / "baseline_captions.json").write_text(json.dumps(list(baseline_captions), indent=0))
    np.save(out / "baseline_embeddings.npy", np.ascontiguousarray(baseline_embeddings.astype("<f4")))
    files = {}
    for f in sorted(out.rglob("*")):
        rel = f.relative_to(out).as_posix()
        if f.is_file() and not rel.startswith("lm/") and rel != "manifest.json" and rel not in generated:
            files[rel] = sha256_file(f)
    manifest = {
        "format": "mindsemantix-bundle", "version": 1, "name": name,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "versions": versions(), "seed": seed, "command": command,
        "subjects": subjects,
        "dims": {"T": cfg.tokens, "D": cfg.dim, "Q": cfg.queries, "D_lm": cfg.lm_dim, "E": cfg.text_dim,
                 "image": [3, cfg.image_size, cfg.image_size]},
        "preprocessing": preprocessing,
        "generation": generation,
        "text_encoder": {"onnx": "text_encoder.onnx", "tokenizer": "text_tokenizer.json", "max_length": 64,
                         "pooling": "mean", "normalised": True,
                         **({"generated_by": "python -m mindsemantix.bootstrap", "sha256_in": "lm/lm-manifest.json#root_files"}
                            if text_encoder_generated else {})},
        "generator": {"onnx": "generator.onnx", "inputs": ["caption_embedding", "brain_tokens"], "output": "image"},
        "baseline": {"method": "ridge-retrieval", "captions": "baseline_captions.json",
                     "embeddings": "baseline_embeddings.npy", "count": int(baseline_embeddings.shape[0])},
        "model_config": {k: v for k, v in cfg.to_dict().items() if k != "subjects"},
        "shared": {"weights": SHARED_WEIGHTS, "modules": ["enc (shared after the read-out)", "q (serving)"]},
        "files": files,
    }
    if extra:
        manifest.update(extra)
    # the contract src/inference checks at load (src/core/schemas/bundle-manifest.schema.json): fail here, not there
    validate_manifest(manifest, f"export to {out}")
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    log(f"export: manifest.json with {len(files)} files")
    return manifest


# ---- tiny random bundle ---------------------------------------------------------------------------------------------

TINY_SUBJECTS = {"sim01": 100, "sim02": 137}
TINY_CAPTIONS = ["a red car parked on a street", "a dog running on the grass", "a bowl of fruit on a table",
                 "a person riding a bicycle", "a cat sleeping on a sofa", "a boat on a calm lake"]


def tiny_config() -> ModelConfig:
    return ModelConfig(patch=8, hidden=32, dim=32, tokens=8, depth=2, heads=2, mlp_ratio=2.0, dec_dim=16, dec_depth=1, queries=4,
                       qformer_depth=1, text_dim=32, image_feat_dim=32, image_embed_dim=16, lm_dim=64, max_text_len=32,
                       image_size=16, gen_channels=16, dropout=0.0, subjects=dict(TINY_SUBJECTS))


def tiny_mask(V: int, seed: int, shape=(8, 8, 8)):
    import nibabel as nib
    rng = np.random.default_rng(seed)
    flat = np.zeros(int(np.prod(shape)), np.uint8)
    flat[np.sort(rng.choice(flat.size, V, replace=False))] = 1
    vol = flat.reshape(shape, order="F")
    aff = np.diag([3.0, 3.0, 3.0, 1.0])
    img = nib.Nifti1Image(vol, aff)
    img.header.set_xyzt_units("mm", "sec")
    return img


def export_tiny(out: Path, seed: int = 0) -> dict:
    from .lm_assets import load_tokenizer, export_lm, generation_settings
    from .llama_kv import KVLlama, tiny_random_hf_llama
    from .textenc import minilm_dir, tiny_random_encoder, load_tokenizer as load_text_tok, embed_texts
    import nibabel as nib
    out = Path(out)
    t0 = time.time()
    out.mkdir(parents=True, exist_ok=True)
    tok = load_tokenizer()
    log(f"tiny: tokenizer loaded ({len(tok)} tokens, {time.time() - t0:.0f} s)")
    lm = KVLlama.from_hf(tiny_random_hf_llama(len(tok), seed=seed))
    export_lm(lm, tok, out / "lm", source="tiny-random-llama (2 layers, width 64) with the SmolLM2-135M-Instruct tokenizer")
    torch.manual_seed(seed)
    cfg = tiny_config()
    model = BrainCaptioner(cfg).eval()
    text_tok = load_text_tok()
    text_enc = tiny_random_encoder(text_tok.get_vocab_size(), dim=cfg.text_dim, seed=seed)
    (out / "masks").mkdir(exist_ok=True)
    masks = {}
    for i, (sub, V) in enumerate(cfg.subjects.items()):
        p = out / "masks" / f"sub-{sub}_roi-mask.nii.gz"
        nib.save(tiny_mask(V, seed + i), p)
        masks[sub] = p
    rng = np.random.default_rng(seed)
    baselines = {s: (rng.normal(0, 0.1, (V, cfg.text_dim)).astype(np.float32), np.zeros(cfg.text_dim, np.float32))
                 for s, V in cfg.subjects.items()}
    bank = embed_texts(text_enc, text_tok, TINY_CAPTIONS).numpy()
    gen = generation_settings(tok, lm, max_new_tokens=8)
    m = write_bundle(out, name="tiny-random", model=model, masks=masks, text_encoder=text_enc,
                     text_tokenizer_json=minilm_dir() / "tokenizer.json", baselines=baselines,
                     baseline_captions=TINY_CAPTIONS, baseline_embeddings=bank, generation=gen,
                     preprocessing=dict(DEFAULT_PREPROCESSING), seed=seed,
                     command=f"python -m mindsemantix.export --tiny-random {out} --seed {seed}",
                     extra={"random": True})
    log(f"tiny: bundle complete in {time.time() - t0:.0f} s → {out}")
    return {"manifest": m, "model": model, "lm": lm, "text_encoder": text_enc, "baselines": baselines, "tokenizer": tok}


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m mindsemantix.export", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny-random", metavar="OUT_DIR", help="write a tiny randomly initialised bundle to OUT_DIR")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--checkpoint", help="trained checkpoint (.pt written by mindsemantix.train)")
    ap.add_argument("--data", help="simulator dataset folder (masks, stimuli.tsv, responses)")
    ap.add_argument("--out", help="bundle folder to write")
    a = ap.parse_args(argv)
    if a.tiny_random:
        export_tiny(Path(a.tiny_random), seed=a.seed)
        return 0
    if a.checkpoint and a.out:
        from .export_trained import export_trained
        export_trained(Path(a.checkpoint), Path(a.data) if a.data else None, Path(a.out))
        return 0
    ap.error("give --tiny-random OUT_DIR, or --checkpoint CKPT --data DIR --out DIR")


if __name__ == "__main__":
    sys.exit(main())
