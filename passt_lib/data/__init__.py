"""Data: readers for the PaSST / PANNs HDF5 and folder layouts, augmentation, sampling,
and the offline-built embedded dataset.

    from passt_lib.data import DataConfig, make_datasets, make_sampler
    from passt_lib.data import embedded
    config = embedded.ensure("embedded", seed=0)           # builds once, then cached
    train_ds, eval_ds = make_datasets(config)
    wave, target, name = train_ds[0]                       # (S,) float32, (C,) float32, str

Real AudioSet is ``DataConfig.audioset("/path/to/hdf5s")``.
"""

from __future__ import annotations

import time

import torch

from passt_lib.data import downstream
from passt_lib.data.augment import (
    augment_batch,
    random_gain,
    random_roll,
    soft_targets,
    spec_mixup,
    wave_mixup,
)
from passt_lib.data.config import DataConfig
from passt_lib.data.readers import (
    ConcatAudioDataset,
    FolderDataset,
    PannsHDF5Dataset,
    PasstHDF5Dataset,
    folder_classes,
    open_dataset,
    read_class_csv,
)
from passt_lib.data.sampler import ShardedSampler, balanced_weights, make_sampler

__all__ = [
    "DataConfig", "make_datasets", "make_test_dataset", "make_sampler", "ShardedSampler",
    "balanced_weights", "class_names", "bench_decode", "augment_batch", "wave_mixup",
    "spec_mixup", "random_gain", "random_roll", "soft_targets", "PasstHDF5Dataset",
    "PannsHDF5Dataset", "FolderDataset", "ConcatAudioDataset", "read_class_csv",
]


def _label_space(config: DataConfig):
    """(config with n_classes filled in, class names or None, mids or None)."""
    classes = mids = None
    if config.class_csv:
        rows = read_class_csv(config.class_csv)
        classes, mids = [r[2] for r in rows], [r[1] for r in rows]
        if config.n_classes and config.n_classes != len(rows):
            raise ValueError(f"class CSV {config.class_csv!r} lists {len(rows)} classes but "
                             f"the config says n_classes={config.n_classes}")
        config = config.replace(n_classes=len(rows))
    elif config.format in downstream.FORMATS:
        classes = downstream.class_names(config)
        config = config.replace(n_classes=config.n_classes or len(classes))
    elif config.format == "folder":
        names = sorted({c for p in config.train_paths
                        for c in folder_classes(p, config.label_column)})
        classes = names
        config = config.replace(n_classes=config.n_classes or len(names))
    return config, classes, mids


def class_names(config: DataConfig) -> list[str] | None:
    return _label_space(config)[1]


def label_names(config: DataConfig) -> tuple[list[str] | None, list[str] | None]:
    """(class names, AudioSet-style mids) of a dataset: from its class CSV, or the label
    names of a folder dataset's CSV; None where the files do not name their classes."""
    return _label_space(config)[1:]


def _open(config, paths, classes, mids):
    if config.format in downstream.FORMATS:
        parts = [downstream.open_downstream(config, p) for p in paths]
    else:
        parts = [open_dataset(config, p, classes=classes, mids=mids) for p in paths]
    return parts[0] if len(parts) == 1 else ConcatAudioDataset(parts)


def make_datasets(config: DataConfig):
    """(train_ds, eval_ds) for a ``DataConfig``; items are (waveform (S,), target, name)."""
    config, classes, mids = _label_space(config)
    if not config.train_paths or not all(config.train_paths):
        raise ValueError("DataConfig.train_path is empty; set it or use "
                         "passt_lib.data.embedded.ensure() / DataConfig.audioset(root)")
    if config.fold is not None:  # eval is one fold of the train files, train the others
        return downstream.fold_split(_open(config, config.train_paths, classes, mids), config)
    if not config.eval_path:
        raise ValueError("DataConfig.eval_path is empty")
    train = _open(config, config.train_paths, classes, mids)
    evaluation = _open(config, (config.eval_path,), classes, mids)
    return train, evaluation


def make_test_dataset(config: DataConfig):
    """The optional extra test set (``config.test_path``), or None."""
    if not config.test_path:
        return None
    config, classes, mids = _label_space(config)
    return _open(config, (config.test_path,), classes, mids)


def bench_decode(config: DataConfig, n: int = 256, batch_size: int = 32, seed: int = 0,
                 split: str = "train", cached: bool = False) -> dict:
    """Decode + waveform-augment throughput in clips/s, in one process.

    Reads ``n`` clips (cycling through the split) in batches of ``batch_size`` and applies
    ``augment_batch``. ``cached=False`` decodes every clip from its file; ``cached=True``
    measures the in-memory decoded cache (preloaded before timing, as after epoch one).
    Returns {"clips_per_s", "decode_s", "augment_s", "n", "cached"} (seconds are totals).
    """
    cfg = config.replace(cache=cached)
    train, evaluation = make_datasets(cfg)
    ds = train if split == "train" else evaluation
    if cached:
        for part in getattr(ds, "datasets", [ds]):
            part.preload()
    g = torch.Generator().manual_seed(seed)
    n_classes = ds.targets().shape[1]
    t_dec = t_aug = 0.0
    done = 0
    while done < n:
        b = min(batch_size, n - done)
        t0 = time.perf_counter()
        items = [ds[(done + k) % len(ds)] for k in range(b)]
        wave = torch.stack([it[0] for it in items])  # (B, S)
        target = torch.stack([it[1] for it in items])
        t1 = time.perf_counter()
        augment_batch(wave, target, cfg, n_classes=n_classes, generator=g)
        t2 = time.perf_counter()
        t_dec += t1 - t0
        t_aug += t2 - t1
        done += b
    total = t_dec + t_aug
    return {"clips_per_s": n / total, "decode_s": t_dec, "augment_s": t_aug, "n": n,
            "cached": cached}
