"""Metrics against scikit-learn (the oracle), on random and on tied scores."""

import math

import numpy as np
import pytest
import torch

from passt_lib import metrics

sk = pytest.importorskip("sklearn.metrics")


def _random_problem(seed, n=200, c=12, ties=False):
    rng = np.random.default_rng(seed)
    targets = rng.random((n, c)) < rng.uniform(0.02, 0.4, size=c)
    targets[:, 0] = False  # a class without positives: left out of mAP and AUC
    targets[:, 1] = True  # a class without negatives: in mAP, left out of AUC
    scores = rng.normal(size=(n, c)) + 1.5 * targets
    if ties:
        scores = np.round(scores, 0)  # few distinct values: many ties
    return scores, targets


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_map_auc_dprime_match_sklearn(seed, ties):
    scores, targets = _random_problem(seed, ties=ties)
    with_pos = [c for c in range(targets.shape[1]) if targets[:, c].any()]
    both = [c for c in with_pos if not targets[:, c].all()]
    ref_map = np.mean([sk.average_precision_score(targets[:, c], scores[:, c]) for c in with_pos])
    ref_auc = np.mean([sk.roc_auc_score(targets[:, c], scores[:, c]) for c in both])
    got = metrics.multilabel_metrics(torch.from_numpy(scores), torch.from_numpy(targets).float())
    assert got["map"] == pytest.approx(ref_map, abs=1e-12)
    assert got["auc"] == pytest.approx(ref_auc, abs=1e-12)
    # sklearn's macro AUC over the same classes agrees too.
    assert got["auc"] == pytest.approx(
        sk.roc_auc_score(targets[:, both], scores[:, both], average="macro"), abs=1e-12
    )
    assert got["dprime"] == pytest.approx(math.sqrt(2) * torch.special.ndtri(
        torch.tensor(ref_auc, dtype=torch.float64)).item(), abs=1e-9)


def test_perfect_and_chance_scores():
    targets = np.array([[1, 0], [0, 1], [1, 0], [0, 1]], dtype=np.float32)
    assert metrics.mean_average_precision(targets * 2.0, targets) == 1.0
    assert metrics.mean_roc_auc(targets * 2.0, targets) == 1.0
    assert math.isfinite(metrics.d_prime(1.0)) and metrics.d_prime(1.0) > 5
    assert metrics.d_prime(0.5) == pytest.approx(0.0)
    assert metrics.mean_roc_auc(np.zeros((4, 2)), targets) == 0.5


def test_accuracy_matches_sklearn():
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(50, 7))
    labels = rng.integers(0, 7, size=50)
    assert metrics.accuracy(logits, labels) == pytest.approx(
        sk.accuracy_score(labels, logits.argmax(1))
    )


def test_prior_map_is_mean_eval_prevalence():
    rng = np.random.default_rng(4)
    train = rng.random((300, 6)) < np.linspace(0.05, 0.5, 6)
    evals = rng.random((100, 6)) < np.linspace(0.5, 0.05, 6)
    expected = np.mean([evals[:, c].mean() for c in range(6) if evals[:, c].any()])
    assert metrics.prior_map(train, evals) == pytest.approx(expected)
    # A model better than the prior scores higher.
    assert metrics.mean_average_precision(evals + rng.random(evals.shape), evals) > expected


def test_prior_accuracy_predicts_most_frequent_class():
    train = np.array([2, 2, 2, 1, 0])
    evals = np.array([2, 1, 2, 0])
    assert metrics.prior_accuracy(train, evals, n_classes=3) == 0.5


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="same shape"):
        metrics.mean_average_precision(np.zeros((3, 2)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="no class has a positive"):
        metrics.mean_average_precision(np.zeros((3, 2)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        metrics.d_prime(1.5)
