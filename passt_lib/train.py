"""Training: ``train(config) -> TrainResult``, from one CPU to multi-GPU DDP.

One function trains any registered model at any scale, on the embedded dataset
or on HDF5 / folder datasets (``DataConfig``), in phases (coarse-to-fine) or
not. The loop, top to bottom:

1. build the data (decoded once into memory when it is small), the model at
   the scale (``scales.model_overrides``) and the mel front-end with the
   scale's SpecAugment masks;
2. for every phase of the schedule (one full-resolution phase by default):
   ``compression.enter_phase`` gives the phase's model, mel config and
   spectrogram transform; a fresh AdamW; for every epoch: waveform
   augmentation (roll, gain, mixup), front-end, spectrogram mixup, the
   phase's transform, forward under the precision policy, BCE (multi-label)
   or CE (single-label), backward, step with the learning rate ``lr_at``;
   then evaluation, history, checkpoint;
3. ``metrics.json`` at the end (only at the end: its presence means "done").

Randomness. Every epoch reseeds all generators from ``(seed, epoch, rank)``,
and the data order comes from ``(seed, epoch)``; a run therefore depends only
on its config, and a run stopped after epoch k and resumed from its
checkpoint ends exactly where an uninterrupted run ends (on CPU). The
checkpoint stores the RNG states as well.

DDP. Under ``torchrun`` (``WORLD_SIZE > 1``) ``train`` joins the process
group (gloo on CPU, nccl on CUDA); ``batch_size`` is the global batch, split
evenly over the ranks, and each rank takes every ``world``-th sample of the
common epoch order (balanced or shuffled). Evaluation is sharded and gathered.
Only rank 0 writes files and shows the progress bar.

Command lines::

    passt-study train --preset passt-s --scale embedded --out runs/x --set lr=5e-4
    python -m passt_lib.train CONFIG.yaml            # or under torchrun --nproc-per-node N
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
import logging
import math
import os
import random
import sys
import time
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

from passt_lib import metrics as M
from passt_lib.data.augment import augment_batch, soft_targets, spec_mixup
from passt_lib.data.config import DataConfig
from passt_lib.data.sampler import ShardedSampler, balanced_weights
from passt_lib.frontend import MelFrontend
from passt_lib.precision import PRECISIONS, autocast, resolve_precision
from passt_lib.registry import create_model
from passt_lib.scales import get_scale, model_overrides

log = logging.getLogger(__name__)

# Fields that may differ between a checkpoint's config and the config resuming it.
_RESUME_FREE = ("out_dir", "resume", "stop_after_epoch", "progress", "device", "threads")
# Decoded clips are kept in memory when train + eval take at most this many bytes.
_PRELOAD_LIMIT = 2 * 1024**3


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------
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
        ``{"wave_mixup": 0.0}``).
    epochs, batch_size (global, over all ranks), lr, warmup_epochs: None = the scale's.
    schedule: coarse-to-fine phases ("pool:4x2,full:2", or in optimiser steps
        "pool:4x300steps,full:2"); None = one full phase of ``epochs``. With a schedule,
        ``epochs`` is its total (None when a phase is given in steps: the epochs then
        depend on the dataset size and batch).
    final_lr_ratio: the learning rate decays linearly to ``lr * final_lr_ratio``.
    precision: "auto" (bf16 where native), "fp32", "bf16", "fp16".
    device: "auto" (CUDA if available), "cpu", "cuda", "cuda:1", ...
    threads: CPU threads for torch (``torch.set_num_threads``); None leaves the default.
        On a CPU shared with other jobs, 1 thread per process avoids oversubscription.
    preload: keep decoded clips in memory; None = when they fit in 2 GiB.
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
    weight_decay: float = 1e-4
    schedule: str | None = None
    precision: str = "auto"
    seed: int = 0
    out_dir: str = "results/train"
    device: str = "auto"
    threads: int | None = None
    preload: bool | None = None
    eval_batch_size: int | None = None
    progress: bool = True
    resume: bool = False
    stop_after_epoch: int | None = None

    def __post_init__(self) -> None:
        scale = get_scale(self.scale)  # raises on an unknown scale
        if isinstance(self.data, dict):
            object.__setattr__(self, "data", DataConfig.from_dict(self.data))
        if self.data is not None and not isinstance(self.data, DataConfig):
            raise ValueError(f"data must be a DataConfig, a dict or None; got {self.data!r}")
        for name in ("model_overrides", "mel_overrides", "data_overrides"):
            if not isinstance(getattr(self, name), dict):
                raise ValueError(f"{name} must be a dict; got {getattr(self, name)!r}")
        bad_data = sorted(set(self.data_overrides) - {f.name for f in dataclasses.fields(DataConfig)})
        if bad_data:
            raise ValueError(f"unknown data_overrides keys {bad_data}; expected DataConfig fields")
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
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}; expected one of {PRECISIONS}")
        if (self.epochs is not None and self.epochs < 1) or self.batch_size < 1:
            raise ValueError(f"need epochs >= 1 and batch_size >= 1; got {self.epochs}, "
                             f"{self.batch_size}")
        if self.lr <= 0 or self.warmup_epochs < 0 or not 0 <= self.final_lr_ratio <= 1:
            raise ValueError(f"need lr > 0, warmup_epochs >= 0, final_lr_ratio in [0, 1]; got "
                             f"{self.lr}, {self.warmup_epochs}, {self.final_lr_ratio}")
        if self.stop_after_epoch is not None and self.stop_after_epoch < 1:
            raise ValueError(f"stop_after_epoch must be >= 1; got {self.stop_after_epoch}")

    @classmethod
    def for_scale(cls, preset: str, scale: str = "embedded", **overrides) -> TrainConfig:
        """The preset at a scale, with the scale's budget; keyword overrides are fields."""
        return cls.from_dict({"model": preset, "scale": scale, **overrides})

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """From a plain dict (yaml/json); unknown keys are an error listing the valid ones."""
        unknown = sorted(set(d) - set(field_names()))
        if unknown:
            raise ValueError(f"unknown TrainConfig keys {unknown}; valid keys: "
                             f"{', '.join(field_names())}")
        return cls(**d)

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["data"] = None if self.data is None else self.data.to_dict()
        return json.loads(json.dumps(d))  # plain, json-safe copies

    def replace(self, **changes) -> TrainConfig:
        return TrainConfig.from_dict({**self.to_dict(), **changes})


