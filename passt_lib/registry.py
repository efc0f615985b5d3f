"""Every model by name, and what the library asks of a model.

Model modules register a factory per preset name with ``@register_model(name, ...)`` (or
:func:`register_presets` for a family of presets). This module imports nothing of the
library: ``passt_lib.models`` imports the model modules, so that their registrations run,
and builds them (``create_model``).

The model protocol (:class:`AudioModel`): what training, evaluation, FLOP counting and the
benchmarks call on a built model. The registry metadata (:class:`ModelInfo`): what they
need to know about a model before building it. Nothing in the library tests for a model's
class; it asks these two. To add a model, see "Adding a model" in the README.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
import torch.nn as nn


@runtime_checkable
class AudioModel(Protocol):
    """A model on log-mel spectrograms.

    - ``model(mel)``: logits (B, n_classes) for mel (B, F, T) or (B, 1, F, T);
    - ``model.forward_embedding(mel)``: the clip embedding (B, D) the head reads;
    - ``model.n_classes``; ``model.mel_config``: the ``MelConfig`` of the front-end it
      expects (mel bins, hop, normalisation), which training builds its front-end from;
    - optional ``model.no_weight_decay()``: names of parameters AdamW must not decay
      (default: none besides biases and norms, which are never decayed).
    Patch-grid transformers (PaSST, AST: :func:`is_patch_model`) also have ``config`` (a
    ``PaSSTConfig``), ``n_tokens(training)``, ``time_grid`` and ``predict_long``.
    """

    n_classes: int

    @property
    def mel_config(self): ...

    def forward(self, mel: torch.Tensor) -> torch.Tensor: ...

    def forward_embedding(self, mel: torch.Tensor) -> torch.Tensor: ...


@dataclass(frozen=True)
class ModelInfo:
    """What is known about a registered model before it is built.

    display: its name in tables and figures ("PaSST-S").
    transformer: a PaSST / AST preset (``passt_lib.model``): the scales set its ViT size,
        depth, input size and patchout (``models.preset_config``; read there only: built
        models say what they can do through the protocol above).
    scale_mels: at the smoke and embedded scales it is built with the scale's mel bins
        (``input_fdim``); otherwise it keeps its own front-end at every scale.
    """

    name: str
    factory: Callable[..., nn.Module]
    display: str
    transformer: bool = False
    scale_mels: bool = False


_REGISTRY: dict[str, ModelInfo] = {}


def register_model(name: str, *, display: str | None = None, transformer: bool = False,
                   scale_mels: bool = False
                   ) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: register ``factory(**overrides) -> model`` under ``name``."""

    def wrap(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = ModelInfo(name, factory, display or name, transformer, scale_mels)
        return factory

    return wrap


def register_presets(names, preset: Callable[..., object], model: Callable[[object], nn.Module],
                     *, display: Callable[[str], str] = str, **info) -> None:
    """Register a model family: each preset name builds ``model(preset(name, **overrides))``
    (a config class's ``preset`` and the model class), shown as ``display(name)``; ``info``
    are the other :class:`ModelInfo` fields."""
    for name in names:
        register_model(name, display=display(name), **info)(
            functools.partial(_build_preset, preset, model, name))


def _build_preset(preset, model, name: str, **overrides) -> nn.Module:
    return model(preset(name, **overrides))


def registered() -> dict[str, ModelInfo]:
    """The models registered so far (``passt_lib.models`` imports the built-in ones)."""
    return dict(_REGISTRY)


def is_patch_model(model: nn.Module) -> bool:
    """Whether ``model`` is a patch-grid transformer (PaSST / AST): it has ``config`` (a
    ``PaSSTConfig``), ``n_tokens`` and ``time_grid``, so patchout, coarse-to-fine phases and
    analytic FLOPs apply to it."""
    return callable(getattr(model, "n_tokens", None)) and hasattr(model, "config")
