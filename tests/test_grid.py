"""Patch-grid arithmetic: the formula, the reference grids, errors."""

import pytest

from passt_lib.grid import frames_needed, n_patches, patch_grid


@pytest.mark.parametrize("n,patch,stride", [(128, 16, 10), (100, 16, 10), (998, 16, 16), (16, 16, 3)])
def test_formula_matches_sliding_windows(n, patch, stride):
    # Count the windows that fit by brute force.
    count = sum(1 for start in range(0, n, stride) if start + patch <= n)
    assert n_patches(n, patch, stride) == count


@pytest.mark.parametrize(
    "stride,grid",
    [(10, (12, 99)), (14, (9, 71)), (16, (8, 62))],
)
def test_reference_grids_for_128x998(stride, grid):
    assert patch_grid(128, 998, (16, 16), (stride, stride)) == grid


def test_stride_12_differs_from_the_reference_table():
    # The notes' table lists 10 x 83 for stride 12: that is the reference's
    # 998 // 12. Only 82 time patches fit ((998 - 16) // 12 + 1): a Conv2d gives
    # 82 columns, so the reference's 83-wide time encoding would not broadcast.
    assert patch_grid(128, 998, (16, 16), (12, 12)) == (10, 82)
    assert 998 // 12 == 83


def test_reference_quirk_case_100_bins():
    # The reference's n // stride gives 10 patches; only 9 fit.
    assert n_patches(100, 16, 10) == 9


def test_frames_needed_inverts_n_patches():
    for n_patch in (1, 5, 99):
        n = frames_needed(n_patch, 16, 10)
        assert n_patches(n, 16, 10) == n_patch
        assert n_patches(n - 1, 16, 10) == n_patch - 1 if n_patch > 1 else True


def test_errors_name_the_numbers():
    with pytest.raises(ValueError, match="12 bins"):
        n_patches(12, 16, 10, axis="time")
    with pytest.raises(ValueError, match="stride=0"):
        n_patches(100, 16, 0)
    with pytest.raises(ValueError):
        frames_needed(0, 16, 10)