def field_names() -> list[str]:
    return [f.name for f in dataclasses.fields(TrainConfig)]


def _schedule_epochs(schedule) -> int | None:
    from passt_lib.schedule import parse_schedule, total_epochs

    return total_epochs(parse_schedule(schedule))


# --------------------------------------------------------------------------------------------
# "--set key=value", typed by the dataclass fields
# --------------------------------------------------------------------------------------------
def _parse_typed(text: str, tp, key: str):
    """Parse ``text`` as type ``tp`` (int, float, bool, str, dict, X | None)."""
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        if type(None) in args and text.strip().lower() in ("none", "null"):
            return None
        rest = [a for a in args if a is not type(None)]
        errors = []
        for a in rest:
            try:
                return _parse_typed(text, a, key)
            except ValueError as exc:
                errors.append(str(exc))
        raise ValueError("; ".join(errors))
    if tp is bool:
        low = text.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"{key}: expected a bool (true/false), got {text!r}")
    if tp is int:
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"{key}: expected an int, got {text!r}") from None
    if tp is float:
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"{key}: expected a float, got {text!r}") from None
    if tp is str:
        return text
    if tp is dict or typing.get_origin(tp) is dict:
        import yaml

        value = yaml.safe_load(text)
        if not isinstance(value, dict):
            raise ValueError(f"{key}: expected a mapping such as {{a: 1}}, got {text!r}")
        return value
    if tp is tuple or typing.get_origin(tp) is tuple:
        import yaml

        value = yaml.safe_load(text)
        return tuple(value) if isinstance(value, list) else (value,)
    raise ValueError(f"{key}: cannot parse a value of type {tp} from the command line")


def apply_sets(base: dict, sets: Sequence[str]) -> dict:
    """Apply ``key=value`` strings to a TrainConfig dict, typed by the dataclass fields.

    ``data.FIELD=...`` sets a DataConfig field (into ``data_overrides``);
    ``model_overrides.K=...`` and ``mel_overrides.K=...`` set one entry (YAML-typed).
    Unknown keys raise ValueError listing the valid ones.
    """
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
                                     sub: _parse_typed(text, data_hints[sub], key)}
        elif sub and head in ("model_overrides", "mel_overrides"):
            import yaml

            out[head] = {**out.get(head, {}), sub: yaml.safe_load(text)}
        elif key in hints and not sub and key != "data":
            out[key] = _parse_typed(text, hints[key], key)
        else:
            valid = [k for k in field_names() if k != "data"]
            raise ValueError(f"unknown key {key!r} in --set; valid keys: {', '.join(valid)}, "
                             "data.FIELD, model_overrides.FIELD, mel_overrides.FIELD")
    return out


