"""``passt-study finetune RECIPE``: a downstream recipe (``passt_lib.recipes``), one fold or all.

    passt-study finetune esc50 --data ESC-50-master --folds 1-5
    passt-study finetune openmic --data openmic-2018 --scale smoke
    passt-study finetune fsd50k --data FSD50K --set init=mine.pt --set init_arch=NAME

Every run, and every fold of a fold run, is a run directory of the study machinery
(``passt_lib.rundir``): ``OUT/fold-K/`` holds ``params.json``, ``env.json``, the training's
files under ``train/`` and, written last, ``metrics.json`` carrying the hash of the fold's
config. A fold whose ``metrics.json`` matches is skipped; a fold that was killed resumes
from its last checkpoint. The folds' scores are written to ``OUT/folds.json`` with their
mean and standard deviation.

``--whole-clips`` evaluates the trained model once more on the test set (the eval set where
there is none) with every clip whole: clips longer than the model's window are cut into
windows as ``passt-study predict`` cuts them (a quarter-window hop) and their scores averaged
(:func:`evaluate_whole_clips`, ``OUT/whole_clips.json``).
"""

from __future__ import annotations

import argparse
import logging
import statistics
from collections.abc import Sequence
from pathlib import Path

import torch

from passt_lib import metrics as M
from passt_lib.atomic import atomic_write_json, read_json
from passt_lib.data import make_datasets, make_test_dataset
from passt_lib.errors import run_main
from passt_lib.inference import load_model
from passt_lib.labels import split_targets
from passt_lib.recipes import RECIPES, get_recipe, recipe_config
from passt_lib.rundir import METRICS_FILE, config_hash, is_done, start_run
from passt_lib.train import train
from passt_lib.train_config import RESUME_FREE

RUN_NAME = "finetune"


def parse_folds(text: str | None) -> list[int] | None:
    """``"1-5"``, ``"2"`` or ``"1,3"`` -> fold numbers; None stays None."""
    if text is None:
        return None
    folds: list[int] = []
    try:
        for part in text.split(","):
            lo, _, hi = part.partition("-")
            folds += list(range(int(lo), int(hi or lo) + 1))
    except ValueError:
        raise ValueError(f"--folds expects e.g. 1-5, 3 or 1,3; got {text!r}") from None
    if not folds:
        raise ValueError(f"--folds expects e.g. 1-5, 3 or 1,3; got {text!r}")
    return folds


def _params(config) -> dict:
    """The config fields that define a run's result (not where or how fast it runs)."""
    return {k: v for k, v in config.to_dict().items() if k not in RESUME_FREE}


def run_one(config, run_dir: str | Path) -> dict:
    """Train ``config`` as the run directory ``run_dir`` (skipped when done, resumed when
    interrupted); returns the run's metrics."""
    run_dir = Path(run_dir)
    params = _params(config)
    if is_done(run_dir, config_hash(RUN_NAME, params)):
        return read_json(run_dir / METRICS_FILE)
    run = start_run(run_dir, RUN_NAME, params, device=config.device, precision=config.precision)
    result = train(config.replace(out_dir=str(run_dir / "train"), resume=True))
    if not result.completed:
        return {**result.metrics, "completed": False}
    run.finish(result.metrics)
    return read_json(run_dir / METRICS_FILE)


def evaluate_whole_clips(checkpoint: str | Path, data, hop_seconds: float | None = None) -> dict:
    """Scores of the model in ``checkpoint`` on ``data``'s test set (else its eval set) with
    every clip whole, by windows (``AudioTagger.predict``, window scores averaged)."""
    tagger = load_model(checkpoint)
    ds = make_test_dataset(data)
    which = "test"
    if ds is None:
        ds, which = make_datasets(data)[1], "eval"
    scores = torch.cat([tagger.predict(ds.full_waveform(i), hop_seconds).clip_mean
                        for i in range(len(ds))])  # (N, C)
    targets = torch.as_tensor(ds.targets())
    prefix = f"whole_{which}_"
    if data.task == "singlelabel":
        return {f"{prefix}accuracy": M.accuracy(scores, targets.argmax(dim=1)), "n": len(ds)}
    mask = None
    if data.label_mask:
        targets, mask = split_targets(targets, scores.shape[1])
    m = M.multilabel_metrics(scores, targets, mask)
    return {f"{prefix}map": m["map"], f"{prefix}auc": m["auc"], "n": len(ds),
            "note": "the last epoch's model; clips whole, window scores averaged"}


