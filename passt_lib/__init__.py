"""passt_lib: PaSST, patchout and coarse-to-fine training, small enough to read.

Public names are imported lazily, so that ``python -m passt_lib.<module>`` and
``passt-study --help`` start without importing torch.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "create_model": "passt_lib.models",
    "list_models": "passt_lib.models",
    "register_model": "passt_lib.registry",
    "PaSST": "passt_lib.model",
    "PaSSTConfig": "passt_lib.model",
    "MelConfig": "passt_lib.frontend",
    "MelFrontend": "passt_lib.frontend",
    "load_audio": "passt_lib.audio",
    "TrainConfig": "passt_lib.train_config",
    "get_scale": "passt_lib.scales",
    "load_model": "passt_lib.inference",
    "AudioTagger": "passt_lib.inference",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'passt_lib' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
