"""Patch-grid arithmetic: the one place that knows how many patches fit.

Everything that needs a grid size (the patch embedding, the positional
encodings, temporal compression, FLOP counts, benchmarks) calls these
functions. A 2-D shape is always passed as (F, T); it is never guessed from a
square root.
"""

from __future__ import annotations


def n_patches(n: int, patch: int, stride: int, *, axis: str = "axis") -> int:
    """Number of patches of size ``patch`` taken every ``stride`` along ``n`` bins.

    The reference computes ``n // stride``, which is wrong whenever the last
    patch would run past the input (e.g. 100 mel bins at stride 10); this is
    the correct ``(n - patch) // stride + 1``.
    """
    if patch <= 0 or stride <= 0:
        raise ValueError(f"patch and stride must be positive, got patch={patch}, stride={stride}")
    if n < patch:
        raise ValueError(
            f"{axis} has {n} bins, fewer than one patch of {patch}: "
            f"give at least {patch} bins along {axis}"
        )
    return (n - patch) // stride + 1


def patch_grid(
    input_fdim: int,
    input_tdim: int,
    patch_size: tuple[int, int] = (16, 16),
    stride: tuple[int, int] = (10, 10),
) -> tuple[int, int]:
    """(F, T) patch grid of a (input_fdim x input_tdim) spectrogram."""
    return (
        n_patches(input_fdim, patch_size[0], stride[0], axis="frequency"),
        n_patches(input_tdim, patch_size[1], stride[1], axis="time"),
    )


def frames_needed(n_patch: int, patch: int, stride: int) -> int:
    """Smallest number of bins that yields ``n_patch`` patches (inverse of n_patches)."""
    if n_patch < 1:
        raise ValueError(f"need at least one patch, got {n_patch}")
    return (n_patch - 1) * stride + patch
