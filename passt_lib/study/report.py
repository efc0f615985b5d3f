"""``results/REPORT.md``: a verdict on each claim of the two papers, with the interval behind it.

Every accuracy statement is a paired comparison over seeds (``passt_lib.study.stats``); the
rule that turns an interval into "reproduced", "not reproduced" or "inconclusive at this
scale" is written into the report itself. Each section is one function of the tables that
``passt_lib.study.analysis`` computes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from passt_lib.study.analysis import METHOD_NAMES, accuracy_verdict, c2f_verdict
from passt_lib.study.stats import MARGIN, Paired, seeds_for_half_width, verdict


def _fmt(v, spec=".3f") -> str:
    return "-" if v is None or (isinstance(v, float) and np.isnan(v)) else format(v, spec)


def _pm(row, key, spec=".3f") -> str:
    return f"{_fmt(row[f'{key}_mean'], spec)} ± {_fmt(row[f'{key}_std'], spec)}"


def _ci(p: Paired | None, spec="+.3f") -> str:
    if not isinstance(p, Paired):  # None, or NaN where a table had no interval
        return "-"
    return f"{p.mean:{spec}} [{p.low:{spec}}, {p.high:{spec}}]"


def report(po: pd.DataFrame, c2f: pd.DataFrame, table1: pd.DataFrame | None, scale: str,
           sources: dict[str, str], *, paper_steps: pd.DataFrame | None = None,
           gpu: dict | None = None, figures: list[str] = ()) -> str:
    """The whole report: method, the three claims, the combination, Table 1, the GPU."""
    sections = [
        _header(scale, sources),
        _claim_speed(po, gpu or {}),
        _claim_accuracy(po),
        _claim_c2f(c2f, figures),
        _paper_scale_projection(paper_steps, c2f),
        _combination(po, c2f),
        _table1_section(table1),
        _gpu_section(gpu or {}),
        _not_shown(),
    ]
    return "\n".join(line for s in sections for line in s)


def _header(scale: str, sources: dict[str, str]) -> list[str]:
    return [
        "# What this study finds", "",
        f"Written by `passt-study figures` from the stored runs at scale `{scale}`. The small "
        "scales train tiny transformers (width 192, depth 4) for seconds on a few hundred "
        "clips of the embedded dataset on a CPU: they decide direction and relative cost, not "
        "AudioSet accuracy, and the report says where they cannot decide a claim.", "",
        "**How claims are decided.** Every setting is trained with the same seeds as its "
        "baseline (same initialisation, same data order), and compared with it seed by seed: "
        "the mean of the per-seed differences with a 95% Student t interval over seeds, "
        "mean ± t(0.975, n-1) · sd / √n. Accuracy claims (\"on par or better\") are "
        f"**reproduced** when the whole mAP interval lies above -{MARGIN} (no loss larger than "
        f"{MARGIN} mAP), **not reproduced** when it lies below -{MARGIN}, and **inconclusive at "
        "this scale** when it straddles that line. Cost claims are reproduced when the "
        "interval of the saving lies above 0. Rows with 3 seeds are exploratory.", "",
        "Sources: " + "; ".join(f"{k}: {v}" for k, v in sources.items()), "",
    ]


def _x_ast(table: pd.DataFrame | None, preset: str) -> float | None:
    """``preset``'s training speed relative to AST in a Table 1 CSV (None where absent)."""
    if table is None:
        return None
    row = table[table["preset"] == preset]
    return float(row["train_x_ast"].iloc[0]) if len(row) else None


def _gpu_speedup(gpu: dict) -> str:
    """ "on an H200 at the paper's size the speed-up is 2.4x (eager) and 2.6x (compiled)",
    read from the committed GPU tables; empty without them."""
    eager, comp = _x_ast(gpu.get("eager"), "passt-s"), _x_ast(gpu.get("compiled"), "passt-s")
    if eager is None:
        return ""
    device = gpu["eager"]["device"].iloc[0].removeprefix("NVIDIA ")
    compiled = "" if comp is None else f" and {comp:.1f}x (compiled)"
    return (f"; on an {device} at the paper's size the speed-up is {eager:.1f}x (eager)"
            f"{compiled}, see the GPU section")


