"""``TrainConfig``: everything a training run depends on, from code, files and command lines.

Three spellings of one frozen dataclass:

- code: ``TrainConfig.for_scale("passt-s", "embedded", lr=5e-4)``;
- a YAML or JSON file of its fields (:func:`read_config_file`), e.g. for ``torchrun``;
- the command line: ``passt-study train --preset passt-s --set lr=5e-4 --set data.gain_db=0``
  (:func:`parse_args`; ``--set`` values are typed by the dataclass fields, :func:`apply_sets`).

Data. ``data=None`` trains on the embedded dataset of the scale (built once, cached).
``data.FIELD=...`` on the command line (``data_overrides`` in code) patches that default,
except that setting ``data.format`` or ``data.train_path`` means "my own data": the data
then comes from the ``data.*`` keys given, with ``DataConfig``'s defaults for the rest.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from passt_lib.configs import field_names, from_dict_strict, read_structured_file, strict_keys
from passt_lib.data.config import DataConfig
from passt_lib.models import model_info
from passt_lib.phases import parse_schedule, total_epochs
from passt_lib.precision import PRECISIONS
from passt_lib.scales import get_scale

# Fields that may differ between a checkpoint's config and the config resuming it.
RESUME_FREE = ("out_dir", "resume", "stop_after_epoch", "progress", "device", "threads",
               "compile")
# DataConfig keys that name a dataset of one's own: setting one replaces the embedded default.
OWN_DATA_KEYS = ("format", "train_path")
COMPILE_CHOICES = ("auto", True, False)


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on. ``None`` fields take the scale's value.

    model: a registered preset ("passt-s", "ast", "cnn14", ...).
    scale: "smoke", "embedded" or "paper" (``passt_lib.scales``): input size,
        width, depth and the default budget below.
    model_overrides: config fields of the model on top of the scale's (e.g.
        ``{"s_patchout_t": 5}``); mel_overrides: ``MelConfig`` fields of the front-end.
    data: a ``DataConfig``; None builds (once, cached) the embedded dataset
        for the scale. data_overrides: ``DataConfig`` fields on top (e.g.
        ``{"wave_mixup": 0.0}``); with ``format`` or ``train_path`` among them and
        ``data`` None, they describe the whole dataset instead (see the module doc).
    epochs, batch_size (global, over all ranks), lr, warmup_epochs: None = the scale's.
    schedule: coarse-to-fine phases ("pool:4x2,full:2", or in optimiser steps
        "pool:4x300steps,full:2"); None = one full phase of ``epochs``. With a schedule,
        ``epochs`` is its total (None when a phase is given in steps: the epochs then
        depend on the dataset size and batch).
    final_lr_ratio: the learning rate decays linearly to ``lr * final_lr_ratio``: from the end
        of the warm-up to the end of the run, or with ``decay_start_epoch`` (and
        ``decay_epochs``, None = to the end) from that epoch over that many epochs.
    swa_start_epoch: average the weights (SWA, ``torch.optim.swa_utils.AveragedModel``) at
        the end of this epoch (counted from 1) and every later one; the averaged model is
        evaluated beside the trained one (``swa_eval_*``) and saved in the checkpoint.
    select: "last" reports the last epoch; "best" also evaluates ``data.test_path`` every
        epoch and reports its scores (``selected_test_*``) at the epoch whose eval score
        (the validation set's) is best.
    precision: "auto" (bf16 where native), "fp32", "bf16", "fp16".
    compile: ``torch.compile`` the model: True, False, or "auto" (on for CUDA, off on
        CPU, where compiling takes longer than the small scales train).
    device: "auto" (CUDA if available), "cpu", "cuda", "cuda:1", ...
    threads: CPU threads for torch (``torch.set_num_threads``); None leaves the default.
        On a CPU shared with other jobs, 1 thread per process avoids oversubscription.
    preload: keep decoded clips in memory; None = when they fit in 2 GiB.
    init: start from these weights (fine-tuning): a checkpoint of ``passt-study train``, or
        with ``init_arch`` the authors' released weights of that architecture; the head is
        replaced when the classes differ, the time encoding resampled when the input length
        does (``checkpoints.initial_weights``).
    embedded_task: the embedded dataset to train on when ``data`` is not given: "mixtures"
        (multi-label tags) or "keywords" (single-label spoken digits).
    resume: continue from ``out_dir/checkpoint.pt`` when it exists.
    stop_after_epoch: stop after this many epochs (a test hook for interrupted runs).
    """

    model: str = "passt-s"
    scale: str = "embedded"
    model_overrides: dict = field(default_factory=dict)
    mel_overrides: dict = field(default_factory=dict)
    data: DataConfig | None = None
    data_overrides: dict = field(default_factory=dict)
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    warmup_epochs: float | None = None
    final_lr_ratio: float = 0.01
    decay_start_epoch: float | None = None
    decay_epochs: float | None = None
    weight_decay: float = 1e-4
    swa_start_epoch: int | None = None
    select: str = "last"
    schedule: str | None = None
    precision: str = "auto"
    compile: bool | str = "auto"
    seed: int = 0
    out_dir: str = "results/train"
    device: str = "auto"
    threads: int | None = None
    preload: bool | None = None
    init: str | None = None
    init_arch: str | None = None
    embedded_task: str = "mixtures"
    eval_batch_size: int | None = None
    progress: bool = True
    resume: bool = False
    stop_after_epoch: int | None = None

    def __post_init__(self) -> None:
        scale = get_scale(self.scale)  # raises on an unknown scale
        self._check_data()
        for name in ("batch_size", "lr", "warmup_epochs"):
            if getattr(self, name) is None:
                object.__setattr__(self, name, getattr(scale, name))
        if self.schedule is not None:
            total = _schedule_epochs(self.schedule)  # None: a phase is given in steps
            if self.epochs is not None and self.epochs != total:
                raise ValueError(
                    f"epochs={self.epochs} but schedule {self.schedule!r} has "
                    f"{'its length in steps' if total is None else f'{total} epochs'}; "
                    "leave epochs unset with a schedule")
            object.__setattr__(self, "epochs", total)
        elif self.epochs is None:
            object.__setattr__(self, "epochs", scale.epochs)
        self._check_values()

    def _check_data(self) -> None:
        if isinstance(self.data, dict):
            object.__setattr__(self, "data", DataConfig.from_dict(self.data))
        if self.data is not None and not isinstance(self.data, DataConfig):
            raise ValueError(f"data must be a DataConfig, a dict or None; got {self.data!r}")
        for name in ("model_overrides", "mel_overrides", "data_overrides"):
            if not isinstance(getattr(self, name), dict):
                raise ValueError(f"{name} must be a dict; got {getattr(self, name)!r}")
        strict_keys(DataConfig, self.data_overrides, "data_overrides")
        if self.data is None and set(OWN_DATA_KEYS) & set(self.data_overrides):
            # One's own dataset, described by the keys given: the embedded default is not used.
            object.__setattr__(self, "data", DataConfig.from_dict(self.data_overrides))
            object.__setattr__(self, "data_overrides", {})

    def _check_values(self) -> None:
        model_info(self.model)  # an unknown model is named before any data is built
        if self.embedded_task not in ("mixtures", "keywords"):
            raise ValueError(f"embedded_task must be 'mixtures' or 'keywords'; got "
                             f"{self.embedded_task!r}")
        if self.init_arch is not None and self.init is None:
            raise ValueError("init_arch names the architecture of the weights in init; set init "
                             "to their file")
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}; expected one of {PRECISIONS}")
        if self.compile not in COMPILE_CHOICES or not isinstance(self.compile, (bool, str)):
            raise ValueError(f"compile must be true, false or 'auto'; got {self.compile!r}")
        if (self.epochs is not None and self.epochs < 1) or self.batch_size < 1:
            raise ValueError(f"need epochs >= 1 and batch_size >= 1; got {self.epochs}, "
                             f"{self.batch_size}")
        if not math.isfinite(self.lr):
            raise ValueError(f"lr must be a finite number; got {self.lr}")
        if self.lr <= 0 or self.warmup_epochs < 0 or not 0 <= self.final_lr_ratio <= 1:
            raise ValueError(f"need lr > 0, warmup_epochs >= 0, final_lr_ratio in [0, 1]; got "
                             f"{self.lr}, {self.warmup_epochs}, {self.final_lr_ratio}")
        if self.select not in ("last", "best"):
            raise ValueError(f"select must be 'last' or 'best'; got {self.select!r}")
        test_path = self.data_overrides.get("test_path") or (self.data and self.data.test_path)
        if self.select == "best" and not test_path:
            raise ValueError("select='best' picks an epoch on the eval (validation) set and "
                             "reports data.test_path there: set data.test_path")
        if self.swa_start_epoch is not None and (self.swa_start_epoch < 1 or self.schedule):
            raise ValueError(f"swa_start_epoch must be >= 1 and needs a single-phase run (no "
                             f"schedule); got {self.swa_start_epoch}, schedule "
                             f"{self.schedule!r}")
        if self.stop_after_epoch is not None and self.stop_after_epoch < 1:
            raise ValueError(f"stop_after_epoch must be >= 1; got {self.stop_after_epoch}")

    @classmethod
    def for_scale(cls, preset: str, scale: str = "embedded", **overrides) -> TrainConfig:
        """The preset at a scale, with the scale's budget; keyword overrides are fields."""
        return cls.from_dict({"model": preset, "scale": scale, **overrides})

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """From a plain dict (yaml/json); unknown keys are an error listing the valid ones."""
        return from_dict_strict(cls, d)

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["data"] = None if self.data is None else self.data.to_dict()
        return json.loads(json.dumps(d))  # plain, json-safe copies

    def replace(self, **changes) -> TrainConfig:
        return TrainConfig.from_dict({**self.to_dict(), **changes})

    def resume_differences(self, saved: dict) -> list[str]:
        """Fields (other than ``RESUME_FREE``) in which ``saved`` (a checkpoint's config dict)
        differs from this config, as "field: old -> new"."""
        now = self.to_dict()
        return [f"{k}: {saved.get(k)!r} -> {now[k]!r}" for k in sorted(now)
                if k not in RESUME_FREE and saved.get(k) != now[k]]


