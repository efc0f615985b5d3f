"""The mel front-end: waveform (B, S) -> log-mel spectrogram (B, n_mels, T).

Defaults reproduce the PaSST reference front-end (``AugmentMelSTFT``):

1. pre-emphasis ``y[n] = x[n + 1] - 0.97 x[n]`` (the output is one sample shorter);
2. ``torch.stft``: n_fft 1024, window 800 (25 ms), hop 320 (10 ms), symmetric Hann
   window, ``center=True`` with reflect padding; power ``|X|^2``;
3. kaldi mel filterbank (``torchaudio.compliance.kaldi.get_mel_banks``), 128 bins,
   padded by one zero column to ``n_fft // 2 + 1`` FFT bins; the product is computed
   in fp32 even under autocast;
4. ``ln(mel + 1e-5)``;
5. training only: fmin/fmax augmentation (one draw per batch, as the reference:
   fmin = 0 + U{0..9} Hz, fmax = 15000 + 1000 - U{0..1999} Hz) and SpecAugment
   (one frequency mask of up to 48 bins, one time mask of up to 192 frames),
   applied to the log-mel BEFORE normalisation, so masked cells become
   ``(0 + 4.5) / 5 = 0.9`` as in the reference;
6. fixed normalisation ``(x + 4.5) / 5``.

Masks: per sample or per batch (``MelConfig.mask_mode``)
    ``mask_mode="sample"`` (the default) draws an independent mask for every clip,
    which is what SpecAugment intends and gives a batch more variety.
    ``mask_mode="batch"`` draws ONE frequency mask and ONE time mask for the whole
    batch. That is how the reference trained: it passes a 3-D (B, F, T) tensor to
    torchaudio's masking transforms, and torchaudio before 2.1 ignored ``iid_masks``
    for 3-D input. Since torchaudio 2.1 (pytorch/audio PR 3289) the same reference
    code draws per clip, so with today's torchaudio ``"sample"`` is the one that
    matches ``hear21passt`` bit for bit under the same seed, and ``"batch"`` is the
    behaviour of the published runs. Both consume the random stream in the
    reference's order (fmin, fmax, frequency mask, time mask) and use torchaudio's
    masking functions (``mask_along_axis_iid`` / ``mask_along_axis``), vectorised
    over the batch.

Everything is configurable through ``MelConfig`` (a frozen dataclass with named
presets): sample rate, mel bins, window, hop, n_fft, fmin/fmax, augmentation
ranges, mask sizes and counts, mel scale, log and normalisation. The CNN baselines
build their front-ends from the ``panns`` and ``efficientat`` presets.

Use the module at the configured sample rate only; ``passt_lib.audio.load_audio``
reads and resamples files.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass

import torch
import torchaudio.functional as AF
from torch import nn
from torchaudio.compliance import kaldi

from passt_lib.configs import replace_strict

MASK_MODES = ("sample", "batch")
MEL_SCALES = ("kaldi", "slaney", "htk")
WINDOWS = ("hann_symmetric", "hann_periodic")
LOG_MODES = ("ln", "db")
PAD_MODES = ("reflect", "constant", "replicate", "circular")


@dataclass(frozen=True)
class MelConfig:
    """Settings of ``MelFrontend``; defaults are the PaSST reference front-end.

    Frequencies are in Hz. ``fmax=None`` means ``sample_rate / 2 - 1000`` (15 kHz at
    32 kHz), leaving room for the reference's fmax augmentation of +-1000 Hz.
    Augmentation ranges follow the reference: in training, fmin is raised by
    U{0..fmin_aug_range-1} Hz and fmax moved by ``fmax_aug_range // 2 -
    U{0..fmax_aug_range-1}`` Hz; a range of 0 or 1 disables that draw.
    """

    sample_rate: int = 32000
    n_mels: int = 128
    n_fft: int = 1024
    win_length: int = 800
    hop_length: int = 320
    window: str = "hann_symmetric"  # "hann_symmetric" (periodic=False) | "hann_periodic"
    center: bool = True
    pad_mode: str = "reflect"
    fmin: float = 0.0
    fmax: float | None = None
    fmin_aug_range: int = 10
    fmax_aug_range: int = 2000
    freqm: int = 48  # frequency masks are up to freqm - 1 bins wide (torchaudio semantics)
    timem: int = 192  # time masks are up to timem - 1 frames wide
    n_freq_masks: int = 1
    n_time_masks: int = 1
    mask_mode: str = "sample"  # "sample" (independent per clip) | "batch" (reference)
    mask_value: float = 0.0  # written into the log-mel before normalisation
    preemphasis: float = 0.97  # 0 disables the filter (and keeps all samples)
    mel_scale: str = "kaldi"  # "kaldi" (PaSST) | "slaney" (librosa default, PANNs) | "htk"
    log: str = "ln"  # "ln": ln(x + log_offset) | "db": 10 log10(max(x, log_offset))
    log_offset: float = 1e-5
    normalize: bool = True  # (x - norm_mean) / norm_std, PaSST's fixed normalisation
    norm_mean: float = -4.5
    norm_std: float = 5.0
    check_finite: bool = True  # reject NaN/inf input (one reduction over the batch)

    def __post_init__(self) -> None:
        def positive_int(name: str) -> None:
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"MelConfig.{name} must be a positive integer, got {v!r}")

        for name in ("sample_rate", "n_mels", "n_fft", "win_length", "hop_length"):
            positive_int(name)
        for name in ("fmin_aug_range", "fmax_aug_range", "freqm", "timem", "n_freq_masks",
                     "n_time_masks"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ValueError(f"MelConfig.{name} must be a non-negative integer, got {v!r}")
        for name, allowed in (("mask_mode", MASK_MODES), ("mel_scale", MEL_SCALES),
                              ("window", WINDOWS), ("log", LOG_MODES), ("pad_mode", PAD_MODES)):
            if getattr(self, name) not in allowed:
                raise ValueError(
                    f"MelConfig.{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.win_length > self.n_fft:
            raise ValueError(
                f"MelConfig.win_length ({self.win_length}) must not exceed n_fft ({self.n_fft})")
        if self.mel_scale == "kaldi" and self.n_fft % 2:
            raise ValueError(f"kaldi mel banks need an even n_fft, got {self.n_fft}")
        if not 0.0 <= self.preemphasis < 1.0:
            raise ValueError(f"MelConfig.preemphasis must be in [0, 1), got {self.preemphasis}")
        if not self.log_offset > 0:
            raise ValueError(f"MelConfig.log_offset must be > 0, got {self.log_offset}")
        if self.normalize and not self.norm_std > 0:
            raise ValueError(f"MelConfig.norm_std must be > 0, got {self.norm_std}")
        # The band must stay valid for every training-time draw.
        nyquist = self.sample_rate / 2
        lo_min, lo_max = self.fmin, self.fmin + max(self.fmin_aug_range - 1, 0)
        hi_min, hi_max = fmax_draw_range(self.fmax_eval, self.fmax_aug_range)
        if lo_min < 0:
            raise ValueError(f"MelConfig.fmin must be >= 0 Hz, got {self.fmin}")
        if hi_max > nyquist:
            raise ValueError(
                f"fmax {self.fmax_eval} Hz plus its augmentation (+{hi_max - self.fmax_eval:g} Hz) "
                f"exceeds the Nyquist frequency {nyquist:g} Hz of sample_rate {self.sample_rate}; "
                f"lower fmax or fmax_aug_range")
        if lo_max >= hi_min:
            raise ValueError(
                f"the mel band is empty: fmin can reach {lo_max:g} Hz and fmax can drop to "
                f"{hi_min:g} Hz (fmin={self.fmin}, fmax={self.fmax_eval}, "
                f"fmin_aug_range={self.fmin_aug_range}, fmax_aug_range={self.fmax_aug_range})")

    @property
    def fmax_eval(self) -> float:
        """The upper band edge used in eval mode (``fmax`` or its default)."""
        return float(self.sample_rate / 2 - 1000 if self.fmax is None else self.fmax)

    @property
    def n_freqs(self) -> int:
        return self.n_fft // 2 + 1

    @property
    def augments_band(self) -> bool:
        return self.fmin_aug_range > 1 or self.fmax_aug_range > 1

    def replace(self, **overrides) -> MelConfig:
        """``dataclasses.replace`` with a clear error for unknown keys."""
        return replace_strict(self, **overrides)

    @classmethod
    def preset(cls, name: str, **overrides) -> MelConfig:
        """A named front-end: ``passt`` (reference), ``efficientat``, ``panns``."""
        if name not in MEL_PRESETS:
            raise ValueError(f"unknown mel preset {name!r}; known: {sorted(MEL_PRESETS)}")
        return MEL_PRESETS[name].replace(**overrides)


def fmax_draw_range(fmax: float, fmax_aug_range: int) -> tuple[float, float]:
    """(lowest, highest) fmax a training draw can give (the reference's formula)."""
    if fmax_aug_range <= 1:
        return fmax, fmax
    return fmax + fmax_aug_range // 2 - (fmax_aug_range - 1), fmax + fmax_aug_range // 2


MEL_PRESETS: dict[str, MelConfig] = {
    "passt": MelConfig(),
    # EfficientAT (Schmid et al.) uses the PaSST front-end unchanged.
    "efficientat": MelConfig(),
    # PANNs (torchlibrosa): periodic Hann 1024, librosa (slaney) mel 64 bins 50 Hz-14 kHz,
    # power_to_db with amin 1e-10, no pre-emphasis, no fixed normalisation (CNN14
    # normalises with BatchNorm over mel bins) and no front-end augmentation (CNN14 drops
    # stripes after that BatchNorm).
    "panns": MelConfig(
        n_mels=64, n_fft=1024, win_length=1024, hop_length=320, window="hann_periodic",
        fmin=50.0, fmax=14000.0, fmin_aug_range=0, fmax_aug_range=0, freqm=0, timem=0,
        preemphasis=0.0, mel_scale="slaney", log="db", log_offset=1e-10, normalize=False,
    ),
}


def with_front_end(base: MelConfig, overrides: dict) -> dict:
    """``overrides`` of a model config with a ``mel`` field (the CNN baselines), the front-end
    keys folded into one ``MelConfig``: ``mel`` (a MelConfig or its dict), ``input_fdim``
    (the mel bins, as every model calls them) and any ``MelConfig`` field by name (the flat
    form older checkpoints stored) replace those of ``base``."""
    out = dict(overrides)
    mel = out.pop("mel", base)
    mel = MelConfig(**mel) if isinstance(mel, dict) else mel
    fields = {f.name for f in dataclasses.fields(MelConfig)}
    front = {k: out.pop(k) for k in list(out) if k in fields}
    if "input_fdim" in out:
        front["n_mels"] = out.pop("input_fdim")
    return {**out, "mel": mel.replace(**front) if front else mel}


# ---------------------------------------------------------------- pure functions


def mel_filterbank(config: MelConfig, fmin: float, fmax: float) -> torch.Tensor:
    """Mel filterbank (n_mels, n_fft // 2 + 1) float32 for the band [fmin, fmax]."""
    c = config
    if c.mel_scale == "kaldi":
        banks, _ = kaldi.get_mel_banks(c.n_mels, c.n_fft, float(c.sample_rate), float(fmin),
                                       float(fmax), 100.0, -500.0, 1.0)  # (M, n_fft // 2)
        # kaldi drops the Nyquist bin; a zero column restores it.
        return nn.functional.pad(banks, (0, 1)).float()  # (M, n_freqs)
    norm = "slaney" if c.mel_scale == "slaney" else None
    fb = AF.melscale_fbanks(c.n_freqs, float(fmin), float(fmax), c.n_mels, c.sample_rate,
                            norm=norm, mel_scale=c.mel_scale)  # (n_freqs, M)
    return fb.T.contiguous().float()  # (M, n_freqs)


def draw_band(config: MelConfig) -> tuple[float, float]:
    """One training-time (fmin, fmax) draw, in the reference's order (fmin first)."""
    fmin, fmax = config.fmin, config.fmax_eval
    if config.fmin_aug_range > 1:
        fmin = fmin + int(torch.randint(config.fmin_aug_range, (1,)).item())
    if config.fmax_aug_range > 1:
        fmax = fmax + config.fmax_aug_range // 2 - int(
            torch.randint(config.fmax_aug_range, (1,)).item())
    return fmin, fmax


