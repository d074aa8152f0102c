"""A Llama decoder with an explicit key/value cache as plain tensors.

The frozen LM is exported from this module (not from transformers' own class) so the ONNX graph has exactly the bundle's
IO: inputs_embeds, attention_mask, position_ids, past_key_values.<i>.key/.value -> logits, present.<i>.key/.value.
Weights come from a transformers LlamaForCausalLM (real SmolLM2 or a tiny random one); parity with it is tested.
"""
from __future__ import annotations

from dataclasses import dataclass, asdict

import torch
from torch import nn
import torch.nn.functional as F


@dataclass
class LlamaShape:
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rope_theta: float
    rms_norm_eps: float

    @staticmethod
    def from_hf(cfg) -> "LlamaShape":
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        rope_theta = getattr(cfg, "rope_theta", None)
        if rope_theta is None:  # transformers 5 keeps it in rope_parameters
            rp = getattr(cfg, "rope_parameters", None) or {}
            rope_theta = rp.get("rope_theta", 10000.0)
        return LlamaShape(cfg.vocab_size, cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers,
                          cfg.num_attention_heads, cfg.num_key_value_heads, head_dim, float(rope_theta), float(cfg.rms_norm_eps))

    def to_dict(self) -> dict:
        return asdict(self)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        var = x.pow(2).mean(-1, keepdim=True)
        return self.weight * (x * torch.rsqrt(var + self.eps))


def rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class Layer(nn.Module):
    def __init__(self, s: LlamaShape):
        super().__init__()
        self.s = s
        h, d = s.hidden_size, s.head_dim
        self.input_layernorm = RMSNorm(h, s.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(h, s.rms_norm_eps)
        self.q_proj = nn.Linear(h, s.num_heads * d, bias=False)
        self.k_proj = nn.Linear(h, s.num_kv_heads * d, bias=False)
        self.v_proj = nn.Linear(h, s.num_kv_heads * d, bias=False)
        self.o_proj = nn.Linear(s.num_heads * d, h, bias=False)
        self.gate_proj = nn.Linear(h, s.intermediate_size, bias=False)
        self.up_proj = nn.Linear(h, s.intermediate_size, bias=False)
        self.down_proj = nn.Linear(s.intermediate_size, h, bias=False)

    def forward(self, x, cos, sin, bias, past_k, past_v):
        s = self.s
        B, S, _ = x.shape
        h = self.input_layernorm(x)
        q = self.q_proj(h).view(B, S, s.num_heads, s.head_dim).transpose(1, 2)
        k = self.k_proj(h).view(B, S, s.num_kv_heads, s.head_dim).transpose(1, 2)
        v = self.v_proj(h).view(B, S, s.num_kv_heads, s.head_dim).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = torch.cat([past_k, k], dim=2)
        v = torch.cat([past_v, v], dim=2)
        rep = s.num_heads // s.num_kv_heads
        kk = k.repeat_interleave(rep, dim=1)
        vv = v.repeat_interleave(rep, dim=1)
        att = torch.matmul(q, kk.transpose(-1, -2)) * (s.head_dim ** -0.5) + bias
        att = torch.softmax(att, dim=-1)
        o = torch.matmul(att, vv).transpose(1, 2).reshape(B, S, s.num_heads * s.head_dim)
        x = x + self.o_proj(o)
        h = self.post_attention_layernorm(x)
        x = x + self.down_proj(F.silu(self.gate_proj(h)) * self.up_proj(h))
        return x, k, v


class KVLlama(nn.Module):
    """forward(inputs_embeds [B,S,H], attention_mask int64 [B,P+S], position_ids int64 [B,S], *past) -> logits, *present.

    `past` is the flat list key0, value0, key1, value1, ... each [B, H_kv, P, d] (P may be 0)."""

    def __init__(self, s: LlamaShape):
        super().__init__()
        self.s = s
        self.embed_tokens = nn.Embedding(s.vocab_size, s.hidden_size)
        self.layers = nn.ModuleList([Layer(s) for _ in range(s.num_layers)])
        self.norm = RMSNorm(s.hidden_size, s.rms_norm_eps)
        self.lm_head = nn.Linear(s.hidden_size, s.vocab_size, bias=False)
        inv = 1.0 / (s.rope_theta ** (torch.arange(0, s.head_dim, 2, dtype=torch.float32) / s.head_dim))
        self.register_buffer("inv_freq", inv, persistent=False)

    @staticmethod
    def from_hf(hf_model) -> "KVLlama":
        s = LlamaShape.from_hf(hf_model.config)
        m = KVLlama(s)
        sd = hf_model.state_dict()
        own = {}
        for k, v in sd.items():
            k2 = k.replace("model.", "", 1) if k.startswith("model.") else k
            k2 = k2.replace("self_attn.", "").replace("mlp.", "")
            own[k2] = v
        if "lm_head.weight" not in own:  # tied embeddings
            own["lm_head.weight"] = own["embed_tokens.weight"]
        missing, unexpected = m.load_state_dict(own, strict=False)
        missing = [k for k in missing if k != "inv_freq"]
        if missing or unexpected:
            raise ValueError(f"LM weights do not match the Llama layout: missing {missing[:5]}, unexpected {unexpected[:5]}")
        return m.eval()

    def empty_past(self, batch: int, dtype=torch.float32):
        s = self.s
        z = torch.zeros(batch, s.num_kv_heads, 0, s.head_dim, dtype=dtype)
        return [z] * (2 * s.num_layers)

    def forward(self, inputs_embeds, attention_mask, position_ids, *past):
        h, presents = self.hidden(inputs_embeds, attention_mask, position_ids, *past)
        return (self.lm_head(h), *presents)

    def hidden(self, inputs_embeds, attention_mask, position_ids, *past):
        """Final normalised hidden states [B,S,H] and the presents (training computes logits only where needed)."""
        B, S, _ = inputs_embeds.shape
        P = past[0].shape[2]
        freqs = position_ids.to(torch.float32)[:, :, None] * self.inv_freq[None, None, :]
        emb = torch.cat([freqs, freqs], dim=-1)
        cos = emb.cos()[:, None, :, :]
        sin = emb.sin()[:, None, :, :]
        # causal over absolute cache positions + padding mask from attention_mask
        qi = torch.arange(S, device=inputs_embeds.device)[:, None] + P
        kj = torch.arange(P + S, device=inputs_embeds.device)[None, :]
        allowed = (kj <= qi)[None, None, :, :] & (attention_mask[:, None, None, :] > 0)
        bias = torch.where(allowed, torch.zeros((), dtype=inputs_embeds.dtype), torch.full((), -1e9, dtype=inputs_embeds.dtype))
        x = inputs_embeds
        presents = []
        for i, layer in enumerate(self.layers):
            x, k, v = layer(x, cos, sin, bias, past[2 * i], past[2 * i + 1])
            presents += [k, v]
        return self.norm(x), presents


def tiny_random_hf_llama(vocab_size: int, seed: int = 0, hidden: int = 64, layers: int = 2, heads: int = 4, kv_heads: int = 2):
    """A few-layer, narrow, randomly initialised Llama with the real tokenizer's vocabulary (for tests and the tiny bundle)."""
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=vocab_size, hidden_size=hidden, intermediate_size=hidden * 2, num_hidden_layers=layers,
                      num_attention_heads=heads, num_key_value_heads=kv_heads, max_position_embeddings=512,
                      rms_norm_eps=1e-5, tie_word_embeddings=True, bos_token_id=1, eos_token_id=2)
    m = LlamaForCausalLM(cfg)
    # spread the logits so greedy decoding is not dominated by ties
    with torch.no_grad():
        m.model.embed_tokens.weight.normal_(0, 0.5)
    return m.eval()
