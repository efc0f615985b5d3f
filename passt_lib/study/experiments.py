"""The bodies of the ablation notebooks, importable and testable.

Each notebook turns its ``parameters`` cell into one of the frozen dataclasses
below (which rejects invalid values with a clear message), then calls the
matching ``run_*`` function, which trains / measures through the library and
returns the metrics the notebook writes with ``run.finish``.

- :class:`PatchoutParams`, :func:`run_patchout` (``10_patchout``);
- :class:`CoarseToFineParams`, :func:`run_coarse_to_fine` (``20_coarse_to_fine``);
- :class:`SpeedParams`, :func:`run_speed` (``30_speed``).

Multi-GPU: DDP cannot start inside a Jupyter kernel. For several GPUs, run
``torchrun --nproc_per_node N -m passt_lib.train CONFIG.yaml`` with the config
:meth:`train_config` returns (``TrainConfig.to_dict()``), or give the notebook
``nproc`` > 1 and :func:`train_in_subprocess` does it from the kernel.
"""

from __future__ import annotations

import hashlib
import json
import math
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from passt_lib.atomic import atomic_write_text
from passt_lib.configs import from_dict_strict
from passt_lib.patchout import check_amounts
from passt_lib.phases import SHAPES
from passt_lib.provenance import REPO_ROOT

SCALE_NAMES = ("smoke", "embedded", "paper")
# "preset": the preset's own patchout (PaSST-S: 40 of 99 time columns and 4 of 12 frequency
# rows at the paper scale, rescaled to the scale's grid), amount 0.
PATCHOUT_TYPES = ("none", "preset", "time", "frequency", "structured", "unstructured")
C2F_METHODS = ("none", "frame_shift", "pool", "patchify")
C2F_SCHEDULES = SHAPES  # the standard schedules of passt_lib.phases


def _choice(name: str, value: Any, choices) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not valid; expected one of {tuple(choices)}")


def _common_checks(p) -> None:
    _choice("scale", p.scale, SCALE_NAMES)
    from passt_lib.precision import PRECISIONS

    _choice("precision", p.precision, PRECISIONS)
    if p.seed < 0:
        raise ValueError(f"seed must be >= 0, got {p.seed}")
    if p.epochs < 0:
        raise ValueError(f"epochs must be >= 0 (0 = the scale's budget), got {p.epochs}")
    if p.nproc < 1:
        raise ValueError(f"nproc must be >= 1, got {p.nproc}")
    if p.scale == "paper" and not p.audioset:
        raise ValueError("scale='paper' trains on AudioSet: set audioset to the folder holding "
                         "the PaSST mp3 HDF5 files (balanced_train_segments_mp3.hdf, ...)")


def _data(p):
    """The paper scale's AudioSet files; None at the small scales: training then takes the
    scale's embedded dataset with the scale's augmentation policy, as ``passt-study train``
    does (an explicit DataConfig would keep every augmentation switched on)."""
    from passt_lib.data import DataConfig

    if p.scale == "paper":
        return DataConfig.audioset(p.audioset)
    return None


# ----------------------------------------------------------------------------- patchout


@dataclass(frozen=True)
class PatchoutParams:
    """10_patchout. ``amount`` is the fraction of patches dropped in training."""

    scale: str = "embedded"
    seed: int = 0
    preset: str = "passt-b"
    patchout: str = "structured"
    amount: float = 0.5
    epochs: int = 0
    precision: str = "auto"
    device: str = "auto"
    nproc: int = 1
    audioset: str = ""

    def __post_init__(self) -> None:
        from passt_lib.model import PRESETS

        _common_checks(self)
        _choice("preset", self.preset, [n for n in PRESETS if not n.startswith("ast")])
        _choice("patchout", self.patchout, PATCHOUT_TYPES)
        if self.patchout in ("none", "preset") and self.amount != 0:
            raise ValueError(f"patchout={self.patchout!r} takes no amount: set amount=0, got "
                             f"{self.amount}")
        if self.patchout not in ("none", "preset") and not 0 < self.amount < 1:
            raise ValueError(f"amount is the fraction of patches dropped, in (0, 1); "
                             f"got {self.amount}")


