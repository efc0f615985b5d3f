import math

import pytest
import torch
import torch.nn.functional as F

from passt_lib.compression import (
    TimePool,
    compressed_grid,
    compressed_input_tdim,
    enter_phase,
    frame_shift_mel_config,
    phase_config,
    pool_time,
    resample_flat_pos_embed,
    resample_time_pos_embed,
    resize_patch_embed,
    transfer_state_dict,
)
from passt_lib.frontend import MelConfig, n_frames
from passt_lib.model import PaSST, PaSSTConfig
from passt_lib.phases import Phase


def tiny(**kw) -> PaSSTConfig:
    base = dict(embed_dim=32, depth=1, num_heads=2, input_fdim=32, input_tdim=301, n_classes=3)
    return PaSSTConfig(**{**base, **kw})


# ---------------------------------------------------------------------------------------------
# Grids and token counts
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method, tdim, patch_t, stride_t", [
    ("frame_shift", 76, 16, 10),  # (301 - 1) // 4 + 1 frames at hop x 4
    ("pool", 75, 16, 10),  # 301 // 4
    ("patchify", 301, 64, 40),
])
def test_odd_sized_grids(method, tdim, patch_t, stride_t):
    cfg = tiny(s_patchout_t=5, s_patchout_f=1)  # full grid (2, 29)
    g = compressed_grid(cfg, method, 4)
    t = (tdim - patch_t) // stride_t + 1
    assert g.input_tdim == tdim
    assert g.patch == (16, patch_t) and g.stride == (10, stride_t)
    assert g.grid == (2, t)
    # patchout rescaled to the same fraction: 5 of 29 columns -> round(5 * t / 29)
    s_t = max(1, round(5 * t / 29))
    assert g.patchout == (s_t, 1, 0)
    assert g.n_tokens_eval == 2 * t + 2
    assert g.n_tokens_train == (2 - 1) * (t - s_t) + 2
    # The model built for the phase agrees with the report and runs on that input.
    model = PaSST(phase_config(cfg, method, 4)).train()
    assert model.grid == g.grid
    assert model.n_tokens(True) == g.n_tokens_train
    tokens = model.forward_tokens(torch.randn(2, 1, 32, tdim))
    assert tokens.shape == (2, g.n_tokens_train, 32)
    model.eval()
    assert model.forward_tokens(torch.randn(2, 32, tdim)).shape == (2, g.n_tokens_eval, 32)


def test_frame_shift_frames_match_the_front_end():
    base = MelConfig(n_mels=32, timem=40)
    for n_samples in (301 * 320, 32000, 96000 + 17):
        full = n_frames(base, n_samples)
        for k in (2, 3, 4, 8):
            shifted = frame_shift_mel_config(base, k)
            assert shifted.hop_length == 320 * k and shifted.win_length == base.win_length
            assert shifted.timem == 40 // k
            assert n_frames(shifted, n_samples) == compressed_input_tdim(full, "frame_shift", k)


def test_full_is_unchanged():
    cfg = tiny(s_patchout_t=5)
    assert phase_config(cfg, "full", 1) == cfg
    g = compressed_grid(cfg, "full", 1)
    assert g.grid == cfg.grid and g.input_tdim == 301


def test_patchout_policies():
    cfg = tiny(s_patchout_t=10, s_patchout_f=1, u_patchout=3)  # grid (2, 29)
    keep = phase_config(cfg, "pool", 2, patchout="keep")  # grid (2, 14)
    assert (keep.s_patchout_t, keep.s_patchout_f, keep.u_patchout) == (10, 1, 3)
    off = phase_config(cfg, "pool", 2, patchout="off")
    assert (off.s_patchout_t, off.s_patchout_f, off.u_patchout) == (0, 0, 0)
    scaled = phase_config(cfg, "pool", 2)
    assert scaled.grid == (2, 14)
    assert scaled.s_patchout_t == round(10 * 14 / 29) and scaled.s_patchout_f == 1
    assert scaled.u_patchout == max(1, round(3 * 28 / 58))


def test_error_when_patchout_would_drop_every_time_patch():
    cfg = tiny(s_patchout_t=12)  # grid (2, 29); pool x4 leaves 6 columns
    with pytest.raises(ValueError, match=r"pool x4 leaves 6 time patches.*s_patchout_t=12"):
        phase_config(cfg, "pool", 4, patchout="keep")
    # Rescaling keeps at least one dropped column, which a 1-column grid cannot afford.
    with pytest.raises(ValueError, match=r"patchify x16 leaves 1 time patches"):
        phase_config(cfg, "patchify", 16)
    with pytest.raises(ValueError, match="u_patchout"):
        phase_config(tiny(u_patchout=40), "pool", 4, patchout="keep")


