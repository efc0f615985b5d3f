"""Every model by name, and what the library asks of a model.

Model modules register a factory per preset name with ``@register_model(name, ...)``;
``create_model(name, **overrides)`` builds it; an unknown name lists the known ones.

The model protocol (:class:`AudioModel`): what training, evaluation, FLOP counting and the
benchmarks call on a built model. The registry metadata (:class:`ModelInfo`): what they
need to know about a model before building it. Nothing in the library tests for a model's
class; it asks these two. To add a model, see "Adding a model" in the README.
"""

from __future__ import annotations

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
    Transformers (``ModelInfo.transformer``) also have ``config`` (a ``PaSSTConfig``),
    ``n_tokens(training)`` and ``predict_long``.
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
    transformer: a PaSST / AST preset (``passt_lib.model``): patchout, coarse-to-fine
        phases, analytic FLOPs and token counts apply, and the scales set its width, depth,
        input size and patchout (``scales.preset_config``).
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


def _load_builtin_models() -> None:
    # Importing the model modules runs their @register_model decorators.
    from passt_lib import cnn, mobilenet, model  # noqa: F401


def list_models() -> list[str]:
    _load_builtin_models()
    return sorted(_REGISTRY)


def model_info(name: str) -> ModelInfo:
    """The registry entry of ``name``; an unknown name lists the known ones."""
    _load_builtin_models()
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def create_model(name: str, **overrides) -> nn.Module:
    """Build the model registered as ``name``; keyword overrides go to its config."""
    return model_info(name).factory(**overrides)
