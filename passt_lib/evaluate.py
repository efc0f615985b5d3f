"""Evaluation during training: eval-mode mels once, logits every epoch, metrics.

The eval split's mel spectrograms are computed once per phase (the eval front-end has no
randomness) and kept on the CPU; every epoch predicts them in batches under the precision
policy and scores the logits: mAP, ROC AUC and d' for multi-label tasks
(``passt_lib.metrics``), accuracy for single-label ones.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn

from passt_lib import metrics as M
from passt_lib.data.pipeline import Split, iterate_batches
from passt_lib.frontend import check_finite
from passt_lib.labels import split_targets
from passt_lib.precision import autocast


@torch.no_grad()
def predict(model: nn.Module, mels: torch.Tensor, transform: Callable, batch_size: int,
            precision: str, device: torch.device) -> torch.Tensor:
    """Logits (N, C) in fp32 on the CPU for precomputed mels (N, F, T); NaN or infinite
    values are an error naming the clips."""
    check_finite(mels)
    model.eval()
    out = []
    for i in range(0, len(mels), batch_size):
        x = transform(mels[i:i + batch_size].to(device, non_blocking=True))
        with autocast(precision, device):
            out.append(model(x).float())
    return torch.cat(out).cpu() if out else torch.zeros(0, 0)


def eval_metrics(logits: torch.Tensor, targets: torch.Tensor, task: str, masked: bool = False,
                 prefix: str = "eval_") -> dict[str, float]:
    """Accuracy, or mAP, AUC and d' (over the labelled pairs of masked targets (N, 2C)),
    named ``prefix`` + metric."""
    targets = targets.cpu()
    if task == "singlelabel":
        return {f"{prefix}accuracy": M.accuracy(logits, targets)}
    mask = None
    if masked:
        targets, mask = split_targets(targets, logits.shape[1])
    m = M.multilabel_metrics(torch.sigmoid(logits), targets, mask)
    return {f"{prefix}map": m["map"], f"{prefix}auc": m["auc"], f"{prefix}dprime": m["dprime"]}


@torch.no_grad()
def compute_mels(frontend: nn.Module, split: Split, indices: torch.Tensor, batch_size: int,
                 device: torch.device, num_workers: int) -> torch.Tensor:
    """Eval-mode mel spectrograms (n, F, T) of ``split[indices]`` (kept on the CPU)."""
    frontend.eval()
    batches = list(indices.split(batch_size))
    mels = [frontend(w.to(device, non_blocking=True)).cpu()  # (B, F, T); CPU memory is larger
            for w, _ in iterate_batches(split, batches, num_workers)]
    return torch.cat(mels)
