"""The speed figures: the Table 1 replica and training cost against clip length."""

from __future__ import annotations

import numpy as np
import pandas as pd

from passt_lib.study import style


def _x_ast_range(table: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper error of each model's speed relative to AST, from the fastest and the
    median timed step (the steps' spread; AST's own median is the reference)."""
    ratio = table["train_x_ast"].astype(float).to_numpy()
    if "train_step_min_s" not in table:
        return np.zeros_like(ratio), np.zeros_like(ratio)
    best = ratio * table["train_step_s"].astype(float) / table["train_step_min_s"].astype(float)
    spread = table.get("train_spread", pd.Series(0.0, index=table.index)).astype(float)
    return ratio * spread.clip(lower=0) / 2, (best - ratio).clip(lower=0)


def _bars(ax, table: pd.DataFrame, title: str, paper: bool = True) -> None:
    x = np.arange(len(table))
    here = table["train_x_ast"].astype(float)
    low, high = _x_ast_range(table)
    bars = ax.bar(x - 0.2 if paper else x, here, 0.4, yerr=[low, high], capsize=1.5,
                  error_kw={"lw": 0.6}, label="measured")
    if paper:
        ref = [float(v) if v not in ("", None) and v == v else np.nan
               for v in table["paper_x_ast"]]
        ax.bar(x + 0.2, ref, 0.4, label="paper (Titan RTX, full size)")
    ax.set_yscale("log")
    style.plain_log_ticks(ax.yaxis)
    ax.bar_label(bars, labels=[f"{v:.2g}" for v in here], fontsize=5, padding=1)
    ax.axhline(1.0, color="gray", lw=0.6, ls=":")
    ax.set_xticks(x, table["model"], rotation=30, ha="right")
    ax.set_ylabel("training speed (x AST, log)")
    ax.set_title(title)


def plot_speed(table: pd.DataFrame, gpu: pd.DataFrame | None = None):
    """Training speed relative to AST per model, measured here next to the paper's Table 1;
    beside it the committed H200 measurements at the paper's size, when there are any."""
    ncols = 2 if gpu is not None else 1
    fig, axes = style.figure("page", 2.9, ncols=ncols, squeeze=False)
    scale = table["scale"].iloc[0] if "scale" in table else "?"
    where = (f"{table['device'].iloc[0]}, {table['precision'].iloc[0]}"
             if {"device", "precision"} <= set(table) else "this machine")
    _bars(axes[0, 0], table, f"{where}, {scale} scale, batch {table['batch'].iloc[0]}"
                             if "batch" in table else f"{where}, {scale} scale")
    axes[0, 0].legend(fontsize=6, loc="upper left")
    if gpu is not None:
        _bars(axes[0, 1], gpu, f"One H200, paper size, batch {int(gpu['batch'].iloc[0])}, "
                               f"{gpu['precision'].iloc[0]}")
    if scale != "paper":
        style.note(fig, "At the small scales the transformers are tiny (width 192, depth 4, "
                   "2 s clips) while the CNNs keep their full width, so the CNNs' speed relative "
                   "to AST here is not the paper's (CNN14: 5.7x there).")
    fig.suptitle("Table 1 replica: training throughput relative to AST (bars: spread of the "
                 "timed steps)", fontsize=8)
    return fig


def plot_scaling(df: pd.DataFrame):
    """Training step time and memory per sample against clip length, log-log, per model, with
    guides proportional to the length and its square through one pinned point."""
    from matplotlib.ticker import NullFormatter

    fig, axes = style.figure("page", 2.6, ncols=2)
    for name, r in df.groupby("model", sort=False):
        r = r.sort_values("seconds")
        axes[0].plot(r["seconds"], r["step_s"], "o-", label=str(name))
        axes[1].plot(r["seconds"], r["mem_mib_per_sample"], "o-", label=str(name))
    xs = sorted(df["seconds"].unique())
    first = df[df["model"] == df["model"].iloc[0]]
    pin = first.loc[first["seconds"].idxmax()]  # where fixed per-step costs matter least
    for ax, col, label in ((axes[0], "step_s", "training step (s)"),
                           (axes[1], "mem_mib_per_sample", "memory per sample (MiB)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(xs, [f"{x:g}" for x in xs])
        ax.xaxis.set_minor_formatter(NullFormatter())
        # 1-2-5 ticks, so that a range narrower than a decade still gets labels
        style.plain_log_ticks(ax.yaxis)
        ax.set_xlabel("clip length (s)")
        ax.set_ylabel(label)
        ylim = ax.get_ylim()  # the guides must not stretch the axes
        x0, x1, y1 = xs[0], pin["seconds"], pin[col]
        for power, ls in ((1, "--"), (2, ":")):
            ax.plot([x0, x1], [y1 * (x0 / x1) ** power, y1], color="gray", lw=0.6, ls=ls,
                    label=f"∝ length{'²' if power == 2 else ''}")
        ax.set_ylim(ylim)
    axes[0].legend(fontsize=6)
    size = next((df[c].iloc[0] for c in ("size", "width") if c in df), "?")  # older: width
    device = df["device"].iloc[0] if "device" in df else "?"
    batch = df["batch"].iloc[0] if "batch" in df else "?"
    fig.suptitle(f"Training cost against clip length (log-log); transformers ViT-{size}, batch "
                 f"{batch}, {device}; guides pinned to {pin['model']} at {pin['seconds']:g} s",
                 fontsize=7)
    return fig
