"""The project's figure style and byte-stable figure files.

``use()`` applies ``passt.mplstyle`` (paper column widths: :data:`COLUMN`
3.3 in, :data:`PAGE` 6.75 in). ``save(fig, stem)`` writes ``stem.png`` and
``stem.pdf`` atomically with the volatile metadata removed (PDF
``CreationDate`` / ``Producer``, PNG ``Software``), so the same figure drawn
from the same results gives the same bytes.
"""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

from passt_lib.atomic import atomic_write_bytes

STYLE = Path(__file__).with_name("passt.mplstyle")
COLUMN, PAGE = 3.3, 6.75  # inches


def use() -> None:
    import matplotlib.pyplot as plt

    plt.style.use(str(STYLE))


def figure(width: str | float = "column", height: float | None = None, **kwargs):
    """A (fig, axes) pair at a paper width: "column" (3.3 in), "page" (6.75 in) or inches."""
    import matplotlib.pyplot as plt

    use()
    w = {"column": COLUMN, "page": PAGE}.get(width, width) if isinstance(width, str) else width
    if isinstance(w, str):
        raise ValueError(f"width must be 'column', 'page' or inches, got {width!r}")
    return plt.subplots(figsize=(w, height or 0.72 * w if w <= COLUMN else height or 0.38 * w),
                        **kwargs)


def note(fig, text: str, fontsize: float = 5.5) -> None:
    """A grey note at the bottom left of ``fig``, wrapped to the figure's width; the layout
    makes room for it (it is the figure's ``supxlabel``), so it never covers a legend."""
    import textwrap

    chars = int(fig.get_figwidth() * 72 / (0.55 * fontsize))  # average glyph ~0.55 em
    fig.supxlabel(textwrap.fill(text, chars), x=0.01, ha="left", fontsize=fontsize,
                  color="0.35", linespacing=1.2)


def plain_log_ticks(axis) -> None:
    """1-2-5 tick labels written as plain numbers ("0.5", "2", "20") on a log axis, so that a
    range narrower than a decade still gets readable labels."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def save(fig, stem: str | Path, *, formats: tuple[str, ...] = ("png", "pdf"),
         source: str | None = None, close: bool = True) -> list[Path]:
    """Write ``stem.<fmt>`` for each format, byte-stable; ``source`` goes into the metadata."""
    stem = Path(stem)
    out = []
    # Constrained layout settles in two passes when a wide title, a legend under the axes and
    # a note all compete for room (one pass can leave the y label past the left edge).
    fig.canvas.draw()
    for fmt in formats:
        if fmt == "pdf":
            meta = {"CreationDate": None, "Producer": None, "Creator": "passt-study"}
            if source:
                meta["Subject"] = source
        elif fmt == "png":
            meta = {"Software": None}
            if source:
                meta["Source"] = source
        else:
            meta = {}
        buf = io.BytesIO()
        with matplotlib.rc_context({"svg.hashsalt": "passt-study"}):
            fig.savefig(buf, format=fmt, metadata=meta)
        out.append(atomic_write_bytes(stem.with_suffix(f".{fmt}"), buf.getvalue()))
    if close:
        import matplotlib.pyplot as plt

        plt.close(fig)
    return out
