"""``passt-study figures``: every figure, table and the report, re-rendered from stored runs.

Reads the finished runs under ``results/runs/<study>/<hash>/`` (a run counts
when its ``metrics.json`` carries the hash in its ``params.json``), compares each
setting with its baseline seed by seed (``passt_lib.study.analysis``), and writes

- ``results/figures/*.png`` and ``*.pdf`` (byte-stable, the source commits in
  their metadata);
- ``results/tables/*.csv``, each starting with a ``#`` line naming the commits
  and package versions of the runs behind it (read with ``comment="#"``);
- ``results/REPORT.md``: a verdict on each claim of the papers, with the interval
  that decided it (``passt_lib.study.report``).

Nothing is trained; it takes seconds.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from passt_lib.atomic import atomic_write_text
from passt_lib.bench.table import PAPER_TABLE1
from passt_lib.model import VIT_SIZES
from passt_lib.provenance import REPO_ROOT
from passt_lib.scales import get_scale
from passt_lib.study import style
from passt_lib.study.analysis import (
    METHOD_NAMES,
    c2f_table,
    c2f_verdict,
    learning_curves,
    load_runs,
    patchout_table,
    schedule_used,
)
from passt_lib.study.report import report
from passt_lib.study.speedplot import plot_scaling, plot_speed
from passt_lib.study.stats import MARGIN

PATCHOUT_STUDY, C2F_STUDY, SPEED_STUDY = "patchout", "coarse_to_fine", "speed"
GPU_DIR = REPO_ROOT / "results" / "bench" / "gpu"
PAPER_STEPS_CSV = REPO_ROOT / "results" / "bench" / "coarse_to_fine_paper_steps.csv"
MARKERS = {"none": "o", "frame_shift": "s", "pool": "D", "patchify": "^", "preset": "D",
           "structured": "s", "unstructured": "v"}
VERDICT_FILL = {"reproduced": "full", "inconclusive": "left", "not reproduced": "none"}

__all__ = ["load_runs", "summarize", "render_all", "main"]


def summarize(df: pd.DataFrame, by: list[str], metrics: list[str]) -> pd.DataFrame:
    """Mean, standard deviation (ddof 1; 0 for one seed) and count over seeds per group."""
    if df.empty:
        return pd.DataFrame()
    # a metric that older runs did not record is missing (NaN) there, not an error
    df = df.reindex(columns=[*df.columns, *(m for m in metrics if m not in df.columns)])
    g = df.groupby(by, sort=False, dropna=False)
    out = g[metrics].mean().add_suffix("_mean")
    out = out.join(g[metrics].std(ddof=1).fillna(0.0).add_suffix("_std"))
    out["n_seeds"] = g.size()
    return out.reset_index()


def provenance(df: pd.DataFrame) -> str:
    """One line: the commits (and dirty flags) and package versions of the runs in ``df``."""
    if df.empty:
        return "no runs"
    commits = sorted({f"{str(c)[:10]}{'-dirty' if d else ''}"
                      for c, d in zip(df["commit"], df["dirty"])})
    versions = sorted(set(df["versions"]))
    v = json.loads(versions[0]) if versions else {}
    vs = ", ".join(f"{k} {v[k]}" for k in sorted(v) if v[k])
    more = f" (+{len(versions) - 1} other version sets)" if len(versions) > 1 else ""
    return f"{len(df)} run{'s' if len(df) != 1 else ''}; commits {', '.join(commits)}; {vs}{more}"


def write_table(df: pd.DataFrame, path: Path, source: str) -> Path:
    flat = df.copy()
    for c in flat.columns:  # paired intervals as text
        if flat[c].map(lambda v: hasattr(v, "half_width")).any():
            flat[c] = flat[c].map(lambda v: "" if v is None else str(v))
    body = flat.to_csv(index=False, float_format="%.6g")
    return atomic_write_text(path, f"# source: {source}\n{body}")


# ----------------------------------------------------------------------------- shared pieces
def _baseline_band(ax, mean: float, label: str) -> None:
    """The baseline's mean with the on-par zone (within MARGIN) shaded."""
    ax.axhspan(mean - MARGIN, mean + MARGIN, color="0.85", zorder=0, lw=0,
               label=f"{label} ± {MARGIN} mAP (on par)")
    ax.axhline(mean, color="0.5", lw=0.8, zorder=1)


def _prior_line(ax, prior: float) -> None:
    if prior == prior:  # not NaN
        ax.axhline(prior, color="0.3", lw=0.8, ls=":", label=f"class prior ({prior:.3f})")


