"""EfficientAT-style MobileNetV3 baselines (Schmid, Koutini, Widmer): mn04, mn10, mn20, mn40.

MobileNetV3-Large blocks (Howard et al. 2019, Table 1) scaled by a width
multiplier, on one-channel log-mel input, as in EfficientAT's ``models/mn``:

- stem: 3x3 conv, stride 2, BN, hardswish;
- 15 inverted-residual blocks: 1x1 expansion (skipped when it would not widen),
  depthwise kxk conv, channel squeeze-excitation (Linear layers, bottleneck
  ``expanded // 4`` rounded to a multiple of 8, ReLU, sigmoid) where the table
  says so, 1x1 projection; residual when stride 1 and widths match;
- 1x1 conv to ``6 x`` the last block's width, BN, hardswish;
- head ("mlp"): global average pooling, Linear to ``1280 x width``, hardswish,
  dropout 0.2, Linear to the classes.

With 527 classes the parameter counts are 0.984M / 4.88M / 17.91M / 68.43M and
the MACs per 10 s clip (128 x 1000) 0.11 / 0.54 / 2.06 / 8.03 G for mn04 /
mn10 / mn20 / mn40, as EfficientAT reports. All BatchNorms use eps 1e-3 and momentum 0.01. ``forward_embedding`` returns the
globally pooled last feature map (EfficientAT's "features" output).
Module names follow EfficientAT (``features.N.block.M``, ``classifier.2`` /
``classifier.5``); ``load_efficientat_state_dict`` maps their one extra level
of SE nesting (``conc_se_layers.0``) so their checkpoints load.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn as nn
from torchvision.ops.misc import Conv2dNormActivation

from passt_lib.cnn import mel_batch
from passt_lib.configs import replace_strict
from passt_lib.frontend import MEL_PRESETS, MelConfig, with_front_end
from passt_lib.registry import register_presets

# MobileNetV3-Large: (in, kernel, expanded, out, squeeze-excitation, hardswish, stride)
MOBILENET_V3_LARGE: tuple[tuple[int, int, int, int, bool, bool, int], ...] = (
    (16, 3, 16, 16, False, False, 1),
    (16, 3, 64, 24, False, False, 2),
    (24, 3, 72, 24, False, False, 1),
    (24, 5, 72, 40, True, False, 2),
    (40, 5, 120, 40, True, False, 1),
    (40, 5, 120, 40, True, False, 1),
    (40, 3, 240, 80, False, True, 2),
    (80, 3, 200, 80, False, True, 1),
    (80, 3, 184, 80, False, True, 1),
    (80, 3, 184, 80, False, True, 1),
    (80, 3, 480, 112, True, True, 1),
    (112, 3, 672, 112, True, True, 1),
    (112, 5, 672, 160, True, True, 2),
    (160, 5, 960, 160, True, True, 1),
    (160, 5, 960, 160, True, True, 1),
)
LAST_CHANNEL = 1280


def make_divisible(v: float, divisor: int = 8) -> int:
    """Round ``v`` to the nearest multiple of ``divisor``, never more than 10% down."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


@dataclass(frozen=True)
class MobileNetConfig:
    """An EfficientAT MobileNetV3 and the front-end it expects."""

    width_mult: float = 1.0
    n_classes: int = 527
    head_dropout: float = 0.2
    se_reduction: int = 4
    mel: MelConfig = MEL_PRESETS["efficientat"]  # its AugmentMelSTFT at 32 kHz, AudioSet masks

    def __post_init__(self) -> None:
        if self.width_mult <= 0:
            raise ValueError(f"width_mult must be positive, got {self.width_mult}")
        if self.n_classes < 1:
            raise ValueError(f"n_classes must be positive, got {self.n_classes}")

    @property
    def input_fdim(self) -> int:
        """Mel bins (``mel.n_mels``)."""
        return self.mel.n_mels

    def channels(self, c: int) -> int:
        return make_divisible(c * self.width_mult)

    @classmethod
    def preset(cls, name: str, **overrides) -> MobileNetConfig:
        if name not in MOBILENET_PRESETS:
            raise ValueError(
                f"unknown MobileNet preset {name!r}; expected one of {', '.join(MOBILENET_PRESETS)}"
            )
        base = MOBILENET_PRESETS[name]
        return replace_strict(base, **with_front_end(base.mel, overrides))


