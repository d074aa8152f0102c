"""Data loaders on small files written in exactly the users' layouts; cross-subject batching; repeat averaging."""
import numpy as np
import torch
import pytest

from mindsemantix import data as D
from mindsemantix import fixtures as FX


def test_sim_layout_trains_on_single_trials_and_tests_on_repeat_means(tmp_path):
    root = FX.write_sim(tmp_path / "sim", {"sim01": 70, "sim02": 53}, n_stim=24, n_test=6)
    c = D.load_sim(root)
    assert set(c.subjects) == {"sim01", "sim02"}
    assert c.split.count("test") == 6 and len(c.captions[0]) == 5
    s = c.subjects["sim01"]
    assert s.voxels == 70 and s.train_x.shape == (18 * 2, 70)           # 2 single trials per train stimulus
    assert s.test_x.shape == (6, 70) and list(s.test_repeats) == [3] * 6  # mean of 3 repeats per test stimulus
    assert all(c.split[i] == "test" for i in s.test_stim) and all(c.split[i] == "train" for i in s.train_stim)
    import h5py
    with h5py.File(root / "derivatives/mindsemantix/sub-sim01/sub-sim01_responses.h5") as h:
        x = h["responses"][()]
        ids = [v.decode() for v in h["stimulus_ids"][()]]
    first_test = c.stimuli[s.test_stim[0]]
    np.testing.assert_allclose(s.test_x[0], x[[i for i, v in enumerate(ids) if v == first_test]].mean(0), rtol=1e-6)
    assert c.image(0).size == (32, 32)
    assert s.mask is not None and s.mask.exists()
    b = D.load_sim(root, field_name="betas")
    assert not np.allclose(b.subjects["sim01"].train_x, s.train_x)


def test_nsd_mindeye2_hdf5_with_behaviour_rows_and_coco_captions(tmp_path):
    f = FX.write_nsd_hdf5(tmp_path / "nsd", V=40, n_stim=12)
    c = D.load_nsd_hdf5({"subj01": {"betas": f["betas"], "behaviour": f["behaviour"]}}, f["captions"], f["stim_info"])
    s = c.subjects["subj01"]
    assert s.voxels == 40
    assert c.split.count("test") == 3                                   # shared1000 column
    assert s.train_x.shape == (9 * 3, 40) and s.test_x.shape == (3, 40)
    # captions reached through nsdId → cocoId
    k = c.stimuli.index(str(f["nsd_ids"][0]))
    assert c.captions[k] == f["stimuli"][0][1]
    # the test vector is the mean of that image's three trials, found through the behaviour rows
    i = int(np.where(np.array(f["nsd_ids"]) == int(c.stimuli[s.test_stim[0]]))[0][0])
    np.testing.assert_allclose(s.test_x[0], f["x"][f["idx"] == i].mean(0), rtol=1e-5)
    # behaviour given as 0-based .npy rows works the same
    np.save(tmp_path / "behav.npy", np.array([f["nsd_ids"][i] for i in f["idx"]])[:, None])
    c2 = D.load_nsd_hdf5({"subj01": {"betas": f["betas"], "behaviour": tmp_path / "behav.npy"}}, f["captions"], f["stim_info"])
    np.testing.assert_allclose(c2.subjects["subj01"].test_x, s.test_x)


def test_nsd_behaviour_rows_must_align(tmp_path):
    f = FX.write_nsd_hdf5(tmp_path / "nsd", V=10, n_stim=4)
    np.save(tmp_path / "short.npy", np.arange(3))
    with pytest.raises(ValueError, match="align"):
        D.load_nsd_hdf5({"subj01": {"betas": f["betas"], "behaviour": tmp_path / "short.npy"}}, f["captions"], f["stim_info"])


def test_mindeye1_umbrae_webdataset_tars(tmp_path):
    f = FX.write_nsd_wds(tmp_path / "wds", V=30, n_train=8, n_test=3)
    c = D.load_nsd_wds({"subj01": {"train": f["train"], "test": f["test"]}}, f["captions"])
    s = c.subjects["subj01"]
    assert s.train_x.shape == (8 * 3, 30)                               # every repeat is a training trial
    assert s.test_x.shape == (3, 30) and list(s.test_repeats) == [3, 3, 3]
    n = int(c.stimuli[s.test_stim[0]])
    i = f["nsd_ids"].index(n)
    np.testing.assert_allclose(s.test_x[0], f["x"][f["idx"] == i].mean(0), rtol=1e-5)
    assert c.captions[c.stimuli.index(str(n))] == f["stimuli"][i][1]
    assert c.image(0).size == (16, 16)