def _claim_speed(po: pd.DataFrame, gpu: dict) -> list[str]:
    lines = ["## Claim 1 (PaSST): patchout makes training much faster", "",
             "Paper (Table 1, Titan RTX, 128 x 998 input): PaSST-S trains 3.8x faster than "
             "PaSST-B (474 vs 1,190 tokens), PaSST-U 1.9x (790 tokens).", ""]
    if po.empty:
        return lines + ["No patchout runs found.", ""]
    lines += ["| setting | tokens (train) | clips/s | speed-up [95% CI] | step memory (MiB/clip) "
              "| n |", "|---|---|---|---|---|---|"]
    for _, r in po.iterrows():
        sp = r["speedup_diff"]
        ci = (f"{1 + sp.mean:.2f}x [{1 + sp.low:.2f}, {1 + sp.high:.2f}]" if sp is not None
              else "1.00x (baseline)")
        lines.append(f"| {r['label']} | {r['tokens_train_mean']:.0f} | "
                     f"{_pm(r, 'samples_per_s', '.1f')} | {ci} | "
                     f"{_fmt(r['step_memory_mib_per_sample_mean'], '.2f')} | {r['n_seeds']} |")
    s = po[po["patchout"] == "preset"]
    if len(s):
        r = s.iloc[0]
        v = verdict(r["speedup_diff"], "saving")
        lines += ["", f"**Verdict: {v}.** PaSST-S trains {r['speedup_mean']:.2f}x as "
                  f"fast as PaSST-B here (95% CI {_ci(r['speedup_diff'], '+.2f')} on the "
                  "speed-up minus 1), against 3.8x in the paper. At this scale the sequences are "
                  "short (the token column), so attention, the cost that grows with the square "
                  "of the length, is a small share of a step, and the fixed costs (optimiser, "
                  f"patch embedding, head) weigh more{_gpu_speedup(gpu)}."]
    return lines + [""]


def _claim_accuracy(po: pd.DataFrame) -> list[str]:
    lines = ["## Claim 2 (PaSST): patchout keeps or improves accuracy", "",
             "Paper: PaSST-S .471 mAP vs PaSST-B .462 (no patchout) and PaSST-U .466; "
             "structured patchout is the better regulariser.", ""]
    if po.empty:
        return lines + ["No patchout runs found.", ""]
    lines += ["| setting | dropped | eval mAP | vs PaSST-B [95% CI] | verdict | "
              "vs PaSST-B at equal FLOPs [95% CI] | n |", "|---|---|---|---|---|---|---|"]
    for _, r in po.iterrows():
        v = "baseline" if r["is_baseline"] else accuracy_verdict(r["map_diff"])
        lines.append(f"| {r['label']} | {r['dropped_fraction_mean']:.0%} | "
                     f"{_pm(r, 'eval_map')} | {_ci(r['map_diff'])} | {v} | "
                     f"{_ci(r.get('map_equal_flops'))} | {r['n_seeds']} |")
    prior = po["prior_map_mean"].mean() if "prior_map_mean" in po else np.nan
    s = po[po["patchout"] == "preset"]
    if len(s):
        d = s.iloc[0]["map_diff"]
        lines += ["", f"**Verdict (PaSST-S vs PaSST-B): {accuracy_verdict(d)}**, decided by "
                  f"the paired interval {_ci(d)} (half-width {_fmt(getattr(d, 'half_width', None))}"
                  f", n={getattr(d, 'n', 0)}{_seeds_needed(s)}). The class prior scores {_fmt(prior)} mAP. At this "
                  "budget (6 epochs from scratch) dropping most patches also drops most of the "
                  "gradient signal per clip; the paper's gain comes after 130 AudioSet epochs "
                  "from ImageNet weights, where patchout regularises.", "",
                  "The paper compares equal epochs. The last column asks what a fixed budget "
                  "buys instead: each setting's final mAP against PaSST-B's after the same "
                  "cumulative training FLOPs, seed by seed (interpolated between PaSST-B's "
                  f"epochs). PaSST-S: {_ci(s.iloc[0].get('map_equal_flops'))}, "
                  f"{_budget_words(s.iloc[0].get('map_equal_flops'))} The learning-curve "
                  "figure shows the same against wall time."]
    return lines + [""]


