"""Greedy captioning, twice: from PyTorch modules and from a bundle's ONNX graphs (onnxruntime), same algorithm.

Prompt: embed(prefix_ids) ++ soft_prompt ++ embed(suffix_ids), then greedy decoding with the KV cache until an eos id
or max_new_tokens (docs/ARCHITECTURE.md)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch


def _take_tokens(nxt, out: list[list[int]], done: list[bool], eos: set[int]) -> bool:
    """Appends each unfinished row's next token (an eos token finishes the row); True once every row is finished."""
    for i in range(len(out)):
        t = int(nxt[i])
        if not done[i]:
            if t in eos:
                done[i] = True
            else:
                out[i].append(t)
    return all(done)


@torch.no_grad()
def greedy_torch(lm, embed, soft_prompt: torch.Tensor, gen: dict) -> list[list[int]]:
    """lm: KVLlama; embed: ids [B,S] → [B,S,H]; soft_prompt [B,Q,H]. Returns generated ids per row (eos excluded)."""
    B = soft_prompt.shape[0]
    # the prefix is the same for every row: its KV cache is computed once (B = 1) and shared
    P = len(gen["prefix_ids"])
    pre = embed(torch.tensor([gen["prefix_ids"]], dtype=torch.int64))
    _, *past = lm(pre, torch.ones(1, P, dtype=torch.int64), torch.arange(P, dtype=torch.int64)[None], *lm.empty_past(1))
    past = [p.expand(B, -1, -1, -1).contiguous() for p in past]
    suf = embed(torch.tensor([gen["suffix_ids"]] * B, dtype=torch.int64))
    x = torch.cat([soft_prompt, suf], 1)
    S = x.shape[1]
    pos = (P + torch.arange(S, dtype=torch.int64))[None].expand(B, -1)
    mask = torch.ones(B, P + S, dtype=torch.int64)
    out = [[] for _ in range(B)]
    done = [False] * B
    eos = set(gen["eos_token_ids"])
    for step in range(gen["max_new_tokens"]):
        logits, *past = lm(x, mask, pos, *past)
        nxt = logits[:, -1].argmax(-1)
        if _take_tokens(nxt, out, done, eos):
            break
        x = embed(nxt[:, None])
        P = mask.shape[1]
        pos = torch.full((B, 1), P, dtype=torch.int64)
        mask = torch.ones(B, P + 1, dtype=torch.int64)
    return out


class BundleRunner:
    """Runs a bundle with onnxruntime only (the reference for the Node inference side)."""

    def __init__(self, bundle_dir: Path, decoder: str = "lm/decoder.onnx", threads: int = 1):
        """decoder: the LM graph relative to the bundle (lm/decoder.int8.onnx for the quantized one)."""
        from functools import partial
        from .onnx_util import ort_session
        self.dir = Path(bundle_dir)
        self.m = json.loads((self.dir / "manifest.json").read_text())
        self.gen = self.m["generation"]
        self.sess = {}
        self._ort = partial(ort_session, threads=threads)
        self.qformer = self._ort(self.dir / "qformer.onnx")
        self.decoder = self._ort(self.dir / decoder)
        self.embed = self._ort(self.dir / "lm" / "embed_tokens.onnx")

    def session(self, rel: str):
        if rel not in self.sess:
            self.sess[rel] = self._ort(self.dir / rel)
        return self.sess[rel]

    def brain_tokens(self, subject: str, voxels: np.ndarray) -> np.ndarray:
        return self.session(self.m["subjects"][subject]["encoder"]).run(None, {"voxels": voxels.astype(np.float32)})[0]

    def qform(self, brain_tokens: np.ndarray):
        sp, ce = self.qformer.run(None, {"brain_tokens": brain_tokens})
        return sp, ce

    def _embed(self, ids: np.ndarray) -> np.ndarray:
        return self.embed.run(None, {"input_ids": ids.astype(np.int64)})[0]

    def greedy(self, soft_prompt: np.ndarray) -> list[list[int]]:
        g = self.gen
        B = soft_prompt.shape[0]
        pre = self._embed(np.array([g["prefix_ids"]] * B))
        suf = self._embed(np.array([g["suffix_ids"]] * B))
        x = np.concatenate([pre, soft_prompt, suf], 1).astype(np.float32)
        S = x.shape[1]
        L, H, d = g["num_layers"], g["num_kv_heads"], g["head_dim"]
        past = {f"past_key_values.{i}.{kv}": np.zeros((B, H, 0, d), np.float32) for i in range(L) for kv in ("key", "value")}
        pos = np.tile(np.arange(S, dtype=np.int64), (B, 1))
        mask = np.ones((B, S), np.int64)
        out = [[] for _ in range(B)]
        done = [False] * B
        eos = set(g["eos_token_ids"])
        names = [o.name for o in self.decoder.get_outputs()]
        for _ in range(g["max_new_tokens"]):
            res = dict(zip(names, self.decoder.run(None, {"inputs_embeds": x, "attention_mask": mask, "position_ids": pos, **past})))
            nxt = res["logits"][:, -1].argmax(-1)
            if _take_tokens(nxt, out, done, eos):
                break
            past = {k.replace("present", "past_key_values"): v for k, v in res.items() if k.startswith("present")}
            x = self._embed(nxt[:, None])
            P = mask.shape[1]
            pos = np.full((B, 1), P, np.int64)
            mask = np.ones((B, P + 1), np.int64)
        return out

    def caption(self, subject: str, voxels: np.ndarray) -> list[str]:
        from tokenizers import Tokenizer
        tok = Tokenizer.from_file(str(self.dir / "lm" / "tokenizer.json"))
        sp, _ = self.qform(self.brain_tokens(subject, voxels))
        return [tok.decode(ids, skip_special_tokens=True).strip() for ids in self.greedy(sp)]
