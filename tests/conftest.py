"""Fixtures shared by several test files."""

import pytest
from tones import write_tones

from passt_lib.data.config import DataConfig


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("tones")
    return DataConfig(format="panns-hdf5", train_path=write_tones(root / "train.h5", 16, seed=0),
                      eval_path=write_tones(root / "eval.h5", 12, seed=1), n_classes=4,
                      clip_seconds=1.0, name="tones")


@pytest.fixture
def drawn():
    """``drawn(path)``: the PNG at ``path`` decoded as (H, W, RGB) uint8, after checking that it
    holds a figure (many colours, not one flat background) rather than an empty canvas."""
    import numpy as np
    from PIL import Image

    def check(path):
        with Image.open(path) as im:
            pixels = np.asarray(im.convert("RGB"))
        colours = np.unique(pixels.reshape(-1, 3), axis=0)
        assert len(colours) > 20, f"{path}: {len(colours)} colours, an empty figure"
        return pixels
    return check
