"""CNN baselines: PANNs CNN14/10/6 and EfficientAT MobileNetV3 (mn04..mn40)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from passt_lib.cnn import CNNConfig, PANNsCNN, load_panns_state_dict
from passt_lib.mobilenet import MobileNet, MobileNetConfig, load_efficientat_state_dict
from passt_lib.models import create_model, list_models

PANNS_COUNTS = {"cnn14": 80_753_615, "cnn10": 5_219_279, "cnn6": 4_837_455}
MOBILENET_COUNTS = {"mn04": 0.983e6, "mn10": 4.88e6, "mn20": 17.91e6, "mn40": 68.43e6}
ALL = [*PANNS_COUNTS, *MOBILENET_COUNTS]


def n_params(name: str, **overrides) -> int:
    # Built on the meta device: shapes only, no memory, no init cost.
    with torch.device("meta"):
        model = create_model(name, **overrides)
    return sum(p.numel() for p in model.parameters())


def tiny_mel(b: int = 2, f: int = 64, t: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.randn(b, 1, f, t, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", list(PANNS_COUNTS))
def test_panns_parameter_counts_are_exact(name):
    assert n_params(name, n_classes=527) == PANNS_COUNTS[name]


@pytest.mark.parametrize("name", list(MOBILENET_COUNTS))
def test_mobilenet_parameter_counts_within_two_percent(name):
    count = n_params(name, n_classes=527)
    assert abs(count / MOBILENET_COUNTS[name] - 1) < 0.02, count


def test_parameter_count_follows_n_classes():
    # Only the last Linear depends on the class count: (D + 1) parameters per class.
    assert n_params("cnn10", n_classes=10) == PANNS_COUNTS["cnn10"] - 517 * 513
    assert n_params("mn10", n_classes=10) - n_params("mn10", n_classes=9) == 1281


def test_registry_has_every_baseline():
    assert set(ALL) <= set(list_models())


@pytest.mark.parametrize("name", ["cnn6", "mn04"])
def test_unknown_override_is_an_error(name):
    with pytest.raises(ValueError, match="patch_size"):
        create_model(name, patch_size=16)


BIG = ("cnn14", "mn20", "mn40")  # tens of millions of weights: seconds of backward on 2 cores


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in BIG else n for n in ALL]
)
def test_tiny_forward_backward(name):
    torch.manual_seed(0)
    model = create_model(name, n_classes=5, input_fdim=32)
    model.train()
    mel = tiny_mel(f=32)
    logits = model(mel)
    assert logits.shape == (2, 5)
    assert model.n_classes == 5
    F.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits)).backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert grads[0].abs().sum() > 0  # the first conv (or bn0) receives gradient


@pytest.mark.parametrize("name", ["cnn6", "mn04"])
def test_eval_is_deterministic_and_training_is_not(name):
    torch.manual_seed(0)
    model = create_model(name, n_classes=5, input_fdim=64)
    mel = tiny_mel()
    model.eval()
    with torch.no_grad():
        a, b = model(mel), model(mel)
        emb = model.forward_embedding(mel[:, 0])  # (B, F, T) input is accepted too
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert emb.shape[0] == 2 and emb.dim() == 2
    model.train()
    with torch.no_grad():
        c, d = model(mel), model(mel)
    assert not torch.equal(c, d)  # dropout (and SpecAugment for PANNs) draw anew


@pytest.mark.parametrize("name,n_mels", [("cnn14", 64), ("cnn6", 64), ("mn10", 128)])
def test_wrong_mel_bins_names_both_numbers(name, n_mels):
    with torch.device("meta"):
        model = create_model(name, n_classes=3)
    assert model.mel_config.n_mels == n_mels
    with pytest.raises(ValueError, match=rf"got 40 mel bins.*expects {n_mels}"):
        model(torch.zeros(1, 1, 40, 100, device="meta"))


def test_cnn_rejects_input_too_short_for_its_pooling():
    model = create_model("cnn10", n_classes=3).eval()
    with pytest.raises(ValueError, match="5.*16"):
        model(torch.zeros(1, 1, 64, 5))


def test_front_end_configs():
    with torch.device("meta"):
        panns = create_model("cnn14")
        mn = create_model("mn10")
    p = panns.mel_config
    assert (p.sample_rate, p.n_mels, p.fmin, p.fmax) == (32000, 64, 50.0, 14000.0)
    assert (p.n_fft, p.win_length, p.hop_length) == (1024, 1024, 320)
    m = mn.mel_config
    assert (m.sample_rate, m.n_mels, m.n_fft, m.win_length, m.hop_length) == (
        32000, 128, 1024, 800, 320)


# ------------------------------------------------------------------ PANNs checkpoints


def authors_keys(config: CNNConfig) -> set[str]:
    """Keys of the authors' Cnn14/Cnn10/Cnn6 state dict (pytorch/models.py), written out."""
    bn = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    keys = {f"bn0.{s}" for s in bn}
    keys |= {"spectrogram_extractor.stft.conv_real.weight",
             "spectrogram_extractor.stft.conv_imag.weight", "logmel_extractor.melW"}
    n_convs = 2 if config.block == "double3x3" else 1
    for i in range(1, len(config.channels) + 1):
        for j in range(1, n_convs + 1):
            keys.add(f"conv_block{i}.conv{j}.weight")
            keys |= {f"conv_block{i}.bn{j}.{s}" for s in bn}
    keys |= {"fc1.weight", "fc1.bias", "fc_audioset.weight", "fc_audioset.bias"}
    return keys


