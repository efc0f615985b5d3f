"""The training data pipeline: splits in memory or on disk, batches on the training device.

- :func:`load_splits` opens the train and eval sets of a ``DataConfig`` and decodes them
  into memory when they are small (the embedded scale); on CUDA those in-memory clips live
  on the device.
- :class:`TrainBatches` yields one epoch of (wave (B, S), target) batches at a time, on the
  training device. Clips read from files are decoded by DataLoader worker processes that
  live for the whole run (across epochs and phases), into pinned memory, ``prefetch`` batches
  per worker ahead; each batch is copied to the GPU on a side stream while the previous one
  trains. The next epoch's first batches can be requested before an evaluation
  (:meth:`TrainBatches.start`), so that workers decode while the device evaluates.
  ``wait_seconds`` counts the time the training process spent waiting for a batch.

Workers only decode: every random draw of training (augmentation, patchout, masks) happens in
the training process from generators seeded by (seed, epoch, rank), so results do not depend
on the number of workers.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from passt_lib.data import make_datasets, make_test_dataset
from passt_lib.data.config import DataConfig
from passt_lib.data.sampler import ShardedSampler

# Decoded clips are kept in memory when train + eval take at most this many bytes.
PRELOAD_LIMIT = 2 * 1024**3
# In-memory clips move onto a CUDA device when they take at most this many bytes.
DEVICE_RESIDENT_LIMIT = 4 * 1024**3
# Bytes of decoded batches in flight between loader workers and the training process.
PREFETCH_BYTES = 2 * 1024**3


@dataclass
class Split:
    """A dataset with its targets; ``waves`` holds every decoded clip when preloaded."""

    dataset: torch.utils.data.Dataset
    targets: torch.Tensor  # (N, C) float multi-hot or (N,) int64
    waves: torch.Tensor | None = None  # (N, S) float32, on the CPU or the training device

    def __len__(self) -> int:
        return len(self.targets)


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask, e.g. a container's share)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def resolve_num_workers(requested: int | str, *, threads: int | None = None,
                        local_world: int = 1, device_type: str = "cpu") -> int:
    """Loader worker processes for ``num_workers`` ("auto" or a number).

    "auto" gives one worker per core this run may use, less one on CUDA. A run's cores are
    ``threads`` when it is given (the study runner gives each of the runs it runs side by
    side its share that way), else the machine's cores shared evenly among the ranks on it
    (``local_world``). On CUDA the training process needs a core of its own to launch the
    device's work; on a CPU the workers share the cores with the training step and sleep
    once they are ``prefetch`` batches ahead (``passt-study bench train`` on 2 cores, tiny
    PaSST on 10 s clips: 2 workers 55 clips/s, 1 worker 50, none 50 with 28% stalled).
    """
    if requested != "auto":
        return int(requested)
    cores = threads if threads else max(1, available_cores() // max(local_world, 1))
    return max(cores - 1, 1) if device_type == "cuda" else cores


def _collate(items):
    waves, targets, _ = zip(*items)
    return torch.stack(waves), torch.stack(targets)


def _stack_all(ds, batch_size: int = 64, num_workers: int = 0):
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, num_workers=num_workers,
                                         collate_fn=_collate)
    waves, targets = zip(*loader)
    return torch.cat(waves), torch.cat(targets)


def load_splits(data: DataConfig, *, preload: bool | None, num_workers: int,
                device: torch.device) -> tuple[Split, Split]:
    """(train, eval) splits of ``data``; decoded into memory when ``preload`` (None: when they
    fit in ``PRELOAD_LIMIT``), on the device when it is CUDA and they fit there."""
    train_ds, eval_ds = make_datasets(data)
    n_bytes = 4 * data.n_samples * (len(train_ds) + len(eval_ds))
    preload = preload if preload is not None else n_bytes <= PRELOAD_LIMIT
    on_device = device.type == "cuda" and n_bytes <= DEVICE_RESIDENT_LIMIT
    # Skipped entries are counted by the dataset object that read them: preload in this
    # process when skipping, so that the counts reach metrics.json.
    preload_workers = 0 if data.on_error == "skip" else num_workers
    splits = []
    for ds in (train_ds, eval_ds):
        if preload:
            waves, targets = _stack_all(ds, num_workers=preload_workers)
            if on_device:
                waves, targets = waves.to(device), targets.to(device)
            splits.append(Split(ds, targets, waves))
        else:
            targets = torch.as_tensor(np.asarray(ds.targets()))
            if data.task == "singlelabel":
                targets = targets.argmax(dim=1)
            splits.append(Split(ds, targets))
    return splits[0], splits[1]


def load_test_split(data: DataConfig) -> Split:
    """The extra test set (``data.test_path``), read from its files when evaluated."""
    ds = make_test_dataset(data)
    if ds is None:
        raise ValueError("no test set: data.test_path is not set")
    targets = torch.as_tensor(np.asarray(ds.targets()))
    return Split(ds, targets.argmax(dim=1) if data.task == "singlelabel" else targets)


def skipped_count(split: Split, num_workers: int) -> int | None:
    """Entries skipped under ``on_error="skip"`` (0 for datasets without the policy).

    None when DataLoader worker processes read the split while training (not preloaded):
    they log what they skip, but their counts do not come back.
    """
    if split.waves is None and num_workers > 0:
        return None
    return getattr(split.dataset, "n_skipped", 0)


def iterate_batches(split: Split, batches: list[torch.Tensor], num_workers: int = 0):
    """Yield (wave (B, S), target) for each index batch, from memory or through a DataLoader
    that lives for this one pass (evaluation; training uses :class:`TrainBatches`)."""
    if split.waves is not None:
        for idx in batches:
            idx = idx.to(split.waves.device, non_blocking=True)
            yield split.waves[idx], split.targets[idx]
        return
    loader = torch.utils.data.DataLoader(split.dataset, batch_sampler=[b.tolist() for b in batches],
                                         num_workers=num_workers, collate_fn=_collate)
    yield from loader


class _EpochBatches(torch.utils.data.Sampler[list[int]]):
    """A DataLoader batch sampler whose batches are those of the epoch last set: the loader
    (and its workers) stays alive while the epochs change."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class TrainBatches:
    """Training batches of a run, one epoch at a time, on ``device`` (see the module doc).

    ``sampler`` draws each epoch's indices (this rank's share); ``local_batch`` is the batch
    per rank. ``epoch(e, n)`` yields the first ``n`` batches of epoch ``e``.
    """

    def __init__(self, split: Split, sampler: ShardedSampler, local_batch: int, *,
                 clip_samples: int, num_workers: int, device: torch.device,
                 seed: int = 0) -> None:
        self.split, self.sampler, self.local_batch = split, sampler, local_batch
        self.device = device
        self.num_workers = num_workers if split.waves is None else 0
        self.wait_seconds = 0.0
        self._started: tuple[int, int, Iterator] | None = None
        self._batch_sampler = _EpochBatches()
        self.loader = None
        if split.waves is None:
            n_bytes = 4 * local_batch * clip_samples  # one float32 batch
            workers = max(self.num_workers, 1)
            prefetch = int(min(4, max(1, PREFETCH_BYTES // (workers * n_bytes))))
            self.loader = torch.utils.data.DataLoader(
                split.dataset, batch_sampler=self._batch_sampler, num_workers=self.num_workers,
                collate_fn=_collate, pin_memory=device.type == "cuda",
                persistent_workers=self.num_workers > 0,
                prefetch_factor=prefetch if self.num_workers > 0 else None,
                worker_init_fn=_seed_worker, generator=torch.Generator().manual_seed(seed))

    def _indices(self, epoch: int, n: int) -> list[torch.Tensor]:
        self.sampler.set_epoch(epoch)
        idx = torch.tensor(list(self.sampler))
        return list(idx.split(self.local_batch))[:n]  # (local_batch,) each

    def start(self, epoch: int, n: int) -> None:
        """Start fetching epoch ``epoch`` (``n`` batches) now; :meth:`epoch` continues it."""
        batches = self._indices(epoch, n)
        if self.loader is None:
            it = iterate_batches(self.split, batches)
        else:
            self._batch_sampler.batches = [b.tolist() for b in batches]
            it = iter(self.loader)
        self._started = (epoch, n, it)

    def epoch(self, epoch: int, n: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches (wave (B, S), target) of epoch ``epoch`` on the device, ``n`` of them."""
        if self._started is None or self._started[:2] != (epoch, n):
            self.start(epoch, n)
        it = self._started[2]
        self._started = None
        yield from _to_device(self._timed(it), self.device)

    def _timed(self, it: Iterator) -> Iterator:
        while True:
            t0 = time.perf_counter()
            try:
                item = next(it)
            except StopIteration:
                return
            finally:
                self.wait_seconds += time.perf_counter() - t0
            yield item


def _seed_worker(worker_id: int) -> None:
    # Workers draw no random numbers (they decode); their generators are seeded anyway, from
    # the loader's generator, so that a reader that did draw would be reproducible too.
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    import random

    random.seed(seed)


def _to_device(it: Iterator, device: torch.device) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Move batches to ``device``; on CUDA the next batch's copy (from pinned memory, on a side
    stream) overlaps the current batch's step."""
    if device.type != "cuda":
        for wave, target in it:
            yield wave.to(device), target.to(device)
        return
    stream = torch.cuda.Stream(device)

    def copy(batch):
        with torch.cuda.stream(stream):
            return tuple(x.to(device, non_blocking=True) for x in batch)

    nxt = next(it, None)
    nxt = copy(nxt) if nxt is not None else None
    while nxt is not None:
        torch.cuda.current_stream(device).wait_stream(stream)
        cur = nxt
        for x in cur:
            x.record_stream(torch.cuda.current_stream(device))
        following = next(it, None)
        nxt = copy(following) if following is not None else None
        yield cur
