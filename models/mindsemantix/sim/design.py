"""Run designs in NSD's style: 3 s image, 1 s gap (4 s per trial), occasional blank trials, rest at both ends."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TR = 1.6
STIM_S = 3.0
TRIAL_S = 4.0
LEAD_IN_S = 8.0
LEAD_OUT_S = 12.0
BLANK_EVERY = 10  # about one blank trial per 10 image trials


@dataclass
class RunDesign:
    scenes: list[int]         # scene index per trial, in order
    repeats: list[int]        # 0-based presentation count of that scene in the subject's sessions
    onsets: np.ndarray        # s from run start
    n_volumes: int
    tr: float = TR

    @property
    def times(self) -> np.ndarray:
        """Acquisition time (s from run start) of each volume."""
        return np.arange(self.n_volumes) * self.tr


def make_run(scenes: list[int], repeats: list[int], rng: np.random.Generator, tr: float = TR) -> RunDesign:
    n = len(scenes)
    n_blank = n // BLANK_EVERY
    slots = np.zeros(n + n_blank, bool)
    if n_blank:
        slots[rng.choice(np.arange(1, n + n_blank - 1), n_blank, replace=False)] = True  # True = blank slot
    onsets = []
    t = LEAD_IN_S
    for blank in slots:
        if not blank:
            onsets.append(t)
        t += TRIAL_S
    n_vol = int(np.ceil((t + LEAD_OUT_S) / tr))
    return RunDesign(list(scenes), list(repeats), np.array(onsets), n_vol, tr)