def _schedule_epochs(schedule) -> int | None:
    return total_epochs(parse_schedule(schedule))


# --------------------------------------------------------------------------------------------
# "--set key=value", typed by the dataclass fields
# --------------------------------------------------------------------------------------------
def _parse_union(text: str, args: tuple, key: str):
    if type(None) in args and text.strip().lower() in ("none", "null"):
        return None
    errors = []
    for a in (a for a in args if a is not type(None)):
        try:
            return parse_typed(text, a, key)
        except ValueError as exc:
            errors.append(str(exc))
    raise ValueError("; ".join(errors))


def _parse_scalar(text: str, tp, key: str):
    if tp is bool:
        low = text.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"{key}: expected a bool (true/false), got {text!r}")
    try:
        return tp(text)
    except ValueError:
        raise ValueError(f"{key}: expected {'an int' if tp is int else 'a float'}, "
                         f"got {text!r}") from None


def parse_typed(text: str, tp, key: str):
    """Parse ``text`` as type ``tp`` (int, float, bool, str, dict, tuple, X | None)."""
    import yaml

    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return _parse_union(text, typing.get_args(tp), key)
    if tp in (bool, int, float):
        return _parse_scalar(text, tp, key)
    if tp is str:
        return text
    if tp is dict or typing.get_origin(tp) is dict:
        value = yaml.safe_load(text)
        if not isinstance(value, dict):
            raise ValueError(f"{key}: expected a mapping such as {{a: 1}}, got {text!r}")
        return value
    if tp is tuple or typing.get_origin(tp) is tuple:
        value = yaml.safe_load(text)
        return tuple(value) if isinstance(value, list) else (value,)
    raise ValueError(f"{key}: cannot parse a value of type {tp} from the command line")


