"""Classification metrics against scikit-learn; the Markov baselines against direct counting."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import matthews_corrcoef as sk_mcc
from sklearn.metrics import roc_auc_score

from longseq.genomics.markov import ContextModel, bases_from_ids, select
from longseq.genomics.tasks.metrics import accuracy, auroc, matthews_corrcoef


@pytest.mark.parametrize("classes", [2, 3])
def test_metrics_match_scikit_learn(classes):
    labels = torch.randint(0, classes, (200,))
    logits = torch.randn(200, classes) + 1.5 * torch.nn.functional.one_hot(labels, classes)
    logits[:20] = logits[:20].round()  # ties
    assert accuracy(logits, labels) == pytest.approx((logits.argmax(-1) == labels).float().mean().item())
    assert matthews_corrcoef(logits, labels) == pytest.approx(sk_mcc(labels, logits.argmax(-1)))
    probs = logits.double().softmax(-1).numpy()
    expected = roc_auc_score(labels, probs[:, 1]) if classes == 2 else roc_auc_score(labels, probs, multi_class="ovr")
    assert auroc(logits, labels) == pytest.approx(expected)


def test_mcc_of_a_constant_prediction_is_zero():
    assert matthews_corrcoef(torch.tensor([[1.0, 0.0]] * 4), torch.tensor([0, 1, 0, 1])) == 0.0


def test_markov_probabilities_are_smoothed_counts():
    x = bases_from_ids(np.array([7, 8, 7, 8, 7, 9, 11, 7, 8]))  # A C A C A G N A C
    model = ContextModel(1, alpha=1.0).fit([x])
    # After A: C three times, G once; the pairs touching N (G-N, N-A) are not counted.
    assert model.counts[0].tolist() == [0, 3, 1, 0]
    assert model.counts.sum() == 6
    probs = 2 ** model.log2_probs(bases_from_ids(np.array([7, 8])))
    assert probs.tolist() == pytest.approx([(3 + 1) / (4 + 4)])
    two = ContextModel(1, two_sided=True).fit([x])
    assert two.counts.sum() == 4  # A_C*A, C_A*C, A_C*A, C_A*G with the middle base counted


def test_select_prefers_the_order_that_generalises():
    rng = np.random.default_rng(0)
    # A period-3 signal: the next base is a function of the previous two.
    x = np.zeros(6000, dtype=np.uint8)
    x[:2] = rng.integers(0, 4, 2)
    for t in range(2, len(x)):
        x[t] = (x[t - 1] + 2 * x[t - 2] + (rng.random() < 0.1) * rng.integers(1, 4)) % 4
    model, table = select(x[:5000], x[5000 - 5 :], orders=range(6))
    assert model.k == 2
    assert [row[0] for row in table] == list(range(6))
    assert model.bits_per_base(x[5000 - 2 :]) < 1.0


def test_f1_auprc_and_correlations_match_scikit_learn_and_scipy():
    from scipy.stats import pearsonr, spearmanr
    from sklearn.metrics import average_precision_score, f1_score

    from longseq.genomics.tasks.metrics import auprc, f1_macro, pearson, per_label, spearman

    rng = np.random.default_rng(3)
    for c in (2, 3):
        labels = torch.from_numpy(rng.integers(0, c, 60))
        logits = torch.from_numpy(rng.normal(size=(60, c))).round(decimals=1)  # ties included
        assert f1_macro(logits, labels) == pytest.approx(f1_score(labels, logits.argmax(-1), average="macro"))
        probs = logits.double().softmax(-1).numpy()
        expected = (
            average_precision_score(labels == 1, probs[:, 1])
            if c == 2
            else np.mean([average_precision_score(labels == k, probs[:, k]) for k in range(c)])
        )
        assert auprc(logits, labels) == pytest.approx(expected)
    targets = torch.from_numpy(rng.integers(0, 2, (50, 3))).float()
    logits = torch.from_numpy(rng.normal(size=(50, 3))) + targets
    aurocs, auprcs = per_label(logits, targets)
    for j in range(3):
        assert aurocs[j] == pytest.approx(roc_auc_score(targets[:, j], logits[:, j]))
        assert auprcs[j] == pytest.approx(average_precision_score(targets[:, j], logits[:, j]))
    x = torch.from_numpy(rng.normal(size=40)).round(decimals=1)
    y = x + torch.from_numpy(rng.normal(size=40))
    assert pearson(x, y) == pytest.approx(pearsonr(x, y)[0])
    assert spearman(x, y) == pytest.approx(spearmanr(x, y)[0])
