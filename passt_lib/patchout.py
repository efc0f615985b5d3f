"""Patchout: drop patches while training, as pure functions plus a thin module.

Two kinds (PaSST, Koutini et al. 2022, section 2.2), on the (F, T) patch grid:

- structured: drop ``s_patchout_t`` whole time columns and ``s_patchout_f`` whole
  frequency rows;
- unstructured: then drop ``u_patchout`` single patches of what is left.

What the model runs: :func:`patch_indices` draws, in that order, the positions KEPT in
the flattened (F * T) grid, and :class:`Patchout` selects them from the (B, F * T, D)
tokens in one gather (:func:`take`), like timm's ``patch_dropout`` returning
``keep_indices``. Kept indices are sorted, so the surviving patches keep their order.
Selecting rows and columns of the grid and then single tokens gives the same patches
(tests/test_patchout.py checks this against a grid-level reference).

This module owns the arithmetic of patchout amounts: :func:`n_kept` (patches left),
:func:`check_amounts` (at least one patch of every kind must stay, named errors) and
:func:`rescale_amounts` (amounts defined on one grid carried over to another, as the
scales and coarse-to-fine phases do).

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
AMOUNTS = ("s_patchout_t", "s_patchout_f", "u_patchout")


def n_kept(grid: tuple[int, int], s_patchout_t: int = 0, s_patchout_f: int = 0,
           u_patchout: int = 0) -> int:
    """Patches of an (F, T) grid left by patchout (no special tokens)."""
    f, t = grid
    return (f - s_patchout_f) * (t - s_patchout_t) - u_patchout


def check_amounts(grid: tuple[int, int], s_patchout_t: int = 0, s_patchout_f: int = 0,
                  u_patchout: int = 0, *, where: str = "") -> None:
    """Raise ValueError naming the field and the numbers unless the amounts are >= 0 and
    leave at least one time column, one frequency row and one patch of the (F, T) grid.

    ``where`` says what produced the grid (e.g. "pool x4 leaves"), for the message.
    """
    for name, v in zip(AMOUNTS, (s_patchout_t, s_patchout_f, u_patchout)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ValueError(f"{name} must be an integer >= 0 (patches to drop); got {v!r}")
    f, t = grid
    lead = f"{where} {t} time patches" if where else f"the grid has {t} time patches"
    if s_patchout_t >= t:
        raise ValueError(f"{lead} but structured patchout drops s_patchout_t={s_patchout_t} "
                         f"of them; at least one time column must stay")
    if s_patchout_f >= f:
        raise ValueError(f"{where or 'the grid has'} {f} frequency patches but structured "
                         f"patchout drops s_patchout_f={s_patchout_f} of them; at least one "
                         f"frequency row must stay")
    left = n_kept(grid, s_patchout_t, s_patchout_f)
    if u_patchout >= left:
        raise ValueError(f"u_patchout={u_patchout} but only {left} patches are left after "
                         f"structured patchout{' (' + where.strip() + ')' if where else ''}; "
                         f"at least one must stay")


def rescale_amounts(amounts: dict, grid: tuple[int, int], source_grid: tuple[int, int], *,
                    where: str = "") -> dict:
    """Patchout amounts defined on ``source_grid`` carried to ``grid`` in proportion.

    Time columns scale with T, frequency rows with F, single patches with F * T; a
    non-zero amount stays at least 1. The result is checked (:func:`check_amounts`):
    amounts that would drop every patch of ``grid`` are an error, never clipped.
    """
    (f0, t0), (f1, t1) = source_grid, grid

    def scaled(amount: int, n: int, n0: int) -> int:
        return 0 if amount == 0 else max(1, round(amount * n / n0))

    out = {"s_patchout_t": scaled(amounts.get("s_patchout_t", 0), t1, t0),
           "s_patchout_f": scaled(amounts.get("s_patchout_f", 0), f1, f0),
           "u_patchout": scaled(amounts.get("u_patchout", 0), f1 * t1, f0 * t0)}
    check_amounts(grid, **out, where=where)
    return out


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
    # non-blocking: a CPU draw reaches the GPU without making the host wait for it
    return idx.sort(dim=-1).values.to(device=device, non_blocking=True)


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
    Selecting these from a (B, F * T, D) token tensor equals dropping the grid's rows and
    columns, flattening, then dropping single tokens, in one gather.
    """
    if not (s_patchout_t or s_patchout_f or u_patchout):
        return None
    check_amounts((f, t), s_patchout_t, s_patchout_f, u_patchout)
    kw = dict(batch_size=batch_size, mode=mode, generator=generator, device=device)
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
        for name, v in zip(AMOUNTS, (s_patchout_t, s_patchout_f, u_patchout)):
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
        return n_kept((f, t), self.s_patchout_t, self.s_patchout_f, self.u_patchout)

    def extra_repr(self) -> str:
        return (f"s_patchout_t={self.s_patchout_t}, s_patchout_f={self.s_patchout_f}, "
                f"u_patchout={self.u_patchout}, mode={self.mode!r}")