def make_window(config: MelConfig) -> torch.Tensor:
    periodic = config.window == "hann_periodic"
    return torch.hann_window(config.win_length, periodic=periodic)


def apply_masks(mel: torch.Tensor, config: MelConfig) -> torch.Tensor:
    """SpecAugment on (B, M, T): frequency masks, then time masks (torchaudio semantics).

    ``mask_mode="sample"`` draws every mask independently per clip; ``"batch"`` draws one
    per batch like the reference. Loops run over the number of masks, never over clips.
    """
    c = config
    mask = AF.mask_along_axis_iid if c.mask_mode == "sample" else AF.mask_along_axis
    if c.freqm > 0:
        for _ in range(c.n_freq_masks):
            mel = mask(mel, c.freqm, c.mask_value, 1)  # axis 1: mel bins of (B, M, T)
    if c.timem > 0:
        for _ in range(c.n_time_masks):
            mel = mask(mel, c.timem, c.mask_value, 2)  # axis 2: frames of (B, M, T)
    return mel


def n_frames(config: MelConfig, n_samples: int) -> int:
    """Frames the front-end gives for ``n_samples`` input samples."""
    if not isinstance(n_samples, int) or isinstance(n_samples, bool):
        raise ValueError(f"n_samples must be an int, got {n_samples!r}")
    if n_samples < min_samples(config):
        raise ValueError(
            f"{n_samples} samples is too short: the front-end needs at least "
            f"{min_samples(config)} (n_fft={config.n_fft}, center={config.center})")
    length = n_samples - 1 if config.preemphasis > 0 else n_samples
    if config.center:
        return length // config.hop_length + 1
    return (length - config.n_fft) // config.hop_length + 1


