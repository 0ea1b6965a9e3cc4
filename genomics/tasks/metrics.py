"""Metrics as the DNA benchmarks report them: accuracy, Matthews correlation, F1, AUROC and AUPRC for
classification (per label for multi-label), Pearson and Spearman correlations for regression.

The arithmetic is torchmetrics' (exact, tie-aware, as scikit-learn computes them); these wrappers fix what the
benchmarks expect of an undefined value: NaN for a curve or correlation that one class or a constant makes
meaningless, 0 for Matthews' correlation, and multi-class curves averaged over the classes present.
"""

from __future__ import annotations

import torch
from torchmetrics.functional import pearson_corrcoef, spearman_corrcoef
from torchmetrics.functional.classification import (
    binary_auroc,
    binary_average_precision,
    multiclass_f1_score,
    multiclass_matthews_corrcoef,
)

NAN = float("nan")


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """logits (n, c), labels (n,) -> fraction of argmax hits."""
    return float((logits.argmax(-1) == labels).float().mean())


def matthews_corrcoef(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Matthews correlation of the argmax predictions; for c > 2 classes, Gorodkin's R_K (as scikit-learn).

    0.0 when it is undefined (every prediction, or every label, in one class).
    """
    return float(multiclass_matthews_corrcoef(logits.argmax(-1), labels, num_classes=logits.shape[-1]))


def f1_macro(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The unweighted mean over classes of F1 of the argmax predictions (binary: both classes, as the NT
    benchmarks' macro F1), over the classes predicted or present (as scikit-learn)."""
    return float(multiclass_f1_score(logits.argmax(-1), labels, num_classes=logits.shape[-1], average="macro"))


def _binary(metric, scores: torch.Tensor, positive: torch.Tensor) -> float:
    """A ranking metric of scores (n,) against a 0/1 mask (n,); NaN when the mask holds one value."""
    if positive.all() or not positive.any():
        return NAN
    return float(metric(scores.double(), positive.long()))


def _one_vs_rest(metric, logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Binary: the metric of the positive class's probability; c > 2: its macro average over the classes
    present, one against the rest."""
    probs = logits.double().softmax(-1)
    c = probs.shape[-1]
    if c == 2:
        return _binary(metric, probs[:, 1], labels == 1)
    values = [v for v in (_binary(metric, probs[:, k], labels == k) for k in range(c)) if v == v]
    return sum(values) / len(values) if values else NAN


def auroc(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Area under the ROC curve (one-vs-rest macro for c > 2); NaN when only one class is present."""
    return _one_vs_rest(binary_auroc, logits, labels)


def auprc(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Average precision, scikit-learn's area under the precision-recall curve (one-vs-rest macro for c > 2)."""
    return _one_vs_rest(binary_average_precision, logits, labels)


def per_label(logits: torch.Tensor, targets: torch.Tensor) -> tuple[list[float], list[float]]:
    """Multi-label logits and 0/1 targets (n, k) -> per-label AUROC and AUPRC lists (NaN for a label whose
    column holds one value)."""
    columns = range(logits.shape[-1])
    return (
        [_binary(binary_auroc, logits[:, j], targets[:, j] > 0.5) for j in columns],
        [_binary(binary_average_precision, logits[:, j], targets[:, j] > 0.5) for j in columns],
    )


def pearson(preds: torch.Tensor, targets: torch.Tensor) -> float:
    """Pearson correlation of two (n,) vectors; NaN when either is constant."""
    if (preds == preds[0]).all() or (targets == targets[0]).all():
        return NAN
    return float(pearson_corrcoef(preds.double(), targets.double()))


def spearman(preds: torch.Tensor, targets: torch.Tensor) -> float:
    """Spearman correlation: Pearson's of the ranks (ties at their mean rank); NaN when either is constant."""
    if (preds == preds[0]).all() or (targets == targets[0]).all():
        return NAN
    return float(spearman_corrcoef(preds.double(), targets.double()))
