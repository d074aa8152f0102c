"""The anatomical prior: the brain's frame from a mask, coordinates in mask voxel order, a coordinates → encoding map
that carries to a person it was not fitted on, synthetic responses in the person's own scale, and calibrate using them."""
import json
import shutil
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest
import torch

from mindsemantix.anatomy_prior import (AnatomyPrior, brain_frame, fit_encoding, install, person_coordinates,
                                        roi_coordinates, synthesize)
from mindsemantix.export import export_tiny

torch.set_num_threads(1)


def _ellipsoid(shape=(40, 48, 36), centre=(1.5, -2.0, 3.0), axes=(30.0, 40.0, 25.0), vs=2.0):
    aff = np.diag([vs, vs, vs, 1.0])
    aff[:3, 3] = [-(n - 1) / 2 * vs for n in shape]
    ii, jj, kk = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    xyz = np.stack([ii, jj, kk], -1) * vs + aff[:3, 3]
    inside = (((xyz - np.array(centre)) / np.array(axes)) ** 2).sum(-1) < 1
    return inside, aff


def test_brain_frame_recovers_the_centre_and_semi_axes_of_an_ellipsoid():
    brain, aff = _ellipsoid()
    c, a = brain_frame(brain, aff)
    assert np.allclose(c, [1.5, -2.0, 3.0], atol=0.3)
    assert np.allclose(a, [30.0, 40.0, 25.0], rtol=0.04)


def test_roi_coordinates_follow_mask_voxel_order_and_normalise():
    roi = np.zeros((4, 5, 6), np.uint8)
    roi[3, 0, 0] = roi[0, 1, 0] = roi[0, 0, 2] = 1       # x fastest: (3,0,0), (0,1,0), (0,0,2)
    aff = np.diag([2.0, 2.0, 2.0, 1.0])
    got = roi_coordinates(roi, aff, np.zeros(3), np.array([2.0, 4.0, 8.0]))
    assert np.allclose(got, [[3.0, 0, 0], [0, 0.5, 0], [0, 0, 0.5]])


def test_person_coordinates_refuse_masks_on_different_grids():
    brain, aff = _ellipsoid()
    roi = nib.Nifti1Image(brain[:, :, :30].astype(np.uint8), aff)
    with pytest.raises(ValueError, match="not on the same grid"):
        person_coordinates(roi, nib.Nifti1Image(brain.astype(np.uint8), aff))


def _people(rng, n_people=4, V=400, E=12, own=0.3):
    """Encoding weights = a smooth shared field of the coordinates + each person's own noise."""
    om, ph = rng.normal(size=(E, 3)) * 2.0, rng.uniform(0, 6.28, E)
    out = []
    for _ in range(n_people):
        c = rng.uniform(-1, 1, size=(V, 3))
        shared = np.cos(c @ om.T + ph).T                    # [E, V]
        out.append((c.astype(np.float32), shared + own * rng.normal(size=shared.shape)))
    return out


def test_the_prior_predicts_the_encoding_of_a_person_it_was_not_fitted_on():
    rng = np.random.default_rng(0)
    people = _people(rng)
    prior = AnatomyPrior.fit(people[:3], seed=0)
    c, B = people[3]
    pred = prior.encoding(c)
    r = np.mean([np.corrcoef(pred[:, v], B[:, v])[0, 1] for v in range(B.shape[1])])
    r_shuffled = np.mean([np.corrcoef(pred[:, v], B[:, (v + 7) % B.shape[1]])[0, 1] for v in range(B.shape[1])])
    assert r > 0.7 and r > r_shuffled + 0.4, (r, r_shuffled)


def test_fit_encoding_recovers_a_linear_encoding():
    rng = np.random.default_rng(1)
    emb = rng.normal(size=(600, 10))
    B = rng.normal(size=(10, 30))
    x = emb @ B + 0.1 * rng.normal(size=(600, 30))
    got = fit_encoding(x, emb, lam=1.0)
    # weights of z-scored responses: each voxel's column is B's up to that voxel's scale
    assert min(np.corrcoef(got[:, v], B[:, v])[0, 1] for v in range(30)) > 0.99


