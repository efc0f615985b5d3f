"""Readers for the downstream datasets of the PaSST paper, as their authors publish them.

Each is an ``AudioDataset`` (``readers.py``: items ``(waveform, target, name)``, resampling,
pad/crop, error policy) over the files of one download, and checks its layout first,
naming what is missing:

- ``ESC50Dataset`` (format ``esc50``): ``ROOT/meta/esc50.csv`` (``filename``, ``fold``,
  ``target``, ``category``) and the clips in ``ROOT/audio_32k/`` (the authors' 32 kHz copy)
  or else ``ROOT/audio/`` (the 44.1 kHz download, resampled); 50 classes, five folds.
- ``OpenMICDataset`` (format ``openmic-npz``): ``ROOT/openmic-2018.npz`` (``Y_true``,
  ``Y_mask``, ``sample_key``), ``ROOT/partitions/split01_{train,test}.csv`` and the clips
  in ``ROOT/audio/KEY[:3]/KEY.ogg``; 20 instruments with masked labels: a target row is
  the 20 label values then the 20 masks (``passt_lib.labels``).
- ``FSD50KDataset`` (format ``fsd50k``): ``ROOT/FSD50K.ground_truth/{dev,eval,vocabulary}.csv``
  and the clips in ``ROOT/FSD50K.dev_audio/`` and ``ROOT/FSD50K.eval_audio/``; 200 classes;
  ``dev.csv``'s ``split`` column separates train from val.

The authors' prepared HDF5 files of OpenMIC and FSD50K are the PaSST mp3 layout that
``PasstHDF5Dataset`` reads (format ``passt-hdf5``).

Paths of the ``openmic-npz`` and ``fsd50k`` formats name the folder and a split, as
``ROOT#SPLIT`` (``/data/FSD50K#val``). ESC-50 is split by folds (``DataConfig.fold``):
its path is the folder. :func:`fold_split` splits any dataset by folds.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch

from passt_lib.audio import read_audio
from passt_lib.data.readers import (
    AudioDataset,
    ConcatAudioDataset,
    FolderDataset,
    HDF5Dataset,
)

FORMATS = ("esc50", "openmic-npz", "fsd50k")
SPLITS = {"openmic-npz": ("train", "test"), "fsd50k": ("train", "val", "eval")}
ESC50_CLASSES = 50
OPENMIC_CLASSES = 20
FSD50K_CLASSES = 200


def split_path(path: str, format: str) -> tuple[Path, str]:
    """(folder, split) of a ``ROOT#SPLIT`` path of ``format``."""
    root, sep, split = str(path).rpartition("#")
    if not sep or split not in SPLITS[format]:
        raise ValueError(f"a {format} path names the dataset's folder and a split, "
                         f"ROOT#SPLIT with SPLIT one of {SPLITS[format]}; got {path!r}")
    return Path(root), split


def _require(root: Path, rel: str, layout: str, folder: bool = False) -> Path:
    p = root / rel
    if not (p.is_dir() if folder else p.is_file()):
        raise FileNotFoundError(f"{str(root)!r} is not in the {layout} layout: "
                                f"{rel}{'/' if folder else ''} is missing")
    return p


def _read_csv(path: Path, columns: tuple[str, ...], header: bool = True) -> list[dict]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        found = reader.fieldnames or []
    missing = [c for c in columns if c not in found]
    if missing:
        raise ValueError(f"{path} needs columns {list(columns)}; missing {missing} "
                         f"(found {found})")
    return rows


class _FileListDataset(AudioDataset):
    """Clips listed by a dataset's metadata: ``self.files`` (paths) and ``self._targets``."""

    files: list[Path]

    def __len__(self) -> int:
        return len(self.files)

    def _read(self, i: int):
        return read_audio(str(self.files[i]))

    def _name(self, i: int) -> str:
        return self.files[i].name

    def _error(self, i: int, exc: Exception) -> str:
        return f"{self.path} entry {i} ({self.files[i]}): {type(exc).__name__}: {exc}"


