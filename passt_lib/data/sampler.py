"""Samplers: balanced (PaSST's label-frequency weights) and plain shuffling, DDP-aware.

Balanced weights: each record weighs sum over its positive labels of
``total / (count_c + offset)`` with ``count_c`` the number of records carrying
label c (defaults 1000 and 100, as in the reference recipe). Records without a
label weigh 0.

Sharding for DDP: every rank builds the same sampler with the same ``seed`` and
calls ``set_epoch(epoch)``; the full draw for the epoch is identical on all
ranks and rank r takes positions r, r + world_size, ... of it (padded to a
multiple of world_size), so the ranks see disjoint parts of one epoch.
"""

from __future__ import annotations

import math

import numpy as np
import torch


def balanced_weights(targets: np.ndarray, total: float = 1000.0, offset: float = 100.0
                     ) -> np.ndarray:
    """targets (N, C) multi-hot (soft values are thresholded at 0.5) -> weights (N,)."""
    t = np.asarray(targets)
    if t.ndim != 2:
        raise ValueError(f"balanced_weights expects targets (N, C); got shape {t.shape}")
    hot = (t > 0.5).astype(np.float64)  # (N, C)
    per_label = total / (hot.sum(axis=0) + offset)  # (C,)
    return hot @ per_label  # (N,)


class ShardedSampler(torch.utils.data.Sampler[int]):
    """An epoch's indices drawn from one seed, sharded across ``world_size`` ranks.

    ``weights`` None: a permutation of range(n) (without replacement);
    otherwise ``num_samples`` draws with replacement proportional to ``weights``.
    """

    def __init__(self, n: int, *, weights: np.ndarray | None = None,
                 num_samples: int | None = None, rank: int = 0, world_size: int = 1,
                 seed: int = 0, epoch: int = 0):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} out of range for world_size {world_size}")
        if weights is not None:
            weights = np.asarray(weights, dtype=np.float64)
            if weights.shape != (n,):
                raise ValueError(f"weights must have shape ({n},); got {weights.shape}")
            if not weights.sum() > 0:
                raise ValueError("balanced sampling needs at least one record with a label")
        self.n = n
        self.weights = None if weights is None else torch.from_numpy(weights)
        self.num_samples = n if num_samples is None else int(num_samples)
        self.rank, self.world_size, self.seed, self.epoch = rank, world_size, seed, epoch

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return math.ceil(self.num_samples / self.world_size)

    def global_indices(self) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        if self.weights is None:
            reps = math.ceil(self.num_samples / max(self.n, 1))
            idx = torch.cat([torch.randperm(self.n, generator=g) for _ in range(reps)])
            idx = idx[: self.num_samples]
        else:
            idx = torch.multinomial(self.weights, self.num_samples, replacement=True, generator=g)
        pad = len(self) * self.world_size - len(idx)
        return torch.cat([idx, idx[:pad]]) if pad else idx

    def __iter__(self):
        return iter(self.global_indices()[self.rank :: self.world_size].tolist())


def make_sampler(dataset, config, rank: int = 0, world_size: int = 1, seed: int = 0,
                 epoch: int = 0) -> ShardedSampler:
    """The training sampler a ``DataConfig`` asks for (balanced or shuffled), for one rank."""
    weights = None
    if config.balanced:
        weights = balanced_weights(dataset.targets(), config.balanced_sum, config.balanced_offset)
    return ShardedSampler(len(dataset), weights=weights, num_samples=config.num_samples,
                          rank=rank, world_size=world_size, seed=seed, epoch=epoch)
