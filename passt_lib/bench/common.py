"""Measurement discipline shared by every benchmark.

- Inputs are synthetic (random mel spectrograms and multi-hot targets): no data
  loading, no mel extraction, as in PaSST's and timm's speed tests.
- Every measured callable runs ``warmup`` untimed steps, then ``steps`` timed
  ones; each timed step is bracketed by a device synchronisation, and the
  median (with min and max) is reported.
- Where a ratio between models is reported, the models are measured
  interleaved, round-robin (A, B, A, B, ...), so that a slow phase of a shared
  machine hits all of them alike.
- A training step is forward + BCE + backward + AdamW step under the precision
  policy (:func:`passt_lib.precision.autocast`). AdamW is the fused
  implementation, as ``passt_lib.train`` uses (on CPU torch's default
  multi-tensor AdamW costs ~2 s per step for 86M parameters, fused ~0.3 s);
  every model compared gets the same optimiser.
- Peak memory of a training step: :mod:`passt_lib.bench.memory`.
- Achieved FLOP/s are compared with a large square matmul measured in the same
  run at the same precision.
"""

from __future__ import annotations

import csv
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from passt_lib.flops import flop_counter
from passt_lib.frontend import n_frames
from passt_lib.models import create_model
from passt_lib.precision import autocast, resolve_precision
from passt_lib.provenance import device_name, git_state, package_versions
from passt_lib.registry import is_patch_model
from passt_lib.scales import get_scale, replace

RESULTS_DIR = Path("results/bench")


# ----------------------------------------------------------------------------- timing
def synchronize(device: torch.device | str) -> None:
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass(frozen=True)
class Timing:
    """Seconds per call of ``steps`` timed calls after warm-up."""

    times: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def min(self) -> float:
        return min(self.times)

    @property
    def max(self) -> float:
        return max(self.times)

    @property
    def spread(self) -> float:
        """(max - min) / median: the relative spread of the timed steps."""
        return (self.max - self.min) / self.median if self.median > 0 else 0.0

    def per_second(self, items: int) -> float:
        """Throughput in items/s for ``items`` items per call (e.g. samples per step)."""
        return items / self.median


def _check_counts(steps: int, warmup: int) -> None:
    if steps < 1:
        raise ValueError(f"need at least one timed step, got steps={steps}")
    if warmup < 0:
        raise ValueError(f"warm-up steps cannot be negative, got warmup={warmup}")


def time_fn(fn: Callable[[], object], *, steps: int, warmup: int, device="cpu") -> Timing:
    """Time ``fn``: ``warmup`` untimed calls, then ``steps`` synchronised timed calls."""
    return time_interleaved({"fn": fn}, steps=steps, warmup=warmup, device=device)["fn"]


def interleave_order(names: Sequence[str], steps: int) -> list[str]:
    """Round-robin call order: every name once per round, ``steps`` rounds (A, B, A, B, ...)."""
    if len(set(names)) != len(names):
        raise ValueError(f"names must be distinct, got {list(names)}")
    return [name for _ in range(steps) for name in names]


def time_interleaved(
    fns: dict[str, Callable[[], object]], *, steps: int, warmup: int, device="cpu"
) -> dict[str, Timing]:
    """Time several callables round-robin so that machine noise hits them alike.

    Warm-up is also round-robin. Returns one :class:`Timing` per name.
    """
    _check_counts(steps, warmup)
    names = list(fns)
    for name in interleave_order(names, warmup):
        fns[name]()
    synchronize(device)
    times: dict[str, list[float]] = {name: [] for name in names}
    for name in interleave_order(names, steps):
        synchronize(device)
        t0 = time.perf_counter()
        fns[name]()
        synchronize(device)
        times[name].append(time.perf_counter() - t0)
    return {name: Timing(tuple(t)) for name, t in times.items()}


