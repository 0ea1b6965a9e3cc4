"""Exact resume: the same data order and the same random numbers after a restart as without one.

Lightning's checkpoints already hold the model, optimizer, scheduler, gradient scaler and loop counters. Two
things are missing for the next loss to be exactly the one an uninterrupted run computes:

- The position inside an epoch. `ResumableDataLoader` reports how many batches of the current epoch it
  handed out (Lightning stores that in the checkpoint through ``state_dict``) and, after a restart, its
  sampler starts past them, so nothing is loaded twice. The shuffle order depends only on (seed, epoch).
- The random state. `StepSeed` reseeds torch, numpy and random before every training batch from
  (seed, global step, batch index), so a step draws the same dropout masks whatever ran before it
  (validation, a dataloader starting up, a restart).

Datasets must derive any randomness of their own from the index they are given (and the epoch), not from
the global generators, so that an item is the same item after a restart.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, IterableDataset


class ResumableSampler(DistributedSampler):
    """`DistributedSampler` (shuffle seeded by seed + epoch, one shard per rank) that can start mid-epoch.

    Being a `DistributedSampler`, Lightning leaves it in place under DDP instead of wrapping it.
    """

    def __init__(self, dataset: Dataset, *, num_replicas: int = 1, rank: int = 0, shuffle: bool = True, seed: int = 0):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=True)
        self.start = 0
        """Indices of this rank's shard to skip at the next iteration (set by `ResumableDataLoader`)."""

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        return iter(indices[self.start :])


class ResumableDataLoader(DataLoader):
    """A map-style `DataLoader` whose position inside the epoch survives a checkpoint.

    Args:
        dataset: a map-style dataset.
        batch_size: items per batch; an incomplete last batch is dropped.
        shuffle: shuffle each epoch, seeded by ``seed + epoch``.
        seed: the shuffle seed.
        num_replicas, rank: the data-parallel shard (``trainer.world_size``, ``trainer.global_rank``).
        num_workers, collate_fn, pin_memory: as in `DataLoader`.
    """

    def __init__(
        self,
        dataset: Dataset,
        *,
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        num_workers: int = 0,
        collate_fn=None,
        pin_memory: bool = False,
    ):
        if isinstance(dataset, IterableDataset):
            raise TypeError("ResumableDataLoader needs a map-style dataset (with __getitem__ and __len__)")
        sampler = ResumableSampler(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed)
        super().__init__(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            drop_last=True,
            num_workers=num_workers,
            collate_fn=collate_fn,
            pin_memory=pin_memory,
        )
        self._handed_out = 0  # batches of the current epoch given to the training loop
        self._resume_at = 0  # batches to skip at the next iteration (after load_state_dict)

    def __iter__(self) -> Iterator[Any]:
        self.sampler.start = self._resume_at * self.batch_size
        self._handed_out, self._resume_at = self._resume_at, 0
        for batch in super().__iter__():
            self._handed_out += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        return {"batches": self._handed_out}

    def load_state_dict(self, state: dict[str, int]) -> None:
        # A checkpoint taken after the last batch of an epoch resumes at the start of the next one.
        self._resume_at = state["batches"] if state["batches"] < len(self) else 0


class StepSeed(L.Callback):
    """Reseed torch, numpy and random before each training batch from (seed, global step, batch index).

    Every rank uses the same seed, as after Lightning's ``seed_everything``.
    """

    def __init__(self, seed: int):
        self.seed = seed

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int):
        entropy = np.random.SeedSequence([self.seed, trainer.global_step, batch_idx])
        step_seed = int(entropy.generate_state(1)[0])
        torch.manual_seed(step_seed)
        np.random.seed(step_seed)
        random.seed(step_seed)