# --------------------------------------------------------------------------------------------
# Learning rate
# --------------------------------------------------------------------------------------------
def lr_at(step: int, total_steps: int, warmup_steps: int, base_lr: float,
          final_ratio: float = 0.01) -> float:
    """Linear warm-up to ``base_lr`` over ``warmup_steps``, then linear decay to
    ``base_lr * final_ratio`` at ``total_steps`` (and constant after it). Pure."""
    if total_steps < 1 or warmup_steps < 0 or step < 0:
        raise ValueError(f"need total_steps >= 1, warmup_steps >= 0, step >= 0; got "
                         f"{total_steps}, {warmup_steps}, {step}")
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    decay_steps = max(total_steps - warmup_steps, 1)
    progress = min((step - warmup_steps) / decay_steps, 1.0)
    return base_lr * (1.0 - (1.0 - final_ratio) * progress)


def lr_segments(phases, steps_per_epoch: int = 1) -> list[tuple[int, int, int]]:
    """For every phase: (segment index, steps before it in its LR segment, segment steps).

    A phase with ``restart_lr`` (and the first phase) starts a new LR schedule with
    warm-up; a phase without continues the previous one. With the default
    ``steps_per_epoch=1`` an epoch-only schedule is counted in epochs.
    """
    starts = [i for i, p in enumerate(phases) if i == 0 or p.restart_lr]
    steps = [p.n_steps(steps_per_epoch) for p in phases]
    out = []
    for i in range(len(phases)):
        s = max(j for j in starts if j <= i)
        end = min([j for j in starts if j > i], default=len(phases))
        out.append((starts.index(s), sum(steps[s:i]), sum(steps[s:end])))
    return out