def patchout_amounts(grid: tuple[int, int], patchout: str, amount: float) -> dict[str, int]:
    """Patchout settings dropping about ``amount`` of an (F, T) grid's patches.

    time / frequency: whole time columns / frequency rows; structured: the same
    fraction of rows and columns, (1 - a_axis)^2 = 1 - amount; unstructured:
    single patches. At least one of each kind is dropped and at least one kept.
    """
    _choice("patchout", patchout, PATCHOUT_TYPES)
    f, t = grid
    out = {"s_patchout_t": 0, "s_patchout_f": 0, "u_patchout": 0}
    if patchout == "none":
        return out

    def n(frac: float, total: int) -> int:
        return min(max(1, round(frac * total)), total - 1)

    if patchout == "time":
        out["s_patchout_t"] = n(amount, t)
    elif patchout == "frequency":
        out["s_patchout_f"] = n(amount, f)
    elif patchout == "structured":
        axis = 1 - math.sqrt(1 - amount)
        out["s_patchout_t"], out["s_patchout_f"] = n(axis, t), n(axis, f)
    else:
        out["u_patchout"] = n(amount, f * t)
    check_amounts(grid, **out)
    return out


def _model_config(preset: str, scale: str, **overrides):
    from passt_lib.scales import preset_config

    return preset_config(preset, scale, **overrides)


def patchout_train_config(p: PatchoutParams, out_dir: str | Path):
    from passt_lib.train import TrainConfig

    grid = _model_config(p.preset, p.scale).grid
    amounts = {} if p.patchout == "preset" else patchout_amounts(grid, p.patchout, p.amount)
    cfg = TrainConfig.for_scale(
        p.preset, p.scale, model_overrides=amounts, data=_data(p), seed=p.seed,
        epochs=p.epochs or None, precision=p.precision, device=p.device, progress=False,
        resume=True)
    return cfg.replace(out_dir=str(training_dir(cfg, out_dir)))


def run_patchout(p: PatchoutParams, out_dir: str | Path) -> dict[str, Any]:
    cfg = patchout_train_config(p, out_dir)
    res = train_in_subprocess(cfg, p.nproc) if p.nproc > 1 else _train(cfg)
    m = res["metrics"]
    from passt_lib.patchout import n_kept

    model_config = _model_config(p.preset, p.scale, **cfg.model_overrides)
    grid, po = model_config.grid, model_config.patchout_amounts  # the amounts that trained
    kept = n_kept(grid, **po)
    return {
        "eval_map": m.get("eval_map"), "eval_auc": m.get("eval_auc"),
        "prior_map": m.get("prior_map"),
        "samples_per_s": m["samples_per_s"], "peak_memory_mb": m["peak_memory_mb"],
        "step_memory_mib_per_sample": step_memory_per_sample(cfg),
        "tokens_train": kept + 2, "tokens_eval": grid[0] * grid[1] + 2,
        "dropped_fraction": 1 - kept / (grid[0] * grid[1]), "grid": list(grid), **po,
        "train_seconds": m["train_seconds"], "total_seconds": m["total_seconds"],
        "train_flops": m.get("train_flops"), "epochs": m["epochs"], "device": m["device"],
        "precision": m["precision"], "history": res["history"],
    }


def patchout_summary(m: dict) -> str:
    """One line a reader can judge a patchout run by: its score next to the class prior."""
    return (f"eval mAP {m['eval_map']:.3f} (class prior {m['prior_map']:.3f}); "
            f"{m['samples_per_s']:.0f} clips/s in training; {m['tokens_train']} tokens in "
            f"training, {m['tokens_eval']} at inference ({m['dropped_fraction']:.0%} of the patches "
            f"dropped); {m['step_memory_mib_per_sample']:.2f} MiB per clip per step")


def step_memory_per_sample(cfg) -> float:
    """MiB one training step allocates per sample on top of weights and optimiser state.

    Measured on a synthetic batch for ``cfg``'s model, in this process, the way the
    benchmarks measure it (``bench.common.peak_step_memory``); training's own
    ``peak_memory_mb`` is the whole process's peak on a CPU, dominated by what every
    run holds (libraries, data), so it cannot tell patchout settings apart.
    """
    from passt_lib.bench import common
    from passt_lib.scales import build_model

    device = common.pick_device(cfg.device)
    model = build_model(cfg.model, cfg.scale, 20, **cfg.model_overrides).to(device)
    c = model.config
    mel, target = common.synthetic_batch((1, c.input_fdim, c.input_tdim), 20, cfg.batch_size,
                                         device)
    step = common.TrainStep(model, mel, target, precision=cfg.precision)
    step()  # creates AdamW's state, which is held, not allocated by the step
    return common.mib(common.peak_step_memory(step, device)) / cfg.batch_size