def authors_checkpoint(model: PANNsCNN) -> dict:
    """A checkpoint as the authors save it: {"model": state_dict incl. extractor weights}."""
    c = model.config
    sd = dict(model.state_dict())
    n_bins = c.mel.n_fft // 2 + 1
    sd["spectrogram_extractor.stft.conv_real.weight"] = torch.randn(n_bins, 1, c.mel.n_fft)
    sd["spectrogram_extractor.stft.conv_imag.weight"] = torch.randn(n_bins, 1, c.mel.n_fft)
    sd["logmel_extractor.melW"] = torch.rand(n_bins, c.input_fdim)
    return {"iteration": 0, "model": sd}


def randomize_bn_stats(model: torch.nn.Module, seed: int = 1) -> None:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=g))
            m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))


@pytest.mark.parametrize("name", ["cnn14", "cnn10", "cnn6"])
def test_state_dict_has_the_authors_layout(name):
    with torch.device("meta"):
        model = create_model(name)
    assert set(model.state_dict()) | {
        "spectrogram_extractor.stft.conv_real.weight",
        "spectrogram_extractor.stft.conv_imag.weight",
        "logmel_extractor.melW",
    } == authors_keys(model.config)


def test_authors_checkpoint_loads_and_gives_the_same_logits():
    name = "cnn6"
    torch.manual_seed(0)
    source = create_model(name, n_classes=5).eval()
    with torch.no_grad():
        randomize_bn_stats(source)
    ckpt = authors_checkpoint(source)
    mel = tiny_mel()
    with torch.no_grad():
        expected = source(mel)

    target = create_model(name, n_classes=5).eval()
    load_panns_state_dict(target, ckpt)  # {"model": ...}; extractor keys absorbed
    torch.testing.assert_close(target(mel), expected, rtol=0, atol=0)

    plain = create_model(name, n_classes=5).eval()
    plain.load_state_dict(ckpt["model"])  # plain load_state_dict absorbs the extractor keys
    torch.testing.assert_close(plain(mel), expected, rtol=0, atol=0)

    wrapped = create_model(name, n_classes=5).eval()
    load_panns_state_dict(wrapped, {"model": {f"module.{k}": v for k, v in ckpt["model"].items()}})
    torch.testing.assert_close(wrapped(mel), expected, rtol=0, atol=0)


def test_authors_checkpoint_with_another_front_end_is_rejected():
    model = create_model("cnn6", n_classes=5)
    ckpt = authors_checkpoint(create_model("cnn6", n_classes=5))
    ckpt["model"]["logmel_extractor.melW"] = torch.rand(513, 128)
    with pytest.raises(ValueError, match=r"melW.*\(513, 128\).*\(513, 64\)"):
        load_panns_state_dict(model, ckpt)


