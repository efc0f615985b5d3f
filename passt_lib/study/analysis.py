"""The study's runs as tables: settings over seeds, paired against their baselines.

Reads the finished runs of a study (:func:`load_runs`), names each run's setting, and for
every setting computes the mean and spread over seeds and the paired comparison with its
baseline (``passt_lib.study.stats``): the patchout study against PaSST-B without patchout,
the coarse-to-fine study against fine-only training of the same preset. Learning curves
come from each run's per-epoch history. The figures and the report are drawn from these.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from passt_lib.atomic import read_json
from passt_lib.rundir import ENV_FILE, METRICS_FILE, PARAMS_FILE
from passt_lib.study.stats import Paired, paired, verdict

METHOD_NAMES = {"none": "fine-only", "frame_shift": "frame shift", "pool": "pooling",
                "patchify": "patchify"}
METHOD_ORDER = ("none", "frame_shift", "pool", "patchify")


def load_runs(runs_root: str | Path, study: str, scale: str | None = None) -> pd.DataFrame:
    """One row per finished run of ``study``: its parameters, scalar metrics, hash and commit."""
    rows = []
    root = Path(runs_root) / study
    for d in sorted(root.glob("*/")) if root.exists() else []:
        params, metrics = read_json(d / PARAMS_FILE), read_json(d / METRICS_FILE)
        if not (params and metrics) or metrics.get("config_hash") != params.get("config_hash"):
            continue
        env = read_json(d / ENV_FILE) or {}
        row = {**params["params"], "hash": params["config_hash"], "run_dir": str(d),
               "commit": env.get("commit"), "dirty": env.get("dirty"),
               "versions": json.dumps(env.get("versions") or {}, sort_keys=True)}
        for k, v in metrics.items():
            if k not in row and (v is None or isinstance(v, (int, float, str, bool))):
                row[k] = v
        row["_metrics"] = metrics
        rows.append(row)
    df = pd.DataFrame(rows)
    if scale is not None and len(df):
        df = df[df["scale"] == scale].reset_index(drop=True)
    return df


def _by_seed(df: pd.DataFrame, column: str) -> dict[int, float]:
    return {int(s): float(v) for s, v in zip(df["seed"], df[column]) if v is not None}


def _summary_row(df: pd.DataFrame, metrics: list[str]) -> dict:
    out = {"n_seeds": len(df)}
    for m in metrics:
        v = pd.to_numeric(df[m], errors="coerce") if m in df else pd.Series(dtype=float)
        out[f"{m}_mean"] = float(v.mean()) if len(v) else np.nan
        out[f"{m}_std"] = float(v.std(ddof=1)) if v.count() > 1 else 0.0
    return out


# ----------------------------------------------------------------------------- patchout
def patchout_label(preset: str, patchout: str, amount: float, dropped: float) -> str:
    if patchout == "none":
        return f"{preset.upper().replace('PASST', 'PaSST')}, no patchout"
    if patchout == "preset":
        return f"{preset.upper().replace('PASST', 'PaSST')} ({dropped:.0%} dropped)"
    return f"{patchout} patchout ({dropped:.0%} dropped)"


def patchout_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per setting (preset, patchout, amount): means over seeds, and the paired
    comparison with PaSST-B without patchout (mAP difference; speed-up minus 1; mAP against
    PaSST-B's after the same training FLOPs)."""
    if runs.empty:
        return pd.DataFrame()
    runs = runs.copy()
    runs["preset"] = runs.get("preset", "passt-b")
    keys = ["preset", "patchout", "amount"]
    base = runs[(runs["patchout"] == "none") & (runs["preset"] == "passt-b")]
    base_map, base_speed = _by_seed(base, "eval_map"), _by_seed(base, "samples_per_s")
    rows = []
    for (preset, kind, amount), g in runs.groupby(keys, sort=False):
        speed = {s: v / base_speed[s] - 1 for s, v in _by_seed(g, "samples_per_s").items()
                 if s in base_speed}
        row = {"preset": preset, "patchout": kind, "amount": amount,
               **_summary_row(g, ["eval_map", "samples_per_s", "step_memory_mib_per_sample",
                                  "tokens_train", "dropped_fraction", "train_seconds",
                                  "prior_map"])}
        row["label"] = patchout_label(preset, kind, amount, row["dropped_fraction_mean"])
        row["is_baseline"] = preset == "passt-b" and kind == "none"
        row["speedup_mean"] = 1 + float(np.mean(list(speed.values()))) if speed else np.nan
        row["map_diff"] = None if row["is_baseline"] else paired(_by_seed(g, "eval_map"),
                                                                  base_map)
        row["speedup_diff"] = None if row["is_baseline"] else paired(speed, {s: 0.0 for s in speed})
        row["map_equal_flops"] = None if row["is_baseline"] else map_at_equal_cost(g, base)
        rows.append(row)
    out = pd.DataFrame(rows)
    order = {"none": 0, "preset": 1}
    out["_o"] = [(not b, order.get(k, 2), a) for b, k, a in
                 zip(out["is_baseline"], out["patchout"], out["amount"])]
    return out.sort_values("_o").drop(columns="_o").reset_index(drop=True)


