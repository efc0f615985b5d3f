"""The body of ``40_downstream``: a downstream recipe at the embedded scale, fold by fold.

The embedded ``keywords`` task (spoken digits; both splits dealt to five folds by voice) is
fine-tuned from a checkpoint of the embedded ``mixtures`` task through the same recipe
machinery as ESC-50 (``passt_lib.recipes``, ``passt_lib.finetune.run_folds``): every fold is
a run directory that is skipped when done and resumed when interrupted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from passt_lib.finetune import run_folds
from passt_lib.study.params import DownstreamParams
from passt_lib.train import train
from passt_lib.train_config import TrainConfig


def pretrained(p: DownstreamParams, out_dir: str | Path) -> Path:
    """The mixtures checkpoint to fine-tune from: ``p.init``, or one trained now."""
    if p.init:
        return Path(p.init)
    cfg = TrainConfig.for_scale("passt-s", p.scale, seed=p.seed, threads=p.threads,
                                device=p.device, precision=p.precision, progress=False,
                                resume=True, out_dir=str(Path(out_dir) / "pretrain"))
    if not (Path(cfg.out_dir) / "metrics.json").exists():
        train(cfg)
    return Path(cfg.out_dir) / "checkpoint.pt"


def run_downstream(p: DownstreamParams, out_dir: str | Path) -> dict[str, Any]:
    """Pre-train (unless ``p.init``), then fine-tune on folds 1..``p.folds``; returns the
    folds' summary (``finetune.summarize_folds``) with the pre-training's mAP."""
    import json

    ckpt = pretrained(p, out_dir)
    sets = [f"init={ckpt}", f"seed={p.seed}", f"threads={p.threads}", f"device={p.device}",
            f"precision={p.precision}", "progress=false"]
    summary = run_folds("keywords", None, range(1, p.folds + 1), Path(out_dir) / "folds",
                        scale=p.scale, sets=sets)
    pre = ckpt.parent / "metrics.json"
    if pre.exists():
        summary["pretrain_eval_map"] = json.loads(pre.read_text()).get("eval_map")
    return summary


def fold_frame(summary: dict):
    """The folds' scores and their mean ± sd as a table (rows: folds, then mean and sd)."""
    import pandas as pd

    metric = summary["metric"]
    keys = [k for k in (metric, "swa_" + metric) if k in summary]
    rows = [{"fold": f, **{k: m[k] for k in keys}} for f, m in summary["folds"].items()]
    rows += [{"fold": stat, **{k: summary[k][stat] for k in keys}} for stat in ("mean", "sd")]
    return pd.DataFrame(rows)
