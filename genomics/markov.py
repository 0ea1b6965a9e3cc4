"""Count-based baselines for DNA language models: order-k Markov chains (causal) and two-sided k-context models.

The held-out bits per base of a trained model mean little alone; these baselines say what counting k-mers on
the same training sequence achieves. `select` picks k and the additive smoothing on a validation sequence.

    P(x_t | x_{t-k} .. x_{t-1})                   = (count(context, x_t) + alpha) / (count(context) + 4 alpha)
    P(x_t | x_{t-k} .. x_{t-1}, x_{t+1} .. x_{t+k})   the same over both sides (the baseline for masked LMs)

Sequences are base indices 0..3 (A, C, G, T); any other value (N) makes the positions that touch it unscored.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from longseq.genomics.data.tokenizer import A, T


def bases_from_ids(ids: np.ndarray) -> np.ndarray:
    """Token ids (A 7 .. T 10, anything else) -> base indices 0..3, and 4 for anything else (uint8)."""
    ids = np.asarray(ids)
    out = (ids - A).astype(np.int64)
    return np.where((ids >= A) & (ids <= T), out, 4).astype(np.uint8)


def _contexts(x: np.ndarray, left: int, right: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For every position t with ``left`` bases before and ``right`` after: the context code, the base, validity."""
    n = len(x) - left - right
    if n <= 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, bool)
    code = np.zeros(n, dtype=np.int64)
    valid = np.ones(n, dtype=bool)
    for j in [*range(left), *range(left + 1, left + 1 + right)]:
        part = x[j : j + n]
        valid &= part < 4
        code = code * 4 + np.minimum(part, 3)
    target = x[left : left + n]
    valid &= target < 4
    return code, np.minimum(target, 3).astype(np.int64), valid


@dataclass
class ContextModel:
    """Counts of each base after (and, if ``two_sided``, around) every context of ``k`` bases per side."""

    k: int
    two_sided: bool = False
    alpha: float = 1.0
    counts: np.ndarray | None = None

    @property
    def sides(self) -> tuple[int, int]:
        return (self.k, self.k if self.two_sided else 0)

    def fit(self, sequences: Iterable[np.ndarray]) -> ContextModel:
        """Count over base-index sequences (each (n,) uint8)."""
        left, right = self.sides
        contexts = 4 ** (left + right)
        self.counts = np.zeros((contexts, 4), dtype=np.int64)
        for x in sequences:
            code, target, valid = _contexts(x, left, right)
            self.counts += np.bincount(code[valid] * 4 + target[valid], minlength=contexts * 4).reshape(contexts, 4)
        return self

    def log2_probs(self, x: np.ndarray) -> np.ndarray:
        """log2 P(x_t | context) for every scored position of ``x`` (positions with a full, valid context)."""
        left, right = self.sides
        code, target, valid = _contexts(x, left, right)
        code, target = code[valid], target[valid]
        counts = self.counts[code]
        return np.log2((counts[np.arange(len(code)), target] + self.alpha) / (counts.sum(1) + 4 * self.alpha))

    def bits_at(self, x: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """-log2 P(x_t | context) at the given positions t of ``x`` (each needs its full context inside ``x``)."""
        left, right = self.sides
        positions = np.asarray(positions)
        if positions.size and (positions.min() < left or positions.max() >= len(x) - right):
            raise ValueError(f"positions need {left} bases before and {right} after them")
        code = np.zeros(len(positions), dtype=np.int64)
        bases = [x[positions + j] for j in [*range(-left, 0), *range(1, right + 1)]]
        target = x[positions]
        if any((b > 3).any() for b in [*bases, target]):
            raise ValueError("a scored position or its context is not A, C, G or T")
        for base in bases:
            code = code * 4 + base
        counts = self.counts[code]
        return -np.log2((counts[np.arange(len(code)), target] + self.alpha) / (counts.sum(1) + 4 * self.alpha))

    def bits_per_base(self, x: np.ndarray) -> float:
        """Mean -log2 P over the scored positions of ``x``."""
        logp = self.log2_probs(x)
        if logp.size == 0:
            raise ValueError("no position of the sequence has a full context")
        return float(-logp.mean())


def select(
    train: np.ndarray,
    val: np.ndarray,
    *,
    orders: Iterable[int],
    alphas: Iterable[float] = (0.1, 0.5, 1.0, 2.0, 5.0),
    two_sided: bool = False,
) -> tuple[ContextModel, list[tuple[int, float, float]]]:
    """Fit every order on ``train`` and keep the (order, alpha) with the fewest bits per base on ``val``.

    ``val`` should start with ``max(orders)`` bases of context (e.g. the end of the training sequence) so that
    every order scores the same positions; the scored positions are the last ``len(val) - max(orders)`` for
    one-sided models (for two-sided ones, also minus ``max(orders)`` at the end).

    Returns:
        the best model (fitted) and the table (order, best alpha, validation bits per base) for every order.
    """
    orders = list(orders)
    top = max(orders)
    best, table = None, []
    for k in orders:
        model = ContextModel(k, two_sided=two_sided).fit([train])
        trimmed = val[top - k : len(val) - (top - k if two_sided else 0)]
        scores = {}
        for alpha in alphas:
            model.alpha = alpha
            scores[alpha] = model.bits_per_base(trimmed)
        alpha = min(scores, key=scores.get)
        table.append((k, alpha, scores[alpha]))
        if best is None or scores[alpha] < best[2]:
            best = (k, alpha, scores[alpha])
    model = ContextModel(best[0], two_sided=two_sided, alpha=best[1]).fit([train])
    return model, table
