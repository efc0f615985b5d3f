"""PANNs CNN baselines (Kong et al. 2020): CNN14, CNN10 and CNN6.

The architecture follows the authors' ``pytorch/models.py``:

- BatchNorm over the mel bins (``bn0``), SpecAugment in training
  (2 time stripes up to 64 frames, 2 frequency stripes up to 8 bins);
- conv blocks: two 3x3 convs without bias, each followed by BN + ReLU
  (CNN14, CNN10), or one 5x5 conv + BN + ReLU (CNN6); 2x2 average pooling after
  each block except CNN14's last; dropout 0.2 after every block;
- head: mean over frequency, max + mean over time, dropout 0.5,
  ``fc1`` + ReLU (the embedding), ``fc_audioset`` (the logits).

Parameter counts. The authors count trainable parameters
(``sum(p.numel() for p in model.parameters() if p.requires_grad)``). Their
STFT and mel matrices (``spectrogram_extractor.stft.conv_{real,imag}.weight``,
``logmel_extractor.melW``) are frozen ``nn.Parameter``s, so they are not
counted; ``bn0``'s weight and bias are. Here the front-end lives outside the
model (``.mel_config`` describes it), so every parameter of these modules is
trainable and ``sum(p.numel() for p in model.parameters())`` gives exactly
80,753,615 (CNN14), 5,219,279 (CNN10) and 4,837,455 (CNN6) with 527 classes.

Cost. On a 10 s clip (64 x 1001) CNN14 does 20.04 G multiply-accumulates;
adding the authors' STFT conv and mel matrix (1.08 G) gives their 42.2 G
"mult-adds" (they count each MAC twice). ``tests/test_cnn.py`` checks this.

Checkpoints. Module and parameter names are the authors' (``bn0``,
``conv_block1.conv1.weight``, ``conv_block1.bn1.*``, ..., ``fc1``,
``fc_audioset``), and the network works internally in their (B, 1, T, F)
layout so their conv kernels load unchanged. Their checkpoints also hold the
frozen extractor weights: ``load_state_dict`` drops those keys (after checking
that their shapes match this model's front-end) through a load hook, so a
PANNs state dict loads with plain ``model.load_state_dict(sd)``;
``load_panns_state_dict`` also unwraps the ``{"model": ...}`` checkpoint dict
and a DataParallel ``module.`` prefix.

Differences from the reference, on purpose: ``forward`` returns logits (no
sigmoid) and takes log-mel spectrograms, not waveforms; SpecAugment uses
torchaudio's per-sample masking (stripe width uniform in [0, width), start
uniform) instead of torchlibrosa's ``DropStripes`` (same distribution up to
integer rounding).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchaudio.functional as AF

from passt_lib.configs import replace_strict
from passt_lib.frontend import MEL_PRESETS, MelConfig, with_front_end
from passt_lib.registry import register_presets

EXTRACTOR_PREFIXES = ("spectrogram_extractor.", "logmel_extractor.")


@dataclass(frozen=True)
class CNNConfig:
    """A PANNs CNN and the front-end it expects."""

    block: str  # "double3x3" (CNN14, CNN10) or "single5x5" (CNN6)
    channels: tuple[int, ...]  # output channels of each conv block
    pools: tuple[int, ...]  # average-pool size after each block (1 = none)
    n_classes: int = 527
    block_dropout: float = 0.2
    head_dropout: float = 0.5
    spec_augment: bool = True
    time_stripes: int = 2
    time_drop_width: int = 64
    freq_stripes: int = 2
    freq_drop_width: int = 8
    mel: MelConfig = MEL_PRESETS["panns"]  # the authors' torchlibrosa front-end at 32 kHz

    def __post_init__(self) -> None:
        if self.block not in ("double3x3", "single5x5"):
            raise ValueError(f"block must be 'double3x3' or 'single5x5', got {self.block!r}")
        if len(self.pools) != len(self.channels):
            raise ValueError(
                f"got {len(self.pools)} pool sizes for {len(self.channels)} conv blocks; "
                "expected one per block"
            )
        if self.n_classes < 1:
            raise ValueError(f"n_classes must be positive, got {self.n_classes}")

    @property
    def input_fdim(self) -> int:
        """Mel bins (``mel.n_mels``)."""
        return self.mel.n_mels

    @property
    def embed_dim(self) -> int:
        return self.channels[-1]

    @property
    def min_input(self) -> int:
        """Smallest frequency/time extent that survives the pooling."""
        size = 1
        for p in self.pools:
            size *= p
        return size

    @classmethod
    def preset(cls, name: str, **overrides) -> CNNConfig:
        if name not in CNN_PRESETS:
            raise ValueError(f"unknown CNN preset {name!r}; expected one of {', '.join(CNN_PRESETS)}")
        base = CNN_PRESETS[name]
        return replace_strict(base, **with_front_end(base.mel, overrides))


CNN_PRESETS: dict[str, CNNConfig] = {
    "cnn14": CNNConfig(
        block="double3x3", channels=(64, 128, 256, 512, 1024, 2048), pools=(2, 2, 2, 2, 2, 1)
    ),
    "cnn10": CNNConfig(block="double3x3", channels=(64, 128, 256, 512), pools=(2, 2, 2, 2)),
    "cnn6": CNNConfig(block="single5x5", channels=(64, 128, 256, 512), pools=(2, 2, 2, 2)),
}


def mel_batch(mel: torch.Tensor, n_mels: int) -> torch.Tensor:
    """Check a mel batch (B, 1, F, T) or (B, F, T) and return it as (B, 1, F, T)."""
    if mel.dim() == 3:
        mel = mel.unsqueeze(1)  # (B, F, T) -> (B, 1, F, T)
    if mel.dim() != 4 or mel.shape[1] != 1:
        raise ValueError(f"expected mel of shape (B, 1, F, T) or (B, F, T), got {tuple(mel.shape)}")
    if mel.shape[2] != n_mels:
        raise ValueError(f"got {mel.shape[2]} mel bins but the model expects {n_mels}")
    return mel


def spec_augment(x: torch.Tensor, config: CNNConfig) -> torch.Tensor:
    """PANNs SpecAugment on (B, 1, T, F): zero stripes drawn independently per sample."""
    for _ in range(config.time_stripes):
        x = AF.mask_along_axis_iid(x, min(config.time_drop_width, x.shape[2]), 0.0, axis=2)
    for _ in range(config.freq_stripes):
        x = AF.mask_along_axis_iid(x, min(config.freq_drop_width, x.shape[3]), 0.0, axis=3)
    return x


def _init_layer(layer: nn.Module) -> None:
    nn.init.xavier_uniform_(layer.weight)
    if getattr(layer, "bias", None) is not None:
        nn.init.zeros_(layer.bias)


def _init_bn(bn: nn.BatchNorm2d) -> None:
    nn.init.ones_(bn.weight)
    nn.init.zeros_(bn.bias)


class ConvBlock(nn.Module):
    """Conv (no bias) + BN + ReLU, once (5x5) or twice (3x3), then average pooling."""

    def __init__(self, in_channels: int, out_channels: int, kind: str) -> None:
        super().__init__()
        k = 5 if kind == "single5x5" else 3
        self.conv1 = nn.Conv2d(in_channels, out_channels, k, padding=k // 2, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.double = kind == "double3x3"
        if self.double:
            self.conv2 = nn.Conv2d(out_channels, out_channels, k, padding=k // 2, bias=False)
            self.bn2 = nn.BatchNorm2d(out_channels)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                _init_layer(m)
            elif isinstance(m, nn.BatchNorm2d):
                _init_bn(m)

    def forward(self, x: torch.Tensor, pool: int) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        if self.double:
            x = F.relu(self.bn2(self.conv2(x)))
        return F.avg_pool2d(x, pool) if pool > 1 else x


class PANNsCNN(nn.Module):
    """A PANNs CNN on log-mel input: ``forward(mel)`` -> logits (B, n_classes)."""

    def __init__(self, config: CNNConfig) -> None:
        super().__init__()
        self.config = config
        self.n_classes = config.n_classes
        self.bn0 = nn.BatchNorm2d(config.input_fdim)
        _init_bn(self.bn0)
        self.block_names: list[str] = []
        in_ch = 1
        for i, out_ch in enumerate(config.channels):
            name = f"conv_block{i + 1}"
            self.add_module(name, ConvBlock(in_ch, out_ch, config.block))
            self.block_names.append(name)
            in_ch = out_ch
        self.fc1 = nn.Linear(config.embed_dim, config.embed_dim)
        self.fc_audioset = nn.Linear(config.embed_dim, config.n_classes)
        _init_layer(self.fc1)
        _init_layer(self.fc_audioset)
        self.register_load_state_dict_pre_hook(_drop_extractor_keys)

    @property
    def mel_config(self) -> MelConfig:
        """The authors' torchlibrosa front-end (``MelConfig.preset("panns")``) at this config."""
        return self.config.mel

    def forward_embedding(self, mel: torch.Tensor) -> torch.Tensor:
        """mel (B, 1, F, T) or (B, F, T) -> embedding (B, D), D = last block's channels."""
        x = mel_batch(mel, self.config.input_fdim)
        f, t = x.shape[2], x.shape[3]
        if min(f, t) < self.config.min_input:
            raise ValueError(
                f"got a {f} x {t} (mel bins x frames) input; the pooling needs at least "
                f"{self.config.min_input} in both"
            )
        x = x.transpose(2, 3)  # (B, 1, T, F): the authors' layout, so their kernels load as-is
        x = self.bn0(x.transpose(1, 3)).transpose(1, 3)  # BN over mel bins via (B, F, T, 1)
        if self.training and self.config.spec_augment:
            x = spec_augment(x, self.config)
        for name, pool in zip(self.block_names, self.config.pools):
            x = getattr(self, name)(x, pool)  # (B, C, T', F')
            x = F.dropout(x, self.config.block_dropout, self.training)
        x = x.mean(dim=3)  # (B, C, T')
        x = x.amax(dim=2) + x.mean(dim=2)  # (B, C)
        x = F.dropout(x, self.config.head_dropout, self.training)
        return F.relu(self.fc1(x))  # (B, D)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return self.fc_audioset(self.forward_embedding(mel))


