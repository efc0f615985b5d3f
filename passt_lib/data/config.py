"""``DataConfig``: where the audio lives, how to read it, and how to augment it.

One frozen dataclass describes a dataset for training: the file layout
(``format``), the paths, the label space, the clip geometry, the error policy
and the augmentation switches. Real AudioSet is one preset away
(``DataConfig.audioset(root)``); the embedded dataset comes from
``passt_lib.data.embedded.ensure``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from passt_lib.configs import from_dict_strict, replace_strict

FORMATS = ("passt-hdf5", "panns-hdf5", "folder", "esc50", "openmic-npz", "fsd50k")
TASKS = ("multilabel", "singlelabel")
ON_ERROR = ("raise", "skip")

AUDIOSET_FILES = {
    "balanced": "balanced_train_segments_mp3.hdf",
    "unbalanced": "unbalanced_train_segments_mp3.hdf",
    "eval": "eval_segments_mp3.hdf",
}


@dataclass(frozen=True)
class DataConfig:
    """A dataset plus its reading and augmentation policy.

    Paths: ``train_path`` may be one path or a tuple of paths (concatenated,
    e.g. AudioSet balanced + unbalanced). For ``format="folder"`` each path is a
    CSV file whose audio files are relative to the CSV's folder (see
    ``readers.FolderDataset``). ``test_path`` is an optional extra test set.
    The downloads of ESC-50, OpenMIC-2018 and FSD50K are formats of their own
    (``passt_lib.data.downstream``): their paths name the dataset's folder and a split.

    Masked labels: ``label_mask`` says that every target row holds ``n_classes`` labels
    and then ``n_classes`` masks (1 = labelled), as OpenMIC's (``passt_lib.labels``).

    Folds: with ``fold`` set, the clips of ``train_path`` (all its files) are split by
    the fold of each clip: those of fold ``fold`` are evaluated on, the others trained on
    (``eval_path`` is not read). A clip's fold is the ``fold_column`` of its row (folder
    CSVs, ESC-50's meta/esc50.csv), or of the HDF5 dataset of that name: integers are
    folds; strings are groups (e.g. speakers), whose first ``;``-separated item is dealt,
    in sorted order, to folds 1 .. ``n_folds``.

    Augmentation (all per sample; 0 / False switches a step off):
    - ``wave_mixup``: fraction of each batch mixed with a shuffled partner, lambda ~
      Beta(``wave_mixup_alpha``, ``wave_mixup_alpha``) with lambda = max(lambda, 1 - lambda).
    - ``spec_mixup_alpha``: mixup on mel spectrograms (applied by the training loop).
    - ``gain_db``: uniform gain in [-gain_db, +gain_db] dB.
    - ``roll``: circular shift by up to ``roll_fraction`` of the clip either way.
    - ``balanced``: sample with weights sum over labels of
      ``balanced_sum / (count + balanced_offset)``; ``num_samples`` draws per epoch
      (None = the train set's length).
    """

    format: str = "passt-hdf5"
    train_path: str | tuple[str, ...] = ""
    eval_path: str = ""
    test_path: str | None = None
    class_csv: str | None = None
    n_classes: int = 0  # 0 = from class_csv (or from the folder CSV's labels)
    task: str = "multilabel"
    sample_rate: int = 32000
    clip_seconds: float = 10.0
    on_error: str = "raise"
    cache: bool = False  # keep decoded clips in memory (small datasets)
    label_column: str = "labels"  # folder format: the CSV column holding labels
    label_mask: bool = False
    fold: int | None = None
    fold_column: str = "fold"
    n_folds: int = 5
    # augmentation
    wave_mixup: float = 0.5
    wave_mixup_alpha: float = 2.0
    spec_mixup_alpha: float = 0.3
    gain_db: float = 7.0
    roll: bool = True
    roll_fraction: float = 0.5
    # sampling
    balanced: bool = True
    balanced_sum: float = 1000.0
    balanced_offset: float = 100.0
    num_samples: int | None = None
    # DataLoader worker processes decoding clips while training; "auto" = the cores this
    # run may use, less one for the training process (``pipeline.resolve_num_workers``).
    num_workers: int | str = "auto"
    # free-form provenance (e.g. the embedded build's parameters hash)
    name: str = ""

    def __post_init__(self):
        if self.format not in FORMATS:
            raise ValueError(f"unknown data format {self.format!r}; expected one of {FORMATS}")
        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r}; expected one of {TASKS}")
        if self.on_error not in ON_ERROR:
            raise ValueError(f"unknown on_error {self.on_error!r}; expected one of {ON_ERROR}")
        if isinstance(self.train_path, list):
            object.__setattr__(self, "train_path", tuple(self.train_path))
        if self.sample_rate <= 0 or self.clip_seconds <= 0:
            raise ValueError(
                f"sample_rate and clip_seconds must be positive; got {self.sample_rate}, "
                f"{self.clip_seconds}"
            )
        if not 0.0 <= self.wave_mixup <= 1.0:
            raise ValueError(f"wave_mixup is a fraction of the batch in [0, 1]; got {self.wave_mixup}")
        for field in ("wave_mixup_alpha", "spec_mixup_alpha", "gain_db", "roll_fraction"):
            if getattr(self, field) < 0:
                raise ValueError(f"{field} must be >= 0; got {getattr(self, field)}")
        if self.fold is not None and not 1 <= self.fold <= self.n_folds:
            raise ValueError(f"fold must be in 1..{self.n_folds} (n_folds); got {self.fold}")
        if self.label_mask and self.task != "multilabel":
            raise ValueError("label_mask needs task='multilabel'")
        if self.n_classes < 0:
            raise ValueError(f"n_classes must be >= 0; got {self.n_classes}")
        if self.num_workers != "auto" and (isinstance(self.num_workers, bool) or
                                           not isinstance(self.num_workers, int) or
                                           self.num_workers < 0):
            raise ValueError(f"num_workers must be an integer >= 0 or 'auto'; got "
                             f"{self.num_workers!r}")

    @property
    def n_samples(self) -> int:
        """Samples per clip at ``sample_rate``."""
        return int(round(self.sample_rate * self.clip_seconds))

    @property
    def train_paths(self) -> tuple[str, ...]:
        return (self.train_path,) if isinstance(self.train_path, str) else tuple(self.train_path)

    def replace(self, **changes) -> DataConfig:
        return replace_strict(self, **changes)

    def no_augmentation(self) -> DataConfig:
        """The same data with every augmentation and balanced sampling off."""
        return self.replace(wave_mixup=0.0, spec_mixup_alpha=0.0, gain_db=0.0, roll=False,
                            balanced=False)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["train_path"] = list(self.train_paths) if len(self.train_paths) > 1 else self.train_paths[0]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> DataConfig:
        """Build from a plain dict (yaml/json); unknown keys are an error."""
        return from_dict_strict(cls, d)

    @classmethod
    def audioset(cls, root: str | Path, train: str = "balanced", class_csv: str | None = None,
                 **overrides) -> DataConfig:
        """Real AudioSet in the PaSST mp3 HDF5 layout under ``root``.

        ``train``: "balanced" (balanced_train_segments_mp3.hdf), "unbalanced", or "full"
        (balanced + unbalanced). Eval is eval_segments_mp3.hdf; 527 classes, 10 s at 32 kHz.
        """
        root = Path(root)
        choices = {"balanced": ("balanced",), "unbalanced": ("unbalanced",),
                   "full": ("balanced", "unbalanced")}
        if train not in choices:
            raise ValueError(f"unknown AudioSet train subset {train!r}; expected one of "
                             f"{tuple(choices)}")
        paths = tuple(str(root / AUDIOSET_FILES[k]) for k in choices[train])
        base = dict(format="passt-hdf5", train_path=paths if len(paths) > 1 else paths[0],
                    eval_path=str(root / AUDIOSET_FILES["eval"]), class_csv=class_csv,
                    n_classes=527, task="multilabel", sample_rate=32000, clip_seconds=10.0,
                    name=f"audioset-{train}")
        base.update(overrides)
        return cls.from_dict(base)
