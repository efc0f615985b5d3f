"""Evaluation metrics for audio tagging, written to agree with scikit-learn.

Multi-label (AudioSet style):

- ``mean_average_precision``: the mean over classes with at least one positive
  of average precision, ``sum_n (R_n - R_{n-1}) P_n`` over distinct score
  thresholds (the step-wise definition of ``sklearn.metrics.average_precision_score``,
  no interpolation). Classes without positives are left out, as AudioSet
  papers do: their AP is undefined.
- ``mean_roc_auc``: the mean over classes with both positives and negatives
  of the ROC-AUC, computed as the Mann-Whitney statistic with tied scores
  counted half (equal to sklearn's trapezoidal ``roc_auc_score``).
- ``d_prime``: ``sqrt(2) * Phi^-1(AUC)`` of the mean AUC (the PANNs / AudioSet
  convention).

Masked labels (OpenMIC): ``mask`` (N, C), 1 where a (clip, class) pair is labelled, makes
every per-class score use the labelled clips of that class only: the same as scikit-learn's
``sample_weight`` set to the mask column. Values behind a mask are never read.

Single-label: ``accuracy`` of the arg-max.

Baselines: ``prior_scores`` predicts the train label frequencies for every
eval clip; the mAP of that prediction is the floor a model has to beat.

Everything works on numpy arrays or tensors and returns Python floats.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import torch

# AUCs of exactly 0 or 1 give an infinite d-prime; clip to keep it finite.
_AUC_EPS = 1e-6


def _as_numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().float().cpu().numpy()
    return np.asarray(x)


def _check_multilabel(scores, targets, mask=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(scores, positives, labelled), each (N, C); ``labelled`` is all True without a mask."""
    scores, targets = _as_numpy(scores).astype(np.float64), _as_numpy(targets)
    if scores.ndim != 2 or scores.shape != targets.shape:
        raise ValueError(
            f"expected scores and targets of the same shape (N, C); got {scores.shape} and "
            f"{targets.shape}"
        )
    if mask is None:
        return scores, targets > 0.5, np.ones(targets.shape, bool)
    labelled = _as_numpy(mask) > 0.5
    if labelled.shape != targets.shape:
        raise ValueError(f"expected a mask of the targets' shape {targets.shape}; got "
                         f"{labelled.shape}")
    return scores, (targets > 0.5) & labelled, labelled


def average_precision(scores, positives) -> float:
    """Average precision of one class: ``sum_n (R_n - R_{n-1}) P_n`` over distinct thresholds.

    ``scores`` (N,), ``positives`` (N,) bool with at least one True.
    """
    scores, positives = np.asarray(scores, dtype=np.float64), np.asarray(positives, dtype=bool)
    n_pos = int(positives.sum())
    if n_pos == 0:
        raise ValueError("average precision is undefined for a class without positives")
    order = np.argsort(-scores, kind="stable")
    scores, positives = scores[order], positives[order]
    # The last index of each run of equal scores is one threshold.
    last = np.r_[np.flatnonzero(np.diff(scores)), scores.size - 1]
    tp = np.cumsum(positives)[last]
    precision = tp / (last + 1)
    recall = tp / n_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of ``x``, ties sharing their mean rank."""
    order = np.argsort(x, kind="stable")
    xs = x[order]
    starts = np.r_[0, np.flatnonzero(np.diff(xs)) + 1]  # first index of each run of ties
    ends = np.r_[starts[1:], xs.size]
    mean_rank = (starts + ends + 1) / 2.0  # mean of ranks starts+1 .. ends
    ranks = np.empty_like(x, dtype=np.float64)
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks


def roc_auc(scores, positives) -> float:
    """ROC-AUC of one class (Mann-Whitney U / (n_pos * n_neg)); needs both kinds of label."""
    scores, positives = np.asarray(scores, dtype=np.float64), np.asarray(positives, dtype=bool)
    n_pos = int(positives.sum())
    n_neg = positives.size - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError(
            f"ROC-AUC needs positives and negatives; got {n_pos} positives, {n_neg} negatives"
        )
    ranks = _average_ranks(scores)
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def mean_average_precision(scores, targets, mask=None) -> float:
    """mAP over the classes that have at least one (labelled) positive. scores, targets,
    mask: (N, C); with ``mask``, each class's AP is over its labelled clips only."""
    scores, positives, labelled = _check_multilabel(scores, targets, mask)
    classes = np.flatnonzero(positives.any(axis=0))
    if classes.size == 0:
        raise ValueError("no class has a positive example; mAP is undefined")
    return float(np.mean([average_precision(scores[labelled[:, c], c],
                                            positives[labelled[:, c], c]) for c in classes]))


