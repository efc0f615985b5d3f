"""A tiny PANNs-layout dataset of tones and the smoke-scale config that trains on it in about a
second: what the training, pipeline, registry and inference tests train on."""

import h5py
import numpy as np

from passt_lib import train as T

SR = 32000


def write_tones(path, n, n_classes=4, seconds=1.0, seed=0):
    """A PANNs-layout HDF5 file: each clip holds the tones of its 1-2 classes plus noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(SR * seconds)) / SR
    targets = np.zeros((n, n_classes), dtype=bool)
    waves = np.zeros((n, t.size), dtype=np.int16)
    for i in range(n):
        labels = rng.choice(n_classes, size=rng.integers(1, 3), replace=False)
        targets[i, labels] = True
        x = 0.02 * rng.standard_normal(t.size)
        for c in labels:
            x += 0.2 * np.sin(2 * np.pi * (400 * 2 ** c) * t + rng.uniform(0, 6.3))
        waves[i] = np.round(np.clip(x, -1, 1) * 32767)
    with h5py.File(path, "w") as f:
        f["audio_name"] = np.array([f"clip{i:04d}".encode() for i in range(n)], dtype="S20")
        f["waveform"] = waves
        f["target"] = targets
        f.attrs["sample_rate"] = SR
    return str(path)


def tiny_config(data, out_dir, **kw):
    return T.TrainConfig.for_scale("passt-s", "smoke", data=data, out_dir=str(out_dir),
                                   epochs=kw.pop("epochs", 2), batch_size=8, progress=False,
                                   threads=1, **kw)
