"""Held-out bits per base of pretrained models, scored position by position so baselines can match them.

- Causal models (HyenaDNA): every position of ``[start, stop)`` is scored once, by a window that gives it at
  least ``context`` preceding bases (``-log2 P(x_t | x_<t)``).
- Masked models (Caduceus): windows inside ``[start, stop)`` are masked (15 %, 80/10/10) with fixed seeds and
  the positions replaced by ``[MASK]`` scored (``-log2 P(x_t | the masked window)``); the selected positions left
  unchanged or randomised are not scored (the first show the model the answer). The positions are returned so
  that a count-based baseline can be scored on exactly the same ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from longseq.genomics.data.tokenizer import MASK, PAD
from longseq.genomics.tasks.pretrain import mask_tokens


@dataclass
class Scores:
    """Per-position scores: ``positions`` (n,) into the scored sequence and ``bits`` (n,) = -log2 P."""

    positions: np.ndarray
    bits: np.ndarray

    @property
    def bits_per_base(self) -> float:
        return float(self.bits.mean())


@torch.no_grad()
def causal_scores(
    model: nn.Module,
    ids: np.ndarray,
    start: int,
    stop: int,
    *,
    window: int,
    context: int,
    batch_size: int = 8,
    device: str | torch.device = "cpu",
) -> Scores:
    """Score ids[start:stop] with a causal model, each position with at least ``min(context, position)`` bases
    of preceding sequence (windows of ``window`` advancing by ``window - context``)."""
    if not 0 <= context < window:
        raise ValueError(f"need 0 <= context < window; got {context}, {window}")
    step = window - context
    jobs = []  # (window start, first scored offset, window length)
    for first in range(start, stop, step):
        begin = max(0, first - context)
        end = min(stop, first + step)
        jobs.append((begin, first - begin, end - begin))
    positions, bits = [], []
    for i in range(0, len(jobs), batch_size):
        chunk = jobs[i : i + batch_size]
        width = max(length for _, _, length in chunk)
        batch = torch.full((len(chunk), width), PAD, dtype=torch.long)
        for row, (begin, _, length) in enumerate(chunk):
            batch[row, :length] = torch.from_numpy(ids[begin : begin + length].astype(np.int64))
        logp = model(batch.to(device)).float().log_softmax(-1).cpu()
        for row, (begin, offset, length) in enumerate(chunk):
            # logits at position j predict token j + 1.
            targets = batch[row, max(offset, 1) : length]
            pred = logp[row, max(offset, 1) - 1 : length - 1]
            bits.append(-pred.gather(-1, targets[:, None])[:, 0].numpy() / math.log(2))
            positions.append(np.arange(begin + max(offset, 1), begin + length))
    return Scores(np.concatenate(positions), np.concatenate(bits))


@torch.no_grad()
def masked_scores(
    model: nn.Module,
    ids: np.ndarray,
    start: int,
    stop: int,
    *,
    window: int,
    seeds: int = 1,
    mask_prob: float = 0.15,
    batch_size: int = 8,
    device: str | torch.device = "cpu",
) -> Scores:
    """Score the ``[MASK]`` positions of ids[start:stop] with a masked LM: non-overlapping windows inside the range,
    each masked ``seeds`` times with generators seeded 0 .. seeds - 1."""
    starts = list(range(start, stop - window + 1, window))
    if not starts:
        raise ValueError(f"the range [{start}, {stop}) holds no window of {window}")
    windows = torch.stack([torch.from_numpy(ids[s : s + window].astype(np.int64)) for s in starts])
    positions, bits = [], []
    for seed in range(seeds):
        generator = torch.Generator().manual_seed(seed)
        inputs, targets = mask_tokens(windows, mask_prob=mask_prob, generator=generator)
        for i in range(0, len(windows), batch_size):
            logp = model(inputs[i : i + batch_size].to(device)).float().log_softmax(-1).cpu()
            # Only the positions the model sees as [MASK]: the selected ones left as they were (10 %) show it the
            # answer, and the randomised ones (10 %) a wrong base it learns to distrust; neither is a prediction.
            target = torch.where(inputs[i : i + batch_size] == MASK, targets[i : i + batch_size], PAD)
            rows, cols = torch.nonzero(target != PAD, as_tuple=True)
            bits.append(-logp[rows, cols, target[rows, cols]].numpy() / math.log(2))
            positions.append(np.asarray(starts)[i + rows.numpy()] + cols.numpy())
    return Scores(np.concatenate(positions), np.concatenate(bits))
