"""Stimulus features that drive the forward model.

Low level: contrast-energy and colour-opponent maps on a 16×16 grid over the image (what early-visual pRFs integrate).
Semantic: a factor vector of what the captions talk about — categories present, colours, count, size, relation and
background — passed through a fixed random nonlinear map (shared by all subjects) that higher-level voxels read out.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy.ndimage import gaussian_filter

from .rng import stream
from .world import BACKGROUNDS, CATEGORIES, COLOUR_NAMES, RELATIONS, SIZES, WORLD_SEED, Scene, image_array, scene

MAP_N = 16
CHANNELS = ["contrast-fine", "contrast-coarse", "red", "green", "blue", "yellow"]
SEM_HIDDEN = 64


def lowlevel_maps(img: np.ndarray) -> np.ndarray:
    """[C, MAP_N*MAP_N] non-negative energy maps of a 256×256×3 uint8 image."""
    a = img.astype(np.float32) / 255.0
    small = a.reshape(64, 4, 64, 4, 3).mean((1, 3))           # 64×64
    lum = small @ np.array([0.299, 0.587, 0.114], np.float32)
    fine = np.abs(gaussian_filter(lum, 0.7) - gaussian_filter(lum, 1.6))
    coarse = np.abs(gaussian_filter(lum, 1.6) - gaussian_filter(lum, 4.0))
    r, g, b = small[..., 0], small[..., 1], small[..., 2]
    rg = r - g
    by = b - (r + g) / 2
    chans = [fine * 4, coarse * 3, np.clip(rg, 0, None), np.clip(-rg, 0, None), np.clip(by, 0, None), np.clip(-by, 0, None)]
    out = []
    for c in chans:
        c = gaussian_filter(c, 0.8)
        # 64 → 24 by area-averaging via interpolation on a coarse grid
        idx = np.linspace(0, 63, MAP_N).round().astype(int)
        out.append(c[np.ix_(idx, idx)].ravel())
    return np.stack(out).astype(np.float32)


def semantic_factors(s: Scene) -> np.ndarray:
    """One vector of caption-relevant factors: category presence (weighted by count), colour, size, relation, background."""
    nc, nk = len(CATEGORIES), len(COLOUR_NAMES)
    f_cat = np.zeros(nc, np.float32)
    f_col = np.zeros(nk, np.float32)
    f_size = np.zeros(len(SIZES), np.float32)
    f_count = np.zeros(3, np.float32)
    f_rel = np.zeros(len(RELATIONS) + 1, np.float32)
    f_bg = np.zeros(len(BACKGROUNDS), np.float32)
    f_conj = np.zeros(nc * nk, np.float32)  # category×colour conjunction (sparse)
    p = s.primary
    f_cat[CATEGORIES.index(p.category)] += 1.0
    f_col[COLOUR_NAMES.index(p.colour)] += 1.0
    f_size[SIZES.index(p.size)] += 1.0
    f_count[p.count - 1] = 1.0
    f_conj[CATEGORIES.index(p.category) * nk + COLOUR_NAMES.index(p.colour)] = 1.0
    if s.secondary is not None:
        q = s.secondary
        f_cat[CATEGORIES.index(q.category)] += 0.7
        f_col[COLOUR_NAMES.index(q.colour)] += 0.6
        f_conj[CATEGORIES.index(q.category) * nk + COLOUR_NAMES.index(q.colour)] = 0.6
        f_rel[RELATIONS.index(s.relation)] = 1.0
    else:
        f_rel[-1] = 1.0
    f_bg[BACKGROUNDS.index(s.background)] = 1.0
    return np.concatenate([f_cat, f_col, f_size, f_count, f_rel, f_bg, f_conj])


@lru_cache(maxsize=2)
def semantic_map(world_seed: int = WORLD_SEED):
    """Fixed random nonlinear map factors → SEM_HIDDEN units (the world's 'semantic space', shared across subjects)."""
    rng = stream(world_seed, "semantic-map")
    nf = len(semantic_factors(scene(300, world_seed)))
    # Factor groups get different weight so categories dominate, as in ventral visual cortex; conjunctions are weak.
    nc, nk = len(CATEGORIES), len(COLOUR_NAMES)
    gw = np.concatenate([np.full(nc, 1.6), np.full(nk, 0.9), np.full(3, 0.6), np.full(3, 0.7), np.full(5, 0.7),
                         np.full(len(BACKGROUNDS), 0.9), np.full(nc * nk, 0.5)]).astype(np.float32)
    W = rng.standard_normal((nf, SEM_HIDDEN)).astype(np.float32) * gw[:, None]
    b = rng.standard_normal(SEM_HIDDEN).astype(np.float32) * 0.5
    return W, b


def semantic_features(s: Scene, world_seed: int = WORLD_SEED) -> np.ndarray:
    W, b = semantic_map(world_seed)
    return np.tanh((semantic_factors(s) @ W) / 2.0 + b).astype(np.float32)


def scene_features(indices, world_seed: int = WORLD_SEED, images: dict | None = None):
    """(low [n, C, MAP_N²], sem [n, SEM_HIDDEN]) for scene indices; `images` caches rendered arrays by index."""
    low = np.empty((len(indices), len(CHANNELS), MAP_N * MAP_N), np.float32)
    sem = np.empty((len(indices), SEM_HIDDEN), np.float32)
    for n, i in enumerate(indices):
        img = images[i] if images is not None and i in images else image_array(int(i), world_seed)
        if images is not None:
            images[i] = img
        low[n] = lowlevel_maps(img)
        sem[n] = semantic_features(scene(int(i), world_seed), world_seed)
    return low, sem