def _legend_below(ax, ncol: int = 2) -> None:
    ax.legend(fontsize=6, ncol=ncol, loc="upper center", bbox_to_anchor=(0.5, -0.27),
              frameon=False)


# ----------------------------------------------------------------------------- patchout
def patchout_figure(po: pd.DataFrame, context: str):
    """Eval mAP against the training speed-up over PaSST-B without patchout, one marker per
    setting (mean over seeds, bars: the spread); the baseline as a band."""
    fig, ax = style.figure("column", 3.3)
    base = po[po["is_baseline"]]
    if len(base):
        _baseline_band(ax, float(base["eval_map_mean"].iloc[0]), "no patchout")
    _prior_line(ax, float(po["prior_map_mean"].mean()) if "prior_map_mean" in po else np.nan)
    for i, (_, r) in enumerate(po.iterrows()):
        ax.errorbar(r["speedup_mean"], r["eval_map_mean"], yerr=r["eval_map_std"],
                    marker=MARKERS.get(r["patchout"], "o"), capsize=2, lw=0.8, ls="none",
                    color=f"C{i}", label=f"{r['label']}, n={r['n_seeds']}")
    ax.axvline(1.0, color="0.6", lw=0.6, ls=":")
    ax.set_xlabel("training speed-up over no patchout (x, same seeds)")
    ax.set_ylabel("eval mAP (mean ± sd)")
    ax.set_title("Patchout: accuracy against training speed-up")
    _legend_below(ax, ncol=1)
    style.note(fig, context + "; bars: sd over seeds")
    return fig


# ----------------------------------------------------------------------------- coarse-to-fine
def c2f_figure(c2f: pd.DataFrame, x: str, context: str):
    """Eval mAP against a schedule's training cost relative to fine-only training (PaSST-S
    schedules); the fine-only band; the marker's fill is its verdict."""
    fig, ax = style.figure("column", 3.3)
    rows = c2f[c2f["preset"] == "passt-s"]
    fine = rows[rows["method"] == "none"]
    if len(fine):
        _baseline_band(ax, float(fine["eval_map_mean"].iloc[0]), "fine-only")
    _prior_line(ax, float(rows["prior_map_mean"].mean()) if "prior_map_mean" in rows else np.nan)
    schedules = rows[rows["method"] != "none"]
    # Schedules of one plan share their FLOPs: spread them sideways so that none hides another.
    dodge = 0.008 if x == "flops_rel" else 0.0
    for i, (_, r) in enumerate(schedules.iterrows()):
        v = c2f_verdict(r)
        label = (f"{METHOD_NAMES.get(r['method'], r['method'])}, {r['n_phases']} phases: {v} "
                 f"(n={r['n_seeds']})")
        ax.errorbar(r[f"{x}_mean"] + dodge * (i - (len(schedules) - 1) / 2),
                    r["eval_map_mean"], yerr=r["eval_map_std"],
                    marker=MARKERS.get(r["method"], "o"), fillstyle=VERDICT_FILL[v], capsize=2,
                    lw=0.8, ls="none", color=f"C{i}", label=label)
    ax.axvline(1.0, color="0.6", lw=0.6, ls=":")
    what = "training FLOPs" if x == "flops_rel" else "training wall time"
    ax.set_xlabel(f"{what} relative to fine-only")
    ax.set_ylabel("eval mAP (mean ± sd)")
    ax.set_title(f"Coarse-to-fine: mAP against {what}")
    _legend_below(ax, ncol=1)
    style.note(fig, context + "; costs relative to fine-only training with the same seeds; bars: sd "
               "over seeds; filled: reproduced, half: inconclusive, "
               "open: not reproduced"
               + ("; points spread sideways by 0.008 to stay apart" if dodge else ""))
    return fig


def learning_figure(curves: list[dict], styles: dict, title: str, context: str):
    """Eval mAP against cumulative training wall time and FLOPs, one curve per setting (mean
    over seeds, band: min to max over seeds). ``styles`` maps a curve's key to its (label,
    colour), in the order of the legend: the colours of the setting's other figures."""
    fig, grid = style.figure("page", 3.2, nrows=2, ncols=2, sharey="row",
                             gridspec_kw={"height_ratios": [1, 0.14]})
    axes = grid[0]
    for ax in grid[1]:
        ax.remove()
    legend_ax = fig.add_subplot(grid[0, 0].get_gridspec()[1, :])  # a row under both panels
    legend_ax.axis("off")
    order = {k: i for i, k in enumerate(styles)}
    for c in sorted(curves, key=lambda c: order.get(c["key"], len(order))):
        label, color = styles.get(c["key"], (" ".join(map(str, c["key"])), "0.5"))
        for ax, x, scale in ((axes[0], c["seconds"], 1.0), (axes[1], c["flops"], 1e-12)):
            ax.plot(x * scale, c["map"], marker="o", ms=2.5, color=color,
                    label=f"{label} (n={c['n']})")
            ax.fill_between(x * scale, c["map_low"], c["map_high"], color=color, alpha=0.15,
                            lw=0)
    axes[0].set_xlabel("cumulative training wall time (s)")
    axes[1].set_xlabel("cumulative training TFLOPs (analytic)")
    axes[0].set_ylabel("eval mAP after each epoch")
    axes[0].set_title("against wall time", fontsize=7)
    axes[1].set_title("against FLOPs", fontsize=7)
    fig.suptitle(f"{title} (lines: mean over seeds; bands: min to max)", fontsize=8)
    legend_ax.legend(*axes[0].get_legend_handles_labels(), loc="center", ncols=2, fontsize=6,
                     frameon=False)
    style.note(fig, context)
    return fig


