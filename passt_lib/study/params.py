"""The notebooks' parameter contracts: one frozen dataclass per notebook, on one base.

A notebook's ``parameters`` cell declares its parameters and their defaults (papermill and
the study runner read them there); the matching class below holds the same defaults once
more, as a contract, and rejects invalid values with a message naming the field.
:func:`notebook_mismatches` compares the two, names and values, and the tests run it on
every notebook, so a default changed in one place and not in the other fails at once.

Fields shared by several notebooks are declared once, on the layer that owns them:

- :class:`NotebookParams`: ``scale``, ``seed`` (every notebook);
- :class:`MeasuredParams`: ``precision``, ``device`` (notebooks that run models);
- :class:`TrainingParams`: ``epochs``, ``nproc``, ``audioset`` (notebooks that train).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

from passt_lib.configs import from_dict_strict
from passt_lib.model import PRESETS
from passt_lib.models import list_models
from passt_lib.phases import SHAPES, parse_schedule
from passt_lib.precision import PRECISIONS
from passt_lib.study.notebook_params import Param

SCALE_NAMES = ("smoke", "embedded", "paper")
# "preset": the preset's own patchout (PaSST-S: 40 of 99 time columns and 4 of 12 frequency
# rows at the paper scale, rescaled to the scale's grid), amount 0.
PATCHOUT_TYPES = ("none", "preset", "time", "frequency", "structured", "unstructured")
C2F_METHODS = ("none", "frame_shift", "pool", "patchify")
C2F_SCHEDULES = SHAPES  # the standard schedules of passt_lib.phases
NOT_A_PARAMETER = ("out_dir",)  # declared by every notebook, set by the runner per run


def choice(name: str, value: Any, choices) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not valid; expected one of {tuple(choices)}")


def transformer_presets() -> list[str]:
    """Presets with a patch grid that patchout can drop from (not AST)."""
    return [n for n in PRESETS if not n.startswith("ast")]


@dataclass(frozen=True, kw_only=True)
class NotebookParams:
    """Every notebook: the scale it runs at and its seed."""

    SCALES: ClassVar[tuple[str, ...]] = SCALE_NAMES

    scale: str = "embedded"
    seed: int = 0

    def __post_init__(self) -> None:
        choice("scale", self.scale, self.SCALES)
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")


@dataclass(frozen=True, kw_only=True)
class MeasuredParams(NotebookParams):
    """A notebook that runs models: where, and at which precision."""

    precision: str = "auto"
    device: str = "auto"

    def __post_init__(self) -> None:
        super().__post_init__()
        choice("precision", self.precision, PRECISIONS)


@dataclass(frozen=True, kw_only=True)
class TrainingParams(MeasuredParams):
    """A notebook that trains: epochs, processes, and the AudioSet files of the paper scale."""

    epochs: int = 0
    nproc: int = 1
    audioset: str = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.epochs < 0:
            raise ValueError(f"epochs must be >= 0 (0 = the scale's budget), got {self.epochs}")
        if self.nproc < 1:
            raise ValueError(f"nproc must be >= 1, got {self.nproc}")
        if self.scale == "paper" and not self.audioset:
            raise ValueError("scale='paper' trains on AudioSet: set audioset to the folder "
                             "holding the PaSST mp3 HDF5 files (balanced_train_segments_mp3.hdf, "
                             "...)")


@dataclass(frozen=True, kw_only=True)
class TourParams(NotebookParams):
    """00_tour. ``seed`` draws the patchout and the encodings shown; the clip always comes
    from the default embedded dataset (seed 0), whatever ``seed`` is."""

    SCALES: ClassVar[tuple[str, ...]] = ("smoke", "embedded")

    preset: str = "passt-s"
    clip: int = 0
    factor: int = 4

    def __post_init__(self) -> None:
        super().__post_init__()
        choice("preset", self.preset, transformer_presets())
        if self.clip < 0:
            raise ValueError(f"clip must be >= 0, got {self.clip}")
        if self.factor < 2:
            raise ValueError(f"factor must be >= 2, got {self.factor}")


@dataclass(frozen=True, kw_only=True)
class PatchoutParams(TrainingParams):
    """10_patchout. ``amount`` is the fraction of patches dropped in training."""

    preset: str = "passt-b"
    patchout: str = "structured"
    amount: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        choice("preset", self.preset, transformer_presets())
        choice("patchout", self.patchout, PATCHOUT_TYPES)
        if self.patchout in ("none", "preset") and self.amount != 0:
            raise ValueError(f"patchout={self.patchout!r} takes no amount: set amount=0, got "
                             f"{self.amount}")
        if self.patchout not in ("none", "preset") and not 0 < self.amount < 1:
            raise ValueError(f"amount is the fraction of patches dropped, in (0, 1); "
                             f"got {self.amount}")


@dataclass(frozen=True, kw_only=True)
class CoarseToFineParams(TrainingParams):
    """20_coarse_to_fine. ``method="none"`` is the fine-only baseline."""

    preset: str = "passt-s"
    method: str = "pool"
    schedule: str = "2-phase"
    factor: int = 4
    coarse_fraction: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        choice("preset", self.preset, list(PRESETS))
        choice("method", self.method, C2F_METHODS)
        if self.method != "none" and self.schedule not in C2F_SCHEDULES:
            parse_schedule(self.schedule)  # an explicit schedule: raises on a bad one
        if self.factor < 2 or (self.schedule == "3-phase" and self.factor % 2):
            raise ValueError(f"factor must be >= 2 (and even for '3-phase', which continues at "
                             f"factor/2); got {self.factor}")
        if not 0 < self.coarse_fraction < 1:
            raise ValueError(f"coarse_fraction must be in (0, 1), got {self.coarse_fraction}")


@dataclass(frozen=True, kw_only=True)
class SpeedParams(MeasuredParams):
    """30_speed: the Table 1 benchmark (passt_lib.bench.table) at a scale."""

    models: tuple[str, ...] = ("ast", "ast-n", "passt-b", "passt-u", "passt-s", "passt-s-l",
                               "passt-s-n", "cnn14", "cnn10", "mn10", "mn40")
    steps: int = 5
    warmup: int = 2
    scaling_seconds: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 16.0, 30.0)
    scaling_models: tuple[str, ...] = ("ast", "passt-s", "passt-s-n", "cnn14")

    def __post_init__(self) -> None:
        for name in ("models", "scaling_seconds", "scaling_models"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if any(x <= 0 for x in self.scaling_seconds):
            raise ValueError(f"scaling_seconds must be positive, got {list(self.scaling_seconds)}")
        super().__post_init__()
        for m in self.models:
            choice("models entry", m, list_models())
        for m in self.scaling_models:
            choice("scaling_models entry", m, list_models())
        if self.steps < 1 or self.warmup < 0:
            raise ValueError(f"need steps >= 1 and warmup >= 0, got {self.steps}, {self.warmup}")


@dataclass(frozen=True, kw_only=True)
class FiguresParams(NotebookParams):
    """90_figures. ``runs`` / ``results``: empty for the defaults under ``results/``."""

    runs: str = ""
    results: str = ""


@dataclass(frozen=True, kw_only=True)
class DownstreamParams(MeasuredParams):
    """40_downstream. ``init``: a mixtures checkpoint to start from; empty: pre-train one
    at this scale first (into the run directory, resumed if interrupted)."""

    SCALES: ClassVar[tuple[str, ...]] = ("smoke", "embedded")  # the paper's: finetune

    folds: int = 5
    init: str = ""
    threads: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 1 <= self.folds <= 5:
            raise ValueError(f"folds={self.folds}: run folds 1..folds of 5, so 1 to 5")
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")


# The notebook each contract belongs to, by file stem.
NOTEBOOK_PARAMS: dict[str, type[NotebookParams]] = {
    "00_tour": TourParams, "10_patchout": PatchoutParams,
    "20_coarse_to_fine": CoarseToFineParams, "30_speed": SpeedParams,
    "40_downstream": DownstreamParams, "90_figures": FiguresParams,
}


def params_from(cls, values: dict[str, Any]):
    """``cls(**values)`` with unknown names rejected by name (the notebook's parameter set)."""
    return from_dict_strict(cls, values, f"{cls.__name__} parameter")


def _comparable(value: Any) -> Any:
    """Lists and tuples alike (a cell declares ``list``, a frozen contract holds a tuple)."""
    return tuple(value) if isinstance(value, (list, tuple)) else value


def notebook_mismatches(cls: type[NotebookParams], declared: dict[str, Param]) -> list[str]:
    """How a notebook's declared parameters differ from its contract ``cls``: a name only one
    of them has, or a default value they disagree on. Empty when they agree."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    names = set(declared) - set(NOT_A_PARAMETER)
    out = [f"{n!r} is declared by the notebook but is no field of {cls.__name__}"
           for n in sorted(names - set(fields))]
    out += [f"{n!r} is a field of {cls.__name__} the notebook does not declare"
            for n in sorted(set(fields) - names)]
    for n in sorted(names & set(fields)):
        theirs, ours = _comparable(declared[n].default), _comparable(fields[n].default)
        if theirs != ours or type(theirs) is not type(ours):
            out.append(f"{n!r}: the notebook's default is {theirs!r}, {cls.__name__}'s {ours!r}")
    return out