# ----------------------------------------------------------------------------- coarse-to-fine


@dataclass(frozen=True)
class CoarseToFineParams:
    """20_coarse_to_fine. ``method="none"`` is the fine-only baseline."""

    scale: str = "embedded"
    seed: int = 0
    preset: str = "passt-b"
    method: str = "pool"
    schedule: str = "2-phase"
    factor: int = 4
    coarse_fraction: float = 0.5
    epochs: int = 0
    precision: str = "auto"
    device: str = "auto"
    nproc: int = 1
    audioset: str = ""

    def __post_init__(self) -> None:
        from passt_lib.model import PRESETS

        _common_checks(self)
        _choice("preset", self.preset, list(PRESETS))
        _choice("method", self.method, C2F_METHODS)
        if self.method != "none" and self.schedule not in C2F_SCHEDULES:
            from passt_lib.phases import parse_schedule

            parse_schedule(self.schedule)  # an explicit schedule: raises on a bad one
        if self.factor < 2 or (self.schedule == "3-phase" and self.factor % 2):
            raise ValueError(f"factor must be >= 2 (and even for '3-phase', which continues at "
                             f"factor/2); got {self.factor}")
        if not 0 < self.coarse_fraction < 1:
            raise ValueError(f"coarse_fraction must be in (0, 1), got {self.coarse_fraction}")


def build_schedule(method: str, schedule: str, epochs: int, factor: int = 4,
                   coarse_fraction: float = 0.5) -> str:
    """The compact schedule string: "none" -> "full:E"; "2-phase" -> "M:kxC,full:F"; ..."""
    from passt_lib.phases import standard_schedule

    if method == "none":
        return f"full:{epochs}"
    if schedule not in C2F_SCHEDULES:
        return schedule
    return standard_schedule(method, schedule, epochs, factor, coarse_fraction)


def c2f_train_config(p: CoarseToFineParams, out_dir: str | Path):
    from passt_lib.scales import get_scale
    from passt_lib.train import TrainConfig

    # 0 = the scale's budget, but at least one epoch per phase (the smoke scale has one epoch).
    n_phases = 1 if p.method == "none" else {"2-phase": 2, "3-phase": 4}.get(p.schedule, 1)
    epochs = p.epochs or max(get_scale(p.scale).epochs, n_phases)
    # fine-only is a plain run of `epochs`: the same training as the patchout study's
    sched = None if p.method == "none" else build_schedule(p.method, p.schedule, epochs,
                                                            p.factor, p.coarse_fraction)
    cfg = TrainConfig.for_scale(
        p.preset, p.scale, schedule=sched, epochs=None if sched else epochs, data=_data(p),
        seed=p.seed, precision=p.precision, device=p.device, progress=False, resume=True)
    return cfg.replace(out_dir=str(training_dir(cfg, out_dir)))


def c2f_summary(m: dict) -> str:
    """One line: the run's score next to the class prior, and its training cost."""
    return (f"{m['schedule'] or 'fine-only'}: eval mAP {m['eval_map']:.3f} (class prior "
            f"{m['prior_map']:.3f}); {m['train_flops'] / 1e12:.2f} TFLOPs and "
            f"{m['train_seconds']:.1f} s of training")


def run_coarse_to_fine(p: CoarseToFineParams, out_dir: str | Path) -> dict[str, Any]:
    cfg = c2f_train_config(p, out_dir)
    res = train_in_subprocess(cfg, p.nproc) if p.nproc > 1 else _train(cfg)
    m = res["metrics"]
    return {
        "schedule": cfg.schedule, "eval_map": m.get("eval_map"), "eval_auc": m.get("eval_auc"),
        "prior_map": m.get("prior_map"), "train_flops": m.get("train_flops"),
        "train_seconds": m["train_seconds"], "total_seconds": m["total_seconds"],
        "samples_per_s": m["samples_per_s"], "peak_memory_mb": m["peak_memory_mb"],
        "epochs": m["epochs"], "phases": m["phases"], "device": m["device"],
        "precision": m["precision"], "history": res["history"],
    }