def epoch_plan(phases, steps_per_epoch: int) -> list[list[int]]:
    """Steps of every epoch of every phase: whole epochs, and for a phase given in steps a
    last, shorter one (``[[2, 2, 1], [2]]`` for ``pool:2x5steps,full:1`` at 2 steps/epoch)."""
    plan = []
    for p in phases:
        n = p.n_steps(steps_per_epoch)
        plan.append([steps_per_epoch] * (n // steps_per_epoch)
                    + ([n % steps_per_epoch] if n % steps_per_epoch else []))
    return plan


# --------------------------------------------------------------------------------------------
# Distributed plumbing
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

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
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def resolve_device(name: str, d: Dist) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", d.local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


def _all_reduce_mean(values: list[float], d: Dist) -> list[float]:
    if not d.active:
        return values
    t = torch.tensor(values, dtype=torch.float64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t)
    return (t / d.world).cpu().tolist()


def _gather_rows(x: torch.Tensor, n_total: int, d: Dist) -> torch.Tensor:
    """Reassemble rows sharded as ``rank::world`` (each shard padded to equal length)."""
    if not d.active:
        return x
    per = math.ceil(n_total / d.world)
    pad = torch.zeros(per - len(x), *x.shape[1:], dtype=x.dtype, device=x.device)
    x = torch.cat([x, pad]).contiguous()  # (per, C)
    parts = [torch.empty_like(x) for _ in range(d.world)]
    dist.all_gather(parts, x)
    stacked = torch.stack(parts, dim=1)  # (per, world, C): row r*world + k comes from rank k
    return stacked.reshape(per * d.world, *x.shape[1:])[:n_total]  # (N, C)


# --------------------------------------------------------------------------------------------
# Randomness and data order
# --------------------------------------------------------------------------------------------
def _derived_seed(*parts: int) -> int:
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
    state = {"python": random.getstate(), "numpy": np.random.get_state(),
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------
@dataclass
class Split:
    """A dataset with its targets; ``waves`` holds every decoded clip when preloaded."""

    dataset: torch.utils.data.Dataset
    targets: torch.Tensor  # (N, C) float multi-hot or (N,) int64
    waves: torch.Tensor | None = None  # (N, S) float32

    def __len__(self) -> int:
        return len(self.targets)


def _collate(items):
    waves, targets, _ = zip(*items)
    return torch.stack(waves), torch.stack(targets)


def _stack_all(ds, batch_size: int = 64, num_workers: int = 0):
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, num_workers=num_workers,
                                         collate_fn=_collate)
    waves, targets = zip(*loader)
    return torch.cat(waves), torch.cat(targets)


def load_data(config: TrainConfig, d: Dist | None = None) -> tuple[DataConfig, Split, Split]:
    from passt_lib.data import make_datasets

    d = d or Dist()
    data = config.data
    if data is None:
        from passt_lib.data import embedded

        # Rank 0 builds the embedded dataset (if missing) while the others wait, then they
        # find it cached: concurrent builds would replace each other's folders.
        if not d.main:
            dist.barrier()  # released by rank 0 below
        data = embedded.ensure(config.scale, progress=config.progress and d.main)
        if d.main and d.active:
            dist.barrier()
        if not get_scale(config.scale).augment:
            data = data.no_augmentation()
    if config.data_overrides:
        data = dataclasses.replace(data, **config.data_overrides)
    train_ds, eval_ds = make_datasets(data)
    n_bytes = 4 * data.n_samples * (len(train_ds) + len(eval_ds))
    preload = config.preload if config.preload is not None else n_bytes <= _PRELOAD_LIMIT
    # Skipped entries are counted by the dataset object that read them: preload in this
    # process when skipping, so that the counts reach metrics.json.
    preload_workers = 0 if data.on_error == "skip" else data.num_workers
    splits = []
    for ds in (train_ds, eval_ds):
        if preload:
            waves, targets = _stack_all(ds, num_workers=preload_workers)
            splits.append(Split(ds, targets, waves))
        else:
            targets = torch.as_tensor(np.asarray(ds.targets()))
            if data.task == "singlelabel":
                targets = targets.argmax(dim=1)
            splits.append(Split(ds, targets))
    return data, splits[0], splits[1]


def iterate_batches(split: Split, batches: list[torch.Tensor], num_workers: int = 0):
    """Yield (wave (B, S), target) for each index batch, from memory or through a DataLoader."""
    if split.waves is not None:
        for idx in batches:
            yield split.waves[idx], split.targets[idx]
        return
    loader = torch.utils.data.DataLoader(split.dataset, batch_sampler=[b.tolist() for b in batches],
                                         num_workers=num_workers, collate_fn=_collate)
    yield from loader


# --------------------------------------------------------------------------------------------
# Model, phases, optimiser
# --------------------------------------------------------------------------------------------
def build_model(config: TrainConfig, n_classes: int) -> nn.Module:
    """The preset at the config's scale: PaSST/AST get the scale's input size, width, depth and
    rescaled patchout; other models the scale's mel bins. ``model_overrides`` win."""
    from passt_lib.model import PaSSTConfig

    scale = get_scale(config.scale)
    try:
        preset = PaSSTConfig.preset(config.model)
    except ValueError:
        kwargs = {"input_fdim": scale.n_mels} if scale.name != "paper" else {}
    else:
        kwargs = dict(width=scale.width, depth=scale.depth, **model_overrides(preset, scale))
    kwargs.update(n_classes=n_classes, **config.model_overrides)
    return create_model(config.model, **kwargs)


def base_mel_config(model: nn.Module, config: TrainConfig, data: DataConfig):
    scale = get_scale(config.scale)
    mel = model.mel_config.replace(**{"freqm": scale.freqm, "timem": scale.timem,
                                      **config.mel_overrides})
    if mel.sample_rate != data.sample_rate:
        raise ValueError(f"the model's front-end runs at {mel.sample_rate} Hz but the data is at "
                         f"{data.sample_rate} Hz")
    return mel


def parse_phases(config: TrainConfig):
    from passt_lib.schedule import parse_schedule

    return parse_schedule(config.schedule, epochs=config.epochs)


def enter_phase(model: nn.Module, mel_config, phase):
    """(model, mel config, spectrogram transform) for ``phase`` (``compression.enter_phase``).

    Models other than PaSST/AST train in a single full-resolution phase.
    """
    from passt_lib.model import PaSST

    if isinstance(model, PaSST):
        from passt_lib.compression import enter_phase as enter

        return enter(model, mel_config, phase)
    if not phase.is_full:
        raise ValueError(f"coarse-to-fine phase {phase.method!r} needs a PaSST/AST model; "
                         f"got {type(model).__name__}")
    return model, mel_config, nn.Identity()


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW; no weight decay on biases, norms, tokens and positional encodings."""
    skip = set(model.no_weight_decay()) if hasattr(model, "no_weight_decay") else set()
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or name in skip else decay).append(p)
    groups = [{"params": decay, "weight_decay": config.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    # The fused kernel: one call per step instead of ~10 small ops per parameter tensor.
    return torch.optim.AdamW(groups, lr=config.lr, fused=True)


def train_flops_per_sample(model: nn.Module, example: torch.Tensor) -> int:
    """Training FLOPs (forward + backward) of one sample (``passt_lib.flops``).

    PaSST/AST: analytic, with the tokens left after compression and patchout. Other
    models: counted with ``FlopCounterMode`` on ``example`` (1, F, T) in eval mode, so
    that batch-norm statistics stay untouched.
    """
    from passt_lib import flops
    from passt_lib.model import PaSST

    if isinstance(model, PaSST):
        return flops.train_flops(model.config)
    was_training = model.training
    model.eval()
    try:
        return flops.measure_flops(model, example, backward=True)
    finally:
        model.train(was_training)


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------
def atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def write_history(path: Path, history: list[dict]) -> None:
    keys: list[str] = []
    for row in history:
        keys += [k for k in row if k not in keys]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    w.writeheader()
    w.writerows(history)
    atomic_write_text(path, buf.getvalue())


def save_checkpoint(path: Path, state: dict) -> None:
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: str | Path) -> dict:
    """A checkpoint written by ``train`` (our own file: full unpickling)."""
    return torch.load(path, map_location="cpu", weights_only=False)


# --------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------
@torch.no_grad()
def predict(model: nn.Module, mels: torch.Tensor, transform: Callable, batch_size: int,
            precision: str, device: torch.device) -> torch.Tensor:
    """Logits (N, C) in fp32 for precomputed mels (N, F, T)."""
    model.eval()
    out = []
    for i in range(0, len(mels), batch_size):
        x = transform(mels[i:i + batch_size].to(device))
        with autocast(precision, device):
            out.append(model(x).float().cpu())
    return torch.cat(out) if out else torch.zeros(0, 0)


def eval_metrics(logits: torch.Tensor, targets: torch.Tensor, task: str) -> dict[str, float]:
    if task == "singlelabel":
        return {"eval_accuracy": M.accuracy(logits, targets)}
    m = M.multilabel_metrics(torch.sigmoid(logits), targets)
    return {"eval_map": m["map"], "eval_auc": m["auc"], "eval_dprime": m["dprime"]}


@torch.no_grad()
def compute_mels(frontend: nn.Module, split: Split, indices: torch.Tensor, batch_size: int,
                 device: torch.device, num_workers: int) -> torch.Tensor:
    """Eval-mode mel spectrograms (n, F, T) of ``split[indices]`` (kept on the CPU)."""
    frontend.eval()
    batches = list(indices.split(batch_size))
    mels = [frontend(w.to(device)).cpu() for w, _ in iterate_batches(split, batches, num_workers)]
    return torch.cat(mels)


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------
@dataclass
class TrainResult:
    """``history``: one dict per epoch; ``metrics``: what metrics.json holds; ``model``: the
    trained model (unwrapped from DDP); ``completed``: False after ``stop_after_epoch``."""

    history: list[dict]
    metrics: dict
    out_dir: Path
    model: nn.Module
    completed: bool = True


def _loss(logits: torch.Tensor, target: torch.Tensor, task: str) -> torch.Tensor:
    logits = logits.float()
    if task == "multilabel":
        return F.binary_cross_entropy_with_logits(logits, target)
    return F.cross_entropy(logits, target)  # class indices, or soft targets after mixup


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


@dataclass
class PhaseState:
    """What one phase trains with: the model (DDP-wrapped under torchrun), its optimizer,
    front-end and spectrogram transform, the cached eval mels and the LR segment."""

    index: int
    phase: object  # schedule.Phase
    model: nn.Module
    optimizer: torch.optim.Optimizer
    frontend: nn.Module
    transform: Callable
    eval_mels: torch.Tensor  # (n_eval_local, F, T)
    first_epoch: int  # global index of the phase's first epoch
    lr_offset_steps: int  # steps of the LR segment before this phase
    lr_total_steps: int
    record: dict  # per-phase results for metrics.json


def train_epoch(ps: PhaseState, split: Split, batches: list[torch.Tensor], data: DataConfig,
                n_classes: int, epoch: int, steps_per_epoch: int, warmup_steps: int,
                config: TrainConfig, precision: str, device: torch.device, aug_gen, bar
                ) -> tuple[float, float]:
    """One epoch over ``batches``; returns (mean loss on this rank, last learning rate)."""
    ps.model.train()
    ps.frontend.train()
    loss_sum, lr = 0.0, config.lr
    for k, (wave, target) in enumerate(iterate_batches(split, batches, data.num_workers)):
        step = ps.lr_offset_steps + (epoch - ps.first_epoch) * steps_per_epoch + k
        lr = lr_at(step, ps.lr_total_steps, warmup_steps, config.lr, config.final_lr_ratio)
        for g in ps.optimizer.param_groups:
            g["lr"] = lr
        wave, target = augment_batch(wave, target, data, n_classes=n_classes, generator=aug_gen)
        with torch.no_grad():
            mel = ps.frontend(wave.to(device))  # (B, F, T)
        target = target.to(device)
        if data.spec_mixup_alpha > 0:
            mel, target = spec_mixup(mel, soft_targets(target, n_classes),
                                     data.spec_mixup_alpha, aug_gen)
        with autocast(precision, device):
            logits = ps.model(ps.transform(mel))  # (B, C)
        loss = _loss(logits, target, data.task)
        ps.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        ps.optimizer.step()
        loss_value = loss.item()
        loss_sum += loss_value
        bar.update(1)
        bar.set_postfix(loss=f"{loss_value:.4f}", lr=f"{lr:.2e}", refresh=False)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return loss_sum / max(len(batches), 1), lr


def train(config: TrainConfig) -> TrainResult:
    """Train ``config``; write history.csv and checkpoint.pt every epoch and metrics.json at
    the end (rank 0 only). See the module docstring for the loop and its randomness."""
    threads = torch.get_num_threads()
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    try:
        return _train(config)
    finally:
        torch.set_num_threads(threads)


def _train(config: TrainConfig) -> TrainResult:
    from tqdm.auto import tqdm

    t_start = time.perf_counter()
    device_kind = "cuda" if (config.device == "auto" and torch.cuda.is_available()) or \
        config.device.startswith("cuda") else "cpu"
    d = init_distributed(device_kind)
    device = resolve_device(config.device, d)
    precision = resolve_precision(config.precision, device)
    if config.batch_size % d.world:
        raise ValueError(f"batch_size {config.batch_size} is the global batch and must divide "
                         f"evenly over {d.world} processes")
    local_batch = config.batch_size // d.world
    out_dir = Path(config.out_dir)
    if d.main:
        out_dir.mkdir(parents=True, exist_ok=True)

    # Data, class prior, sampler.
    data, train_split, eval_split = load_data(config, d)
    n_classes = _n_classes(data, train_split)
    task = data.task
    if task == "multilabel":
        prior_key, prior = "prior_map", M.prior_map(train_split.targets, eval_split.targets)
    else:
        prior_key = "prior_accuracy"
        prior = M.prior_accuracy(train_split.targets, eval_split.targets, n_classes)
    n_draws = data.num_samples or len(train_split)
    steps_per_epoch = max(n_draws // config.batch_size, 1)
    warmup_steps = round(config.warmup_epochs * steps_per_epoch)
    weights = None
    if data.balanced:
        weights = balanced_weights(_multi_hot(train_split.targets, n_classes).numpy(),
                                   data.balanced_sum, data.balanced_offset)
    sampler = ShardedSampler(len(train_split), weights=weights,
                             num_samples=steps_per_epoch * config.batch_size, rank=d.rank,
                             world_size=d.world, seed=config.seed)
    eval_idx = torch.arange(len(eval_split))[d.rank::d.world]  # this rank's shard
    eval_bs = config.eval_batch_size or 2 * local_batch

    # Model (identical initial weights on every rank), front-end config, phases.
    seed_everything(config.seed)
    model = build_model(config, n_classes).to(device)
    mel0 = base_mel_config(model, config, data)
    phases = parse_phases(config)
    segments = lr_segments(phases, steps_per_epoch)
    plan = epoch_plan(phases, steps_per_epoch)  # steps of each epoch, per phase
    epoch_steps = [n for p in plan for n in p]  # (all epochs,)
    n_epochs = len(epoch_steps)

    # Resume.
    ckpt_path = out_dir / "checkpoint.pt"
    ckpt = load_checkpoint(ckpt_path) if config.resume and ckpt_path.exists() else None
    if ckpt is not None:
        _check_resume_config(ckpt["config"], config)
    history: list[dict] = ckpt["history"] if ckpt else []
    records: list[dict] = ckpt["phases"] if ckpt else []
    done = ckpt["epoch"] if ckpt else 0
    spent = dict(ckpt["seconds"]) if ckpt else {"train": 0.0, "eval": 0.0, "total": 0.0}

    bar = tqdm(total=sum(epoch_steps), initial=sum(epoch_steps[:done]),
               disable=not (config.progress and d.main), unit="step", dynamic_ncols=True)
    stopped = False
    first = 0
    for pi, phase in enumerate(phases):
        last = first + len(plan[pi])
        if done >= last:  # finished before the checkpoint
            first = last
            continue
        if ckpt is not None:  # rebuild the checkpoint's phase model, then move on from it
            saved_pi = ckpt["phase_index"]
            model, _, _ = enter_phase(model, mel0, phases[saved_pi])
            model.load_state_dict(ckpt["model"])
        model, mel_cfg, transform = enter_phase(model, mel0, phase)
        model = model.to(device)
        optimizer = make_optimizer(model, config)
        if ckpt is not None and ckpt["phase_index"] == pi:  # mid-phase: same optimizer state
            optimizer.load_state_dict(ckpt["optimizer"])
            set_rng_state(ckpt["rng"])
        ckpt = None
        frontend = MelFrontend(mel_cfg).to(device)
        record = next((r for r in records if r["index"] == pi), None)
        if record is None:
            record = {"index": pi, "method": phase.method, "factor": phase.factor,
                      "epochs": len(plan[pi]), "steps": sum(plan[pi]),
                      "train_seconds": 0.0, "eval_seconds": 0.0,
                      "train_samples": 0, "tokens": getattr(model, "n_tokens", lambda t: None)(True)}
            records.append(record)
        _, lr_offset, lr_steps = segments[pi]
        ps = PhaseState(
            pi, phase,
            nn.parallel.DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None)
            if d.active else model,
            optimizer, frontend, transform,
            compute_mels(frontend, eval_split, eval_idx, eval_bs, device, data.num_workers),
            first, lr_offset, lr_steps, record)

        for e in range(max(first, done), last):
            seed_everything(_derived_seed(config.seed, e, d.rank, 2))
            aug_gen = torch.Generator().manual_seed(_derived_seed(config.seed, e, d.rank, 3))
            sampler.set_epoch(e)
            batches = list(torch.tensor(list(sampler)).split(local_batch))  # (local_batch,) each
            batches = batches[:epoch_steps[e]]  # a phase given in steps ends with a short epoch
            bar.set_description(f"epoch {e + 1}/{n_epochs} {phase.method}")
            t0 = time.perf_counter()
            loss, lr = train_epoch(ps, train_split, batches, data, n_classes, e, steps_per_epoch,
                                   warmup_steps, config, precision, device, aug_gen, bar)
            t_train = time.perf_counter() - t0
            (loss,) = _all_reduce_mean([loss], d)
            t0 = time.perf_counter()
            logits = _gather_rows(predict(_unwrap(ps.model), ps.eval_mels, transform, eval_bs,
                                          precision, device), len(eval_split), d)
            scores = eval_metrics(logits, eval_split.targets, task) if d.main else {}
            t_eval = time.perf_counter() - t0

            n_trained = len(batches) * config.batch_size
            spent["train"] += t_train
            spent["eval"] += t_eval
            record["train_seconds"] += t_train
            record["eval_seconds"] += t_eval
            record["train_samples"] += n_trained
            record.update(scores)
            history.append({"epoch": e + 1, "phase": pi, "method": phase.method, "lr": lr,
                            "train_loss": loss, **scores, "train_seconds": t_train,
                            "eval_seconds": t_eval, "samples_per_s": n_trained / t_train})
            if d.main:
                write_history(out_dir / "history.csv", history)
                save_checkpoint(ckpt_path, {
                    "config": config.to_dict(), "epoch": e + 1, "phase_index": pi,
                    "step": sum(epoch_steps[:e + 1]), "model": _unwrap(ps.model).state_dict(),
                    "optimizer": optimizer.state_dict(), "rng": rng_state(),
                    "history": history, "phases": records, "precision": precision,
                    "seconds": {**spent, "total": spent["total"] + time.perf_counter() - t_start},
                    "world_size": d.world})
            if config.stop_after_epoch is not None and \
                    config.stop_after_epoch <= e + 1 < n_epochs:
                stopped = True
                break
        if stopped:
            break
        example = ps.transform(ps.eval_mels[:1].to(device))  # (1, F, T)
        record["train_flops"] = float(train_flops_per_sample(model, example)
                                      * record["train_samples"])
        first = last
    bar.close()

    metrics = {
        **({k: v for k, v in history[-1].items() if k.startswith("eval_")} if history else {}),
        prior_key: prior,
        "preset": config.model,
        "scale": config.scale,
        "schedule": config.schedule,
        "epochs": len(history),
        "seed": config.seed,
        "train_seconds": spent["train"],
        "eval_seconds": spent["eval"],
        "total_seconds": spent["total"] + time.perf_counter() - t_start,
        "train_samples": sum(r["train_samples"] for r in records),
        "samples_per_s": sum(r["train_samples"] for r in records) / max(spent["train"], 1e-9),
        "tokens": records[-1]["tokens"] if records else None,
        "params": sum(p.numel() for p in model.parameters()),
        "train_flops": _sum_or_none([r.get("train_flops") for r in records]),
        "peak_memory_mb": _peak_memory_mb(device),
        "precision": precision,
        "device": str(device),
        "world_size": d.world,
        "n_train": len(train_split),
        "n_eval": len(eval_split),
        "phases": records,
        "skipped": {"train": skipped_count(train_split, data.num_workers),
                    "eval": skipped_count(eval_split, data.num_workers)},
    }
    if d.main and any(metrics["skipped"].values()):
        log.warning("unreadable entries were skipped (on_error='skip'):\n%s\n%s",
                    train_split.dataset.skip_report(), eval_split.dataset.skip_report())
    if d.main and not stopped:
        atomic_write_text(out_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    return TrainResult(history, metrics, out_dir, model, completed=not stopped)


def skipped_count(split: Split, num_workers: int) -> int | None:
    """Entries skipped under ``on_error="skip"`` (0 for datasets without the policy).

    None when DataLoader worker processes read the split while training (not preloaded):
    they log what they skip, but their counts do not come back.
    """
    if split.waves is None and num_workers > 0:
        return None
    return getattr(split.dataset, "n_skipped", 0)


def _sum_or_none(values):
    return None if any(v is None for v in values) or not values else float(sum(values))


def _n_classes(data: DataConfig, split: Split) -> int:
    if data.n_classes:
        return data.n_classes
    ds = split.dataset
    if getattr(ds, "n_classes", 0):
        return ds.n_classes
    return int(split.targets.shape[1])


def _multi_hot(targets: torch.Tensor, n_classes: int) -> torch.Tensor:
    if targets.ndim == 1:
        return F.one_hot(targets, n_classes).float()  # (N, C)
    return targets.float()


def _check_resume_config(saved: dict, config: TrainConfig) -> None:
    now = config.to_dict()
    diff = sorted(k for k in now if k not in _RESUME_FREE and saved.get(k) != now[k])
    if diff:
        raise ValueError(f"cannot resume: the checkpoint was trained with a different config "
                         f"({', '.join(f'{k}: {saved.get(k)!r} -> {now[k]!r}' for k in diff)})")


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------
def read_config_file(path: str | Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no config file {path}")
    text = path.read_text()
    if path.suffix in (".yaml", ".yml"):
        import yaml

        d = yaml.safe_load(text) or {}
    elif path.suffix == ".json":
        d = json.loads(text)
    else:
        raise ValueError(f"config file {path} must end in .yaml, .yml or .json")
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


def main(argv: Sequence[str] | None = None) -> int:
    try:
        config = parse_args(argv)
    except (ValueError, FileNotFoundError) as exc:
        print(f"passt-study train: error: {exc}", file=sys.stderr)
        return 2
    try:
        result = train(config)
    except FileNotFoundError as exc:  # a data file that is not there: no traceback needed
        print(f"passt-study train: error: {exc}", file=sys.stderr)
        return 2
    if int(os.environ.get("RANK", "0")) == 0:
        m = result.metrics
        score = ", ".join(f"{k} {m[k]:.4f}" for k in ("eval_map", "eval_accuracy", "prior_map",
                                                        "prior_accuracy") if k in m)
        print(f"{config.model} @ {config.scale}: {score}; {m['train_seconds']:.1f} s training, "
              f"{m['samples_per_s']:.1f} samples/s -> {result.out_dir / 'metrics.json'}")
    if dist.is_initialized():
        dist.destroy_process_group()
    return 0


class _CallableModule(types.ModuleType):
    """Lets ``passt_lib.train(config)`` call :func:`train` although ``passt_lib.train`` is
    also this module (needed by ``torchrun -m passt_lib.train``)."""

    def __call__(self, config: TrainConfig) -> TrainResult:
        return train(config)


sys.modules[__name__].__class__ = _CallableModule

if __name__ == "__main__":
    sys.exit(main())
