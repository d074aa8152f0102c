"""Compositional caption checks the simulator can give exactly (docs/metrics.md, "Compositional metric").

Per caption: does it name the scene's main object (any of the generator's synonyms), that object's colour and count
(read from the same noun phrase), and the background; `exact` = all four; `copied` = the caption equals a training
caption after normalisation. src/metrics/composition.ts is the same scorer in TypeScript; both are checked against
test/fixtures/composition/cases.json.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

FIELDS = ("object", "colour", "count", "background", "exact")
_BARRIER = "|"   # stands in for a background phrase, so a noun phrase never reaches across it


def normalise(caption: str) -> str:
    """Lower case, letters and digits only, single spaces: "A red ball." and "a red ball" are the same caption."""
    return " ".join(re.sub(r"[^a-z0-9]+", " ", caption.lower()).split())


@dataclass(frozen=True)
class NounPhrase:
    category: str
    colour: str | None
    count: int | None


@dataclass(frozen=True)
class Parsed:
    objects: tuple[NounPhrase, ...]
    backgrounds: frozenset[str]


@lru_cache(maxsize=1)
def _sim_vocabulary() -> dict:
    from .sim.vocabulary import vocabulary
    return vocabulary()


def _match(tokens: list[str], i: int, phrases: list[list[str]]) -> int:
    """Index of the first phrase (longest first) that starts at tokens[i], or -1."""
    for k, p in enumerate(phrases):
        if tokens[i:i + len(p)] == p:
            return k
    return -1


def parse(caption: str, vocab: dict | None = None) -> Parsed:
    v = vocab or _sim_vocabulary()
    tokens = normalise(caption).split()
    bg_words = [b["words"].split() for b in v["backgrounds"]]
    backgrounds, i = set(), 0
    while i < len(tokens):
        k = _match(tokens, i, bg_words)
        if k < 0:
            i += 1
            continue
        backgrounds.add(v["backgrounds"][k]["background"])
        tokens[i:i + len(bg_words[k])] = [_BARRIER]
        i += 1
    noun_words = [n["words"].split() for n in v["nouns"]]
    count_words = [c["words"].split() for c in v["counts"]]
    colours, sizes = set(v["colours"]), set(v["sizes"])
    objects, i = [], 0
    while i < len(tokens):
        k = _match(tokens, i, noun_words)
        if k < 0:
            i += 1
            continue
        noun = v["nouns"][k]
        j, colour = i - 1, None
        while j >= 0 and (tokens[j] in colours or tokens[j] in sizes):   # "a small red ball": nearest colour wins
            if colour is None and tokens[j] in colours:
                colour = tokens[j]
            j -= 1
        count = None
        for c, words in zip(v["counts"], count_words):
            if j + 1 >= len(words) and tokens[j + 1 - len(words):j + 1] == words:
                count = c["count"]
                break
        if count is None and noun["plural"] is False:
            count = 1  # a singular noun names one object ("the ball")
        objects.append(NounPhrase(noun["category"], colour, count))
        i += len(noun_words[k])
    return Parsed(tuple(objects), frozenset(backgrounds))


def check(caption: str, facts: dict, vocab: dict | None = None) -> dict[str, bool]:
    """facts: {"object", "colour", "count", "background"} of the scene's main object (stimuli.tsv's columns)."""
    p = parse(caption, vocab)
    main = next((o for o in p.objects if o.category == facts["object"]), None)
    out = {
        "object": main is not None,
        "colour": main is not None and main.colour == facts["colour"],
        "count": main is not None and main.count == int(facts["count"]),
        "background": bool(p.backgrounds) and p.backgrounds == {facts["background"]},
    }
    out["exact"] = all(out.values())
    return out


def rates(captions: dict[str, str], facts: dict[str, dict], novel: dict[str, bool] | None = None,
          training_captions=None, vocab: dict | None = None) -> dict:
    """Rates in 0..1 over `captions` ({key: caption}; every key needs facts). `novel` ({key: True for held-out
    combinations}) adds `novel_exact`; `training_captions` adds `copied`."""
    keys = list(captions)
    if not keys:
        return {}
    per = {k: check(captions[k], facts[k], vocab) for k in keys}
    out = {f: sum(per[k][f] for k in keys) / len(keys) for f in FIELDS}
    if training_captions is not None:
        seen = {normalise(c) for c in training_captions}
        out["copied"] = sum(normalise(captions[k]) in seen for k in keys) / len(keys)
    if novel is not None:
        nk = [k for k in keys if novel.get(k)]
        out["novel_trials"] = len(nk)
        out["novel_exact"] = sum(per[k]["exact"] for k in nk) / len(nk) if nk else None
    return out


def scene_facts(scene) -> dict:
    """The scored facts of a world.Scene (what the simulator writes into stimuli.tsv)."""
    p = scene.primary
    return {"object": p.category, "colour": p.colour, "count": p.count, "background": scene.background}


def corpus_facts(corpus) -> dict[str, dict] | None:
    """{stimulus id: facts} for a simulator corpus: stimuli.tsv's scene columns, or, for data written before those
    columns existed, the world's scenes (a stimulus id and the dataset's WorldSeed fix the scene). None otherwise."""
    facts = corpus.meta.get("scene_facts")
    if facts is not None or corpus.meta.get("source") != "sim":
        return facts
    if not all(re.fullmatch(r"scene-\d{6}", sid) for sid in corpus.stimuli):
        return None   # not the simulator's world (a hand-made fixture)
    import json
    from pathlib import Path
    from .sim.world import WORLD_SEED, scene, scene_index
    desc = Path(corpus.meta.get("root", "")) / "dataset_description.json"
    seed = json.loads(desc.read_text()).get("WorldSeed", WORLD_SEED) if desc.exists() else WORLD_SEED
    return {sid: scene_facts(scene(scene_index(sid), seed)) for sid in corpus.stimuli}


def training_captions(corpus) -> list[str]:
    """Every reference caption of every training stimulus: what a caption counts as `copied` from."""
    return [c for caps, sp in zip(corpus.captions, corpus.split) if sp == "train" for c in caps]