# ----------------------------------------------------------------------------- coarse-to-fine
def c2f_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (preset, schedule): means over seeds, the per-seed FLOPs and time relative
    to fine-only training of the same preset, and paired intervals for mAP and time saved."""
    if runs.empty:
        return pd.DataFrame()
    runs = runs.copy()
    runs["schedule_used"] = runs["_metrics"].map(schedule_used)
    rows = []
    for (preset, method, schedule), g in runs.groupby(["preset", "method", "schedule_used"],
                                                      sort=False):
        base = runs[(runs["preset"] == preset) & (runs["method"] == "none")]
        bf, bt = _by_seed(base, "train_flops"), _by_seed(base, "train_seconds")
        flops = {s: v / bf[s] for s, v in _by_seed(g, "train_flops").items() if s in bf}
        time = {s: v / bt[s] for s, v in _by_seed(g, "train_seconds").items() if s in bt}
        row = {"preset": preset, "method": method, "schedule_used": schedule,
               **_summary_row(g, ["eval_map", "train_flops", "train_seconds", "prior_map"]),
               "flops_rel_mean": _mean(flops), "time_rel_mean": _mean(time),
               "time_rel_std": _sd(time),
               "map_diff": paired(_by_seed(g, "eval_map"), _by_seed(base, "eval_map"))
               if method != "none" else None,
               "time_saving": paired({s: 1 - v for s, v in time.items()},
                                     {s: 0.0 for s in time}) if method != "none" else None,
               "map_equal_flops": map_at_equal_cost(g, base) if method != "none" else None,
               "n_phases": schedule.count(",") + 1}
        rows.append(row)
    out = pd.DataFrame(rows)
    out["_o"] = [(p != "passt-s", METHOD_ORDER.index(m) if m in METHOD_ORDER else 9, n)
                 for p, m, n in zip(out["preset"], out["method"], out["n_phases"])]
    return out.sort_values("_o").drop(columns="_o").reset_index(drop=True)


def _mean(d: dict) -> float:
    return float(np.mean(list(d.values()))) if d else np.nan


def _sd(d: dict) -> float:
    return float(np.std(list(d.values()), ddof=1)) if len(d) > 1 else 0.0


def accuracy_verdict(p: Paired | None) -> str:
    return verdict(p, "accuracy")


def c2f_verdict(row) -> str:
    """A schedule reproduces the claim when it saves training time (interval above 0) at
    on-par accuracy (mAP interval above -MARGIN); not when either interval says the opposite."""
    acc, cost = verdict(row["map_diff"], "accuracy"), verdict(row["time_saving"], "saving")
    if "not reproduced" in (acc, cost):
        return "not reproduced"
    return "reproduced" if acc == cost == "reproduced" else "inconclusive"


# ----------------------------------------------------------------------------- learning curves
def map_at_equal_cost(setting: pd.DataFrame, baseline: pd.DataFrame,
                      cost: str = "train_flops") -> Paired | None:
    """Seed by seed: the setting's final eval mAP minus the baseline's eval mAP after the same
    cumulative training ``cost`` ("train_flops" or "train_seconds"), interpolated linearly
    between the baseline's epoch ends (a seed whose cost falls outside the baseline's curve
    is left out, not extrapolated). The comparison the papers' "cheaper training" implies:
    what the same budget buys."""
    def hist(df):
        return {int(s): m.get("history") or [] for s, m in zip(df["seed"], df["_metrics"])}

    base, diffs_setting, diffs_base = hist(baseline), {}, {}
    for seed, h in hist(setting).items():
        b = base.get(seed)
        if not h or not b or any(cost not in r for r in (*h, *b)):
            continue
        x = np.cumsum([r[cost] for r in b])
        budget = float(sum(r[cost] for r in h))
        if x[0] <= budget <= x[-1]:
            diffs_setting[seed] = float(h[-1].get("eval_map", np.nan))
            diffs_base[seed] = float(np.interp(budget, x, [r.get("eval_map", np.nan) for r in b]))
    return paired(diffs_setting, diffs_base)


def schedule_used(metrics: dict) -> str:
    """The phase schedule a run trained with; fine-only training reads ``full:EPOCHS``."""
    return metrics.get("schedule") or f"full:{metrics.get('epochs')}"


def learning_curves(runs: pd.DataFrame, group: list[str]) -> list[dict]:
    """Per setting: cumulative training seconds and FLOPs at each epoch's end and the eval mAP
    there, as means over seeds with the min and max over seeds."""
    curves = []
    for key, g in runs.groupby(group, sort=False):
        hists = [m.get("history") or [] for m in g["_metrics"]]
        n = min((len(h) for h in hists), default=0)
        if n == 0 or any("train_flops" not in r for h in hists for r in h[:n]):
            continue
        t = np.array([np.cumsum([r["train_seconds"] for r in h[:n]]) for h in hists])
        f = np.array([np.cumsum([r["train_flops"] for r in h[:n]]) for h in hists])
        m = np.array([[r.get("eval_map", np.nan) for r in h[:n]] for h in hists])
        curves.append({"key": key if isinstance(key, tuple) else (key,), "seconds": t.mean(0),
                       "flops": f.mean(0), "map": m.mean(0), "map_low": m.min(0),
                       "map_high": m.max(0), "n": len(hists)})
    return curves
