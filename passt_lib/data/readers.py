"""Readers for the audio layouts users already have.

Every reader is a map-style ``torch.utils.data.Dataset`` whose items are
``(waveform, target, name)``:

- ``waveform``: float32 tensor (S,) at the configured sample rate, resampled
  if the stored rate differs, zero-padded or cropped (from the start) to the
  clip length;
- ``target``: float32 multi-hot (C,) for ``task="multilabel"``, or an int64
  scalar class index for ``task="singlelabel"`` (the first positive class);
- ``name``: str.

Layouts:

- ``PasstHDF5Dataset`` (PaSST / EfficientAT ``*_mp3.hdf``): ``audio_name`` S20,
  ``mp3`` variable-length uint8 (the raw bytes of an audio file, mp3 or any
  format libsndfile reads), ``target`` uint8 ``np.packbits`` of a bool (N, C)
  array, or a float/bool (N, C) array (e.g. OpenMIC).
- ``PannsHDF5Dataset`` (PANNs): ``audio_name`` S20, ``waveform`` (N, S) int16 written
  as x * 32767, ``target`` (N, C) bool, attribute ``sample_rate`` (assumed to be
  the configured rate when missing).
- ``FolderDataset``: a CSV with a header row and columns ``filename`` and
  ``labels`` (the column name is configurable). ``filename`` is relative to the
  CSV's folder (or absolute). ``labels`` holds ``;``-separated class names
  (matched against the class CSV's ``display_name`` or ``mid``) or class indices.
  Example::

      filename,labels
      clips/dog_01.wav,Dog;Bark
      clips/street.flac,Traffic

Error policy: a corrupt or unreadable entry raises ``ValueError`` naming the
file and the index; with ``on_error="skip"`` it is replaced by the next
readable entry, counted in ``dataset.skipped`` ({index: reason}) and logged as
a warning (``dataset.skip_report()`` summarises). ``dataset.scan()`` checks
every entry up front. HDF5 files are opened lazily, once per process, so
DataLoader workers never share a handle.
"""

from __future__ import annotations

import csv
import io
import logging
import os
from pathlib import Path

import h5py
import numpy as np
import soundfile as sf
import torch

from passt_lib.atomic import atomic_open
from passt_lib.audio import read_audio, resample, to_mono

log = logging.getLogger("passt_lib.data")

HOW_TO_GET = (
    "build the embedded dataset with `passt-study data build`, or point the DataConfig at "
    "existing files (e.g. DataConfig.audioset(root) for AudioSet in the PaSST mp3 HDF5 layout)"
)


def require_file(path: str | Path, what: str = "data file") -> Path:
    p = Path(path)
    if p.is_dir():
        inside = sorted(q.name for q in p.glob("*.csv"))[:5]
        hint = (f" (CSV files in it: {', '.join(inside)})" if inside and "CSV" in what else "")
        raise ValueError(f"{what} {str(p)!r} is a folder, not a file{hint}; give the file's "
                         f"path")
    if not p.is_file():
        raise FileNotFoundError(f"{what} {str(p)!r} does not exist; {HOW_TO_GET}")
    return p