def min_samples(config: MelConfig) -> int:
    """Shortest valid input: centred reflect padding needs more than n_fft // 2 samples."""
    extra = 1 if config.preemphasis > 0 else 0
    if config.center:
        need = config.n_fft // 2 + 1 if config.pad_mode == "reflect" else 1
    else:
        need = config.n_fft
    return need + extra


# ---------------------------------------------------------------- input checks

# A float waveform peaks near 1; int16 PCM cast to float without scaling peaks in the
# thousands. Our own gain augmentation reaches about 2.2, so the warning starts well above.
PEAK_WARNING = 8.0
_warned_peak = False


def check_finite(x: torch.Tensor, what: str = "mel spectrogram", unit: str = "values") -> float:
    """Raise ValueError naming the NaN / infinite entries of ``x`` (B, ...); return max |x|.

    One reduction and one host sync: for input a user gives (waveforms, spectrograms to
    predict), not inside ``forward`` or the training step.
    """
    peak = float(x.detach().abs().amax()) if x.numel() else 0.0
    if math.isfinite(peak):
        return peak
    bad = ~torch.isfinite(x.detach())
    rows = bad.flatten(1).any(dim=1).nonzero().flatten().tolist()
    raise ValueError(f"{what} contains {int(torch.isnan(x).sum())} NaN and "
                     f"{int(torch.isinf(x).sum())} infinite {unit} (batch items {rows[:10]}); "
                     f"clean or drop these clips")


