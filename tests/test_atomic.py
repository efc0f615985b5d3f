"""Atomic writes: the old file or the new one, never half of one, with ordinary permissions."""

import os
import stat

import pytest

from passt_lib.atomic import (
    atomic_open,
    atomic_path,
    atomic_write_json,
    atomic_write_text,
    read_json,
)


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "metrics.json"
    atomic_write_json(target, {"eval_map": 0.3})
    with pytest.raises(RuntimeError, match="killed"):
        with atomic_open(target, "w") as f:
            f.write('{"eval_map": ')
            raise RuntimeError("killed mid-write")
    assert read_json(target) == {"eval_map": 0.3}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_files_get_the_permissions_of_a_plain_open(tmp_path):
    old = os.umask(0o022)
    try:
        plain = tmp_path / "plain.txt"
        plain.write_text("x")
        made = atomic_write_text(tmp_path / "sub" / "made.txt", "x")  # parent created
        with atomic_path(tmp_path / "named.npy") as tmp:
            tmp.write_bytes(b"x")
    finally:
        os.umask(old)
    want = stat.S_IMODE(plain.stat().st_mode)
    assert want == 0o644
    assert stat.S_IMODE(made.stat().st_mode) == want
    assert stat.S_IMODE((tmp_path / "named.npy").stat().st_mode) == want


def test_only_whole_file_modes(tmp_path):
    with pytest.raises(ValueError, match="mode 'wb' or 'w', got 'a'"):
        with atomic_open(tmp_path / "x", "a"):
            pass
