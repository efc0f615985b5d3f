"""Every model by name: the one way to build one.

    create_model("passt-s")                                # the paper's PaSST-S, 527 classes
    create_model("passt-s", scale="embedded", n_classes=20)  # as the embedded study trains it
    create_model("cnn14", scale="smoke", n_classes=4)
    create_model("passt-s", pretrained="imagenet")          # weights load after the factory

This module imports the model modules so that their ``@register_model`` registrations run
(the registry itself, ``passt_lib.registry``, imports none of them), and owns what a preset
becomes at a scale (``passt_lib.scales`` is the table of scales). The other ways in are
``PaSST(config)`` for a config and ``passt_lib.load_model(path)`` for a file.
"""

from __future__ import annotations

import torch.nn as nn

from passt_lib import cnn, mobilenet, model  # noqa: F401  (their registrations run)
from passt_lib.checkpoints import load_pretrained
from passt_lib.grid import patch_grid
from passt_lib.model import PaSST, PaSSTConfig
from passt_lib.patchout import rescale_amounts
from passt_lib.registry import ModelInfo, registered
from passt_lib.scales import Scale, get_scale


def list_models() -> list[str]:
    return sorted(registered())


def model_info(name: str) -> ModelInfo:
    """The registry entry of ``name``; an unknown name lists the known ones."""
    models = registered()
    if name not in models:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(sorted(models))}")
    return models[name]


def preset_config(preset: str, scale: Scale | str = "paper", *, size: str | None = None,
                  depth: int | None = None, input_size: tuple[int, int] | None = None,
                  **overrides) -> PaSSTConfig:
    """A transformer preset's ``PaSSTConfig`` at ``scale``: the scale's ViT size and depth (or
    ``size`` / ``depth``), the scale's input (or ``input_size`` = (mel bins, frames)), and
    the preset's patchout amounts, defined on the paper's 128 x 998 grid, rescaled in
    proportion to this grid (``patchout.rescale_amounts``: an amount that would drop every
    column is an error). Keyword ``overrides`` are ``PaSSTConfig`` fields and win.
    """
    scale = get_scale(scale) if isinstance(scale, str) else scale
    paper = PaSSTConfig.preset(preset)
    fdim, tdim = input_size or (scale.n_mels, scale.input_tdim)
    grid = patch_grid(fdim, tdim, paper.patch_size, (paper.fstride, paper.tstride))
    amounts = rescale_amounts(paper.patchout_amounts, grid, paper.grid,
                              where=f"{preset} at {fdim} x {tdim}: the grid has")
    depth = depth if depth is not None else scale.depth
    return PaSSTConfig.preset(preset, size=size or scale.vit_size, depth=depth,
                              **{"input_fdim": fdim, "input_tdim": tdim, **amounts, **overrides})


def create_model(name: str, scale: Scale | str = "paper", n_classes: int | None = None,
                 pretrained: str | None = None, **overrides) -> nn.Module:
    """Model ``name`` as it is built at ``scale`` (training, benchmarks and notebooks alike).

    Transformers (PaSST / AST presets) take the scale's ViT size, depth and input, with
    their patchout amounts rescaled to the scale's grid (:func:`preset_config`); other
    models take the scale's mel bins where their registration and the scale say so
    (``ModelInfo.scale_mels``, ``Scale.every_model_takes_n_mels``). ``overrides`` are
    fields of the model's config and win. ``pretrained="imagenet"`` then loads DeiT weights
    (``checkpoints.load_pretrained``).
    """
    info = model_info(name)
    scale = get_scale(scale) if isinstance(scale, str) else scale
    if n_classes is not None:
        overrides = {"n_classes": n_classes, **overrides}
    if info.transformer:
        built = PaSST(preset_config(name, scale, **overrides))
    else:
        if info.scale_mels and scale.every_model_takes_n_mels:
            overrides = {"input_fdim": scale.n_mels, **overrides}
        built = info.factory(**overrides)
    if pretrained is not None:
        load_pretrained(built, pretrained)
    return built
