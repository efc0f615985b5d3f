"""The ``passt-study`` command.

Each subcommand lives with the code it runs; this module only dispatches the
rest of the command line to that module's ``main(argv)``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module whose main(argv) runs it, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "data": ("passt_lib.data.cli", "build the embedded dataset or inspect HDF5 / folder datasets"),
    "train": ("passt_lib.train", "train one model (a preset at a scale) without a notebook"),
    "bench": ("passt_lib.bench", "speed and memory benchmarks: reference, table, scaling, coarse-to-fine"),
    "run": ("passt_lib.study.runner", "run a study YAML: one papermill notebook per parameter set"),
    "study": ("passt_lib.study.all", "run every study at the embedded scale, then the figures"),
    "figures": ("passt_lib.study.figures", "re-render every figure and table from stored results"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(
        prog="passt-study",
        description="Efficient audio-transformer training: PaSST patchout and coarse-to-fine, as a study.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="subcommands:\n"
        + "\n".join(f"  {name:<9} {help_}" for name, (_, help_) in SUBCOMMANDS.items())
        + "\n\nRun `passt-study SUBCOMMAND --help` for a subcommand's options.",
    )
    parser.add_argument("subcommand", choices=sorted(SUBCOMMANDS), metavar="SUBCOMMAND")
    parser.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    ns = parser.parse_args(argv[:1])
    module = importlib.import_module(SUBCOMMANDS[ns.subcommand][0])
    return int(module.main(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
