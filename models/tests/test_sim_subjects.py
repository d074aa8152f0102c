"""Virtual subjects: NSD-sized visual ROIs in the posterior brain, retinotopy, and tuning shared across subjects."""
import numpy as np
from scipy.spatial import cKDTree

from mindsemantix.sim.brain import NSD_ROI_VOXELS, anatomy, roi_size
from mindsemantix.sim.forward import Subject


def test_roi_sizes_follow_nsd_and_sit_in_the_posterior_brain():
    for k in range(1, 9):
        assert roi_size(f"sim0{k}", "nsd") == NSD_ROI_VOXELS[k - 1]
        assert abs(roi_size(f"sim0{k}", "default") - NSD_ROI_VOXELS[k - 1] * (1.8 / 2.5) ** 3) < 1
    a = anatomy("sim01")
    assert a.roi.sum() == a.voxels == roi_size("sim01", "default")
    assert (a.roi & ~a.brain).sum() == 0
    brain_y = np.nonzero(a.brain)[1].mean()
    assert np.nonzero(a.roi)[1].mean() < brain_y - 5   # occipital: well behind the brain's centre
    # early visual cortex (V1) is medial; each hemisphere maps the opposite visual hemifield
    v1 = a.area == 0
    assert np.abs(a.norm[v1, 0]).mean() < np.abs(a.norm[~v1, 0]).mean()
    left = a.xyz_mm[:, 0] < a.centre_mm[0]
    assert (a.prf_xy[left & v1, 0] > 0).mean() > 0.9 and (a.prf_xy[~left & v1, 0] < 0).mean() > 0.9
    # pRFs grow with eccentricity and up the hierarchy
    ecc = np.hypot(*a.prf_xy.T)
    assert np.corrcoef(ecc[v1], a.prf_size[v1])[0, 1] > 0.5
    assert np.median(a.prf_size[a.area == 4]) > 2 * np.median(a.prf_size[v1])


def test_subjects_differ_but_share_tuning_structure():
    s1, s2 = Subject("sim01"), Subject("sim02")
    a1, a2 = s1.anat, s2.anat
    assert a1.voxels != a2.voxels and not np.array_equal(a1.roi, a2.roi)
    hi1, hi2 = a1.level > 0.6, a2.level > 0.6
    tree = cKDTree(a2.norm[hi2])
    _, j = tree.query(a1.norm[hi1])
    w1, w2 = s1.sem_w[hi1], s2.sem_w[hi2][j]
    matched = np.mean([np.corrcoef(x, y)[0, 1] for x, y in zip(w1[:500], w2[:500])])
    rng = np.random.default_rng(0)
    rand = np.mean([np.corrcoef(x, y)[0, 1] for x, y in zip(w1[:500], w2[rng.permutation(len(w2))[:500]])])
    assert matched > 0.3 and matched > rand + 0.25   # anatomically corresponding voxels are tuned alike