def mean_roc_auc(scores, targets, mask=None) -> float:
    """Mean ROC-AUC over the classes that have both positives and negatives (among their
    labelled clips, with ``mask``)."""
    scores, positives, labelled = _check_multilabel(scores, targets, mask)
    n_pos = positives.sum(axis=0)
    classes = np.flatnonzero((n_pos > 0) & (n_pos < labelled.sum(axis=0)))
    if classes.size == 0:
        raise ValueError("no class has both positive and negative examples; AUC is undefined")
    return float(np.mean([roc_auc(scores[labelled[:, c], c], positives[labelled[:, c], c])
                          for c in classes]))


def d_prime(auc: float) -> float:
    """``sqrt(2) * Phi^-1(auc)``: the separation of two unit Gaussians with this AUC."""
    if not 0.0 <= auc <= 1.0:
        raise ValueError(f"AUC must lie in [0, 1]; got {auc}")
    auc = min(max(auc, _AUC_EPS), 1.0 - _AUC_EPS)
    return math.sqrt(2.0) * NormalDist().inv_cdf(auc)


def accuracy(logits, labels) -> float:
    """Fraction of arg-max predictions equal to the class index. logits (N, C), labels (N,)."""
    logits, labels = _as_numpy(logits), _as_numpy(labels)
    if logits.ndim != 2 or labels.shape != (logits.shape[0],):
        raise ValueError(
            f"expected logits (N, C) and labels (N,); got {logits.shape} and {labels.shape}"
        )
    return float(np.mean(logits.argmax(axis=1) == labels))


def multilabel_metrics(scores, targets, mask=None) -> dict[str, float]:
    """``{"map", "auc", "dprime"}`` of scores (N, C) against multi-hot targets (N, C), over
    the labelled pairs of ``mask`` (N, C) when given."""
    auc = mean_roc_auc(scores, targets, mask)
    return {"map": mean_average_precision(scores, targets, mask), "auc": auc,
            "dprime": d_prime(auc)}


def label_frequencies(targets, n_classes: int | None = None, mask=None) -> np.ndarray:
    """Per-class frequency (C,) of multi-hot (N, C) targets or of class indices (N,); with
    ``mask`` (N, C), among the labelled clips of each class."""
    targets = _as_numpy(targets)
    if targets.ndim == 2 and mask is not None:
        labelled = _as_numpy(mask) > 0.5
        return ((targets > 0.5) & labelled).sum(axis=0) / np.maximum(labelled.sum(axis=0), 1)
    if targets.ndim == 2:
        return (targets > 0.5).mean(axis=0)
    if targets.ndim == 1:
        if n_classes is None:
            raise ValueError("class-index targets need n_classes")
        return np.bincount(targets.astype(np.int64), minlength=n_classes) / max(targets.size, 1)
    raise ValueError(f"expected targets (N, C) or (N,); got shape {targets.shape}")


def prior_scores(train_targets, n_eval: int, n_classes: int | None = None,
                 mask=None) -> np.ndarray:
    """The class-prior baseline: train label frequencies repeated for every eval clip, (N_eval, C)."""
    freq = label_frequencies(train_targets, n_classes, mask)
    return np.tile(freq[None, :], (n_eval, 1))  # (N_eval, C)


def prior_map(train_targets, eval_targets, train_mask=None, eval_mask=None) -> float:
    """mAP of predicting the train label frequencies for every eval clip.

    Every clip gets the same score per class, so each class's AP is its eval
    prevalence: the prior mAP is the mean prevalence of the classes present.
    """
    eval_targets = _as_numpy(eval_targets)
    scores = prior_scores(train_targets, eval_targets.shape[0], mask=train_mask)
    return mean_average_precision(scores, eval_targets, eval_mask)


def prior_accuracy(train_labels, eval_labels, n_classes: int) -> float:
    """Accuracy of always predicting the most frequent train class."""
    eval_labels = _as_numpy(eval_labels)
    scores = prior_scores(train_labels, eval_labels.shape[0], n_classes)
    return accuracy(scores, eval_labels)
