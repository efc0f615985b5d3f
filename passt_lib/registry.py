"""One factory for every model, in the spirit of ``timm.create_model``.

Model modules register a factory per preset name with ``@register_model``;
``create_model(name, **overrides)`` builds it. An unknown name lists the known
ones.
"""

from __future__ import annotations

from collections.abc import Callable

import torch.nn as nn

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    def wrap(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = factory
        return factory

    return wrap


def _load_builtin_models() -> None:
    # Importing the model modules runs their @register_model decorators.
    from passt_lib import cnn, mobilenet, model  # noqa: F401


def list_models() -> list[str]:
    _load_builtin_models()
    return sorted(_REGISTRY)


def create_model(name: str, **overrides) -> nn.Module:
    """Build the model registered as ``name``; keyword overrides go to its config."""
    _load_builtin_models()
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name](**overrides)