def test_cross_subject_batches_hold_one_subject_and_split_across_ranks(tmp_path):
    c = D.load_sim(FX.write_sim(tmp_path / "sim", {"a": 20, "b": 31, "c": 12}, n_stim=20, n_test=4))
    ds = D.TrialDataset(c)
    s = D.SubjectBatchSampler(ds, 4, seed=1)
    batches = list(iter(s))
    assert len(batches) == len(s) == sum(len(c.subjects[k].train_x) // 4 for k in "abc")
    subs_seen = []
    for b in batches:
        ks = {ds.locate(i)[0] for i in b}
        assert len(ks) == 1
        subs_seen.append(ks.pop())
    assert len(set(subs_seen[:6])) > 1                                  # subjects interleaved, not one after another
    r0 = list(iter(D.SubjectBatchSampler(ds, 4, seed=1, rank=0, world=2)))
    r1 = list(iter(D.SubjectBatchSampler(ds, 4, seed=1, rank=1, world=2)))
    assert len(r0) == len(r1) and not set(map(tuple, r0)) & set(map(tuple, r1))
    batch = D.collate_single_subject([ds[i] for i in batches[0]])
    assert batch["voxels"].shape == (4, c.subjects[ds.subjects[batch["subject_index"]]].voxels)


def test_a_batch_larger_than_any_subjects_trials_is_refused_with_the_fix(tmp_path):
    c = D.load_sim(FX.write_sim(tmp_path / "sim", {"a": 20, "b": 31}, n_stim=20, n_test=4))
    ds = D.TrialDataset(c)
    with pytest.raises(ValueError, match="larger than every subject's training trials.*lower train.batch_size"):
        D.SubjectBatchSampler(ds, 64)
    assert len(D.SubjectBatchSampler(ds, 8)) > 0


def test_selecting_subjects_keeps_only_the_stimuli_they_saw(tmp_path):
    root = FX.write_sim(tmp_path / "sim", {"sim01": 20, "sim02": 15}, n_stim=12, n_test=3)
    import h5py
    # sim02 saw only the first 6 training stimuli
    with h5py.File(root / "derivatives/mindsemantix/sub-sim02/sub-sim02_responses.h5", "a") as h:
        keep = [i for i, s in enumerate(h["stimulus_ids"][()]) if int(s.decode()[1:]) < 6 or h["split"][i] == b"test"]
        for k in ("responses", "betas", "stimulus_ids", "split", "repeat"):
            v = h[k][()][keep]
            del h[k]
            h[k] = v
    full = D.load_sim(root)
    only = D.load_sim(root, subjects=["sim02"])
    assert len(full.stimuli) == 12 and len(only.stimuli) == 6 + 3
    d = only.subjects["sim02"]
    assert {only.stimuli[i] for i in d.train_stim} == {f"s{i:03d}" for i in range(6)}
    assert only.image(0).size == (32, 32)


def test_repeat_targets_are_the_mean_of_the_other_trials_of_the_same_stimulus(tmp_path):
    x = np.array([[1.0, 0.0], [3.0, 2.0], [5.0, 4.0], [7.0, 7.0]], np.float32)
    stim = np.array([4, 4, 4, 9])
    y = D.other_repeats_mean(x, stim)
    np.testing.assert_allclose(y[0], [4.0, 3.0])   # mean of trials 1 and 2, never the trial itself
    np.testing.assert_allclose(y[2], [2.0, 1.0])
    np.testing.assert_allclose(y[3], [7.0, 7.0])   # a stimulus seen once is its own target
    c = D.load_sim(FX.write_sim(tmp_path / "sim", {"sim01": 40}))
    ds = D.TrialDataset(c, "train", repeat_targets=True)
    b = D.collate_single_subject([ds[i] for i in range(4)])
    d = c.subjects["sim01"]
    np.testing.assert_allclose(b["target"].numpy(), D.other_repeats_mean(d.train_x, d.train_stim)[:4])
    assert "target" not in D.collate_single_subject([D.TrialDataset(c, "train")[i] for i in range(4)])


def test_repeated_share_counts_trials_whose_stimulus_the_same_subject_saw_again(tmp_path):
    import dataclasses
    c = D.load_sim(FX.write_sim(tmp_path / "sim", {"sim01": 40}))
    d = c.subjects["sim01"]
    assert 0 < D.repeated_share(c) <= 1
    once = np.arange(len(d.train_stim))   # every trial its own stimulus: the simulator's training design
    c.subjects["sim01"] = dataclasses.replace(d, train_stim=once)
    assert D.repeated_share(c) == 0
    c.subjects["sim01"] = dataclasses.replace(d, train_stim=np.array([0, 0] + list(range(1, len(once) - 1))))
    assert D.repeated_share(c) == 2 / len(once)


def test_cross_subject_partners_are_other_subjects_trials_of_the_same_stimulus(tmp_path):
    stims = [torch.tensor([0, 1, 2]), torch.tensor([2, 3, 0, 2])]
    p = D.cross_subject_partners(stims)
    assert p[(0, 0)] == [(1, 2)] and p[(0, 2)] == [(1, 0), (1, 3)] and p[(1, 2)] == [(0, 2)]
    assert (0, 1) not in p and (1, 3) not in p   # seen by one subject only
    c = D.load_sim(FX.write_sim(tmp_path / "sim", {"sim01": 40, "sim02": 30}))
    ds = D.TrialDataset(c, "train", cross_targets=True)
    b = D.collate_single_subject([ds[i] for i in range(6)])          # sim01 rows; every stimulus was shown to both
    assert b["partner_subject"].tolist() == [1] * 6
    d2 = c.subjects["sim02"]
    for st, px in zip(b["stim"].tolist(), b["partner_voxels"]):
        rows = np.flatnonzero(d2.train_stim == st)
        assert any(np.array_equal(px.numpy(), d2.train_x[r]) for r in rows)
    only = D.TrialDataset(D.load_sim(FX.write_sim(tmp_path / "one", {"sim01": 40})), "train", cross_targets=True)
    b = D.collate_single_subject([only[i] for i in range(3)])
    assert b["partner_subject"].tolist() == [-1] * 3 and "target" not in b


def test_labeled_subset_keeps_all_repeats_of_a_seeded_share_of_training_stimuli(tmp_path):
    c = D.load_sim(FX.write_sim(tmp_path / "sim", {"sim01": 60, "sim02": 60}, n_stim=36, n_test=12))
    sub = D.labeled_subset(c, 0.25, seed=1)
    kept = set(sub.subjects["sim01"].train_stim.tolist())
    assert len(kept) == 6                                       # a quarter of the 24 training stimuli
    assert kept == set(sub.subjects["sim02"].train_stim.tolist())  # the same captions for every subject
    for s, d in c.subjects.items():
        m = np.isin(d.train_stim, list(kept))
        np.testing.assert_array_equal(sub.subjects[s].train_x, d.train_x[m])   # every repeat of a kept stimulus
        np.testing.assert_array_equal(sub.subjects[s].test_x, d.test_x)        # the test set is untouched
    assert set(D.labeled_subset(c, 0.25, seed=1).subjects["sim01"].train_stim.tolist()) == kept
    with pytest.raises(ValueError, match="labeled_fraction"):
        D.labeled_subset(c, 0.0)


def test_the_data_module_gives_each_rank_its_own_single_subject_batches(tmp_path):
    from types import SimpleNamespace
    from mindsemantix.datamodule import TrialDataModule
    c = D.load_sim(FX.write_sim(tmp_path / "sim", {"a": 20, "b": 31}, n_stim=20, n_test=4))
    got = []
    for rank in (0, 1):
        dm = TrialDataModule(c, 4, seed=1, cross_targets=True)
        dm.trainer = SimpleNamespace(global_rank=rank, world_size=2)     # what Lightning attaches in fit
        batches = list(dm.train_dataloader())
        assert all(b["voxels"].shape[0] == 4 and "partner_subject" in b for b in batches)
        assert [b["subject_index"] for b in batches] == [dm.dataset.locate(int(i))[0] for i in
                                                         [s[0] for s in D.SubjectBatchSampler(dm.dataset, 4, seed=1, rank=rank, world=2)]]
        got.append({tuple(b["stim"].tolist()) + (b["subject_index"],) for b in batches})
    assert len(got[0]) > 0 and not got[0] & got[1]                       # the ranks' batches differ
    assert 0 < dm.partnered_trials() <= len(dm.dataset)
