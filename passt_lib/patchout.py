"""Patchout: drop patches while training, as pure functions plus a thin module.

Two kinds (PaSST, Koutini et al. 2022, section 2.2):

- structured, on the (B, D, F, T) patch grid: drop ``s_patchout_t`` whole time
  columns and ``s_patchout_f`` whole frequency rows;
- unstructured, on (B, N, D) tokens: drop ``u_patchout`` single tokens.

Every function returns ``(x, keep_indices)`` like timm's ``patch_dropout``.
Kept indices are sorted, so the surviving patches keep their order.

How the randomness is drawn is a choice (``mode``):

- ``"batch"``: one draw for the whole batch (what the reference does, with one
  ``randperm`` per batch); ``keep_indices`` has shape (K,).
- ``"sample"``: one draw per sample (MAE's ``random_masking``: argsort of
  uniform noise, then gather; no Python loop); ``keep_indices`` has shape (B, K).

Patchout is only for training; :class:`Patchout` is the identity in eval mode.
Special (class / distillation) tokens are never passed in here: the model
concatenates them after patchout.
"""

from __future__ import annotations

import torch
import torch.nn as nn

MODES = ("batch", "sample")


def _check(n: int, drop: int, what: str) -> None:
    if drop < 0:
        raise ValueError(f"cannot drop a negative number of {what}: got {drop}")
    if drop >= n:
        raise ValueError(
            f"asked to drop {drop} {what} but only {n} exist; "
            f"drop at most {n - 1} so that at least one is kept"
        )


