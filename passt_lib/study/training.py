"""How a notebook trains: in a directory keyed by its training config, one process at a time,
or under ``torchrun`` for several GPUs.

DDP cannot start inside a Jupyter kernel: for several GPUs :func:`train_in_subprocess` runs
``torchrun --nproc_per_node N -m passt_lib.train CONFIG.json`` with the config's
``TrainConfig.to_dict()``.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from passt_lib.atomic import atomic_write_text, canonical_json
from passt_lib.provenance import REPO_ROOT
from passt_lib.train import train
from passt_lib.train_config import TrainConfig

# Fields that do not change what a training computes.
_NOT_THE_TRAINING = ("out_dir", "resume", "progress", "stop_after_epoch")


def training_dir(cfg: TrainConfig, run_dir: str | Path) -> Path:
    """Where a notebook run trains: ``<runs root>/trainings/<hash of the training config>``.

    Two runs of any notebooks that train the same config (the coarse-to-fine study's fine-only
    PaSST-S and the patchout study's PaSST-S, say) share one training: the second finds it
    finished (``resume``) instead of training it again.
    """
    d = {k: v for k, v in cfg.to_dict().items() if k not in _NOT_THE_TRAINING}
    key = hashlib.sha1(canonical_json(d).encode()).hexdigest()[:12]
    return Path(run_dir).resolve().parent.parent / "trainings" / f"{cfg.model}-{key}"


def train_here(cfg: TrainConfig) -> dict[str, Any]:
    """Train in this process; a second process training the same config waits, then resumes."""
    lock = Path(cfg.out_dir).with_suffix(".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "w") as f:  # one process trains a config; another waits, then resumes
        fcntl.flock(f, fcntl.LOCK_EX)
        res = train(cfg)
    return {"metrics": res.metrics, "history": res.history}


def train_in_subprocess(cfg: TrainConfig, nproc: int) -> dict[str, Any]:
    """Train under ``torchrun --nproc_per_node nproc`` (DDP cannot start inside a kernel)."""
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg_path = atomic_write_text(out / "train_config.json", json.dumps(cfg.to_dict(), indent=2))
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
           "--standalone", "-m", "passt_lib.train", str(cfg_path)]
    subprocess.run(cmd, check=True, cwd=REPO_ROOT)
    metrics = json.loads((out / "metrics.json").read_text())
    history = pd.read_csv(out / "history.csv").to_dict("records")
    return {"metrics": metrics, "history": history}


def run_training(cfg: TrainConfig, nproc: int = 1) -> dict[str, Any]:
    """{"metrics", "history"} of ``cfg``'s training: here, or under torchrun when nproc > 1."""
    return train_in_subprocess(cfg, nproc) if nproc > 1 else train_here(cfg)
