"""passt_lib: PaSST, patchout and coarse-to-fine training, small enough to read."""

from passt_lib.registry import create_model, list_models, register_model

__all__ = ["create_model", "list_models", "register_model"]
__version__ = "0.1.0"
