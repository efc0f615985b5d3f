"""Speed and memory benchmarks.

Subcommands (``python -m passt_lib.bench SUB`` or ``passt-study bench SUB``):

- ``reference``: one training step of ours vs the reference implementation (hear21passt).
- ``table``: Table 1 of the PaSST paper (throughput, memory, FLOPs) for a list of models.
- ``scaling``: training step time and memory against clip length.
- ``coarse-to-fine``: cost of coarse-to-fine training schedules.
- ``data``: decode + augmentation throughput against what training consumes.
- ``train``: the training loop end to end against the loader alone and the device alone.
- ``predict-memory``: peak memory of ``predict`` on one hour of audio against four.

Shared measurement helpers live in :mod:`passt_lib.bench.common`.
"""

from __future__ import annotations

import sys

from passt_lib.cli import dispatch

# name -> (module whose main(argv) runs it, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "reference": ("passt_lib.bench.reference", "our PaSST training step vs the reference's"),
    "table": ("passt_lib.bench.table", "Table 1: throughput, memory, FLOPs per model"),
    "scaling": ("passt_lib.bench.scaling", "step time and memory against clip length"),
    "coarse-to-fine": ("passt_lib.bench.coarse_to_fine", "cost of coarse-to-fine schedules"),
    "data": ("passt_lib.bench.data", "decode + augmentation throughput against training's needs"),
    "train": ("passt_lib.bench.train", "the training loop against its limits: loader, device, end to end"),
    "predict-memory": ("passt_lib.bench.predict_memory",
                       "peak memory of predict on hours of audio: bounded by the length?"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    return dispatch("passt-study bench", "Speed and memory benchmarks (synthetic inputs, median "
                    "of timed steps).", SUBCOMMANDS, argv)
