"""Coarse-to-fine training against fine-only training, at the same number of epochs.

For one preset and scale, trains (``passt_lib.train.train``) a fine-only run
``full:N`` and, for each compression method, the study's 2-phase schedule
``METHOD:kxA,full:B`` and 3-phase schedule ``METHOD:kxA1,METHOD:(k/2)xA2,full:B``
(A = A1 + A2 = N / 2 coarse epochs; ``passt_lib.phases.standard_schedule``), over
several seeds.
Writes one row per run to ``results/bench/coarse_to_fine.csv`` (schedule,
method, seed, train_flops, train_seconds, eval_map, per-phase details and the
environment) and prints savings against fine-only (training FLOPs and
training wall time) with eval mAP as mean +- std over seeds.

``train_flops`` is analytic (``passt_lib.flops.schedule_train_flops``: token
counts after compression and patchout) times the samples trained, recomputed
here from the run's phases so that reused runs follow the current count; ``train_seconds`` is the
wall time of the training epochs as ``train`` records it (front-end and
augmentation included, evaluation excluded), and ``train_cpu_seconds`` the
process CPU time of the whole run, which is steadier on a shared machine.

Because wall time on a shared machine is noisy, the benchmark also times
one training step (front-end + transform + forward + backward + AdamW, on a
synthetic batch) at every resolution the schedules use, round-robin
(``common.time_interleaved``, median), and reports the wall time each
schedule would take from those step times (``step_seconds``,
``step_time_saving``): the robust estimate of the wall-time saving.

Runs are kept under ``--run-root`` and reused when their ``metrics.json``
exists (``--rerun`` trains again), so an interrupted benchmark resumes.

    python -m passt_lib.bench coarse-to-fine                  # 7 schedules x 3 seeds
    python -m passt_lib.bench coarse-to-fine --quick          # 1 seed, 3 epochs, fewer draws
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

from passt_lib.bench import common
from passt_lib.checkpoints import load_checkpoint
from passt_lib.compression import enter_phase, phase_config
from passt_lib.flops import schedule_train_flops, train_flops
from passt_lib.frontend import MelFrontend
from passt_lib.models import create_model, preset_config
from passt_lib.phases import Phase, format_schedule, parse_schedule, standard_schedule
from passt_lib.scales import get_scale, mel_config_at
from passt_lib.train import TrainConfig, train

METHODS = ("frame_shift", "pool", "patchify")
FINE = "fine-only"


def schedules(epochs: int, factor: int, methods: Sequence[str], n_phases: Sequence[int]
              ) -> list[tuple[str, str]]:
    """(method label, compact schedule) pairs: fine-only first, then each method's schedules,
    the study's standard ones (``passt_lib.phases.standard_schedule``: the first half of
    the epochs coarse)."""
    if factor < 2:
        raise ValueError(f"factor must be >= 2, got {factor}")
    out = [(FINE, f"full:{epochs}")]
    for m in methods:
        for n in n_phases:
            if n not in (2, 3):
                raise ValueError(f"phase counts are 2 or 3, got {n}")
            s = standard_schedule(m, f"{n}-phase", epochs, factor)
            out.append((m, format_schedule(parse_schedule(s))))
    return out


def _run_dir(root: Path, schedule: str, seed: int) -> Path:
    return root / schedule.replace(":", "-").replace(",", "_") / f"seed{seed}"


def run_one(args, schedule: str, seed: int) -> tuple[dict, float | None]:
    """Train one schedule / seed (or reuse a finished run); returns (metrics, cpu seconds)."""
    out_dir = _run_dir(args.run_root, schedule, seed)
    metrics_path = out_dir / "metrics.json"
    if metrics_path.exists() and not args.rerun:
        metrics = json.loads(metrics_path.read_text())
        return metrics, metrics.get("c2f_cpu_seconds")
    data_overrides = {"num_samples": args.samples_per_epoch} if args.samples_per_epoch else {}
    config = TrainConfig.for_scale(
        args.model, args.scale, schedule=schedule, seed=seed, out_dir=str(out_dir),
        precision=args.precision, device=args.device, progress=args.progress,
        data_overrides=data_overrides)
    cpu0 = time.process_time()
    result = train(config)
    cpu = time.process_time() - cpu0
    metrics = {**result.metrics, "c2f_cpu_seconds": cpu}
    metrics_path.write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics, cpu


def step_times(args, keys: Sequence[tuple[str, int]]) -> dict[tuple[str, int], float]:
    """Median seconds of one training step (front-end, the phase's transform, forward,
    backward, AdamW) at every (method, factor) in ``keys``, timed interleaved."""
    import torch

    scale = get_scale(args.scale)
    device = common.pick_device(args.device)
    model = create_model(args.model, scale, args.step_classes)
    mel0 = mel_config_at(model, scale)
    batch = args.batch or scale.batch_size
    g = torch.Generator().manual_seed(0)
    wave = (0.1 * torch.randn(batch, scale.n_samples, generator=g)).to(device)  # (B, S)
    target = (torch.rand(batch, args.step_classes, generator=g) < 0.1).float()
    fns = {}
    for method, factor in keys:
        m, mel_cfg, transform = enter_phase(model, model.config, mel0, Phase(method, factor, 1))
        m = m.to(device)
        frontend = MelFrontend(mel_cfg).to(device).train()
        step = common.TrainStep(m, transform(frontend(wave)), target.to(device),
                                precision=args.precision)

        def run(frontend=frontend, transform=transform, step=step):
            with torch.no_grad():
                step.mel = transform(frontend(wave))  # (B, F, T) for this phase
            return step()

        fns[f"{method}:{factor}"] = run
    common.log(f"timing {len(fns)} phase configurations of {args.model} at {scale.name} scale, "
               f"batch {batch}, interleaved")
    timings = common.time_interleaved(fns, steps=args.timing_steps, warmup=1, device=device)
    return {k: timings[f"{k[0]}:{k[1]}"].median for k in keys}


def plan_keys(plan: Sequence[tuple[str, str]]) -> list[tuple[str, int]]:
    """Every (method, factor) the schedules of ``plan`` train at."""
    return sorted({(p.method, p.factor) for _, s in plan for p in parse_schedule(s)})


def projection(args, plan: Sequence[tuple[str, str]]) -> list[dict]:
    """Each schedule's training FLOPs and wall time against fine-only at ``args.scale``, from
    analytic FLOPs and timed steps: every phase trains the same samples per epoch at the same
    batch, so its time is its epochs x the step time of its resolution."""
    per_step = step_times(args, plan_keys(plan))
    config = preset_config(args.model, args.scale, n_classes=args.step_classes)
    flops = {k: train_flops(phase_config(config, k[0], k[1])) for k in per_step}
    rows = [{"kind": "step", "method": m, "factor": k, "step_seconds": t,
             "tokens": phase_config(config, m, k).n_tokens(True),
             "train_gflops_per_sample": flops[(m, k)] / 1e9} for (m, k), t in per_step.items()]
    full = ("full", 1)
    for method, schedule in plan:
        phases = parse_schedule(schedule)
        epochs = sum(p.epochs for p in phases)
        cost = {name: sum(p.epochs * table[(p.method, p.factor)] for p in phases)
                / (epochs * table[full]) for name, table in (("time", per_step), ("flops", flops))}
        rows.append({"kind": "schedule", "method": method, "schedule": schedule,
                     "n_phases": len(phases), "projected_time_saving": 1 - cost["time"],
                     "flop_saving": 1 - cost["flops"]})
    return rows


def analytic_flops(args, out_dir: Path, m: dict, schedule: str) -> float:
    """Training FLOPs of a finished run from its phases (``flops.schedule_train_flops``)."""
    n_classes = load_checkpoint(out_dir / "checkpoint.pt")["model"]["head.1.bias"].shape[0]
    cfg = preset_config(args.model, args.scale, n_classes=n_classes)
    phases = parse_schedule(schedule)
    per_epoch = m["train_samples"] // sum(p.epochs for p in phases)
    return float(sum(schedule_train_flops(cfg, phases, per_epoch)))


def _row(method: str, schedule: str, seed: int, m: dict, cpu: float | None) -> dict:
    phases = m.get("phases", [])
    return {
        "schedule": schedule,
        "method": method,
        "seed": seed,
        "train_flops": m.get("train_flops"),
        "train_seconds": m.get("train_seconds"),
        "eval_map": m.get("eval_map"),
        "train_cpu_seconds": cpu,
        "n_phases": len(phases),
        "epochs": m.get("epochs"),
        "train_samples": m.get("train_samples"),
        "phase_methods": ";".join(f"{p['method']}x{p['factor']}" for p in phases),
        "phase_epochs": ";".join(str(p["epochs"]) for p in phases),
        "phase_tokens": ";".join(str(p.get("tokens")) for p in phases),
        "phase_train_flops": ";".join(f"{p.get('train_flops', 0):.4g}" for p in phases),
        "phase_train_seconds": ";".join(f"{p['train_seconds']:.2f}" for p in phases),
        "phase_eval_map": ";".join(f"{p.get('eval_map', float('nan')):.4f}" for p in phases),
        "step_seconds": None,  # filled in from the interleaved step timing
        "model": m.get("preset"),
        "scale": m.get("scale"),
    }


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    values = [v for v in values if v is not None]
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summarize(rows: Sequence[dict]) -> list[dict]:
    """One line per schedule: means over seeds and savings against fine-only (same seeds)."""
    by_schedule: dict[str, list[dict]] = {}
    for r in rows:
        by_schedule.setdefault(r["schedule"], []).append(r)
    fine = next((rs for rs in by_schedule.values() if rs[0]["method"] == FINE), None)
    if fine is None:
        raise ValueError("the summary needs the fine-only runs")
    fine_flops = _mean_std([r["train_flops"] for r in fine])[0]
    fine_sec = _mean_std([r["train_seconds"] for r in fine])[0]
    fine_cpu = _mean_std([r["train_cpu_seconds"] for r in fine])[0]
    fine_step = _mean_std([r.get("step_seconds") for r in fine])[0]
    out = []
    for schedule, rs in by_schedule.items():
        flops = _mean_std([r["train_flops"] for r in rs])[0]
        sec, sec_sd = _mean_std([r["train_seconds"] for r in rs])
        cpu = _mean_std([r["train_cpu_seconds"] for r in rs])[0]
        step = _mean_std([r.get("step_seconds") for r in rs])[0]
        mean_map, sd_map = _mean_std([r["eval_map"] for r in rs])
        out.append({
            "schedule": schedule, "method": rs[0]["method"], "seeds": len(rs),
            "train_flops": flops, "flops_saving": 1 - flops / fine_flops,
            "train_seconds": sec, "seconds_sd": sec_sd, "time_saving": 1 - sec / fine_sec,
            "cpu_saving": 1 - cpu / fine_cpu if cpu == cpu and fine_cpu else float("nan"),
            "step_time_saving": 1 - step / fine_step if step == step and fine_step else float("nan"),
            "map_mean": mean_map, "map_sd": sd_map,
        })
    return out


def timing_only(args, plan: Sequence[tuple[str, str]]) -> int:
    """``--timing-only``: step times per resolution and each schedule's projected savings."""
    rows = projection(args, plan)
    device = common.pick_device(args.device)
    env = common.env_info(device, args.precision)
    common.print_env(env)
    print(common.format_table([r for r in rows if r["kind"] == "step"],
                              ["method", "factor", "tokens", "step_seconds",
                               "train_gflops_per_sample"]))
    print(common.format_table([r for r in rows if r["kind"] == "schedule"],
                              ["schedule", "flop_saving", "projected_time_saving"]))
    out = args.out
    if out == common.RESULTS_DIR / "coarse_to_fine.csv":
        out = common.RESULTS_DIR / f"coarse_to_fine_{args.scale}_steps.csv"
    for r in rows:
        r.update(model=args.model, scale=args.scale, batch=args.batch or "scale",
                 timing_steps=args.timing_steps)
    print(f"wrote {common.write_csv(out, rows, env)}")
    return 0


