"""Frozen-encoder targets, computed once per corpus and cached: MiniLM caption embeddings, LM caption tokens,
EfficientNet-Lite0 image features, and small stimulus images for the generator."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .util import log


def corpus_key(corpus, extra: dict) -> str:
    h = hashlib.sha256()
    h.update(json.dumps([corpus.stimuli, corpus.captions, extra], sort_keys=True).encode())
    return h.hexdigest()[:16]


def caption_tokens(tok, captions: list[list[str]], max_tokens: int, eos_id: int):
    """[S, K, L] int64 token ids (caption then eos), padded with -1; K = captions per stimulus (cycled to the max)."""
    K = max(len(c) for c in captions)
    L = max_tokens + 1
    out = torch.full((len(captions), K, L), -1, dtype=torch.int64)
    for s, caps in enumerate(captions):
        for k in range(K):
            text = caps[k % len(caps)].strip()
            ids = tok.encode(text, add_special_tokens=False)
            ids = (ids.ids if hasattr(ids, "ids") else ids)[:max_tokens] + [eos_id]
            out[s, k, :len(ids)] = torch.tensor(ids)
    return out


def build_targets(corpus, lm_tok, eos_id: int, cfg, cache_dir: Path, tiny_text_encoder=None) -> dict:
    """Returns {cap_emb [S,K,E], cap_tok [S,K,L], img_feat [S,F] | None, img [S,3,H,W] | None}."""
    key = corpus_key(corpus, {"L": cfg["caption_max_tokens"], "H": cfg["image_size"], "tiny": tiny_text_encoder is not None,
                              "E": cfg["text_dim"]})
    path = Path(cache_dir) / f"targets-{key}.pt"
    if path.exists():
        log(f"targets: cached {path.name}")
        return torch.load(path, weights_only=False)
    from .textenc import load_minilm, load_tokenizer, embed_texts
    K = max(len(c) for c in corpus.captions)
    log(f"targets: MiniLM embeddings of {len(corpus.captions)}×{K} captions …")
    enc = tiny_text_encoder if tiny_text_encoder is not None else load_minilm()
    flat = [caps[k % len(caps)] for caps in corpus.captions for k in range(K)]
    emb = embed_texts(enc, load_tokenizer(), flat).view(len(corpus.captions), K, -1)
    tok = caption_tokens(lm_tok, corpus.captions, cfg["caption_max_tokens"], eos_id)
    img_feat = img = None
    if corpus.image is not None:
        log(f"targets: EfficientNet-Lite0 features of {len(corpus.stimuli)} stimuli …")
        from .effnet import load_effnet
        net = load_effnet()
        feats, smalls = [], []
        H = cfg["image_size"]
        with torch.no_grad():
            for i0 in range(0, len(corpus.stimuli), 32):
                ims = []
                for i in range(i0, min(len(corpus.stimuli), i0 + 32)):
                    a = np.asarray(corpus.image(i).convert("RGB"), np.float32) / 255.0
                    ims.append(torch.from_numpy(a).permute(2, 0, 1))
                x = torch.stack([F.interpolate(t[None], size=(224, 224), mode="bilinear", antialias=True, align_corners=False)[0] for t in ims])
                feats.append(net.features(x))
                smalls.append(F.interpolate(x, size=(H, H), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1))
        img_feat, img = torch.cat(feats), torch.cat(smalls)
    out = {"cap_emb": emb.float(), "cap_tok": tok, "img_feat": img_feat, "img": img}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save(out, tmp)
    os.replace(tmp, path)  # atomic: DDP ranks waiting for the cache never read a partial file
    log(f"targets: saved {path}")
    return out
