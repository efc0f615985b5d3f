"""Tests of the mel front-end: equivalence with hear21passt, masks, shapes, errors, files."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import soundfile
import torch

from passt_lib.audio import load_audio
from passt_lib.frontend import MelConfig, MelFrontend, n_frames

SR = 32000


def reference_frontend():
    """hear21passt's AugmentMelSTFT exactly as hear21passt.base builds it (test oracle)."""
    from hear21passt.models.preprocess import AugmentMelSTFT

    return AugmentMelSTFT(n_mels=128, sr=32000, win_length=800, hopsize=320, n_fft=1024,
                          freqm=48, timem=192, htk=False, fmin=0.0, fmax=None, norm=1,
                          fmin_aug_range=10, fmax_aug_range=2000)


def run_reference(module, wave):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecated stft/autocast arguments in the oracle
        return module(wave)


def noise(batch, n_samples, seed=0):
    g = torch.Generator().manual_seed(seed)
    return 0.1 * torch.randn(batch, n_samples, generator=g)


@pytest.mark.parametrize("seconds", [10.0, 3.7])
def test_eval_matches_reference(seconds):
    wave = noise(2, int(seconds * SR))
    ref = reference_frontend().eval()
    ours = MelFrontend().eval()
    expected = run_reference(ref, wave)
    got = ours(wave)
    assert got.shape == expected.shape == (2, 128, ours.n_frames(wave.shape[1]))
    assert got.dtype == torch.float32
    assert (got - expected).abs().max().item() < 1e-4


def test_train_sample_mode_matches_reference_under_same_seed():
    # Since torchaudio 2.1 the reference's masking draws per clip; with the same seed,
    # our default per-sample mode consumes the random stream identically.
    wave = noise(3, 3 * SR, seed=1)
    ref = reference_frontend().train()
    ours = MelFrontend(mask_mode="sample").train()
    torch.manual_seed(123)
    expected = run_reference(ref, wave)
    torch.manual_seed(123)
    got = ours(wave)
    assert (got - expected).abs().max().item() < 1e-4
    assert not torch.allclose(got, ours.eval()(wave))  # the draw did something


def masked_cells(frontend: MelFrontend, wave: torch.Tensor, seed: int) -> torch.Tensor:
    """Boolean (B, M, T): cells the training-mode masks changed."""
    clean = frontend.eval()(wave)
    torch.manual_seed(seed)
    augmented = frontend.train()(wave)
    return augmented != clean


@pytest.mark.parametrize("seed", [0, 1])
def test_masks_per_sample_differ_and_per_batch_are_shared(seed):
    one = noise(1, SR, seed=5)
    wave = one.repeat(8, 1)  # (8, S): identical clips, so only the masks can differ
    no_band = dict(fmin_aug_range=0, fmax_aug_range=0, freqm=20, timem=30)

    batch = masked_cells(MelFrontend(mask_mode="batch", **no_band), wave, seed)
    assert batch.any()
    assert all(torch.equal(batch[0], batch[i]) for i in range(1, 8))

    sample = masked_cells(MelFrontend(mask_mode="sample", **no_band), wave, seed)
    assert sample.any()
    distinct = {tuple(sample[i].flatten().nonzero().flatten().tolist()) for i in range(8)}
    assert len(distinct) > 1


def test_mask_geometry_is_whole_rows_and_columns():
    wave = noise(4, SR, seed=2)
    fe = MelFrontend(fmin_aug_range=0, fmax_aug_range=0, freqm=20, timem=30, mask_mode="sample")
    torch.manual_seed(3)
    out = fe.train()(wave)
    masked_value = (0.0 - fe.config.norm_mean) / fe.config.norm_std  # mask written before norm
    is_masked = out == masked_value  # (B, M, T)
    rows = is_masked.all(dim=2)  # (B, M): fully masked mel bins
    cols = is_masked.all(dim=1)  # (B, T): fully masked frames
    assert rows.sum(dim=1).max() < 20 and cols.sum(dim=1).max() < 30
    # every masked cell lies on a masked row or column
    assert torch.equal(is_masked, rows[:, :, None] | cols[:, None, :])


def test_training_band_draw_changes_output():
    wave = noise(2, SR, seed=3)
    fe = MelFrontend(freqm=0, timem=0)
    clean = fe.eval()(wave)
    fe.train()
    torch.manual_seed(0)
    a = fe(wave)
    torch.manual_seed(1)
    b = fe(wave)
    assert not torch.allclose(a, clean) and not torch.allclose(a, b)
    # the draw is per batch: both clips saw the same filterbank, so equal clips stay equal
    torch.manual_seed(2)
    same = fe(wave[:1].repeat(2, 1))
    assert torch.equal(same[0], same[1])
    # without band augmentation and masks, training equals eval
    plain = MelFrontend(freqm=0, timem=0, fmin_aug_range=0, fmax_aug_range=0).train()
    assert torch.equal(plain(wave), clean)


