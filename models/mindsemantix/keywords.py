"""Content words of a stimulus's references, as LM token ids: the target of the soft prompt's alignment step.

The frozen instruct LM turns "Write a one-sentence caption of an image showing: <purple flower green lawn>" into a fluent
caption. Regressing the soft prompt onto the embeddings of such words needs no back-propagation through the LM (CPU
budget); the LM loss then refines it."""
from __future__ import annotations

import re
from collections import Counter

import torch

STOP = set("""a an the of on in at is are was were be there this that these those with to and or near by for from it its
its' image picture photo photograph showing shown shows show sits sit sitting stands standing lies lying appears seen
some one's into onto over under beside next against top front""".split())


def keywords(refs: list[str], max_words: int) -> list[str]:
    """Words in at least two references (all words of the first one if none), in the order they first appear."""
    per = [[w for w in re.findall(r"[a-z]+", r.lower()) if w not in STOP] for r in refs]
    count = Counter(w for ws in per for w in set(ws))
    out = []
    for ws in per:
        for w in ws:
            if count[w] >= 2 and w not in out:
                out.append(w)
    if not out and per:
        out = list(dict.fromkeys(per[0]))
    return out[:max_words]


def keyword_tokens(captions: list[list[str]], tok, Q: int, filler: str = ",") -> torch.Tensor:
    """[S, Q] LM token ids: " word1 word2 ..." truncated / padded with `filler` to exactly Q tokens."""
    fill = tok.encode(filler)[0]
    out = torch.full((len(captions), Q), fill, dtype=torch.int64)
    for i, refs in enumerate(captions):
        ids = tok.encode(" " + " ".join(keywords(refs, Q)))[:Q]
        out[i, :len(ids)] = torch.tensor(ids, dtype=torch.int64)
    return out