@pytest.mark.parametrize("method, k", [("pool", 32), ("frame_shift", 32), ("patchify", 32)])
def test_error_when_grid_is_smaller_than_one_patch(method, k):
    with pytest.raises(ValueError, match="smaller than one patch"):
        compressed_grid(tiny(), method, k)


def test_bad_method_or_factor():
    with pytest.raises(ValueError, match="unknown compression method"):
        compressed_grid(tiny(), "resample", 2)
    with pytest.raises(ValueError, match="factor >= 2"):
        compressed_grid(tiny(), "pool", 1)


# ---------------------------------------------------------------------------------------------
# Input side
# ---------------------------------------------------------------------------------------------
def test_pool_time_values_and_shapes():
    mel = torch.arange(2 * 3 * 9, dtype=torch.float32).view(2, 3, 9)  # (B, F, T)
    avg = pool_time(mel, 4)
    assert avg.shape == (2, 3, 2)  # the partial last window (frame 8) is dropped
    torch.testing.assert_close(avg, mel[..., :8].view(2, 3, 2, 4).mean(-1))
    mx = pool_time(mel.unsqueeze(1), 4, "max")  # (B, 1, F, T)
    assert mx.shape == (2, 1, 3, 2)
    torch.testing.assert_close(mx[:, 0], mel[..., :8].view(2, 3, 2, 4).amax(-1))
    assert TimePool(3, "avg")(mel).shape == (2, 3, 3)
    with pytest.raises(ValueError, match="pool mode"):
        pool_time(mel, 2, "median")


# ---------------------------------------------------------------------------------------------
# Weight side
# ---------------------------------------------------------------------------------------------
def smooth_time_encoding(d: int, t: int) -> torch.Tensor:
    pos = torch.linspace(0, 1, t)
    freqs = torch.arange(1, d + 1, dtype=torch.float32)[:, None] * 0.5
    return torch.sin(2 * math.pi * freqs * pos).view(1, d, 1, t)  # (1, D, 1, T)


def test_time_encoding_up_then_down_is_close_to_identity():
    pos = smooth_time_encoding(8, 29)
    up = resample_time_pos_embed(pos, 116)
    assert up.shape == (1, 8, 1, 116)
    back = resample_time_pos_embed(up, 29)
    assert back.shape == pos.shape
    err = (back - pos).abs().max().item()
    assert err < 0.05, err
    # down then up loses the fast components, but keeps the slow ones (<= 1 cycle)
    down_up = resample_time_pos_embed(resample_time_pos_embed(pos, 14), 29)
    assert (down_up - pos)[:, :2].abs().max().item() < 0.15


def test_flat_encoding_uses_explicit_non_square_grid():
    d, (f, t) = 6, (5, 29)
    ff = torch.linspace(0, 1, f)[:, None, None]
    tt = torch.linspace(0, 1, t)[None, :, None]
    k = torch.arange(1, d + 1, dtype=torch.float32)[None, None, :]
    grid = torch.cos(math.pi * k * 0.3 * (ff + 2 * tt))  # (F, T, D), smooth in both axes
    pos = grid.reshape(1, f * t, d)  # (1, F * T, D)
    up = resample_flat_pos_embed(pos, (f, t), (f, 116))
    assert up.shape == (1, f * 116, d)
    back = resample_flat_pos_embed(up, (f, 116), (f, t))
    assert (back - pos).abs().max().item() < 0.05
    # The frequency axis is untouched when only T changes: row 0 of the output comes
    # from row 0 of the input only.
    marked = pos.clone().view(1, f, t, d)
    marked[:, 1:] = 0
    out = resample_flat_pos_embed(marked.view(1, f * t, d), (f, t), (f, 7)).view(1, f, 7, d)
    assert out[:, 1:].abs().max() == 0
    with pytest.raises(ValueError, match=r"F\*T=145"):
        resample_flat_pos_embed(pos[:, :144], (f, t), (f, 7))


