"""Windows over long input that follow a model's time grid.

A model sees a window of ``window`` frames, cut into time patches of ``patch`` frames every
``stride`` frames; one forward pass accepts up to ``columns`` time patches (the time
encodings it has). :class:`TimeGrid` says where windows start; :func:`slide_windows` cuts
an in-memory spectrogram with it. The rule, the same for every caller (``predict``, the
HEAR embeddings, ``PaSST.predict_long``):

- input that adds no time patch beyond what one forward accepts is ONE window of its own
  length: a 10.0 s clip (1,000 frames) of a 998-frame model gives 99 patch columns, as
  998 frames do, and runs as one window, unpadded;
- longer input: windows of ``window`` frames every ``hop`` frames, and a last window that
  ends at the input's end. No window is ever padded: every frame a window holds is input.

Timestamp embeddings tile patch columns instead (:func:`column_starts`): windows side by
side on the patch grid, the last one ending on the last column.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from passt_lib.grid import n_patches


@dataclass(frozen=True)
class TimeGrid:
    """A model's time axis: window length, patch width and stride, in frames."""

    window: int  # frames the model was trained on
    patch: int = 1
    stride: int = 1
    columns: int | None = None  # time patches one forward accepts (default: the window's)

    def __post_init__(self) -> None:
        if min(self.window, self.patch, self.stride) < 1 or self.patch > self.window:
            raise ValueError(f"a time grid needs 1 <= patch <= window and stride >= 1; got "
                             f"window={self.window}, patch={self.patch}, stride={self.stride}")

    @property
    def max_columns(self) -> int:
        return self.columns or n_patches(self.window, self.patch, self.stride)

    def fits(self, frames: int) -> bool:
        """Whether ``frames`` run as one forward pass (no time patch beyond the model's)."""
        return n_patches(frames, self.patch, self.stride) <= self.max_columns

    def starts(self, frames: int, hop: int) -> tuple[list[int], int]:
        """(window starts, window length) for input of ``frames`` frames (see the module doc).

        ``hop`` must be in [1, window]: a longer hop would leave frames in no window.
        """
        if not 1 <= hop <= self.window:
            raise ValueError(f"the hop must be in [1, {self.window}] frames (the window): a "
                             f"hop longer than the window leaves frames in no window; got {hop}")
        if self.fits(frames):
            return [0], frames
        last = frames - self.window
        return [*range(0, last, hop), last], self.window


def column_starts(n_columns: int, per_window: int) -> list[int]:
    """First patch columns of windows of ``per_window`` columns that tile ``n_columns``
    columns: side by side, the last one ending on the last column (overlapping its
    neighbour when the columns do not divide evenly)."""
    if n_columns <= per_window:
        return [0]
    return [*range(0, n_columns - per_window, per_window), n_columns - per_window]


def slide_windows(mel: torch.Tensor, grid: TimeGrid, hop: int
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Cut (B, 1, F, T) into the windows of ``grid`` (see the module doc).

    Returns (windows (B * W, 1, F, L), starts (W,), ends (W,) exclusive), windows ordered
    sound by sound.
    """
    b, _, f, t_in = mel.shape
    starts, length = grid.starts(t_in, hop)
    windows = torch.stack([mel[..., s:s + length] for s in starts], dim=1)  # (B, W, 1, F, L)
    starts_t = torch.tensor(starts)
    return windows.reshape(b * len(starts), 1, f, length), starts_t, starts_t + length