def _seeds_needed(rows: pd.DataFrame, target: float = MARGIN) -> str:
    """How many seeds a half-width of ``target`` would take at the measured spread of the
    per-seed differences (the largest among ``rows``)."""
    sds = [r["map_diff"].sd for _, r in rows.iterrows() if isinstance(r["map_diff"], Paired)]
    if not sds:
        return ""
    sd = max(sds)
    n = seeds_for_half_width(sd, target)
    return (f"; at the measured spread of the per-seed differences (sd up to {sd:.3f}) a "
            f"half-width of {target} would take about {n} seeds") if n else ""


def _budget_words(p) -> str:
    if not isinstance(p, Paired):
        return "not measurable here (no per-epoch histories)."
    if p.low > 0:
        return "ahead of PaSST-B for the same compute: at this scale patchout buys accuracy per FLOP."
    if p.high < 0:
        return "behind PaSST-B even for the same compute."
    return "not distinguishable from PaSST-B for the same compute."


def _claim_c2f(c2f: pd.DataFrame, figures) -> list[str]:
    lines = ["## Claim 3 (coarse-to-fine): coarse phases cut training cost at on-par accuracy",
             "", "Paper (Feng et al. 2024): 18-58% less FLOPs / training time at on-par or "
             "better accuracy (AudioSet, VGGSound, VoxCeleb, Kinetics-Sounds).", ""]
    if c2f.empty:
        return lines + ["No coarse-to-fine runs found.", ""]
    lines += ["| preset | schedule | FLOPs saved | time saved [95% CI] | eval mAP | "
              "mAP vs fine-only [95% CI] | verdict | vs fine-only at equal FLOPs [95% CI] | n |",
              "|---|---|---|---|---|---|---|---|---|"]
    for _, r in c2f.iterrows():
        fine = r["method"] == "none"
        lines.append(
            f"| {r['preset']} | {METHOD_NAMES.get(r['method'], r['method'])}: "
            f"{r['schedule_used']} | {_fmt(1 - r['flops_rel_mean'], '.0%')} | "
            f"{'-' if fine else _ci(r['time_saving'], '.0%')} | {_pm(r, 'eval_map')} | "
            f"{_ci(r['map_diff'])} | {'baseline' if fine else c2f_verdict(r)} | "
            f"{_ci(r.get('map_equal_flops'))} | {r['n_seeds']} |")
    two = c2f[(c2f["preset"] == "passt-s") & (c2f["n_phases"] == 2)]
    if len(two):
        worst = max((r["map_diff"].half_width for _, r in two.iterrows()
                     if r["map_diff"] is not None), default=np.nan)
        lines += ["", "**Verdicts (2-phase schedules vs fine-only PaSST-S):** " + "; ".join(
            f"{METHOD_NAMES[r['method']]} {c2f_verdict(r)}" for _, r in two.iterrows())
            + f". Widest mAP interval half-width: {_fmt(worst)}{_seeds_needed(two)}. A "
            "schedule reproduces the claim when its time saving is above 0 and its mAP interval "
            f"above -{MARGIN}. Wall time counts the training epochs only (evaluation excluded); "
            "runs train two at a time, so it also carries the load beside them (see the "
            "paper-scale section). The last column compares a schedule's final mAP with "
            "fine-only training's after the same cumulative training FLOPs, seed by seed: what "
            "the same budget buys."]
    if "c2f_learning_curves" in figures:
        lines += ["", "Learning curves (eval mAP against cumulative training wall time and "
                  "FLOPs, mean over seeds, band: min to max): "
                  "`results/figures/c2f_learning_curves.png`, "
                  "`results/figures/patchout_learning_curves.png`."]
    return lines + [""]


