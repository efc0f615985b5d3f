"""Training cost against clip length.

Training step time (forward + BCE + backward + AdamW step) and peak memory per
sample for AST, PaSST-S, PaSST-S-N and CNN14 at several clip lengths. The
transformers' time encoding is sized to each clip (``input_tdim`` = the clip's
frames) and their patchout is rescaled in proportion to the time grid, so
PaSST-S drops the same fraction of time columns at every length. Writes a CSV
and a log-log figure: the transformer grows superlinearly (attention is
quadratic in the tokens), patchout shifts it down, the CNN grows linearly.

    python -m passt_lib.bench scaling                         # ViT-tiny on CPU, minutes
    python -m passt_lib.bench scaling --size base --seconds 1 2 5 10 20 30   # on a GPU
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from passt_lib.bench import common, memory
from passt_lib.cnn import CNN_PRESETS, CNNConfig
from passt_lib.models import model_info
from passt_lib.precision import PRECISIONS, resolve_precision
from passt_lib.scales import get_scale, replace

DEFAULT_MODELS = ("ast", "passt-s", "passt-s-n", "cnn14")


def parse_args(argv):
    p = argparse.ArgumentParser(prog="passt-study bench scaling", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, nargs="+", default=[1, 2, 5, 10, 20, 30])
    p.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS), metavar="PRESET")
    p.add_argument("--size", default=None, choices=("base", "small", "tiny"),
                   help="transformer ViT size (default: tiny on CPU, base on GPU)")
    p.add_argument("--depth", type=int, default=None,
                   help="transformer depth (default: 2 on CPU, the size's on GPU)")
    p.add_argument("--n-mels", type=int, default=128, help="transformer mel bins")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--cnn-channels-div", type=int, default=None,
                   help="divide CNN14's channels by this (default: 4 on CPU, 1 on GPU)")
    p.add_argument("--precision", default="auto", choices=PRECISIONS)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--compile", action="store_true")
    p.add_argument("--out", type=Path, default=common.RESULTS_DIR / "scaling.csv")
    p.add_argument("--no-figure", action="store_true")
    args = p.parse_args(argv)
    if min(args.seconds) <= 0:
        p.error(f"clip lengths must be positive, got {args.seconds}")
    return args


def build(name: str, seconds: float, args, device) -> common.BenchModel:
    """``name`` for a clip of ``seconds``; the transformer's time encoding covers the clip."""
    cpu = device.type == "cpu"
    scale = replace(get_scale("paper"), name=f"scaling-{seconds:g}s", clip_seconds=seconds,
                    n_mels=args.n_mels, vit_size=args.size or ("tiny" if cpu else "base"),
                    depth=args.depth if args.depth is not None else (2 if cpu else None))
    div = args.cnn_channels_div or (4 if cpu else 1)
    if div == 1 or name not in CNN_PRESETS:  # channels: the PANNs CNNs only
        return common.build_bench_model(name, scale)
    channels = tuple(c // div for c in CNNConfig.preset(name).channels)
    return common.build_bench_model(name, scale, channels=channels)


def run(args) -> tuple[list[dict], dict[str, str]]:
    common.set_threads(args.threads)
    device = common.pick_device(args.device)
    precision = resolve_precision(args.precision, device)
    torch.manual_seed(0)
    rows = []
    for seconds in args.seconds:
        # The models of one clip length are timed interleaved; lengths run one after another.
        steps, built = {}, {}
        for name in args.models:
            common.log(f"{name} at {seconds:g} s: building, measuring memory")
            bm = build(name, seconds, args, device)
            bm.model.to(device)
            model = torch.compile(bm.model) if args.compile else bm.model
            mel, target = common.synthetic_batch(bm.input_shape, bm.n_classes, args.batch,
                                                 device)
            steps[name] = common.TrainStep(model, mel, target, precision=precision)
            # the counted step also creates AdamW's state before memory is measured
            flops = common.count_flops(common.TrainStep(
                bm.model, mel, target, precision=precision, optimizer=steps[name].optimizer))
            built[name] = (bm, memory.peak_step_memory(steps[name], device), flops)
        timings = common.time_interleaved(steps, steps=args.steps, warmup=args.warmup,
                                          device=device)
        for name, (bm, mem, flops) in built.items():
            t = timings[name]
            rows.append({
                "model": model_info(name).display, "preset": name, "seconds": seconds,
                "input": "x".join(str(d) for d in bm.input_shape[1:]),
                "seq_len": bm.seq_len if bm.seq_len is not None else "",
                "params": bm.n_params, "batch": args.batch,
                "width": getattr(getattr(bm.model, "config", None), "embed_dim", ""),
                "step_s": t.median, "step_min_s": t.min, "step_max_s": t.max,
                "mem_mib_per_sample": memory.mib(mem) / args.batch,
                "train_gflops_per_sample": flops / args.batch / 1e9,
                "memory_method": memory.memory_method(device),
            })
        del steps, built
    return rows, common.env_info(device, precision)


def plot(rows: list[dict], path: Path, title: str) -> list[Path]:
    import matplotlib

    matplotlib.use("agg")
    import matplotlib.pyplot as plt

    panels = (("step_s", "training step (s), median"),
              ("mem_mib_per_sample", "memory per sample (MiB)"),
              ("train_gflops_per_sample", "training GFLOPs per sample"))
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    for preset in dict.fromkeys(r["preset"] for r in rows):
        rs = sorted((r for r in rows if r["preset"] == preset), key=lambda r: r["seconds"])
        x = [r["seconds"] for r in rs]
        for ax, (key, _) in zip(axes, panels):
            ax.plot(x, [r[key] for r in rs], marker="o", label=rs[0]["model"])
    xs = sorted({r["seconds"] for r in rows})
    for ax, (_, ylabel) in zip(axes, panels):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("clip length (s)")
        ax.set_ylabel(ylabel)
        ax.set_xticks(xs, [f"{x:g}" for x in xs])
        ax.minorticks_off()
        ax.grid(True, which="major", alpha=0.3)
    axes[0].legend(fontsize="small")
    fig.suptitle(title, fontsize="small")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    out = [path.with_suffix(".png"), path.with_suffix(".pdf")]
    for p in out:
        fig.savefig(p, dpi=150)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    rows, env = run(args)
    common.print_env(env)
    print(f"batch {args.batch}; {args.warmup} warm-up + {args.steps} timed steps, median; "
          f"memory: {rows[0]['memory_method']}")
    print(common.format_table(rows, ["model", "seconds", "input", "seq_len", "step_s",
                                     "mem_mib_per_sample", "train_gflops_per_sample"]))
    print(f"wrote {common.write_csv(args.out, rows, env)}")
    if not args.no_figure:
        title = f"{env['device']}, {env['precision']}, batch {args.batch}"
        for p in plot(rows, args.out.with_suffix(""), title):
            print(f"wrote {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
