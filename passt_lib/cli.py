"""The ``passt-study`` command.

Each subcommand lives with the code it runs; this module only dispatches the
rest of the command line to that module's ``main(argv)``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from passt_lib.errors import DEBUG_ENV, run_main

# name -> (module whose main(argv) runs it, or "module:function", one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "data": ("passt_lib.data.cli", "build the embedded dataset or inspect HDF5 / folder datasets"),
    "train": ("passt_lib.train", "train one model (a preset at a scale) without a notebook"),
    "finetune": ("passt_lib.finetune", "fine-tune on ESC-50, OpenMIC-2018 or FSD50K with the "
                 "paper's recipes"),
    "predict": ("passt_lib.predict", "tag audio files with a trained model or released weights"),
    "export": ("passt_lib.model_files:main_export",
               "write a checkpoint's model as safetensors + JSON, to share"),
    "convert-checkpoint": ("passt_lib.model_files:main_convert",
                           "rewrite an older checkpoint so that it loads safely (--trust)"),
    "bench": ("passt_lib.bench", "speed and memory benchmarks: reference, table, scaling, coarse-to-fine"),
    "run": ("passt_lib.study.runner", "run a study YAML: one papermill notebook per parameter set"),
    "study": ("passt_lib.study.all", "run every study at the embedded scale, then the figures"),
    "figures": ("passt_lib.study.figures", "re-render every figure and table from stored results"),
}


def dispatch(prog: str, description: str, subcommands: dict[str, tuple[str, str]],
             argv: list[str]) -> int:
    """Run ``argv[0]``'s module's ``main(argv[1:])`` (user errors: one line, exit 2)."""
    parser = argparse.ArgumentParser(
        prog=prog, description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="subcommands:\n"
        + "\n".join(f"  {name:<19} {help_}" for name, (_, help_) in subcommands.items())
        + f"\n\nRun `{prog} SUBCOMMAND --help` for a subcommand's options.",
    )
    parser.add_argument("subcommand", choices=list(subcommands), metavar="SUBCOMMAND")
    parser.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    ns = parser.parse_args(argv[:1])
    module, _, function = subcommands[ns.subcommand][0].partition(":")
    main = getattr(importlib.import_module(module), function or "main")
    return run_main(f"{prog} {ns.subcommand}", main, argv[1:])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["--debug"]:  # tracebacks instead of one-line errors, here and below
        os.environ[DEBUG_ENV] = "1"
        argv = argv[1:]
    return dispatch("passt-study", "Efficient audio-transformer training: PaSST patchout and "
                    "coarse-to-fine, as a study. (passt-study --debug SUBCOMMAND ...: show "
                    "tracebacks of errors)", SUBCOMMANDS, argv)


if __name__ == "__main__":
    sys.exit(main())
