"""PaSST and AST: one transformer core for spectrograms.

The input (B, 1, F_in, T_in) mel spectrogram goes through

1. an overlapping patch embedding (Conv2d, kernel ``patch_size`` = (frequency, time),
   16 x 16 by default, stride (fstride, tstride)) giving the (B, D, F, T) patch grid;
2. positional encodings added ON THE GRID: disentangled frequency (1, D, F, 1)
   plus time (1, D, 1, T) encodings (PaSST), or one flattened 2-D encoding
   kept as (1, F * T, D) and viewed as (1, D, F, T) (AST);
3. patchout (training only, see ``passt_lib.patchout``), then flattening;
4. class and distillation tokens with their own (1, 2, D) encoding;
5. pre-norm transformer blocks (fused qkv, ``scaled_dot_product_attention``);
6. final LayerNorm, the mean of the two special tokens = the embedding,
   then LayerNorm + Linear = the logits.

State-dict keys follow the reference layout (``patch_embed.proj``,
``freq_new_pos_embed``, ``time_new_pos_embed``, ``new_pos_embed``,
``cls_token``, ``dist_token``, ``blocks.N...``, ``norm``, ``head.0``,
``head.1``), so reference checkpoints load after stripping Lightning prefixes
(``passt_lib.checkpoints``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import DropPath

from passt_lib.configs import strict_keys
from passt_lib.frontend import MelConfig, check_finite
from passt_lib.grid import n_patches, patch_grid
from passt_lib.patchout import MODES as PATCHOUT_MODES
from passt_lib.patchout import Patchout, check_amounts, n_kept
from passt_lib.registry import register_presets
from passt_lib.windows import TimeGrid, slide_windows

POS_EMBEDS = ("disentangled", "flat")

# ViT sizes (DeiT's names): size -> (embed_dim, depth, num_heads)
VIT_SIZES: dict[str, tuple[int, int, int]] = {
    "base": (768, 12, 12),
    "small": (384, 12, 6),
    "tiny": (192, 12, 3),
}

# Architecture presets; amounts of patchout are on the paper's 128 x 998 input.
# "_every" marks the reference's block selection (PaSST-L): keep blocks
# [0, 1, 1 + k, 1 + 2k, ..., last].
PRESETS: dict[str, dict] = {
    "passt-s": dict(fstride=10, tstride=10, s_patchout_t=40, s_patchout_f=4),
    "passt-s-n": dict(fstride=16, tstride=16, s_patchout_t=20, s_patchout_f=1),
    "passt-s-14": dict(fstride=14, tstride=14, s_patchout_t=30, s_patchout_f=3),
    "passt-u": dict(fstride=10, tstride=10, u_patchout=400),
    "passt-b": dict(fstride=10, tstride=10),
    "passt-s-l": dict(fstride=10, tstride=10, s_patchout_t=40, s_patchout_f=4, _every=2),
    "ast": dict(fstride=10, tstride=10, pos_embed="flat"),
    "ast-n": dict(fstride=16, tstride=16, pos_embed="flat"),
}


def select_blocks(depth: int, every: int) -> tuple[int, ...]:
    """The reference's depth reduction: blocks [0] + [1 : depth - 1 : every] + [depth - 1].

    For depth 12 and every 2 this keeps (0, 1, 3, 5, 7, 9, 11): PaSST-L's 7 blocks.
    """
    if depth < 1 or every < 1:
        raise ValueError(f"need depth >= 1 and every >= 1, got depth={depth}, every={every}")
    return tuple(sorted({0, *range(1, depth - 1, every), depth - 1}))


@dataclass(frozen=True)
class PaSSTConfig:
    """A PaSST or AST architecture. ``patch_size`` is (frequency, time); an int means a
    square patch (configs written before patches could be rectangular keep loading)."""

    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    patch_size: tuple[int, int] = (16, 16)
    fstride: int = 10
    tstride: int = 10
    input_fdim: int = 128
    input_tdim: int = 998
    n_classes: int = 527
    pos_embed: str = "disentangled"  # "disentangled" (PaSST) or "flat" (AST)
    s_patchout_t: int = 0
    s_patchout_f: int = 0
    u_patchout: int = 0
    patchout_mode: str = "batch"  # "batch" (reference) or "sample"
    drop_rate: float = 0.0
    attn_drop_rate: float = 0.0
    drop_path_rate: float = 0.0
    # Blocks of a ``depth``-deep model that are kept (PaSST-L); None keeps all.
    block_selection: tuple[int, ...] | None = None
    # Time positions of the disentangled time encoding; None: one per time patch of
    # ``input_tdim``. The authors' checkpoints size it as ``input_tdim // tstride``, one more
    # than the patches at some strides (stride 12: 83 for 82); the model then uses the first
    # positions (a random window of them in training), as the reference does.
    time_positions: int | None = None

    def __post_init__(self) -> None:
        patch = self.patch_size
        if isinstance(patch, int):
            patch = (patch, patch)
        if len(tuple(patch)) != 2 or not all(isinstance(p, int) and p > 0 for p in patch):
            raise ValueError(f"patch_size must be a positive int or a (frequency, time) pair of "
                             f"them; got {self.patch_size!r}")
        object.__setattr__(self, "patch_size", tuple(patch))
        if self.pos_embed not in POS_EMBEDS:
            raise ValueError(f"unknown pos_embed {self.pos_embed!r}; expected one of {POS_EMBEDS}")
        if self.patchout_mode not in PATCHOUT_MODES:
            raise ValueError(
                f"unknown patchout_mode {self.patchout_mode!r}; expected one of {PATCHOUT_MODES}")
        if self.fstride > self.patch_size[0] or self.tstride > self.patch_size[1]:
            raise ValueError(
                f"stride ({self.fstride}, {self.tstride}) is larger than the patch "
                f"{self.patch_size}: input between patches would be seen by no patch; use "
                f"strides no larger than the patch")
        if self.embed_dim % self.num_heads:
            raise ValueError(
                f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}")
        if self.depth < 1 or self.n_classes < 1:
            raise ValueError(f"need depth >= 1 and n_classes >= 1, got {self.depth}, {self.n_classes}")
        check_amounts(self.grid, self.s_patchout_t, self.s_patchout_f, self.u_patchout,
                      where=f"{self.input_fdim} x {self.input_tdim} input gives")
        if self.time_positions is not None and (
                self.time_positions < self.grid[1] or self.pos_embed != "disentangled"):
            raise ValueError(f"time_positions={self.time_positions} needs the disentangled "
                             f"encoding and at least the {self.grid[1]} time patches of "
                             f"{self.input_tdim} frames")
        if self.block_selection is not None:
            sel = tuple(self.block_selection)
            if not sel or list(sel) != sorted(set(sel)) or sel[0] < 0 or sel[-1] >= self.depth:
                raise ValueError(
                    f"block_selection must be increasing indices in [0, {self.depth}), got {sel}")
            object.__setattr__(self, "block_selection", sel)

    @property
    def grid(self) -> tuple[int, int]:
        """(F, T) patch grid of the trained input size."""
        return patch_grid(self.input_fdim, self.input_tdim, self.patch_size,
                          (self.fstride, self.tstride))

    @property
    def pos_grid(self) -> tuple[int, int]:
        """(F, T) positions of the encodings: the patch grid, or ``time_positions`` in time."""
        f, t = self.grid
        return f, self.time_positions or t

    @property
    def patchout_amounts(self) -> dict[str, int]:
        return {"s_patchout_t": self.s_patchout_t, "s_patchout_f": self.s_patchout_f,
                "u_patchout": self.u_patchout}

    def n_tokens(self, training: bool) -> int:
        """Sequence length in the blocks: patches left after patchout (in training) + the
        2 special tokens."""
        f, t = self.grid
        return (n_kept(self.grid, **self.patchout_amounts) if training else f * t) + 2

    @property
    def n_blocks(self) -> int:
        """Blocks actually built (``depth``, or fewer with a block selection)."""
        return self.depth if self.block_selection is None else len(self.block_selection)

    @classmethod
    def preset(cls, name: str, size: str | None = None, **overrides) -> PaSSTConfig:
        """A named architecture at a ViT size ("base", "small", "tiny": width, depth and
        heads, ``VIT_SIZES``); keyword overrides win."""
        if name not in PRESETS:
            raise ValueError(f"unknown PaSST preset {name!r}; known presets: {', '.join(PRESETS)}")
        strict_keys(cls, overrides)
        values = {k: v for k, v in PRESETS[name].items() if not k.startswith("_")}
        if size is not None:
            if size not in VIT_SIZES:
                raise ValueError(f"unknown ViT size {size!r}; known sizes: "
                                 f"{', '.join(VIT_SIZES)}")
            values.update(zip(("embed_dim", "depth", "num_heads"), VIT_SIZES[size]))
        # None means "keep the preset's value" (e.g. a scale without its own depth).
        values.update({k: v for k, v in overrides.items() if v is not None})
        every = PRESETS[name].get("_every")
        if every is not None and "block_selection" not in overrides:
            values["block_selection"] = select_blocks(values.get("depth", cls.depth), every)
        return cls(**values)


class PatchEmbed(nn.Module):
    """Overlapping patches: Conv2d(1, D, (patch_f, patch_t), stride) -> (B, D, F, T)."""

    def __init__(self, patch_size: tuple[int, int], stride: tuple[int, int], embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(1, embed_dim, kernel_size=patch_size, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)  # (B, 1, F_in, T_in) -> (B, D, F, T)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout_p: float = 0.0):
    """softmax(q k^T / sqrt(hd)) v for (B, H, N, hd) inputs.

    ``scaled_dot_product_attention`` everywhere except bf16/fp16 on CPU without
    dropout: there the fused CPU kernel runs about 2x slower (forward + backward,
    474 tokens, 64-dim heads) than two oneDNN batched matmuls, so the product is
    written out.
    """
    if q.device.type == "cpu" and q.dtype in (torch.bfloat16, torch.float16) and not dropout_p:
        attn = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)  # (B, H, N, N)
        return attn.softmax(dim=-1) @ v  # (B, H, N, hd)
    return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)  # (B, H, N, hd)


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int, qkv_bias: bool, attn_drop: float, proj_drop: float):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor, n_out: int | None = None) -> torch.Tensor:
        """(B, N, D) -> (B, N, D); with ``n_out``, only the first ``n_out`` queries."""
        b, n, d = x.shape
        h, hd = self.num_heads, d // self.num_heads
        drop = self.attn_drop if self.training else 0.0
        if n_out is None:
            qkv = self.qkv(x).view(b, n, 3, h, hd)  # (B, N, 3, H, hd)
            q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # 3 x (B, H, N, hd)
        else:
            # Keys and values of every token, queries of the first n_out only.
            w, bias = self.qkv.weight, self.qkv.bias
            q = F.linear(x[:, :n_out], w[:d], None if bias is None else bias[:d])  # (B, n, D)
            q = q.view(b, n_out, h, hd).transpose(1, 2)  # (B, H, n, hd)
            kv = F.linear(x, w[d:], None if bias is None else bias[d:]).view(b, n, 2, h, hd)
            k, v = kv.permute(2, 0, 3, 1, 4).unbind(0)  # 2 x (B, H, N, hd)
            n = n_out
        x = attention(q, k, v, drop)  # (B, H, n, hd)
        x = x.transpose(1, 2).reshape(b, n, d)  # (B, n, D)
        return self.proj_drop(self.proj(x))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, drop: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class Block(nn.Module):
    """Pre-norm transformer block."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, qkv_bias: bool,
                 drop: float, attn_drop: float, drop_path: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads, qkv_bias, attn_drop, drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop)

    def forward(self, x: torch.Tensor, n_out: int | None = None) -> torch.Tensor:
        """(B, N, D) -> (B, N, D), or (B, n_out, D): only the first n_out tokens' outputs.

        Every token still serves as key and value; the last block of a classifier only
        needs the two special tokens, which saves its MLP and projection on the patches.
        """
        attn = self.drop_path(self.attn(self.norm1(x), n_out))
        x = attn + (x if n_out is None else x[:, :n_out])
        return x + self.drop_path(self.mlp(self.norm2(x)))


