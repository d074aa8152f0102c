"""Training data from the serving chain: every response in the HDF5 is the vector `mindsemantix responses` wrote for
that trial (the chain serve uses, proven equal to serve --record by test/pipeline/responsesParity.test.ts), sessions
are separate simulated sessions, and load_sim drops trials whose window had no data."""
from pathlib import Path

import h5py
import numpy as np
import pytest

from mindsemantix.data import load_sim
from mindsemantix.sim import serving_dataset

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(not (REPO / "dist" / "src" / "cli" / "main.js").exists(), reason="needs the TypeScript build (npm test builds it first)")
def test_serving_dataset_is_the_serving_chain(tmp_path):
    out = tmp_path / "sd"
    assert serving_dataset.main(["--out", str(out), "--subjects", "sim01", "--train-scenes", "24", "--test-scenes", "2",
                                 "--runs-per-session", "1", "--run-trials", "15"]) == 0
    h5 = out / "derivatives" / "mindsemantix" / "sub-sim01" / "sub-sim01_responses.h5"
    with h5py.File(h5, "r") as h:
        x = np.asarray(h["responses"])
        sessions = np.asarray(h["session"])
        ids = [s.decode() for s in h["stimulus_ids"][()]]
        assert "serving chain" in h.attrs["estimator"]
    assert x.shape[0] == 24 + 2 * 3 == len(ids)
    assert sessions.max() == 1, "30 trials in runs of 15, one run per session: two sessions"
    # row by row the vectors `responses` wrote, session after session
    got = []
    for k in range(2):
        for data, rows in serving_dataset.read_responses(out / "sessions" / "sub-sim01" / f"ses-{k + 1:02d}" / "responses", "sim01"):
            got.append(data)
            assert [r["stimulus_id"] for r in rows] == ids[sum(len(g) for g in got) - len(rows):sum(len(g) for g in got)]
    np.testing.assert_array_equal(np.concatenate(got), x)
    assert not (out / "sessions" / "sub-sim01" / "ses-01" / "sub-sim01").exists(), "volumes deleted once read"
    c = load_sim(out)
    assert "sim01" in c.subjects


def test_load_sim_drops_no_data_trials(tmp_path):
    out = tmp_path / "sd"
    (out / "stimuli").mkdir(parents=True)
    (out / "stimuli.tsv").write_text('stimulus_id\tsplit\tcaptions\nscene-000400\ttrain\t["a"]\nscene-000000\ttest\t["b"]\n')
    d = out / "derivatives" / "mindsemantix" / "sub-sim01"
    d.mkdir(parents=True)
    with h5py.File(d / "sub-sim01_responses.h5", "w") as h:
        h["responses"] = np.ones((3, 4), np.float32)
        h.create_dataset("stimulus_ids", data=np.array(["scene-000400", "scene-000400", "scene-000000"], dtype=object), dtype=h5py.string_dtype())
        h.create_dataset("split", data=np.array(["train", "train", "test"], dtype=object), dtype=h5py.string_dtype())
        h.create_dataset("flags", data=np.array(["warmup,no-data", "", "early-in-run"], dtype=object), dtype=h5py.string_dtype())
    c = load_sim(out)
    s = c.subjects["sim01"]
    assert len(s.train_x) == 1 and len(s.test_x) == 1