MOBILENET_PRESETS: dict[str, MobileNetConfig] = {
    "mn04": MobileNetConfig(width_mult=0.4),
    "mn10": MobileNetConfig(width_mult=1.0),
    "mn20": MobileNetConfig(width_mult=2.0),
    "mn40": MobileNetConfig(width_mult=4.0),
}

_norm = partial(nn.BatchNorm2d, eps=1e-3, momentum=0.01)


class SqueezeExcitation(nn.Module):
    """Channel squeeze-excitation with Linear layers (EfficientAT's layout; torchvision's uses convs)."""

    def __init__(self, channels: int, squeeze: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(channels, squeeze)
        self.fc2 = nn.Linear(squeeze, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean(dim=(2, 3))  # (B, C)
        s = torch.sigmoid(self.fc2(torch.relu(self.fc1(s))))
        return x * s[:, :, None, None]  # (B, C, 1, 1) broadcast over (F, T)


class InvertedResidual(nn.Module):
    def __init__(self, c_in: int, kernel: int, c_exp: int, c_out: int, use_se: bool,
                 use_hs: bool, stride: int, se_reduction: int) -> None:
        super().__init__()
        act = nn.Hardswish if use_hs else nn.ReLU
        layers: list[nn.Module] = []
        if c_exp != c_in:
            layers.append(Conv2dNormActivation(c_in, c_exp, 1, norm_layer=_norm, activation_layer=act))
        layers.append(Conv2dNormActivation(c_exp, c_exp, kernel, stride=stride, groups=c_exp,
                                           norm_layer=_norm, activation_layer=act))
        if use_se:
            layers.append(SqueezeExcitation(c_exp, make_divisible(c_exp // se_reduction)))
        layers.append(Conv2dNormActivation(c_exp, c_out, 1, norm_layer=_norm, activation_layer=None))
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.residual else y


class MobileNet(nn.Module):
    """EfficientAT MobileNetV3 on log-mel input: ``forward(mel)`` -> logits (B, n_classes)."""

    def __init__(self, config: MobileNetConfig) -> None:
        super().__init__()
        self.config = config
        self.n_classes = config.n_classes
        ch = config.channels
        layers: list[nn.Module] = [
            Conv2dNormActivation(1, ch(MOBILENET_V3_LARGE[0][0]), 3, stride=2, norm_layer=_norm,
                                 activation_layer=nn.Hardswish)
        ]
        for c_in, k, c_exp, c_out, se, hs, stride in MOBILENET_V3_LARGE:
            layers.append(InvertedResidual(ch(c_in), k, ch(c_exp), ch(c_out), se, hs, stride,
                                           config.se_reduction))
        c_last = ch(MOBILENET_V3_LARGE[-1][3])
        self.embed_dim = 6 * c_last
        layers.append(Conv2dNormActivation(c_last, self.embed_dim, 1, norm_layer=_norm,
                                           activation_layer=nn.Hardswish))
        self.features = nn.Sequential(*layers)
        hidden = ch(LAST_CHANNEL)
        self.classifier = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(1),
            nn.Linear(self.embed_dim, hidden),
            nn.Hardswish(),
            nn.Dropout(config.head_dropout),
            nn.Linear(hidden, config.n_classes),
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    @property
    def mel_config(self) -> MelConfig:
        """EfficientAT's front-end (``MelConfig.preset("efficientat")``) at this config."""
        return self.config.mel

    def feature_map(self, mel: torch.Tensor) -> torch.Tensor:
        """mel (B, 1, F, T) or (B, F, T) -> last feature map (B, 6 x width, F/32, T/32)."""
        return self.features(mel_batch(mel, self.config.input_fdim))

    def forward_embedding(self, mel: torch.Tensor) -> torch.Tensor:
        return self.feature_map(mel).mean(dim=(2, 3))  # (B, D)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.feature_map(mel))  # (B, n_classes)


def efficientat_state_dict(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename an EfficientAT ``models/mn`` state dict to this module's keys."""
    return {k.replace(".conc_se_layers.0.", "."): v for k, v in sd.items()}


def load_efficientat_state_dict(model: MobileNet, sd: Mapping[str, torch.Tensor],
                                strict: bool = True):
    return model.load_state_dict(efficientat_state_dict(sd), strict=strict)


register_presets(MOBILENET_PRESETS, MobileNetConfig.preset, MobileNet, scale_mels=True)