def test_synthesize_finds_the_gain_and_keeps_the_person_s_scale(tmp_path):
    rng = np.random.default_rng(2)
    people = _people(rng)
    prior = AnatomyPrior.fit(people[:3], seed=0)
    prior.save(tmp_path / "p.npz")
    prior = AnatomyPrior.load(tmp_path / "p.npz")
    c, _ = people[3]
    emb = rng.normal(size=(300, 12))
    B = prior.encoding(c)
    z = 0.8 * (emb - emb.mean(0)) @ B
    x = 50 + 3 * (z + 0.5 * z.std() * rng.normal(size=z.shape))     # a person 50 ± 3 in the scanner's units
    bank = rng.normal(size=(1000, 12))
    xs, rows, info = synthesize(prior, c, x, emb, bank, 200, seed=0)
    assert xs.shape == (200, len(c)) and xs.dtype == np.float32 and len(set(rows)) == 200
    assert 0.3 < info["explained"] < 1 and info["gain"] > 0
    assert np.allclose(xs.mean(0), x.mean(0), atol=0.5 * x.std(0).mean())
    assert 0.7 < xs.std(0).mean() / x.std(0).mean() < 1.4
    # a synthetic response carries its caption: it correlates with the prior's prediction for that caption
    want = (bank[rows] - emb.mean(0)) @ B
    r = np.mean([np.corrcoef(xs[i], want[i])[0, 1] for i in range(20)])
    assert r > 0.5, r


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("bundle")
    export_tiny(out, seed=3)
    return out


def test_calibrate_fits_on_synthetic_trials_when_the_bundle_has_a_prior(tiny, tmp_path):
    """The Python half of `calibrate` on the tiny bundle with a prior installed: the summary says the prior was used,
    the held-out fit saw the synthetic trials, and the written bundle keeps the prior file checksummed."""
    from mindsemantix.calibrate import run
    bundle = tmp_path / "tiny"
    shutil.copytree(tiny, bundle)
    m = json.loads((bundle / "manifest.json").read_text())
    E = m["dims"]["E"]
    rng = np.random.default_rng(3)
    om, ph = AnatomyPrior.basis(0, 64)
    install(bundle, AnatomyPrior(om, ph, rng.normal(size=(64, E)) * 0.3), {"seed": 0, "test": True})
    brain, aff = _ellipsoid(shape=(12, 12, 10), axes=(10.0, 10.0, 8.0))
    roi = np.zeros(brain.shape, np.uint8)
    roi[tuple(i[:60] for i in np.nonzero(brain))] = 1
    V = int(roi.sum())
    nib.save(nib.Nifti1Image(roi, aff), tmp_path / "roi.nii.gz")
    nib.save(nib.Nifti1Image(brain.astype(np.uint8), aff), tmp_path / "brain.nii.gz")
    # responses: 30 captioned stimuli × 2 presentations in the responses folder layout calibrate reads
    resp = tmp_path / "resp" / "sub-new07" / "ses-01"
    resp.mkdir(parents=True)
    S = 30
    caps = {f"s{s}": [f"a red thing number {s}", f"thing {s} in red"] for s in range(S)}
    from mindsemantix.calibrate_data import BundleTextEncoder, embed_references
    emb = embed_references(BundleTextEncoder(bundle, m), caps, list(caps)).mean(1)
    stim = np.repeat(np.arange(S), 2)
    prior = AnatomyPrior.load(bundle / "anatomy_prior.npz")
    coords = person_coordinates(nib.load(tmp_path / "roi.nii.gz"), nib.load(tmp_path / "brain.nii.gz"))
    pattern = (emb - emb.mean(0)) @ prior.encoding(coords)      # a person the prior describes
    x = (pattern[stim] / pattern.std() + 0.5 * rng.normal(size=(len(stim), V))).astype(np.float32)
    np.save(resp / "sub-new07_ses-01_task-vision_run-01_responses.npy", x)
    rows = ["trial\tstimulus_id\tonset\tflags"] + [f"{i}\ts{s}\t{i * 4.0}\tn/a" for i, s in enumerate(stim)]
    (resp / "sub-new07_ses-01_task-vision_run-01_responses.tsv").write_text("\n".join(rows) + "\n")
    (tmp_path / "caps.json").write_text(json.dumps(caps))
    a = SimpleNamespace(bundle=str(bundle), out=str(tmp_path / "out"), subject="new07", replace=False, captions=str(tmp_path / "caps.json"),
                        responses=str(tmp_path / "resp"), mask=str(tmp_path / "roi.nii.gz"), brain_mask=str(tmp_path / "brain.nii.gz"),
                        voxels=0, session="s", seed=0, epochs=3, threads=1, shared_encoder="bundle", summary=None, command="",
                        seconds_before=0.0, no_progress=True, synthetic=5)
    s = run(a)
    # the tiny bundle's caption bank has 6 captions
    assert s["anatomy_prior"]["used"] and s["anatomy_prior"]["trials"] == 5 and s["anatomy_prior"]["gain"] > 0, s["anatomy_prior"]
    assert s["heldout"]["synthetic_trials"] == 5
    out = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert "anatomy_prior.npz" in out["files"] and out["anatomy_prior"]["file"] == "anatomy_prior.npz"
    assert out["calibration"]["new07"]["anatomy_prior"]["used"] is True
    a.out, a.synthetic, a.replace = str(tmp_path / "out0"), 0, False
    s0 = run(a)
    assert s0["anatomy_prior"] == {"used": False, "why": "--synthetic 0"} and s0["heldout"]["synthetic_trials"] == 0
