"""image_eval's sampler options: the --scenes halves and the starting noises."""
import numpy as np
import pytest
import torch

from mindsemantix.flowgen import fixed_noise
from mindsemantix.image_eval import flowgen_noise, scene_half_mask


def test_scene_halves_split_scenes_not_trials():
    sids = ["scene-000009", "scene-000002", "scene-000005", "scene-000002", "scene-000009", "scene-000007"]
    first = scene_half_mask(sids, "first-half", key=lambda s: int(s.split("-")[1]))
    second = scene_half_mask(sids, "second-half", key=lambda s: int(s.split("-")[1]))
    assert first.tolist() == [False, True, True, True, False, False]      # scenes 2 and 5 of 2, 5, 7, 9
    assert np.array_equal(second, ~first)
    assert scene_half_mask(sids, "all").all()
    with pytest.raises(ValueError):
        scene_half_mask(sids, "odd")


def test_flowgen_noise_defaults_to_the_bundle_noise_and_scales():
    assert torch.equal(flowgen_noise(8, 3), fixed_noise(1, 8, 3))
    assert torch.allclose(flowgen_noise(8, 3, noise_scale=0.5), 0.5 * fixed_noise(1, 8, 3))
    k = flowgen_noise(8, 3, samples=3)
    assert k.shape == (3, 3, 8, 8) and not torch.equal(k[0], k[1])