# ----------------------------------------------------------------------------- steps
def synthetic_batch(
    input_shape: tuple[int, int, int], n_classes: int, batch: int, device="cpu", seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random (B, C, F, T) mel input and a multi-hot (B, n_classes) float target."""
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    g = torch.Generator().manual_seed(seed)
    mel = torch.randn((batch, *input_shape), generator=g)  # (B, 1, F, T)
    target = (torch.rand((batch, n_classes), generator=g) < 0.05).float()  # (B, C)
    return mel.to(device), target.to(device)


def logits_of(out) -> torch.Tensor:
    """Logits from a model output; the reference PaSST returns (logits, embedding)."""
    return out[0] if isinstance(out, (tuple, list)) else out


@dataclass
class TrainStep:
    """forward + BCE + backward + AdamW step on one fixed synthetic batch."""

    model: nn.Module
    mel: torch.Tensor
    target: torch.Tensor
    precision: str = "auto"
    lr: float = 1e-5
    optimizer: torch.optim.Optimizer | None = None  # None: a new AdamW over the model
    fused: bool = True  # fused AdamW (as passt_lib.train uses); False: torch's default foreach

    def __post_init__(self) -> None:
        self.device = self.mel.device
        self.precision = resolve_precision(self.precision, self.device)
        self.model.train()
        if self.optimizer is None:
            self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=self.lr,
                                               fused=self.fused)
        self.scaler = (
            torch.amp.GradScaler("cuda") if self.precision == "fp16" else None
        )

    @property
    def batch(self) -> int:
        return self.mel.shape[0]

    def __call__(self) -> float:
        self.optimizer.zero_grad(set_to_none=True)
        with autocast(self.precision, self.device):
            logits = logits_of(self.model(self.mel))
        loss = F.binary_cross_entropy_with_logits(logits.float(), self.target)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        return loss.detach()


@dataclass
class InferStep:
    """Forward pass in eval mode without gradients on one fixed synthetic batch."""

    model: nn.Module
    mel: torch.Tensor
    precision: str = "auto"

    def __post_init__(self) -> None:
        self.device = self.mel.device
        self.precision = resolve_precision(self.precision, self.device)

    @property
    def batch(self) -> int:
        return self.mel.shape[0]

    def __call__(self):
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode(), autocast(self.precision, self.device):
                return logits_of(self.model(self.mel))
        finally:
            self.model.train(was_training)


# ----------------------------------------------------------------------------- FLOPs
def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs (2 per multiply-add) of one call of ``fn``, counted by ``FlopCounterMode``.

    Backward is included when ``fn`` calls ``.backward()``; the element-wise
    optimiser update is not counted (FlopCounterMode counts matmuls/convolutions).
    """
    with flop_counter() as counter:
        fn()
    return int(counter.get_total_flops())


class MatmulStep:
    """``repeats`` (n x n) @ (n x n) matmuls at ``precision``: the peak a step is compared with.

    Being a plain callable, it can join :func:`time_interleaved` next to the
    models, so that the peak is measured under the same machine load as they are.
    """

    def __init__(self, device="cpu", precision: str = "fp32", n: int | None = None,
                 repeats: int = 3):
        device = torch.device(device)
        n = n or (8192 if device.type == "cuda" else 2048)
        self.precision = resolve_precision(precision, device)
        dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
        self.a = torch.randn(n, n, device=device, dtype=dtype[self.precision])
        self.b = torch.randn(n, n, device=device, dtype=dtype[self.precision])
        self.flops = 2.0 * n**3 * repeats
        self.repeats = repeats

    def __call__(self) -> None:
        for _ in range(self.repeats):
            self.a @ self.b


def matmul_peak(device="cpu", precision: str = "fp32", n: int | None = None,
                steps: int = 5) -> float:
    """FLOP/s of an (n x n) @ (n x n) matmul at ``precision`` (median of ``steps``)."""
    step = MatmulStep(device, precision, n, repeats=1)
    return step.flops / time_fn(step, steps=steps, warmup=2, device=device).median


# ----------------------------------------------------------------------------- env / csv
def pick_device(device: str | None = None) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def env_info(device, precision: str) -> dict[str, str]:
    """Columns written into every benchmark CSV row: date, device, precision, versions, commit."""
    device = torch.device(device)
    git = git_state()
    versions = package_versions(("torch", "torchaudio", "torchvision", "timm", "numpy",
                                 "hear21passt"))
    versions["torch"] = torch.__version__  # with its build tag (+cpu, +cu130)
    return {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "device": device_name(device),
        "precision": resolve_precision(precision, device),
        **{name: version or "" for name, version in versions.items()},
        "commit": (git["commit"] or "unknown")[:12],
        "dirty": str(git["dirty"]),
    }


def write_csv(path: str | os.PathLike, rows: Sequence[dict], env: dict[str, str]) -> Path:
    """Write ``rows`` (dicts; missing keys stay empty) with the env columns added to each row."""
    if not rows:
        raise ValueError(f"no rows to write to {path}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fieldnames: list[str] = []
    for row in rows:  # union of the rows' keys, in first-seen order
        fieldnames += [k for k in row if k not in fieldnames]
    fieldnames += [k for k in env if k not in fieldnames]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fieldnames)
        writer.writeheader()
        for row in rows:
            writer.writerow({**env, **row})
    return path


def format_table(rows: Sequence[dict], columns: Sequence[str]) -> str:
    """Plain-text table of ``columns`` of ``rows`` (floats to 3 significant digits)."""

    def fmt(v) -> str:
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 1e4 else f"{v:.3e}"
        return str(v)

    cells = [[fmt(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def set_threads(threads: int | None) -> None:
    if threads:
        torch.set_num_threads(threads)


def log(message: str) -> None:
    """Progress line on stderr (results go to stdout)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def print_env(env: dict[str, str], file=sys.stdout) -> None:
    print("  ".join(f"{k}={v}" for k, v in env.items()), file=file)


# ----------------------------------------------------------------------------- models
@dataclass(frozen=True)
class BenchModel:
    """A model built for a benchmark and the synthetic input it takes."""

    name: str
    model: nn.Module
    input_shape: tuple[int, int, int]  # (1, F, T): one mel spectrogram
    n_classes: int
    seq_len: int | None  # tokens in the blocks during training (transformers), else None

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())


def build_bench_model(
    name: str,
    scale,
    *,
    size: str | None = None,
    depth: int | None = None,
    n_classes: int = 527,
    **overrides,
) -> BenchModel:
    """Model ``name`` at ``scale`` (a ``passt_lib.scales.Scale`` or its name) as training
    builds it (``models.create_model``), with the input of one of the scale's clips.

    ``size`` / ``depth`` replace the scale's transformer ViT size and depth (models that are
    not transformers do not read them); ``overrides`` are fields of the model's config.
    """
    scale = get_scale(scale) if isinstance(scale, str) else scale
    scale = replace(scale, vit_size=size or scale.vit_size,
                    depth=depth if depth is not None else scale.depth)
    model = create_model(name, scale, n_classes, **overrides)
    if is_patch_model(model):
        c = model.config
        return BenchModel(name, model, (1, c.input_fdim, c.input_tdim), n_classes,
                          model.n_tokens(training=True))
    mc = model.mel_config
    frames = n_frames(mc, int(round(mc.sample_rate * scale.clip_seconds)))
    return BenchModel(name, model, (1, mc.n_mels, frames), n_classes, None)