def warn_loud_waveform(peak: float) -> None:
    """Warn once per process about a waveform far outside [-1, 1]."""
    global _warned_peak
    if not _warned_peak:
        _warned_peak = True
        warnings.warn(
            f"waveform peak {peak:.4g} is far above 1: audio is expected as floats in [-1, 1]; "
            f"int16 PCM cast to float needs scaling (wave / 32768), or load files with "
            f"passt_lib.audio.load_audio", stacklevel=3)


# ---------------------------------------------------------------- module


class MelFrontend(nn.Module):
    """Waveform (B, S) float at ``config.sample_rate`` -> mel (B, n_mels, T) float32.

    ``MelFrontend()`` is the PaSST reference front-end; ``MelFrontend(cfg, n_mels=64)``
    overrides fields of ``cfg``. Train mode adds the fmin/fmax draw and the masks (see
    the module docstring for per-sample vs per-batch masks). The whole computation runs
    in fp32 with autocast disabled, whatever the caller's precision.
    """

    def __init__(self, config: MelConfig | None = None, **overrides) -> None:
        super().__init__()
        config = config if config is not None else MelConfig()
        if not isinstance(config, MelConfig):
            raise TypeError(f"config must be a MelConfig, got {type(config).__name__}")
        self.config = config.replace(**overrides) if overrides else config
        c = self.config
        self.register_buffer("window", make_window(c), persistent=False)
        self.register_buffer("mel_basis", mel_filterbank(c, c.fmin, c.fmax_eval),
                             persistent=False)  # (M, n_freqs), the eval band

    def n_frames(self, n_samples: int) -> int:
        return n_frames(self.config, n_samples)

    def extra_repr(self) -> str:
        c = self.config
        return (f"sample_rate={c.sample_rate}, n_mels={c.n_mels}, n_fft={c.n_fft}, "
                f"win_length={c.win_length}, hop_length={c.hop_length}, mask_mode={c.mask_mode}")

    def check_input(self, wave: torch.Tensor, sample_rate: int | None = None) -> None:
        """Raise a ValueError/TypeError naming what is wrong with ``wave``."""
        c = self.config
        if sample_rate is not None and sample_rate != c.sample_rate:
            raise ValueError(
                f"audio at {sample_rate} Hz given to a front-end configured for "
                f"{c.sample_rate} Hz; resample it first, e.g. "
                f"passt_lib.audio.load_audio(path, {c.sample_rate}) or "
                f"torchaudio.functional.resample(wave, {sample_rate}, {c.sample_rate})")
        if not isinstance(wave, torch.Tensor):
            raise TypeError(f"expected a torch.Tensor waveform (B, S), got {type(wave).__name__}")
        if not wave.is_floating_point():
            hint = " (PCM? convert with wave.float() / 32768)" if wave.dtype == torch.int16 else ""
            raise ValueError(f"expected a floating-point waveform, got dtype {wave.dtype}{hint}")
        if wave.dim() != 2:
            hint = ""
            if wave.dim() == 1:
                hint = "; for one clip use wave.unsqueeze(0)"
            elif wave.dim() == 3 and wave.shape[1] == 1:
                hint = "; for mono (B, 1, S) use wave.squeeze(1)"
            raise ValueError(
                f"expected a waveform of shape (B, S), got shape {tuple(wave.shape)}{hint}")
        if wave.shape[0] == 0:
            raise ValueError(f"expected at least one clip, got an empty batch {tuple(wave.shape)}")
        if wave.shape[1] < min_samples(c):
            raise ValueError(
                f"waveform of {wave.shape[1]} samples is too short: the front-end needs at "
                f"least {min_samples(c)} samples (n_fft={c.n_fft})")
        if c.check_finite:
            peak = check_finite(wave, "waveform", "samples")
            if peak > PEAK_WARNING:
                warn_loud_waveform(peak)

    def forward(self, wave: torch.Tensor, sample_rate: int | None = None) -> torch.Tensor:
        self.check_input(wave, sample_rate)
        c = self.config
        with torch.autocast(device_type=wave.device.type, enabled=False):
            x = wave.float()  # (B, S)
            if c.preemphasis > 0:
                x = torch.add(x[:, 1:], x[:, :-1], alpha=-c.preemphasis)  # (B, S - 1)
            spec = torch.stft(x, c.n_fft, hop_length=c.hop_length, win_length=c.win_length,
                              window=self.window.float(), center=c.center, pad_mode=c.pad_mode,
                              normalized=False, return_complex=True)  # (B, n_freqs, T) complex
            re, im = spec.real, spec.imag  # strided views, no copy
            power = torch.addcmul(re * re, im, im)  # |X|^2 (B, n_freqs, T); fastest form on CPU
            if self.training and c.augments_band:
                basis = mel_filterbank(c, *draw_band(c)).to(power.device)
            else:
                basis = self.mel_basis.float()
            mel = torch.matmul(basis, power)  # (M, n_freqs) @ (B, n_freqs, T) -> (B, M, T)
            if c.log == "ln":
                mel = torch.log(mel + c.log_offset)
            else:
                mel = 10.0 * torch.log10(torch.clamp(mel, min=c.log_offset))
            if self.training:
                mel = apply_masks(mel, c)
            if c.normalize:
                mel = (mel - c.norm_mean) / c.norm_std
        return mel
