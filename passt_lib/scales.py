"""The study's scales: one code path, three sizes.

- ``smoke``: seconds; used by tests and notebook smoke runs.
- ``embedded``: the default; the whole study on a 2-core CPU in minutes, on
  the real-audio embedded dataset.
- ``paper``: PaSST-S at full size (10 s, 128 mel bins, base width) on AudioSet
  HDF5 files on GPUs.

A scale fixes the input (sample rate, clip length, mel bins), the width of the
transformer, and the training budget. Presets keep their architecture; their
patchout amounts, defined on the paper's grid, are rescaled in proportion to
the scale's grid so that e.g. PaSST-S drops the same fraction of time columns
(40 of 99) at every scale.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from passt_lib.grid import patch_grid

PAPER_FDIM, PAPER_TDIM = 128, 998


@dataclass(frozen=True)
class Scale:
    name: str
    sample_rate: int
    clip_seconds: float
    n_mels: int
    width: str  # "base", "small" or "tiny" (see PaSSTConfig.preset)
    depth: int | None  # None keeps the width preset's depth
    epochs: int
    batch_size: int
    lr: float
    warmup_epochs: float
    n_train: int  # clips in the embedded train split (ignored at paper scale)
    n_eval: int
    freqm: int  # SpecAugment masks, scaled with the input
    timem: int
    # The reference recipe's augmentation (mixup, gain, roll, balanced sampling) regularises
    # long AudioSet runs; at the small scales' few epochs it only slows learning down.
    augment: bool = True

    @property
    def n_samples(self) -> int:
        return int(round(self.sample_rate * self.clip_seconds))

    @property
    def n_frames(self) -> int:
        # Pre-emphasis drops one sample; the centred STFT then gives S // hop + 1 frames.
        return (self.n_samples - 1) // 320 + 1

    @property
    def input_tdim(self) -> int:
        # The paper configures 998 frames for 10 s clips (the reference's
        # "small preprocessing issue"); the smaller scales use what the clip gives.
        return PAPER_TDIM if self.name == "paper" else self.n_frames


SCALES: dict[str, Scale] = {
    "smoke": Scale(
        name="smoke", sample_rate=32000, clip_seconds=1.0, n_mels=64, width="tiny", depth=1,
        epochs=1, batch_size=8, lr=1e-3, warmup_epochs=0.0, n_train=48, n_eval=24,
        freqm=8, timem=20, augment=False,
    ),
    "embedded": Scale(
        name="embedded", sample_rate=32000, clip_seconds=2.0, n_mels=64, width="tiny", depth=4,
        epochs=6, batch_size=16, lr=6e-4, warmup_epochs=0.5, n_train=800, n_eval=300,
        # No SpecAugment: at this budget (400 steps from scratch) masks cost a third of the mAP.
        freqm=0, timem=0, augment=False,
    ),
    "paper": Scale(
        name="paper", sample_rate=32000, clip_seconds=10.0, n_mels=128, width="base", depth=None,
        epochs=130, batch_size=12, lr=2e-5, warmup_epochs=5.0, n_train=0, n_eval=0,
        freqm=48, timem=192,
    ),
}


def get_scale(name: str) -> Scale:
    if name not in SCALES:
        raise ValueError(f"unknown scale {name!r}; expected one of {', '.join(SCALES)}")
    return SCALES[name]


def scale_patchout(amount: int, n: int, n_paper: int) -> int:
    """Rescale a patchout amount defined on the paper grid to a grid of ``n``."""
    if amount == 0:
        return 0
    return max(1, round(amount * n / n_paper))


def model_overrides(preset_config, scale: Scale | str) -> dict:
    """Config overrides that put a preset's ``PaSSTConfig`` at ``scale``.

    ``preset_config`` is the preset at paper scale; the result is a dict for
    ``dataclasses.replace`` / ``create_model(name, **overrides)``.
    """
    scale = get_scale(scale) if isinstance(scale, str) else scale
    if scale.name == "paper":
        return {}
    c = preset_config
    stride = (c.fstride, c.tstride)
    patch = (c.patch_size, c.patch_size)
    f_paper, t_paper = patch_grid(PAPER_FDIM, PAPER_TDIM, patch, stride)
    f, t = patch_grid(scale.n_mels, scale.input_tdim, patch, stride)
    return {
        "input_fdim": scale.n_mels,
        "input_tdim": scale.input_tdim,
        "s_patchout_f": min(scale_patchout(c.s_patchout_f, f, f_paper), f - 1),
        "s_patchout_t": min(scale_patchout(c.s_patchout_t, t, t_paper), t - 1),
        "u_patchout": min(scale_patchout(c.u_patchout, f * t, f_paper * t_paper), f * t - 1),
    }


def replace(scale: Scale, **changes) -> Scale:
    return dataclasses.replace(scale, **changes)
