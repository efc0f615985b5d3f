"""Training: ``train(config) -> TrainResult``, from one CPU to multi-GPU DDP.

One function trains any registered model at any scale, on the embedded dataset or on
HDF5 / folder datasets (``DataConfig``), in phases (coarse-to-fine) or not. This module
is the loop, top to bottom:

1. set up (:func:`setup`): processes and device (``passt_lib.distributed``), the data
   (``passt_lib.data.pipeline``), the model at the scale, the learning-rate schedule
   (``passt_lib.lr``), and the state of an interrupted run to resume;
2. per phase (:func:`start_phase`): ``compression.enter_phase`` gives the phase's model,
   mel config and spectrogram transform; a fresh AdamW; the eval mels;
3. per epoch (:func:`train_epoch`), per step (:class:`Step`): waveform augmentation
   (roll, gain, mixup), front-end, spectrogram mixup, the phase's transform, forward under
   the precision policy, BCE (multi-label) or CE (single-label), backward, AdamW step at
   the schedule's learning rate;
4. evaluate, record the epoch in ``history.csv``, save ``checkpoint.pt``
   (:func:`end_epoch`);
5. ``metrics.json`` at the end (only at the end: its presence means "done").

Randomness. Every epoch reseeds all generators from ``(seed, epoch, rank)``,
and the data order comes from ``(seed, epoch)``; a run therefore depends only on its
config, and a run stopped after epoch k and resumed from its checkpoint ends exactly
where an uninterrupted run ends (on CPU). The checkpoint stores the RNG states as well.

DDP. Under ``torchrun`` (``WORLD_SIZE > 1``) ``train`` joins the process group (gloo on
CPU, nccl on CUDA); ``batch_size`` is the global batch, split evenly over the ranks, and
each rank takes every ``world``-th sample of the common epoch order (balanced or
shuffled). Evaluation is sharded and gathered. Only rank 0 writes files and shows the
progress bar.

Command lines (the configuration: ``passt_lib.train_config``)::

    passt-study train --preset passt-s --scale embedded --out runs/x --set lr=5e-4
    python -m passt_lib.train CONFIG.yaml            # or under torchrun --nproc-per-node N
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel

from passt_lib import flops
from passt_lib import metrics as M
from passt_lib.atomic import atomic_write_text
from passt_lib.checkpoints import initial_weights, load_checkpoint, save_checkpoint
from passt_lib.compression import enter_phase
from passt_lib.data import embedded, label_names
from passt_lib.data.augment import augment_batch, soft_targets, spec_mixup
from passt_lib.data.config import DataConfig
from passt_lib.data.pipeline import (
    Split,
    TrainBatches,
    load_splits,
    load_test_split,
    resolve_num_workers,
    skipped_count,
)
from passt_lib.data.sampler import ShardedSampler, balanced_weights
from passt_lib.distributed import (
    AUGMENT_STREAM,
    GLOBAL_STREAM,
    Dist,
    all_reduce_mean,
    derived_seed,
    device_kind,
    gather_rows,
    init_distributed,
    main_process_first,
    resolve_device,
    rng_state,
    seed_everything,
    set_rng_state,
)
from passt_lib.errors import TrainingDiverged, run_main
from passt_lib.evaluate import compute_mels, eval_metrics, predict
from passt_lib.frontend import MelFrontend, n_frames
from passt_lib.inference import describe
from passt_lib.labels import masked_bce, split_targets
from passt_lib.lr import LRSchedule
from passt_lib.models import create_model
from passt_lib.phases import Phase, parse_schedule
from passt_lib.precision import autocast, resolve_precision
from passt_lib.registry import is_patch_model
from passt_lib.scales import get_scale, mel_config_at
from passt_lib.train_config import TrainConfig, parse_args

log = logging.getLogger(__name__)

__all__ = ["TrainConfig", "TrainResult", "TrainingDiverged", "train", "main"]

# Optimiser steps between the loop's host syncs (progress bar, divergence check): the device
# runs ahead of the host in between.
LOG_EVERY = 50


@dataclass
class TrainResult:
    """``history``: one dict per epoch; ``metrics``: what metrics.json holds; ``model``: the
    trained model (unwrapped from DDP); ``completed``: False after ``stop_after_epoch``."""

    history: list[dict]
    metrics: dict
    out_dir: Path
    model: nn.Module
    completed: bool = True


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
    run = setup(config)
    model = run.model
    for pi in range(len(run.schedule.phases)):
        epochs = run.schedule.phase_epochs(pi)
        if run.done >= epochs.stop:  # finished before the checkpoint
            continue
        ps = start_phase(run, model, pi)
        model = ps.model
        for e in range(max(epochs.start, run.done), epochs.stop):
            stop = config.stop_after_epoch is not None and \
                config.stop_after_epoch <= e + 1 < run.schedule.n_epochs
            epoch = train_epoch(run, ps, e)
            if not stop and e + 1 < epochs.stop:  # workers decode while we evaluate
                ps.batches.start(e + 1, run.schedule.epoch_steps[e + 1])
            end_epoch(run, ps, e, epoch)
            if stop:
                return finish(run, model, completed=False)
    if run.ckpt is not None:  # every epoch was done before: the checkpoint holds the result
        model, _, _ = phase_model(run, model, run.schedule.phases[run.ckpt["phase_index"]])
        model.load_state_dict(run.ckpt["model"])
    return finish(run, model, completed=True)


# --------------------------------------------------------------------------------------------
# 1. Set up
# --------------------------------------------------------------------------------------------
@dataclass
class Run:
    """What every phase and epoch of a run shares."""

    config: TrainConfig
    d: Dist
    device: torch.device
    precision: str
    data: DataConfig
    train_split: Split
    eval_split: Split
    n_classes: int
    batches: TrainBatches
    schedule: LRSchedule
    model: nn.Module  # the initial model: its config is the full resolution of every phase
    mel0: object  # the full-resolution MelConfig
    out_dir: Path
    bar: object
    t_start: float
    labels: tuple = (None, None)  # (class names, mids) when the data names its classes
    ckpt: dict | None = None  # the checkpoint resumed from, until its phase is entered
    history: list[dict] = field(default_factory=list)
    records: list[dict] = field(default_factory=list)  # per phase, for metrics.json
    done: int = 0  # epochs finished
    test_split: Split | None = None  # data.test_path, evaluated every epoch (select="best")
    swa: AveragedModel | None = None  # the averaged weights (swa_start_epoch)
    spent: dict = field(default_factory=lambda: {"train": 0.0, "eval": 0.0, "total": 0.0})

    @property
    def local_batch(self) -> int:
        return self.config.batch_size // self.d.world

    @property
    def eval_batch(self) -> int:
        return self.config.eval_batch_size or 2 * self.local_batch


def setup(config: TrainConfig) -> Run:
    from tqdm.auto import tqdm

    d = init_distributed(device_kind(config.device))
    device = resolve_device(config.device, d)
    if config.batch_size % d.world:
        raise ValueError(f"batch_size {config.batch_size} is the global batch and must divide "
                         f"evenly over {d.world} processes")
    out_dir = Path(config.out_dir)
    if d.main:
        out_dir.mkdir(parents=True, exist_ok=True)
    data = resolve_data(config, d)
    train_split, eval_split = load_splits(data, preload=config.preload,
                                          num_workers=data.num_workers, device=device)
    n_classes = _n_classes(data, train_split)
    steps_per_epoch = max((data.num_samples or len(train_split)) // config.batch_size, 1)
    seed_everything(config.seed)  # identical initial weights on every rank
    model = create_model(config.model, config.scale, n_classes, **config.model_overrides)
    if config.init:
        for note in initial_weights(model, config.init, config.init_arch):
            log.info("init from %s: %s", config.init, note)
    model = model.to(device)
    decay = None if config.decay_start_epoch is None else (
        config.decay_start_epoch, config.decay_epochs if config.decay_epochs is not None
        else config.epochs - config.decay_start_epoch)
    schedule = LRSchedule(parse_phases(config), steps_per_epoch, config.warmup_epochs,
                          config.lr, config.final_lr_ratio, decay)
    sampler = _sampler(data, train_split, n_classes, steps_per_epoch * config.batch_size, d,
                       config.seed)
    batches = TrainBatches(train_split, sampler, config.batch_size // d.world,
                           clip_samples=data.n_samples, num_workers=data.num_workers,
                           device=device, seed=config.seed)
    run = Run(config, d, device, resolve_precision(config.precision, device), data,
              train_split, eval_split, n_classes, batches, schedule, model,
              base_mel_config(model, config, data), out_dir, None, time.perf_counter())
    run.labels = label_names(data)
    if config.select == "best":
        run.test_split = load_test_split(data)
    _resume(run)
    run.bar = tqdm(total=schedule.total_steps, initial=schedule.steps_before(run.done),
                   disable=not (config.progress and d.main), unit="step", dynamic_ncols=True)
    return run


def resolve_data(config: TrainConfig, d: Dist) -> DataConfig:
    """The run's DataConfig: ``config.data``, or the scale's embedded dataset (built once,
    rank 0 first), with ``data_overrides`` on top and the number of loader workers resolved."""
    data = config.data
    if data is None:
        with main_process_first(d):
            data = embedded.ensure(config.scale, task=config.embedded_task,
                                   progress=config.progress and d.main)
        if not get_scale(config.scale).augment:
            data = data.no_augmentation()
    if config.data_overrides:
        data = dataclasses.replace(data, **config.data_overrides)
    workers = resolve_num_workers(data.num_workers, threads=config.threads,
                                  local_world=d.local_world, device_type=device_kind(config.device))
    return dataclasses.replace(data, num_workers=workers)


def _sampler(data: DataConfig, split: Split, n_classes: int, num_samples: int, d: Dist,
             seed: int) -> ShardedSampler:
    weights = None
    if data.balanced:
        targets = split.targets.cpu()
        hot = split_targets(targets, n_classes)[0] if data.label_mask else \
            _multi_hot(targets, n_classes)
        weights = balanced_weights(hot.numpy(), data.balanced_sum, data.balanced_offset)
    return ShardedSampler(len(split), weights=weights, num_samples=num_samples, rank=d.rank,
                          world_size=d.world, seed=seed)


def _resume(run: Run) -> None:
    path = run.out_dir / "checkpoint.pt"
    if not (run.config.resume and path.exists()):
        return
    ckpt = load_checkpoint(path)
    diff = run.config.resume_differences(ckpt["config"])
    if diff:
        raise ValueError(f"cannot resume: the checkpoint was trained with a different config "
                         f"({', '.join(diff)})")
    run.ckpt = ckpt
    run.history, run.records, run.done = ckpt["history"], ckpt["phases"], ckpt["epoch"]
    run.spent = dict(ckpt["seconds"])


def _n_classes(data: DataConfig, split: Split) -> int:
    if data.n_classes:
        return data.n_classes
    ds = split.dataset
    columns = getattr(ds, "n_classes", 0) or int(split.targets.shape[1])
    return columns // 2 if data.label_mask else columns  # masked: labels, then masks


def _multi_hot(targets: torch.Tensor, n_classes: int) -> torch.Tensor:
    if targets.ndim == 1:
        return F.one_hot(targets, n_classes).float()  # (N, C)
    return targets.float()


# --------------------------------------------------------------------------------------------
# Model, phases, optimiser
# --------------------------------------------------------------------------------------------
def base_mel_config(model: nn.Module, config: TrainConfig, data: DataConfig):
    mel = mel_config_at(model, config.scale, **config.mel_overrides)
    if mel.sample_rate != data.sample_rate:
        raise ValueError(f"the model's front-end runs at {mel.sample_rate} Hz but the data is at "
                         f"{data.sample_rate} Hz")
    return mel


def parse_phases(config: TrainConfig) -> list[Phase]:
    return parse_schedule(config.schedule, epochs=config.epochs)


def phase_model(run: Run, model: nn.Module, phase: Phase):
    """(model, mel config, spectrogram transform) for ``phase`` (``compression.enter_phase``,
    from the run's full-resolution config). Models that are not patch-grid transformers
    (``registry.is_patch_model``) train in a single full-resolution phase."""
    if is_patch_model(model):
        return enter_phase(model, run.model.config, run.mel0, phase)
    if not phase.is_full:
        raise ValueError(f"coarse-to-fine phase {phase.method!r} needs a PaSST/AST model; "
                         f"{run.config.model!r} is not one")
    return model, run.mel0, nn.Identity()


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
    """Training FLOPs (forward + backward) of one sample of ``model`` (``passt_lib.flops``).

    Transformers: analytic, with the tokens left after compression and patchout. Other
    models: counted with ``FlopCounterMode`` on ``example`` (1, F, T) in eval mode, so
    that batch-norm statistics stay untouched.
    """
    if is_patch_model(model):
        return flops.train_flops(model.config)
    was_training = model.training
    model.eval()
    try:
        return flops.measure_flops(model, example, backward=True)
    finally:
        model.train(was_training)


# --------------------------------------------------------------------------------------------
# 2. Per phase
# --------------------------------------------------------------------------------------------
@dataclass
class PhaseState:
    """What one phase trains with: the model (unwrapped) and the training step (DDP-wrapped
    model, optimizer, front-end, transform), its batches, the cached eval mels and the
    phase's record."""

    index: int
    phase: Phase
    model: nn.Module
    step: Step
    batches: TrainBatches  # waveforms, or the phase's mels when they are computed once
    eval_mels: torch.Tensor  # (n_eval_local, F, T)
    record: dict  # per-phase results for metrics.json
    test_mels: torch.Tensor | None = None  # (n_test_local, F, T) with select="best"

    @property
    def transform(self) -> Callable:
        return self.step.transform


def start_phase(run: Run, model: nn.Module, pi: int) -> PhaseState:
    """The model, optimizer and eval mels of phase ``pi`` (from the checkpoint's state when
    the run resumes inside or right after it), in the five steps below."""
    model, mel_cfg, transform, optimizer = resume_phase_model(run, model, pi)
    frontend, batches = train_inputs(run, mel_cfg)
    record = phase_record(run, model, pi)
    # 5. the training step: the model DDP-wrapped across processes, compiled where it pays
    trained = (nn.parallel.DistributedDataParallel(
        model, device_ids=[run.device.index] if run.device.type == "cuda" else None)
        if run.d.active else model)
    step = Step(maybe_compile(trained, run.config.compile, run.device), optimizer, frontend,
                transform, run.data, run.n_classes, run.precision, run.device)
    mels, test_mels = (eval_mels(run, split, mel_cfg) for split in (run.eval_split,
                                                                      run.test_split))
    example = transform(mels[:1].to(run.device))  # (1, F, T)
    record["train_flops_per_sample"] = train_flops_per_sample(model, example)
    return PhaseState(pi, run.schedule.phases[pi], model, step, batches, mels, record, test_mels)


def resume_phase_model(run: Run, model: nn.Module, pi: int):
    """1. (model, mel config, transform, optimizer) of phase ``pi``: from the checkpoint's
    phase model when the run resumes, with its optimizer and RNG state when it resumes
    inside this phase; the weight average starts here when the recipe asks for one."""
    phases, ckpt = run.schedule.phases, run.ckpt
    if ckpt is not None:  # rebuild the checkpoint's phase model, then move on from it
        model, _, _ = phase_model(run, model, phases[ckpt["phase_index"]])
        model.load_state_dict(ckpt["model"])
    model, mel_cfg, transform = phase_model(run, model, phases[pi])
    model = model.to(run.device)
    optimizer = make_optimizer(model, run.config)
    if ckpt is not None and ckpt["phase_index"] == pi:  # mid-phase: same optimizer state
        optimizer.load_state_dict(ckpt["optimizer"])
        set_rng_state(ckpt["rng"])
    if run.config.swa_start_epoch is not None and run.swa is None:
        run.swa = AveragedModel(model)  # a copy; it averages from swa_start_epoch on
        if ckpt is not None and ckpt.get("swa") is not None:
            run.swa.load_state_dict(ckpt["swa"])
    run.ckpt = None
    return model, mel_cfg, transform, optimizer


def train_inputs(run: Run, mel_cfg) -> tuple[MelFrontend | None, TrainBatches]:
    """2. (training front-end, batches): waveforms through the front-end every step, or, when
    a clip's mels are the same every epoch (``fixed_train_mels``), mels computed once."""
    if not fixed_train_mels(run, mel_cfg):
        # Readers reject non-finite clips when they decode them, so the training front-end
        # skips its finiteness check (a host sync every step); the eval front-end keeps it.
        return MelFrontend(mel_cfg.replace(check_finite=False)).to(run.device), run.batches
    mels = compute_mels(MelFrontend(mel_cfg).to(run.device), run.train_split,
                        torch.arange(len(run.train_split)), 4 * run.local_batch, run.device, 0)
    split = Split(run.train_split.dataset, run.train_split.targets,
                  mels.to(run.train_split.waves.device))
    return None, TrainBatches(split, run.batches.sampler, run.local_batch,
                              clip_samples=mels[0].numel(), num_workers=0, device=run.device)


def phase_record(run: Run, model: nn.Module, pi: int) -> dict:
    """3. The phase's entry of metrics.json (the resumed one, or a new one)."""
    record = next((r for r in run.records if r["index"] == pi), None)
    if record is None:
        phase = run.schedule.phases[pi]
        record = {"index": pi, "method": phase.method, "factor": phase.factor,
                  "epochs": len(run.schedule.phase_epochs(pi)),
                  "steps": sum(run.schedule.plan[pi]), "train_seconds": 0.0,
                  "eval_seconds": 0.0, "train_samples": 0,
                  "tokens": model.n_tokens(True) if is_patch_model(model) else None}
        run.records.append(record)
    return record


def eval_mels(run: Run, split: Split | None, mel_cfg) -> torch.Tensor | None:
    """4. This rank's share of ``split``'s mels at the phase's resolution (None: no split)."""
    if split is None:
        return None
    idx = torch.arange(len(split))[run.d.rank::run.d.world]  # this rank's shard
    return compute_mels(MelFrontend(mel_cfg).to(run.device), split, idx, run.eval_batch,
                        run.device, run.data.num_workers)


def fixed_train_mels(run: Run, mel_config) -> bool:
    """True when a clip's training mel spectrogram is the same every epoch: clips in memory,
    no waveform augmentation, and a front-end without random draws (no fmin/fmax draw, no
    masks). Then the phase computes them once instead of at every step."""
    d, m = run.data, mel_config
    return (run.train_split.waves is not None and not d.roll and d.gain_db == 0
            and d.wave_mixup == 0 and not m.augments_band
            and not (m.freqm and m.n_freq_masks) and not (m.timem and m.n_time_masks))


def maybe_compile(model: nn.Module, compile: bool | str, device: torch.device) -> nn.Module:
    """``torch.compile`` the training model when ``compile`` says so ("auto": on CUDA).

    Shapes are static: a phase with another input size compiles its own graphs.
    """
    if compile == "auto":
        compile = device.type == "cuda"
    return torch.compile(model, dynamic=False) if compile else model


# --------------------------------------------------------------------------------------------
# 3. Per epoch, per step
# --------------------------------------------------------------------------------------------
@dataclass
class Step:
    """One optimiser step on a batch: waveform augmentation, front-end, spectrogram mixup,
    the phase's transform, forward under the precision policy, loss, backward, AdamW."""

    model: nn.Module  # DDP-wrapped under torchrun
    optimizer: torch.optim.Optimizer
    frontend: nn.Module | None  # None: the batches are mel spectrograms already
    transform: Callable
    data: DataConfig
    n_classes: int
    precision: str
    device: torch.device

    def train(self) -> None:
        self.model.train()
        if self.frontend is not None:
            self.frontend.train()

    def __call__(self, wave: torch.Tensor, target: torch.Tensor, lr: float,
                 generator: torch.Generator) -> torch.Tensor:
        """Train on (wave (B, S), target) on the device; returns the loss (a 0-dim tensor on
        the device: reading it would make the host wait for the step)."""
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        if self.frontend is None:
            mel = wave  # (B, F, T), computed once for the phase (``fixed_train_mels``)
        else:
            # Augmentation draws come from the CPU generator; the work runs on the device.
            wave, target = augment_batch(wave, target, self.data, n_classes=self.n_classes,
                                         generator=generator)
            with torch.no_grad():
                mel = self.frontend(wave)  # (B, F, T)
        if self.data.spec_mixup_alpha > 0:
            mel, target = spec_mixup(mel, soft_targets(target, self.n_classes),
                                     self.data.spec_mixup_alpha, generator,
                                     masked=self.data.label_mask)
        with autocast(self.precision, self.device):
            logits = self.model(self.transform(mel))  # (B, C)
        loss = _loss(logits, target, self.data.task, self.data.label_mask)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.detach()


def _loss(logits: torch.Tensor, target: torch.Tensor, task: str,
          masked: bool = False) -> torch.Tensor:
    logits = logits.float()
    if masked:  # averaged over the labelled (clip, class) pairs only
        return masked_bce(logits, target, logits.shape[1])
    if task == "multilabel":
        return F.binary_cross_entropy_with_logits(logits, target)
    return F.cross_entropy(logits, target)  # class indices, or soft targets after mixup


@dataclass
class EpochResult:
    loss: float  # mean training loss on this rank
    lr: float  # the last step's learning rate
    seconds: float  # wall time of the epoch's steps
    wait_seconds: float  # of which the training process waited for batches


def train_epoch(run: Run, ps: PhaseState, e: int) -> EpochResult:
    """Train epoch ``e``. The host syncs with the device only every ``LOG_EVERY`` steps and at
    the end, where a non-finite loss stops the run (:class:`LossMonitor`)."""
    seed_everything(derived_seed(run.config.seed, e, run.d.rank, GLOBAL_STREAM))
    generator = torch.Generator().manual_seed(
        derived_seed(run.config.seed, e, run.d.rank, AUGMENT_STREAM))
    n = run.schedule.epoch_steps[e]  # a phase given in steps ends with a short epoch
    run.bar.set_description(f"epoch {e + 1}/{run.schedule.n_epochs} {ps.phase.method}")
    ps.step.train()
    monitor = LossMonitor(run, e)
    wait0, t0 = ps.batches.wait_seconds, time.perf_counter()
    for k, (wave, target) in enumerate(ps.batches.epoch(e, n)):
        lr = run.schedule.lr(e, k)
        monitor.add(ps.step(wave, target, lr, generator), lr)
        run.bar.update(1)
        if (k + 1) % LOG_EVERY == 0:
            monitor.check()
    monitor.check()
    if run.device.type == "cuda":
        torch.cuda.synchronize(run.device)
    return EpochResult(monitor.mean, monitor.lrs[-1] if monitor.lrs else run.config.lr,
                       time.perf_counter() - t0, ps.batches.wait_seconds - wait0)


class LossMonitor:
    """An epoch's loss, summed on the device, and its first non-finite step, recorded there
    too: :meth:`check` reads both at the loop's syncs, never in between."""

    def __init__(self, run: Run, epoch: int) -> None:
        self.run, self.epoch = run, epoch
        self.sum = torch.zeros((), dtype=torch.float64, device=run.device)
        self.first_bad = torch.full((), -1, dtype=torch.int64, device=run.device)
        self.lrs: list[float] = []

    def add(self, loss: torch.Tensor, lr: float) -> None:
        self.sum += loss.double()
        first = ~torch.isfinite(loss) & (self.first_bad < 0)
        self.first_bad = torch.where(first, len(self.lrs), self.first_bad)
        self.lrs.append(lr)

    @property
    def mean(self) -> float:
        return float(self.sum) / max(len(self.lrs), 1)

    def check(self) -> None:
        """Sync: show the running loss; raise :class:`TrainingDiverged` after a bad step."""
        run, bad = self.run, self.first_bad.clone()
        if run.d.active:  # every rank stops at the same sync
            dist.all_reduce(bad, op=dist.ReduceOp.MAX)
        k = int(bad)
        if k >= 0:
            raise TrainingDiverged(self._message(k))
        if self.lrs:
            run.bar.set_postfix(loss=f"{self.mean:.4f}", lr=f"{self.lrs[-1]:.2e}", refresh=False)

    def _message(self, k: int) -> str:
        run, e = self.run, self.epoch
        ckpt = run.out_dir / "checkpoint.pt"
        kept = (f"the last good checkpoint is {ckpt} (after epoch {run.done})" if run.done
                else "no checkpoint was written (it diverged in the first epoch)")
        return (f"training diverged: the loss became NaN or infinite at step "
                f"{run.schedule.steps_before(e) + k + 1} (epoch {e + 1}, step {k + 1} of "
                f"{run.schedule.epoch_steps[e]}) with learning rate {self.lrs[k]:.3g}; "
                f"stopped without writing metrics.json; {kept}. Lower lr, or check the data.")


# --------------------------------------------------------------------------------------------
# 4. Evaluate, record, save
# --------------------------------------------------------------------------------------------
def end_epoch(run: Run, ps: PhaseState, e: int, epoch: EpochResult) -> None:
    """Evaluate after epoch ``e``, add it to the history, write history.csv and checkpoint.pt."""
    (loss,) = all_reduce_mean([epoch.loss], run.d)
    t_train = epoch.seconds
    t0 = time.perf_counter()
    if run.swa is not None and e + 1 >= run.config.swa_start_epoch:
        run.swa.update_parameters(ps.model)
    scores = evaluate_epoch(run, ps)
    t_eval = time.perf_counter() - t0
    n_trained = run.schedule.epoch_steps[e] * run.config.batch_size
    run.spent["train"] += t_train
    run.spent["eval"] += t_eval
    ps.record["train_seconds"] += t_train
    ps.record["eval_seconds"] += t_eval
    ps.record["train_samples"] += n_trained
    ps.record["train_flops"] = float(ps.record["train_flops_per_sample"]
                                     * ps.record["train_samples"])
    ps.record.update(scores)
    run.history.append({"epoch": e + 1, "phase": ps.index, "method": ps.phase.method,
                        "lr": epoch.lr, "train_loss": loss, **scores, "train_seconds": t_train,
                        "eval_seconds": t_eval, "samples_per_s": n_trained / t_train,
                        "data_wait_seconds": epoch.wait_seconds,
                        "train_flops": float(ps.record["train_flops_per_sample"] * n_trained)})
    run.done = e + 1
    if run.d.main:
        write_history(run.out_dir / "history.csv", run.history)
        save_checkpoint(run.out_dir / "checkpoint.pt", checkpoint_state(run, ps, e))


def evaluate_epoch(run: Run, ps: PhaseState) -> dict[str, float]:
    """The eval set's scores (``eval_*``), and where they exist the averaged model's
    (``swa_*``) and the test set's (``test_*``), on rank 0 (empty elsewhere)."""
    models = [("", ps.model)]
    if run.swa is not None and int(run.swa.n_averaged) > 0:
        models.append(("swa_", run.swa.module))
    sets = [("eval_", ps.eval_mels, run.eval_split)]
    if ps.test_mels is not None:
        sets.append(("test_", ps.test_mels, run.test_split))
    scores = {}
    for name, model in models:
        for prefix, mels, split in sets:
            logits = gather_rows(predict(model, mels, ps.transform, run.eval_batch,
                                         run.precision, run.device), len(split), run.d)
            if run.d.main:
                scores.update(eval_metrics(logits, split.targets, run.data.task,
                                           run.data.label_mask, prefix=name + prefix))
    return scores


def checkpoint_state(run: Run, ps: PhaseState, e: int) -> dict:
    """What checkpoint.pt holds after epoch ``e``: the training state to resume from, and the
    description that makes the model usable on its own (``inference.load_model``)."""
    c = run.config
    window = getattr(ps.model, "config", None)
    window = getattr(window, "input_tdim", None) or n_frames(run.mel0, run.data.n_samples)
    return {
        "config": c.to_dict(), "epoch": e + 1, "phase_index": ps.index,
        "phase_full": ps.phase.is_full, "step": run.schedule.steps_before(e + 1),
        "model": ps.model.state_dict(), "optimizer": ps.step.optimizer.state_dict(),
        "swa": None if run.swa is None else run.swa.state_dict(),
        "rng": rng_state(), "history": run.history, "phases": run.records,
        "precision": run.precision, "world_size": run.d.world,
        "seconds": {**run.spent, "total": run.spent["total"] + time.perf_counter() - run.t_start},
        **describe(ps.model, c.model, c.scale, run.n_classes, c.model_overrides, run.mel0,
                   run.data, *run.labels, window),
    }


def write_history(path: Path, history: list[dict]) -> None:
    keys: list[str] = []
    for row in history:
        keys += [k for k in row if k not in keys]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    w.writeheader()
    w.writerows(history)
    atomic_write_text(path, buf.getvalue())


# --------------------------------------------------------------------------------------------
# 5. Finish
# --------------------------------------------------------------------------------------------
def finish(run: Run, model: nn.Module, completed: bool) -> TrainResult:
    """Close the progress bar; on a completed run write metrics.json (rank 0)."""
    run.bar.close()
    metrics = run_metrics(run, model)
    if run.d.main and any(metrics["skipped"].values()):
        log.warning("unreadable entries were skipped (on_error='skip'):\n%s\n%s",
                    run.train_split.dataset.skip_report(), run.eval_split.dataset.skip_report())
    if run.d.main and completed:
        atomic_write_text(run.out_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    return TrainResult(run.history, metrics, run.out_dir, model, completed=completed)


def run_metrics(run: Run, model: nn.Module) -> dict:
    """What metrics.json holds: the last evaluation, the prior, costs and the run's facts."""
    c, records, spent = run.config, run.records, run.spent
    last = run.history[-1] if run.history else {}
    samples = sum(r["train_samples"] for r in records)
    return {
        **{k: v for k, v in last.items() if k.startswith(("eval_", "swa_", "test_"))},
        **_selected(run),
        **_prior(run),
        "preset": c.model, "scale": c.scale, "schedule": c.schedule,
        "epochs": len(run.history), "seed": c.seed,
        "train_seconds": spent["train"], "eval_seconds": spent["eval"],
        "data_wait_seconds": sum(h.get("data_wait_seconds", 0.0) for h in run.history),
        "total_seconds": spent["total"] + time.perf_counter() - run.t_start,
        "train_samples": samples,
        "samples_per_s": samples / max(spent["train"], 1e-9),
        "tokens": records[-1]["tokens"] if records else None,
        "params": sum(p.numel() for p in model.parameters()),
        "train_flops": _sum_or_none([r.get("train_flops") for r in records]),
        "peak_memory_mb": _peak_memory_mb(run.device),
        "precision": run.precision, "device": str(run.device), "world_size": run.d.world,
        "n_train": len(run.train_split), "n_eval": len(run.eval_split),
        "phases": records,
        "skipped": {"train": skipped_count(run.train_split, run.data.num_workers),
                    "eval": skipped_count(run.eval_split, run.data.num_workers)},
    }


def _selected(run: Run) -> dict:
    """With select="best": the epoch whose eval (validation) score is best, and the test set's
    scores at that epoch (``selected_test_*``), the averaged model's too where it exists."""
    if run.config.select != "best" or not run.history:
        return {}
    key = "eval_map" if run.data.task == "multilabel" else "eval_accuracy"
    best = max(run.history, key=lambda h: h.get(key, float("-inf")))
    return {"selection": f"the epoch of the best {key} on the validation set "
                         f"({run.data.eval_path}); selected_test_* are the test set's "
                         f"({run.data.test_path}) scores at that epoch",
            "selected_epoch": best["epoch"],
            **{f"selected_{k}": v for k, v in best.items() if "test_" in k}}


def _prior(run: Run) -> dict:
    """The score of predicting the train label frequencies: the floor to beat."""
    tr, ev = run.train_split.targets.cpu(), run.eval_split.targets.cpu()
    if run.data.label_mask:
        (tr, tr_mask), (ev, ev_mask) = (split_targets(t, run.n_classes) for t in (tr, ev))
        return {"prior_map": M.prior_map(tr, ev, tr_mask, ev_mask)}
    if run.data.task == "multilabel":
        return {"prior_map": M.prior_map(tr, ev)}
    return {"prior_accuracy": M.prior_accuracy(tr, ev, run.n_classes)}


def _sum_or_none(values):
    return None if any(v is None for v in values) or not values else float(sum(values))


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    """``passt-study train`` and ``python -m passt_lib.train``: bad configs, missing or corrupt
    files and a diverged run are one line on stderr and exit status 2 (``errors.run_main``)."""
    return run_main("passt-study train", _main, argv)


def _main(argv: Sequence[str] | None) -> int:
    config = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    result = train(config)
    if int(os.environ.get("RANK", "0")) == 0:
        m = result.metrics
        score = ", ".join(f"{k} {m[k]:.4f}" for k in ("eval_map", "eval_accuracy", "prior_map",
                                                        "prior_accuracy") if k in m)
        print(f"{config.model} @ {config.scale}: {score}; {m['train_seconds']:.1f} s training, "
              f"{m['samples_per_s']:.1f} samples/s -> {result.out_dir / 'metrics.json'}")
    if dist.is_initialized():
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
