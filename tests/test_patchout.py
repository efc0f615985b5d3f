"""Patchout properties: counts, order, eval identity, per-sample vs per-batch draws, errors."""

import pytest
import torch

from passt_lib.patchout import (
    Patchout,
    check_amounts,
    keep_indices,
    n_kept,
    patch_indices,
    rescale_amounts,
    take,
)


# The paper's description, step by step on the grid: the reference that the flat indices the
# model uses (patch_indices) must equal.
def structured_patchout(x, s_patchout_t=0, s_patchout_f=0, *, mode="batch", generator=None):
    """Drop time columns, then frequency rows of a (B, D, F, T) grid."""
    b, _, f, t = x.shape
    check_amounts((f, t), s_patchout_t, s_patchout_f)
    keep_t = keep_f = None
    if s_patchout_t:
        keep_t = keep_indices(t, t - s_patchout_t, batch_size=b, mode=mode, generator=generator)
        x = take(x, keep_t, dim=3)  # (B, D, F, T')
    if s_patchout_f:
        keep_f = keep_indices(f, f - s_patchout_f, batch_size=b, mode=mode, generator=generator)
        x = take(x, keep_f, dim=2)  # (B, D, F', T')
    return x, (keep_f, keep_t)


def unstructured_patchout(x, u_patchout, *, mode="batch", generator=None):
    """Drop single tokens of (B, N, D)."""
    b, n, _ = x.shape
    check_amounts((1, n), u_patchout=u_patchout)
    keep = keep_indices(n, n - u_patchout, batch_size=b, mode=mode, generator=generator)
    return take(x, keep, dim=1), keep


def _grid(b=3, d=4, f=6, t=10):
    # Each entry encodes its own (f, t) position so selections can be checked.
    pos = (torch.arange(f)[:, None] * 100 + torch.arange(t)[None, :]).float()  # (F, T)
    return pos.expand(b, d, f, t).clone()  # (B, D, F, T)


@pytest.mark.parametrize("mode", ["batch", "sample"])
def test_structured_counts_and_sorted(mode):
    x = _grid()
    y, (kf, kt) = structured_patchout(x, s_patchout_t=4, s_patchout_f=2, mode=mode,
                                      generator=torch.Generator().manual_seed(0))
    assert y.shape == (3, 4, 4, 6)
    for idx in (kf, kt):
        assert (idx.diff(dim=-1) > 0).all()
    kf = kf.expand(3, -1) if kf.dim() == 1 else kf
    kt = kt.expand(3, -1) if kt.dim() == 1 else kt
    expected = kf[:, :, None] * 100 + kt[:, None, :]  # (B, F', T')
    assert torch.equal(y, expected[:, None].expand_as(y).float())


@pytest.mark.parametrize("mode", ["batch", "sample"])
def test_unstructured_counts_sorted_and_content(mode):
    x = torch.arange(2 * 20).float().view(2, 20, 1).expand(2, 20, 3)  # (B, N, D)
    y, keep = unstructured_patchout(x, 7, mode=mode, generator=torch.Generator().manual_seed(1))
    assert y.shape == (2, 13, 3)
    assert (keep.diff(dim=-1) > 0).all()
    keep_b = keep.expand(2, -1) if keep.dim() == 1 else keep
    assert torch.equal(y[..., 0], torch.gather(x[..., 0], 1, keep_b))


def test_per_sample_draws_differ_and_per_batch_are_shared():
    g = torch.Generator().manual_seed(0)
    per_sample = keep_indices(50, 10, batch_size=8, mode="sample", generator=g)
    assert per_sample.shape == (8, 10)
    assert len({tuple(r.tolist()) for r in per_sample}) > 1
    x = _grid(b=8)
    y, _ = structured_patchout(x, s_patchout_t=5, mode="batch", generator=g)
    assert all(torch.equal(y[0], y[i]) for i in range(8))
    y, _ = structured_patchout(x, s_patchout_t=5, mode="sample", generator=g)
    assert any(not torch.equal(y[0], y[i]) for i in range(8))


