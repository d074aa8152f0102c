"""The quantized LM decoder (lm/decoder.int8.onnx, mindsemantix.lm_quant): written once and listed with its sha256,
rewritten when its settings change, and close to the fp32 decoder — on the tiny bundle (same greedy ids as fp32) and on
the default bundle's frozen SmolLM2 (logits within stated bounds; 4-bit blocks of 32 fail every bound)."""
import json
from pathlib import Path

import numpy as np
import pytest

from mindsemantix.caption import BundleRunner
from mindsemantix.export import export_tiny
from mindsemantix.lm_quant import INT8_FILE, QUANT, ensure_quantized
from mindsemantix.util import sha256_file

DEFAULT = Path(__file__).resolve().parents[1] / "bundles" / "default"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("bundle")
    objs = export_tiny(out, seed=3)
    assert ensure_quantized(out / "lm") is True
    return out, objs


def prompt_logits(runner: BundleRunner, ids: list[int]) -> np.ndarray:
    """Logits [S, V] of one pass over `ids` (no cache)."""
    g = runner.gen
    x = runner._embed(np.array([ids]))
    S = x.shape[1]
    feeds = {"inputs_embeds": x, "attention_mask": np.ones((1, S), np.int64), "position_ids": np.arange(S)[None]}
    for i in range(g["num_layers"]):
        for kv in ("key", "value"):
            feeds[f"past_key_values.{i}.{kv}"] = np.zeros((1, g["num_kv_heads"], 0, g["head_dim"]), np.float32)
    return runner.decoder.run(["logits"], feeds)[0][0]


def test_quantized_decoder_is_listed_and_regenerated_only_when_stale(tiny):
    out, _ = tiny
    lm = out / "lm"
    m = json.loads((lm / "lm-manifest.json").read_text())
    assert m["files"][INT8_FILE] == sha256_file(lm / INT8_FILE)
    assert m["sizes"][INT8_FILE] == (lm / INT8_FILE).stat().st_size
    assert {k: m["quantization"][k] for k in QUANT} == QUANT and m["quantization"]["matmuls"] == 15  # 2 layers × 7 + lm_head
    assert (lm / "decoder.onnx").exists(), "the fp32 graph stays (parity, lmPrecision 'fp32')"
    mtime = (lm / INT8_FILE).stat().st_mtime_ns
    assert ensure_quantized(lm) is False and (lm / INT8_FILE).stat().st_mtime_ns == mtime
    m["quantization"]["block_size"] = 128  # as if written by an older setting
    (lm / "lm-manifest.json").write_text(json.dumps(m))
    assert ensure_quantized(lm) is True
    assert json.loads((lm / "lm-manifest.json").read_text())["quantization"]["block_size"] == QUANT["block_size"]


def test_tiny_quantized_greedy_ids_equal_fp32(tiny):
    out, o = tiny
    f32, q8 = BundleRunner(out), BundleRunner(out, decoder=f"lm/{INT8_FILE}")
    rng = np.random.default_rng(7)
    for sub, e in o["manifest"]["subjects"].items():
        sp, _ = f32.qform(f32.brain_tokens(sub, rng.normal(size=(3, e["voxels"])).astype(np.float32)))
        assert q8.greedy(sp) == f32.greedy(sp), sub
    a, b = prompt_logits(f32, f32.gen["prefix_ids"]), prompt_logits(q8, f32.gen["prefix_ids"])
    assert np.abs(a - b).max() <= 0.1 * a.std()  # measured 0.044 × std (onnxruntime 1.32)


@pytest.mark.skipif(not (DEFAULT / "lm" / INT8_FILE).exists(), reason="run `python -m mindsemantix.bootstrap` first")
def test_default_quantized_logits_close_to_fp32():
    """Teacher-forced over the default prompt prefix and one caption turn (the frozen LM, not the trained networks).
    Measured with onnxruntime 1.32: mean |Δ| 0.069 × std, max 0.72 × std, argmax equal at 74 of the 75 positions whose
    top-2 margin exceeds 0.1 × std (4-bit blocks of 32: 0.62, 4.7, 58 of 75)."""
    from tokenizers import Tokenizer
    f32, q8 = BundleRunner(DEFAULT, threads=2), BundleRunner(DEFAULT, decoder=f"lm/{INT8_FILE}", threads=2)
    tok = Tokenizer.from_file(str(DEFAULT / "lm" / "tokenizer.json"))
    turn = " dog red ball grass<|im_end|>\n<|im_start|>assistant\nA dog with a red ball on the grass."
    ids = f32.gen["prefix_ids"] + tok.encode(turn, add_special_tokens=False).ids
    a, b = prompt_logits(f32, ids), prompt_logits(q8, ids)
    std = a.std(-1)
    diff = np.abs(a - b)
    assert (diff.mean(-1) / std).mean() <= 0.1
    assert (diff.max(-1) / std).max() <= 1.0
    top = np.sort(a, -1)
    clear = top[:, -1] - top[:, -2] > 0.1 * std
    assert clear.sum() >= 50 and (a.argmax(-1) == b.argmax(-1))[clear].mean() >= 0.95
