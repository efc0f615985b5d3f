"""Processes, devices and randomness of a training run.

- Process group: under ``torchrun`` (``WORLD_SIZE > 1``) a run joins the group (gloo on
  CPU, nccl on CUDA) and every rank knows its place (:class:`Dist`). Without torchrun a
  run is rank 0 of 1 and nothing here talks to other processes.
- Device: "auto" is CUDA when available; a bare "cuda" is the rank's local GPU.
- Randomness: every stream a run draws from is seeded from integers (the run's seed, the
  epoch, the rank, a stream id) by :func:`derived_seed`, so a run depends only on its
  config; :func:`rng_state` / :func:`set_rng_state` save and restore the global
  generators for checkpoints.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Dist:
    """This process's place in the run: rank, number of ranks, local rank (GPU index)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1  # ranks on this machine

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def init_distributed(device_kind: str) -> Dist:
    """Join the process group when started by torchrun (WORLD_SIZE > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_kind == "cuda" else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")),
                int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


def device_kind(name: str) -> str:
    """"cuda" or "cpu" for a device name ("auto", "cpu", "cuda", "cuda:1", ...)."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name).type


def resolve_device(name: str, d: Dist) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", d.local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


@contextlib.contextmanager
def main_process_first(d: Dist):
    """Rank 0 runs the block first while the other ranks wait, then they run it.

    For work that fills a cache (building the embedded dataset): concurrent builds would
    replace each other's folders, while after rank 0 the others find the cache.
    """
    if d.active and not d.main:
        dist.barrier()  # released by rank 0 below
    yield
    if d.active and d.main:
        dist.barrier()


def all_reduce_mean(values: list[float], d: Dist) -> list[float]:
    if not d.active:
        return values
    t = torch.tensor(values, dtype=torch.float64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t)
    return (t / d.world).cpu().tolist()


def gather_rows(x: torch.Tensor, n_total: int, d: Dist) -> torch.Tensor:
    """Reassemble rows sharded as ``rank::world`` (each shard padded to equal length)."""
    if not d.active:
        return x
    per = math.ceil(n_total / d.world)
    pad = torch.zeros(per - len(x), *x.shape[1:], dtype=x.dtype, device=x.device)
    x = torch.cat([x, pad]).contiguous()  # (per, C)
    if dist.get_backend() == "nccl":
        x = x.cuda()
    parts = [torch.empty_like(x) for _ in range(d.world)]
    dist.all_gather(parts, x)
    stacked = torch.stack(parts, dim=1)  # (per, world, C): row r*world + k comes from rank k
    return stacked.reshape(per * d.world, *x.shape[1:])[:n_total].cpu()  # (N, C)


# --------------------------------------------------------------------------------------------
# Randomness
# --------------------------------------------------------------------------------------------
# Stream ids of derived_seed(seed, epoch, rank, STREAM): one per kind of draw.
GLOBAL_STREAM = 2  # torch / numpy / random global generators (patchout, masks, dropout)
AUGMENT_STREAM = 3  # waveform and spectrogram augmentation draws


def derived_seed(*parts: int) -> int:
    """A 63-bit seed from integers (stable across runs and platforms)."""
    g = torch.Generator().manual_seed(0x5EED)
    seed = 0
    for p in parts:
        g.manual_seed((seed * 1_000_003 + int(p) + 0x9E3779B9) % (2**63))
        seed = int(torch.randint(0, 2**62, (1,), generator=g))
    return seed


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """The global RNG states as tensors and plain values (a checkpoint loads them with
    ``weights_only=True``): NumPy's key array is stored as an int64 tensor."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"python": random.getstate(),
             "numpy": (name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss),
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    name, keys, *rest = state["numpy"]
    keys = keys.numpy() if isinstance(keys, torch.Tensor) else keys
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