# ----------------------------------------------------------------------------- speed
def speed_figure(table: pd.DataFrame, gpu: pd.DataFrame | None = None):
    """Training speed relative to AST: measured here (bars: min-max over timed steps) next to
    the paper's Table 1, and the H200 measurements when committed."""
    return plot_speed(table, gpu)


def scaling_figure(df: pd.DataFrame):
    return plot_scaling(df)


# ----------------------------------------------------------------------------- all
def _context(runs: pd.DataFrame, what: str) -> str:
    """What a reader needs beside the axes: the models, the scale's size and budget, and where
    the runs trained."""
    env = runs.iloc[0]["_metrics"] if len(runs) else {}
    scale = get_scale(runs.iloc[0]["scale"]) if len(runs) else None
    size = "" if scale is None else (
        f" ({VIT_SIZES[scale.vit_size][0]} wide, depth {scale.depth or VIT_SIZES[scale.vit_size][1]}, "
        f"{scale.epochs} epochs, "
        f"{scale.n_train} train / {scale.n_eval} eval clips)" if scale.n_train else "")
    return (f"{what}; scale {scale.name if scale else '?'}{size}; trained on "
            f"{env.get('device', '?')}, {env.get('precision', '?')}")


def _table1(speed: pd.DataFrame) -> pd.DataFrame | None:
    if speed.empty:
        return None
    last = speed.sort_values("run_dir").iloc[-1]
    path = Path(last["run_dir"]) / "table.csv"
    if not path.exists():
        return None
    t = pd.read_csv(path, comment="#")
    t["paper_map"] = [PAPER_TABLE1.get(p, (np.nan,))[0] for p in t["preset"]]
    return t


def gpu_tables() -> dict[str, pd.DataFrame]:
    """The committed H200 Table 1 measurements (eager and compiled), when present."""
    out = {}
    for kind, name in (("eager", "table_paper_h200.csv"), ("compiled",
                                                            "table_paper_h200_compiled.csv")):
        if (GPU_DIR / name).exists():
            out[kind] = pd.read_csv(GPU_DIR / name, comment="#")
    return out


def _render_patchout(po_runs, fig_dir, tab_dir, made, sources) -> pd.DataFrame:
    if po_runs.empty:
        return pd.DataFrame()
    src = sources["patchout"] = provenance(po_runs)
    po = patchout_table(po_runs)
    made["tables"].append(write_table(po, tab_dir / "patchout.csv", src))
    ctx = _context(po_runs, "patchout settings applied to PaSST-B (PaSST-S: its own)")
    made["figures"].append(style.save(patchout_figure(po, ctx),
                                      fig_dir / "patchout_accuracy_vs_speed", source=src)[0])
    styles = {(r.preset, r.patchout, r.amount): (r.label, f"C{i}")  # as patchout_figure
              for i, r in enumerate(po.itertuples())}
    curves = learning_curves(po_runs, ["preset", "patchout", "amount"])
    if curves:
        made["figures"].append(style.save(learning_figure(
            curves, styles, "Patchout: learning curves", ctx),
            fig_dir / "patchout_learning_curves", source=src)[0])
    return po


