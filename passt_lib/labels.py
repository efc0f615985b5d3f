"""Masked labels: datasets where some (clip, class) pairs carry no label (OpenMIC-2018).

Such a dataset stores, for every clip, its C label values followed by C mask values
(1 = labelled, 0 = unknown): a target row of 2C numbers, the layout of the authors'
OpenMIC HDF5 file. Everything that reads targets of such a dataset goes through this
module, so that what hides behind a mask never reaches a loss, a gradient or a metric:

- :func:`split_targets` gives (labels, mask), the labels zeroed where the mask is 0;
- :func:`masked_bce` averages binary cross-entropy over the labelled pairs only;
- :func:`mix_targets` mixes two target rows as mixup does: labels linearly, masks by
  their product (a mixed pair is labelled only where both clips' pairs are).

The metrics take the mask too (``metrics.mean_average_precision(..., mask=)``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def split_targets(target: torch.Tensor, n_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(labels (..., C), mask (..., C)) of masked targets (..., 2C); labels are 0 where the
    mask is 0, whatever was stored there."""
    if target.shape[-1] != 2 * n_classes:
        raise ValueError(f"masked targets hold {n_classes} labels then {n_classes} masks per "
                         f"clip ({2 * n_classes} values); got {target.shape[-1]}")
    labels, mask = target[..., :n_classes], target[..., n_classes:]
    mask = (mask > 0.5).to(labels.dtype)
    return torch.where(mask > 0, labels, torch.zeros_like(labels)), mask


def join_targets(labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The (..., 2C) row of labels and mask (the inverse of :func:`split_targets`)."""
    return torch.cat([labels, mask.to(labels.dtype)], dim=-1)


def masked_bce(logits: torch.Tensor, target: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Binary cross-entropy of logits (B, C) against masked targets (B, 2C), averaged over
    the labelled (clip, class) pairs (0 when there is none). Unlabelled pairs add nothing to
    the loss or to the gradient."""
    labels, mask = split_targets(target.float(), n_classes)
    per_pair = F.binary_cross_entropy_with_logits(logits.float(), labels, reduction="none")
    per_pair = torch.where(mask > 0, per_pair, torch.zeros_like(per_pair))  # (B, C)
    return per_pair.sum() / mask.sum().clamp(min=1.0)


def mix_targets(t1: torch.Tensor, t2: torch.Tensor, lam: torch.Tensor,
                masked: bool = False) -> torch.Tensor:
    """Mixup's targets: ``lam * t1 + (1 - lam) * t2`` with lam (B, 1); for masked targets
    (B, 2C) the labels mix that way and the masks multiply."""
    if not masked:
        return lam * t1 + (1 - lam) * t2
    c = t1.shape[-1] // 2
    y1, m1 = split_targets(t1, c)
    y2, m2 = split_targets(t2, c)
    return join_targets(lam * y1 + (1 - lam) * y2, m1 * m2)
