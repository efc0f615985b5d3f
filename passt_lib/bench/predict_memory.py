"""``passt-study bench predict-memory``: does ``predict``'s memory grow with the audio's length?

Writes FLAC files of the given lengths (tones at 32 kHz, 16-bit mono), exports a model with
the paper's input (10 s windows, 128 mel bins; reduced width and depth, random weights: the
model's size does not depend on the audio), then runs ``passt-study predict`` on each file
in a fresh process and records its peak resident memory (``ru_maxrss``) and wall time. The
target: the longest file's peak at most 1.25 times the shortest's.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import soundfile as sf

from passt_lib.bench import common
from passt_lib.checkpoints import export_model
from passt_lib.inference import DESCRIBED, describe
from passt_lib.model import PaSST, PaSSTConfig

SR = 32000
MEASURE = """
import resource, sys, time
t = time.perf_counter()
from passt_lib.predict import main
rc = main(sys.argv[1:])
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.perf_counter() - t,
      file=sys.stderr)
sys.exit(rc)
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="passt-study bench predict-memory",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--hours", type=float, nargs="+", default=[1.0, 4.0],
                   help="lengths of the files to tag (default: 1 and 4 hours)")
    p.add_argument("--hop", type=float, default=2.5, help="predict --hop (default 2.5 s)")
    p.add_argument("--out", default="results/bench/predict_memory.csv")
    return p.parse_args(argv)


def write_tones(path: Path, hours: float, block_seconds: int = 60) -> Path:
    """A FLAC of ``hours`` hours: a different quiet tone every second, written in blocks."""
    n, at = int(hours * 3600 * SR), 0
    rng = np.random.default_rng(0)
    with sf.SoundFile(path, "w", SR, 1, subtype="PCM_16", format="FLAC") as f:
        while at < n:
            k = min(block_seconds * SR, n - at)
            t = np.arange(k) / SR
            freq = np.repeat(rng.uniform(100, 4000, -(-k // SR)), SR)[:k]
            f.write((0.1 * np.sin(2 * np.pi * freq * t)).astype(np.float32))
            at += k
    return path


def export_random_model(folder: Path) -> Path:
    """A PaSST with the paper's input (10 s, 128 mel bins) at width 64, depth 2, exported."""
    model = PaSST(PaSSTConfig.preset("passt-s", embed_dim=64, depth=2, num_heads=1,
                                     n_classes=527))
    data = SimpleNamespace(sample_rate=SR, clip_seconds=10.0, task="multilabel")
    state = {"model": model.state_dict(), "phase_full": True,
             **describe(model, "passt-s", "paper", 527, {}, model.mel_config, data, None,
                        None, model.config.input_tdim)}
    return export_model(state, folder, DESCRIBED)


def measure(model: Path, audio: Path, hop: float) -> tuple[float, float]:
    """(peak RSS in MiB, seconds) of ``passt-study predict`` on ``audio`` in a new process."""
    cmd = [sys.executable, "-c", MEASURE, str(model), str(audio), "--hop", str(hop)]
    done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"predict failed on {audio}:\n{done.stderr[-2000:]}")
    kib, seconds = done.stderr.strip().splitlines()[-1].split()
    return int(kib) / 1024, float(seconds)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    env = common.env_info("cpu", "fp32")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        model = export_random_model(Path(tmp) / "model")
        for hours in args.hours:
            common.log(f"writing {hours:g} h of audio")
            t = time.perf_counter()
            audio = write_tones(Path(tmp) / f"{hours:g}h.flac", hours)
            common.log(f"  {time.perf_counter() - t:.0f} s; running predict")
            rss, seconds = measure(model, audio, args.hop)
            rows.append({"hours": hours, "audio_mb": round(audio.stat().st_size / 2**20, 1),
                         "peak_rss_mib": round(rss, 1), "seconds": round(seconds, 1),
                         "hop_s": args.hop})
            audio.unlink()
    for r in rows:
        r["rss_vs_shortest"] = round(r["peak_rss_mib"] / rows[0]["peak_rss_mib"], 3)
    print(common.format_table(rows, ["hours", "audio_mb", "peak_rss_mib", "rss_vs_shortest",
                                     "seconds"]))
    print(f"wrote {common.write_csv(args.out, rows, env)}")
    return 0
