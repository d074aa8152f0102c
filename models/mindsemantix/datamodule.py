"""The training trials of one stage as a LightningDataModule: single-subject batches (`data.SubjectBatchSampler`,
subjects interleaved), each rank taking every world-th batch under DDP."""
from __future__ import annotations

import lightning as L
from torch.utils.data import DataLoader

from .data import Corpus, SubjectBatchSampler, TrialDataset, collate_single_subject


class TrialDataModule(L.LightningDataModule):
    def __init__(self, corpus: Corpus, batch_size: int, seed: int = 0, repeat_targets: bool = False, cross_targets: bool = False):
        """repeat_targets, cross_targets: the extra targets of masked brain modeling (data.TrialDataset)."""
        super().__init__()
        self.batch_size, self.seed = batch_size, seed
        # built here, not in setup(): the driver checks and logs what it holds before training starts
        self.dataset = TrialDataset(corpus, "train", repeat_targets=repeat_targets, cross_targets=cross_targets, seed=seed)

    def partnered_trials(self) -> int:
        """How many trials have another subject's trial of the same stimulus (cross_targets)."""
        ds = self.dataset
        return sum(1 for k, st in enumerate(ds.stims) for s in st.tolist() if (k, s) in (ds.partners or {}))

    def train_dataloader(self):
        sampler = SubjectBatchSampler(self.dataset, self.batch_size, seed=self.seed, rank=self.trainer.global_rank,
                                      world=self.trainer.world_size)
        return DataLoader(self.dataset, batch_sampler=sampler, collate_fn=collate_single_subject, num_workers=0)
