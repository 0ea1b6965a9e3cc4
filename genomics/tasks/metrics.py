"""Classification metrics as the DNA benchmarks report them: accuracy, Matthews correlation, AUROC."""

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


def _binary_auroc(scores: torch.Tensor, positive: torch.Tensor) -> float:
    """Area under the ROC curve from ranks (Mann-Whitney U), ties counted half."""
    n_pos = int(positive.sum())
    n_neg = positive.numel() - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = scores.double().argsort()
    sorted_scores = scores.double()[order]
    ranks = torch.empty_like(sorted_scores)
    ranks[order] = torch.arange(1, len(scores) + 1, dtype=torch.float64)
    # Average the ranks of tied scores.
    unique, inverse = torch.unique(sorted_scores, return_inverse=True)
    mean_rank = torch.zeros(len(unique), dtype=torch.float64).index_add_(0, inverse, ranks[order])
    mean_rank /= torch.bincount(inverse, minlength=len(unique))
    ranks[order] = mean_rank[inverse]
    return float((ranks[positive.bool()].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


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