def reference_panns_logits(sd: dict, config: CNNConfig, mel_tf: torch.Tensor) -> torch.Tensor:
    """The authors' eval-mode forward, written out with functional ops on their layout.

    ``mel_tf`` is (B, 1, T, F) as their log-mel extractor returns it.
    """
    def bn(x, p):
        return F.batch_norm(x, sd[f"{p}.running_mean"], sd[f"{p}.running_var"],
                            sd[f"{p}.weight"], sd[f"{p}.bias"], training=False, eps=1e-5)

    x = bn(mel_tf.transpose(1, 3), "bn0").transpose(1, 3)
    n_convs = 2 if config.block == "double3x3" else 1
    for i, pool in enumerate(config.pools, start=1):
        for j in range(1, n_convs + 1):
            w = sd[f"conv_block{i}.conv{j}.weight"]
            x = F.relu(bn(F.conv2d(x, w, padding=w.shape[-1] // 2), f"conv_block{i}.bn{j}"))
        x = F.avg_pool2d(x, pool)
    x = x.mean(dim=3)
    x = x.max(dim=2).values + x.mean(dim=2)
    x = F.relu(F.linear(x, sd["fc1.weight"], sd["fc1.bias"]))
    return F.linear(x, sd["fc_audioset.weight"], sd["fc_audioset.bias"])


@pytest.mark.parametrize("name", ["cnn10", "cnn6"])
def test_matches_the_authors_forward_on_their_layout(name):
    torch.manual_seed(0)
    model = create_model(name, n_classes=5).eval()
    with torch.no_grad():
        # Non-symmetric kernels so that a transposed layout would be caught.
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
        randomize_bn_stats(model)
        mel = tiny_mel(t=48)  # (B, 1, F, T), T != F
        ours = model(mel)
        ref = reference_panns_logits(model.state_dict(), model.config, mel.transpose(2, 3))
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------ EfficientAT checkpoints


def test_efficientat_layout_state_dict_loads():
    torch.manual_seed(0)
    source = MobileNet(MobileNetConfig.preset("mn04", n_classes=5, input_fdim=64)).eval()
    with torch.no_grad():
        randomize_bn_stats(source)
    # EfficientAT nests each SE in a ConcurrentSEBlock: block.K.conc_se_layers.0.fc1.weight
    theirs = {}
    for k, v in source.state_dict().items():
        if ".fc1." in k or ".fc2." in k:
            k = k.replace(".fc1.", ".conc_se_layers.0.fc1.").replace(
                ".fc2.", ".conc_se_layers.0.fc2.")
        theirs[k] = v
    assert "features.4.block.2.conc_se_layers.0.fc1.weight" in theirs
    assert "classifier.2.weight" in theirs and "classifier.5.bias" in theirs
    target = MobileNet(MobileNetConfig.preset("mn04", n_classes=5, input_fdim=64)).eval()
    load_efficientat_state_dict(target, theirs)
    mel = tiny_mel()
    with torch.no_grad():
        torch.testing.assert_close(target(mel), source(mel), rtol=0, atol=0)


# ------------------------------------------------------------------ cost and augmentation


def macs_per_clip(name: str, n_mels: int, n_frames: int) -> float:
    """Multiply-accumulates of one eval forward, counted on the meta device (no compute)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        model = create_model(name).eval()
        mel = torch.zeros(1, 1, n_mels, n_frames)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(mel)
    return counter.get_total_flops() / 2


@pytest.mark.parametrize("name,gmacs", [("mn04", 0.11), ("mn10", 0.54), ("mn20", 2.06),
                                        ("mn40", 8.03)])
def test_mobilenet_macs_match_efficientat(name, gmacs):
    # EfficientAT's table: MACs per 10 s clip (128 mel bins x 1000 frames).
    assert abs(macs_per_clip(name, 128, 1000) / (gmacs * 1e9) - 1) < 0.02


def test_cnn14_macs_match_panns():
    # PANNs reports 42.2 G "mult-adds" (= 21.1 G MACs) for 10 s, counting its STFT
    # (a conv1d: frames x 513 bins x (real, imag) x 1024 taps) and mel matrix too.
    frames = 1001
    front_end = frames * 513 * 2 * 1024 + frames * 513 * 64
    total = macs_per_clip("cnn14", 64, frames) + front_end
    assert abs(total / 21.1e9 - 1) < 0.01, total


def test_spec_augment_drops_narrow_stripes_per_sample():
    from passt_lib.cnn import spec_augment

    config = CNNConfig.preset("cnn10")
    torch.manual_seed(0)
    x = torch.ones(16, 1, 300, 64)  # (B, 1, T, F), the layout the network works in
    y = spec_augment(x, config)
    zero_frames = (y == 0).all(dim=3).sum(dim=(1, 2))  # (B,) fully masked time frames
    zero_bins = (y == 0).all(dim=2).sum(dim=(1, 2))  # (B,) fully masked mel bins
    assert (zero_frames <= config.time_stripes * (config.time_drop_width - 1)).all()
    assert (zero_bins <= config.freq_stripes * (config.freq_drop_width - 1)).all()
    assert zero_frames.sum() > 0 and zero_bins.sum() > 0
    assert len(set(zero_frames.tolist())) > 1  # drawn per sample, not once per batch
    assert ((y == 0) | (y == 1)).all()
