"""Errors a user can act on, and how the command lines report them.

The library raises ``ValueError`` (a bad value, named with what was expected),
``FileNotFoundError`` / ``OSError`` (a file that is missing or unreadable, named) and
:class:`TrainingDiverged`. The command lines (``passt-study ...`` and ``python -m
passt_lib.train``) print those as one line on stderr and exit with status 2;
``passt-study --debug ...`` or ``PASST_STUDY_DEBUG=1`` shows the traceback instead. Any
other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite; the run stopped without writing metrics."""


USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, TrainingDiverged)
DEBUG_ENV = "PASST_STUDY_DEBUG"


def debug_enabled() -> bool:
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


def run_main(prog: str, main: Callable[[Sequence[str] | None], int | None],
             argv: Sequence[str] | None = None) -> int:
    """``main(argv)``, with user errors turned into one line on stderr and exit status 2
    (the traceback with ``PASST_STUDY_DEBUG=1``)."""
    try:
        return int(main(argv) or 0)
    except USER_ERRORS as exc:
        if debug_enabled():
            raise
        print(f"{prog}: error: {one_line(exc)}", file=sys.stderr)
        return 2


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError) and exc.filename:
        text = f"{exc.filename}: {exc.strerror or text}"
    return text
