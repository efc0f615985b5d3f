"""The figures a notebook draws of its own run, and how it saves them."""

from __future__ import annotations

from pathlib import Path

from matplotlib.ticker import MaxNLocator

from passt_lib.study import style


def save_figure(fig, out_dir: str | Path, name: str) -> list[Path]:
    """``out_dir/name.png`` and ``.pdf``, byte-stable; the figure stays open for display."""
    return style.save(fig, Path(out_dir) / name, close=False)


def plot_history(history: list[dict], title: str = "", prior: float | None = None):
    """Training loss and eval score per epoch (whole epochs on the axis), phases marked, the
    class prior's score as the floor to beat."""
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