# ----------------------------------------------------------------------------- training helpers


# Fields that do not change what a training computes.
_NOT_THE_TRAINING = ("out_dir", "resume", "progress", "stop_after_epoch")


def training_dir(cfg, run_dir: str | Path) -> Path:
    """Where a notebook run trains: ``<runs root>/trainings/<hash of the training config>``.

    Two runs of any notebooks that train the same config (the coarse-to-fine study's fine-only
    PaSST-S and the patchout study's PaSST-S, say) share one training: the second finds it
    finished (``resume``) instead of training it again.
    """
    from passt_lib.atomic import canonical_json

    d = {k: v for k, v in cfg.to_dict().items() if k not in _NOT_THE_TRAINING}
    key = hashlib.sha1(canonical_json(d).encode()).hexdigest()[:12]
    return Path(run_dir).resolve().parent.parent / "trainings" / f"{cfg.model}-{key}"


def _train(cfg) -> dict[str, Any]:
    import fcntl

    from passt_lib.train import train

    lock = Path(cfg.out_dir).with_suffix(".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "w") as f:  # one process trains a config; another waits, then resumes
        fcntl.flock(f, fcntl.LOCK_EX)
        res = train(cfg)
    return {"metrics": res.metrics, "history": res.history}


def train_in_subprocess(cfg, nproc: int) -> dict[str, Any]:
    """Train under ``torchrun --nproc_per_node nproc`` (DDP cannot start inside a kernel)."""
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg_path = atomic_write_text(out / "train_config.json", json.dumps(cfg.to_dict(), indent=2))
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
           "--standalone", "-m", "passt_lib.train", str(cfg_path)]
    subprocess.run(cmd, check=True, cwd=REPO_ROOT)
    metrics = json.loads((out / "metrics.json").read_text())
    import pandas as pd

    history = pd.read_csv(out / "history.csv").to_dict("records")
    return {"metrics": metrics, "history": history}