def _paper_scale_projection(steps: pd.DataFrame | None, c2f: pd.DataFrame) -> list[str]:
    lines = ["## Coarse-to-fine savings at the paper scale", ""]
    if steps is None:
        return lines + ["No paper-scale step timing committed (`passt-study bench "
                        "coarse-to-fine --scale paper --timing-only`).", ""]
    s = steps[steps["kind"] == "step"]
    sched = steps[steps["kind"] == "schedule"]
    env = steps.iloc[0]
    lines += [f"One training step of PaSST-S at 128 x 998, base width, on "
              f"{env.get('device', '?')} ({env.get('precision', '?')}, batch "
              f"{env.get('batch', '?')}), timed interleaved for every resolution the standard "
              "schedules use (`results/bench/coarse_to_fine_paper_steps.csv`):", "",
              "| resolution | tokens (train) | step (s) | GFLOPs/clip |", "|---|---|---|---|"]
    order = {"full": 0, "frame_shift": 1, "pool": 2, "patchify": 3}
    s = s.assign(o=s["method"].map(order).fillna(9), k=-s["factor"].astype(int)).sort_values(
        ["o", "k"])
    for _, r in s.iterrows():
        what = ("full resolution" if r["method"] == "full" else
                f"{METHOD_NAMES.get(r['method'], r['method'])}, k={int(r['factor'])}")
        lines.append(f"| {what} | {int(r['tokens'])} | "
                     f"{r['step_seconds']:.3f} | {r['train_gflops_per_sample']:.1f} |")
    lines += ["", "| schedule | FLOPs saved | wall time saved (projected) | at the embedded "
              "scale (measured) |", "|---|---|---|---|"]
    # The embedded study runs the same plans (method, number of phases) over 6 epochs.
    emb = {(r["method"], int(r["n_phases"])): r for _, r in c2f.iterrows()
           if r["preset"] == "passt-s"} if len(c2f) else {}
    for _, r in sched.iterrows():
        method = r["schedule"].split(":")[0]
        e = emb.get((method, int(r["n_phases"])) if method != "full" else ("none", 1))
        here = "-" if e is None or method == "full" else (
            f"{_fmt(1 - e['time_rel_mean'], '.0%')} (`{e['schedule_used']}`)")
        lines.append(f"| `{r['schedule']}` | {r['flop_saving']:.0%} | "
                     f"{r['projected_time_saving']:.0%} | {here} |")
    lines += ["", "The paper's 18-58% are full-size models on GPUs, where a step's time follows "
              "its matmuls: compare them with the paper-scale projection, which is timed "
              "interleaved on an otherwise idle machine. The embedded measurement is the study's "
              "wall time: its runs train two at a time on two cores, so a run's time also "
              "depends on the run beside it and on any other load on the machine, and per-step "
              "costs that do not shrink with the tokens (the optimiser, the per-operation "
              "overhead of a 192-wide model, the mel front-end, which pooling and patchify still "
              "compute at full resolution) keep it below the FLOP saving."]
    return lines + [""]


def _combination(po: pd.DataFrame, c2f: pd.DataFrame) -> list[str]:
    """Patchout alone, coarse-to-fine alone and both, against PaSST-B fine-only."""
    lines = ["## Patchout and coarse-to-fine together", "",
             "Neither paper combines them. Against PaSST-B trained fine-only (same seeds):", ""]
    if c2f.empty:
        return lines + ["No coarse-to-fine runs found.", ""]
    cells = {(r["preset"], r["method"], r["n_phases"]): r for _, r in c2f.iterrows()}
    base = cells.get(("passt-b", "none", 1))
    if base is None:
        return lines + ["The PaSST-B fine-only runs are missing.", ""]
    lines += ["| training | eval mAP | time vs PaSST-B fine-only | FLOPs vs PaSST-B fine-only "
              "| n |", "|---|---|---|---|---|"]
    for what, key in (("neither (PaSST-B, fine-only)", ("passt-b", "none", 1)),
                      ("coarse-to-fine alone (PaSST-B, pooling 2-phase)", ("passt-b", "pool", 2)),
                      ("patchout alone (PaSST-S, fine-only)", ("passt-s", "none", 1)),
                      ("both (PaSST-S, pooling 2-phase)", ("passt-s", "pool", 2))):
        r = cells.get(key)
        if r is None:
            continue
        lines.append(f"| {what} | {_pm(r, 'eval_map')} | "
                     f"{r['train_seconds_mean'] / base['train_seconds_mean']:.2f}x | "
                     f"{r['train_flops_mean'] / base['train_flops_mean']:.2f}x | {r['n_seeds']} |")
    lines += ["", "Costs are means over seeds relative to the PaSST-B fine-only mean; PaSST-B "
              "rows have 3 seeds (exploratory)."]
    return lines + [""]