def parse_args(argv: Sequence[str] | None):
    p = argparse.ArgumentParser(
        prog="passt-study bench coarse-to-fine",
        description="Coarse-to-fine schedules against fine-only training (FLOPs, wall time, mAP).")
    p.add_argument("--model", default="passt-s", help="preset (a PaSST or AST)")
    p.add_argument("--scale", default="embedded")
    p.add_argument("--epochs", type=int, default=None, help="total epochs (default: the scale's)")
    p.add_argument("--factor", type=int, default=4, help="compression of the first phase")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--phases", nargs="+", type=int, default=[2, 3], choices=(2, 3),
                   help="phase counts of the coarse-to-fine schedules")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--samples-per-epoch", type=int, default=None,
                   help="training draws per epoch (default: the dataset's)")
    p.add_argument("--quick", action="store_true",
                   help="1 seed, 3 epochs of 256 draws: checks the command, not the result")
    p.add_argument("--precision", default="auto")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--timing-steps", type=int, default=5,
                   help="timed steps per resolution for the step-time estimate (0: skip)")
    p.add_argument("--step-classes", type=int, default=20, help="classes of the timed model")
    p.add_argument("--batch", type=int, default=None,
                   help="batch of the timed steps (default: the scale's)")
    p.add_argument("--timing-only", action="store_true",
                   help="train nothing: time one step at every resolution the schedules use and "
                        "project each schedule's wall-time and FLOP saving (for the paper scale)")
    p.add_argument("--progress", action="store_true", help="show the training progress bar")
    p.add_argument("--rerun", action="store_true", help="train again even if a run finished")
    p.add_argument("--run-root", type=Path, default=Path("results/runs/bench-coarse-to-fine"))
    p.add_argument("--out", type=Path, default=common.RESULTS_DIR / "coarse_to_fine.csv")
    args = p.parse_args(argv)
    if args.quick:
        args.seeds = args.seeds[:1]
        args.epochs = args.epochs or 3
        args.samples_per_epoch = args.samples_per_epoch or 256
        args.run_root = args.run_root.with_name(args.run_root.name + "_quick")
        if args.out == common.RESULTS_DIR / "coarse_to_fine.csv":
            args.out = common.RESULTS_DIR / "coarse_to_fine_quick.csv"
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    common.set_threads(args.threads)
    epochs = args.epochs or get_scale(args.scale).epochs
    plan = schedules(epochs, args.factor, args.methods, args.phases)
    if args.timing_only:
        return timing_only(args, plan)
    rows = []
    for method, schedule in plan:
        for seed in args.seeds:
            t0 = time.perf_counter()
            m, cpu = run_one(args, schedule, seed)
            m["train_flops"] = analytic_flops(args, _run_dir(args.run_root, schedule, seed), m,
                                              schedule)
            rows.append(_row(method, schedule, seed, m, cpu))
            print(f"{schedule:<40} seed {seed}: mAP {m.get('eval_map', float('nan')):.4f}, "
                  f"{m.get('train_flops', 0):.3e} FLOPs, {m.get('train_seconds', 0):.1f} s train "
                  f"({time.perf_counter() - t0:.0f} s this call)", flush=True)
    if args.timing_steps:
        per_step = step_times(args, plan_keys(plan))
        for r in rows:
            steps = [int(n) for n in r["phase_epochs"].split(";")]
            keys = [(pm.rsplit("x", 1)[0], int(pm.rsplit("x", 1)[1]))
                    for pm in r["phase_methods"].split(";")]
            per_epoch = r["train_samples"] / sum(steps) / get_scale(args.scale).batch_size
            r["step_seconds"] = sum(per_step[k] * e * per_epoch for k, e in zip(keys, steps))
        print("seconds per training step: "
              + ", ".join(f"{m}x{k}: {v:.3f}" for (m, k), v in per_step.items()))
    device = rows and m.get("device", args.device)
    env = common.env_info(common.pick_device(device), m.get("precision", args.precision))
    path = common.write_csv(args.out, rows, env)
    common.print_env(env)
    summary = summarize(rows)
    print(common.format_table(summary, [
        "schedule", "seeds", "flops_saving", "time_saving", "step_time_saving", "cpu_saving",
        "map_mean", "map_sd"]))
    for s in summary:
        two_phase_k = s["schedule"].count(",") == 1 and f":{args.factor}x" in s["schedule"]
        if s["method"] != FINE and two_phase_k:
            # Conservative: both wall-time measures must clear the bar (NaN never does).
            ok = s["flops_saving"] >= 0.35 and all(
                s[k] >= 0.25 for k in ("time_saving", "step_time_saving"))
            print(f"target (>= 35% FLOPs, >= 25% wall time) {'met' if ok else 'NOT met'} by "
                  f"{s['schedule']}: {100 * s['flops_saving']:.1f}% FLOPs, "
                  f"{100 * s['time_saving']:.1f}% measured wall time, "
                  f"{100 * s['step_time_saving']:.1f}% from interleaved step times")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