def _render_c2f(c2f_runs, fig_dir, tab_dir, made, sources) -> pd.DataFrame:
    if c2f_runs.empty:
        return pd.DataFrame()
    src = sources["coarse_to_fine"] = provenance(c2f_runs)
    c2f = c2f_table(c2f_runs)
    made["tables"].append(write_table(c2f, tab_dir / "coarse_to_fine.csv", src))
    ctx = _context(c2f_runs, "PaSST-S, coarse phases at k=4 (3 phases: k=4, 2), then full resolution")
    for x, stem in (("flops_rel", "c2f_accuracy_vs_flops"), ("time_rel", "c2f_accuracy_vs_time")):
        made["figures"].append(style.save(c2f_figure(c2f, x, ctx), fig_dir / stem,
                                          source=src)[0])
    runs = c2f_runs.assign(schedule_used=c2f_runs["_metrics"].map(schedule_used))
    runs = runs[runs["preset"] == "passt-s"]
    rows = c2f[c2f["preset"] == "passt-s"]
    styles = {(r.method, r.schedule_used): (f"fine-only: {r.schedule_used}", "0.2")
              for r in rows[rows["method"] == "none"].itertuples()}
    styles.update({(r.method, r.schedule_used): (  # the colours of c2f_figure
        f"{METHOD_NAMES.get(r.method, r.method)}: {r.schedule_used}", f"C{i}")
        for i, r in enumerate(rows[rows["method"] != "none"].itertuples())})
    curves = learning_curves(runs, ["method", "schedule_used"])
    if curves:
        made["figures"].append(style.save(learning_figure(
            curves, styles, "Coarse-to-fine (PaSST-S): learning curves", ctx),
            fig_dir / "c2f_learning_curves", source=src)[0])
    return c2f


def _render_speed(speed_runs, fig_dir, tab_dir, made, sources):
    table1 = _table1(speed_runs)
    if table1 is None:
        return None
    src = sources["speed"] = provenance(speed_runs)
    made["tables"].append(write_table(table1, tab_dir / "table1.csv", src))
    made["figures"].append(style.save(speed_figure(table1, gpu_tables().get("eager")),
                                      fig_dir / "table1_speed", source=src)[0])
    scal = Path(speed_runs.sort_values("run_dir").iloc[-1]["run_dir"]) / "scaling.csv"
    if scal.exists():
        sc = pd.read_csv(scal, comment="#")
        made["tables"].append(write_table(sc, tab_dir / "scaling.csv", src))
        made["figures"].append(style.save(scaling_figure(sc), fig_dir / "scaling",
                                          source=src)[0])
    return table1


def render_all(runs: str | Path | None = None, results: str | Path | None = None,
               scale: str = "embedded") -> dict:
    """Render every figure and table and REPORT.md; returns what was written."""
    runs = Path(runs) if runs else REPO_ROOT / "results" / "runs"
    results = Path(results) if results else REPO_ROOT / "results"
    loaded = {s: load_runs(runs, s, scale) for s in (PATCHOUT_STUDY, C2F_STUDY, SPEED_STUDY)}
    if all(df.empty for df in loaded.values()):
        # A fresh clone has the committed figures but no runs: keep them rather than
        # overwrite them with an empty report.
        raise FileNotFoundError(
            f"no finished {scale!r} runs under {runs} (studies {', '.join(loaded)}); run "
            f"`make study` (or `passt-study run studies/NAME.yaml`) first. Nothing under "
            f"{results} was changed.")
    fig_dir, tab_dir = results / "figures", results / "tables"
    fig_dir.mkdir(parents=True, exist_ok=True)
    tab_dir.mkdir(parents=True, exist_ok=True)
    made: dict = {"figures": [], "tables": []}
    sources: dict[str, str] = {}
    po = _render_patchout(loaded[PATCHOUT_STUDY], fig_dir, tab_dir, made, sources)
    c2f = _render_c2f(loaded[C2F_STUDY], fig_dir, tab_dir, made, sources)
    table1 = _render_speed(loaded[SPEED_STUDY], fig_dir, tab_dir, made, sources)
    paper_steps = pd.read_csv(PAPER_STEPS_CSV, comment="#") if PAPER_STEPS_CSV.exists() else None
    made["report"] = atomic_write_text(results / "REPORT.md", report(
        po, c2f, table1, scale, sources, paper_steps=paper_steps, gpu=gpu_tables(),
        figures=[p.stem for p in made["figures"]]))
    made["n_runs"] = sum(len(d) for d in loaded.values())
    return made


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="passt-study figures", description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", default=None, help="runs root (default results/runs)")
    p.add_argument("--results", default=None, help="output root (default results/)")
    p.add_argument("--scale", default="embedded", help="which runs to aggregate")
    args = p.parse_args(argv)
    import matplotlib

    matplotlib.use("agg")
    try:
        made = render_all(args.runs, args.results, args.scale)
    except FileNotFoundError as exc:
        print(f"passt-study figures: {exc}", file=sys.stderr)
        return 1
    for f in [*made["figures"], *made["tables"], made["report"]]:
        print(f"wrote {f}")
    print(f"{made['n_runs']} runs aggregated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