def _table1_section(table1: pd.DataFrame | None) -> list[str]:
    lines = ["## Table 1 replica (speed, memory, sequence length)", ""]
    if table1 is None or table1.empty:
        return lines + ["No speed run found (run `passt-study run studies/speed.yaml`).", ""]
    cols = [c for c in ("model", "seq_len", "paper_seq_len", "train_x_ast", "paper_x_ast",
                        "mem_mib_per_sample", "paper_gb_per_sample", "paper_map") if c in table1]
    lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in table1.iterrows():
        lines.append("| " + " | ".join(_cell(r[c], c) for c in cols) + " |")
    return lines + ["", "Measured on this machine at the study's scale (tiny transformers, "
                    "short clips; the CNNs keep their full width); the paper's columns are "
                    "AudioSet-size models on a Titan RTX. The ranking of speeds, not their size, "
                    "is the comparable part.", ""]


def _cell(v, column: str) -> str:
    """A Table 1 cell: counts as integers, mAP with 3 decimals, other numbers with 2."""
    if not isinstance(v, float):
        return str(v)
    return _fmt(v, ",.0f" if column.endswith("seq_len") else
                ".3f" if column == "paper_map" else ".2f")


def _gpu_section(gpu: dict) -> list[str]:
    lines = ["## Table 1 on a GPU (one H200, paper size)", ""]
    eager = gpu.get("eager")
    if eager is None:
        return lines + ["No GPU measurement committed under `results/bench/gpu/`.", ""]
    comp = gpu.get("compiled")
    speed = {} if comp is None else dict(zip(comp["preset"], comp["train_x_ast"]))
    lines += ["| model | tokens | x AST eager | x AST compiled | paper x AST | MiB/clip | "
              "paper GB/clip |", "|---|---|---|---|---|---|---|"]
    for _, r in eager.iterrows():
        lines.append(f"| {r['model']} | {_cell(r['seq_len'], 'seq_len')} | "
                     f"{r['train_x_ast']:.2f} | {_fmt(speed.get(r['preset']), '.2f')} | "
                     f"{_cell(r['paper_x_ast'], 'x')} | {r['mem_mib_per_sample']:.0f} | "
                     f"{_cell(r['paper_gb_per_sample'], 'x')} |")
    lines += ["", _gpu_note(eager, comp)]
    return lines + [""]


def _gpu_note(eager: pd.DataFrame, comp: pd.DataFrame | None) -> str:
    """Where the GPU numbers come from and why they differ from the paper's, every number
    read from the committed tables."""
    first = eager.iloc[0]
    # memory per clip: the paper's GB (1e9 bytes) against ours in MiB, where the paper has one
    paper = eager.dropna(subset=["paper_gb_per_sample"])
    lower = paper["paper_gb_per_sample"] * 1e9 / (paper["mem_mib_per_sample"] * 2**20)
    s_eager, s_comp = _x_ast(eager, "passt-s"), _x_ast(comp, "passt-s")
    paper_s = float(eager.loc[eager["preset"] == "passt-s", "paper_x_ast"].iloc[0])
    comp_s = "" if s_comp is None else f", {s_comp:.1f}x compiled"
    cnn = _x_ast(comp, "cnn14")
    cnn_note = "" if cnn is None else (
        f" Compiled, CNN14 is {cnn:.1f}x AST, near the paper's "
        f"{float(eager.loc[eager['preset'] == 'cnn14', 'paper_x_ast'].iloc[0]):.1f}x.")
    return (f"Measured with this project's code on {str(first['date'])[:10]} "
            f"({first['precision']}, batch {first['batch']}; "
            "`results/bench/gpu/README.md` has the commands and the provenance). The ranking "
            f"of the transformers is the paper's; the speed-ups are smaller (PaSST-S "
            f"{s_eager:.1f}x AST eager{comp_s}, against {paper_s:.1f}x) because fused attention "
            "(`scaled_dot_product_attention`) makes long sequences cheaper than the 2021 "
            "implementation that wrote out every score matrix, and memory per clip is "
            f"{lower.min():.0f}-{lower.max():.0f}x lower for the same reason and "
            f"{first['precision']}.{cnn_note}")


def _not_shown() -> list[str]:
    return ["## Not shown at this scale", "",
            "- AudioSet mAP values themselves (.459-.471): needs `scale=paper` on GPUs.",
            "- Patchout's accuracy gain: it regularises long training from pre-trained "
            "weights; at seconds of training from scratch it cannot show.", ""]
