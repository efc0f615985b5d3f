"""``passt-study bench data``: is decoding the bottleneck?

Measures, in one run and one process, the decode + waveform-augmentation throughput
of the embedded dataset (straight from the mp3 HDF5 file, and from the decoded cache
that training uses after the first pass) against what one embedded training run
consumes (samples/s of ``train()`` for one epoch of PaSST-S, front-end included).
The target is a ratio of at least 10. Augmentation is measured both with the full
AudioSet recipe switched on (mixup, gain, roll), the most expensive setting, and as the
embedded scale trains (augmentation off).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from passt_lib.bench import common
from passt_lib.data import bench_decode, embedded
from passt_lib.data.config import DataConfig
from passt_lib.train import TrainConfig, train


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="passt-study bench data", description=__doc__.split("\n\n")[0])
    p.add_argument("--scale", default="embedded", help="embedded dataset scale (default embedded)")
    p.add_argument("--preset", default="passt-s", help="model whose training consumes the data")
    p.add_argument("--n", type=int, default=512, help="clips decoded per measurement")
    p.add_argument("--threads", type=int, default=1,
                   help="threads for both sides (default 1: one data worker vs one trainer)")
    p.add_argument("--out", default="results/bench/data.csv")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    common.set_threads(args.threads)
    data = embedded.ensure(args.scale, progress=False)
    recipe = DataConfig.from_dict({**data.to_dict(), **_recipe_defaults()})
    rows = []
    for label, cfg in (("recipe augmentation", recipe), ("no augmentation", data.no_augmentation())):
        for cached in (False, True):
            r = bench_decode(cfg, n=args.n, cached=cached)
            rows.append({"what": f"decode {'cached' if cached else 'mp3'}, {label}",
                         "samples_per_s": round(r["clips_per_s"], 1)})
    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig.for_scale(args.preset, args.scale, epochs=1, out_dir=tmp,
                                    threads=args.threads, progress=False)
        consumed = train(cfg).metrics["samples_per_s"]
    rows.append({"what": f"training consumes ({args.preset}, {args.scale})",
                 "samples_per_s": round(consumed, 1)})
    for row in rows[:-1]:
        row["ratio_to_training"] = round(row["samples_per_s"] / consumed, 1)
    env = common.env_info("cpu", "auto")
    common.print_env(env)
    print(common.format_table(rows, ["what", "samples_per_s", "ratio_to_training"]))
    print("target: decode + augmentation >= 10x what training consumes; ratios: "
          + ", ".join(f"{r['what']}: {r['ratio_to_training']}x" for r in rows[:-1]))
    common.write_csv(Path(args.out), rows, env)
    return 0


def _recipe_defaults() -> dict:
    """The DataConfig defaults of the AudioSet recipe's augmentation (mixup, gain, roll)."""
    import dataclasses

    keys = ("wave_mixup", "wave_mixup_alpha", "gain_db", "roll", "roll_fraction")
    return {f.name: f.default for f in dataclasses.fields(DataConfig) if f.name in keys}


if __name__ == "__main__":
    raise SystemExit(main())