def read_label_csv(path: str | Path, label_column: str = "labels") -> list[dict]:
    """The rows of a folder-format labels CSV (header ``filename,labels``), checked."""
    p = require_file(path, "label CSV")
    with open(p, newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        header = reader.fieldnames or []
    if "filename" not in header or label_column not in header:
        raise ValueError(f"label CSV {str(p)!r} needs a header with columns 'filename' and "
                         f"{label_column!r} (labels separated by ';'); found {header}")
    if not rows:
        raise ValueError(f"label CSV {str(p)!r} has a header but no rows: add one row per "
                         f"audio file, e.g. clips/dog.wav,Dog;Bark")
    return rows


def read_class_csv(path: str | Path) -> list[tuple[int, str, str]]:
    """AudioSet-style class index CSV (header ``index,mid,display_name``)."""
    p = require_file(path, "class CSV")
    with open(p, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"index", "mid", "display_name"} <= set(rows[0]):
        raise ValueError(f"class CSV {str(p)!r} needs columns index,mid,display_name")
    out = [(int(r["index"]), r["mid"], r["display_name"]) for r in rows]
    if [i for i, _, _ in out] != list(range(len(out))):
        raise ValueError(f"class CSV {str(p)!r}: indices must be 0..{len(out) - 1} in order")
    return out


def fit_length(x: np.ndarray, n: int) -> np.ndarray:
    """Zero-pad at the end or crop from the start to exactly ``n`` samples."""
    if len(x) >= n:
        return x[:n]
    return np.pad(x, (0, n - len(x)))


def write_decoded_cache(path: Path, arr: np.ndarray) -> None:
    """Write an int16 (N, S) decoded-clip cache atomically; unwritable folders are skipped."""
    try:
        with atomic_open(path) as f:
            np.save(f, arr)
    except OSError as exc:
        log.info("not writing the decoded cache %s: %s", path, exc)


# What reading one entry may raise; an IndexError is a row missing from a file.
READ_ERRORS = (OSError, RuntimeError, ValueError, KeyError, IndexError, sf.LibsndfileError)


class AudioDataset(torch.utils.data.Dataset):
    """Shared logic: resampling, pad/crop, targets, error policy, decoded cache.

    Subclasses implement ``__len__``, ``_read(i) -> (audio float32 (S,), sample_rate)`` and
    ``_name(i) -> str``, and set ``self._targets``: float32 (N, C) multi-hot.
    """

    path: str

    def __init__(self, path, *, sample_rate: int, clip_seconds: float, n_classes: int,
                 task: str = "multilabel", on_error: str = "raise", cache: bool = False):
        if on_error not in ("raise", "skip"):
            raise ValueError(f"unknown on_error {on_error!r}; expected 'raise' or 'skip'")
        if task not in ("multilabel", "singlelabel"):
            raise ValueError(f"unknown task {task!r}; expected 'multilabel' or 'singlelabel'")
        self.path = str(path)
        self.sample_rate = sample_rate
        self.n_samples = int(round(sample_rate * clip_seconds))
        self.n_classes = n_classes
        self.task = task
        self.on_error = on_error
        self.cache = cache
        self._decoded: np.ndarray | None = None  # int16 (N, S) when ``cache``
        self._bad: dict[int, str] = {}  # unreadable entries found while preloading
        self.skipped: dict[int, str] = {}
        self._targets = np.zeros((0, n_classes), np.float32)  # (N, C), set by subclasses

    # subclass API
    def _read(self, i: int) -> tuple[np.ndarray, int]:
        raise NotImplementedError

    def _name(self, i: int) -> str:
        raise NotImplementedError

    def _target(self, i: int) -> np.ndarray:
        return self._targets[i]

    def targets(self) -> np.ndarray:
        """All targets as a float32 (N, C) multi-hot array (for samplers and priors)."""
        return self._targets

    def _skip(self, i: int, reason: str) -> None:
        """Record entry ``i`` as skipped (once) and log it: the skip policy's one place."""
        if i not in self.skipped:
            self.skipped[i] = reason
            log.warning("skipped %s", reason)

    def _decode(self, i: int) -> np.ndarray:
        x, sr = self._read(i)
        return fit_length(resample(to_mono(np.asarray(x, dtype=np.float32)), sr,
                                   self.sample_rate), self.n_samples)

    def full_waveform(self, i: int) -> torch.Tensor:
        """Entry ``i`` whole: mono at the configured rate, neither padded nor cropped (for
        evaluating long clips by windows); an unreadable entry raises ValueError."""
        try:
            x, sr = self._read(i)
        except READ_ERRORS as exc:
            raise ValueError(f"cannot read {self._error(i, exc)}") from exc
        x = resample(to_mono(np.asarray(x, dtype=np.float32)), sr, self.sample_rate)
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))

    def _waveform(self, i: int) -> np.ndarray:
        if self.cache:
            if self._decoded is None:
                self.preload()
            if i in self._bad:
                raise ValueError(self._bad[i])
            return self._decoded[i].astype(np.float32) / 32767.0
        return self._decode(i)

    def cache_path(self) -> Path:
        """Sidecar file of decoded int16 clips (written next to the data when ``cache``)."""
        return Path(f"{self.path}.decoded-{self.sample_rate}-{self.n_samples}.npy")

    def preload(self) -> None:
        """Decode every entry once into memory (int16), reusing/writing the sidecar cache.

        Unreadable entries follow the error policy; they are remembered so every later
        access raises (or skips) again, and the sidecar is only written when all are readable.
        """
        p = self.cache_path()
        n = len(self)
        if p.exists() and p.stat().st_mtime >= Path(self.path).stat().st_mtime:
            arr = np.load(p, mmap_mode="r")
            if arr.shape == (n, self.n_samples) and arr.dtype == np.int16:
                self._decoded = np.asarray(arr)
                return
        arr = np.zeros((n, self.n_samples), np.int16)
        for i in range(n):
            try:
                x = self._decode(i)
                if not np.all(np.isfinite(x)):
                    raise ValueError("non-finite samples")
            except READ_ERRORS as exc:
                msg = f"cannot read {self._error(i, exc)}"
                if self.on_error == "raise":
                    raise ValueError(msg) from exc
                self._bad[i] = msg
                continue
            arr[i] = np.round(np.clip(x, -1, 1) * 32767).astype(np.int16)
        self._decoded = arr
        if not self._bad:
            write_decoded_cache(p, arr)

    def _error(self, i: int, exc: Exception) -> str:
        return f"{self.path} entry {i}: {type(exc).__name__}: {exc}"

    def load(self, i: int):
        """Item ``i`` without the skip policy: raises ValueError naming file and index."""
        try:
            x = self._waveform(i)
            y = self._target(i)
            name = self._name(i)
        except READ_ERRORS as exc:
            raise ValueError(f"cannot read {self._error(i, exc)}") from exc
        if not np.all(np.isfinite(x)):
            raise ValueError(f"cannot read {self.path} entry {i}: non-finite samples")
        wave = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        if self.task == "singlelabel":
            pos = np.flatnonzero(y > 0)
            if len(pos) == 0:
                raise ValueError(f"cannot read {self.path} entry {i}: no positive class for a "
                                 f"single-label task")
            return wave, torch.tensor(int(pos[0]), dtype=torch.int64), name
        return wave, torch.from_numpy(np.asarray(y, dtype=np.float32)), name

    def __getitem__(self, i: int):
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for {n} entries in {self.path}")
        i = i % n
        for k in range(n):
            j = (i + k) % n
            try:
                return self.load(j)
            except ValueError as exc:
                if self.on_error == "raise":
                    raise
                self._skip(j, str(exc))
        raise ValueError(f"no readable entry in {self.path} ({n} entries, all skipped)")

    def scan(self) -> dict[int, str]:
        """Read every entry once; returns {index: reason} of the unreadable ones.

        Under ``on_error="raise"`` the first bad entry raises.
        """
        bad = {}
        for i in range(len(self)):
            try:
                self.load(i)
            except ValueError as exc:
                if self.on_error == "raise":
                    raise
                bad[i] = str(exc)
                self._skip(i, str(exc))
        return bad

    def stacked(self) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        """Every clip at once from the decoded cache: (waves float32 (N, S), targets, names).

        Much faster than stacking items one by one. Targets are float32 (N, C), or int64
        (N,) for single-label tasks. Unreadable entries raise, or are left out under
        ``on_error="skip"`` (and recorded in ``skipped``).
        """
        if self._decoded is None:
            self.preload()
        keep = np.array([i for i in range(len(self)) if i not in self._bad], dtype=np.int64)
        for i, why in self._bad.items():
            self._skip(i, why)
        waves = torch.from_numpy(np.asarray(self._decoded)[keep]).float() / 32767.0  # (N, S)
        targets = np.asarray(self.targets())[keep]  # (N, C)
        if self.task == "singlelabel":
            y = torch.from_numpy(targets.argmax(axis=1)).long()  # (N,)
        else:
            y = torch.from_numpy(targets.astype(np.float32))
        return waves, y, [self._name(int(i)) for i in keep]

    @property
    def n_skipped(self) -> int:
        return len(self.skipped)

    def skip_report(self) -> str:
        if not self.skipped:
            return f"{self.path}: nothing skipped"
        lines = [f"{self.path}: skipped {len(self.skipped)} of {len(self)} entries"]
        lines += [f"  {i}: {why}" for i, why in sorted(self.skipped.items())]
        return "\n".join(lines)


