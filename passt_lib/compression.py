"""Temporal compression for coarse-to-fine training, and weight transfer between resolutions.

Three ways to give a transformer fewer time tokens (Feng et al. 2024, "From
Coarse to Fine"), each by an integer factor k:

- ``frame_shift``: the front-end's hop times k; the mel spectrogram is
  recomputed with fewer frames (see :func:`frame_shift_mel_config`).
- ``pool``: average or max pooling of the spectrogram along time with
  kernel = stride = k (:func:`pool_time`); the front-end is unchanged.
- ``patchify``: time patch size and time stride times k; the input is
  unchanged and the patch-embedding kernel is resized FlexiViT-style
  (:func:`resize_patch_embed`).

:func:`compressed_grid` reports the (F, T) patch grid and the token counts of
a method without building a model; :func:`phase_config` gives the model
config of a phase (patchify: a rectangular (frequency, time) patch);
:func:`transfer_state_dict` moves weights between two resolutions;
:func:`enter_phase` does all of it for a training loop, always from the
full-resolution config it is given.

Patchout and compression compose. By default (``patchout="scale"``) the
patchout amounts are rescaled in proportion to the compressed grid, like
``passt_lib.scales`` does between scales, so a phase drops the same fraction of
time columns / frequency rows / tokens as the full-resolution model (PaSST-S at
the embedded scale: 12 of 29 time columns at full resolution, 2 of 6 after
pooling by 4). ``"keep"`` keeps the absolute amounts and ``"off"`` disables
patchout in the compressed phase. An amount that would drop every patch of the
compressed grid is an error naming the method and k, never silently clipped.

Weight transfer: the PaSST time encoding (1, D, 1, T) is linearly
interpolated to the new T; the frequency
encoding is untouched. AST's flat encoding (1, F * T, D) is resampled
bilinearly as a 2-D (F, T) grid whose shape is given explicitly, never
inferred from a square root. Going back to full resolution (the last phase)
resamples back.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import resample_abs_pos_embed, resample_patch_embed

from passt_lib.grid import patch_grid
from passt_lib.model import PaSST, PaSSTConfig
from passt_lib.patchout import check_amounts, rescale_amounts
from passt_lib.phases import METHODS, PATCHOUT_POLICIES, POOL_MODES, Phase


# --------------------------------------------------------------------------------------
# What a method does to the input and to the grid (pure, no model)
# --------------------------------------------------------------------------------------
def _check_method(method: str, factor: int) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown compression method {method!r}; expected one of {METHODS}")
    if method == "full" and factor != 1:
        raise ValueError(f"method 'full' has factor 1, got {factor}")
    if method != "full" and (not isinstance(factor, int) or factor < 2):
        raise ValueError(f"method {method!r} needs an integer factor >= 2, got {factor!r}")


def compressed_input_tdim(input_tdim: int, method: str, factor: int) -> int:
    """Frames the model sees after compressing ``input_tdim`` frames.

    - frame_shift: a centred STFT gives ``L // hop + 1`` frames for L samples,
      and ``(L // hop) // k == L // (k * hop)``, so T frames at hop h become
      exactly ``(T - 1) // k + 1`` frames at hop k * h.
    - pool: ``T // k`` (kernel = stride = k; a last partial window is dropped).
    - patchify, full: unchanged.
    """
    _check_method(method, factor)
    if input_tdim < 1:
        raise ValueError(f"input_tdim must be >= 1, got {input_tdim}")
    if method == "frame_shift":
        return (input_tdim - 1) // factor + 1
    if method == "pool":
        return input_tdim // factor
    return input_tdim


def _phase_patchout(config: PaSSTConfig, new_grid: tuple[int, int], policy: str,
                    what: str) -> dict:
    """Patchout amounts of a phase's grid; raises if they would drop every patch."""
    if policy not in PATCHOUT_POLICIES:
        raise ValueError(f"unknown patchout policy {policy!r}; expected one of {PATCHOUT_POLICIES}")
    where = f"{what} leaves"
    if policy == "off":
        return {"s_patchout_t": 0, "s_patchout_f": 0, "u_patchout": 0}
    if policy == "scale":
        return rescale_amounts(config.patchout_amounts, new_grid, config.grid, where=where)
    check_amounts(new_grid, **config.patchout_amounts, where=where)
    return config.patchout_amounts


def phase_config(config: PaSSTConfig, method: str, factor: int, *,
                 patchout: str = "scale") -> PaSSTConfig:
    """The model config of a phase compressed by ``method`` x ``factor``.

    ``config`` is the full-resolution config. "full" returns it unchanged.
    Raises ValueError when the compressed input is smaller than one patch or
    patchout would drop every patch.
    """
    _check_method(method, factor)
    if method == "full":
        return config
    what = f"{method} x{factor}"
    tdim = compressed_input_tdim(config.input_tdim, method, factor)
    pf, pt = config.patch_size
    tstride = config.tstride
    if method == "patchify":
        pt, tstride = pt * factor, tstride * factor
    try:
        new_grid = patch_grid(config.input_fdim, tdim, (pf, pt), (config.fstride, tstride))
    except ValueError as e:
        raise ValueError(
            f"{what} of {config.input_tdim} input frames leaves {tdim} frames for a time patch "
            f"of {pt}: the grid would be smaller than one patch ({e})") from None
    po = _phase_patchout(config, new_grid, patchout, what)
    return dataclasses.replace(config, **po, input_tdim=tdim, tstride=tstride, patch_size=(pf, pt))


@dataclass(frozen=True)
class CompressedGrid:
    """What a compression method does to the input and the token grid."""

    method: str
    factor: int
    input_fdim: int
    input_tdim: int  # frames the model sees
    patch: tuple[int, int]  # (frequency, time) patch size
    stride: tuple[int, int]
    grid: tuple[int, int]  # (F, T) patch grid
    n_patches: int  # F * T
    n_tokens_train: int  # after patchout, + 2 special tokens
    n_tokens_eval: int  # all patches + 2 special tokens
    patchout: tuple[int, int, int]  # (s_patchout_t, s_patchout_f, u_patchout)


def compressed_grid(config: PaSSTConfig, method: str, factor: int, *,
                    patchout: str = "scale") -> CompressedGrid:
    """Grid and token counts of ``config`` compressed by ``method`` x ``factor`` (no model built)."""
    c = phase_config(config, method, factor, patchout=patchout)
    f, t = c.grid
    return CompressedGrid(
        method=method, factor=factor, input_fdim=c.input_fdim, input_tdim=c.input_tdim,
        patch=c.patch_size, stride=(c.fstride, c.tstride), grid=(f, t), n_patches=f * t,
        n_tokens_train=c.n_tokens(True), n_tokens_eval=c.n_tokens(False),
        patchout=(c.s_patchout_t, c.s_patchout_f, c.u_patchout),
    )


# --------------------------------------------------------------------------------------
# Input side: pooling and frame shift
# --------------------------------------------------------------------------------------
def pool_time(mel: torch.Tensor, factor: int, mode: str = "avg") -> torch.Tensor:
    """Pool a (B, F, T) or (B, 1, F, T) spectrogram along time, kernel = stride = ``factor``.

    The output has ``T // factor`` frames; a last partial window is dropped.
    """
    if mode not in POOL_MODES:
        raise ValueError(f"unknown pool mode {mode!r}; expected one of {POOL_MODES}")
    if factor < 1:
        raise ValueError(f"pool factor must be >= 1, got {factor}")
    if mel.dim() not in (3, 4):
        raise ValueError(f"expected (B, F, T) or (B, 1, F, T), got shape {tuple(mel.shape)}")
    if mel.shape[-1] < factor:
        raise ValueError(f"cannot pool {mel.shape[-1]} frames by {factor}")
    if factor == 1:
        return mel
    lead = mel.shape[:-1]
    x = mel.reshape(-1, 1, mel.shape[-1])  # (B * [1] * F, 1, T)
    pool = F.avg_pool1d if mode == "avg" else F.max_pool1d
    x = pool(x, kernel_size=factor, stride=factor)  # (B * F, 1, T // k)
    return x.reshape(*lead, x.shape[-1])  # (B, [1,] F, T // k)


class TimePool(nn.Module):
    """Thin module around :func:`pool_time` (a phase's ``spec_transform``)."""

    def __init__(self, factor: int, mode: str = "avg") -> None:
        super().__init__()
        if mode not in POOL_MODES:
            raise ValueError(f"unknown pool mode {mode!r}; expected one of {POOL_MODES}")
        self.factor, self.mode = factor, mode

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return pool_time(mel, self.factor, self.mode)

    def extra_repr(self) -> str:
        return f"factor={self.factor}, mode={self.mode!r}"


def frame_shift_mel_config(mel_config, factor: int):
    """The front-end config with its hop (frame shift) times ``factor``.

    The window length, FFT size, mel bank and the fixed normalisation
    ``(log(mel + 1e-5) + 4.5) / 5`` stay as they are, and that normalisation
    stays valid: each frame is still the log-mel power of one 25 ms window,
    and a larger hop only changes WHICH windows are taken (every k-th), not
    what a frame measures, so the distribution of values (per bin and overall)
    is the same as at the original hop. (Pooling, by contrast, changes the
    values: averaging lowers the variance, max raises the mean.) The time
    mask, counted in frames, is divided by ``factor`` so that it still covers
    the same duration.
    """
    if factor < 1:
        raise ValueError(f"frame-shift factor must be >= 1, got {factor}")
    changes = {"hop_length": mel_config.hop_length * factor}
    if hasattr(mel_config, "timem"):
        changes["timem"] = mel_config.timem // factor
    return dataclasses.replace(mel_config, **changes)


# --------------------------------------------------------------------------------------
# Weight side: encodings and the patch embedding
# --------------------------------------------------------------------------------------
def resample_time_pos_embed(pos: torch.Tensor, new_t: int) -> torch.Tensor:
    """Linearly interpolate a (1, D, 1, T) time encoding to (1, D, 1, new_t).

    Plain linear interpolation at cell centres (``align_corners=False``), as
    the paper and the reference AST / PaSST code resize encodings; no
    antialiasing, so up- then down-sampling returns the encoding (up to the
    interpolation error of a smooth curve) instead of a blurred copy.
    """
    if pos.dim() != 4 or pos.shape[2] != 1:
        raise ValueError(f"expected a (1, D, 1, T) time encoding, got shape {tuple(pos.shape)}")
    if new_t < 1:
        raise ValueError(f"new_t must be >= 1, got {new_t}")
    flat = pos.flatten(2).transpose(1, 2)  # (1, D, 1, T) -> (1, T, D)
    flat = resample_flat_pos_embed(flat, (1, pos.shape[3]), (1, new_t))  # (1, new_t, D)
    return flat.transpose(1, 2).unsqueeze(2)  # (1, D, 1, new_t)


def resample_flat_pos_embed(pos: torch.Tensor, old_grid: tuple[int, int],
                            new_grid: tuple[int, int]) -> torch.Tensor:
    """Bilinearly resample a flat (1, F * T, D) encoding from ``old_grid`` to ``new_grid``.

    Both grids are (F, T), given explicitly to timm's ``resample_abs_pos_embed``: a
    2-D shape is never guessed from a square root (a 6 x 29 grid has none). Bilinear,
    no antialiasing (timm's defaults are bicubic and antialiased), as above.
    """
    f0, t0 = old_grid
    f1, t1 = new_grid
    if pos.dim() != 3 or pos.shape[0] != 1 or pos.shape[1] != f0 * t0:
        raise ValueError(
            f"expected a flat encoding (1, F*T={f0 * t0}, D) for grid {old_grid}, "
            f"got shape {tuple(pos.shape)}")
    if min(f1, t1) < 1:
        raise ValueError(f"new grid must be at least 1 x 1, got {new_grid}")
    return resample_abs_pos_embed(pos, [f1, t1], [f0, t0], num_prefix_tokens=0,
                                  interpolation="bilinear", antialias=False)


def resize_patch_embed(weight: torch.Tensor, new_size: tuple[int, int]) -> torch.Tensor:
    """FlexiViT pseudo-inverse resize of a (D, 1, pf, pt) patch-embedding kernel.

    For an input patch that is the (bicubic) resize of a small patch, the
    resized kernel gives the same token as the original kernel on the small
    patch (Beyer et al. 2023); timm's ``resample_patch_embed``.
    """
    if weight.dim() != 4:
        raise ValueError(f"expected a (D, C, pf, pt) kernel, got shape {tuple(weight.shape)}")
    if tuple(weight.shape[-2:]) == tuple(new_size):
        return weight
    return resample_patch_embed(weight, list(new_size))


def transfer_state_dict(state_dict: Mapping[str, torch.Tensor], old_config: PaSSTConfig,
                        new_config: PaSSTConfig) -> dict[str, torch.Tensor]:
    """Map a state dict of a model at ``old_config`` onto one at ``new_config``.

    Resamples the time / flat encodings and the patch-embedding kernel; every
    other tensor is copied and must have the same shape at both resolutions.
    """
    if old_config.pos_embed != new_config.pos_embed:
        raise ValueError(
            f"cannot transfer between pos_embed={old_config.pos_embed!r} and "
            f"{new_config.pos_embed!r}")
    (f0, t0), (f1, t1) = old_config.pos_grid, new_config.pos_grid
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        if key == "time_new_pos_embed":
            value = resample_time_pos_embed(value, t1)
        elif key == "freq_new_pos_embed":
            if f0 != f1:
                raise ValueError(f"frequency grid changed from {f0} to {f1}; compression is "
                                 "temporal only")
        elif key == "pos_embed":
            value = resample_flat_pos_embed(value, (f0, t0), (f1, t1))
        elif key == "patch_embed.proj.weight":
            value = resize_patch_embed(value, new_config.patch_size)
        out[key] = value
    return out


# --------------------------------------------------------------------------------------
# The training loop's hook
# --------------------------------------------------------------------------------------
def enter_phase(model: PaSST, full_config: PaSSTConfig, base_mel_config, phase: Phase
                ) -> tuple[PaSST, object, Callable[[torch.Tensor], torch.Tensor]]:
    """Move ``model`` (at any phase's resolution) to the resolution of ``phase``.

    ``full_config`` and ``base_mel_config`` are the full-resolution model and front-end
    configs: every phase is defined from them. Returns ``(model_for_phase,
    mel_config_for_phase, spec_transform)``: ``spec_transform`` is applied to the mel
    spectrograms from the phase's front-end before the model (pooling, or the identity).
    The model is a new module with the weights transferred, on the device / dtype and in
    the train / eval mode of ``model``, unless ``model`` is already at the phase's
    resolution, in which case it is returned as is.
    """
    if not isinstance(phase, Phase):
        raise ValueError(f"expected a phases.Phase, got {phase!r}")
    new_config = phase_config(full_config, phase.method, phase.factor, patchout=phase.patchout)
    mel_config = base_mel_config
    transform: Callable[[torch.Tensor], torch.Tensor] = nn.Identity()
    if phase.method == "frame_shift":
        mel_config = frame_shift_mel_config(base_mel_config, phase.factor)
    elif phase.method == "pool":
        transform = TimePool(phase.factor, phase.pool_mode)
    if new_config == model.config:
        return model, mel_config, transform

    new_model = PaSST(new_config)
    state = transfer_state_dict(model.state_dict(), model.config, new_config)
    new_model.load_state_dict(state, strict=True)
    ref = next(model.parameters())
    new_model = new_model.to(device=ref.device, dtype=ref.dtype)
    new_model.train(model.training)
    new_model.patchout.generator = model.patchout.generator
    return new_model, mel_config, transform