@dataclass
class LongPrediction:
    """Sliding-window output of :meth:`PaSST.predict_long`."""

    logits: torch.Tensor  # (B, W, C) per window
    start_frames: torch.Tensor  # (W,) int64
    end_frames: torch.Tensor  # (W,) int64, exclusive (every window lies inside the input)
    start_seconds: torch.Tensor  # (W,) float64
    end_seconds: torch.Tensor  # (W,) float64
    clip_logits: torch.Tensor  # (B, C): mean over windows


class PaSST(nn.Module):
    def __init__(self, config: PaSSTConfig) -> None:
        """The model of ``config`` (``PaSSTConfig.preset(name, ...)`` for a named one; by
        name at a scale: ``passt_lib.models.create_model``)."""
        super().__init__()
        if not isinstance(config, PaSSTConfig):
            raise ValueError(f"PaSST takes a PaSSTConfig, got {type(config).__name__}; build a "
                             f"model by name with passt_lib.models.create_model")
        self.config = c = config
        d = c.embed_dim
        f, t = c.pos_grid
        self.n_classes = c.n_classes
        self.patch_embed = PatchEmbed(c.patch_size, (c.fstride, c.tstride), d)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.dist_token = nn.Parameter(torch.zeros(1, 1, d))
        self.new_pos_embed = nn.Parameter(torch.zeros(1, 2, d))  # for the two special tokens
        if c.pos_embed == "disentangled":
            self.freq_new_pos_embed = nn.Parameter(torch.zeros(1, d, f, 1))
            self.time_new_pos_embed = nn.Parameter(torch.zeros(1, d, 1, t))
        else:
            self.pos_embed = nn.Parameter(torch.zeros(1, f * t, d))
        self.patchout = Patchout(c.s_patchout_t, c.s_patchout_f, c.u_patchout, c.patchout_mode)
        self.pos_drop = nn.Dropout(c.drop_rate)
        dpr = torch.linspace(0, c.drop_path_rate, c.n_blocks).tolist()  # stochastic depth
        self.blocks = nn.Sequential(*[
            Block(d, c.num_heads, c.mlp_ratio, c.qkv_bias, c.drop_rate, c.attn_drop_rate, dpr[i])
            for i in range(c.n_blocks)
        ])
        self.norm = nn.LayerNorm(d, eps=1e-6)
        self.head = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, c.n_classes))
        self._init_weights()

    def _init_weights(self) -> None:
        for p in self.pos_params() + [self.cls_token, self.dist_token]:
            nn.init.trunc_normal_(p, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def pos_params(self) -> list[nn.Parameter]:
        if self.config.pos_embed == "disentangled":
            return [self.new_pos_embed, self.freq_new_pos_embed, self.time_new_pos_embed]
        return [self.new_pos_embed, self.pos_embed]

    def no_weight_decay(self) -> set[str]:
        names = {"new_pos_embed", "cls_token", "dist_token"}
        if self.config.pos_embed == "disentangled":
            return names | {"freq_new_pos_embed", "time_new_pos_embed"}
        return names | {"pos_embed"}

    # -- properties -------------------------------------------------------------------------
    @property
    def grid(self) -> tuple[int, int]:
        return self.config.grid

    @property
    def mel_config(self):
        """The front-end this model expects (``passt_lib.frontend.MelConfig``)."""
        return MelConfig(n_mels=self.config.input_fdim)

    def n_tokens(self, training: bool) -> int:
        """Sequence length in the blocks (``PaSSTConfig.n_tokens``)."""
        return self.config.n_tokens(training)

    # -- forward ----------------------------------------------------------------------------
    def _check_input(self, mel: torch.Tensor) -> torch.Tensor:
        """Shape and dtype checks of the input (no look at its values: no host sync)."""
        if not isinstance(mel, torch.Tensor) or not mel.is_floating_point():
            raise ValueError(f"expected a floating-point mel spectrogram tensor, got "
                             f"{getattr(mel, 'dtype', type(mel).__name__)}")
        if mel.dtype == torch.float64:
            mel = mel.float()  # the weights are float32 (or cast by autocast)
        if mel.dim() == 3:
            mel = mel.unsqueeze(1)  # (B, F_in, T_in) -> (B, 1, F_in, T_in)
        if mel.dim() != 4 or mel.shape[1] != 1:
            raise ValueError(
                f"expected a mel spectrogram (B, 1, F, T) or (B, F, T), got shape {tuple(mel.shape)}")
        c = self.config
        if mel.shape[3] < c.patch_size[1]:
            raise ValueError(f"got {mel.shape[3]} frames, fewer than one patch: the model needs "
                             f"at least {c.patch_size[1]} frames")
        if mel.shape[2] != c.input_fdim:
            raise ValueError(
                f"got {mel.shape[2]} mel bins but the model expects {c.input_fdim} "
                f"(a grid of {self.grid[0]} frequency patches); compute the mel spectrogram with "
                f"n_mels={c.input_fdim}")
        t_in = mel.shape[3]
        t_model = c.pos_grid[1]  # time patches the encoding covers
        if t_in > c.input_tdim and n_patches(t_in, c.patch_size[1], c.tstride) > t_model:
            # Frames past the model's last patch are never seen by the patch embedding
            # (10 s clips give 1000 frames; the 998-frame paper model takes both), so
            # only input that would add time patches beyond the encoding is refused.
            raise ValueError(
                f"got {t_in} frames ({n_patches(t_in, c.patch_size[1], c.tstride)} time patches) "
                f"but the model's time encoding covers {t_model} time patches ({c.input_tdim} "
                "frames); use model.predict_long(mel, hop_frames=...) for longer input")
        return mel

    def _token_pos_embed(self, t: int) -> torch.Tensor:
        """Positional encoding of the flattened (F, t) grid, token-major: (1, F * t, D).

        ``t`` time patches use the first ``t`` time positions, or in training a random window
        of them (input shorter than the model's, or ``time_positions`` beyond the grid)."""
        f, t_full = self.config.pos_grid
        start = 0
        if t < t_full and self.training:
            start = int(torch.randint(0, t_full - t + 1, (1,), generator=self.patchout.generator))
        if self.config.pos_embed == "disentangled":
            freq = self.freq_new_pos_embed.permute(0, 2, 3, 1)  # (1, D, F, 1) -> (1, F, 1, D)
            time = self.time_new_pos_embed[..., start:start + t].permute(0, 2, 3, 1)  # (1, 1, t, D)
            return (freq + time).view(1, f * t, -1)  # (1, F * t, D)
        pos = self.pos_embed.view(1, f, t_full, -1)[:, :, start:start + t]  # (1, F, t, D)
        return pos.reshape(1, f * t, -1)  # (1, F * t, D)

    def _encode(self, mel: torch.Tensor, n_out: int | None = None) -> torch.Tensor:
        """Tokens after the blocks, before the final norm: (B, 2 + N, D), special tokens first.

        With ``n_out`` the last block returns only the first ``n_out`` tokens.
        """
        x = self.patch_embed(self._check_input(mel))  # (B, D, F, T)
        b, _, f, t = x.shape
        x = x.flatten(2).transpose(1, 2)  # (B, D, F, T) -> (B, F * T, D), a view
        # Encodings belong to the grid; adding them after selecting the kept patches
        # is the same sum, computed only where patches survive.
        keep = self.patchout.indices(f, t, b, x.device)
        x = self.patchout(x, keep) + self.patchout(self._token_pos_embed(t), keep)  # (B, N, D)
        special = torch.cat([self.cls_token, self.dist_token], dim=1) + self.new_pos_embed  # (1, 2, D)
        x = torch.cat([special.expand(b, -1, -1), x], dim=1)  # (B, 2 + N, D)
        x = self.pos_drop(x)
        for block in self.blocks[:-1]:
            x = block(x)
        return self.blocks[-1](x, n_out)

    def forward_tokens(self, mel: torch.Tensor) -> torch.Tensor:
        """All output tokens after the final norm: (B, 2 + N, D), the two special tokens first."""
        return self.norm(self._encode(mel))

    def forward_embedding(self, mel: torch.Tensor) -> torch.Tensor:
        """Embedding (B, D): mean of the class and distillation token outputs (what the head
        reads; ``forward_tokens`` gives every token)."""
        x = self.norm(self._encode(mel, n_out=2))  # (B, 2, D)
        return x.mean(dim=1)  # (B, D)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)  # (B, C)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_embedding(mel))

    @property
    def time_grid(self) -> TimeGrid:
        """The time axis windows over long input follow (``passt_lib.windows``)."""
        c = self.config
        return TimeGrid(c.input_tdim, c.patch_size[1], c.tstride, columns=c.pos_grid[1])

    @torch.no_grad()
    def predict_long(
        self,
        mel: torch.Tensor,
        hop_frames: int | None = None,
        *,
        batch_size: int = 16,
        frame_seconds: float | None = None,
    ) -> LongPrediction:
        """Slide windows of the trained length over a long (B, 1, F, T) or (B, F, T) input.

        Windows follow ``passt_lib.windows``: input that adds no time patch beyond the
        model's runs as one window; longer input as windows of the trained length every
        ``hop_frames`` (default: a quarter of the window, 2.5 s of a 10 s model), the last
        one ending at the input's end. No window is padded.
        Windows are predicted in eval mode (no patchout); the model's mode is restored.
        ``frame_seconds`` converts frames to seconds (default: the hop of
        ``self.mel_config``, 10 ms); pass it when the mel came from another front-end.
        """
        was_training = self.training
        self.eval()
        try:
            return self._predict_long(mel, hop_frames, batch_size, frame_seconds)
        finally:
            self.train(was_training)

    def _predict_long(self, mel, hop_frames, batch_size, frame_seconds):
        if mel.dim() == 3:
            mel = mel.unsqueeze(1)  # (B, F_in, T_in) -> (B, 1, F_in, T_in)
        self._check_input(mel[..., : self.config.input_tdim])
        check_finite(mel)  # user input: its values are checked here, never in forward
        grid = self.time_grid
        hop = grid.window // 4 if hop_frames is None else hop_frames
        windows, starts, ends = slide_windows(mel, grid, hop)
        logits = torch.cat([self(chunk) for chunk in windows.split(batch_size)])  # (B*W, C)
        logits = logits.view(mel.shape[0], len(starts), -1)  # (B, W, C)
        mc = self.mel_config
        sec = mc.hop_length / mc.sample_rate if frame_seconds is None else frame_seconds
        return LongPrediction(logits, starts, ends, starts.double() * sec, ends.double() * sec,
                              logits.mean(dim=1))


register_presets(PRESETS, PaSSTConfig.preset, PaSST, transformer=True,
                 display=lambda name: name.upper().replace("PASST", "PaSST"))  # "PaSST-S-N"