@pytest.mark.parametrize("hop", [160, 320, 640])
@pytest.mark.parametrize("n_samples", [SR, 37 * SR // 10, 12345])
def test_shapes_and_n_frames(hop, n_samples):
    fe = MelFrontend(hop_length=hop).eval()
    out = fe(noise(2, n_samples))
    assert out.shape == (2, 128, fe.n_frames(n_samples))
    assert fe.n_frames(n_samples) == (n_samples - 1) // hop + 1


def test_reference_frame_counts():
    assert MelFrontend().n_frames(10 * SR) == 1000
    assert n_frames(MelConfig.preset("panns"), 10 * SR) == 1001  # no pre-emphasis


@pytest.mark.parametrize("n_mels", [40, 64, 128])
def test_configurable_n_mels(n_mels):
    out = MelFrontend(n_mels=n_mels).eval()(noise(1, SR))
    assert out.shape == (1, n_mels, 100)  # (32000 - 1) // 320 + 1
    assert torch.isfinite(out).all()


def test_other_sample_rate_and_window():
    fe = MelFrontend(sample_rate=16000, n_fft=512, win_length=400, hop_length=160).eval()
    assert fe.config.fmax_eval == 7000.0
    out = fe(noise(2, 16000), sample_rate=16000)
    assert out.shape == (2, 128, 100)


def test_panns_preset_runs():
    fe = MelFrontend(MelConfig.preset("panns")).train()  # no augmentation in this preset
    wave = noise(2, SR)
    out = fe(wave)
    assert out.shape == (2, 64, 101)
    assert torch.equal(out, fe.eval()(wave))


def test_fp32_under_autocast():
    wave = noise(2, SR)
    fe = MelFrontend().eval()
    expected = fe(wave)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = fe(wave)
    assert got.dtype == torch.float32
    assert torch.equal(got, expected)


def test_silence_is_valid():
    out = MelFrontend().eval()(torch.zeros(2, SR))
    assert torch.isfinite(out).all()
    assert torch.allclose(out, torch.full_like(out, (np.log(1e-5) + 4.5) / 5))


@pytest.mark.parametrize(
    "wave, match",
    [
        (torch.zeros(2, SR, dtype=torch.int16), "floating-point.*int16"),
        (torch.zeros(SR), r"\(B, S\).*unsqueeze"),
        (torch.zeros(2, 1, SR), r"\(B, S\).*squeeze"),
        (torch.zeros(2, 100), "too short"),
        (torch.zeros(0, SR), "empty batch"),
    ],
)
def test_bad_input_errors(wave, match):
    with pytest.raises(ValueError, match=match):
        MelFrontend()(wave)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_input_errors(bad):
    wave = torch.zeros(3, SR)
    wave[1, 100] = bad
    with pytest.raises(ValueError, match=r"NaN.*infinite.*\[1\]"):
        MelFrontend()(wave)


def test_non_tensor_errors():
    with pytest.raises(TypeError, match="torch.Tensor"):
        MelFrontend()(np.zeros((1, SR), dtype=np.float32))


def test_sample_rate_mismatch_errors():
    fe = MelFrontend()
    fe(noise(1, SR), sample_rate=SR)  # matching rate is fine
    with pytest.raises(ValueError, match="16000 Hz.*32000 Hz.*load_audio"):
        fe(noise(1, SR), sample_rate=16000)


def test_config_errors():
    with pytest.raises(ValueError, match=r"unknown MelConfig keys \[.n_mel.\]"):
        MelFrontend(n_mel=64)
    with pytest.raises(ValueError, match="mask_mode"):
        MelConfig(mask_mode="clip")


def test_config_band_errors():
    assert MelConfig(sample_rate=16000).fmax_eval == 7000.0
    with pytest.raises(ValueError, match="Nyquist"):
        MelConfig(fmax=15500.0)  # +1000 Hz augmentation would pass 16 kHz
    with pytest.raises(ValueError, match="empty"):
        MelConfig(fmin=14000.0, fmax=14500.0)
    with pytest.raises(ValueError, match="win_length"):
        MelConfig(win_length=2048)
    with pytest.raises(ValueError, match="unknown mel preset.*panns"):
        MelConfig.preset("cnn14")


def write_sine(path, freq, sample_rate, seconds=1.0, channels=1):
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    x = (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    soundfile.write(path, np.stack([x] * channels, axis=1), sample_rate)


def peak_frequency(wave: torch.Tensor, sample_rate: int) -> float:
    spectrum = torch.fft.rfft(wave.double()).abs()
    return float(spectrum.argmax()) * sample_rate / wave.shape[0]


def test_load_audio_resamples_and_keeps_frequency(tmp_path):
    path = tmp_path / "sine16k.wav"
    write_sine(path, 440.0, 16000, seconds=1.0, channels=2)
    wave = load_audio(path, 32000)
    assert wave.dtype == torch.float32 and wave.dim() == 1
    assert wave.shape[0] == 32000
    assert abs(peak_frequency(wave, 32000) - 440.0) <= 1.0
    same = load_audio(path, 16000)
    assert same.shape[0] == 16000


def test_load_audio_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.wav"):
        load_audio(tmp_path / "missing.wav", SR)
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00garbage" * 10)
    with pytest.raises(ValueError, match="corrupt.wav"):
        load_audio(corrupt, SR)
    with pytest.raises(ValueError, match="sample_rate"):
        load_audio(corrupt, 0)
