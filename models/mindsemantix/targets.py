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


def _save(obj, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)  # atomic: DDP ranks waiting for the cache never read a partial file


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
                              "E": cfg["text_dim"], "K": cfg.get("embed_captions"), "R": cfg.get("effnet_size")})
    path = Path(cache_dir) / f"targets-{key}.pt"
    if path.exists():
        log(f"targets: cached {path.name}")
        return torch.load(path, weights_only=False)
    from .textenc import load_minilm, load_tokenizer, embed_texts
    # embed at most `embed_captions` references per stimulus (CPU budget; the others still serve as LM targets)
    K = min(max(len(c) for c in corpus.captions), int(cfg.get("embed_captions") or 99))
    flat = [caps[k % len(caps)] for caps in corpus.captions for k in range(K)]
    # per-caption / per-stimulus stores, so a corpus with more subjects only computes what is new
    tag = "tiny" if tiny_text_encoder is not None else "minilm"
    store_p = Path(cache_dir) / f"{tag}-captions.pt"
    store = torch.load(store_p, weights_only=False) if store_p.exists() else {}
    todo = sorted({c for c in flat if c not in store}, key=len)
    if todo:
        log(f"targets: MiniLM embeddings of {len(todo)} new captions ({len(store)} cached) …")
        enc = tiny_text_encoder if tiny_text_encoder is not None else load_minilm()
        tk = load_tokenizer()
        for i0 in range(0, len(todo), 2048):
            part = todo[i0:i0 + 2048]
            for c, e in zip(part, embed_texts(enc, tk, part, batch=256)):
                store[c] = e.clone()
            log(f"targets: {min(len(todo), i0 + 2048)}/{len(todo)} captions")
        _save(store, store_p)
    emb = torch.stack([store[c] for c in flat]).view(len(corpus.captions), K, -1)
    tok = caption_tokens(lm_tok, corpus.captions, cfg["caption_max_tokens"], eos_id)
    img_feat = img = None
    if corpus.image is not None:
        H = cfg["image_size"]
        istore_p = Path(cache_dir) / f"effnet{int(cfg.get('effnet_size') or 224)}-{H}.pt"
        istore = torch.load(istore_p, weights_only=False) if istore_p.exists() else {}
        todo = [i for i, sid in enumerate(corpus.stimuli) if sid not in istore]
        if todo:
            log(f"targets: EfficientNet-Lite0 features of {len(todo)} new stimuli ({len(istore)} cached) …")
            from .effnet import load_effnet
            net = load_effnet()
            with torch.no_grad():
                for j0 in range(0, len(todo), 32):
                    ids = todo[j0:j0 + 32]
                    ims = [torch.from_numpy(np.asarray(corpus.image(i).convert("RGB"), np.float32) / 255.0).permute(2, 0, 1) for i in ids]
                    R = int(cfg.get("effnet_size") or 224)
                    x = torch.stack([F.interpolate(t[None], size=(R, R), mode="bilinear", antialias=True, align_corners=False)[0] for t in ims])
                    f = net.features(x)
                    sm = F.interpolate(x, size=(H, H), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)
                    for k, i in enumerate(ids):
                        istore[corpus.stimuli[i]] = (f[k].clone(), sm[k].clone())
                    if (j0 // 32) % 20 == 0:
                        log(f"targets: {min(len(todo), j0 + 32)}/{len(todo)} images")
            _save(istore, istore_p)
        img_feat = torch.stack([istore[s][0] for s in corpus.stimuli])
        img = torch.stack([istore[s][1] for s in corpus.stimuli])
    out = {"cap_emb": emb.float(), "cap_tok": tok, "img_feat": img_feat, "img": img}
    _save(out, path)
    log(f"targets: saved {path}")
    return out
