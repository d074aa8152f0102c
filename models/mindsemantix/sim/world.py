"""The stimulus world: procedurally composed scenes, their 256×256 renderings and 5 COCO-like reference captions.

A scene is a deterministic function of (world seed, scene index). Indices below N_TEST are test scenes: their primary
object is a (category, colour) pair held out of every training scene, so test scenes are novel compositions of
familiar parts. Everything else is a training scene.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw

from .rng import stream

IMAGE_SIZE = 256
N_SCENES = 12000          # scene-000000 … scene-011999
N_TEST = 300              # scene-000000 … scene-000299 are test scenes (novel compositions)
WORLD_SEED = 0            # the world is fixed: sessions with any --seed show the same scenes

CATEGORIES = ["ball", "box", "tree", "house", "car", "boat", "flower", "kite", "cup", "umbrella", "fish", "bird"]
PLURAL = {"box": "boxes", "fish": "fish", "goldfish": "goldfish", "daisy": "daisies"}
SYNONYMS = {
    "ball": ["ball", "ball", "sphere", "toy ball"], "box": ["box", "box", "crate", "cube"], "tree": ["tree", "tree", "tree", "bush"],
    "house": ["house", "house", "building", "cottage"], "car": ["car", "car", "vehicle", "automobile"],
    "boat": ["boat", "boat", "sailboat", "sail boat"], "flower": ["flower", "flower", "blossom", "daisy"],
    "kite": ["kite", "kite", "kite", "diamond kite"], "cup": ["cup", "cup", "mug", "coffee mug"],
    "umbrella": ["umbrella", "umbrella", "parasol", "umbrella"], "fish": ["fish", "fish", "goldfish", "fish"],
    "bird": ["bird", "bird", "songbird", "bird"],
}
COLOURS = {
    "red": (205, 35, 35), "orange": (240, 130, 20), "yellow": (240, 215, 40), "green": (40, 160, 55), "blue": (35, 75, 210),
    "purple": (130, 50, 170), "pink": (240, 130, 180), "white": (245, 245, 245), "black": (25, 25, 25), "brown": (125, 80, 40),
}
COLOUR_NAMES = list(COLOURS)
SIZES = ["small", "medium", "large"]
SIZE_PX = {"small": 20, "medium": 31, "large": 46}
SIZE_WORDS = {"small": ["small", "little", "tiny"], "medium": [""], "large": ["large", "big", "huge"]}
RELATIONS = ["left of", "right of", "above", "below"]
BACKGROUNDS = ["field", "beach", "snow", "street", "room", "night", "lake", "wall"]
BG_PHRASES = {
    "field": ["in a grassy field", "on the grass", "in a park", "on a green lawn", "under a blue sky"],
    "beach": ["on a sandy beach", "on the beach", "by the ocean", "near the sea"],
    "snow": ["in the snow", "on a snowy field", "in a snowy landscape", "on white snow"],
    "street": ["on a city street", "on the street", "in the city", "on a road"],
    "room": ["in a room", "indoors", "on a wooden floor", "inside a room"],
    "night": ["at night", "under a starry sky", "in the dark", "against the night sky"],
    "lake": ["on a lake", "near the water", "by a lake", "on the water"],
    "wall": ["against a plain wall", "in front of a blank wall", "on a plain background", "against a blank background"],
}
BG_NOUNS = {"field": "A grassy field", "beach": "A sandy beach", "snow": "A snowy field", "street": "A city street",
            "room": "A room", "night": "The night sky", "lake": "A lake", "wall": "A plain wall"}
HELD_OUT_PER_CATEGORY = 2
# How captions say a group's count (one object takes "a"/"an"); repeated entries weight the draw.
COUNT_PHRASES = {2: ["two", "two", "a pair of", "a couple of"], 3: ["three", "three", "several", "a group of", "a few"]}


@dataclass(frozen=True)
class Group:
    category: str
    colour: str
    size: str
    count: int
    positions: tuple[tuple[float, float], ...]   # centres in pixels


@dataclass(frozen=True)
class Scene:
    index: int
    split: str                 # "train" | "test"
    background: str
    bg_tint: tuple[int, int, int]
    primary: Group
    secondary: Group | None
    relation: str | None       # relation of primary to secondary
    captions: tuple[str, ...] = field(default=())

    @property
    def id(self) -> str:
        return scene_id(self.index)


def scene_id(index: int) -> str:
    return f"scene-{index:06d}"


def scene_index(sid: str) -> int:
    return int(sid.split("-")[1])


def split_of(index: int) -> str:
    return "test" if index < N_TEST else "train"


@lru_cache(maxsize=4)
def held_out_pairs(world_seed: int = WORLD_SEED) -> frozenset[tuple[str, str]]:
    rng = stream(world_seed, "held-out-pairs")
    out = set()
    for c in CATEGORIES:
        for k in rng.choice(len(COLOUR_NAMES), HELD_OUT_PER_CATEGORY, replace=False):
            out.add((c, COLOUR_NAMES[k]))
    return frozenset(out)


def _place(rng: np.random.Generator, n: int, r: float, box: tuple[float, float, float, float], avoid: list[tuple[float, float, float]]):
    """n non-overlapping centres of radius r inside box (x0, y0, x1, y1), away from `avoid` circles."""
    pts: list[tuple[float, float]] = []
    for _ in range(400):
        if len(pts) == n:
            break
        x = rng.uniform(box[0] + r, max(box[0] + r + 1, box[2] - r))
        y = rng.uniform(box[1] + r, max(box[1] + r + 1, box[3] - r))
        ok = all(math.hypot(x - px, y - py) > 2.05 * r for px, py in pts)
        ok = ok and all(math.hypot(x - ax, y - ay) > r + ar + 4 for ax, ay, ar in avoid)
        if ok:
            pts.append((x, y))
    while len(pts) < n:  # crowded: accept overlap rather than loop forever
        pts.append((rng.uniform(box[0] + r, box[2] - r), rng.uniform(box[1] + r, box[3] - r)))
    return tuple((float(x), float(y)) for x, y in pts)


def _compose(index: int, world_seed: int) -> Scene:
    rng = stream(world_seed, "scene", index)
    split = split_of(index)
    held = held_out_pairs(world_seed)
    bg = BACKGROUNDS[rng.integers(len(BACKGROUNDS))]
    tint = tuple(int(v) for v in rng.integers(-10, 11, 3))
    for _ in range(1000):
        if split == "test":
            pc, pcol = sorted(held)[rng.integers(len(held))]
        else:
            pc, pcol = CATEGORIES[rng.integers(len(CATEGORIES))], COLOUR_NAMES[rng.integers(len(COLOUR_NAMES))]
        has_sec = rng.random() < 0.55
        sc = scol = None
        if has_sec:
            sc = CATEGORIES[rng.integers(len(CATEGORIES))]
            while sc == pc:
                sc = CATEGORIES[rng.integers(len(CATEGORIES))]
            scol = COLOUR_NAMES[rng.integers(len(COLOUR_NAMES))]
        bad = (pc, pcol) in held if split == "train" else False
        bad = bad or (has_sec and (sc, scol) in held)
        if not bad:
            break
    count = int(rng.choice([1, 2, 3], p=[0.5, 0.3, 0.2]))
    psize = SIZES[rng.choice(3, p=[0.3, 0.35, 0.35] if count == 1 else [0.5, 0.4, 0.1])]
    pr = SIZE_PX[psize] * rng.uniform(0.9, 1.1)
    S = IMAGE_SIZE
    if not has_sec:
        pos = _place(rng, count, pr, (8, 8, S - 8, S - 8), [])
        return Scene(index, split, bg, tint, Group(pc, pcol, psize, count, pos), None, None)
    ssize = SIZES[rng.integers(3)]
    sr = SIZE_PX[ssize] * rng.uniform(0.9, 1.1)
    rel = RELATIONS[rng.integers(len(RELATIONS))]
    # Primary group in one half, secondary object in the other, according to the relation.
    half = {"left of": ((8, 8, S / 2 - 4, S - 8), (S / 2 + 4, 8, S - 8, S - 8)),
            "right of": ((S / 2 + 4, 8, S - 8, S - 8), (8, 8, S / 2 - 4, S - 8)),
            "above": ((8, 8, S - 8, S / 2 - 4), (8, S / 2 + 4, S - 8, S - 8)),
            "below": ((8, S / 2 + 4, S - 8, S - 8), (8, 8, S - 8, S / 2 - 4))}[rel]
    spos = _place(rng, 1, sr, half[1], [])
    ppos = _place(rng, count, min(pr, (S / 2 - 12) / (2.1 if count > 1 else 1.0)), half[0], [(spos[0][0], spos[0][1], sr)])
    return Scene(index, split, bg, tint, Group(pc, pcol, psize, count, ppos), Group(sc, scol, ssize, 1, spos), rel)


@lru_cache(maxsize=20000)
def scene(index: int, world_seed: int = WORLD_SEED) -> Scene:
    if not 0 <= index < N_SCENES:
        raise ValueError(f"scene index {index} outside 0..{N_SCENES - 1}")
    s = _compose(index, world_seed)
    caps = tuple(captions(s, stream(world_seed, "captions", index)))
    return Scene(s.index, s.split, s.background, s.bg_tint, s.primary, s.secondary, s.relation, caps)


# ---------------------------------------------------------------- captions

def _plural(noun: str) -> str:
    head, _, last = noun.rpartition(" ")
    p = PLURAL.get(last, last + "s")
    return f"{head} {p}" if head else p


def _np(rng, g: Group, detail: int) -> str:
    """Noun phrase: detail 2 = size+colour, 1 = colour (usually), 0 = bare."""
    noun = SYNONYMS[g.category][rng.integers(4)] if detail > 0 else g.category
    adj = []
    if detail >= 2 and g.size != "medium":
        adj.append(SIZE_WORDS[g.size][rng.integers(len(SIZE_WORDS[g.size]))])
    if detail >= 2 or (detail == 1 and rng.random() < 0.8):
        adj.append(g.colour)
    words = " ".join(adj + [noun if g.count == 1 else _plural(noun)])
    if g.count == 1:
        return ("an " if words[0] in "aeiou" else "a ") + words
    phrases = COUNT_PHRASES[g.count]
    return phrases[rng.integers(len(phrases))] + " " + words


REL_WORDS = {"left of": ["to the left of", "on the left of", "left of"], "right of": ["to the right of", "on the right of", "right of"],
             "above": ["above", "over", "just above"], "below": ["below", "under", "beneath"]}
VAGUE_REL = ["next to", "near", "beside", "with"]
VERB_SG = {"car": "parked", "boat": "floating", "bird": "flying", "kite": "flying", "fish": "swimming", "house": "standing", "tree": "standing"}


def _be(g: Group) -> str:
    return "is" if g.count == 1 else "are"


def captions(s: Scene, rng: np.random.Generator) -> list[str]:
    details = [2, 2, 1, 1, 0]
    rng.shuffle(details)
    templates = list(range(6))
    rng.shuffle(templates)
    out: list[str] = []
    for d, t in zip(details, templates[:5]):
        out.append(_finish(rng, _caption(rng, s, d, t)))
    return out


def _caption(rng, s: Scene, d: int, t: int) -> str:
    p = _np(rng, s.primary, d)
    bg = BG_PHRASES[s.background][rng.integers(len(BG_PHRASES[s.background]))]
    with_bg = d == 2 or rng.random() < 0.5
    verb = VERB_SG.get(s.primary.category)
    if s.secondary is None:
        if t == 0:
            return f"{p} {bg}"
        if t == 1:
            return f"{p} {_be(s.primary)} {verb or 'shown'} {bg}" if verb or d else f"{p} {bg}"
        if t == 2:
            return f"there {_be(s.primary)} {p} {bg}"
        if t == 3:
            return ["a picture of ", "a photo of ", "an image of ", "a drawing of "][rng.integers(4)] + p + (f" {bg}" if with_bg else "")
        if t == 4:
            return f"{BG_NOUNS[s.background]} with {p} in it"
        return f"{p} {'sits' if s.primary.count == 1 else 'sit'} {bg}"
    q = _np(rng, s.secondary, d if d < 2 else int(rng.integers(1, 3)))
    rel = REL_WORDS[s.relation][rng.integers(3)] if d > 0 or rng.random() < 0.4 else VAGUE_REL[rng.integers(4)]
    if t == 0:
        return f"{p} {rel} {q}" + (f" {bg}" if with_bg else "")
    if t == 1:
        return f"{p} {_be(s.primary)} {verb + ' ' if verb else ''}{rel} {q}" + (f" {bg}" if with_bg else "")
    if t == 2:
        return f"there {_be(s.primary)} {p} {rel} {q}" + (f" {bg}" if with_bg else "")
    if t == 3:
        return ["a picture of ", "a photo of ", "an image showing ", "a scene with "][rng.integers(4)] + f"{p} and {q}" + (f" {bg}" if with_bg else "")
    if t == 4:
        inv = {"left of": "to the right of", "right of": "to the left of", "above": "below", "below": "above"}[s.relation]
        return f"{q} {inv if d > 0 else VAGUE_REL[rng.integers(3)]} {p}"
    return f"{BG_NOUNS[s.background]} with {p} and {q}"


def _finish(rng, c: str) -> str:
    c = " ".join(c.split())
    r = rng.random()
    if r < 0.85:
        c = c[0].upper() + c[1:]
    return c + ("." if rng.random() < 0.8 else "")


# ---------------------------------------------------------------- rendering

def _bg(draw: ImageDraw.ImageDraw, s: Scene, rng, S: int):
    t = np.array(s.bg_tint)

    def col(c):
        return tuple(int(v) for v in np.clip(np.array(c) + t, 0, 255))
    h = int(S * rng.uniform(0.45, 0.62))
    if s.background in ("field", "beach", "lake", "snow", "street"):
        sky = {"snow": (200, 205, 212), "street": (170, 185, 200)}.get(s.background, (120, 180, 240))
        draw.rectangle([0, 0, S, h], fill=col(sky))
    if s.background == "field":
        draw.rectangle([0, h, S, S], fill=col((70, 150, 60)))
    elif s.background == "beach":
        sea = int(h + S * 0.12)
        draw.rectangle([0, h, S, sea], fill=col((40, 110, 180)))
        draw.rectangle([0, sea, S, S], fill=col((225, 200, 140)))
    elif s.background == "lake":
        draw.rectangle([0, h, S, S], fill=col((50, 100, 160)))
        for _ in range(12):
            y = rng.uniform(h + 4, S)
            x = rng.uniform(0, S)
            draw.line([x, y, x + rng.uniform(10, 40), y], fill=col((140, 180, 220)), width=max(1, S // 256))
    elif s.background == "snow":
        draw.rectangle([0, h, S, S], fill=col((240, 242, 248)))
    elif s.background == "street":
        x = 0
        while x < S:
            w = rng.uniform(0.1, 0.25) * S
            top = rng.uniform(0.15, 0.4) * S
            draw.rectangle([x, top, x + w, h], fill=col(tuple(int(v) for v in rng.integers(90, 170, 3))))
            x += w + 2
        draw.rectangle([0, h, S, S], fill=col((80, 80, 85)))
        yd = (h + S) / 2
        for x in range(0, S, S // 8):
            draw.rectangle([x, yd - S / 128, x + S / 16, yd + S / 128], fill=(235, 235, 235))
    elif s.background == "room":
        draw.rectangle([0, 0, S, h], fill=col((225, 210, 180)))
        draw.rectangle([0, h, S, S], fill=col((150, 100, 60)))
        for y in np.linspace(h, S, 7)[1:-1]:
            draw.line([0, y, S, y], fill=col((110, 70, 40)), width=max(1, S // 256))
    elif s.background == "night":
        draw.rectangle([0, 0, S, S], fill=col((15, 20, 55)))
        for _ in range(60):
            x, y, r = rng.uniform(0, S), rng.uniform(0, S), rng.uniform(0.5, 1.5) * S / 256
            draw.ellipse([x - r, y - r, x + r, y + r], fill=(250, 250, 220))
    else:  # wall
        base = tuple(int(v) for v in rng.integers(170, 240, 3))
        draw.rectangle([0, 0, S, S], fill=col(base))


def _shade(c, f):
    return tuple(int(max(0, min(255, v * f))) for v in c)


def _object(draw: ImageDraw.ImageDraw, cat: str, colour: str, x: float, y: float, r: float, rng):
    c = COLOURS[colour]
    dark = _shade(c, 0.6) if colour != "black" else (80, 80, 80)
    ol = (20, 20, 20) if colour != "black" else (110, 110, 110)
    w = max(1, int(r / 12))
    E = draw.ellipse
    P = draw.polygon
    R = draw.rectangle
    if cat == "ball":
        E([x - r, y - r, x + r, y + r], fill=c, outline=ol, width=w)
        draw.arc([x - r, y - r * 0.5, x + r, y + r * 0.5], 0, 180, fill=dark, width=w * 2)
    elif cat == "box":
        d = r * 0.35
        R([x - r * 0.8, y - r * 0.5, x + r * 0.6, y + r * 0.9], fill=c, outline=ol, width=w)
        P([(x - r * 0.8, y - r * 0.5), (x - r * 0.8 + d, y - r * 0.5 - d), (x + r * 0.6 + d, y - r * 0.5 - d), (x + r * 0.6, y - r * 0.5)], fill=_shade(c, 1.2), outline=ol)
        P([(x + r * 0.6, y - r * 0.5), (x + r * 0.6 + d, y - r * 0.5 - d), (x + r * 0.6 + d, y + r * 0.9 - d), (x + r * 0.6, y + r * 0.9)], fill=dark, outline=ol)
    elif cat == "tree":
        R([x - r * 0.15, y, x + r * 0.15, y + r], fill=(100, 65, 30))
        E([x - r * 0.75, y - r, x + r * 0.75, y + r * 0.3], fill=c, outline=ol, width=w)
        E([x - r * 0.5, y - r * 0.8, x + r * 0.1, y - r * 0.2], fill=_shade(c, 1.15))
    elif cat == "house":
        R([x - r * 0.7, y - r * 0.2, x + r * 0.7, y + r], fill=c, outline=ol, width=w)
        P([(x - r * 0.9, y - r * 0.2), (x, y - r), (x + r * 0.9, y - r * 0.2)], fill=dark, outline=ol)
        R([x - r * 0.15, y + r * 0.4, x + r * 0.15, y + r], fill=(80, 50, 30))
        R([x + r * 0.3, y + r * 0.05, x + r * 0.55, y + r * 0.3], fill=(200, 230, 250), outline=ol)
    elif cat == "car":
        R([x - r, y - r * 0.1, x + r, y + r * 0.45], fill=c, outline=ol, width=w)
        P([(x - r * 0.55, y - r * 0.1), (x - r * 0.35, y - r * 0.55), (x + r * 0.35, y - r * 0.55), (x + r * 0.6, y - r * 0.1)], fill=c, outline=ol)
        P([(x - r * 0.4, y - r * 0.12), (x - r * 0.28, y - r * 0.45), (x + r * 0.28, y - r * 0.45), (x + r * 0.45, y - r * 0.12)], fill=(190, 220, 240))
        for dx in (-0.55, 0.55):
            E([x + dx * r - r * 0.22, y + r * 0.25, x + dx * r + r * 0.22, y + r * 0.7], fill=(20, 20, 20))
    elif cat == "boat":
        P([(x - r, y + r * 0.2), (x + r, y + r * 0.2), (x + r * 0.7, y + r * 0.65), (x - r * 0.7, y + r * 0.65)], fill=c, outline=ol)
        draw.line([x, y + r * 0.2, x, y - r], fill=(60, 40, 20), width=w * 2)
        P([(x + r * 0.05, y - r * 0.95), (x + r * 0.05, y + r * 0.1), (x + r * 0.7, y + r * 0.1)], fill=(245, 245, 235), outline=ol)
    elif cat == "flower":
        draw.line([x, y, x, y + r], fill=(40, 120, 40), width=w * 2)
        for k in range(6):
            a = k * math.pi / 3
            px, py = x + 0.45 * r * math.cos(a), y - 0.3 * r + 0.45 * r * math.sin(a)
            E([px - r * 0.3, py - r * 0.3, px + r * 0.3, py + r * 0.3], fill=c, outline=ol)
        E([x - r * 0.2, y - r * 0.5, x + r * 0.2, y - r * 0.1], fill=(240, 200, 30))
    elif cat == "kite":
        P([(x, y - r), (x + r * 0.6, y - r * 0.2), (x, y + r * 0.6), (x - r * 0.6, y - r * 0.2)], fill=c, outline=ol)
        draw.line([x, y - r, x, y + r * 0.6], fill=dark, width=w)
        draw.line([x - r * 0.6, y - r * 0.2, x + r * 0.6, y - r * 0.2], fill=dark, width=w)
        draw.line([x, y + r * 0.6, x - r * 0.2, y + r * 0.8, x + r * 0.1, y + r], fill=(60, 60, 60), width=w)
    elif cat == "cup":
        P([(x - r * 0.6, y - r * 0.6), (x + r * 0.5, y - r * 0.6), (x + r * 0.4, y + r * 0.7), (x - r * 0.5, y + r * 0.7)], fill=c, outline=ol)
        draw.arc([x + r * 0.25, y - r * 0.35, x + r * 0.9, y + r * 0.35], 270, 90, fill=c, width=w * 3)
        E([x - r * 0.6, y - r * 0.7, x + r * 0.5, y - r * 0.5], fill=dark, outline=ol)
    elif cat == "umbrella":
        draw.pieslice([x - r, y - r * 0.9, x + r, y + r * 0.9], 180, 360, fill=c, outline=ol)
        draw.line([x, y, x, y + r * 0.8], fill=(50, 50, 50), width=w * 2)
        draw.arc([x - r * 0.25, y + r * 0.6, x + r * 0.05, y + r * 0.95], 0, 180, fill=(50, 50, 50), width=w * 2)
    elif cat == "fish":
        E([x - r * 0.75, y - r * 0.4, x + r * 0.55, y + r * 0.4], fill=c, outline=ol)
        P([(x + r * 0.45, y), (x + r, y - r * 0.4), (x + r, y + r * 0.4)], fill=dark, outline=ol)
        E([x - r * 0.5, y - r * 0.15, x - r * 0.34, y + r * 0.01], fill=(10, 10, 10))
    elif cat == "bird":
        E([x - r * 0.6, y - r * 0.3, x + r * 0.5, y + r * 0.35], fill=c, outline=ol)
        E([x + r * 0.25, y - r * 0.55, x + r * 0.7, y - r * 0.1], fill=c, outline=ol)
        P([(x + r * 0.68, y - r * 0.38), (x + r * 0.95, y - r * 0.3), (x + r * 0.68, y - r * 0.22)], fill=(240, 170, 20))
        P([(x - r * 0.3, y - r * 0.1), (x + r * 0.1, y - r * 0.1), (x - r * 0.25, y - r * 0.75)], fill=dark, outline=ol)
    else:
        raise ValueError(cat)


def render(s: Scene, world_seed: int = WORLD_SEED) -> Image.Image:
    """The scene as a 256×256 RGB image (drawn at 2× and downsampled, with mild sensor-like texture)."""
    rng = stream(world_seed, "render", s.index)
    S = IMAGE_SIZE * 2
    im = Image.new("RGB", (S, S))
    draw = ImageDraw.Draw(im)
    _bg(draw, s, rng, S)
    groups = [g for g in (s.secondary, s.primary) if g is not None]
    for g in groups:
        for (x, y) in g.positions:
            _object(draw, g.category, g.colour, 2 * x, 2 * y, 2 * SIZE_PX[g.size] * (0.9 + 0.2 * rng.random()) if g.count == 1 else 2 * min(SIZE_PX[g.size], 28), rng)
    im = im.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BOX)
    grain = rng.integers(-3, 4, (IMAGE_SIZE, IMAGE_SIZE, 1), dtype=np.int16)  # mild sensor-like grain
    return Image.fromarray(np.clip(np.asarray(im, np.int16) + grain, 0, 255).astype(np.uint8))


def image_array(index: int, world_seed: int = WORLD_SEED) -> np.ndarray:
    return np.asarray(render(scene(index, world_seed), world_seed))
