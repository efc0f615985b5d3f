"""PaSST / AST model: every preset trains a step, shapes, variable length, errors."""

import pytest
import torch

from passt_lib.model import PRESETS, PaSST, PaSSTConfig, select_blocks
from passt_lib.models import create_model, list_models, preset_config


def tiny(name, **kw):
    return create_model(name, "smoke", 5, size="tiny", depth=2, **kw)  # 64 mels x 101 frames


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_forward_backward(name):
    torch.manual_seed(0)
    m = tiny(name).train()
    mel = torch.randn(2, 1, 64, 100)
    logits = m(mel)
    assert logits.shape == (2, 5)
    logits.square().mean().backward()
    grads = [p.grad for p in m.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert m.patch_embed.proj.weight.grad.abs().sum() > 0
    m.eval()
    with torch.no_grad():
        assert m.forward_embedding(mel[:, 0]).shape == (2, 192)
        assert torch.equal(m(mel), m(mel[:, 0]))  # (B, 1, F, T) and (B, F, T) agree


def test_presets_registered():
    assert set(PRESETS) <= set(list_models())


def test_token_counts_of_the_paper_presets():
    # Table of the reference notes: tokens in training (incl. 2 special tokens).
    expected = {"passt-s": 474, "passt-s-n": 296, "passt-s-14": 248, "passt-u": 790,
                "passt-b": 1190, "passt-s-l": 474, "ast": 1190, "ast-n": 498}
    for name, n in expected.items():
        cfg = PaSSTConfig.preset(name)
        assert PaSST.n_tokens(_Shell(cfg), training=True) == n, name


class _Shell:
    """n_tokens without building a 768-wide model."""

    def __init__(self, cfg):
        from passt_lib.patchout import Patchout

        self.config, self.grid = cfg, cfg.grid
        self.patchout = Patchout(cfg.s_patchout_t, cfg.s_patchout_f, cfg.u_patchout)


def test_vit_size_and_overrides():
    c = PaSSTConfig.preset("passt-s", size="small")
    assert (c.embed_dim, c.depth, c.num_heads) == (384, 12, 6)
    c = PaSSTConfig.preset("passt-s", size="tiny", depth=3, embed_dim=96)
    assert (c.embed_dim, c.depth, c.num_heads) == (96, 3, 3)
    assert PaSSTConfig.preset("passt-s", depth=None).depth == 12
    assert PaSSTConfig.preset("ast-n").pos_embed == "flat"
    assert PaSSTConfig.preset("ast-n").grid == (8, 62)


def test_passt_l_block_selection():
    assert select_blocks(12, 2) == (0, 1, 3, 5, 7, 9, 11)
    c = PaSSTConfig.preset("passt-s-l")
    assert c.block_selection == (0, 1, 3, 5, 7, 9, 11) and c.n_blocks == 7
    assert PaSSTConfig.preset("passt-s-l", depth=4).block_selection == (0, 1, 3)


def test_preset_errors():
    with pytest.raises(ValueError, match="known presets: passt-s"):
        PaSSTConfig.preset("passt-xl")
    with pytest.raises(ValueError, match=r"unknown PaSSTConfig keys \[.patchout.\]"):
        PaSSTConfig.preset("passt-s", patchout=3)
    with pytest.raises(ValueError, match="known sizes: base, small, tiny"):
        PaSSTConfig.preset("passt-s", size="huge")
    with pytest.raises(ValueError, match="9 time patches but structured patchout drops s_patchout_t=40"):
        PaSSTConfig.preset("passt-s", input_tdim=100)
    with pytest.raises(ValueError, match="pos_embed"):
        PaSSTConfig(pos_embed="sinus")
    with pytest.raises(ValueError, match="divisible"):
        PaSSTConfig(embed_dim=100, num_heads=3)


def test_shorter_input_crops_time_encoding():
    torch.manual_seed(0)
    m = tiny("passt-b").eval()
    mel = torch.randn(2, 64, 100)
    short = mel[..., :60]
    assert m(short).shape == (2, 5)
    # In eval the crop starts at 0: the first 60 frames see the first time encodings.
    pos = m._token_pos_embed(m.grid[1] - 4)
    full = m._token_pos_embed(m.grid[1]).view(1, m.grid[0], m.grid[1], -1)
    assert torch.equal(pos.view(1, m.grid[0], -1, 192), full[:, :, : m.grid[1] - 4])
    m.train()
    m.patchout.generator = torch.Generator().manual_seed(0)
    offsets = set()
    for _ in range(20):
        p = m._token_pos_embed(2).view(1, m.grid[0], 2, -1)[0, 0, 0]
        t = m.time_new_pos_embed[0, :, 0] + m.freq_new_pos_embed[0, :, 0]  # (D, T)
        offsets.add(int((t - p[:, None]).abs().sum(0).argmin()))
    assert len(offsets) > 1  # random offsets in training
    assert m(short).shape == (2, 5)


def test_ast_shorter_input():
    m = tiny("ast").eval()
    assert m(torch.randn(1, 64, 70)).shape == (1, 5)


def test_wrong_mel_bins_and_longer_input_errors():
    m = tiny("passt-s").eval()
    with pytest.raises(ValueError, match="got 128 mel bins but the model expects 64"):
        m(torch.randn(1, 128, 100))
    with pytest.raises(ValueError, match="106 frames \\(10 time patches\\).*covers 9 time patches \\(100 frames\\)"):
        m(torch.randn(1, 64, 106))  # one more time patch than the model has: refused
    with pytest.raises(ValueError, match="predict_long"):
        m(torch.randn(1, 64, 130))


def test_frames_past_the_last_patch_are_accepted():
    """10 s clips give 1000 frames and the paper model is built for 998: both make 99 time
    patches and the patch embedding never reads the trailing frames."""
    torch.manual_seed(0)
    m = tiny("passt-s").eval()  # 100 frames: 9 time patches covering frames 0-95
    mel = torch.randn(1, 64, 105)
    with torch.no_grad():
        assert torch.equal(m(mel), m(mel[..., :100]))
    one = m.predict_long(mel)  # the same single window, not a second, mostly padded one
    assert one.logits.shape == (1, 1, 5) and one.end_frames.tolist() == [105]
    with torch.no_grad():
        assert torch.allclose(one.clip_logits, m(mel), atol=1e-6)
    paper = PaSSTConfig.preset("passt-s")
    assert paper.input_tdim == 998 and paper.grid[1] == \
        PaSSTConfig.preset("passt-s", input_tdim=1000).grid[1] == 99
    with pytest.raises(ValueError, match="shape"):
        m(torch.randn(1, 2, 64, 100))


def test_predict_long_windows_times_and_mean():
    torch.manual_seed(0)
    m = tiny("passt-s").eval()
    mel = torch.randn(2, 64, 260)
    out = m.predict_long(mel, hop_frames=50)
    # windows start at 0, 50, ..., 150 and the last one ends at the input's end: no padding
    assert out.start_frames.tolist() == [0, 50, 100, 150, 160]
    assert out.end_frames.tolist() == [100, 150, 200, 250, 260]
    assert out.logits.shape == (2, 5, 5)
    sec = m.mel_config.hop_length / m.mel_config.sample_rate
    assert torch.allclose(out.start_seconds, out.start_frames.double() * sec)
    assert torch.allclose(out.clip_logits, out.logits.mean(1))
    with torch.no_grad():
        assert torch.allclose(out.logits[:, 1], m(mel[..., 50:150]), atol=1e-5)
        assert torch.allclose(out.logits[:, 4], m(mel[..., 160:260]), atol=1e-5)
    short = m.predict_long(mel[..., :80])
    assert short.logits.shape == (2, 1, 5) and short.end_frames.tolist() == [80]
    # a model left in training mode predicts without patchout, and stays in training mode
    m.train()
    again = m.predict_long(mel, hop_frames=50, frame_seconds=0.02)
    assert m.training
    assert torch.allclose(again.logits, out.logits, atol=1e-6)
    assert torch.allclose(again.end_seconds, out.end_frames.double() * 0.02)


def test_mel_config_matches_input_fdim():
    m = tiny("passt-s")
    assert m.mel_config.n_mels == 64


def test_last_block_shortcut_equals_full_computation():
    # forward_embedding runs the last block for the two special tokens only.
    torch.manual_seed(0)
    m = tiny("passt-b").eval()
    mel = torch.randn(2, 64, 100)
    with torch.no_grad():
        full = m.forward_tokens(mel)  # (B, 2 + N, D), every token through every block
        assert full.shape == (2, m.n_tokens(training=False), 192)
        assert torch.allclose(m.forward_embedding(mel), full[:, :2].mean(1), atol=1e-5)


@pytest.mark.parametrize("scale", ["smoke", "embedded", "paper"])
def test_each_scale_clip_fits_its_model(scale):
    """A clip of the scale's length, through the model's own front-end, is valid model input."""
    from passt_lib.frontend import MelFrontend
    from passt_lib.scales import get_scale

    s = get_scale(scale)
    m = PaSST(preset_config("passt-s", s, size="tiny", depth=1, n_classes=3)).eval()
    frames = MelFrontend(m.mel_config).n_frames(s.n_samples)  # paper: 10 s -> 1000 frames
    with torch.no_grad():
        assert m(torch.zeros(1, s.n_mels, frames)).shape == (1, 3)