def summarize_folds(per_fold: dict[int, dict]) -> dict:
    """Each fold's scores and, for every score all folds have, mean and sd (n - 1)."""
    keys = [k for k in next(iter(per_fold.values()))
            if k.startswith(("eval_", "swa_eval_", "selected_")) and not k.endswith("_seconds")
            and all(isinstance(m.get(k), (int, float)) for m in per_fold.values())]
    out = {"folds": {str(f): {k: m[k] for k in keys} for f, m in per_fold.items()}}
    for k in keys:
        values = [m[k] for m in per_fold.values()]
        out[k] = {"mean": statistics.fmean(values),
                  "sd": statistics.stdev(values) if len(values) > 1 else 0.0}
    return out


def run_folds(name: str, data, folds: Sequence[int], out_dir: str | Path, **kw) -> dict:
    """Recipe ``name`` on each fold of ``folds`` under ``out_dir/fold-K``; writes and returns
    ``out_dir/folds.json`` (:func:`summarize_folds`). ``kw`` go to ``recipe_config``."""
    out_dir = Path(out_dir)
    per_fold = {}
    for k in folds:
        config = recipe_config(name, data, fold=k, out_dir=out_dir / f"fold-{k}", **kw)
        metrics = run_one(config, out_dir / f"fold-{k}")
        if metrics.get("completed") is False:
            raise RuntimeError(f"fold {k} stopped early (stop_after_epoch); run again to resume")
        per_fold[k] = metrics
    summary = {"recipe": name, "metric": get_recipe(name).metric, **summarize_folds(per_fold)}
    atomic_write_json(out_dir / "folds.json", summary)
    return summary


def fold_table(summary: dict) -> str:
    """The folds' scores and their mean ± sd as lines of text."""
    metric = summary["metric"]
    keys = [k for k in (metric, "swa_" + metric) if k in summary]
    lines = ["fold  " + "  ".join(f"{k:>16}" for k in keys)]
    for f, m in summary["folds"].items():
        lines.append(f"{f:>4}  " + "  ".join(f"{m[k]:>16.4f}" for k in keys))
    lines.append("mean  " + "  ".join(
        f"{summary[k]['mean']:>8.4f} ± {summary[k]['sd']:.4f}" for k in keys))
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="passt-study finetune",
        description="Fine-tune on a downstream task with the authors' recipe: " + "; ".join(
            f"{r.name}: {r.title}" for r in RECIPES.values()))
    p.add_argument("recipe", help=f"one of {', '.join(RECIPES)}")
    p.add_argument("--data", help="the dataset's folder (or file); see the README's "
                                  "'Downstream tasks' for the layouts")
    p.add_argument("--scale", default="paper", help="paper (default), embedded or smoke")
    p.add_argument("--folds", help="folds to run, e.g. 1-5 (ESC-50 and keywords); default: 1")
    p.add_argument("--out", help="output folder (default results/runs/finetune/RECIPE)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a TrainConfig field (init=CHECKPOINT, init_arch=NAME, "
                        "lr=..., data.FIELD=...); repeatable")
    p.add_argument("--whole-clips", action="store_true",
                   help="also evaluate the test set with every clip whole, by windows")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    return run_main("passt-study finetune", _main, argv)


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    recipe = get_recipe(args.recipe)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    sets = list(args.set) + (["progress=false"] if args.no_progress else [])
    out = Path(args.out or Path("results") / "runs" / "finetune" / recipe.name)
    folds = parse_folds(args.folds)
    if folds is not None and not recipe.folds:
        raise ValueError(f"{recipe.name} has fixed splits, not folds; drop --folds")
    if recipe.folds:
        summary = run_folds(recipe.name, args.data, folds or [1], out, scale=args.scale,
                            sets=sets)
        print(fold_table(summary))
        print(f"-> {out / 'folds.json'}")
        return 0
    config = recipe_config(recipe.name, args.data, scale=args.scale, out_dir=out, sets=sets)
    m = run_one(config, out)
    keys = [k for k in (recipe.metric, "swa_" + recipe.metric, "selected_epoch",
                        "selected_test_map", "selected_swa_test_map") if k in m]
    print(f"{recipe.name} @ {args.scale}: " + ", ".join(
        f"{k} {m[k]:.4f}" if isinstance(m[k], float) else f"{k} {m[k]}" for k in keys)
        + f" -> {out / METRICS_FILE}")
    if "selection" in m:
        print(f"selection: {m['selection']}")
    if args.whole_clips:
        whole = evaluate_whole_clips(out / "train" / "checkpoint.pt", config.data)
        atomic_write_json(out / "whole_clips.json", whole)
        print("whole clips: " + ", ".join(f"{k} {v:.4f}" for k, v in whole.items()
                                          if isinstance(v, float)))
    return 0
