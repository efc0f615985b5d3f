"""Adding a model: register a factory, and training and the benchmarks take it by name.

The model below is defined here, not in passt_lib: it implements the model protocol
(``passt_lib.registry.AudioModel``) and nothing else, and trains through ``train(config)``
and runs in the Table 1 benchmark without a line of library code changed.
"""

import csv

import pytest
import torch
import torch.nn as nn
from tones import tiny_config

from passt_lib import registry
from passt_lib.frontend import MelConfig
from passt_lib.models import create_model

NAME = "tiny-mlp-test"


class TinyMLP(nn.Module):
    """Mean over time of the mel spectrogram, one hidden layer, a head."""

    def __init__(self, n_classes: int = 10, input_fdim: int = 128, hidden: int = 32):
        super().__init__()
        self.n_classes, self.input_fdim = n_classes, input_fdim
        self.body = nn.Sequential(nn.Linear(input_fdim, hidden), nn.GELU())
        self.head = nn.Linear(hidden, n_classes)

    @property
    def mel_config(self) -> MelConfig:
        return MelConfig(n_mels=self.input_fdim)

    def forward_embedding(self, mel: torch.Tensor) -> torch.Tensor:
        mel = mel.flatten(1, -2) if mel.dim() == 4 else mel  # (B, 1, F, T) -> (B, F, T)
        return self.body(mel.mean(dim=-1))  # (B, hidden)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_embedding(mel))  # (B, C)


@pytest.fixture
def registered():
    registry.register_model(NAME, display="TinyMLP", scale_mels=True)(TinyMLP)
    yield NAME
    registry._REGISTRY.pop(NAME)


def test_a_new_model_trains_and_benchmarks_by_name(registered, tiny_data, tmp_path):
    from passt_lib import train
    from passt_lib.bench import table

    # the model protocol, by behaviour: logits and embeddings per clip, its front-end's bins
    model = create_model(NAME, n_classes=5).eval()
    mel = torch.randn(3, 1, model.mel_config.n_mels, 40)  # (B, 1, F, T)
    assert model(mel).shape == (3, 5) and model.n_classes == 5
    assert torch.equal(model(mel), model(mel[:, 0]))  # (B, F, T) alike
    assert model.forward_embedding(mel).shape == (3, 32)
    cfg = tiny_config(tiny_data, tmp_path / "run").replace(model=NAME)
    res = train.train(cfg)
    m = res.metrics
    assert res.completed and m["preset"] == NAME and 0 <= m["eval_map"] <= 1
    assert res.model.input_fdim == 64  # the smoke scale's mel bins (scale_mels=True)
    assert m["tokens"] is None and m["train_flops"] > 0  # counted, not analytic
    with pytest.raises(ValueError, match="needs a PaSST/AST model"):
        train.train(cfg.replace(schedule="pool:2x1,full:1", epochs=None,
                                out_dir=str(tmp_path / "c2f")))
    out = tmp_path / "table.csv"
    assert table.main(["--scale", "smoke", "--models", NAME, "passt-s", "--steps", "1",
                       "--warmup", "0", "--out", str(out)]) == 0
    rows = {r["preset"]: r for r in csv.DictReader(out.open())}
    assert rows[NAME]["model"] == "TinyMLP" and float(rows[NAME]["train_samples_per_s"]) > 0
    assert rows[NAME]["seq_len"] == "" and rows["passt-s"]["model"] == "PaSST-S"