def test_generator_makes_draws_reproducible():
    a = keep_indices(30, 12, batch_size=4, mode="sample", generator=torch.Generator().manual_seed(3))
    b = keep_indices(30, 12, batch_size=4, mode="sample", generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


@pytest.mark.parametrize("mode", ["batch", "sample"])
def test_flat_indices_equal_structured_then_unstructured(mode):
    b, d, f, t = 3, 2, 5, 9
    x = torch.randn(b, d, f, t)
    tokens = x.flatten(2).transpose(1, 2)  # (B, F*T, D)
    kw = dict(s_patchout_t=3, s_patchout_f=1, u_patchout=4, mode=mode)
    flat = patch_indices(f, t, batch_size=b, generator=torch.Generator().manual_seed(5), **kw)
    g = torch.Generator().manual_seed(5)
    y, _ = structured_patchout(x, 3, 1, mode=mode, generator=g)
    y, _ = unstructured_patchout(y.flatten(2).transpose(1, 2), 4, mode=mode, generator=g)
    assert torch.equal(take(tokens, flat, dim=1), y)
    assert flat.shape[-1] == (f - 1) * (t - 3) - 4


def test_module_identity_in_eval_and_counts_in_train():
    po = Patchout(s_patchout_t=3, s_patchout_f=1, u_patchout=2, mode="sample")
    tokens = torch.randn(2, 5 * 8, 4)
    po.eval()
    keep = po.indices(5, 8, 2)
    assert keep is None and po(tokens, keep) is tokens
    assert po.n_kept(5, 8, training=False) == 40
    po.train()
    keep = po.indices(5, 8, 2)
    out = po(tokens, keep)
    assert out.shape == (2, po.n_kept(5, 8, training=True), 4) == (2, 4 * 5 - 2, 4)


def test_special_tokens_untouched_in_model():
    from passt_lib.model import PaSST, PaSSTConfig

    cfg = PaSSTConfig.preset("passt-s", size="tiny", depth=1, input_fdim=64, input_tdim=100,
                             s_patchout_t=3, s_patchout_f=1, u_patchout=2, patchout_mode="sample")
    m = PaSST(cfg).train()
    captured = {}
    m.blocks[0].register_forward_pre_hook(lambda mod, args: captured.setdefault("x", args[0]))
    m(torch.randn(2, 64, 100))
    x = captured["x"]
    special = (torch.cat([m.cls_token, m.dist_token], 1) + m.new_pos_embed).expand(2, -1, -1)
    assert torch.equal(x[:, :2], special)
    assert x.shape[1] == m.n_tokens(training=True) == 2 + (5 - 1) * (9 - 3) - 2


def test_errors_name_the_numbers():
    with pytest.raises(ValueError, match="10 time patches.*s_patchout_t=10"):
        patch_indices(6, 10, s_patchout_t=10)
    with pytest.raises(ValueError, match="6 frequency patches.*s_patchout_f=7"):
        patch_indices(6, 10, s_patchout_f=7)
    with pytest.raises(ValueError, match="u_patchout=20 but only 20 patches are left"):
        patch_indices(4, 5, u_patchout=20)
    with pytest.raises(ValueError, match="s_patchout_f must be an integer >= 0.*-1"):
        check_amounts((6, 10), s_patchout_f=-1)
    with pytest.raises(ValueError, match="mode"):
        keep_indices(5, 2, mode="nope")
    with pytest.raises(ValueError, match="s_patchout_t"):
        Patchout(s_patchout_t=-1)


def test_kept_counts_and_rescaled_amounts():
    assert n_kept((12, 99), 40, 4) == 8 * 59
    assert n_kept((12, 99), 40, 4, 100) == 8 * 59 - 100
    assert n_kept((5, 19)) == 95
    # PaSST-S's 40 of 99 columns and 4 of 12 rows on the embedded 5 x 19 grid
    assert rescale_amounts({"s_patchout_t": 40, "s_patchout_f": 4}, (5, 19), (12, 99)) == \
        {"s_patchout_t": 8, "s_patchout_f": 2, "u_patchout": 0}
    assert rescale_amounts({"u_patchout": 1}, (2, 2), (12, 99))["u_patchout"] == 1  # at least 1
    with pytest.raises(ValueError, match="pool x4 leaves 2 time patches.*s_patchout_t=2"):
        rescale_amounts({"s_patchout_t": 90}, (12, 2), (12, 99), where="pool x4 leaves")
