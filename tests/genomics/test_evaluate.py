"""Held-out scoring: every position once with its context, masked positions reported for matched baselines."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import longseq
from longseq.genomics.data.tokenizer import MASK, PAD, A, T
from longseq.genomics.evaluate import causal_scores, masked_scores
from longseq.genomics.markov import ContextModel, bases_from_ids
from longseq.genomics.tasks.pretrain import PretrainTask, mask_tokens


def test_causal_scores_cover_each_position_once_with_context():
    model = longseq.from_pretrained("hyenadna-test")
    ids = np.random.default_rng(0).integers(7, 11, 300)
    scores = causal_scores(model, ids, 100, 250, window=64, context=32, batch_size=3)
    assert scores.positions.tolist() == list(range(100, 250))
    # Windows score 32 new positions after 32 of context: 170 is scored in the window [132, 196).
    window = torch.from_numpy(ids[132:196])[None]
    with torch.no_grad():
        logp = model(window).log_softmax(-1)[0, 170 - 132 - 1, ids[170]].item()
    assert abs(scores.bits[70] + logp / math.log(2)) < 1e-5


def test_masked_scores_and_matched_baseline_positions():
    model = longseq.from_pretrained("caduceus-ps-test")
    ids = np.random.default_rng(1).integers(7, 11, 400)
    scores = masked_scores(model, ids, 100, 400, window=64, seeds=2)
    assert scores.positions.min() >= 100 and scores.positions.max() < 100 + 4 * 64
    # The [MASK] positions of the two masks: 80 % of the 15 % selected.
    windows = torch.from_numpy(ids[100:356]).view(4, 64)
    masked = [
        np.flatnonzero((mask_tokens(windows, generator=torch.Generator().manual_seed(s))[0] == MASK).numpy()) + 100
        for s in range(2)
    ]
    assert scores.positions.tolist() == np.concatenate(masked).tolist()
    assert np.isfinite(scores.bits).all() and (scores.bits > 0).all()
    bases = bases_from_ids(ids)
    baseline = ContextModel(2, two_sided=True).fit([bases[:100]])
    assert baseline.bits_at(bases, scores.positions).shape == scores.positions.shape
    direct = baseline.bits_at(bases, np.arange(2, 398))
    assert np.allclose(direct.mean(), baseline.bits_per_base(bases))


class CopyInput(torch.nn.Module):
    """A masked LM that trusts its input: the base it is shown gets probability 0.7 (0.1 each for the others), and
    a ``[MASK]`` the four bases evenly. Scored only where the input really is ``[MASK]``, it earns exactly 2 bits."""

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        logits = torch.full((*ids.shape, 16), -30.0)
        is_base = (ids >= A) & (ids <= T)
        logits[..., A : T + 1] = torch.where(is_base, math.log(0.1), math.log(0.25))[..., None]
        shown = torch.where(is_base, ids, A)[..., None]
        copied = logits.gather(-1, shown).masked_fill(is_base[..., None], math.log(0.7))
        return logits.scatter(-1, shown, copied)


def test_a_model_that_copies_its_input_gains_nothing():
    ids = np.random.default_rng(2).integers(A, T + 1, 2000)
    scores = masked_scores(CopyInput(), ids, 0, 2000, window=100, seeds=3)
    np.testing.assert_allclose(scores.bits, 2.0, atol=1e-6)  # not one unchanged (selected, not masked) position
    # Scored over every selected position (the old figure), copying would have looked like a win.
    inputs, targets = mask_tokens(torch.from_numpy(ids).view(20, 100), generator=torch.Generator().manual_seed(0))
    logp = CopyInput()(inputs).log_softmax(-1)
    selected = targets != PAD
    leaky = -logp[selected].gather(-1, targets[selected][:, None]).mean() / math.log(2)
    assert leaky < 1.95
    # The validation loss of pretraining takes the same positions: ln 4 nats.
    task = PretrainTask(CopyInput(), objective="mlm")
    batch = torch.from_numpy(ids).view(20, 100)
    assert task._mlm_loss(batch, torch.Generator().manual_seed(0), only_masked=True).item() == pytest.approx(
        math.log(4), abs=1e-5
    )