class ESC50Dataset(_FileListDataset):
    """ESC-50 (``meta/esc50.csv`` + ``audio_32k/`` or ``audio/``); ``folds`` attribute (N,)."""

    LAYOUT = "ESC-50 (meta/esc50.csv and audio/ or audio_32k/)"

    def __init__(self, root, **kw):
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"no ESC-50 folder {str(root)!r}; it holds meta/esc50.csv "
                                    f"and audio/ (github.com/karolpiczak/ESC-50)")
        meta = _require(root, "meta/esc50.csv", self.LAYOUT)
        rows = _read_csv(meta, ("filename", "fold", "target"))
        audio = root / "audio_32k" if (root / "audio_32k").is_dir() else \
            _require(root, "audio", self.LAYOUT, folder=True)
        kw["n_classes"] = kw.get("n_classes") or ESC50_CLASSES
        super().__init__(meta, **kw)
        self.files = [audio / r["filename"] for r in rows]
        self.folds = np.array([int(r["fold"]) for r in rows])
        targets = np.array([int(r["target"]) for r in rows])
        if targets.min() < 0 or targets.max() >= self.n_classes:
            raise ValueError(f"{meta}: targets must be class indices 0..{self.n_classes - 1}; "
                             f"got {targets.min()}..{targets.max()}")
        self._targets = np.eye(self.n_classes, dtype=np.float32)[targets]  # (N, C)
        names = {int(r["target"]): r.get("category") or r["target"] for r in rows}
        self.classes = [names.get(k, str(k)) for k in range(self.n_classes)]


class OpenMICDataset(_FileListDataset):
    """OpenMIC-2018 as downloaded: one split (``train`` / ``test``) of ``split01``."""

    LAYOUT = "OpenMIC-2018 (openmic-2018.npz, partitions/, audio/)"

    def __init__(self, path, **kw):
        root, split = split_path(path, "openmic-npz")
        npz = _require(root, "openmic-2018.npz", self.LAYOUT)
        part = _require(root, f"partitions/split01_{split}.csv", self.LAYOUT)
        with np.load(npz, allow_pickle=False) as z:  # plain arrays: nothing to unpickle
            missing = [k for k in ("Y_true", "Y_mask", "sample_key") if k not in z.files]
            if missing:
                raise ValueError(f"{npz} lacks arrays {missing} (found {z.files})")
            y, mask, keys = z["Y_true"], z["Y_mask"], z["sample_key"].astype(str)
        row = {k: i for i, k in enumerate(keys)}
        wanted = [line.strip().split(",")[0] for line in part.read_text().splitlines()
                  if line.strip() and line.strip() != "sample_key"]
        unknown = [k for k in wanted if k not in row]
        if unknown:
            raise ValueError(f"{part} lists clips the npz does not hold: {unknown[:5]}")
        idx = np.array([row[k] for k in wanted], dtype=np.int64)
        c = y.shape[1]
        if kw.get("n_classes") not in (None, 0, 2 * c):
            raise ValueError(f"{npz} holds {c} classes but the config says "
                             f"{kw['n_classes'] // 2}")
        kw["n_classes"] = 2 * c  # labels then masks
        super().__init__(str(part), **kw)
        self.files = [root / "audio" / k[:3] / f"{k}.ogg" for k in wanted]
        self._targets = np.concatenate([y[idx], mask[idx]], axis=1).astype(np.float32)
        self.classes = _openmic_classes(root, c)


def _openmic_classes(root: Path, c: int) -> list[str]:
    import json

    p = root / "class-map.json"
    if not p.is_file():
        return [str(k) for k in range(c)]
    by_index = {int(v): k for k, v in json.loads(p.read_text()).items()}
    return [by_index.get(k, str(k)) for k in range(c)]


class FSD50KDataset(_FileListDataset):
    """FSD50K as downloaded: ``train`` / ``val`` (dev.csv's split) or ``eval``."""

    LAYOUT = ("FSD50K (FSD50K.ground_truth/, FSD50K.dev_audio/, FSD50K.eval_audio/)")

    def __init__(self, path, **kw):
        root, split = split_path(path, "fsd50k")
        vocab = _require(root, "FSD50K.ground_truth/vocabulary.csv", self.LAYOUT)
        csv_name = "eval.csv" if split == "eval" else "dev.csv"
        gt = _require(root, f"FSD50K.ground_truth/{csv_name}", self.LAYOUT)
        audio = _require(root, "FSD50K.eval_audio" if split == "eval" else "FSD50K.dev_audio",
                         self.LAYOUT, folder=True)
        with open(vocab, newline="") as f:  # index,name,mid without a header
            voc = [r for r in csv.reader(f) if r]
        self.classes = [r[1] for r in voc]
        mids = {r[2]: int(r[0]) for r in voc if len(r) > 2}
        names = {r[1]: int(r[0]) for r in voc}
        rows = _read_csv(gt, ("fname", "labels") + (("split",) if split != "eval" else ()))
        if split != "eval":
            rows = [r for r in rows if r["split"] == split]
        kw["n_classes"] = kw.get("n_classes") or len(voc)
        super().__init__(str(gt), **kw)
        self.files = [audio / f"{r['fname']}.wav" for r in rows]
        self._targets = np.zeros((len(rows), self.n_classes), np.float32)
        for i, r in enumerate(rows):
            for lab in filter(None, r["labels"].split(",")):
                k = names.get(lab, mids.get(lab))
                if k is None:
                    raise ValueError(f"{gt} row {i + 2}: label {lab!r} is not in {vocab}")
                self._targets[i, k] = 1.0


