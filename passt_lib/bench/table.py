"""Table 1 of the PaSST paper, regenerated on this machine.

For each model: training throughput (forward + BCE + backward + AdamW step),
inference throughput, peak memory per training sample (what a training step
allocates above the weights, gradients and AdamW state it starts with, divided
by the batch; the measuring method is stated in the output), training
FLOPs per sample (``FlopCounterMode``), achieved fraction of a matmul peak
measured in the same run, and the sequence length after patchout. Speeds are
also shown relative to AST, next to the paper's numbers (Titan RTX).

    python -m passt_lib.bench table                        # embedded scale, a few minutes on CPU
    python -m passt_lib.bench table --scale paper --steps 1 --warmup 1
"""

from __future__ import annotations

import argparse
import gc
import sys
from pathlib import Path

import torch

from passt_lib.bench import common, memory
from passt_lib.models import list_models, model_info
from passt_lib.precision import PRECISIONS, resolve_precision
from passt_lib.scales import get_scale

DEFAULT_MODELS = ("ast", "ast-n", "passt-b", "passt-u", "passt-s", "passt-s-l", "passt-s-n",
                  "cnn14", "cnn10", "mn10", "mn40")
# Koutini et al. 2022, Table 1 (Titan RTX): preset -> (AudioSet mAP, training speed relative
# to AST, GB of GPU memory per training sample, training sequence length). The report and the
# figures quote it from here.
PAPER_TABLE1 = {
    "ast": (0.459, 1.0, 2.33, 1212), "ast-n": (0.454, 3.4, 0.534, 498),
    "passt-b": (0.462, 1.0, 2.33, 1190), "passt-u": (0.466, 1.9, 1.14, 790),
    "passt-s": (0.471, 3.8, 0.513, 474), "passt-s-l": (0.459, 6.4, 0.311, 474),
    "passt-s-n": (0.466, 8.0, 0.202, 254), "cnn14": (0.439, 5.7, 0.213, None),
}
# Batch per training step on CPU, per scale (on GPU the batch is searched, see choose_batch).
CPU_BATCH = {"smoke": 4, "embedded": 8, "paper": 2}


def parse_args(argv):
    p = argparse.ArgumentParser(prog="passt-study bench table", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", default="embedded", choices=("smoke", "embedded", "paper"))
    p.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS), metavar="PRESET")
    p.add_argument("--precision", default="auto", choices=PRECISIONS)
    p.add_argument("--steps", type=int, default=5, help="timed steps per model")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per model")
    p.add_argument("--batch", type=int, default=None,
                   help="one batch for every model (default: per scale on CPU, searched on GPU)")
    p.add_argument("--max-batch", type=int, default=128, help="GPU batch search limit")
    p.add_argument("--size", default=None, help="transformer ViT size (default: the scale's)")
    p.add_argument("--depth", type=int, default=None, help="transformer depth override")
    p.add_argument("--interleave", choices=("auto", "yes", "no"), default="auto",
                   help="time all models round-robin (auto: yes unless paper scale on CPU, "
                        "where keeping every base model resident needs too much memory)")
    p.add_argument("--matmul-size", type=int, default=None,
                   help="n of the n x n peak matmul (default 2048 on CPU, 8192 on GPU)")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--compile", action="store_true", help="torch.compile each model")
    p.add_argument("--out", type=Path, default=None,
                   help="CSV path (default results/bench/table_<scale>.csv)")
    args = p.parse_args(argv)
    unknown = [m for m in args.models if m not in list_models()]
    if unknown:
        p.error(f"unknown model(s) {unknown}; expected registered models among "
                f"{', '.join(list_models())}")
    return args


def choose_batch(bm: common.BenchModel, device, precision: str, max_batch: int) -> int:
    """Largest power-of-two batch up to ``max_batch`` whose training step fits on the GPU."""
    batch, best = 1, None
    while batch <= max_batch:
        try:
            mel, target = common.synthetic_batch(bm.input_shape, bm.n_classes, batch, device)
            common.TrainStep(bm.model, mel, target, precision=precision)()
            best = batch
        except torch.OutOfMemoryError:
            break
        finally:
            bm.model.zero_grad(set_to_none=True)
            torch.cuda.empty_cache()
        batch *= 2
    if best is None:
        raise ValueError(f"{bm.name}: a training step with batch 1 does not fit on {device}")
    return best