def plot_history(history: list[dict], title: str = "", prior: float | None = None):
    """Training loss and eval score per epoch (whole epochs on the axis), phases marked, the
    class prior's score as the floor to beat."""
    from matplotlib.ticker import MaxNLocator

    from passt_lib.study import style

    fig, ax = style.figure("column")
    ep = [h["epoch"] for h in history]
    ax.plot(ep, [h["train_loss"] for h in history], "o-", label="train loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("train loss")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    key = "eval_map" if history and "eval_map" in history[0] else "eval_accuracy"
    name = {"eval_map": "eval mAP", "eval_accuracy": "eval accuracy"}[key]
    ax2 = ax.twinx()
    ax2.plot(ep, [h.get(key) for h in history], "s-", color="#D55E00", label=name)
    if prior is not None:
        ax2.axhline(prior, color="#D55E00", ls=":", lw=0.8, label=f"class prior ({prior:.3f})")
    ax2.set_ylabel(name)
    ax2.grid(False)
    for a, b in zip(history, history[1:]):
        if a.get("phase") != b.get("phase"):
            ax.axvline(a["epoch"] + 0.5, color="gray", ls=":", lw=0.8)
    if title:
        ax.set_title(title)
    fig.legend(loc="outside lower center", ncols=2)
    return fig


# ----------------------------------------------------------------------------- speed


@dataclass(frozen=True)
class SpeedParams:
    """30_speed: the Table 1 benchmark (passt_lib.bench.table) at a scale."""

    scale: str = "embedded"
    seed: int = 0
    models: tuple[str, ...] = ("ast", "ast-n", "passt-b", "passt-u", "passt-s", "passt-s-l",
                               "passt-s-n", "cnn14", "cnn10", "mn10", "mn40")
    steps: int = 5
    warmup: int = 2
    scaling_seconds: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 16.0, 30.0)
    scaling_models: tuple[str, ...] = ("ast", "passt-s", "passt-s-n", "cnn14")
    precision: str = "auto"
    device: str = "auto"
    epochs: int = 0  # unused; shared checks
    nproc: int = 1
    audioset: str = "unused"

    def __post_init__(self) -> None:
        from passt_lib.registry import list_models

        for name in ("models", "scaling_seconds", "scaling_models"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if any(x <= 0 for x in self.scaling_seconds):
            raise ValueError(f"scaling_seconds must be positive, got {list(self.scaling_seconds)}")
        _common_checks(self)
        for m in self.models:
            _choice("models entry", m, list_models())
        for m in self.scaling_models:
            _choice("scaling_models entry", m, list_models())
        if self.steps < 1 or self.warmup < 0:
            raise ValueError(f"need steps >= 1 and warmup >= 0, got {self.steps}, {self.warmup}")


def run_speed(p: SpeedParams, out_dir: str | Path) -> dict[str, Any]:
    """Measure the Table 1 row of every model; write table.csv (and scaling.csv if available).

    The benchmarks' progress lines go to stdout here: in a notebook stderr reads as an error.
    """
    import contextlib

    with contextlib.redirect_stderr(sys.stdout):
        return _run_speed(p, out_dir)


def _run_speed(p: SpeedParams, out_dir: str | Path) -> dict[str, Any]:
    import torch

    from passt_lib.bench import common, table

    torch.manual_seed(p.seed)
    args = table.parse_args(["--scale", p.scale, "--models", *p.models, "--steps", str(p.steps),
                             "--warmup", str(p.warmup), "--precision", p.precision,
                             "--device", p.device])
    rows, env = table.measure(args)
    common.write_csv(Path(out_dir) / "table.csv", rows, env)
    scaling_rows = []
    if p.scaling_seconds:
        from passt_lib.bench import scaling
        from passt_lib.scales import get_scale

        s = get_scale(p.scale)
        sargs = scaling.parse_args([
            "--seconds", *map(str, p.scaling_seconds), "--models", *p.scaling_models,
            "--width", s.width, "--n-mels", str(s.n_mels), "--steps", str(p.steps),
            "--warmup", str(p.warmup), "--precision", p.precision, "--device", p.device,
            *(["--depth", str(s.depth)] if s.depth else [])])
        scaling_rows, _ = scaling.run(sargs)
        common.write_csv(Path(out_dir) / "scaling.csv", scaling_rows, env)
    return {"rows": rows, "scaling_rows": scaling_rows, "bench_env": env}


def params_from(cls, values: dict[str, Any]):
    """``cls(**values)`` with unknown names rejected by name (the notebook's parameter set)."""
    return from_dict_strict(cls, values, f"{cls.__name__} parameter")


# ----------------------------------------------------------------------------- tour


@dataclass(frozen=True)
class TourParams:
    """00_tour. ``seed`` draws the patchout and the encodings shown; the clip always comes
    from the default embedded dataset (seed 0), whatever ``seed`` is."""

    scale: str = "embedded"
    seed: int = 0
    preset: str = "passt-s"
    clip: int = 0
    factor: int = 4

    def __post_init__(self) -> None:
        from passt_lib.model import PRESETS

        _choice("scale", self.scale, ("smoke", "embedded"))
        _choice("preset", self.preset, [n for n in PRESETS if not n.startswith("ast")])
        if self.clip < 0 or self.seed < 0:
            raise ValueError(f"clip and seed must be >= 0, got clip={self.clip}, seed={self.seed}")
        if self.factor < 2:
            raise ValueError(f"factor must be >= 2, got {self.factor}")


@dataclass(frozen=True)
class FiguresParams:
    """90_figures."""

    scale: str = "embedded"
    seed: int = 0
    runs: str = ""
    results: str = ""

    def __post_init__(self) -> None:
        _choice("scale", self.scale, SCALE_NAMES)


def save_figure(fig, out_dir: str | Path, name: str) -> list[Path]:
    """``out_dir/name.png`` and ``.pdf``, byte-stable; the figure stays open for display."""
    from passt_lib.study import style

    return style.save(fig, Path(out_dir) / name, close=False)


def plot_speed(table, gpu=None):
    """Training speed relative to AST per model (``passt_lib.study.speedplot.plot_speed``)."""
    from passt_lib.study.speedplot import plot_speed as plot

    return plot(table, gpu)