READERS = {"esc50": ESC50Dataset, "openmic-npz": OpenMICDataset, "fsd50k": FSD50KDataset}


def open_downstream(config, path) -> AudioDataset:
    columns = config.n_classes * (2 if config.label_mask else 1)
    kw = dict(sample_rate=config.sample_rate, clip_seconds=config.clip_seconds,
              n_classes=columns, task=config.task, on_error=config.on_error,
              cache=config.cache)
    return READERS[config.format](path, **kw)


# --------------------------------------------------------------------------------------------
# Folds
# --------------------------------------------------------------------------------------------
class SubsetAudioDataset(torch.utils.data.Dataset):
    """The entries ``indices`` of an audio dataset, with its targets and error report."""

    def __init__(self, dataset, indices, what: str) -> None:
        self.dataset, self.indices, self.what = dataset, np.asarray(indices, np.int64), what
        self.n_classes = getattr(dataset, "n_classes", 0)
        self.task = getattr(dataset, "task", "multilabel")
        self.path = f"{getattr(dataset, 'path', 'dataset')} ({what})"

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        return self.dataset[int(self.indices[i])]

    def targets(self) -> np.ndarray:
        return np.asarray(self.dataset.targets())[self.indices]

    @property
    def n_skipped(self) -> int:
        return getattr(self.dataset, "n_skipped", 0)

    def skip_report(self) -> str:
        return self.dataset.skip_report()


def fold_labels(ds, column: str) -> np.ndarray:
    """Each entry's fold column (N,): ints, or strings (groups) for :func:`fold_split`."""
    if isinstance(ds, ConcatAudioDataset):
        return np.concatenate([fold_labels(d, column) for d in ds.datasets])
    if isinstance(ds, ESC50Dataset) and column == "fold":
        return ds.folds
    if isinstance(ds, (FolderDataset, ESC50Dataset)):
        with open(ds.path, newline="") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
        if column not in (reader.fieldnames or []):
            raise ValueError(f"{ds.path} has no fold column {column!r} (found "
                             f"{reader.fieldnames}); set data.fold_column")
        return np.array([r[column] for r in rows])
    if isinstance(ds, HDF5Dataset):
        import h5py

        with h5py.File(ds.path, "r") as f:
            if column not in f:
                raise ValueError(f"{ds.path} has no dataset {column!r} to take folds from "
                                 f"(found {sorted(f)}); set data.fold_column")
            values = f[column][()]
        return np.array([v.decode() if isinstance(v, bytes) else v for v in values])
    raise ValueError(f"cannot read folds from a {type(ds).__name__}")


def assign_folds(values: np.ndarray, n_folds: int) -> np.ndarray:
    """Folds 1..n_folds (N,) of fold-column values: integers as they are; strings as groups
    (the first ``;``-separated item), dealt in sorted order to folds 1, 2, ..., n_folds, 1, ..."""
    values = np.asarray(values)
    try:
        return values.astype(np.int64)
    except ValueError:
        pass
    groups = np.array([str(v).split(";")[0] for v in values])
    order = {g: k % n_folds + 1 for k, g in enumerate(sorted(set(groups)))}
    if len(order) < n_folds:
        raise ValueError(f"{len(order)} groups cannot fill {n_folds} folds")
    return np.array([order[g] for g in groups])


def fold_split(ds, config) -> tuple[SubsetAudioDataset, SubsetAudioDataset]:
    """(train, eval) of ``ds``: eval holds the entries of fold ``config.fold``."""
    folds = assign_folds(fold_labels(ds, config.fold_column), config.n_folds)
    held = folds == config.fold
    if not held.any() or held.all():
        raise ValueError(f"fold {config.fold} holds {int(held.sum())} of {len(folds)} clips of "
                         f"{getattr(ds, 'path', 'the dataset')} (folds found: "
                         f"{sorted(set(folds.tolist()))}); both sides need clips")
    return (SubsetAudioDataset(ds, np.flatnonzero(~held), f"folds other than {config.fold}"),
            SubsetAudioDataset(ds, np.flatnonzero(held), f"fold {config.fold}"))


def class_names(config) -> list[str] | None:
    """The class names a downstream download lists (None when it lists none)."""
    path = config.train_paths[0]
    if not path:
        return None
    ds = open_downstream(config, path)
    return list(ds.classes)
