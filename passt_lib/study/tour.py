"""The pictures of ``notebooks/00_tour.ipynb``: one clip, from waveform to tokens.

Each function draws or tabulates one idea and returns a matplotlib figure or a
pandas DataFrame, so the notebook stays a sequence of explanations and calls.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from passt_lib.compression import (
    compressed_grid,
    frame_shift_mel_config,
    pool_time,
    resample_time_pos_embed,
)
from passt_lib.data import embedded, make_datasets
from passt_lib.frontend import MelConfig, MelFrontend
from passt_lib.model import PaSST
from passt_lib.models import preset_config
from passt_lib.patchout import Patchout
from passt_lib.study import style

TABLE_PRESETS = ("ast", "ast-n", "passt-b", "passt-u", "passt-s", "passt-s-14", "passt-s-n")
COMPRESSION_METHODS = ("frame_shift", "pool", "patchify")


@dataclass
class Clip:
    wave: torch.Tensor  # (S,)
    sample_rate: int
    name: str
    tags: list[str]
    mel: torch.Tensor  # (F_in, T_in), eval-mode front-end
    mel_config: object  # passt_lib.frontend.MelConfig
    model_config: object  # passt_lib.model.PaSSTConfig at the scale
    scale: str


def load_clip(scale: str = "embedded", preset: str = "passt-s", index: int = 0) -> Clip:
    """Clip ``index`` of the default embedded dataset's eval split (the one training uses) and
    its mel spectrogram (eval front-end)."""
    data = embedded.ensure(scale, progress=False)
    _, eval_ds = make_datasets(data)
    if not 0 <= index < len(eval_ds):
        raise ValueError(f"clip index {index} out of range: the eval split has {len(eval_ds)} clips")
    wave, target, name = eval_ds[index]
    names = pd.read_csv(data.class_csv)["display_name"].tolist() if data.class_csv else []
    idx = torch.nonzero(torch.as_tensor(target) > 0).flatten().tolist()
    tags = [names[i] if i < len(names) else str(i) for i in idx]
    cfg = preset_config(preset, scale)
    mel_config = MelConfig(n_mels=cfg.input_fdim)
    fe = MelFrontend(mel_config).eval()
    with torch.no_grad():
        mel = fe(wave[None])[0]  # (F_in, T_in)
    mel = mel[:, : cfg.input_tdim]
    return Clip(wave, data.sample_rate, str(name), tags, mel, mel_config, cfg, scale)


def _show_mel(ax, mel: torch.Tensor, hop_s: float, title: str = "", vmin=None, vmax=None,
              cmap: str | None = None):
    f, t = mel.shape
    im = ax.imshow(mel.numpy(), origin="lower", aspect="auto", extent=(0, t, 0, f),
                   interpolation="nearest", vmin=vmin, vmax=vmax, cmap=cmap)
    ax.set_xlabel(f"frame ({hop_s * 1000:.0f} ms hop)")
    ax.set_ylabel("mel bin")
    ax.grid(False)
    if title:
        ax.set_title(title)
    return im


def plot_clip(clip: Clip):
    """Waveform above its mel spectrogram."""
    fig, (a, b) = style.figure("page", 3.6, nrows=2)
    t = np.arange(len(clip.wave)) / clip.sample_rate
    a.plot(t, clip.wave.numpy(), lw=0.4)
    a.set_xlim(0, t[-1])
    a.set_xlabel("time (s)")
    a.set_ylabel("amplitude")
    a.set_title(f"{clip.name}: {', '.join(clip.tags) or 'no tags'}")
    _show_mel(b, clip.mel, clip.mel_config.hop_length / clip.sample_rate,
              f"log-mel spectrogram, {clip.mel.shape[0]} bins x {clip.mel.shape[1]} frames")
    return fig


def _patch_origins(config) -> tuple[np.ndarray, np.ndarray]:
    f, t = config.grid
    return np.arange(f) * config.fstride, np.arange(t) * config.tstride


def plot_patch_grid(clip: Clip):
    """The (F, T) patch grid on the spectrogram: every patch start, and two overlapping patches."""
    from matplotlib.patches import Rectangle

    c = clip.model_config
    f, t = c.grid
    pf, pt = c.patch_size
    fig, ax = style.figure("page", 2.6)
    _show_mel(ax, clip.mel, clip.mel_config.hop_length / clip.sample_rate,
              f"{f} x {t} = {f * t} patches of {pf}x{pt}, "
              f"stride ({c.fstride}, {c.tstride}): neighbours overlap")
    fo, to = _patch_origins(c)
    for y in fo:
        for x in to:
            ax.add_patch(Rectangle((x, y), pt, pf, fill=False, lw=0.3,
                                   ec="white", alpha=0.35))
    for k, color in ((0, "#56B4E9"), (1, "#E69F00")):
        ax.add_patch(Rectangle((to[k + 2], fo[1]), pt, pf, fill=False,
                               lw=1.5, ec=color))
    return fig


def patchout_masks(config, seed: int = 0) -> np.ndarray:
    """(F, T) bool mask of the patches KEPT by one training draw of ``config``'s patchout,
    drawn by the module the model trains with (``PaSST.patchout``), from ``seed``."""
    f, t = config.grid
    po = Patchout(**config.patchout_amounts, mode=config.patchout_mode).train()
    po.generator = torch.Generator().manual_seed(seed)
    keep = np.zeros(f * t, dtype=bool)
    idx = po.indices(f, t, batch_size=1)  # kept positions of the flattened (F * T) grid
    keep[np.arange(f * t) if idx is None else idx.reshape(-1).numpy()] = True
    return keep.reshape(f, t)


def plot_patchout(clip: Clip, seed: int = 0):
    """Structured (PaSST-S) and unstructured (PaSST-U) patchout drawn on the spectrogram."""
    from matplotlib.patches import Rectangle

    s = clip.model_config
    u = preset_config("passt-u", clip.scale)
    fig, axes = style.figure("page", 4.4, nrows=2)
    hop_s = clip.mel_config.hop_length / clip.sample_rate
    for ax, cfg, kind in ((axes[0], s, "structured"), (axes[1], u, "unstructured")):
        keep = patchout_masks(cfg, seed)
        f, t = cfg.grid
        what = (f"drop {cfg.s_patchout_t} of {t} time columns and {cfg.s_patchout_f} of {f} "
                f"frequency rows" if kind == "structured"
                else f"drop {cfg.u_patchout} of {f * t} single patches")
        _show_mel(ax, clip.mel, hop_s, f"{kind} patchout: {what}; "
                  f"{int(keep.sum())} of {f * t} patches kept (hatched: dropped)", cmap="gray")
        fo, to = _patch_origins(cfg)
        # Mark the stride cell of every dropped patch (patches overlap; cells tile the plane)
        # in a colour and hatch that no spectrogram value can hide.
        for i in range(f):
            for j in range(t):
                ax.add_patch(Rectangle((to[j], fo[i]), cfg.tstride, cfg.fstride, fill=False,
                                       lw=0.5, ec="#56B4E9"))
                if not keep[i, j]:
                    ax.add_patch(Rectangle((to[j], fo[i]), cfg.tstride, cfg.fstride, lw=0,
                                           fc="#D55E00", alpha=0.55, hatch="///"))
    return fig


def token_table(scale: str = "embedded", presets: tuple[str, ...] = TABLE_PRESETS) -> pd.DataFrame:
    """Patch grid and sequence length (training / inference, + 2 special tokens) per preset."""
    rows = []
    for name in presets:
        for sc in dict.fromkeys(("paper", scale)):
            c = preset_config(name, sc)
            f, t = c.grid
            rows.append({"preset": name, "scale": sc, "stride": f"{c.fstride}x{c.tstride}",
                         "grid": f"{f}x{t}", "patches": f * t,
                         "patchout (t, f, u)": f"{c.s_patchout_t}, {c.s_patchout_f}, {c.u_patchout}",
                         "train tokens": c.n_tokens(True), "eval tokens": c.n_tokens(False)})
    return pd.DataFrame(rows)


def compression_table(config, factors: tuple[int, ...] = (2, 4)) -> pd.DataFrame:
    """What each temporal compression does to the input frames, the grid and the tokens."""
    rows = []
    for method in ("full", *COMPRESSION_METHODS):
        for k in (1,) if method == "full" else factors:
            g = compressed_grid(config, method, k, patchout="off")
            rows.append({"method": method, "factor": k, "input frames": g.input_tdim,
                         "patch (f x t)": f"{g.patch[0]}x{g.patch[1]}",
                         "stride": f"{g.stride[0]}x{g.stride[1]}", "grid": f"{g.grid[0]}x{g.grid[1]}",
                         "tokens (eval)": g.n_tokens_eval})
    return pd.DataFrame(rows)


def plot_compression(clip: Clip, factor: int = 4):
    """The same clip as each compression method gives it to the model, with its patch grid."""
    from matplotlib.patches import Rectangle

    fig, axes = style.figure("page", 5.0, nrows=2, ncols=2)
    sr = clip.sample_rate
    lo, hi = float(clip.mel.min()), float(clip.mel.max())  # one colour scale for all panels
    for ax, method in zip(axes.flat, ("full", *COMPRESSION_METHODS)):
        k = 1 if method == "full" else factor
        g = compressed_grid(clip.model_config, method, k, patchout="off")
        hop = clip.mel_config.hop_length
        if method == "frame_shift":
            mc = frame_shift_mel_config(clip.mel_config, k)
            with torch.no_grad():
                mel = MelFrontend(mc).eval()(clip.wave[None])[0][:, : g.input_tdim]  # (F, T / k)
            hop = mc.hop_length
        elif method == "pool":
            mel = pool_time(clip.mel[None], k)[0]  # (F, T // k)
            hop = hop * k
        else:
            mel = clip.mel
        name = {"full": "full resolution", "frame_shift": f"frame shift, k={k}",
                "pool": f"pooling, k={k}", "patchify": f"patchify, k={k}"}[method]
        im = _show_mel(ax, mel, hop / sr, f"{name}: {mel.shape[1]} frames, grid "
                       f"{g.grid[0]}x{g.grid[1]} = {g.n_patches} patches", vmin=lo, vmax=hi)
        for j in range(g.grid[1]):  # outline the first row of patches
            ax.add_patch(Rectangle((j * g.stride[1], 0), g.patch[1], g.patch[0], fill=False,
                                   lw=0.8, ec="white"))
    fig.colorbar(im, ax=axes, shrink=0.6, label="normalised log-mel (one scale for all)")
    return fig


def plot_encodings(clip: Clip, factor: int = 4, seed: int = 0):
    """The disentangled positional encodings of the clip's model: the frequency encoding
    (D x F) and the time encoding (D x T), what one dimension of the time encoding holds at
    each time position, its crop for shorter input and its resampling for a coarse phase."""
    torch.manual_seed(seed)
    model = PaSST(clip.model_config)
    freq = model.freq_new_pos_embed.detach()[0, :, :, 0]  # (D, F)
    time = model.time_new_pos_embed.detach()[0, :, 0, :]  # (D, T)
    f, t = clip.model_config.grid
    coarse = resample_time_pos_embed(model.time_new_pos_embed.detach(), max(t // factor, 1))
    fig = style.figure("page", 4.6)[0]
    fig.clf()
    grid = fig.add_gridspec(2, 3, width_ratios=(1, 4, 4))
    a_f, a_t, a_1 = fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1:]), \
        fig.add_subplot(grid[1, :])
    lim = float(max(freq.abs().max(), time.abs().max()))
    a_f.imshow(freq.numpy(), aspect="auto", cmap="RdBu_r", vmin=-lim, vmax=lim,
               interpolation="nearest")
    a_f.set(title=f"frequency (D x F = {freq.shape[0]} x {f})", xlabel="frequency patch",
            ylabel="dimension", xticks=range(f))
    im = a_t.imshow(time.numpy(), aspect="auto", cmap="RdBu_r", vmin=-lim, vmax=lim,
                    interpolation="nearest")
    a_t.set(title=f"time (D x T = {time.shape[0]} x {t}): added to every frequency row",
            xlabel="time patch")
    fig.colorbar(im, ax=[a_f, a_t], shrink=0.8)
    for a in (a_f, a_t):
        a.grid(False)
    row = time[0].numpy()
    short = max(t // 2, 1)
    a_1.plot(np.arange(t), row, "o-", ms=2.5, label=f"full input: positions 0..{t - 1}")
    a_1.plot(np.arange(short), row[:short], "s", ms=5, mfc="none",
             label=f"shorter input ({short} patches): the first {short} (a random window in "
                   "training)")
    pos = (np.arange(coarse.shape[-1]) + 0.5) * t / coarse.shape[-1] - 0.5  # cell centres
    a_1.plot(pos, coarse[0, 0, 0].numpy(), "D-", ms=3,
             label=f"coarse phase, k={factor}: resampled to {coarse.shape[-1]} positions")
    a_1.set(xlabel="time position", ylabel="dimension 0",
            title="one dimension of the time encoding: cropped, and resampled between phases")
    a_1.legend(fontsize=6, loc="upper right")
    return fig