def test_patch_embed_resize_keeps_tokens_of_resized_patches():
    torch.manual_seed(0)
    w = torch.randn(4, 1, 16, 16)
    w_big = resize_patch_embed(w, (16, 64))
    assert w_big.shape == (4, 1, 16, 64)
    x = torch.randn(3, 1, 16, 16)
    # the resize FlexiViT's pseudo-inverse is built for (timm: bicubic, antialiased)
    x_big = F.interpolate(x, size=(16, 64), mode="bicubic", antialias=True, align_corners=False)
    tok = torch.einsum("bchw,ochw->bo", x, w)
    tok_big = torch.einsum("bchw,ochw->bo", x_big, w_big)
    torch.testing.assert_close(tok_big, tok, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("pos_embed", ["disentangled", "flat"])
@pytest.mark.parametrize("method", ["frame_shift", "pool", "patchify"])
def test_transfer_state_dict_shapes(pos_embed, method):
    full = tiny(pos_embed=pos_embed)
    coarse = phase_config(full, method, 4)
    sd = PaSST(full).state_dict()
    moved = transfer_state_dict(sd, full, coarse)
    target = PaSST(coarse).state_dict()
    assert moved.keys() == target.keys()
    for key in target:
        assert moved[key].shape == target[key].shape, key
    for key in ("blocks.0.attn.qkv.weight", "head.1.weight", "new_pos_embed", "cls_token"):
        assert torch.equal(moved[key], sd[key])
    if pos_embed == "disentangled":
        assert torch.equal(moved["freq_new_pos_embed"], sd["freq_new_pos_embed"])


# ---------------------------------------------------------------------------------------------
# enter_phase: coarse training, then full-resolution evaluation
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("pos_embed", ["disentangled", "flat"])
@pytest.mark.parametrize("method", ["frame_shift", "pool", "patchify"])
def test_trained_coarse_evaluates_at_full_resolution(method, pos_embed):
    torch.manual_seed(0)
    mel_cfg = MelConfig(n_mels=32, timem=40)
    model = PaSST(tiny(pos_embed=pos_embed, s_patchout_t=5, s_patchout_f=1))
    full_cfg = model.config
    coarse, coarse_mel, transform = enter_phase(model, full_cfg, mel_cfg, Phase(method, 4, 1))
    assert coarse is not model and coarse.config == phase_config(full_cfg, method, 4)
    assert coarse.grid == compressed_grid(full_cfg, method, 4).grid
    if method == "frame_shift":
        assert coarse_mel.hop_length == 4 * 320
        t_in = n_frames(coarse_mel, 301 * 320)
    else:
        assert coarse_mel == mel_cfg
        t_in = 301
    opt = torch.optim.SGD(coarse.parameters(), lr=0.1)
    coarse.train()
    for _ in range(2):
        mel = transform(torch.randn(4, 32, t_in))  # (B, F, T) from the phase's front-end
        loss = F.binary_cross_entropy_with_logits(coarse(mel), torch.rand(4, 3))
        opt.zero_grad()
        loss.backward()
        opt.step()
    fine, fine_mel, fine_transform = enter_phase(coarse, full_cfg, mel_cfg, Phase("full", 1, 1))
    assert fine_mel == mel_cfg and fine.config == full_cfg
    # weights trained coarse are carried over
    assert torch.equal(fine.blocks[0].mlp.fc1.weight, coarse.blocks[0].mlp.fc1.weight)
    assert not torch.equal(fine.blocks[0].mlp.fc1.weight, model.blocks[0].mlp.fc1.weight)
    fine.eval()
    with torch.no_grad():
        logits = fine(fine_transform(torch.randn(2, 32, 301)))
    assert logits.shape == (2, 3) and torch.isfinite(logits).all()


def test_enter_phase_same_resolution_returns_the_model():
    model = PaSST(tiny())
    full = model.config
    same, mel, transform = enter_phase(model, full, MelConfig(n_mels=32), Phase("full", 1, 2))
    assert same is model
    x = torch.randn(1, 32, 301)
    assert torch.equal(transform(x), x)
    pooled, _, transform = enter_phase(model, full, MelConfig(n_mels=32),
                                       Phase("pool", 2, 1, pool_mode="max"))
    assert isinstance(transform, TimePool) and transform.mode == "max"
    again, _, _ = enter_phase(pooled, full, MelConfig(n_mels=32), Phase("pool", 2, 3))
    assert again is pooled


# passt-s, passt-b and ast are covered above; these add stride 16, stride 14, unstructured
# patchout and block selection.
@pytest.mark.parametrize("preset", ["passt-s-n", "passt-s-14", "passt-u", "passt-s-l", "ast-n"])
def test_every_preset_goes_coarse_and_back(preset):
    from passt_lib.models import preset_config

    # 64 x 201 (the embedded scale), patchout rescaled
    cfg = preset_config(preset, "embedded", embed_dim=32, num_heads=2, depth=2, n_classes=3)
    model = PaSST(cfg)
    for phase in (Phase("pool", 2, 1), Phase("patchify", 2, 1), Phase("full", 1, 1)):
        model, _, transform = enter_phase(model, cfg, MelConfig(n_mels=64), phase)
        model.train()
        logits = model(transform(torch.randn(2, 64, cfg.input_tdim)))
        assert logits.shape == (2, 3)
    assert model.config == cfg
