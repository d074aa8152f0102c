"""The weight-quantized LM decoder (lm/decoder.int8.onnx) that the Node engine prefers on CPU (lmPrecision 'auto').

Every MatMul with a constant weight — the 30 layers' projections and the lm_head (the tied embedding, 28 % of the
weights) — becomes onnxruntime's MatMulNBits with 8-bit symmetric blocks of 32 along the input dimension. A decode
step is bound by reading the weights, so 4× fewer bytes is most of the speed-up.

Why these settings (measured with `python -m mindsemantix.quant_check`, docs/inference.md): 4-bit blocks changed most
captions; 8-bit blocks with float activations (accuracy_level 0) have no fast kernel in onnxruntime-node 1.30's MLAS and
ran ~6× slower than fp32; accuracy_level 4 (activations quantized to int8 per block of 32, int32 accumulation) is the
fast kernel and keeps the logits close to fp32 (captions still differ where the LM's top two tokens are nearly tied:
43 % identical with the default bundle of 2026-11-26). The fp32 graph stays beside it (PyTorch parity, lmPrecision 'fp32')."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .util import log, sha256_file

INT8_FILE = "decoder.int8.onnx"
# Recorded in lm/lm-manifest.json; a change here makes the bootstrap regenerate the file.
QUANT = {"method": "MatMulNBits", "bits": 8, "block_size": 32, "symmetric": True, "accuracy_level": 4,
         "nodes": "every MatMul with a constant weight, lm_head included"}


def quantize_decoder(src: Path, dst: Path, bits: int = QUANT["bits"], block_size: int = QUANT["block_size"],
                     accuracy_level: int | None = QUANT["accuracy_level"], symmetric: bool = QUANT["symmetric"],
                     exclude: list[str] | None = None) -> dict:
    """Writes the block-wise weight-quantized copy of the fp32 decoder `src` to `dst` (one file, written to a temporary
    name first so an interrupted run never leaves a half file under the final name). Returns the settings used."""
    import onnx
    from onnxruntime.quantization import QuantFormat
    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer
    import logging
    logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer").setLevel(logging.WARNING)
    src, dst = Path(src), Path(dst)
    model = onnx.load(str(src))
    cfg = DefaultWeightOnlyQuantConfig(block_size=block_size, is_symmetric=symmetric, accuracy_level=accuracy_level,
                                       bits=bits, quant_format=QuantFormat.QOperator)
    q = MatMulNBitsQuantizer(model, bits=bits, block_size=block_size, is_symmetric=symmetric,
                             accuracy_level=accuracy_level, nodes_to_exclude=exclude or [], algo_config=cfg)
    q.process()
    n = sum(1 for node in q.model.model.graph.node if node.op_type == "MatMulNBits")
    if n == 0:
        raise RuntimeError(f"quantizing {src} replaced no MatMul; the installed onnxruntime {_ort_version()} does not "
                           "support MatMulNBits quantization of this graph.")
    tmp = dst.with_name(dst.name + ".tmp")
    q.model.save_model_to_file(str(tmp), use_external_data_format=False)
    tmp.replace(dst)
    log(f"lm: {dst.name} written ({n} MatMul → MatMulNBits, {bits}-bit blocks of {block_size}, "
        f"{dst.stat().st_size / 1e6:.0f} MB)")
    return {**QUANT, "bits": bits, "block_size": block_size, "symmetric": symmetric, "accuracy_level": accuracy_level,
            "matmuls": n, "onnxruntime": _ort_version(), **({"excluded": exclude} if exclude else {})}


def ensure_quantized(lm_dir: Path) -> bool:
    """Writes lm/decoder.int8.onnx from lm/decoder.onnx unless lm-manifest.json lists it with the current settings and
    size, and records its sha256, size and settings there (the Node loader verifies it like every LM file). True when it
    (re)wrote the file; a second call is a stat and a JSON read."""
    lm_dir = Path(lm_dir)
    mf = lm_dir / "lm-manifest.json"
    if not mf.exists():
        raise FileNotFoundError(f"{mf} is missing; run `python -m mindsemantix.bootstrap` to export the LM first.")
    m = json.loads(mf.read_text())
    q = lm_dir / INT8_FILE
    recorded = m.get("quantization") or {}
    if (INT8_FILE in m.get("files", {}) and q.exists() and m.get("sizes", {}).get(INT8_FILE) == q.stat().st_size
            and all(recorded.get(k) == v for k, v in QUANT.items())):
        return False
    log(f"lm: quantizing {lm_dir / 'decoder.onnx'} → {INT8_FILE} (8-bit weight blocks) …")
    m["quantization"] = quantize_decoder(lm_dir / "decoder.onnx", q)
    record_lm_file(mf, m, INT8_FILE)
    return True


def record_lm_file(manifest_path: Path, m: dict, name: str) -> None:
    """Lists the generated file lm/`name` in the LM manifest `m` (sha256 and size, which the bootstrap's freshness
    check and the Node loader read) and writes the manifest atomically."""
    f = manifest_path.parent / name
    m["files"][name] = sha256_file(f)
    m.setdefault("sizes", {})[name] = f.stat().st_size
    tmp = manifest_path.with_name(manifest_path.name + ".tmp")
    tmp.write_text(json.dumps(m, indent=2))
    tmp.replace(manifest_path)


def main(argv=None) -> int:
    """python -m mindsemantix.lm_quant LM_DIR: add the quantized decoder to an exported lm/ folder (tests, other bundles)."""
    ap = argparse.ArgumentParser(prog="python -m mindsemantix.lm_quant", description="Add lm/decoder.int8.onnx to an exported lm/ folder.")
    ap.add_argument("lm_dir", metavar="BUNDLE/lm", help="the lm/ folder that python -m mindsemantix.bootstrap exported")
    a = ap.parse_args(argv)
    try:
        ensure_quantized(Path(a.lm_dir))
    except FileNotFoundError as e:
        sys.stderr.write(f"[lm_quant] {e}\n")
        return 1
    return 0


def _ort_version() -> str:
    import onnxruntime
    return onnxruntime.__version__


if __name__ == "__main__":
    sys.exit(main())
