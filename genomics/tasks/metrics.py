"""Metrics as the DNA benchmarks report them: accuracy, Matthews correlation, F1, AUROC and AUPRC for
classification (per label for multi-label), Pearson and Spearman correlations for regression."""

from __future__ import annotations

import torch


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """logits (n, c), labels (n,) -> fraction of argmax hits."""
    return float((logits.argmax(-1) == labels).float().mean())


def matthews_corrcoef(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Matthews correlation of the argmax predictions; for c > 2 classes, Gorodkin's R_K (as scikit-learn).

    0.0 when it is undefined (every prediction, or every label, in one class).
    """
    c = logits.shape[-1]
    preds = logits.argmax(-1)
    confusion = torch.bincount(labels * c + preds, minlength=c * c).reshape(c, c).double()
    t, p = confusion.sum(1), confusion.sum(0)  # true and predicted counts per class
    n, correct = confusion.sum(), confusion.trace()
    denominator = torch.sqrt((n * n - (p * p).sum()) * (n * n - (t * t).sum()))
    return float((correct * n - (t * p).sum()) / denominator) if denominator > 0 else 0.0


def _ranks(values: torch.Tensor) -> torch.Tensor:
    """1-based ranks (float64), tied values given their mean rank."""
    order = values.double().argsort()
    sorted_values = values.double()[order]
    ranks = torch.empty_like(sorted_values)
    ranks[order] = torch.arange(1, len(values) + 1, dtype=torch.float64)
    unique, inverse = torch.unique(sorted_values, return_inverse=True)
    mean_rank = torch.zeros(len(unique), dtype=torch.float64).index_add_(0, inverse, ranks[order])
    mean_rank /= torch.bincount(inverse, minlength=len(unique))
    ranks[order] = mean_rank[inverse]
    return ranks


def _binary_auroc(scores: torch.Tensor, positive: torch.Tensor) -> float:
    """Area under the ROC curve from ranks (Mann-Whitney U), ties counted half."""
    n_pos = int(positive.sum())
    n_neg = positive.numel() - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = _ranks(scores)
    return float((ranks[positive.bool()].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _binary_auprc(scores: torch.Tensor, positive: torch.Tensor) -> float:
    """Average precision (the area under the precision-recall curve as scikit-learn takes it): the precision at
    each distinct threshold, weighted by the recall it adds. NaN without positives."""
    n_pos = int(positive.sum())
    if n_pos == 0:
        return float("nan")
    order = scores.double().argsort(descending=True)
    sorted_scores, hits = scores.double()[order], positive[order].double()
    tp, seen = hits.cumsum(0), torch.arange(1, len(hits) + 1, dtype=torch.float64)
    last = torch.ones(len(hits), dtype=torch.bool)  # the last position of each run of tied scores
    last[:-1] = sorted_scores[1:] != sorted_scores[:-1]
    tp, seen = tp[last], seen[last]
    recall_added = torch.diff(tp, prepend=torch.zeros(1, dtype=torch.float64)) / n_pos
    return float((recall_added * tp / seen).sum())


def f1_macro(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The unweighted mean over classes of F1 of the argmax predictions (binary: both classes, as the NT
    benchmarks' macro F1); a class never predicted nor present counts 0."""
    c = logits.shape[-1]
    preds = logits.argmax(-1)
    scores = []
    for k in range(c):
        tp = float(((preds == k) & (labels == k)).sum())
        denominator = float((preds == k).sum() + (labels == k).sum())
        scores.append(2 * tp / denominator if denominator else 0.0)
    return sum(scores) / c


def auprc(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Binary: average precision of the positive class; c > 2: macro average of one-vs-rest (classes present)."""
    probs = logits.double().softmax(-1)
    c = probs.shape[-1]
    if c == 2:
        return _binary_auprc(probs[:, 1], labels == 1)
    values = [v for v in (_binary_auprc(probs[:, k], labels == k) for k in range(c)) if v == v]
    return sum(values) / len(values) if values else float("nan")


def per_label(logits: torch.Tensor, targets: torch.Tensor) -> tuple[list[float], list[float]]:
    """Multi-label logits and 0/1 targets (n, k) -> per-label AUROC and AUPRC lists (NaN for a label whose
    column holds one value)."""
    columns = range(logits.shape[-1])
    return (
        [_binary_auroc(logits[:, j], targets[:, j] > 0.5) for j in columns],
        [_binary_auprc(logits[:, j], targets[:, j] > 0.5) for j in columns],
    )


def pearson(preds: torch.Tensor, targets: torch.Tensor) -> float:
    """Pearson correlation of two (n,) vectors; NaN when either is constant."""
    x, y = preds.double() - preds.double().mean(), targets.double() - targets.double().mean()
    denominator = float(x.norm() * y.norm())
    return float((x * y).sum()) / denominator if denominator > 0 else float("nan")


def spearman(preds: torch.Tensor, targets: torch.Tensor) -> float:
    """Spearman correlation: Pearson's of the ranks (ties at their mean rank)."""
    return pearson(_ranks(preds), _ranks(targets))


def auroc(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Binary: AUROC of the positive class's probability; c > 2: the macro average of one-vs-rest AUROCs
    (over the classes present). NaN when only one class is present."""
    probs = logits.double().softmax(-1)
    c = probs.shape[-1]
    if c == 2:
        return _binary_auroc(probs[:, 1], labels == 1)
    values = [_binary_auroc(probs[:, k], labels == k) for k in range(c)]
    values = [v for v in values if v == v]
    return sum(values) / len(values) if values else float("nan")
