"""The study's scales: one code path, three sizes.

- ``smoke``: seconds; used by tests and notebook smoke runs.
- ``embedded``: the default; the whole study on a 2-core CPU in minutes, on
  the real-audio embedded dataset.
- ``paper``: PaSST-S at full size (10 s, 128 mel bins, base width) on AudioSet
  HDF5 files on GPUs.

A scale fixes the input (sample rate, clip length, mel bins), the size of the
transformer, and the training budget. Presets keep their architecture; their
patchout amounts, defined on the paper's grid, are rescaled in proportion to
the scale's grid so that e.g. PaSST-S drops the same fraction of time columns
(40 of 99) at every scale. ``passt_lib.models.create_model(name, scale, ...)`` builds any
registered model at a scale (``models.preset_config`` gives a transformer's config).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from passt_lib.frontend import MelConfig, n_frames

PAPER_FDIM, PAPER_TDIM = 128, 998


@dataclass(frozen=True)
class Scale:
    name: str
    sample_rate: int
    clip_seconds: float
    n_mels: int
    vit_size: str  # the transformers' ViT size: "base", "small" or "tiny" (model.VIT_SIZES)
    depth: int | None  # None keeps the ViT size's depth
    epochs: int
    batch_size: int
    lr: float
    warmup_epochs: float
    n_train: int  # clips in the embedded train split (ignored at paper scale)
    n_eval: int
    freqm: int  # SpecAugment masks, scaled with the input
    timem: int
    # The front-end's fmin/fmax draw (training only). Off at the small scales, where it
    # gained nothing (README, "The scales"); without it, and without masks, the training
    # front-end has no randomness, so its mels are computed once per run instead of every step.
    band_augment: bool = True
    # The reference recipe's augmentation (mixup, gain, roll, balanced sampling) regularises
    # long AudioSet runs; at the small scales' few epochs it only slows learning down.
    augment: bool = True
    # Models that can (ModelInfo.scale_mels: the CNNs) take ``n_mels`` too; False: they keep
    # their own front-end (the paper scale, where every model has its published input).
    every_model_takes_n_mels: bool = True

    @property
    def n_samples(self) -> int:
        return int(round(self.sample_rate * self.clip_seconds))

    @property
    def n_frames(self) -> int:
        """Frames of one clip through the transformers' front-end (``frontend.n_frames``)."""
        return n_frames(MelConfig(sample_rate=self.sample_rate, n_mels=self.n_mels),
                        self.n_samples)

    @property
    def input_tdim(self) -> int:
        # The paper configures 998 frames for 10 s clips (the reference's
        # "small preprocessing issue"); the smaller scales use what the clip gives.
        return PAPER_TDIM if self.name == "paper" else self.n_frames


SCALES: dict[str, Scale] = {
    "smoke": Scale(
        name="smoke", sample_rate=32000, clip_seconds=1.0, n_mels=64, vit_size="tiny", depth=1,
        epochs=1, batch_size=8, lr=1e-3, warmup_epochs=0.0, n_train=48, n_eval=24,
        freqm=8, timem=20, augment=False, band_augment=False,
    ),
    "embedded": Scale(
        name="embedded", sample_rate=32000, clip_seconds=2.0, n_mels=64, vit_size="tiny", depth=4,
        epochs=6, batch_size=16, lr=6e-4, warmup_epochs=0.5, n_train=800, n_eval=300,
        # No SpecAugment: at this budget (400 steps from scratch) masks cost mAP (README).
        freqm=0, timem=0, augment=False, band_augment=False,
    ),
    "paper": Scale(
        name="paper", sample_rate=32000, clip_seconds=10.0, n_mels=128, vit_size="base", depth=None,
        epochs=130, batch_size=12, lr=2e-5, warmup_epochs=5.0, n_train=0, n_eval=0,
        freqm=48, timem=192, every_model_takes_n_mels=False,
    ),
}


def get_scale(name: str) -> Scale:
    if name not in SCALES:
        raise ValueError(f"unknown scale {name!r}; expected one of {', '.join(SCALES)}")
    return SCALES[name]


def mel_config_at(model, scale: Scale | str, **overrides):
    """The training front-end of ``model`` at ``scale``: its own ``MelConfig`` with the scale's
    SpecAugment masks and, at the small scales, no fmin/fmax draw; ``overrides`` win."""
    scale = get_scale(scale) if isinstance(scale, str) else scale
    band = {} if scale.band_augment else {"fmin_aug_range": 0, "fmax_aug_range": 0}
    return model.mel_config.replace(**{"freqm": scale.freqm, "timem": scale.timem, **band,
                                       **overrides})


def replace(scale: Scale, **changes) -> Scale:
    return dataclasses.replace(scale, **changes)