class HDF5Dataset(AudioDataset):
    """Lazily opened HDF5 file, reopened after a fork (one handle per process)."""

    def __init__(self, path, **kw):
        require_file(path, "HDF5 file")
        super().__init__(path, **kw)
        self._h5 = None
        self._pid = None
        if not h5py.is_hdf5(self.path):
            raise ValueError(f"{self.path} is not an HDF5 file; the {self.LAYOUT[0]} layout "
                             f"is an HDF5 file with datasets {list(self.LAYOUT[1])} (for "
                             f"audio files listed in a CSV use format 'folder')")
        with h5py.File(self.path, "r") as f:
            self._check_layout(f)
            self._len = len(f["audio_name"])
            self._targets_raw = f["target"][()]
            self._names = [n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n)
                           for n in f["audio_name"][()]]
        self._targets = self._decode_targets(self._targets_raw)

    LAYOUT: tuple[str, tuple[str, ...]]  # (name, required datasets)

    def _check_layout(self, f):
        name, keys = self.LAYOUT
        missing = [k for k in keys if k not in f]
        if missing:
            raise ValueError(f"{self.path} is not in the {name} HDF5 layout: missing "
                             f"{missing} (found {sorted(f)})")

    def _decode_targets(self, t: np.ndarray) -> np.ndarray:
        c = self.n_classes
        if t.ndim != 2:
            raise ValueError(f"{self.path}: 'target' must be 2-D (N, C); got shape {t.shape}")
        if t.dtype == np.uint8 and not c:
            raise ValueError(
                f"{self.path}: 'target' is uint8, the PaSST layout's packed bits ({t.shape[1]} "
                f"bytes = up to {8 * t.shape[1]} classes): set n_classes to the number of classes "
                f"they were packed from (527 for AudioSet), or give a class CSV")
        if t.dtype == np.uint8 and c and t.shape[1] == (c + 7) // 8 and t.shape[1] != c:
            bits = np.unpackbits(t, axis=1)  # (N, 8 * bytes)
            extra = np.flatnonzero(bits[:, c:].any(axis=0))
            if len(extra):
                raise ValueError(
                    f"{self.path}: 'target' has labels at class indices up to {c + extra[-1]} "
                    f"but the config says n_classes={c}: the file was packed from at least "
                    f"{c + extra[-1] + 1} classes; set n_classes to that number")
            return bits[:, :c].astype(np.float32)  # packed bits
        if c and t.shape[1] != c:
            raise ValueError(f"{self.path}: 'target' has {t.shape[1]} columns but the config "
                             f"has {c} classes (packed targets need {(c + 7) // 8} bytes)")
        if not c:
            self.n_classes = t.shape[1]
        return t.astype(np.float32)

    @property
    def h5(self) -> h5py.File:
        if self._h5 is None or self._pid != os.getpid():
            self._h5 = h5py.File(self.path, "r")
            self._pid = os.getpid()
        return self._h5

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_h5"] = None
        return state

    def __len__(self) -> int:
        return self._len

    def _name(self, i: int) -> str:
        return self._names[i]


