"""A simulated BIDS session: layout, formats, determinism by seed, and head motion that the ground truth undoes."""
import json
import os

import h5py
import nibabel as nib
import numpy as np
import pytest

from mindsemantix.sim.__main__ import main
from mindsemantix.sim.brain import anatomy
from mindsemantix.sim.session import move

FUNC = "sub-sim01/ses-01/func/sub-sim01_ses-01_task-vision_run-{:02d}"
DER = "derivatives/mindsemantix/sub-sim01/sub-sim01_"


@pytest.fixture(scope="module")
def sessions(tmp_path_factory):
    out = {}
    for name, seed, runs in (("a", 5, 2), ("b", 5, 2), ("c", 6, 1)):
        d = str(tmp_path_factory.mktemp(name))
        assert main(["--out", d, "--subject", "sim01", "--seed", str(seed), "--trials", "6", "--runs", str(runs)]) == 0
        out[name] = d
    return out


def test_layout_and_formats(sessions):
    d = sessions["a"]
    desc = json.load(open(os.path.join(d, "dataset_description.json")))
    assert desc["BIDSVersion"]
    img = nib.load(os.path.join(d, FUNC.format(1) + "_bold.nii.gz"))
    assert img.get_data_dtype() == np.int16 and img.ndim == 4 and img.shape[:3] == (64, 64, 40)
    assert abs(img.header.get_zooms()[3] - 1.6) < 1e-6
    side = json.load(open(os.path.join(d, FUNC.format(1) + "_bold.json")))
    assert side["RepetitionTime"] == 1.6 and len(side["AcquisitionTimes"]) == img.shape[3]
    lines = open(os.path.join(d, FUNC.format(2) + "_events.tsv"), encoding="utf-8").read().splitlines()
    head = lines[0].split("\t")
    assert head[:6] == ["onset", "duration", "trial_type", "stimulus_id", "references", "stim_file"]
    rows = [dict(zip(head, ln.split("\t"))) for ln in lines[1:]]
    assert len(rows) == 6
    for r in rows:
        refs = json.loads(r["references"])
        assert len(refs) == 5 and all(isinstance(c, str) and c for c in refs)
        assert os.path.exists(os.path.join(d, r["stim_file"])) and r["stim_file"] == f"stimuli/{r['stimulus_id']}.png"
        assert float(r["duration"]) == 3.0
    stim = open(os.path.join(d, "stimuli.tsv"), encoding="utf-8").read().splitlines()
    assert stim[0] == "stimulus_id\tsplit\tcaptions\tobject\tcolour\tcount\tbackground\tobjects\trelation"
    assert all(ln.split("\t")[1] == "test" for ln in stim[1:])
    mask = nib.load(os.path.join(d, DER + "roi-mask.nii.gz"))
    assert mask.get_data_dtype() == np.uint8 and mask.shape == (64, 64, 40)
    nvox = int((np.asarray(mask.dataobj) > 0).sum())
    assert 5000 < nvox < 7000  # NSD subject 1's 15724 nsdgeneral voxels at 2.5 mm
    with h5py.File(os.path.join(d, DER + "responses.h5")) as f:
        assert f["responses"].shape == (12, nvox) and f["betas"].shape == (12, nvox)
        assert f.attrs["voxels"] == nvox and f.attrs["subject"] == "sim01"
        ids = [s.decode() for s in f["stimulus_ids"][:]]
        assert all(s.startswith("scene-") for s in ids) and set(f["repeat"][:]) <= {0, 1, 2}
        assert max(np.bincount(np.unique(ids, return_inverse=True)[1])) == 3  # test scenes are shown 3 times


def _arrays(d):
    vols = [np.asarray(nib.load(os.path.join(d, FUNC.format(r) + "_bold.nii.gz")).dataobj) for r in (1, 2)
            if os.path.exists(os.path.join(d, FUNC.format(r) + "_bold.nii.gz"))]
    with h5py.File(os.path.join(d, DER + "responses.h5")) as f:
        return vols, f["betas"][:], f["responses"][:]


def test_same_seed_same_session_other_seed_differs(sessions):
    va, ba, ra = _arrays(sessions["a"])
    vb, bb, rb = _arrays(sessions["b"])
    vc, bc, _ = _arrays(sessions["c"])
    assert all(np.array_equal(x, y) for x, y in zip(va, vb))
    assert len(va) == 2 and np.array_equal(ba, bb) and np.array_equal(ra, rb)
    assert not np.array_equal(va[0], vc[0])
    assert open(os.path.join(sessions["a"], FUNC.format(1) + "_events.tsv")).read() == \
        open(os.path.join(sessions["b"], FUNC.format(1) + "_events.tsv")).read()
    # the subject's anatomy does not depend on the session seed
    ma = np.asarray(nib.load(os.path.join(sessions["a"], DER + "roi-mask.nii.gz")).dataobj)
    mc = np.asarray(nib.load(os.path.join(sessions["c"], DER + "roi-mask.nii.gz")).dataobj)
    assert np.array_equal(ma, mc)


def test_ground_truth_motion_realigns_the_volumes(sessions):
    d = sessions["a"]
    img = nib.load(os.path.join(d, FUNC.format(1) + "_bold.nii.gz"))
    data = np.asarray(img.dataobj).astype(np.float32)
    rows = [ln.split("\t") for ln in open(os.path.join(d, DER + "motion.tsv")).read().splitlines()]
    assert rows[0][:8] == ["run", "volume", "trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z"]
    m = np.array([[float(v) for v in r[2:8]] for r in rows[1:] if r[0] == "1"])
    assert m.shape == (data.shape[3], 6)
    a = anatomy("sim01")
    c = (a.centre_mm - a.affine[:3, 3]) / a.voxel_mm
    disp = np.abs(m - m[0]).max(1)
    t = int(disp.argmax())
    assert disp[t] > 0.05
    ref = move(data[..., 0], m[0], c, 2.5, inverse=True)
    raw_err = np.mean((data[..., t] - data[..., 0]) ** 2)
    fixed_err = np.mean((move(data[..., t], m[t], c, 2.5, inverse=True) - ref) ** 2)
    assert fixed_err < raw_err  # undoing the recorded motion brings the volumes closer together
