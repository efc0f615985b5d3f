"""``passt-study export`` and ``passt-study convert-checkpoint``: model files to share.

    passt-study export runs/s/checkpoint.pt shared/passt-s-mine
    passt-study convert-checkpoint old.pt new.pt --trust

``export`` writes a checkpoint's model as ``model.safetensors`` (weights) and ``model.json``
(architecture, front-end, classes, task, commit): files that hold no code, which
``passt_lib.load_model``, ``passt-study predict`` and the HEAR embeddings read like the
checkpoint, with the same predictions.

``convert-checkpoint`` rewrites a checkpoint of an older passt-study version (whose RNG state
was a NumPy array, which a safe load refuses) so that it loads without unpickling. Reading
the old file unpickles it, and unpickling runs any code the file names: it needs ``--trust``,
for files you made or trust.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from passt_lib.checkpoints import convert_checkpoint
from passt_lib.inference import export


def _parser(prog: str, what: str) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(prog=prog, description=what,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)


def main_export(argv: Sequence[str] | None = None) -> int:
    p = _parser("passt-study export", "Write a checkpoint's model as model.safetensors + "
                "model.json, a folder to share that loads without running code.")
    p.add_argument("checkpoint", help="checkpoint.pt written by passt-study train")
    p.add_argument("folder", help="the folder to write (created if missing)")
    args = p.parse_args(argv)
    folder = export(args.checkpoint, args.folder)
    print(f"wrote {folder}/model.safetensors and {folder}/model.json", file=sys.stderr)
    return 0


def main_convert(argv: Sequence[str] | None = None) -> int:
    p = _parser("passt-study convert-checkpoint", "Rewrite a checkpoint of an older version "
                "so that it loads without unpickling (reading it unpickles it: --trust).")
    p.add_argument("old", help="the checkpoint to convert")
    p.add_argument("new", help="where to write the converted checkpoint")
    p.add_argument("--trust", action="store_true",
                   help="unpickle OLD, which runs any code it holds: only for a file you made "
                        "or whose source you trust")
    args = p.parse_args(argv)
    convert_checkpoint(args.old, args.new, trust=args.trust)
    print(f"wrote {args.new}: it loads with weights_only=True", file=sys.stderr)
    return 0