class PasstHDF5Dataset(HDF5Dataset):
    """PaSST / AudioSet ``*_mp3.hdf``: ``audio_name``, ``mp3`` (vlen uint8), ``target``."""

    LAYOUT = ("PaSST mp3", ("audio_name", "mp3", "target"))

    def raw_bytes(self, i: int) -> bytes:
        return np.asarray(self.h5["mp3"][i], dtype=np.uint8).tobytes()

    def _read(self, i: int):
        return read_audio(io.BytesIO(self.raw_bytes(i)))


class PannsHDF5Dataset(HDF5Dataset):
    """PANNs waveform HDF5: ``audio_name``, ``waveform`` int16 (N, S), ``target`` bool."""

    LAYOUT = ("PANNs waveform", ("audio_name", "waveform", "target"))

    def _check_layout(self, f):
        super()._check_layout(f)
        self._file_sr = int(f.attrs.get("sample_rate", self.sample_rate))

    def _read(self, i: int):
        w = self.h5["waveform"][i]
        if w.dtype == np.int16:
            x = w.astype(np.float32) / 32767.0
        else:
            x = w.astype(np.float32)
        return x, self._file_sr


class FolderDataset(AudioDataset):
    """Audio files listed in a CSV (``filename`` + labels column); see the module doc."""

    def __init__(self, csv_path, *, classes: list[str] | None = None,
                 mids: list[str] | None = None, label_column: str = "labels", **kw):
        p = Path(csv_path)
        rows = read_label_csv(p, label_column)
        self.root = p.parent
        self.files = [r["filename"] for r in rows]
        labels = [[s.strip() for s in (r[label_column] or "").split(";") if s.strip()]
                  for r in rows]
        if classes is None:
            classes = folder_classes(csv_path, label_column)
        lookup = {c: k for k, c in enumerate(classes)}
        for k, m in enumerate(mids or []):
            lookup.setdefault(m, k)
        kw.setdefault("n_classes", len(classes))
        super().__init__(p, **kw)
        self.classes = list(classes)
        self._targets = np.zeros((len(rows), self.n_classes), np.float32)
        for i, labs in enumerate(labels):
            for lab in labs:
                if lab in lookup:
                    k = lookup[lab]
                elif lab.isdigit() and int(lab) < self.n_classes:
                    k = int(lab)
                else:
                    raise ValueError(f"label CSV {str(p)!r} row {i + 2}: unknown label {lab!r}; "
                                     f"expected one of {classes[:10]}{' ...' if len(classes) > 10 else ''}")
                self._targets[i, k] = 1.0

    def __len__(self) -> int:
        return len(self.files)

    def _file(self, i: int) -> Path:
        f = Path(self.files[i])
        return f if f.is_absolute() else self.root / f

    def _read(self, i: int):
        return read_audio(str(self._file(i)))

    def _error(self, i: int, exc: Exception) -> str:
        return f"{self.path} entry {i} ({self._file(i)}): {type(exc).__name__}: {exc}"

    def _name(self, i: int) -> str:
        return self.files[i]


