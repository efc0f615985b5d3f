"""``passt-study bench train``: is the training loop as fast as its slowest real limit?

On one configuration, in one run, three measurements side by side:

- **loader**: clips/s the data pipeline delivers on its own (mp3 decode in the loader
  workers, the copy to the device), iterating the training batches of the same epochs
  without training on them;
- **device**: clips/s of everything the training device does per batch (device-side
  augmentation, mel front-end, forward, backward, AdamW) on a device-resident synthetic
  waveform batch: the training step of ``passt_lib.train`` itself;
- **end to end**: clips/s of the real ``train()`` loop over the same data (epochs after the
  first; the first pays for starting the workers).

The limit: on a CPU the loader and the step share the cores, so with c_L and c_D the CPU
seconds per clip of the loader and of the step (process CPU time, workers included), end to
end cannot beat ``n_cores / (c_L + c_D)``; on a GPU it cannot beat ``min(loader, device)``.
Printed: end to end over that bound, and the stall fraction (the share of the loop's time
the training process waited for the next batch).

The data is a PaSST-layout mp3 HDF5 of 10 s clips (tones over noise, 527 classes: content
for throughput only) written once under ``data/bench-train-*``; ``--data`` takes real files.
Defaults: on a CPU a tiny PaSST (width 192, one block) at the paper's clip length, so that
the loader matters; on CUDA the paper's PaSST-S at batch 128, compiled.

    passt-study bench train                      # CPU: about a minute
    passt-study bench train --data /data/audioset/balanced_train_segments_mp3.hdf
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import multiprocessing as mp
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from passt_lib.atomic import atomic_path
from passt_lib.bench import common
from passt_lib.data import make_datasets
from passt_lib.data.config import DataConfig
from passt_lib.data.embedded import default_root
from passt_lib.data.pipeline import available_cores
from passt_lib.model import VIT_SIZES
from passt_lib.train import setup, start_phase, train
from passt_lib.train_config import TrainConfig

N_CLASSES = 527
SAMPLE_RATE = 32000


# ----------------------------------------------------------------------------- data
def _clip(args) -> tuple[str, bytes, np.ndarray]:
    """One synthetic 10 s clip: 1-3 class tones with random onsets over noise, as mp3."""
    import soundfile as sf

    i, seconds = args
    rng = np.random.default_rng(i)
    n = int(SAMPLE_RATE * seconds)
    labels = rng.choice(60, size=int(rng.integers(1, 4)), replace=False)
    t = np.arange(n) / SAMPLE_RATE
    x = 0.02 * rng.standard_normal(n)
    for c in labels:
        on, dur = int(rng.integers(0, n * 6 // 10)), int(rng.integers(n // 10, n * 4 // 10))
        env = np.zeros(n)
        env[on:on + dur] = 1.0
        x += 0.2 * env * np.sin(2 * np.pi * 110 * 2 ** (c / 12) * t)
    buf = io.BytesIO()
    sf.write(buf, (0.5 * x / np.abs(x).max()).astype(np.float32), SAMPLE_RATE, format="MP3")
    return f"Y{i:010d}.mp3", buf.getvalue(), labels


def write_hdf5(path: Path, start: int, n: int, seconds: float, workers: int) -> None:
    """A PaSST-layout mp3 HDF5 of ``n`` synthetic clips (``audio_name``, ``mp3``, ``target``)."""
    import h5py

    jobs = [(i, seconds) for i in range(start, start + n)]
    with mp.get_context("fork").Pool(max(workers, 1)) as pool:
        clips = pool.map(_clip, jobs, chunksize=4)
    hot = np.zeros((n, N_CLASSES), bool)
    for k, c in enumerate(clips):
        hot[k, c[2]] = True
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as h:
        h.create_dataset("audio_name", data=np.array([c[0].encode() for c in clips], dtype="S20"))
        d = h.create_dataset("mp3", shape=(n,), dtype=h5py.vlen_dtype(np.uint8))
        for k, c in enumerate(clips):
            d[k] = np.frombuffer(c[1], np.uint8)
        h.create_dataset("target", data=np.packbits(hot, axis=1))


def synthetic_data(n_train: int, n_eval: int, seconds: float, root: Path | None = None
                   ) -> tuple[Path, Path]:
    """(train, eval) HDF5 paths of synthetic clips, written once and reused."""
    key = hashlib.sha1(json.dumps([1, n_train, n_eval, seconds]).encode()).hexdigest()[:8]
    folder = (root or default_root()) / f"bench-train-{key}"
    paths = folder / "train_mp3.hdf", folder / "eval_mp3.hdf"
    for path, start, n in ((paths[0], 0, n_train), (paths[1], 10**6, n_eval)):
        if not path.exists():
            common.log(f"writing {n} synthetic {seconds:g} s mp3 clips to {path}")
            write_hdf5(path, start, n, seconds, available_cores())
    return paths


# ----------------------------------------------------------------------------- CPU time
def _cpu_seconds(pids) -> float:
    """utime + stime of processes (Linux /proc), 0 for ones that are gone."""
    import os

    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError, ValueError):
            pass
    return total


def _children() -> set[int]:
    out = set()
    for task in Path("/proc/self/task").glob("*"):
        try:
            out |= {int(p) for p in (task / "children").read_text().split()}
        except OSError:
            pass
    return out


class CpuClock:
    """CPU seconds of this process and its children (the loader workers) since ``start``.

    Children are sampled while they live (persistent workers), so their time counts before
    they exit."""

    def __init__(self) -> None:
        self.pids: set[int] = set()
        self.before: dict[int, float] = {}
        self.t_self = time.process_time()

    def start(self) -> None:
        self.pids = _children()
        self.before = {p: _cpu_seconds([p]) for p in self.pids}
        self.t_self = time.process_time()

    def seconds(self) -> float:
        self.pids |= _children()
        workers = sum(_cpu_seconds([p]) - self.before.get(p, 0.0) for p in self.pids)
        return time.process_time() - self.t_self + workers


# ----------------------------------------------------------------------------- measurements
def train_config(args, train_path: Path, eval_path: Path, out_dir: str):
    data = DataConfig(format="passt-hdf5", train_path=str(train_path), eval_path=str(eval_path),
                      n_classes=N_CLASSES, clip_seconds=args.seconds,
                      num_workers=args.workers if args.workers == "auto" else int(args.workers))
    if args.no_augment:
        data = data.no_augmentation().replace(balanced=True)
    over = {} if args.size is None else dict(
        zip(("embed_dim", "num_heads"), VIT_SIZES[args.size][::2]))  # depth: --depth
    if args.depth is not None:
        over["depth"] = args.depth
    return TrainConfig.for_scale(
        args.preset, "paper", data=data, model_overrides=over, epochs=args.epochs,
        batch_size=args.batch, lr=1e-4, warmup_epochs=0.0, preload=False,
        compile=args.compile, device=args.device, threads=args.threads, progress=False,
        out_dir=out_dir)


def measure_loader(config) -> dict:
    """Iterate the training batches of every epoch (no training): clips/s and CPU s/clip."""
    run = setup(config)
    run.bar.close()
    clock = CpuClock()
    times, clips = [], 0
    for e in range(run.schedule.n_epochs):
        if e == 1:  # epoch 0 starts the workers
            clock.start()
            t0 = time.perf_counter()
        t_e = time.perf_counter()
        for wave, _ in run.batches.epoch(e, run.schedule.epoch_steps[e]):
            common.synchronize(run.device)
            clips += len(wave) if e >= 1 else 0
        times.append(time.perf_counter() - t_e)
    wall = time.perf_counter() - t0
    cpu = clock.seconds()
    return {"clips_per_s": clips / wall, "cpu_s_per_clip": cpu / clips,
            "workers": run.batches.num_workers, "epoch_seconds": times}


def measure_device(config, steps: int, warmup: int) -> dict:
    """The training step alone on a device-resident synthetic batch: clips/s and CPU s/clip of
    the median step."""
    import torch

    run = setup(config)
    run.bar.close()
    ps = start_phase(run, run.model, 0)
    ps.step.train()
    g = torch.Generator().manual_seed(0)
    b = run.local_batch
    wave = (0.1 * torch.randn(b, run.data.n_samples, generator=g)).to(run.device)  # (B, S)
    target = (torch.rand(b, run.n_classes, generator=g) < 0.02).float().to(run.device)
    for _ in range(warmup):
        ps.step(wave, target, 1e-5, g)
    walls, cpus = [], []
    for _ in range(steps):  # per step, so that the median resists a noisy neighbour
        common.synchronize(run.device)
        cpu0, t0 = time.process_time(), time.perf_counter()
        ps.step(wave, target, 1e-5, g)
        common.synchronize(run.device)
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - cpu0)
    wall, cpu = statistics.median(walls), statistics.median(cpus)
    return {"clips_per_s": b / wall, "cpu_s_per_clip": cpu / b,
            "device": str(run.device), "precision": run.precision}


def measure_end_to_end(config) -> dict:
    """The real train() loop; throughput and stall over the epochs after the first."""
    clock = CpuClock()
    clock.start()
    result = train(config)
    cpu = clock.seconds()
    later = result.history[1:] or result.history
    seconds = sum(h["train_seconds"] for h in later)
    clips = sum(h["samples_per_s"] * h["train_seconds"] for h in later)
    wait = sum(h["data_wait_seconds"] for h in later)
    return {"clips_per_s": clips / seconds, "stall_fraction": wait / seconds,
            "all_epochs_clips_per_s": result.metrics["samples_per_s"],
            "epoch_clips_per_s": [round(h["samples_per_s"], 1) for h in result.history],
            "cpu_s_per_clip": cpu / result.metrics["train_samples"],
            "eval_map": result.metrics.get("eval_map")}


# ----------------------------------------------------------------------------- command
def parse_args(argv):
    p = argparse.ArgumentParser(prog="passt-study bench train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=None,
                   help="a PaSST-layout mp3 HDF5 to train on (default: synthetic clips)")
    p.add_argument("--eval-data", type=Path, default=None, help="eval HDF5 (default: --data)")
    p.add_argument("--data-root", type=Path, default=None,
                   help="folder of the synthetic data (default: the checkout's data/)")
    p.add_argument("--clips", type=int, default=None,
                   help="synthetic training clips (default 10 batches on CPU, 20 on CUDA)")
    p.add_argument("--preset", default="passt-s")
    p.add_argument("--size", default=None, choices=("tiny", "small", "base"),
                   help="transformer ViT size (default: tiny on CPU, base on CUDA)")
    p.add_argument("--depth", type=int, default=None, help="blocks (default: 1 on CPU)")
    p.add_argument("--batch", type=int, default=None, help="default 16 on CPU, 128 on CUDA")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--workers", default="auto", help="loader workers, or auto")
    p.add_argument("--threads", type=int, default=None, help="torch threads of the trainer")
    p.add_argument("--compile", default="auto", choices=("auto", "on", "off"))
    p.add_argument("--no-augment", action="store_true", help="waveform augmentation off")
    p.add_argument("--steps", type=int, default=None, help="timed device-only steps")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", type=Path, default=None,
                   help="CSV (default results/bench/train_<cpu|cuda>.csv)")
    args = p.parse_args(argv)
    args.seconds = 10.0  # the paper scale's clips
    cuda = common.pick_device(args.device).type == "cuda"
    args.compile = {"auto": "auto", "on": True, "off": False}[args.compile]
    args.size = args.size or ("base" if cuda else "tiny")
    args.depth = args.depth if args.depth is not None else (None if cuda else 1)
    args.batch = args.batch or (128 if cuda else 16)
    args.clips = args.clips or (20 if cuda else 10) * args.batch
    args.steps = args.steps or (20 if cuda else 10)
    return args


def run(args) -> tuple[dict, dict[str, str]]:
    import torch

    if args.data is None:
        train_path, eval_path = synthetic_data(args.clips, 2 * args.batch, args.seconds,
                                               args.data_root)
    else:
        train_path, eval_path = args.data, args.eval_data or args.data
    with tempfile.TemporaryDirectory() as tmp:
        config = train_config(args, train_path, eval_path, tmp)
        make_datasets(config.data)  # a bad data file fails here, before any measurement
        common.log("loader only")
        loader = measure_loader(config)
        common.log("device only")
        device = measure_device(config, args.steps, warmup=2)
        common.log("end to end: train()")
        e2e = measure_end_to_end(config)
    cores = available_cores()
    cuda = device["device"].startswith("cuda")
    bound = (min(loader["clips_per_s"], device["clips_per_s"]) if cuda
             else cores / (loader["cpu_s_per_clip"] + device["cpu_s_per_clip"]))
    row = {
        "model": args.preset, "size": args.size, "depth": args.depth or "",
        "batch": args.batch, "clip_seconds": args.seconds, "epochs": args.epochs,
        "workers": loader["workers"], "torch_threads": torch.get_num_threads(),
        "cores": cores, "compile": config.compile, "augment": not args.no_augment,
        "data": "synthetic" if args.data is None else str(args.data),
        "loader_clips_per_s": loader["clips_per_s"],
        "device_clips_per_s": device["clips_per_s"],
        "end_to_end_clips_per_s": e2e["clips_per_s"],
        "loader_cpu_ms_per_clip": 1e3 * loader["cpu_s_per_clip"],
        "device_cpu_ms_per_clip": 1e3 * device["cpu_s_per_clip"],
        "bound": "min(loader, device)" if cuda else "cores / (c_L + c_D)",
        "bound_clips_per_s": bound,
        "end_to_end_over_bound": e2e["clips_per_s"] / bound,
        "stall_fraction": e2e["stall_fraction"],
        "end_to_end_epochs_clips_per_s": ";".join(map(str, e2e["epoch_clips_per_s"])),
    }
    return row, common.env_info(device["device"], device["precision"])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    row, env = run(args)
    common.print_env(env)
    print(f"{row['model']} ViT-{row['size']} depth {row['depth'] or 'preset'}, batch "
          f"{row['batch']}, {row['clip_seconds']:g} s clips, {row['workers']} loader workers, "
          f"{row['torch_threads']} torch threads, {row['cores']} cores, compile "
          f"{row['compile']}")
    print(common.format_table([row], ["loader_clips_per_s", "device_clips_per_s",
                                      "end_to_end_clips_per_s", "bound_clips_per_s"]))
    print(f"c_L {row['loader_cpu_ms_per_clip']:.2f} ms/clip (loader CPU), c_D "
          f"{row['device_cpu_ms_per_clip']:.2f} ms/clip (training step CPU)")
    print(f"end to end / bound ({row['bound']}): {row['end_to_end_over_bound']:.2f}; "
          f"stall fraction {row['stall_fraction']:.2f}; end-to-end epochs (clips/s): "
          f"{row['end_to_end_epochs_clips_per_s']}")
    kind = "cuda" if row["bound"].startswith("min") else "cpu"
    out = args.out or common.RESULTS_DIR / f"train_{kind}.csv"
    print(f"wrote {common.write_csv(out, [row], env)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