def _drop_extractor_keys(module, state_dict, prefix, local_metadata, strict, missing, unexpected,
                         errors) -> None:
    """Load hook: absorb the authors' frozen STFT/mel weights after checking their shapes."""
    c = module.config
    n_bins = c.mel.n_fft // 2 + 1
    expected = {
        "spectrogram_extractor.stft.conv_real.weight": (n_bins, 1, c.mel.n_fft),
        "spectrogram_extractor.stft.conv_imag.weight": (n_bins, 1, c.mel.n_fft),
        "logmel_extractor.melW": (n_bins, c.input_fdim),
    }
    for key in [k for k in state_dict if k.startswith(prefix)]:
        local = key[len(prefix):]
        if not local.startswith(EXTRACTOR_PREFIXES):
            continue
        shape = tuple(state_dict[key].shape)
        if local in expected and shape != expected[local]:
            raise ValueError(
                f"checkpoint {key} has shape {shape} but this model's front-end "
                f"(n_fft={c.mel.n_fft}, n_mels={c.input_fdim}) gives {expected[local]}"
            )
        del state_dict[key]


def panns_state_dict(checkpoint: Mapping[str, object]) -> dict[str, torch.Tensor]:
    """The model state dict inside a PANNs checkpoint (``{"model": sd, ...}`` or ``sd``).

    Strips a DataParallel ``module.`` prefix; the extractor keys are kept (the
    model's load hook checks and drops them).
    """
    sd = checkpoint.get("model", checkpoint)
    if not isinstance(sd, Mapping):
        raise ValueError(f"expected a state dict or a {{'model': state_dict}} checkpoint, got {type(sd)}")
    return {k.removeprefix("module."): v for k, v in sd.items()}


def load_panns_state_dict(model: PANNsCNN, checkpoint: Mapping[str, object], strict: bool = True):
    """Load a checkpoint in the authors' layout into ``model``; returns load_state_dict's result."""
    return model.load_state_dict(panns_state_dict(checkpoint), strict=strict)


register_presets(CNN_PRESETS, CNNConfig.preset, PANNsCNN, display=str.upper, scale_mels=True)
