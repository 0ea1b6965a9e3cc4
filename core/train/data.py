"""Token windows from one long token sequence (a genome, a byte stream): a dataset and a LightningDataModule."""

from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from longseq.core.io import InputError
from longseq.core.train.resume import ResumableDataLoader


class TokenWindows(Dataset):
    """Item i is ``(tokens[s : s + seq_len], tokens[s + 1 : s + seq_len + 1])`` with ``s = i * stride``.

    Args:
        tokens: (n,) int64 token ids.
        seq_len: tokens per window.
        stride: start-to-start distance (default ``seq_len``: windows that do not overlap).
    """

    def __init__(self, tokens: torch.Tensor, *, seq_len: int, stride: int | None = None):
        if tokens.ndim != 1:
            raise InputError(f"tokens must be one sequence (n,), got shape {tuple(tokens.shape)}")
        if seq_len < 1 or (stride is not None and stride < 1):
            raise InputError(f"seq_len and stride must be positive, got {seq_len} and {stride}")
        if tokens.numel() < seq_len + 1:
            raise InputError(f"{tokens.numel()} tokens are too few for one window of {seq_len} (+1 target)")
        self.tokens = tokens.long()
        self.seq_len = seq_len
        self.stride = stride if stride is not None else seq_len

    def __len__(self) -> int:
        return (self.tokens.numel() - self.seq_len - 1) // self.stride + 1

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        start = index * self.stride
        window = self.tokens[start : start + self.seq_len + 1]
        return window[:-1], window[1:]


class TokenWindowDataModule(L.LightningDataModule):
    """Shuffled, exactly resumable training windows and in-order validation windows.

    Args:
        train_tokens, val_tokens: (n,) int64 token ids; no validation when ``val_tokens`` is None.
        seq_len, stride: see `TokenWindows`.
        batch_size: windows per batch and per device.
        seed: the shuffle seed.
        num_workers: dataloader worker processes.
    """

    def __init__(
        self,
        train_tokens: torch.Tensor,
        val_tokens: torch.Tensor | None = None,
        *,
        seq_len: int,
        batch_size: int,
        stride: int | None = None,
        seed: int = 0,
        num_workers: int = 0,
    ):
        super().__init__()
        self.train = TokenWindows(train_tokens, seq_len=seq_len, stride=stride)
        self.val = None if val_tokens is None else TokenWindows(val_tokens, seq_len=seq_len)
        if len(self.train) < batch_size:
            raise InputError(f"{len(self.train)} training windows are fewer than one batch of {batch_size}")
        self.batch_size = batch_size
        self.seed = seed
        self.num_workers = num_workers

    def train_dataloader(self) -> ResumableDataLoader:
        trainer = self.trainer
        return ResumableDataLoader(
            self.train,
            batch_size=self.batch_size,
            shuffle=True,
            seed=self.seed,
            num_replicas=trainer.world_size if trainer is not None else 1,
            rank=trainer.global_rank if trainer is not None else 0,
            num_workers=self.num_workers,
        )

    def val_dataloader(self) -> DataLoader | list:
        if self.val is None:
            return []
        return DataLoader(self.val, batch_size=self.batch_size, shuffle=False, num_workers=self.num_workers)