def keep_indices(
    n: int,
    n_keep: int,
    *,
    batch_size: int = 1,
    mode: str = "batch",
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Sorted random indices of ``n_keep`` out of ``n``: (n_keep,) per batch, (B, n_keep) per sample."""
    if mode not in MODES:
        raise ValueError(f"unknown patchout mode {mode!r}; expected one of {MODES}")
    # Per batch draws on the CPU like the reference's randperm (same global RNG stream);
    # per sample draws on the target device.
    if generator is not None:
        gen_device = generator.device
    else:
        gen_device = "cpu" if mode == "batch" or device is None else device
    if mode == "batch":
        idx = torch.randperm(n, generator=generator, device=gen_device)[:n_keep]
    else:
        noise = torch.rand(batch_size, n, generator=generator, device=gen_device)  # (B, n)
        idx = noise.argsort(dim=1)[:, :n_keep]  # (B, n_keep)
    return idx.sort(dim=-1).values.to(device=device)


def structured_patchout(
    x: torch.Tensor,
    s_patchout_t: int = 0,
    s_patchout_f: int = 0,
    *,
    mode: str = "batch",
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, tuple[torch.Tensor | None, torch.Tensor | None]]:
    """Drop time columns and frequency rows of a (B, D, F, T) grid.

    Returns ``(x, (keep_f, keep_t))`` with x (B, D, F - s_patchout_f, T - s_patchout_t);
    an index is None where nothing was dropped along that axis.
    """
    if x.dim() != 4:
        raise ValueError(f"structured patchout expects a (B, D, F, T) grid, got shape {tuple(x.shape)}")
    b, _, f, t = x.shape
    keep_t = keep_f = None
    if s_patchout_t:
        _check(t, s_patchout_t, "time columns")
        keep_t = keep_indices(t, t - s_patchout_t, batch_size=b, mode=mode,
                              generator=generator, device=x.device)
        x = take(x, keep_t, dim=3)  # (B, D, F, T')
    if s_patchout_f:
        _check(f, s_patchout_f, "frequency rows")
        keep_f = keep_indices(f, f - s_patchout_f, batch_size=b, mode=mode,
                              generator=generator, device=x.device)
        x = take(x, keep_f, dim=2)  # (B, D, F', T')
    return x, (keep_f, keep_t)


def unstructured_patchout(
    x: torch.Tensor,
    u_patchout: int,
    *,
    mode: str = "batch",
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Drop ``u_patchout`` tokens of (B, N, D) patch tokens (no special tokens in ``x``).

    Returns ``(x (B, N - u_patchout, D), keep)``; keep is None when nothing is dropped.
    """
    if x.dim() != 3:
        raise ValueError(f"unstructured patchout expects (B, N, D) tokens, got shape {tuple(x.shape)}")
    if not u_patchout:
        return x, None
    b, n, _ = x.shape
    _check(n, u_patchout, "tokens")
    keep = keep_indices(n, n - u_patchout, batch_size=b, mode=mode,
                        generator=generator, device=x.device)
    return take(x, keep, dim=1), keep  # (B, N', D)


def take(x: torch.Tensor, index: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """Select ``index`` along ``dim``: (K,) for the whole batch, (B, K) per sample (gather).

    A per-sample index on an ``x`` with batch size 1 (e.g. a positional encoding)
    broadcasts ``x`` over the batch without copying it first.
    """
    if index.dim() == 1:
        return x.index_select(dim, index)
    shape = list(x.shape)
    shape[0] = index.shape[0]
    shape[dim] = index.shape[1]
    view = [index.shape[0]] + [1] * (x.dim() - 1)
    view[dim] = index.shape[1]
    return x.expand(index.shape[0], *x.shape[1:]).gather(dim, index.view(view).expand(shape))


def patch_indices(
    f: int,
    t: int,
    *,
    s_patchout_t: int = 0,
    s_patchout_f: int = 0,
    u_patchout: int = 0,
    batch_size: int = 1,
    mode: str = "batch",
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor | None:
    """Kept positions in the flattened (F * T) grid after structured + unstructured patchout.

    Returns (N,) for mode "batch", (B, N) for mode "sample", or None when nothing
    is dropped. Draws in the reference's order (time columns, frequency rows, then
    single patches), so with ``generator=None`` and mode "batch" it consumes the
    global RNG exactly like the reference and keeps the same patches.
    Selecting these from a (B, F * T, D) token tensor equals ``structured_patchout``
    followed by flattening and ``unstructured_patchout``, in one gather.
    """
    if not (s_patchout_t or s_patchout_f or u_patchout):
        return None
    kw = dict(batch_size=batch_size, mode=mode, generator=generator, device=device)
    _check(t, s_patchout_t, "time columns")
    _check(f, s_patchout_f, "frequency rows")
    keep_t = keep_indices(t, t - s_patchout_t, **kw) if s_patchout_t else None
    keep_f = keep_indices(f, f - s_patchout_f, **kw) if s_patchout_f else None
    shape = (batch_size,) if mode == "sample" else ()
    if keep_t is None:
        keep_t = torch.arange(t, device=device).expand(*shape, t)
    if keep_f is None:
        keep_f = torch.arange(f, device=device).expand(*shape, f)
    flat = (keep_f.unsqueeze(-1) * t + keep_t.unsqueeze(-2)).flatten(-2)  # (..., F' * T')
    if u_patchout:
        n = flat.shape[-1]
        _check(n, u_patchout, "patches")
        keep_u = keep_indices(n, n - u_patchout, **kw)
        flat = flat.index_select(0, keep_u) if keep_u.dim() == 1 else flat.gather(1, keep_u)
    return flat


class Patchout(nn.Module):
    """Structured + unstructured patchout of the flattened (F, T) grid; identity in eval.

    ``indices(f, t, batch_size, device)`` draws the kept positions (None in eval or
    when nothing is dropped); ``forward(tokens, indices)`` selects them from
    (B, F * T, D) tokens in one gather.
    """

    def __init__(
        self,
        s_patchout_t: int = 0,
        s_patchout_f: int = 0,
        u_patchout: int = 0,
        mode: str = "batch",
    ) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"unknown patchout mode {mode!r}; expected one of {MODES}")
        for name, v in (("s_patchout_t", s_patchout_t), ("s_patchout_f", s_patchout_f),
                        ("u_patchout", u_patchout)):
            if v < 0:
                raise ValueError(f"{name} must be >= 0, got {v}")
        self.s_patchout_t, self.s_patchout_f, self.u_patchout = s_patchout_t, s_patchout_f, u_patchout
        self.mode = mode
        self.generator: torch.Generator | None = None

    def indices(self, f: int, t: int, batch_size: int, device=None) -> torch.Tensor | None:
        if not self.training:
            return None
        return patch_indices(f, t, s_patchout_t=self.s_patchout_t, s_patchout_f=self.s_patchout_f,
                             u_patchout=self.u_patchout, batch_size=batch_size, mode=self.mode,
                             generator=self.generator, device=device)

    def forward(self, tokens: torch.Tensor, indices: torch.Tensor | None) -> torch.Tensor:
        return tokens if indices is None else take(tokens, indices, dim=1)  # (B, N', D)

    def n_kept(self, f: int, t: int, training: bool) -> int:
        """Patches left of an (F, T) grid (no special tokens)."""
        if not training:
            return f * t
        return (f - self.s_patchout_f) * (t - self.s_patchout_t) - self.u_patchout

    def extra_repr(self) -> str:
        return (f"s_patchout_t={self.s_patchout_t}, s_patchout_f={self.s_patchout_f}, "
                f"u_patchout={self.u_patchout}, mode={self.mode!r}")