class Entry:
    """One model under measurement: its train and inference steps and static numbers."""

    def __init__(self, name: str, args, device, precision: str) -> None:
        scale = get_scale(args.scale)
        common.log(f"{name}: building, counting FLOPs, measuring memory")
        self.bm = common.build_bench_model(name, scale, size=args.size, depth=args.depth)
        self.bm.model.to(device)
        if args.batch:
            self.batch = args.batch
        elif device.type == "cuda":
            self.batch = choose_batch(self.bm, device, precision, args.max_batch)
        else:
            self.batch = CPU_BATCH[scale.name]
        model = torch.compile(self.bm.model) if args.compile else self.bm.model
        mel, target = common.synthetic_batch(self.bm.input_shape, self.bm.n_classes,
                                             self.batch, device)
        self.train = common.TrainStep(model, mel, target, precision=precision)
        self.infer = common.InferStep(model, mel, precision=precision)
        # FLOPs are counted on the uncompiled model; this step also creates AdamW's state
        # (shared with self.train) before memory is measured.
        self.flops_per_step = common.count_flops(common.TrainStep(
            self.bm.model, mel, target, precision=precision, optimizer=self.train.optimizer))
        self.mem_bytes = memory.peak_step_memory(self.train, device)
        self.input_shape, self.seq_len = self.bm.input_shape, self.bm.seq_len
        self.n_params = self.bm.n_params

    def release(self) -> None:
        """Drop the model, its optimiser state and the batch; the numbers stay."""
        self.bm = self.train = self.infer = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def measure(args) -> tuple[list[dict], dict[str, str]]:
    common.set_threads(args.threads)
    device = common.pick_device(args.device)
    precision = resolve_precision(args.precision, device)
    interleave = args.interleave == "yes" or (
        args.interleave == "auto" and not (args.scale == "paper" and device.type == "cpu"))
    matmul = common.MatmulStep(device, precision, n=args.matmul_size)
    torch.manual_seed(0)

    results: dict[str, tuple[Entry, common.Timing, common.Timing]] = {}
    peak_timings: list[common.Timing] = []
    if interleave:
        entries = {name: Entry(name, args, device, precision) for name in args.models}
        common.log(f"timing {len(entries)} models interleaved")
        # The peak matmul joins the round-robin: it sees the same machine load as the models.
        train = common.time_interleaved({**{n: e.train for n, e in entries.items()},
                                         "matmul": matmul},
                                        steps=args.steps, warmup=args.warmup, device=device)
        peak_timings = [train.pop("matmul")]
        infer = common.time_interleaved({n: e.infer for n, e in entries.items()},
                                        steps=args.steps, warmup=args.warmup, device=device)
        results = {n: (e, train[n], infer[n]) for n, e in entries.items()}
    else:
        for name in args.models:
            e = Entry(name, args, device, precision)
            common.log(f"{name}: timing")
            both = common.time_interleaved({"train": e.train, "matmul": matmul},
                                           steps=args.steps, warmup=args.warmup, device=device)
            tt = both["train"]
            peak_timings.append(both["matmul"])
            ti = common.time_fn(e.infer, steps=args.steps, warmup=args.warmup, device=device)
            e.release()
            results[name] = (e, tt, ti)

    peak = matmul.flops / common.Timing(tuple(t for pt in peak_timings for t in pt.times)).median
    rows = table_rows(results, peak, args, interleave, memory.memory_method(device))
    env = common.env_info(device, precision)
    return rows, env


def table_rows(results: dict, peak: float, args, interleave: bool, method: str) -> list[dict]:
    """One row per model: speed (and against AST's), memory, FLOPs, the fraction of the
    matmul peak, and the paper's Table 1 values beside them."""
    rows = []
    ast = results.get("ast")
    for name, (e, tt, ti) in results.items():
        train_sps = tt.per_second(e.batch)
        paper = PAPER_TABLE1.get(name, (None, None, None, None))[1:]
        rows.append({
            "model": model_info(name).display, "preset": name, "scale": args.scale, "batch": e.batch,
            "input": "x".join(str(d) for d in e.input_shape[1:]),
            "seq_len": e.seq_len if e.seq_len is not None else "",
            "params": e.n_params,
            "train_samples_per_s": train_sps,
            "train_step_s": tt.median, "train_step_min_s": tt.min, "train_spread": tt.spread,
            "train_x_ast": train_sps / ast[1].per_second(ast[0].batch) if ast else "",
            "infer_samples_per_s": ti.per_second(e.batch),
            "infer_spread": ti.spread,
            "mem_mib_per_sample": memory.mib(e.mem_bytes) / e.batch,
            "train_gflops_per_sample": e.flops_per_step / e.batch / 1e9,
            "achieved_gflops": e.flops_per_step / tt.median / 1e9,
            "matmul_peak_gflops": peak / 1e9,
            "peak_fraction": e.flops_per_step / tt.median / peak,
            "paper_x_ast": paper[0] if paper[0] is not None else "",
            "paper_gb_per_sample": paper[1] if paper[1] is not None else "",
            "paper_seq_len": paper[2] if paper[2] is not None else "",
            "steps": args.steps, "warmup": args.warmup, "interleaved": interleave,
            "compiled": args.compile, "memory_method": method,
        })
    return rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    rows, env = measure(args)
    common.print_env(env)
    print(f"scale {args.scale}; {args.warmup} warm-up + {args.steps} timed steps, median; "
          f"interleaved: {rows[0]['interleaved']}")
    print(f"memory per sample: {rows[0]['memory_method']}, divided by the batch")
    print(f"matmul peak ({env['precision']}): {rows[0]['matmul_peak_gflops']:.1f} GFLOP/s")
    print(common.format_table(rows, [
        "model", "batch", "seq_len", "train_samples_per_s", "train_x_ast", "paper_x_ast",
        "infer_samples_per_s", "mem_mib_per_sample", "paper_gb_per_sample",
        "train_gflops_per_sample", "peak_fraction", "paper_seq_len"]))
    out = args.out or common.RESULTS_DIR / f"table_{args.scale}.csv"
    print(f"wrote {common.write_csv(out, rows, env)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