def apply_sets(base: dict, sets: Sequence[str]) -> dict:
    """Apply ``key=value`` strings to a TrainConfig dict, typed by the dataclass fields.

    ``data.FIELD=...`` sets a DataConfig field (into ``data_overrides``);
    ``model_overrides.K=...`` and ``mel_overrides.K=...`` set one entry (YAML-typed).
    Unknown keys raise ValueError listing the valid ones.
    """
    import yaml

    hints = typing.get_type_hints(TrainConfig)
    data_hints = typing.get_type_hints(DataConfig)
    out = {**base}
    for item in sets:
        if "=" not in item:
            raise ValueError(f"--set expects key=value, got {item!r}")
        key, text = item.split("=", 1)
        key = key.strip()
        head, _, sub = key.partition(".")
        if sub and head == "data":
            if sub not in data_hints:
                raise ValueError(f"unknown data field {sub!r}; valid: {', '.join(sorted(data_hints))}")
            out["data_overrides"] = {**out.get("data_overrides", {}),
                                     sub: parse_typed(text, data_hints[sub], key)}
        elif sub and head in ("model_overrides", "mel_overrides"):
            out[head] = {**out.get(head, {}), sub: yaml.safe_load(text)}
        elif key in hints and not sub and key != "data":
            out[key] = parse_typed(text, hints[key], key)
        else:
            valid = [k for k in field_names(TrainConfig) if k != "data"]
            raise ValueError(f"unknown key {key!r} in --set; valid keys: {', '.join(valid)}, "
                             "data.FIELD, model_overrides.FIELD, mel_overrides.FIELD")
    return out


# --------------------------------------------------------------------------------------------
# Config files and the command line
# --------------------------------------------------------------------------------------------
def read_config_file(path: str | Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no config file {path}")
    d = read_structured_file(path) or {}
    if not isinstance(d, dict):
        raise ValueError(f"config file {path} must hold a mapping of TrainConfig keys")
    return d


def parse_args(argv: Sequence[str] | None = None) -> TrainConfig:
    p = argparse.ArgumentParser(
        prog="passt-study train",
        description="Train one model and write OUT/metrics.json, history.csv, checkpoint.pt. "
                    "Also runs under `torchrun --nproc-per-node N -m passt_lib.train CONFIG`.")
    p.add_argument("config", nargs="?", help="a TrainConfig as .yaml or .json (optional)")
    p.add_argument("--preset", help="model preset, e.g. passt-s, passt-s-n, ast, cnn14")
    p.add_argument("--scale", help="smoke, embedded (default) or paper")
    p.add_argument("--out", help="output directory (out_dir)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a TrainConfig field (e.g. lr=5e-4, epochs=4, data.gain_db=0, "
                        "model_overrides.s_patchout_t=5); repeatable")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    base = read_config_file(args.config) if args.config else {}
    for key, value in (("model", args.preset), ("scale", args.scale), ("out_dir", args.out)):
        if value is not None:
            base[key] = value
    if args.resume:
        base["resume"] = True
    if args.no_progress:
        base["progress"] = False
    if "model" not in base:
        p.error("give --preset NAME or a config file with a `model` key")
    return TrainConfig.from_dict(apply_sets(base, args.set))