def folder_classes(csv_path, label_column: str = "labels") -> list[str]:
    """Sorted unique label names in a folder-format CSV (when there is no class CSV)."""
    rows = read_label_csv(csv_path, label_column)
    return sorted({s.strip() for r in rows for s in (r.get(label_column) or "").split(";")
                   if s.strip()})


class ConcatAudioDataset(torch.utils.data.ConcatDataset):
    """Several files of one layout read as one dataset (e.g. AudioSet balanced + unbalanced)."""

    def targets(self) -> np.ndarray:
        return np.concatenate([d.targets() for d in self.datasets])

    @property
    def skipped(self) -> dict[str, dict[int, str]]:
        return {d.path: d.skipped for d in self.datasets}

    @property
    def n_skipped(self) -> int:
        return sum(d.n_skipped for d in self.datasets)

    def skip_report(self) -> str:
        return "\n".join(d.skip_report() for d in self.datasets)


READERS = {"passt-hdf5": PasstHDF5Dataset, "panns-hdf5": PannsHDF5Dataset}


def open_dataset(config, path, *, classes=None, mids=None) -> AudioDataset:
    """One dataset file described by ``config`` (a ``DataConfig``)."""
    # Masked labels (``passt_lib.labels``): a target row holds the labels, then the masks.
    columns = config.n_classes * (2 if config.label_mask else 1)
    kw = dict(sample_rate=config.sample_rate, clip_seconds=config.clip_seconds,
              n_classes=columns, task=config.task, on_error=config.on_error,
              cache=config.cache)
    if config.format == "folder":
        if config.label_mask:
            raise ValueError("label_mask needs a format whose targets hold masks (passt-hdf5, "
                             "openmic-npz); a folder CSV holds labels only")
        if config.n_classes and classes is not None and len(classes) != config.n_classes:
            raise ValueError(f"class CSV has {len(classes)} classes but the config says "
                             f"{config.n_classes}")
        kw["n_classes"] = config.n_classes or (len(classes) if classes else 0) or \
            len(folder_classes(path, config.label_column))
        return FolderDataset(path, classes=classes, mids=mids, label_column=config.label_column,
                             **kw)
    if config.format not in READERS:
        raise ValueError(f"unknown data format {config.format!r}; expected one of "
                         f"{(*READERS, 'folder')}")
    return READERS[config.format](path, **kw)
