"""``passt-study figures``: every figure, table and the report, re-rendered from stored runs.

Reads the finished runs under ``results/runs/<study>/<hash>/`` (a run counts
when its ``metrics.json`` carries the hash in its ``params.json``), averages
over seeds (mean and standard deviation, n), and writes

- ``results/figures/*.png`` and ``*.pdf`` (byte-stable, the source commits in
  their metadata);
- ``results/tables/*.csv``, each starting with a ``#`` line naming the commits
  and package versions of the runs behind it (read with ``comment="#"``);
- ``results/REPORT.md``: what the runs say about each claim of the papers,
  next to the papers' numbers.

Nothing is trained; it takes seconds.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from passt_lib.atomic import atomic_write_text, read_json
from passt_lib.bench.table import PAPER_TABLE1
from passt_lib.study import style
from passt_lib.study.env import REPO_ROOT
from passt_lib.study.rundir import ENV_FILE, METRICS_FILE, PARAMS_FILE

PATCHOUT_STUDY, C2F_STUDY, SPEED_STUDY = "patchout", "coarse_to_fine", "speed"
PATCHOUT_ORDER = ("none", "time", "frequency", "structured", "unstructured")
C2F_ORDER = ("none", "frame_shift", "pool", "patchify")
MARKERS = {"none": "o", "time": "s", "frequency": "^", "structured": "D", "unstructured": "v",
           "frame_shift": "s", "pool": "D", "patchify": "^"}



# ----------------------------------------------------------------------------- loading


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
    body = df.to_csv(index=False, float_format="%.6g")
    return atomic_write_text(path, f"# source: {source}\n{body}")


# ----------------------------------------------------------------------------- figures


def _order(values, order) -> list:
    return [v for v in order if v in set(values)] + sorted(set(values) - set(order))


def patchout_figure(s: pd.DataFrame):
    """Eval mAP against training throughput, one line per patchout type through its amounts.

    The amount is shown by the marker (open: the smallest amount, filled: the others),
    not by text labels, which collide where types reach the same speed.
    """
    fig, ax = style.figure("column", 3.1)
    amounts = sorted(a for a in s["amount"].unique() if a > 0)
    handles = []
    for i, kind in enumerate(_order(s["patchout"], PATCHOUT_ORDER)):
        r = s[s["patchout"] == kind].sort_values("amount")
        color = f"C{i}"
        ax.plot(r["samples_per_s_mean"], r["eval_map_mean"], lw=0.8, color=color)
        for _, row in r.iterrows():
            small = row["amount"] == (amounts[0] if amounts else 0.0)
            ax.errorbar(row["samples_per_s_mean"], row["eval_map_mean"],
                        xerr=row["samples_per_s_std"], yerr=row["eval_map_std"],
                        marker=MARKERS.get(kind, "o"), capsize=2, lw=0.8, color=color,
                        fillstyle="none" if small and kind != "none" else "full")
        handles.append(_legend_handle(kind, color))
    ax.set_xlabel("training throughput (clips/s)")
    ax.set_ylabel("eval mAP (mean ± sd over seeds)")
    ax.set_title("patchout: accuracy vs training speed")
    title = (f"amount: open {amounts[0]:g}, filled {', '.join(f'{a:g}' for a in amounts[1:])}"
             if len(amounts) > 1 else None)
    _legend_below(ax, handles, title)
    return fig


def _legend_handle(label: str, color: str, fill: str = "full"):
    """A marker-and-line legend entry, without the error bars that would hide the marker."""
    from matplotlib.lines import Line2D

    return Line2D([], [], color=color, marker=MARKERS.get(label.split(",")[0], "o"), lw=0.8,
                  fillstyle=fill, label=label)


def _legend_below(ax, handles, title=None, ncol: int = 3) -> None:
    """The legend under the axes, clear of the data."""
    ax.legend(handles=handles, fontsize=6, title=title, title_fontsize=6, ncol=ncol,
              loc="upper center", bbox_to_anchor=(0.5, -0.22), frameon=False)


def c2f_figure(s: pd.DataFrame, x: str = "flops_rel"):
    """Eval mAP against training cost relative to fine-only training (filled: 2 phases)."""
    fig, ax = style.figure("column", 3.1)
    colors = {m: f"C{i}" for i, m in enumerate(C2F_ORDER)}
    handles = []
    for _, r in s.iterrows():
        method, n_phases = r["method"], r["schedule_used"].count(",") + 1
        label = "fine-only" if method == "none" else f"{method}, {n_phases} phases"
        fill = "none" if n_phases > 2 else "full"
        # Methods with the same schedule can cost the same FLOPs: dodge them sideways so
        # that none hides another (by 0.006, well inside the x error bars' scale).
        dodge = 0.006 * (C2F_ORDER.index(method) - 2) if method in C2F_ORDER[1:] else 0.0
        ax.errorbar(r[f"{x}_mean"] + dodge, r["eval_map_mean"], xerr=r[f"{x}_std"],
                    yerr=r["eval_map_std"], marker=MARKERS.get(method, "o"), ls="none",
                    capsize=2, color=colors.get(method, "k"), fillstyle=fill)
        handles.append(_legend_handle(label, colors.get(method, "k"), fill))
        handles[-1].set_linestyle("none")
    ax.axvline(1.0, color="gray", lw=0.6, ls=":")
    ax.set_xlabel("training FLOPs relative to fine-only" if x == "flops_rel"
                  else "training time relative to fine-only")
    ax.set_ylabel("eval mAP (mean ± sd over seeds)")
    ax.set_title("coarse-to-fine: accuracy vs training cost")
    _legend_below(ax, handles, ncol=2)
    return fig


def speed_figure(table: pd.DataFrame):
    from passt_lib.study.experiments import plot_speed

    return plot_speed(table)


def scaling_figure(df: pd.DataFrame):
    """Training step time and memory per sample against clip length, log-log, per model."""
    fig, axes = style.figure("page", 2.4, ncols=2)
    for name, r in df.groupby("model", sort=False):
        r = r.sort_values("seconds")
        axes[0].plot(r["seconds"], r["step_s"], "o-", label=str(name))
        axes[1].plot(r["seconds"], r["mem_mib_per_sample"], "o-", label=str(name))
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    xs = sorted(df["seconds"].unique())
    for ax, label in zip(axes, ("training step (s)", "memory per sample (MiB)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(xs, [f"{x:g}" for x in xs])
        ax.xaxis.set_minor_formatter(NullFormatter())
        # 1-2-5 ticks, so that a range narrower than a decade still gets labels
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("clip length (s)")
        ax.set_ylabel(label)
        # linear and quadratic guides through the first model's longest clip, where fixed
        # per-step costs matter least
        first_model = df[df["model"] == df["model"].iloc[0]]
        last = first_model.loc[first_model["seconds"].idxmax()]
        y1 = last["step_s" if ax is axes[0] else "mem_mib_per_sample"]
        x0, x1 = xs[0], last["seconds"]
        ylim = ax.get_ylim()  # the guides must not stretch the axes
        for power, ls in ((1, "--"), (2, ":")):
            ax.plot([x0, x1], [y1 * (x0 / x1) ** power, y1], color="gray", lw=0.6, ls=ls,
                    label=f"∝ length{'²' if power == 2 else ''}")
        ax.set_ylim(ylim)
    fig.suptitle("training cost against clip length (log-log)", fontsize=8)
    axes[0].legend(fontsize=6)
    return fig


# ----------------------------------------------------------------------------- report


def _fmt(v, spec=".3f") -> str:
    return "-" if v is None or (isinstance(v, float) and np.isnan(v)) else format(v, spec)


def _cell(v, column: str) -> str:
    """A Table 1 cell: counts as integers, mAP with 3 decimals, other numbers with 2."""
    if not isinstance(v, float):
        return str(v)
    return _fmt(v, ",.0f" if column.endswith("seq_len") else
                ".3f" if column == "paper_map" else ".2f")


def _pm(row, key, spec=".3f") -> str:
    return f"{_fmt(row[f'{key}_mean'], spec)} ± {_fmt(row[f'{key}_std'], spec)}"


def report(po: pd.DataFrame, c2f: pd.DataFrame, table1: pd.DataFrame | None, scale: str,
           sources: dict[str, str], c2f_presets: tuple[str, ...] = ()) -> str:
    lines = [
        "# What this study finds",
        "",
        f"Written by `passt-study figures` from the stored runs at scale `{scale}`; every number "
        "is a mean ± standard deviation over seeds (n given). The smoke and embedded scales train "
        "tiny transformers for seconds on a few hundred synthetic-mixture clips on a CPU: they can show "
        "direction and relative cost, not AudioSet accuracy. Where they cannot show a claim, the "
        "text says so.",
        "",
        "Sources: " + "; ".join(f"{k}: {v}" for k, v in sources.items()),
        "",
        "## Claim 1 (PaSST): patchout makes training much faster",
        "",
        "Paper (Table 1, Titan RTX, 128 x 998 input): PaSST-S trains 3.8x faster than PaSST-B "
        "(474 vs 1,190 tokens), PaSST-U 1.9x (790 tokens).",
        "",
    ]
    if not po.empty:
        base = po[po["patchout"] == "none"]
        b = float(base["samples_per_s_mean"].iloc[0]) if len(base) else np.nan
        lines += ["| patchout | dropped | tokens (train) | clips/s | speed-up | step memory "
                  "(MiB/clip) | eval mAP | n |",
                  "|---|---|---|---|---|---|---|---|"]
        for _, r in po.iterrows():
            lines.append(f"| {r['patchout']} | {r['dropped_fraction_mean']:.0%} | "
                         f"{r['tokens_train_mean']:.0f} | {_pm(r, 'samples_per_s', '.1f')} | "
                         f"{_fmt(r['samples_per_s_mean'] / b, '.2f')}x | "
                         f"{_fmt(r['step_memory_mib_per_sample_mean'], '.2f')} | "
                         f"{_pm(r, 'eval_map')} | {r['n_seeds']} |")
        best = po.loc[po["samples_per_s_mean"].idxmax()]
        up = best["samples_per_s_mean"] / b
        s_rows = po[po["patchout"] == "structured"]
        u_rows = po[po["patchout"] == "unstructured"]
        lines += ["", f"Here: the fastest setting ({best['patchout']}, "
                  f"{best['dropped_fraction_mean']:.0%} of the patches dropped) trains "
                  f"{_fmt(up, '.2f')}x faster than no patchout."]
        if len(s_rows) and len(u_rows):
            lines[-1] += (f" At the largest amount, structured patchout gives "
                          f"{_fmt(s_rows['samples_per_s_mean'].iloc[-1] / b, '.2f')}x and "
                          f"unstructured {_fmt(u_rows['samples_per_s_mean'].iloc[-1] / b, '.2f')}x.")
        if up < 3.8:
            lines += ["", "The speed-up is smaller than the paper's 3.8x: at this scale the "
                      "sequences are short (the token column), so attention, the cost that grows "
                      "with the square of the length, is a small share of each step, and fixed "
                      "costs (the mel front-end, the optimizer step, the loader) weigh more. The "
                      "direction of the claim holds where the speed-up column exceeds 1.00x."]
        lines.append("")
    else:
        lines += ["No patchout runs found.", ""]
    lines += ["## Claim 2 (PaSST): patchout keeps or improves accuracy",
              "",
              "Paper: PaSST-S .471 mAP vs PaSST-B .462 (no patchout) and PaSST-U .466; structured "
              "patchout is the better regulariser.", ""]
    if not po.empty and len(po[po["patchout"] == "none"]):
        base_map = float(po[po["patchout"] == "none"]["eval_map_mean"].iloc[0])
        base_sd = float(po[po["patchout"] == "none"]["eval_map_std"].iloc[0])
        better = po[(po["patchout"] != "none") & (po["eval_map_mean"] >= base_map - base_sd)]
        lines += [f"Here: no patchout reaches {base_map:.3f} ± {base_sd:.3f} mAP; "
                  f"{len(better)} of {int((po['patchout'] != 'none').sum())} patchout settings are "
                  "within one standard deviation of it or above "
                  f"({', '.join(f'{r.patchout} {r.dropped_fraction_mean:.0%} dropped' for r in better.itertuples()) or 'none'}). "
                  "With a few seeds and seconds of training, differences smaller than the spread "
                  "are not evidence either way; the paper's 0.9-point gain needs AudioSet-scale "
                  "training to show.", ""]
    lines += ["## Claim 3 (coarse-to-fine): coarse phases cut training cost at on-par accuracy",
              "",
              "Paper (Feng et al. 2024): 18-58% fewer FLOPs / less training time at on-par or "
              "better accuracy (AudioSet, VGGSound, VoxCeleb, Kinetics-Sounds).", ""]
    if not c2f.empty:
        lines += ["| method | schedule | FLOPs vs fine-only | time vs fine-only | eval mAP | n |",
                  "|---|---|---|---|---|---|"]
        for _, r in c2f.iterrows():
            lines.append(f"| {r['method']} | {r['schedule_used']} | {_pm(r, 'flops_rel', '.2f')} | "
                         f"{_pm(r, 'time_rel', '.2f')} | {_pm(r, 'eval_map')} | {r['n_seeds']} |")
        fine = c2f[c2f["method"] == "none"]
        if len(fine):
            fm, fs = float(fine["eval_map_mean"].iloc[0]), float(fine["eval_map_std"].iloc[0])
            sched = c2f[c2f["method"] != "none"]
            ok = sched[sched["eval_map_mean"] >= fm - max(fs, 1e-9)]
            saved_f, saved_t = 1 - sched["flops_rel_mean"], 1 - sched["time_rel_mean"]
            lines += ["", f"Here: the schedules use {saved_f.min():.0%} to {saved_f.max():.0%} "
                      f"fewer training FLOPs than fine-only training (analytic, passt_lib.flops) "
                      f"and take {sched['time_rel_mean'].min():.2f}x to {sched['time_rel_mean'].max():.2f}x "
                      "its training wall time; "
                      f"{len(ok)} of {len(sched)} reach fine-only accuracy ({fm:.3f} ± {fs:.3f}) "
                      "within one standard deviation or better."]
            if (saved_t < saved_f - 0.05).any():
                lines[-1] += (" Wall time (training epochs only, evaluation excluded) saves "
                              "less than FLOPs: the mel front-end (at full resolution for "
                              "pooling and patchify; frame shift computes fewer frames), the "
                              "optimiser step and per-step overheads do not shrink with the "
                              "token count, and at this scale they are a large share of a step.")
            if fs == 0 and int(fine["n_seeds"].iloc[0]) < 2:
                lines[-1] += " With one seed there is no spread to judge accuracy differences by."
            lines.append("")
    else:
        lines += ["No coarse-to-fine runs found.", ""]
    lines += ["## Table 1 replica (speed, memory, sequence length)", ""]
    if table1 is not None and not table1.empty:
        cols = ["model", "seq_len", "paper_seq_len", "train_x_ast", "paper_x_ast",
                "mem_mib_per_sample", "paper_gb_per_sample", "paper_map"]
        cols = [c for c in cols if c in table1]
        lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        for _, r in table1.iterrows():
            lines.append("| " + " | ".join(_cell(r[c], c) for c in cols) + " |")
        lines += ["", "Measured on this machine at the study's scale (tiny width, short clips); "
                  "the paper's columns are AudioSet-size models on a Titan RTX. The ranking of "
                  "speeds, not their size, is the comparable part.", ""]
    else:
        lines += ["No speed run found (run `passt-study run studies/speed.yaml`).", ""]
    lines += ["## Not shown at this scale", "",
              "- AudioSet mAP values themselves (.459-.471): needs `scale=paper` on GPUs.",
              "- Patchout and coarse-to-fine combined is open ground in both papers. "
              + (f"Claim 3's runs train {', '.join(c2f_presets)}; with a patchout preset their "
                 "coarse phases keep patchout, rescaled to each phase's grid, so the table above "
                 "is that combination at this scale. "
                 if c2f_presets else "")
              + "The `20_coarse_to_fine` notebook accepts any preset.", ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- all


def _c2f_summary(df: pd.DataFrame) -> pd.DataFrame:
    if df.empty:
        return pd.DataFrame()
    df = df.copy()
    # metrics.json holds the compact schedule that ran ("pool:4x4,full:4"); params say "2-phase".
    df["schedule_used"] = df["_metrics"].map(lambda m: m.get("schedule") or "")
    fine = df[df["method"] == "none"].groupby("seed")[["train_flops", "train_seconds"]].mean()
    if fine.empty:
        fine_all = df[["train_flops", "train_seconds"]].max()
        ref_f, ref_t = fine_all["train_flops"], fine_all["train_seconds"]
        df["flops_rel"] = df["train_flops"] / ref_f
        df["time_rel"] = df["train_seconds"] / ref_t
    else:
        ff = df["seed"].map(fine["train_flops"]).fillna(fine["train_flops"].mean())
        ft = df["seed"].map(fine["train_seconds"]).fillna(fine["train_seconds"].mean())
        df["flops_rel"] = df["train_flops"] / ff
        df["time_rel"] = df["train_seconds"] / ft
    s = summarize(df, ["method", "schedule_used"],
                  ["eval_map", "train_flops", "train_seconds", "flops_rel", "time_rel"])
    s["_o"] = s["method"].map({k: i for i, k in enumerate(C2F_ORDER)})
    s["_n"] = s["schedule_used"].str.count(",")
    return s.sort_values(["_o", "_n"]).drop(columns=["_o", "_n"]).reset_index(drop=True)


def _table1(speed: pd.DataFrame, po_runs: pd.DataFrame) -> pd.DataFrame | None:
    if speed.empty:
        return None
    last = speed.sort_values("run_dir").iloc[-1]
    path = Path(last["run_dir"]) / "table.csv"
    if not path.exists():
        return None
    t = pd.read_csv(path, comment="#")
    t["paper_map"] = [PAPER_TABLE1.get(p, (np.nan,))[0] for p in t["preset"]]
    return t


def render_all(runs: str | Path | None = None, results: str | Path | None = None,
               scale: str = "embedded") -> dict:
    """Render every figure and table and REPORT.md; returns what was written."""
    runs = Path(runs) if runs else REPO_ROOT / "results" / "runs"
    results = Path(results) if results else REPO_ROOT / "results"
    fig_dir, tab_dir = results / "figures", results / "tables"
    po_runs = load_runs(runs, PATCHOUT_STUDY, scale)
    c2f_runs = load_runs(runs, C2F_STUDY, scale)
    speed_runs = load_runs(runs, SPEED_STUDY, scale)
    if po_runs.empty and c2f_runs.empty and speed_runs.empty:
        # A fresh clone has the committed figures but no runs: keep them rather than
        # overwrite them with an empty report.
        raise FileNotFoundError(
            f"no finished {scale!r} runs under {runs} (studies {PATCHOUT_STUDY}, {C2F_STUDY}, "
            f"{SPEED_STUDY}); run `make study` (or `passt-study run studies/NAME.yaml`) first. "
            f"Nothing under {results} was changed.")
    fig_dir.mkdir(parents=True, exist_ok=True)
    tab_dir.mkdir(parents=True, exist_ok=True)
    figures, tables = [], []
    sources = {}

    po = pd.DataFrame()
    if not po_runs.empty:
        src = sources["patchout"] = provenance(po_runs)
        po = summarize(po_runs, ["patchout", "amount"],
                       ["eval_map", "samples_per_s", "step_memory_mib_per_sample", "tokens_train",
                        "dropped_fraction", "train_seconds"])
        po["_o"] = po["patchout"].map({k: i for i, k in enumerate(PATCHOUT_ORDER)})
        po = po.sort_values(["_o", "amount"]).drop(columns="_o").reset_index(drop=True)
        tables.append(write_table(po, tab_dir / "patchout.csv", src))
        figures.append(style.save(patchout_figure(po), fig_dir / "patchout_accuracy_vs_speed",
                                  source=src)[0])
    c2f = _c2f_summary(c2f_runs)
    if not c2f.empty:
        src = sources["coarse_to_fine"] = provenance(c2f_runs)
        tables.append(write_table(c2f, tab_dir / "coarse_to_fine.csv", src))
        figures.append(style.save(c2f_figure(c2f), fig_dir / "c2f_accuracy_vs_flops",
                                  source=src)[0])
        figures.append(style.save(c2f_figure(c2f, "time_rel"), fig_dir / "c2f_accuracy_vs_time",
                                  source=src)[0])
    table1 = _table1(speed_runs, po_runs)
    if table1 is not None:
        src = sources["speed"] = provenance(speed_runs)
        tables.append(write_table(table1, tab_dir / "table1.csv", src))
        figures.append(style.save(speed_figure(table1), fig_dir / "table1_speed", source=src)[0])
        scal = Path(speed_runs.sort_values("run_dir").iloc[-1]["run_dir"]) / "scaling.csv"
        if scal.exists():
            sc = pd.read_csv(scal, comment="#")
            tables.append(write_table(sc, tab_dir / "scaling.csv", src))
            figures.append(style.save(scaling_figure(sc), fig_dir / "scaling", source=src)[0])
    rep = atomic_write_text(results / "REPORT.md", report(
        po, c2f, table1, scale, sources,
        c2f_presets=tuple(sorted(c2f_runs["preset"].unique())) if "preset" in c2f_runs else ()))
    n = sum(len(d) for d in (po_runs, c2f_runs, speed_runs))
    return {"figures": figures, "tables": tables, "report": rep, "n_runs": n}


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
