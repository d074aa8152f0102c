"""`sim.own_test_responses`: the training set's test-split rows become response files in `responses`' layout, in
recorded order, presentations counted across the training sessions, vectors unchanged."""
import h5py
import numpy as np
import pytest

from mindsemantix.sim.own_test_responses import COLUMNS, write_own_test


def make_set(root, rows):
    d = root / "derivatives" / "mindsemantix" / "sub-simx"
    d.mkdir(parents=True)
    (root / "stimuli.tsv").write_text("stimulus_id\tsplit\tcaptions\nscene-a\ttest\t[\"a\"]\n")
    x = np.arange(len(rows) * 4, dtype=np.float32).reshape(len(rows), 4)
    with h5py.File(d / "sub-simx_responses.h5", "w") as h:
        h["responses"] = x
        h["split"] = np.array([r[0] for r in rows], dtype=object).astype("S")
        h["stimulus_ids"] = np.array([r[1] for r in rows], dtype=object).astype("S")
        h["session"] = np.array([r[2] for r in rows], np.int32)
        h["run"] = np.array([r[3] for r in rows], np.int32)
        h["onset"] = np.arange(len(rows), dtype=np.float32) * 4
        h["flags"] = np.array(["", "high-motion"] * (len(rows) // 2) + [""] * (len(rows) % 2), dtype=object).astype("S")
    return x


def read_run(tsv):
    lines = tsv.read_text().splitlines()
    return lines[0].split("\t"), [dict(zip(lines[0].split("\t"), ln.split("\t"))) for ln in lines[1:]]


def test_test_rows_in_recorded_order_with_presentations_across_sessions(tmp_path):
    rows = [("train", "scene-t1", 0, 0), ("test", "scene-a", 0, 0), ("test", "scene-b", 0, 1), ("train", "scene-t2", 1, 0),
            ("test", "scene-a", 1, 0), ("test", "scene-b", 1, 0), ("test", "scene-a", 1, 1)]
    x = make_set(tmp_path / "set", rows)
    s = write_own_test(tmp_path / "set", "simx", tmp_path / "out")
    assert s["trials"] == 5 and s["scenes"] == 2 and s["runs"] == 4 and s["presentations"] == {"1": 2, "2": 2, "3": 1}
    d = tmp_path / "out" / "sub-simx" / "ses-owntest"
    runs = sorted(d.glob("*_responses.tsv"))
    assert [r.name for r in runs] == [f"sub-simx_ses-owntest_task-vision_run-{k}_responses.tsv" for k in ("0000", "0001", "0100", "0101")]
    got_ids, got_pres, got_x = [], [], []
    for tsv in runs:
        head, rr = read_run(tsv)
        assert head == COLUMNS
        got_ids += [r["stimulus_id"] for r in rr]
        got_pres += [int(r["presentation"]) for r in rr]
        got_x.append(np.load(tsv.with_suffix(".npy")))
    assert got_ids == ["scene-a", "scene-b", "scene-a", "scene-b", "scene-a"]
    assert got_pres == [1, 1, 2, 2, 3]
    np.testing.assert_array_equal(np.concatenate(got_x), x[[1, 2, 4, 5, 6]])
    assert (tmp_path / "out" / "stimuli.tsv").read_text() == (tmp_path / "set" / "stimuli.tsv").read_text()


def test_refuses_a_set_without_test_trials_and_an_existing_folder(tmp_path):
    make_set(tmp_path / "set", [("train", "scene-t1", 0, 0), ("train", "scene-t2", 0, 0)])
    with pytest.raises(SystemExit, match="no test-split trials"):
        write_own_test(tmp_path / "set", "simx", tmp_path / "out")
    (tmp_path / "exists").mkdir()
    with pytest.raises(SystemExit, match="exists; pass a new folder"):
        write_own_test(tmp_path / "set", "simx", tmp_path / "exists")
    with pytest.raises(SystemExit, match="is missing"):
        write_own_test(tmp_path / "nothing", "simx", tmp_path / "out2")


def test_a_set_without_sessions_or_flags_is_one_session(tmp_path):
    rows = [("test", "scene-a", 0, 0), ("test", "scene-a", 0, 1)]
    make_set(tmp_path / "set", rows)
    with h5py.File(tmp_path / "set" / "derivatives" / "mindsemantix" / "sub-simx" / "sub-simx_responses.h5", "a") as h:
        del h["session"], h["flags"]
    s = write_own_test(tmp_path / "set", "simx", tmp_path / "out")
    assert s["runs"] == 2 and s["presentations"] == {"1": 1, "2": 1}
    _, rr = read_run(tmp_path / "out" / "sub-simx" / "ses-owntest" / "sub-simx_ses-owntest_task-vision_run-0001_responses.tsv")
    assert rr[0]["presentation"] == "2" and rr[0]["flags"] == "n/a"
