"""Held-out scoring: every position once with its context, masked positions reported for matched baselines."""

from __future__ import annotations

import math

import numpy as np
import torch

import longseq
from longseq.genomics.evaluate import causal_scores, masked_scores
from longseq.genomics.markov import ContextModel, bases_from_ids


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
    assert 0.05 < len(scores.positions) / (2 * 4 * 64) < 0.25
    assert np.isfinite(scores.bits).all() and (scores.bits > 0).all()
    bases = bases_from_ids(ids)
    baseline = ContextModel(2, two_sided=True).fit([bases[:100]])
    assert baseline.bits_at(bases, scores.positions).shape == scores.positions.shape
    direct = baseline.bits_at(bases, np.arange(2, 398))
    assert np.allclose(direct.mean(), baseline.bits_per_base(bases))
